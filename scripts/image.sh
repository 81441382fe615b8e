#!/usr/bin/env bash
# image.sh [OUTDIR] builds credgate's container image from Containerfile,
# offline: the binary is built here with the host's Go toolchain
# (scripts/gobuild.sh: static, -trimpath, stamped), the CA roots are copied
# from this machine, and the image is assembled FROM scratch, so no base
# image is pulled. It builds with the first builder that works here:
# podman, buildah (as root: vfs storage, chroot isolation) or docker.
#
# It tags $IMAGE:$VERSION (default ghcr.io/credgate/credgate:<chart
# appVersion>, what the chart's default values deploy) and writes the image
# as an OCI archive to OUTDIR/credgate-image.oci.tar (OUTDIR default bin/),
# which `podman load`, `docker load` (25+) and `skopeo copy` read.
#
# It prints (stderr) and outputs (push=) the command that pushes the image
# from the storage it was built in.
#
# The image is stamped like the binary (scripts/stamp.sh): its created time
# is the commit's date (or $SOURCE_DATE_EPOCH), so two builds of one commit
# give one image digest. Exit status 3 (and a line saying what to install)
# when no builder works.
# Usage: make image            IMAGE=registry.example/credgate make image
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { printf 'image: %s\n' "$*" >&2; }

eval "$(bash "$root/scripts/stamp.sh")"
image=${IMAGE:-ghcr.io/credgate/credgate}
ref="$image:$VERSION"

# The builder: a command that answers, not just one that is installed (a
# docker client without a daemon does not count).
builder=${CREDGATE_IMAGE_BUILDER:-}
if [ -z "$builder" ]; then
	if command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1; then
		builder=podman
	elif command -v buildah >/dev/null 2>&1; then
		builder=buildah
	elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		builder=docker
	else
		log "no image builder works here: install podman or buildah (Debian: apt-get install buildah), or start the docker daemon"
		exit 3
	fi
fi
# buildah and podman as root in a container: vfs storage (no overlay
# mounts needed) and chroot isolation (no user namespaces needed).
storage=()
if [ "$builder" != docker ] && [ "$(id -u)" -eq 0 ]; then
	storage=(--storage-driver "${CREDGATE_STORAGE_DRIVER:-vfs}")
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/credgate-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
rootfs=$ctx/rootfs
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"
arch=$(go env GOARCH)
bash "$root/scripts/gobuild.sh" "$rootfs/usr/local/bin/credgate" linux "$arch"

# CA roots for upstream TLS, from the build host (Debian/Ubuntu, Fedora/RHEL, Alpine/SUSE).
roots=
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/ca-bundle.pem /etc/ssl/cert.pem; do
	if [ -s "$f" ]; then roots=$f; break; fi
done
if [ -z "$roots" ]; then
	log "no CA roots on this machine (looked for /etc/ssl/certs/ca-certificates.crt and others): install ca-certificates"
	exit 1
fi
cp "$roots" "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'nonroot:x:65532:\n' >"$rootfs/etc/group"
# Same bytes, same layer: fixed modes and times.
chmod 0755 "$rootfs/usr/local/bin/credgate"
chmod 0644 "$rootfs/etc/ssl/certs/ca-certificates.crt" "$rootfs/etc/passwd" "$rootfs/etc/group"
find "$rootfs" -exec touch -h -d "$DATE" {} +
cp "$root/Containerfile" "$ctx/Containerfile"

args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$COMMIT" --build-arg "CREATED=$DATE"
	--platform "linux/$arch" -f "$ctx/Containerfile" -t "$ref")
archive=$out/credgate-image.oci.tar
rm -f "$archive"
log "building $ref with $builder (linux/$arch, credgate $VERSION ${COMMIT:0:12})"
case $builder in
podman)
	podman "${storage[@]}" build --isolation chroot --timestamp "$SOURCE_DATE_EPOCH" "${args[@]}" "$ctx" >&2
	podman "${storage[@]}" save --format oci-archive -o "$archive" "$ref" >&2
	;;
buildah)
	buildah "${storage[@]}" bud --isolation chroot --layers=false --timestamp "$SOURCE_DATE_EPOCH" "${args[@]}" "$ctx" >&2
	buildah "${storage[@]}" push "$ref" "oci-archive:$archive:$ref" >&2
	# The previous build under this tag, now untagged, goes.
	buildah "${storage[@]}" rmi --prune >/dev/null 2>&1 || true
	;;
docker)
	# BuildKit reads SOURCE_DATE_EPOCH as a build argument.
	docker build --build-arg "SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH" "${args[@]}" "$ctx" >&2
	docker save -o "$archive" "$ref" >&2
	;;
*)
	log "unknown CREDGATE_IMAGE_BUILDER=$builder (use podman, buildah or docker)"
	exit 2
	;;
esac
# How to push what was built, from the storage it was built in (as root,
# vfs: a plain `podman push` or `buildah push` looks in the default
# storage and does not find the image).
push="$builder ${storage[*]} push $ref"
push=${push//  / }
log "built $ref; OCI archive $archive"
log "push it: $push docker://REGISTRY/credgate:$VERSION   (or: skopeo copy oci-archive:$archive docker://REGISTRY/credgate:$VERSION)"
printf 'builder=%s\nimage=%s\narchive=%s\ncommit=%s\npush=%s\n' "$builder" "$ref" "$archive" "$COMMIT" "$push"
