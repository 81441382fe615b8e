#!/usr/bin/env bash
# distribution.sh builds the CNCF Distribution registry (the registry behind
# Docker Hub, GHCR's ancestor and Harbor's core), the real OCI registry the
# e2e test TestContainerRegistries pulls and pushes through the gateway,
# offline-friendly and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/distribution (default
#     ~/.cache/credgate/build/distribution), outside the repository, so
#     credgate's go.mod never sees the registry's dependencies;
#   - github.com/distribution/distribution/v3@v3.1.2's registry command
#     (what its cmd/registry compiles in, less the cloud storage drivers:
#     the filesystem and in-memory drivers, the token (JWT) and htpasswd
#     access controllers), built niced with one compile job into
#     $CREDGATE_TOOLS_BIN/registry (default ~/.cache/credgate/bin);
#     skipped when that version is already there.
# Cold, about 1m30s to 1m50s of CPU (user); wall clock on a shared 2-core
# machine 6 minutes with -p 2 and the modules to download (mostly
# OpenTelemetry and gRPC), 19 minutes niced with -p 1 under load, modules
# cached. Warm, a version check.
# Usage: bash scripts/distribution.sh     (e2e TestContainerRegistries
# runs it when the registry is missing)
set -euo pipefail

DISTRIBUTION_VERSION=v3.1.2

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/distribution
mkdir -p "$bin" "$build"

log() { printf 'distribution: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from module VERSION.
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="dep" && $2=="github.com/distribution/distribution/v3"{print $3}' | grep -qx "$2"
}

if have_version "$bin/registry" "$DISTRIBUTION_VERSION"; then
	log "registry $DISTRIBUTION_VERSION present"
	exit 0
fi

log "building registry $DISTRIBUTION_VERSION in $build (several minutes cold)"
cd "$build"
export GOFLAGS=-mod=mod
[ -f go.mod ] || go mod init credgate.invalid/distribution-build >/dev/null 2>&1
cat >main.go <<'GO'
// Command registry is CNCF Distribution's registry, built for credgate's
// e2e tests (what distribution's own cmd/registry/main.go compiles in).
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	// The registry's own command: `registry serve CONFIG`.
	registry.RootCmd.Execute()
}
GO
go get "github.com/distribution/distribution/v3@$DISTRIBUTION_VERSION"
go mod tidy
nice -n 10 go build -p 1 -trimpath -o "$bin/registry.tmp" .
mv "$bin/registry.tmp" "$bin/registry"
log "registry $DISTRIBUTION_VERSION built: $bin/registry"
