#!/bin/sh
# linux-net-initrd.sh OUT [LINUX_DIR]: a boot archive for Debian's Linux
# kernel with Tessera's root file system (the same busybox), the
# virtio-net modules, and an init that configures eth0 as Tessera's DHCP
# does (10.0.2.15/24, default route 10.0.2.2) and gives a shell on the
# console; for `make bench BENCH=net`. LINUX_DIR is where
# tests/ltp/fetch-linux.sh unpacked the kernel (default /work/linux-ref).
set -eu
out=$1
linux=${2:-/work/linux-ref}
repo=$(cd "$(dirname "$0")/../.." && pwd)
release=$(cat "$linux/release")
mods=$linux/x/lib/modules/$release/kernel
[ -f "$linux/vmlinuz" ] && [ -d "$mods" ] || { echo "linux-net: no kernel in $linux (tests/ltp/fetch-linux.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-linux-net.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ovl/lib/bench"
for m in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_pci_modern_dev.ko \
    drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci.ko net/core/failover.ko \
    drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
    cp "$mods/$m" "$work/ovl/lib/bench/"
    echo "$(basename "$m")" >>"$work/ovl/lib/bench/order"
done
cp "$repo/userspace/bench/linux-init-prelude.sh" "$work/init"
cat >>"$work/init" <<'INIT'
for m in $(cat /lib/bench/order); do insmod /lib/bench/$m || echo "linux-net: insmod $m failed"; done
i=0; while ! ifconfig eth0 >/dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up
route add default gw 10.0.2.2
echo "linux-net: eth0 configured"
exec sh
INIT
chmod +x "$work/init"
"$repo/target/release/tessera-mkinitrd" "$out" ="$repo/build/rootfs" ="$work/ovl" init="$work/init" >/dev/null
