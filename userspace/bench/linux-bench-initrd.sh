#!/bin/sh
# linux-bench-initrd.sh OUT [LINUX_DIR]: for `make bench BENCH=linux`, a
# boot archive for Debian's Linux with what Tessera's archive carries for
# the benchmark (the same busybox root file system, /opt/tessera/bench,
# the test programs and Debian's dynamically linked programs), and an
# init that mounts /dev, /proc, /sys and /tmp as Tessera's rcS does, runs
# /opt/tessera/bench/bench-run.sh and powers off. Also writes
# LINUX_DIR/vmlinux, the uncompressed kernel (booted through PVH, so that
# decompression does not count in its boot time), once.
# LINUX_DIR: where tests/ltp/fetch-linux.sh unpacked the kernel
# (default /work/linux-ref).
set -eu
out=$1
linux=${2:-/work/linux-ref}
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$linux/vmlinuz" ] || { echo "linux-bench: no kernel in $linux (tests/ltp/fetch-linux.sh)" >&2; exit 2; }
if [ ! -s "$linux/vmlinux" ]; then
    # The xz-compressed payload of the bzImage (Debian builds with XZ).
    offset=$(grep -abo "$(printf '\3757zXZ')" "$linux/vmlinuz" | head -n1 | cut -d: -f1)
    [ -n "$offset" ] || { echo "linux-bench: no xz payload in $linux/vmlinuz" >&2; exit 2; }
    tail -c +$((offset + 1)) "$linux/vmlinuz" | xz -dc --single-stream >"$linux/vmlinux.part" 2>/dev/null || true
    [ -s "$linux/vmlinux.part" ] || { echo "linux-bench: could not unpack $linux/vmlinuz" >&2; exit 2; }
    mv "$linux/vmlinux.part" "$linux/vmlinux"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-linux-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$repo/userspace/bench/linux-init-prelude.sh" "$work/init"
cat >>"$work/init" <<'INIT'
sh /opt/tessera/bench/bench-run.sh
poweroff -f
INIT
chmod +x "$work/init"
b=$repo/build
"$repo/target/release/tessera-mkinitrd" "$out" ="$b/rootfs" opt/tessera/bin="$b/userspace/bin" \
    opt/tessera/bench="$b/userspace/bench" ="$b/debian" init="$work/init" >/dev/null
