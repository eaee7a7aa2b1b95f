#!/bin/sh
# The start of /init in the boot archives the benchmarks make for Debian's
# Linux (linux-bench-initrd.sh, linux-net-initrd.sh): the console, and
# /dev, /proc, /sys and /tmp mounted as Tessera's rcS mounts them.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
