#!/bin/sh
# Cell figures for `make bench` (run inside Tessera): load time and memory
# per loaded cell, swap downtime (gate closed to reopened) of each slot
# (11 swaps each: a median that one cold or disturbed swap does not move),
# and recovery time after a contained fault. Lines start with "cellbench".
free_kib() { awk '/MemFree/ { print $2 }' /proc/meminfo; }
before=$(free_kib)
for i in 1 2 3 4 5 6 7 8 9 10; do cellctl load /lib/cells/virtio_blk.cell; done | sed 's/^/cellbench load: /'
after=$(free_kib)
echo "cellbench memory: $((before - after)) KiB for 10 loaded copies of virtio_blk"
for i in 1 2 3 4 5 6 7 8 9 10; do cellctl unload virtio_blk >/dev/null; done
for i in $(seq 11); do cellctl swap virtio_blk /lib/cells/virtio_blk.cell; done | sed 's/^/cellbench swap: /'
for i in $(seq 11); do cellctl swap console /lib/cells/uart16550.cell; done | sed 's/^/cellbench swap: /'
for i in $(seq 11); do cellctl swap tty /lib/cells/tty.cell; done | sed 's/^/cellbench swap: /'
for slot in virtio_net netstack ext2 tmpfs procfs; do
    for i in $(seq 11); do cellctl swap $slot /lib/cells/$slot.cell; done | sed 's/^/cellbench swap: /'
done
# Recovery of the file-system cells: their faulty builds panic on a name
# (tmpfs) or on rendering /proc/loadavg (procfs). A request that works
# comes between faults, so that no fault counts as one of a row (those
# wait longer before the restart, on purpose).
cellctl swap tmpfs /lib/cells/tmpfs-faulty.cell >/dev/null
for i in 1 2 3 4 5; do touch /tmp/tmpfs-fault-$i 2>/dev/null; touch /tmp/cellbench-$i; done
cellctl info tmpfs | sed 's/^/cellbench recovery: /'
cellctl swap tmpfs /lib/cells/tmpfs.cell >/dev/null
cellctl swap procfs /lib/cells/procfs-faulty.cell >/dev/null
for i in 1 2 3 4 5; do cat /proc/loadavg >/dev/null 2>&1; cat /proc/uptime >/dev/null; done
cellctl info procfs | sed 's/^/cellbench recovery: /'
cellctl swap procfs /lib/cells/procfs.cell >/dev/null
cellctl swap virtio_blk /lib/cells/virtio_blk-faulty.cell >/dev/null
disk-loop 40 >/dev/null
cellctl info virtio_blk | sed 's/^/cellbench recovery: /'
cellctl swap virtio_blk /lib/cells/virtio_blk.cell >/dev/null
echo "cellbench done"
