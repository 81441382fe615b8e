#!/usr/bin/env bash
# minio-tools.sh builds the MinIO server the AWS end-to-end tests use as a real
# S3 + STS peer (it verifies SigV4, including aws-chunked streaming uploads),
# offline-friendly and cached:
#   - MinIO at module version $MINIO_VERSION, built with `go install` into
#     $CREDGATE_TOOLS_BIN (default ~/.cache/credgate/bin); skipped when that
#     version is already there. The build is large (several minutes cold), so it
#     runs niced with one compile job at a time.
# Usage: bash scripts/minio-tools.sh     (the AWS e2e tests skip, saying how to run
# this, when the binary is missing)
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
mkdir -p "$bin"

log() { printf 'minio-tools: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from module VERSION.
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$2"
}

if have_version "$bin/minio" "$MINIO_VERSION"; then
	log "minio $MINIO_VERSION present"
else
	log "installing minio $MINIO_VERSION into $bin (go install; large, takes many minutes cold)"
	# Outside the module so its go.mod is not touched.
	(cd "$bin" && GOBIN="$bin" GOFLAGS= nice -n 10 go install -p 1 "github.com/minio/minio@$MINIO_VERSION")
fi
