#!/usr/bin/env bash
# helm-tools.sh installs the tools the chart tests use, offline-friendly and cached:
#   - Helm v3.22.0 and kubeconform v0.8.0, built with `go install` into $CREDGATE_TOOLS_BIN
#     (default ~/.cache/credgate/bin), skipped when the right version is already there;
#   - Kubernetes 1.34 JSON schemas generated from api/openapi-spec/swagger.json of the
#     module k8s.io/kubernetes@v1.34.4 (via the Go module proxy) into
#     $CREDGATE_K8S_SCHEMAS/v1.34.4-standalone-strict (default ~/.cache/credgate/k8s-schemas),
#     skipped when already generated.
# Usage: bash scripts/helm-tools.sh        (e2e/helm's TestMain runs it when something is missing)
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_VERSION=1.34.4

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
schemas=${CREDGATE_K8S_SCHEMAS:-$HOME/.cache/credgate/k8s-schemas}
mkdir -p "$bin" "$schemas"

log() { printf 'helm-tools: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists and was built from module VERSION.
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$2"
}

if have_version "$bin/helm" "$HELM_VERSION"; then
	log "helm $HELM_VERSION present"
else
	log "installing helm $HELM_VERSION (go install; takes a few minutes cold)"
	(cd "$root" && GOBIN="$bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
fi

if have_version "$bin/kubeconform" "$KUBECONFORM_VERSION"; then
	log "kubeconform $KUBECONFORM_VERSION present"
else
	log "installing kubeconform $KUBECONFORM_VERSION"
	(cd "$root" && GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION")
fi

if [ -f "$schemas/v$K8S_VERSION-standalone-strict/.complete" ]; then
	log "Kubernetes $K8S_VERSION schemas present"
else
	log "generating Kubernetes $K8S_VERSION schemas"
	dir=$(cd "$schemas" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	swagger="$dir/api/openapi-spec/swagger.json"
	[ -f "$swagger" ] || { log "missing $swagger"; exit 1; }
	(cd "$root" && go run ./scripts/k8sschema -swagger "$swagger" -version "$K8S_VERSION" -out "$schemas")
fi
