#!/usr/bin/env bash
# release.sh [OUTDIR] builds the release files of this commit into OUTDIR
# (default dist/), replacing what is there:
#   credgate_<version>_<os>_<arch>            static binaries (scripts/gobuild.sh) for
#                                             linux and darwin, amd64 and arm64
#   credgate_<version>_<os>_<arch>.cdx.json   a CycloneDX SBOM of each binary, from the
#                                             module list Go embeds in it (cyclonedx-gomod bin),
#                                             with the Go standard library at the toolchain's
#                                             version as pkg:golang/stdlib@vX.Y.Z, the component
#                                             scanners match Go's CVEs to (scripts/sbomstd)
#   SHA256SUMS                                sha256 of every file above
# Everything is stamped with the version, commit and the commit's date, and
# nothing depends on the time, the directory or the machine: two runs on one
# commit with one Go version give byte-identical files (e2e/release tests it).
#
# cyclonedx-gomod, pinned, is built with `go install` into $CREDGATE_TOOLS_BIN
# (default ~/.cache/credgate/bin) when missing.
# RELEASE_TARGETS="linux/amd64 ..." overrides the target list.
# Usage: make release        VERSION=0.2.0 make release
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/dist}
log() { printf 'release: %s\n' "$*" >&2; }

CYCLONEDX_GOMOD_VERSION=v1.10.0
bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
targets=${RELEASE_TARGETS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}

eval "$(bash "$root/scripts/stamp.sh")"

mkdir -p "$bin"
sbomtool=$bin/cyclonedx-gomod
if ! { [ -x "$sbomtool" ] && go version -m "$sbomtool" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$CYCLONEDX_GOMOD_VERSION"; }; then
	log "installing cyclonedx-gomod $CYCLONEDX_GOMOD_VERSION into $bin"
	(cd "$bin" && GOBIN="$bin" GOFLAGS= go install "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$CYCLONEDX_GOMOD_VERSION")
fi

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
for t in $targets; do
	os=${t%/*} arch=${t#*/}
	name=credgate_${VERSION}_${os}_${arch}
	log "building $name (${COMMIT:0:12}, $DATE)"
	bash "$root/scripts/gobuild.sh" "$out/$name" "$os" "$arch"
	# -noserial -notimestamp: the SBOM depends on the binary only.
	"$sbomtool" bin -json -noserial -notimestamp -version "$VERSION" -output "$out/$name.cdx.json" "$out/$name"
	# cyclonedx-gomod bin names the toolchain only in a property scanners
	# do not read: add the standard library as a component.
	(cd "$root" && GOFLAGS= go run ./scripts/sbomstd "$out/$name" "$out/$name.cdx.json")
done

cd "$out"
if command -v sha256sum >/dev/null 2>&1; then
	sum=(sha256sum)
else
	sum=(shasum -a 256) # macOS
fi
LC_ALL=C ls credgate_* | xargs "${sum[@]}" >SHA256SUMS
log "wrote $(wc -l <SHA256SUMS | tr -d ' ') files and SHA256SUMS to $out"
cat SHA256SUMS
