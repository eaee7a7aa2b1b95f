#!/bin/sh
# Fetches Debian's Linux kernel image (the reference run of tests/ltp/run.sh
# --linux) with apt-get download and unpacks it outside the repository.
# Usage: tests/ltp/fetch-linux.sh [DIR]   (default /work/linux-ref)
# Writes DIR/vmlinuz, DIR/config and DIR/release (its uname -r).
set -eu
dir=${1:-/work/linux-ref}
mkdir -p "$dir"
cd "$dir"
# linux-image-amd64 depends on the current linux-image-<abi>-amd64.
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
if [ -z "$pkg" ]; then
    # A machine whose package lists were never fetched (or were cleaned).
    $( [ "$(id -u)" = 0 ] || echo sudo ) apt-get update -qq || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }')
fi
[ -n "$pkg" ] || { echo "fetch-linux: no linux-image-amd64 in apt's lists (apt-get update?)" >&2; exit 1; }
ls "$pkg"_*.deb >/dev/null 2>&1 || apt-get download "$pkg"
deb=$(ls "$pkg"_*.deb | tail -n1)
rm -rf x && dpkg-deb -x "$deb" x
cp x/boot/vmlinuz-* vmlinuz
cp x/boot/config-* config
# The kernel release (uname -r): LTP looks for /boot/config-RELEASE.
basename x/boot/vmlinuz-* | sed 's/^vmlinuz-//' >release
echo "fetch-linux: $dir/vmlinuz from $deb"
