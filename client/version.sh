#!/bin/sh
# client/version.sh: prints the version written in tessera/version.h (MAJOR.MINOR.PATCH), for
# project() in the top-level meson.build; the header is the only place the version lives.
# Fails (and so does meson setup) when the header's TESSERA_VERSION string disagrees with its
# three numbers, or when one of them is missing.
set -eu
h=${1:-$(dirname "$0")/include/tessera/version.h}
num() { sed -n "s/^#define TESSERA_VERSION_$1 \([0-9][0-9]*\)\$/\1/p" "$h"; }
major=$(num MAJOR) minor=$(num MINOR) patch=$(num PATCH)
str=$(sed -n 's/^#define TESSERA_VERSION "\([^"]*\)"$/\1/p' "$h")
if [ -z "$major" ] || [ -z "$minor" ] || [ -z "$patch" ]; then
  echo "version.sh: $h: TESSERA_VERSION_MAJOR/MINOR/PATCH not found" >&2
  exit 1
fi
if [ "$str" != "$major.$minor.$patch" ]; then
  echo "version.sh: $h: TESSERA_VERSION \"$str\" is not $major.$minor.$patch" >&2
  exit 1
fi
echo "$major.$minor.$patch"
