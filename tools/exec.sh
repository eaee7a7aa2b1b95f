#!/bin/sh
# make exec: boots Tessera with the given boot archive, runs
# /etc/tessera-exec.sh with busybox sh as the only job, copies its output
# to stdout and exits with its status.
# Usage: exec.sh KERNEL INITRD MEM   (EXEC_TIMEOUT: seconds, default 600;
# EXEC_QEMU_ARGS: more QEMU options, e.g. a monitor socket for debugging)
kernel=$1
initrd=$2
mem=${3:-256M}
set --
# A fresh scratch disk (/dev/vda) for each run; DISK, when given, is
# attached as /dev/vdb (raw or qcow2) and kept (rcS mounts it at /mnt/disk).
scratch=$(mktemp "${TMPDIR:-/tmp}/tessera-scratch.XXXXXX") || exit 125
trap 'rm -f "$scratch"' EXIT
truncate -s "${SCRATCH_SIZE:-64M}" "$scratch"
if [ -n "$DISK" ]; then
    [ -f "$DISK" ] || { echo "make exec: DISK=$DISK: no such file" >&2; exit 125; }
    set -- "$@" -drive "file=$DISK,format=$(sh "$(dirname "$0")/disk-format.sh" "$DISK"),if=none,id=disk" -device virtio-blk-pci,drive=disk
fi
# The network card on isolated user networking (NETDEV from make, with
# HOSTFWD/GUESTFWD).
set -- "$@" -netdev "${NETDEV:-user,id=net0,restrict=on}" -device virtio-net-pci,netdev=net0
timeout --kill-after=5 "${EXEC_TIMEOUT:-600}" qemu-system-x86_64 \
    -machine q35 -cpu max -m "$mem" -smp "${SMP:-2}" -no-reboot \
    -drive "file=$scratch,format=raw,if=none,id=scratch" -device virtio-blk-pci,drive=scratch \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -display none -serial stdio -monitor none \
    -kernel "$kernel" -initrd "$initrd" "$@" ${EXEC_QEMU_ARGS:-} \
    -append "tessera.quiet tessera.exec=/etc/tessera-exec.sh" </dev/null
rc=$?
# The kernel leaves QEMU through isa-debug-exit: status = value * 2 + 1.
if [ $((rc % 2)) -eq 1 ]; then
    exit $(((rc - 1) / 2))
fi
echo "make exec: QEMU ended with status $rc (timeout or emulator failure)" >&2
exit 125
