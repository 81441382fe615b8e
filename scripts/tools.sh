#!/usr/bin/env bash
# tools.sh is what `make tools` runs: every tool the tests use, built or
# installed by its own script and cached under ~/.cache/credgate (a warm
# run only checks versions, in seconds).
#
# The cold builds are large (SPIRE alone about 20 minutes with one compile
# job) and each script builds niced with one compile job, so they run in
# three lanes at once: on 2 cores one lane's module downloads and links
# overlap another's compiles, instead of a core idling through each
# download in turn. The lanes are balanced by cold build time:
#   1. staticcheck (test-tools.sh, which also apt-installs what is
#      missing, so it runs first in its lane), Ory Hydra, the OpenTelemetry
#      Collector
#   2. SPIRE
#   3. Helm + kubeconform + the Kubernetes schemas, MinIO, promtool, the
#      npm ws package, CNCF Distribution's registry
# Each lane's output is printed whole when the lane ends, each tool with
# the seconds it took. A tool that cannot be built is said; its tests then
# skip or fall back and say why. Only test-tools.sh failing fails this
# (staticcheck is part of `make test`).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

logs=$(mktemp -d "${TMPDIR:-/tmp}/credgate-tools.XXXXXX")
trap 'rm -rf "$logs"' EXIT

# step SCRIPT WHAT-FAILS: runs scripts/SCRIPT, saying how long it took,
# and on failure what the tests do without it.
step() {
	local start rc
	start=$(date +%s)
	bash "scripts/$1"
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "tools: $1 failed (exit $rc) after $(($(date +%s) - start))s; $2"
	else
		echo "tools: $1 done in $(($(date +%s) - start))s"
	fi
	return $rc
}

lane1() {
	step test-tools.sh "make test's staticcheck and the tests that need the missing commands cannot run" || return 1
	step hydra.sh "TestOAuth2AuthorizationServer will fall back to the go-oauth2 server and say why"
	step otelcol.sh "TestTracingCollector will skip and say why"
	return 0
}

lane2() {
	step spire.sh "TestSPIRE will skip and say why"
	return 0
}

lane3() {
	step helm-tools.sh "e2e/helm's TestMain will try again and fail saying why"
	step minio-tools.sh "the AWS e2e tests will skip and say why"
	step promtool.sh "e2e/helm's TestPromtoolCheckRules will skip and say why"
	step node-ws.sh "e2e's Node WebSocket placeholder test will skip and say why"
	step distribution.sh "e2e TestContainerRegistries will try again and fail saying why"
	return 0
}

start=$(date +%s)
pids=()
for lane in 1 2 3; do
	"lane$lane" >"$logs/$lane" 2>&1 &
	pids+=($!)
done
rc=0
for i in 0 1 2; do
	wait "${pids[$i]}" || rc=1
	cat "$logs/$((i + 1))"
done
echo "tools: all lanes done in $(($(date +%s) - start))s"
exit $rc
