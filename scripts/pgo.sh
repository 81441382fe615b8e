#!/usr/bin/env bash
# pgo.sh [bench/run.sh flags] (what `make pgo` runs) writes
# cmd/credgate/default.pgo, a CPU profile that `go build ./cmd/credgate`
# then uses for profile-guided optimisation. None is committed: it did
# not measurably help (docs/performance.md, "Profile-guided optimisation
# (sixteenth session)"); this is how to try again (bench/README.md says
# how to compare). It builds a throwaway credgate with -tags pgoprofile
# (cmd/credgate/pgoprofile.go: writes a CPU profile while
# CREDGATE_CPUPROFILE_DIR is set) and without PGO, so the profile does not
# depend on a previous one; runs the benchmark's keep-alive and
# new-connection scenarios against it (bench/run.sh); and merges every
# profile it wrote into cmd/credgate/default.pgo. While that file exists
# every go build of cmd/credgate uses it: delete it after the experiment.
#
# Flags after the script's name go to bench/run.sh, after the defaults
# (-rounds 3 -duration 5s), e.g. scripts/pgo.sh -rounds 5.
# Environment: GO (default go), PGO_OUT (default cmd/credgate/default.pgo).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GO="${GO:-go}"
out="${PGO_OUT:-$root/cmd/credgate/default.pgo}"

work="$(mktemp -d "${TMPDIR:-/tmp}/credgate-pgo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/prof"

echo "pgo: building the profiling credgate (-tags pgoprofile -pgo=off)" >&2
CGO_ENABLED=0 "$GO" build -trimpath -tags pgoprofile -pgo=off -o "$work/credgate" ./cmd/credgate

echo "pgo: profiling it under bench/run.sh -scenarios keepalive,newconn" >&2
CREDGATE_BIN="$work/credgate" CREDGATE_CPUPROFILE_DIR="$work/prof" GO="$GO" \
	bash bench/run.sh -scenarios keepalive,newconn -targets credgate \
	-rounds 3 -duration 5s -out "$work/bench.md" "$@" >&2

shopt -s nullglob
profiles=("$work"/prof/*.pprof)
if [ "${#profiles[@]}" -eq 0 ]; then
	echo "pgo: the benchmark wrote no CPU profile into $work/prof; is cmd/credgate/pgoprofile.go built (-tags pgoprofile)?" >&2
	exit 1
fi
# An empty chunk (a process stopped before its first flush) is not a
# profile; go tool pprof would refuse the whole merge for it.
keep=()
for p in "${profiles[@]}"; do
	if [ -s "$p" ]; then keep+=("$p"); fi
done
"$GO" tool pprof -proto "${keep[@]}" >"$work/merged.pgo"
mv "$work/merged.pgo" "$out"
echo "pgo: merged ${#keep[@]} profiles into $out ($(wc -c <"$out") bytes)" >&2
"$GO" tool pprof -top -nodecount=15 "$out" 2>/dev/null | sed -n '1,22p' >&2 || true
