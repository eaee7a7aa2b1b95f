#!/bin/sh
# bench-run.sh: what `make bench BENCH=linux` runs, the same script on
# Tessera (as tessera.exec=) and on Debian's Linux (from its /init), in
# the same QEMU with the same busybox and benchmark programs. Prints
# "bench NAME: N ns/op" lines (bench.c, then shell workloads timed by
# bench.c's `time` mode) between "bench-run: started" and "bench-run: done".
echo "bench-run: started"
# Tessera's rcS asks for an address by DHCP in the background (udhcpc);
# with one processor that work would land in the first figures. Wait for
# it to end (10 s at most), then let both systems settle for a second.
i=0
while [ -n "$(pidof udhcpc)" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1
b=/opt/tessera/bench/bench
$b ${BENCH_SCALE:-1}
# Shell workloads (ns per run of the whole workload).
$b time shell_loop_500_true sh -c 'i=0; while [ $i -lt 500 ]; do /bin/true; i=$((i+1)); done'
$b time shell_loop_500_expr sh -c 'i=0; while [ $i -lt 500 ]; do i=$(expr $i + 1); done'
$b time seq_sort_md5 sh -c 'seq 200000 | sort -n | md5sum >/dev/null'
$b time dd_64m_read sh -c 'dd if=/dev/zero of=/tmp/dd.64m bs=1M count=64 2>/dev/null && dd if=/tmp/dd.64m of=/dev/null bs=1M 2>/dev/null; rm -f /tmp/dd.64m'
# A 20 MB tree (ten copies of busybox) through tar and gzip; the copies
# are made before the clock starts.
mkdir -p /tmp/tree && i=0
while [ $i -lt 10 ]; do cp /bin/busybox /tmp/tree/busybox.$i; i=$((i + 1)); done
$b time tar_gzip_20m sh -c 'tar -cf - -C /tmp tree | gzip >/dev/null'
rm -rf /tmp/tree
echo "bench-run: done"
