#!/usr/bin/env bash
# stamp.sh prints the build stamp of this checkout as shell assignments,
# for `eval "$(bash scripts/stamp.sh)"`:
#   VERSION  $VERSION if set, else the chart's appVersion (charts/credgate/Chart.yaml),
#            so the image tag `make image` builds is what the chart deploys
#   COMMIT   the commit hash (git rev-parse HEAD), "unknown" outside git
#   DATE     the commit's date, UTC, RFC 3339 (not the build time: two
#            builds of one commit are byte-identical)
# scripts/gobuild.sh, scripts/image.sh and scripts/release.sh use it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

version=${VERSION:-}
if [ -z "$version" ]; then
	version=$(awk '$1=="appVersion:"{gsub(/"/,"",$2); print $2}' "$root/charts/credgate/Chart.yaml")
fi
commit=unknown
date=1970-01-01T00:00:00Z
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git -C "$root" rev-parse HEAD)
	date=$(TZ=UTC git -C "$root" log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd HEAD)
fi
printf 'VERSION=%q\nCOMMIT=%q\nDATE=%q\n' "$version" "$commit" "$date"
