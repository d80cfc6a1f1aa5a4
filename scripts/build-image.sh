#!/usr/bin/env bash
# Builds a template image from images/<name>/recipe.sh into $WRENN_DIR/images/<name>/rootfs.
# Cached: rebuilt only when the recipe's hash changes. The new rootfs replaces the old one atomically.
set -euo pipefail

name=${1:?usage: build-image.sh <name>}
repo=$(cd "$(dirname "$0")/.." && pwd)
recipe="$repo/images/$name/recipe.sh"
[ -f "$recipe" ] || { echo "build-image: no recipe at $recipe" >&2; exit 2; }

WRENN_DIR=${WRENN_DIR:-/var/lib/wrenn}
dest="$WRENN_DIR/images/$name"
want=$(sha256sum "$recipe" | cut -d' ' -f1)
if [ -f "$dest/recipe.sha256" ] && [ "$(cat "$dest/recipe.sha256")" = "$want" ] && [ -d "$dest/rootfs" ]; then
  echo "image $name: up to date (recipe ${want:0:12})"
  exit 0
fi

# The mirror this machine's apt already uses, so the build reaches the same registry.
mirror=${WRENN_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -h -m1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=$(grep -h -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

mkdir -p "$dest"
work=$(mktemp -d "$dest/build.XXXXXX")
cleanup() { umount -R "$work/rootfs" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir "$work/rootfs"

echo "image $name: building from $mirror (recipe ${want:0:12}); progress follows"
start=$(date +%s)
# debootstrap prints one line per step; prefix them so the progress reads as ours.
ROOTFS="$work/rootfs" MIRROR="$mirror" bash "$recipe" 2>&1 | sed -u "s/^/  [$name] /"

rm -rf "$dest/rootfs.old"
[ -d "$dest/rootfs" ] && mv "$dest/rootfs" "$dest/rootfs.old"
mv "$work/rootfs" "$dest/rootfs"
echo "$want" >"$dest/recipe.sha256"
rm -rf "$dest/rootfs.old"
echo "image $name: built in $(( $(date +%s) - start ))s, $(du -sh "$dest/rootfs" | cut -f1)"
