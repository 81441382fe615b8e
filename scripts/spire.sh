#!/usr/bin/env bash
# spire.sh builds SPIRE's server and agent, the real SPIFFE control plane the
# e2e tests start on 127.0.0.1/unix sockets (e2e/spire_test.go), offline-
# friendly and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/spire (default
#     ~/.cache/credgate/build/spire), outside the repository, so credgate's
#     go.mod never sees SPIRE's dependencies;
#   - github.com/spiffe/spire@$SPIRE_VERSION added as tools of that module
#     (`go get -tool ...@version`; the module proxy lists no versions for
#     spire, so `go install ...@version` is refused), then built niced, one
#     compile job at a time, into $CREDGATE_TOOLS_BIN (default
#     ~/.cache/credgate/bin) as spire-server and spire-agent;
#   - skipped when both binaries of that version are already there.
# SPIRE's dependency graph names a cloudsql-proxy version the checksum
# database does not know, hence GONOSUMDB for that one module.
# Usage: bash scripts/spire.sh     (`make tools` runs it; the SPIRE e2e tests
# skip, saying how to run this, when the binaries are missing)
set -euo pipefail

SPIRE_VERSION=v1.13.3

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/spire
mkdir -p "$bin" "$build"

log() { printf 'spire: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from spire at
# VERSION (its "mod" line: go build of a package of a required module).
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '($1=="mod" || $1=="dep") && $2=="github.com/spiffe/spire"{print $3}' | grep -qx "$2"
}

if have_version "$bin/spire-server" "$SPIRE_VERSION" && have_version "$bin/spire-agent" "$SPIRE_VERSION"; then
	log "spire-server and spire-agent $SPIRE_VERSION present"
	exit 0
fi

log "building spire-server and spire-agent $SPIRE_VERSION in $build (large: tens of minutes cold on 2 cores)"
start=$(date +%s)
cd "$build"
export GOFLAGS=-mod=mod
export GONOSUMDB=github.com/GoogleCloudPlatform/cloudsql-proxy${GONOSUMDB:+,$GONOSUMDB}
# The build module is ours; start it over when it names another version.
if [ -f go.mod ] && ! grep -q "github.com/spiffe/spire $SPIRE_VERSION" go.mod; then
	rm -f go.mod go.sum
fi
[ -f go.mod ] || go mod init credgate.invalid/spire-build >/dev/null 2>&1
go get -tool "github.com/spiffe/spire/cmd/spire-server@$SPIRE_VERSION" "github.com/spiffe/spire/cmd/spire-agent@$SPIRE_VERSION"
for cmd in spire-server spire-agent; do
	nice -n 10 go build -p 1 -o "$bin/$cmd.tmp" "github.com/spiffe/spire/cmd/$cmd"
	mv "$bin/$cmd.tmp" "$bin/$cmd"
done
log "spire-server and spire-agent $SPIRE_VERSION built into $bin in $(($(date +%s) - start))s"
