#!/usr/bin/env bash
# bench/run.sh: what `make bench` runs. Builds the real credgate binary and
# the benchmark driver into a temporary directory, then measures direct
# HTTPS, a bare goproxy MITM baseline and credgate (in memory, requiring two
# identity factors over its TLS listener, with cache.redis on a
# redis-server it starts, and with a rate limit that never refuses) against
# a local origin, all on 127.0.0.1, and prints the tables (about 3 minutes
# on 2 cores).
#
# The figures are information, not a test: a MISS does not fail the run.
# Flags are passed to `credgate-bench run` (see bench/README.md), e.g.
#   bench/run.sh -duration 10s -keep -out /tmp/bench.md
#   bench/run.sh -scenarios all   # plus issue 20's scale scenarios (h2-streams,
#                                 # bigbody, idle10k): 4-6 more minutes
# Environment: GO (default go), BENCH_OUT (also write the Markdown report
# there), BENCH_JSON (also write JSON results there).
#
# `bench/run.sh soak [flags]` (what `make soak` runs) builds the same two
# binaries and runs `credgate-bench soak` instead: the long-running suite
# of docs/reliability.md (10 minutes by default; exits non-zero when a
# verdict fails).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO="${GO:-go}"

bin="$(mktemp -d "${TMPDIR:-/tmp}/credgate-bench-bin.XXXXXX")"
trap 'rm -rf "$bin"' EXIT

echo "bench: building credgate and the benchmark driver" >&2
"$GO" build -o "$bin/credgate-bench" ./bench/cmd/credgate-bench
"$GO" build -o "$bin/credgate" ./cmd/credgate

if [ "${1:-}" = soak ]; then
	shift
	exec "$bin/credgate-bench" soak -credgate "$bin/credgate" "$@"
fi

args=(-credgate "$bin/credgate")
if [ -n "${BENCH_OUT:-}" ]; then args+=(-out "$BENCH_OUT"); fi
if [ -n "${BENCH_JSON:-}" ]; then args+=(-json "$BENCH_JSON"); fi

"$bin/credgate-bench" run "${args[@]}" "$@"
