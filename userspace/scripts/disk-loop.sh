#!/bin/sh
# disk-loop [ROUNDS] [DEVICE] [FIRST]: write random data to the disk with
# dd and read it back, checking every round by MD5. Each round writes
# 64 KiB (16 writes of 4 KiB) at its own offset within the 4 MiB that start
# at 4 KiB block FIRST (default 0), then reads it and compares. Loops with
# FIRST 1024 apart share a disk without touching each other's blocks.
# Prints one line per round and a summary; exits 1 if any round failed.
# The fault-containment demo runs it while swapping the disk driver:
#   cellctl swap virtio_blk /lib/cells/virtio_blk-faulty.cell
#   disk-loop 200 &
#   cellctl swap virtio_blk /lib/cells/virtio_blk.cell
rounds=${1:-100}
dev=${2:-/dev/vda}
first=${3:-0}
tmp=/tmp/disk-loop.$$
errors=0
i=1
while [ "$i" -le "$rounds" ]; do
    dd if=/dev/urandom of=$tmp bs=4096 count=16 2>/dev/null
    want=$(md5sum < $tmp)
    seek=$(( first + (i % 64) * 16 ))
    if ! dd if=$tmp of="$dev" bs=4096 seek=$seek conv=fsync 2>/dev/null; then
        echo "round $i: write FAILED"
        errors=$((errors + 1))
    else
        got=$(dd if="$dev" bs=4096 skip=$seek count=16 2>/dev/null | md5sum)
        if [ "$got" = "$want" ]; then
            echo "round $i ok"
        else
            echo "round $i: checksum MISMATCH"
            errors=$((errors + 1))
        fi
    fi
    i=$((i + 1))
done
rm -f $tmp
echo "disk-loop: $rounds rounds, $errors errors"
[ "$errors" -eq 0 ]
