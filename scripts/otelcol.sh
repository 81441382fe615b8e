#!/usr/bin/env bash
# otelcol.sh builds a small OpenTelemetry Collector, otelcol-credgate, that the
# tracing and OTLP-audit e2e tests (e2e/tracing_test.go) export to, offline-
# friendly and cached:
#   - a throwaway module under $CREDGATE_BUILD_DIR/otelcol (default
#     ~/.cache/credgate/build/otelcol), outside the repository, so credgate's
#     go.mod never sees the Collector's dependencies;
#   - the core distribution pieces (go.opentelemetry.io/collector/otelcol, the
#     OTLP receiver: gRPC and HTTP) and contrib's file exporter, all at ONE
#     release, $OTELCOL_VERSION: contrib's fileexporter is known to build at
#     v0.161.0 only (newer releases need packages the proxy does not serve),
#     and Collector modules of different releases do not build together;
#   - config read from a file (the file provider), ${env:VAR} expanded (the
#     env provider, also the default scheme the Collector insists on);
#   - built niced into $CREDGATE_TOOLS_BIN/otelcol-credgate (default
#     ~/.cache/credgate/bin); skipped when that version is already there.
# Cold (empty module and build caches), measured on the shared 2-core
# machine under load, niced: 12m44s wall clock, of which 1m54s user and
# 30s system CPU; the rest is downloading about 500 MB of modules. Warm: a
# version check, about a second.
# `go test` never runs this script: the e2e tests skip, naming it, when the
# binary is missing.
# Usage: bash scripts/otelcol.sh     (the Makefile's `tools` target runs it)
set -euo pipefail

OTELCOL_VERSION=v0.161.0

bin=${CREDGATE_TOOLS_BIN:-$HOME/.cache/credgate/bin}
build=${CREDGATE_BUILD_DIR:-$HOME/.cache/credgate/build}/otelcol
mkdir -p "$bin" "$build"

log() { printf 'otelcol: %s\n' "$*" >&2; }

# have_version BINARY VERSION: the binary exists, was built from module
# VERSION, has the env provider and runs (binaries of earlier recipes did
# not).
have_version() {
	[ -x "$1" ] && go version -m "$1" 2>/dev/null | awk '$1=="dep" && $2=="go.opentelemetry.io/collector/otelcol"{print $3}' | grep -qx "$2" &&
		go version -m "$1" 2>/dev/null | grep -q 'confmap/provider/envprovider' &&
		"$1" components 2>/dev/null | grep -q '^exporters:'
}

if have_version "$bin/otelcol-credgate" "$OTELCOL_VERSION"; then
	log "otelcol-credgate $OTELCOL_VERSION present"
	exit 0
fi

log "building otelcol-credgate $OTELCOL_VERSION in $build (several minutes cold)"
start=$(date +%s)
cd "$build"
export GOFLAGS=-mod=mod
[ -f go.mod ] || go mod init credgate.invalid/otelcol-build >/dev/null 2>&1
cat >main.go <<'GO'
// Command otelcol-credgate is a minimal OpenTelemetry Collector for
// credgate's e2e tests: OTLP receiver (gRPC and HTTP) and the file exporter.
package main

import (
	"fmt"
	"os"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

func components() (otelcol.Factories, error) {
	f := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	var err error
	if f.Receivers, err = otelcol.MakeFactoryMap[receiver.Factory](otlpreceiver.NewFactory()); err != nil {
		return f, err
	}
	if f.Exporters, err = otelcol.MakeFactoryMap[exporter.Factory](fileexporter.NewFactory()); err != nil {
		return f, err
	}
	return f, nil
}

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-credgate",
			Description: "OpenTelemetry Collector for credgate's e2e tests (OTLP in, file out)",
			Version:     "credgate",
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
				DefaultScheme:     "env",
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "otelcol-credgate:", err)
		os.Exit(1)
	}
}
GO
go get "go.opentelemetry.io/collector/otelcol@$OTELCOL_VERSION" \
	"go.opentelemetry.io/collector/receiver/otlpreceiver@$OTELCOL_VERSION" \
	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter@$OTELCOL_VERSION"
# confmap's providers are released with confmap (a v1 module): take the
# version the modules above already chose, so the set stays one release.
confmap=$(go list -m -f '{{.Version}}' go.opentelemetry.io/collector/confmap)
go get "go.opentelemetry.io/collector/confmap/provider/fileprovider@$confmap" \
	"go.opentelemetry.io/collector/confmap/provider/envprovider@$confmap"
# No `go mod tidy`: it would download the test dependencies of every
# module in the graph (about half the cold time); go build -mod=mod
# records what the build needs.
nice -n 10 go build -trimpath -o "$bin/otelcol-credgate.tmp" .
mv "$bin/otelcol-credgate.tmp" "$bin/otelcol-credgate"
log "otelcol-credgate $OTELCOL_VERSION built in $(($(date +%s) - start))s: $bin/otelcol-credgate"
