#!/usr/bin/env bash
# toxiproxy.sh builds Toxiproxy's server, the TCP fault injector the soak's
# fault mode (`make soak-faults`) puts between the gateway and Redis and
# Vault (latency, bandwidth, resets, timeouts, outages), offline-friendly
# and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/toxiproxy (default
#     ~/.cache/credgate/build/toxiproxy), outside the repository, so
#     credgate's go.mod never sees Toxiproxy's dependencies;
#   - github.com/Shopify/toxiproxy/v2@v2.5.0's cmd/server, built into
#     $CREDGATE_TOOLS_BIN/toxiproxy-server (default ~/.cache/credgate/bin);
#     skipped when that version is already there.
# Usage: bash scripts/toxiproxy.sh
set -euo pipefail

TOXIPROXY_VERSION=v2.5.0

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/toxiproxy
mkdir -p "$bin" "$build"

log() { printf 'toxiproxy: %s\n' "$*" >&2; }

if [ -x "$bin/toxiproxy-server" ] && go version -m "$bin/toxiproxy-server" 2>/dev/null |
	awk '$1=="mod" || $1=="dep" {print $2, $3}' | grep -qx "github.com/Shopify/toxiproxy/v2 $TOXIPROXY_VERSION"; then
	log "toxiproxy-server $TOXIPROXY_VERSION present"
	exit 0
fi

log "building toxiproxy-server $TOXIPROXY_VERSION in $build"
cd "$build"
export GOFLAGS=-mod=mod
[ -f go.mod ] || go mod init credgate.invalid/toxiproxy-build >/dev/null 2>&1
go get "github.com/Shopify/toxiproxy/v2@$TOXIPROXY_VERSION"
go build -o "$bin/toxiproxy-server.tmp" github.com/Shopify/toxiproxy/v2/cmd/server
mv "$bin/toxiproxy-server.tmp" "$bin/toxiproxy-server"
log "toxiproxy-server $TOXIPROXY_VERSION built: $bin/toxiproxy-server"
