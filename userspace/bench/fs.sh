#!/bin/sh
# fs.sh [DIR] [DEVICE]: file-system figures for `make bench`, the same
# script on Tessera and on Linux (in the same QEMU): DEVICE (ext2) is
# mounted at DIR; caches are dropped by unmounting and mounting again, and
# every writing workload ends with `sync`, so what is timed reached the
# disk. Times come from /proc/uptime (10 ms). Lines start with "fsbench".
dir=${1:-/mnt/disk}
dev=${2:-/dev/vdb}
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
remount() {
    cd / && umount "$dir" && mount -t ext2 "$dev" "$dir" || echo "fsbench: remounting $dev failed"
}
grep -q " $dir " /proc/mounts || mount -t ext2 "$dev" "$dir" || { echo "fsbench: cannot mount $dev"; exit 1; }

# A 20 MB tree to unpack: 20 directories of 20 files of 50 KB (random).
mkdir -p /tmp/fsb/tree && cd /tmp/fsb || exit 1
dd if=/dev/urandom of=/tmp/fsb/random bs=1M count=20 2>/dev/null
n=0
for d in $(seq 1 20); do
    mkdir tree/d$d
    for f in $(seq 1 20); do
        dd if=random of=tree/d$d/f$f bs=50k skip=$n count=1 2>/dev/null
        n=$((n + 1))
    done
done
tar cf /tmp/fsb/tree.tar tree && rm -r tree random

# Sequential write and read of 64 MiB.
a=$(now); dd if=/dev/zero of="$dir/seq" bs=1M count=64 2>/dev/null; sync; s=$(since "$a")
echo "fsbench seq-write: $s s for 64 MiB"
remount
a=$(now); dd if="$dir/seq" of=/dev/null bs=1M 2>/dev/null; s=$(since "$a")
echo "fsbench seq-read: $s s for 64 MiB"
rm "$dir/seq"; sync

# 10,000 small files: create (the shell's own echo: no process per file),
# then remove them all with one rm.
mkdir "$dir/many"
a=$(now); (cd "$dir/many" && i=0 && while [ $i -lt 10000 ]; do echo $i > f$i; i=$((i + 1)); done); sync; s=$(since "$a")
echo "fsbench create: $s s for 10000 files"
remount
a=$(now); rm -r "$dir/many"; sync; s=$(since "$a")
echo "fsbench delete: $s s for 10000 files"

# Unpack the tree (cold cache for the archive's metadata on the disk side).
a=$(now); tar xf /tmp/fsb/tree.tar -C "$dir"; sync; s=$(since "$a")
echo "fsbench tar-x: $s s for 20 MB in 400 files"
remount
a=$(now); tar cf - -C "$dir" tree | wc -c >/dev/null; s=$(since "$a")
echo "fsbench tar-c: $s s reading it back"
rm -r "$dir/tree" /tmp/fsb; sync
echo "fsbench done"
