//! `/proc` served by the `procfs` cell, in QEMU: what programs read from
//! it, what a tracer alone may see, settings written to `/proc/sys`, a
//! swap of the cell while programs read `/proc`, and a fault in it.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(120);

fn boot(name: &str) -> Machine {
    let mut options = MachineOptions::kernel("");
    options.memory = "256M".into();
    options.wall_clock = Duration::from_secs(600);
    let mut m = Machine::start(name, &options);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m
}

fn run(m: &mut Machine, command: &str, answer: &str) -> String {
    m.shell(command, answer, Duration::from_secs(300))
}

#[test]
fn proc_comes_from_the_procfs_cell_which_swaps_under_readers_and_contains_its_faults() {
    let mut m = boot("procfs");
    run(&mut m, "grep -c ' procfs .*procfs .*active' /proc/cells", "1");
    // What ps, top, free and friends read.
    // The shell itself (a pipeline's children show as sh until they exec).
    run(&mut m, "ps -o pid,comm | grep -c \"^ *$$ sh$\"", "1");
    run(&mut m, "free | grep -c Mem:", "1");
    run(&mut m, "grep -E '^(Name|PPid|Uid)' /proc/self/status | tr '\\t\\n' '  '", "Name: grep PPid: ");
    run(&mut m, "readlink /proc/self/fd/1", "/dev/console");
    run(&mut m, "readlink /proc/self/exe", "/bin/busybox");
    run(&mut m, "stat -f /proc | grep -o 'Type: [a-z]*'", "Type: proc");
    // A tracer alone sees descriptors and maps (an ordinary user: EACCES).
    run(&mut m, "su nobody -s /bin/sh -c 'ls /proc/1/fd; cat /proc/1/maps' 2>&1 | grep -c 'Permission denied' | sed 's/^/denied=/'", "denied=2");
    run(&mut m, "su nobody -s /bin/sh -c 'head -n 1 /proc/self/maps' | grep -c busybox | sed 's/^/own-maps=/'", "own-maps=1");
    // Settings: parsed by the cell, checked and applied by the kernel.
    run(&mut m, "echo 40000 > /proc/sys/kernel/pid_max; sed 's/^/pid_max=/' /proc/sys/kernel/pid_max", "pid_max=40000");
    run(&mut m, "echo 1 > /proc/sys/kernel/pid_max; echo status $?", "status 1");
    run(&mut m, "echo many > /proc/sys/fs/pipe-max-size; echo status $?", "status 1");
    run(&mut m, "echo 0x3f > /proc/self/coredump_filter && cat /proc/self/coredump_filter", "0000003f");
    run(&mut m, "echo 1 > /proc/sys/kernel/tainted; echo status $?", "status 1");

    // Eight swaps while a reader walks /proc over and over.
    run(
        &mut m,
        "( i=0; while [ $i -lt 200 ]; do cat /proc/self/status /proc/meminfo /proc/1/stat /proc/mounts >/dev/null || echo READ\"\"-FAILED; ls /proc/1 >/dev/null || echo LIST\"\"-FAILED; i=$((i+1)); done; echo reader\"\" finished ) & \
         for i in 1 2 3 4 5 6 7 8; do cellctl swap procfs /lib/cells/procfs.cell >/dev/null || echo SWAP\"\"-FAILED; done; wait; echo swaps\"\" done",
        "swaps done",
    );
    let out = m.output();
    assert!(out.contains("reader finished"), "{out}");
    assert!(!out.contains("READ-FAILED") && !out.contains("LIST-FAILED") && !out.contains("SWAP-FAILED"), "{out}");
    run(&mut m, "cellctl info procfs", "swaps 8");

    // A faulty build: reading the file that hits its bug fails with EIO,
    // the rest of /proc and the system carry on; the good build comes back.
    run(&mut m, "cellctl swap procfs /lib/cells/procfs-faulty.cell", "0.1.0+faulty in slot procfs");
    run(&mut m, "cat /proc/loadavg; echo status $?", "Input/output error");
    run(&mut m, "cat /proc/uptime >/dev/null && grep -c MemTotal /proc/meminfo", "1");
    let row = m.capture("grep ' procfs ' /proc/cells", T);
    let faults = row.lines().rev().find(|l| l.contains(" procfs ") && l.contains("faulty")).map(|l| l.split_whitespace().rev().nth(2).unwrap_or("").to_string());
    assert!(faults.as_deref().is_some_and(|f| f != "0" && !f.is_empty()), "the fault is counted: {row}");
    run(&mut m, "cellctl swap procfs /lib/cells/procfs.cell", "in slot procfs");
    run(&mut m, "grep -c ' 1/' /proc/loadavg | sed 's/^/loadavg-lines=/'", "loadavg-lines=1");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
