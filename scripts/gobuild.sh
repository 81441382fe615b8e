#!/usr/bin/env bash
# gobuild.sh OUT [GOOS GOARCH] builds a static, reproducible credgate binary
# stamped with the version, commit and commit date (scripts/stamp.sh):
# CGO_ENABLED=0, -trimpath, no build id, no VCS block, so the same commit
# and Go version give the same bytes on any machine and in any directory.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:?usage: gobuild.sh OUT [GOOS GOARCH]}
goos=${2:-$(go env GOOS)}
goarch=${3:-$(go env GOARCH)}
eval "$(bash "$root/scripts/stamp.sh")"
pkg=github.com/credgate/credgate/cli
ldflags="-s -w -buildid= -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT -X $pkg.date=$DATE"
cd "$root"
CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch GOFLAGS= \
	go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$out" ./cmd/credgate
