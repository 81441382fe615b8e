#!/usr/bin/env bash
# node-ws.sh installs the npm `ws` package (a WebSocket client for Node,
# whose v20 has no WebSocket client that goes through a proxy) into
# $CREDGATE_NODE_DIR (default ~/.cache/credgate/node), for the e2e tests
# that open a WebSocket from Node through the gateway (e2e/agents_test.go
# TestAgentsPlaceholdersWebSocket). Skipped when that version is there;
# the test skips, saying to run this script, when it is missing or npm
# cannot reach its registry.
# Usage: bash scripts/node-ws.sh     (the Makefile's `tools` target runs it)
set -euo pipefail

WS_VERSION=8.18.3
dir=${CREDGATE_NODE_DIR:-$HOME/.cache/credgate/node}

log() { printf 'node-ws: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
	log "npm is not installed; the Node WebSocket e2e test will skip"
	exit 1
fi
if [ -f "$dir/node_modules/ws/package.json" ] &&
	grep -q "\"version\": \"$WS_VERSION\"" "$dir/node_modules/ws/package.json"; then
	exit 0
fi
mkdir -p "$dir"
log "installing ws@$WS_VERSION into $dir"
npm install --silent --no-audit --no-fund --prefix "$dir" "ws@$WS_VERSION"
