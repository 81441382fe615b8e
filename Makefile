# credgate — one command per job. A newcomer runs `make test`.
#
#   make test    install test tools (cached: staticcheck, Ory Hydra, MinIO, SPIRE, promtool,
#                an OpenTelemetry Collector), gofmt
#                check, go vet, a build for darwin and windows, staticcheck, then every
#                test (unit + e2e) with -race
#   make test-spire  only the end-to-end test against a real SPIRE server and agent
#   make build   build bin/credgate (static, stamped with version, commit and commit date)
#   make image   the container image (Containerfile, FROM scratch, offline) with podman,
#                buildah or docker: $(IMAGE):$(VERSION), and bin/credgate-image.oci.tar
#   make release cross-compiled binaries, SHA256SUMS and a CycloneDX SBOM in dist/
#   make demo    run `credgate demo` (a gateway plus a local SaaS echo origin)
#   make bench   the benchmark in bench/ (figures, not a pass/fail test)
#   make soak    the long-running suite (not part of test): the real gateway for 10 minutes at
#                80% of its measured keep-alive peak with HTTP/1.1, HTTP/2, uploads and WebSocket;
#                fails on any error or on RSS, goroutine or fd growth (docs/reliability.md).
#                SOAK_FLAGS="-duration 1m" to shorten
#   make soak-faults  the soak with faults injected while it runs (Redis, Vault and an OAuth2
#                token endpoint behind Toxiproxy down, slow, resetting, sealed, answering 503;
#                policy broken and fixed; SIGHUP storms; CA rotated; upstream resets mid-body;
#                STS throttling in front of a real MinIO, when built;
#                SOAK_FLAGS=-sentinel: Redis failovers under three Sentinels): nothing forwarded without
#                its credential, no secret in the output, recovery within the bound
#                (docs/reliability.md)
#   make fuzz    run the fuzz targets briefly (FUZZTIME each; not part of test)

GO        ?= go
TOOLS_BIN ?= $(HOME)/.cache/credgate/bin
STATICCHECK := $(TOOLS_BIN)/staticcheck
FUZZTIME  ?= 30s
TEST_TIMEOUT ?= 30m

export CREDGATE_TOOLS_BIN := $(TOOLS_BIN)

# VERSION defaults to the chart's appVersion, so the image tag is what the
# chart deploys; IMAGE is the repository the chart's image.repository names.
VERSION   ?= $(shell awk '$$1=="appVersion:"{gsub(/"/,"",$$2); print $$2}' charts/credgate/Chart.yaml)
IMAGE     ?= ghcr.io/credgate/credgate
export VERSION IMAGE

.PHONY: all test tools fmt-check vet cross-build staticcheck test-go test-spire build image release demo bench pgo soak soak-faults fuzz clean

all: build

test: tools fmt-check vet cross-build staticcheck test-go

# Ory Hydra (the OAuth2 e2e peer), MinIO, SPIRE, promtool (checks the
# chart's alert rules), Helm and kubeconform, and an OpenTelemetry Collector
# (the tracing e2e peer) are built here too, outside go test's timeout, by
# scripts/tools.sh: three lanes at once, each tool by its own script. A
# cold build takes minutes (SPIRE: about 20 with one compile job), later
# runs only check the versions. If one cannot be built, its tests say why
# and fall back or skip.
tools:
	@bash scripts/tools.sh

# gofmt -l prints the files whose formatting differs; any output fails.
fmt-check:
	@files=$$(find . -name '*.go' -not -path './.git/*' -print0 | xargs -0 gofmt -l); \
	if [ -n "$$files" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$files"; \
		exit 1; \
	fi

vet:
	$(GO) vet ./...

# The code builds for the other platforms too (per-platform files such as
# park_linux.go and its fallback, syscall calls only Unix has): darwin, a
# release target, and windows. The test files are not compiled here (their
# SDK dependencies would make it minutes). Go caches each platform's
# packages: about 20 s warm; a cold cache compiles every dependency again
# per platform (several minutes on 2 cores). bench/cmd/credgate-bench is
# Linux-only by its build constraints.
cross-build:
	GOOS=darwin $(GO) build ./...
	GOOS=windows $(GO) build ./...

staticcheck: tools
	$(STATICCHECK) ./...

# Tests that can use a real peer or an in-repo emulation of it (Vault,
# Ory Hydra or the go-oauth2 server)
# append which one they used to CREDGATE_PEERS_LOG; it is printed after
# the run.
test-go:
	@peers=$$(mktemp); \
	CREDGATE_PEERS_LOG=$$peers $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...; rc=$$?; \
	if [ -s $$peers ]; then echo "peers used by the tests:"; sed 's/^/  /' $$peers; fi; \
	rm -f $$peers; exit $$rc

# The real-SPIRE end-to-end test alone (make test runs it too): builds
# spire-server and spire-agent if missing, then runs e2e's TestSPIRE.
test-spire:
	@bash scripts/spire.sh
	$(GO) test -race -count=1 -run '^TestSPIRE$$' -v ./e2e

build:
	@bash scripts/gobuild.sh bin/credgate

# scripts/image.sh builds the binary here and assembles the image FROM
# scratch: nothing is pulled. Exit 3 when no builder works.
image:
	@bash scripts/image.sh bin

# scripts/release.sh: linux and darwin, amd64 and arm64, reproducible
# (stamped with the commit's date), SHA256SUMS and an SBOM, into dist/.
release:
	@bash scripts/release.sh dist

demo:
	$(GO) run ./cmd/credgate demo

# bench/run.sh builds credgate and the driver and prints the figures
# (BENCH_FLAGS are passed on, e.g. BENCH_FLAGS="-duration 10s").
bench:
	@if [ -f bench/run.sh ]; then \
		GO=$(GO) bash bench/run.sh $(BENCH_FLAGS); \
	else \
		$(GO) run ./bench/cmd/...; \
	fi

# scripts/pgo.sh writes cmd/credgate/default.pgo, a CPU profile of
# credgate under the bench's keep-alive and newconn scenarios, which go
# build then uses for profile-guided optimisation. Not committed: it did
# not measurably help (docs/performance.md); this is how to try again.
# PGO_FLAGS are passed to bench/run.sh, e.g. PGO_FLAGS="-rounds 5".
pgo:
	GO=$(GO) bash scripts/pgo.sh $(PGO_FLAGS)

# bench/run.sh soak builds credgate and the driver and runs the soak
# (SOAK_FLAGS are passed on, e.g. SOAK_FLAGS="-duration 1m"); non-zero
# exit when a verdict fails. docs/reliability.md.
soak:
	GO=$(GO) bash bench/run.sh soak $(SOAK_FLAGS)

# Toxiproxy's server is built once (scripts/toxiproxy.sh, cached like the
# test tools); redis-server comes from Debian.
soak-faults:
	@bash scripts/toxiproxy.sh
	GO=$(GO) bash bench/run.sh soak -faults $(SOAK_FLAGS)

# -fuzz accepts one package and one target per run.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./policy
	$(GO) test -run='^$$' -fuzz='^FuzzGlobSlashAdded$$' -fuzztime=$(FUZZTIME) ./policy
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./internal/batch
	$(GO) test -run='^$$' -fuzz='^FuzzLookup$$' -fuzztime=$(FUZZTIME) ./internal/batch
	$(GO) test -run='^$$' -fuzz='^FuzzRequestParse$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzH1Conn$$' -fuzztime=$(FUZZTIME) ./gateway/internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzFramingScan$$' -fuzztime=$(FUZZTIME) ./gateway/internal/h1
	$(GO) test -run='^$$' -fuzz='^FuzzRestrictedCoversNetip$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzClientBodyBlame$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzParseTarget$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzProxyHeader$$' -fuzztime=$(FUZZTIME) ./gateway
	$(GO) test -run='^$$' -fuzz='^FuzzChunkBuffer$$' -fuzztime=$(FUZZTIME) ./injectors/sigv4
	$(GO) test -run='^$$' -fuzz='^FuzzParsePath$$' -fuzztime=$(FUZZTIME) ./internal/canonical
	$(GO) test -run='^$$' -fuzz='^FuzzAuthority$$' -fuzztime=$(FUZZTIME) ./internal/canonical
	$(GO) test -run='^$$' -fuzz='^FuzzResponse$$' -fuzztime=$(FUZZTIME) ./gateway/internal/h1client
	$(GO) test -run='^$$' -fuzz='^FuzzSameBytesAsTransport$$' -fuzztime=$(FUZZTIME) ./gateway/internal/h1client
	$(GO) test -run='^$$' -fuzz='^FuzzWriteRequest$$' -fuzztime=$(FUZZTIME) ./gateway/internal/h1client
	$(GO) test -run='^$$' -fuzz='^FuzzMatcherMany$$' -fuzztime=$(FUZZTIME) ./transform

clean:
	rm -rf bin dist
