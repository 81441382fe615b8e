#!/usr/bin/env bash
# promtool.sh builds Prometheus's promtool, which the chart tests run as
# `promtool check rules` on the PrometheusRule the chart renders
# (e2e/helm TestPrometheusRuleChecks), offline-friendly and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/promtool (default
#     ~/.cache/credgate/build/promtool), outside the repository, so
#     credgate's go.mod never sees Prometheus's dependencies; a module
#     rather than `go install pkg@version` because Prometheus's go.mod has
#     a replace directive (fsnotify), which go install refuses and which is
#     not inherited, so it is repeated here;
#   - github.com/prometheus/prometheus/cmd/promtool at module version
#     $PROMETHEUS_VERSION (Prometheus 3.3.0; the version credgate's go.mod
#     already pins indirectly), built niced into $CREDGATE_TOOLS_BIN/promtool
#     (default ~/.cache/credgate/bin); skipped when that version is there.
# The build is large (promtool links every service-discovery plugin and
# the Kubernetes client): measured cold at 16 minutes wall clock on 2 busy
# shared cores (4 minutes of CPU), 22 s with a warm module and build cache,
# so `go test` never runs this script; the promtool test skips, saying to run it, when
# the binary is missing.
# Usage: bash scripts/promtool.sh     (the Makefile's `tools` target runs it)
set -euo pipefail

PROMETHEUS_VERSION=v0.303.0
FSNOTIFY_REPLACE=github.com/fsnotify/fsnotify@v1.7.0

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/promtool
mkdir -p "$bin" "$build"

log() { printf 'promtool: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from module VERSION.
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="mod" && $2=="github.com/prometheus/prometheus"{print $3}' | grep -qx "$2"
}

if have_version "$bin/promtool" "$PROMETHEUS_VERSION"; then
	log "promtool $PROMETHEUS_VERSION present"
	exit 0
fi

log "building promtool $PROMETHEUS_VERSION in $build (large: several minutes cold)"
start=$(date +%s)
cd "$build"
export GOFLAGS=-mod=mod
[ -f go.mod ] || go mod init credgate.invalid/promtool-build >/dev/null 2>&1
cat >tools.go <<'GO'
//go:build tools

// Package tools pins promtool's module for `go build` of its main package.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
GO
go mod edit -replace "github.com/fsnotify/fsnotify=$FSNOTIFY_REPLACE"
go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION"
go mod tidy -e >/dev/null 2>&1 || true
nice -n 10 go build -o "$bin/promtool.tmp" github.com/prometheus/prometheus/cmd/promtool
mv "$bin/promtool.tmp" "$bin/promtool"
log "promtool $PROMETHEUS_VERSION built in $(( $(date +%s) - start ))s: $bin/promtool"
