#!/bin/sh
# Builds the root file system tree for Tessera's boot archive:
# Debian's busybox-static with a link for every applet, /etc for a
# login-free shell on the console, and the mount points init expects.
# Usage: make-rootfs.sh OUTPUT_DIR [BUSYBOX]
set -eu
out=$1
busybox=${2:-/bin/busybox}
here=$(dirname "$0")

if ! [ -x "$busybox" ]; then
    echo "make-rootfs: $busybox not found (install busybox-static: make deps)" >&2
    exit 1
fi
if readelf -l "$busybox" | grep -q INTERP; then
    echo "make-rootfs: $busybox is dynamically linked; the root file system needs Debian's static busybox (busybox-static)" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out"
for dir in bin sbin usr/bin usr/sbin etc/init.d proc sys dev tmp root mnt var/log; do
    mkdir -p "$out/$dir"
done
cp "$busybox" "$out/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    ln -sf /bin/busybox "$out/$applet"
done
cp -R "$here/etc/." "$out/etc/"
chmod 755 "$out/etc/init.d/rcS"
chmod 755 "$out/etc/udhcpc/default.script"
chmod 1777 "$out/tmp"
chmod 600 "$out/etc/shadow"
# busybox is set-user-id root so that su, passwd and login work for
# ordinary users; it drops the rights at once for every other applet
# (its FEATURE_SUID, which Debian's build has).
chmod 4755 "$out/bin/busybox"
