#!/usr/bin/env bash
# hydra.sh builds Ory Hydra, the real OAuth2 authorization server the e2e
# tests of providers/oauth2 talk to, offline-friendly and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/hydra (default
#     ~/.cache/credgate/build/hydra), outside the repository, so credgate's
#     go.mod never sees Hydra's dependencies;
#   - github.com/ory/hydra/v2@v2.3.0 with gobuffalo/pop replaced by Ory's fork
#     (what Hydra's own go.mod does; replace directives are not inherited);
#   - built with the tags sqlite,sqlite_omit_load_extension (DSN=memory) into
#     $CREDGATE_TOOLS_BIN/hydra (default ~/.cache/credgate/bin); skipped when
#     that version is already there.
# Usage: bash scripts/hydra.sh     (e2e's oauth2 tests run it when hydra is missing)
set -euo pipefail

HYDRA_VERSION=v2.3.0
POP_REPLACE=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/hydra
mkdir -p "$bin" "$build"

log() { printf 'hydra: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from module VERSION.
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="dep" && $2=="github.com/ory/hydra/v2"{print $3}' | grep -qx "$2"
}

if have_version "$bin/hydra" "$HYDRA_VERSION"; then
	log "hydra $HYDRA_VERSION present"
	exit 0
fi

log "building hydra $HYDRA_VERSION in $build (takes several minutes cold)"
cd "$build"
export GOFLAGS=-mod=mod
[ -f go.mod ] || go mod init credgate.invalid/hydra-build >/dev/null 2>&1
cat >main.go <<'GO'
// Command hydra is Ory Hydra's CLI, built for credgate's e2e tests.
package main

import "github.com/ory/hydra/v2/cmd"

func main() { cmd.Execute() }
GO
go mod edit -replace "github.com/gobuffalo/pop/v6=$POP_REPLACE"
go get "github.com/ory/hydra/v2@$HYDRA_VERSION"
go mod tidy
go build -tags sqlite,sqlite_omit_load_extension -o "$bin/hydra.tmp" .
mv "$bin/hydra.tmp" "$bin/hydra"
log "hydra $HYDRA_VERSION built: $bin/hydra"
