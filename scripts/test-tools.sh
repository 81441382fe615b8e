#!/usr/bin/env bash
# test-tools.sh installs what `make test` needs beyond Go, and caches it so a
# second run does nothing:
#   - curl and python3 (the e2e tests drive them as real proxy clients),
#     redis-server (the shared-cache tests start a real Redis) and haproxy
#     (gateway TestProxyProtocolBehindHAProxy puts it in front of the
#     gateway, sending PROXY headers), npm, pip and maven (e2e
#     TestPackageRegistries drives them against fake private registries),
#     skopeo (e2e TestContainerRegistries copies an image with it):
#     installed with apt-get when missing (apt-get update only then);
#   - buildah (e2e/helm's TestImage builds the container image with it,
#     offline, FROM scratch; e2e TestContainerRegistries pushes and pulls
#     images with it through the gateway): installed with apt-get when
#     missing; if it cannot be installed, TestContainerRegistries skips,
#     and TestImage uses podman or docker when there is one, else skips,
#     each saying why;
#   - staticcheck, pinned, built with `go install` into $CREDGATE_TOOLS_BIN
#     (default ~/.cache/credgate/bin); skipped when that version is present.
# Usage: bash scripts/test-tools.sh      (the Makefile's `tools` target runs it)
set -euo pipefail

# staticcheck 2026.2.2 (module v0.8.2) is the release that supports Go 1.26.
STATICCHECK_VERSION=v0.8.2

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
mkdir -p "$bin"

log() { printf 'test-tools: %s\n' "$*" >&2; }

# Debian package names for the commands the tests run.
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# redis-server: the shared-cache tests start a real one on 127.0.0.1.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# haproxy: a real load balancer sending PROXY protocol v1/v2 headers.
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
# npm, pip and mvn (with keytool): real package managers against fake
# private registries.
command -v npm >/dev/null 2>&1 || missing+=(npm)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
{ command -v mvn >/dev/null 2>&1 && command -v keytool >/dev/null 2>&1; } || missing+=(maven)
# skopeo: a second real registry client in e2e TestContainerRegistries.
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
	if ! command -v apt-get >/dev/null 2>&1; then
		log "missing ${missing[*]} and no apt-get here: install them and rerun"
		exit 1
	fi
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
	log "installing ${missing[*]} with apt-get"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends ca-certificates "${missing[@]}"
fi

# buildah: TestImage's builder and TestContainerRegistries' registry client
# (about 25 s of apt-get on a cold machine).
if ! command -v buildah >/dev/null 2>&1; then
	if command -v apt-get >/dev/null 2>&1; then
		sudo=()
		if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
		log "installing buildah with apt-get (the image test's builder, the container registry test's client)"
		if ! { "${sudo[@]}" apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends buildah; }; then
			log "buildah could not be installed; TestContainerRegistries (and TestImage without podman or docker) will skip and say why"
		fi
	else
		log "no buildah and no apt-get: TestContainerRegistries (and TestImage without podman or docker) will skip"
	fi
fi

# have_version BINARY VERSION: the binary exists and was built from module VERSION
# by the Go toolchain in use (staticcheck must be built by the Go it analyses for).
have_version() {
	[ -x "$1" ] || return 1
	local info
	info=$(go version -m "$1" 2>/dev/null) || return 1
	printf '%s\n' "$info" | awk '$1=="mod"{print $3}' | grep -qx "$2" || return 1
	[ "$(printf '%s\n' "$info" | head -n1 | awk '{print $2}')" = "$(go env GOVERSION)" ]
}

if have_version "$bin/staticcheck" "$STATICCHECK_VERSION"; then
	log "staticcheck $STATICCHECK_VERSION present"
else
	log "installing staticcheck $STATICCHECK_VERSION into $bin"
	# Outside the module so its go.mod is not touched.
	(cd "$bin" && GOBIN="$bin" GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION")
fi
