//! The in-memory file systems served by the `tmpfs` cell (`devtmpfs`,
//! `sysfs`) in QEMU: their contents, a swap of the cell under load with a
//! file held open, a fault in the cell, memory coming back when files
//! go, and `umount`.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(120);

fn boot(name: &str) -> Machine {
    let mut options = MachineOptions::kernel("");
    options.memory = "512M".into();
    options.wall_clock = Duration::from_secs(900);
    let mut m = Machine::start(name, &options);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m
}

fn run(m: &mut Machine, command: &str, answer: &str) -> String {
    m.shell(command, answer, Duration::from_secs(300))
}

/// Runs `command` and returns its output (up to a marker the command
/// line itself does not contain).
fn capture(m: &mut Machine, command: &str) -> String {
    m.capture(command, Duration::from_secs(300))
}

/// `Shmem` (the pages of the in-memory file systems) in KiB.
fn shmem_kib(m: &mut Machine) -> u64 {
    let out = capture(m, "grep Shmem /proc/meminfo");
    out.lines().find_map(|l| l.strip_prefix("Shmem:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no Shmem in {out}"))
}

#[test]
fn devtmpfs_and_sysfs_come_from_the_tmpfs_cell_which_swaps_and_faults_without_losing_files() {
    let mut m = boot("memfs");
    run(&mut m, "grep -c ' tmpfs .*fs .*active' /proc/cells", "1");
    // sysfs, filled by the kernel through the cell.
    run(&mut m, "stat -f /sys | grep Type", "Type: sysfs");
    run(&mut m, "cat /sys/class/block/vda/dev", "254:0");
    // devtmpfs: the kernel's device nodes, and a writable tmpfs besides.
    run(&mut m, "mkdir -p /mnt/d && mount -t devtmpfs dev /mnt/d && ls -l /mnt/d/vda /mnt/d/null", "1,   3");
    run(&mut m, "head -c 5 /mnt/d/zero | od -An -c", "\\0  \\0  \\0  \\0  \\0");
    run(&mut m, "stat -f /mnt/d | grep Type", "Type: tmpfs");

    // Eight swaps of the cell while tar unpacks into the mount and a file
    // there stays open for writing.
    run(
        &mut m,
        "mkdir /tmp/src && cp -a /bin /etc /lib/cells /tmp/src/ && dd if=/dev/urandom of=/tmp/src/random bs=64k count=32 2>/dev/null \
         && tar cf /tmp/src.tar -C /tmp src && exec 3>/mnt/d/open && echo ready",
        "ready",
    );
    run(
        &mut m,
        "for i in 1 2 3 4 5 6 7 8; do mkdir /mnt/d/x$i; tar xf /tmp/src.tar -C /mnt/d/x$i & cellctl swap tmpfs /lib/cells/tmpfs.cell >/dev/null || echo SWAP\"\"-FAILED; \
         wait $! || echo TAR\"\"-FAILED; echo round $i >&3; done; echo rounds done",
        "rounds done",
    );
    let failures = capture(&mut m, "cat /mnt/d/open | wc -l; for i in 1 2 3 4 5 6 7 8; do diff -r /tmp/src /mnt/d/x$i/src >/dev/null || echo DIFF\"\"ERS-$i; done");
    assert!(!failures.contains("DIFFERS-"), "{failures}");
    assert!(failures.lines().any(|l| l.trim() == "8"), "the open file has a line per round: {failures}");
    assert!(!m.output().contains("SWAP-FAILED") && !m.output().contains("TAR-FAILED"), "{}", m.output());
    run(&mut m, "cellctl info tmpfs", "swaps 8");

    // A faulty build: the request that hits its bug fails with EIO; the
    // files, sysfs and further changes are fine.
    run(&mut m, "cellctl swap tmpfs /lib/cells/tmpfs-faulty.cell", "0.1.0+faulty in slot tmpfs");
    run(&mut m, "touch /mnt/d/tmpfs-fault-now; echo status $?", "Input/output error");
    run(&mut m, "echo after > /mnt/d/after && cat /mnt/d/after /sys/block/vda/dev", "254:0");
    run(&mut m, "ls /mnt/d | grep -c tmpfs-fault", "0");
    run(&mut m, "cellctl swap tmpfs /lib/cells/tmpfs.cell", "for tmpfs 0.1.0 in slot tmpfs");
    run(&mut m, "diff -r /tmp/src /mnt/d/x3/src && echo same", "same");

    // Memory comes back when files go.
    run(&mut m, "rm -r /mnt/d/x* /tmp/src /tmp/src.tar; exec 3>&-; sync; echo cleaned", "cleaned");
    let before = shmem_kib(&mut m);
    run(&mut m, "dd if=/dev/urandom of=/mnt/d/big bs=1M count=48 2>/dev/null; sync; echo written", "written");
    let full = shmem_kib(&mut m);
    assert!(full.saturating_sub(before) >= 47 * 1024, "48 MiB written: Shmem {before} -> {full} KiB");
    run(&mut m, "rm /mnt/d/big; sync; echo removed", "removed");
    let after = shmem_kib(&mut m);
    assert!(after <= before + 64, "removing the file gave back only {} of {} KiB", full.saturating_sub(after), full - before);

    // A directory far larger than the metadata cache starts out as.
    run(
        &mut m,
        "mkdir /mnt/d/many && cd /mnt/d/many && i=0; while [ $i -lt 6000 ]; do : > file-$i; i=$((i+1)); done; echo count=$(ls | wc -l); cd /",
        "count=6000",
    );
    run(&mut m, "rm -r /mnt/d/many && echo gone", "gone");

    // Programs run from it (read in pieces the small cache takes).
    run(&mut m, "cp /bin/busybox /mnt/d/busybox && /mnt/d/busybox echo ran-from-the-cell", "ran-from-the-cell");

    // A mount in use stays; an idle one goes.
    run(&mut m, "cd /mnt/d && umount /mnt/d; echo status $?", "busy");
    run(&mut m, "cd / && umount /mnt/d && grep -c /mnt/d /proc/mounts", "0");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}

/// Every userspace test program passes with /tmp on the tmpfs cell (as
/// rcS mounts it), run as `tessera.usertests` runs them: from /opt/tessera.
#[test]
fn every_userspace_suite_passes_with_tmp_on_the_tmpfs_cell() {
    let mut m = boot("memfs-suites");
    run(&mut m, "grep ' /tmp ' /proc/mounts && stat -f /tmp | grep Type", "Type: tmpfs");
    // Its files are in the memory store (Shmem), not the kernel's tmpfs.
    let shmem = capture(&mut m, "dd if=/dev/urandom of=/tmp/probe bs=1M count=4 2>/dev/null; sync; grep Shmem /proc/meminfo; rm /tmp/probe");
    let kib: u64 = shmem.lines().find_map(|l| l.strip_prefix("Shmem:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(kib >= 4096, "4 MiB in /tmp, Shmem {kib} KiB:
{shmem}");
    let out = capture(
        &mut m,
        "cd /opt/tessera && n=0; for t in $(find bin -type f | sort); do n=$((n+1)); $t > /run-$n.out 2>&1 || { echo \"FAIL\"\"ED $t\"; grep -v '^ok' /run-$n.out | tail -15; }; rm -f /run-$n.out; done; echo programs=$n; cd /",
    );
    assert!(!out.contains("FAILED "), "{out}");
    let count: usize = out.lines().find_map(|l| l.trim().strip_prefix("programs=")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(count >= 30, "only {count} programs ran:\n{out}");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
