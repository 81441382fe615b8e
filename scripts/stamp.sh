#!/usr/bin/env bash
# stamp.sh prints the build stamp of this checkout as shell assignments,
# for `eval "$(bash scripts/stamp.sh)"`:
#   VERSION  $VERSION if set, else the chart's appVersion (charts/credgate/Chart.yaml),
#            so the image tag `make image` builds is what the chart deploys
#   COMMIT   the commit hash (git rev-parse HEAD), with "-dirty" appended when
#            tracked files differ from it (the build is not that commit's);
#            "unknown" outside git
#   DATE     the build date, UTC, RFC 3339: $SOURCE_DATE_EPOCH if set (the
#            reproducible-builds.org convention, e.g. for a build from a source
#            tarball), else the commit's date (not the build time: two builds of
#            one commit are byte-identical), else 1970-01-01T00:00:00Z
#   SOURCE_DATE_EPOCH  DATE in Unix seconds (image.sh stamps the image with it)
# scripts/gobuild.sh, scripts/image.sh and scripts/release.sh use it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

version=${VERSION:-}
if [ -z "$version" ]; then
	version=$(awk '$1=="appVersion:"{gsub(/"/,"",$2); print $2}' "$root/charts/credgate/Chart.yaml")
fi
commit=unknown
epoch=0
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
	commit=$(git -C "$root" rev-parse HEAD)
	if ! git -C "$root" diff --quiet HEAD -- 2>/dev/null; then
		commit=$commit-dirty
	fi
	epoch=$(git -C "$root" log -1 --format=%ct HEAD)
fi
if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
	case $SOURCE_DATE_EPOCH in
	*[!0-9]*)
		printf 'stamp: SOURCE_DATE_EPOCH=%s is not a number of seconds since 1970 (e.g. $(git log -1 --format=%%ct))\n' "$SOURCE_DATE_EPOCH" >&2
		exit 1
		;;
	esac
	epoch=$SOURCE_DATE_EPOCH
fi
# GNU date (-d @N) or BSD date (-r N).
date=$(TZ=UTC date -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || TZ=UTC date -r "$epoch" +%Y-%m-%dT%H:%M:%SZ)
printf 'VERSION=%q\nCOMMIT=%q\nDATE=%q\nSOURCE_DATE_EPOCH=%q\n' "$version" "$commit" "$date" "$epoch"
