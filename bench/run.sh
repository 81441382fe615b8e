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
# there), BENCH_JSON (also write JSON results there), CREDGATE_BUILD_FLAGS
# (more `go build` flags for credgate, e.g. -pgo=off to measure the binary
# without profile-guided optimisation), CREDGATE_BIN (measure this
# prebuilt credgate instead of building one; scripts/pgo.sh uses it).
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

# Both built as scripts/gobuild.sh builds the credgate that ships (make
# build, the image, the release): static (CGO_ENABLED=0, no libc mapped)
# and -trimpath. The symbols stay, for -perf: -s -w strips sections that
# are not loaded, so the RSS is the same. The driver is the goproxy
# baseline too: the two proxies are built alike.
echo "bench: building credgate and the benchmark driver (static, -trimpath)" >&2
CGO_ENABLED=0 "$GO" build -trimpath -o "$bin/credgate-bench" ./bench/cmd/credgate-bench
if [ -n "${CREDGATE_BIN:-}" ]; then
	cp "$CREDGATE_BIN" "$bin/credgate"
else
	# shellcheck disable=SC2086 # CREDGATE_BUILD_FLAGS is a list of flags
	CGO_ENABLED=0 "$GO" build -trimpath ${CREDGATE_BUILD_FLAGS:-} -o "$bin/credgate" ./cmd/credgate
fi

if [ "${1:-}" = soak ]; then
	shift
	exec "$bin/credgate-bench" soak -credgate "$bin/credgate" "$@"
fi

args=(-credgate "$bin/credgate")
if [ -n "${BENCH_OUT:-}" ]; then args+=(-out "$BENCH_OUT"); fi
if [ -n "${BENCH_JSON:-}" ]; then args+=(-json "$BENCH_JSON"); fi

"$bin/credgate-bench" run "${args[@]}" "$@"
