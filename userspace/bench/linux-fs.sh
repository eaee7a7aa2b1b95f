#!/bin/sh
# linux-fs.sh IMAGE [LINUX_DIR]: runs fs.sh on Debian's Linux kernel in the
# same QEMU as Tessera's figures (q35, -cpu max, TCG, 512 MiB, the image
# as the second virtio-blk disk /dev/vdb), for `make bench`. LINUX_DIR
# is where tests/ltp/fetch-linux.sh unpacked the kernel package
# (default /work/linux-ref). Prints the guest's "fsbench" lines.
set -eu
image=$1
linux=${2:-/work/linux-ref}
repo=$(cd "$(dirname "$0")/../.." && pwd)
release=$(cat "$linux/release")
mods=$linux/x/lib/modules/$release/kernel
[ -f "$linux/vmlinuz" ] && [ -d "$mods" ] || { echo "linux-fs: no kernel in $linux (tests/ltp/fetch-linux.sh)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-linux-fs.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ovl/lib/bench" "$work/ovl/opt/bench"
# The modules for virtio-blk and ext2 (ext4's driver), in load order.
for m in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_pci_modern_dev.ko \
    drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko \
    lib/crc16.ko crypto/crc32c_generic.ko fs/mbcache.ko fs/jbd2/jbd2.ko fs/ext4/ext4.ko; do
    cp "$mods/$m" "$work/ovl/lib/bench/"
    echo "$(basename "$m")" >>"$work/ovl/lib/bench/order"
done
cp "$repo/userspace/bench/fs.sh" "$work/ovl/opt/bench/fs.sh"
cat >"$work/init" <<'EOF'
#!/bin/sh
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/bench/order); do insmod /lib/bench/$m || echo "fsbench: insmod $m failed"; done
i=0; while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p /mnt/disk
sh /opt/bench/fs.sh /mnt/disk /dev/vdb
umount /mnt/disk
poweroff -f
EOF
chmod +x "$work/init"
truncate -s 16M "$work/scratch"
"$repo/target/release/tessera-mkinitrd" "$work/initrd.cpio" ="$repo/build/rootfs" ="$work/ovl" init="$work/init" >/dev/null
timeout --kill-after=5 900 qemu-system-x86_64 -machine q35 -cpu max -m 512M -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -display none -serial stdio -monitor none \
    -drive "file=$work/scratch,format=raw,if=none,id=scratch" -device virtio-blk-pci,drive=scratch \
    -drive "file=$image,format=raw,if=none,id=disk" -device virtio-blk-pci,drive=disk \
    -kernel "$linux/vmlinuz" -initrd "$work/initrd.cpio" -append "console=ttyS0 quiet panic=-1" </dev/null \
    | tr -d "\r" | tee /tmp/linux-fs.log | grep -a "^fsbench"
