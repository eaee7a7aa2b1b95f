//! `/proc` served by the `procfs` cell, in QEMU: what programs read from
//! it, what a tracer alone may see, settings written to `/proc/sys`, a
//! swap of the cell while programs read `/proc`, a fault in it, and a
//! hostile build that the kernel keeps in its role.

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
    // Following /proc/PID/fd/N opens the file again, even one with no
    // name: a pipe end (through /dev/stdin and /dev/stdout too), the
    // console, /dev/null.
    run(&mut m, "echo pi\"\"ped | cat /dev/stdin", "piped");
    run(&mut m, "sh -c 'echo to-std\"\"out > /dev/stdout' | tr a-z A-Z", "TO-STDOUT");
    run(&mut m, "echo con\"\"sole > /proc/self/fd/2", "console");
    run(&mut m, "cat /proc/self/fd/0 < /dev/null; echo status $?", "status 0");
    run(&mut m, "stat -f /proc | grep -o 'Type: [a-z]*'", "Type: proc");
    // A tracer alone sees descriptors and maps (an ordinary user: EACCES).
    run(&mut m, "su nobody -s /bin/sh -c 'ls /proc/1/fd; cat /proc/1/maps' 2>&1 | grep -c 'Permission denied' | sed 's/^/denied=/'", "denied=2");
    run(&mut m, "su nobody -s /bin/sh -c 'head -n 1 /proc/self/maps' | grep -c busybox | sed 's/^/own-maps=/'", "own-maps=1");
    // A program's code is the file's page-cache pages, shared with every
    // other process running it (here the shell), never copied, as on
    // Linux: its text shows as shared clean memory.
    run(
        &mut m,
        "awk '/r-xp .*busybox/{f=1} f&&/^Shared_Clean/{print ($2>0)?\"text-shared\":\"text-private\"} f&&/^Private_Dirty/{print \"text-dirty=\"$2; exit}' /proc/self/smaps | tr '\\n' ' '",
        "text-shared text-dirty=0 ",
    );
    // Settings: parsed by the cell, checked and applied by the kernel.
    run(&mut m, "echo 40000 > /proc/sys/kernel/pid_max; sed 's/^/pid_max=/' /proc/sys/kernel/pid_max", "pid_max=40000");
    run(&mut m, "echo 1 > /proc/sys/kernel/pid_max; echo status $?", "status 1");
    run(&mut m, "echo many > /proc/sys/fs/pipe-max-size; echo status $?", "status 1");
    run(&mut m, "echo 0x3f > /proc/self/coredump_filter && cat /proc/self/coredump_filter", "0000003f");
    run(&mut m, "echo 1 > /proc/sys/kernel/tainted; echo status $?", "status 1");
    // A process's files are its user's (Debian's dash: busybox is set-uid
    // here and drops it, which leaves it not dumpable, as on Linux): it
    // may set its own coredump_filter, not another's.
    run(
        &mut m,
        "su nobody -s /bin/sh -c '/opt/tessera/debian/dash -c \"stat -c owner=%u /proc/\\$\\$/status; echo 0x21 > /proc/\\$\\$/coredump_filter && cat /proc/\\$\\$/coredump_filter; echo 0x21 > /proc/1/coredump_filter\"' 2>&1 | tr '\\n' ' '",
        "owner=65534 00000021 ",
    );
    run(&mut m, "sed 's/^/init=/' /proc/1/coredump_filter", "init=00000033");

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

    // A hostile build (red-team findings): what anyone may do is the
    // kernel's decision, whatever the cell answers.
    run(&mut m, "cellctl swap procfs /lib/cells/procfs-hostile.cell", "0.1.0+hostile in slot procfs");
    // Set-id and writable-by-all modes are not taken: 0644 at most.
    run(&mut m, "ls -ld /proc/hostile_suid /proc/sys/kernel/hostname /proc/sys | cut -c1-10 | tr '\\n' ' '", "-rw-r--r-- dr-xr-xr-x -rw-r--r-- ");
    run(&mut m, "su nobody -s /bin/sh -c '/proc/hostile_suid; echo exec status $?'", "exec status 126");
    // A caller that may not trace process 1 gets no facts about it, even
    // when the cell asks; root does.
    run(&mut m, "su nobody -s /bin/sh -c 'cat /proc/hostile_leak'", "maps-given=false fd-given=false");
    run(&mut m, "cat /proc/hostile_leak", "maps-given=true fd-given=true");
    run(&mut m, "su nobody -s /bin/sh -c 'readlink /proc/hostile_fd1 || echo re\"\"fused'", "refused");
    // Writes: an unprivileged user cannot write /proc/sys; a setting for
    // another file (process 1's filter, from a write to a sleeper's) or a
    // text with a NUL is refused.
    run(&mut m, "su nobody -s /bin/sh -c 'echo evil > /proc/sys/kernel/hostname' 2>&1 | grep -c denied", "1");
    run(&mut m, "echo evil > /proc/sys/kernel/hostname; uname -n | sed 's/^/host=/'", "host=tessera");
    run(&mut m, "sleep 60 & echo 0x21 > /proc/$!/coredump_filter; echo status $?; kill $!", "status 1");
    run(&mut m, "sed 's/^/init=/' /proc/1/coredump_filter", "init=00000033");
    // Listings with `.`, a 300-byte name, a name twice or 2^17 names, and
    // a file that asks for facts forever: EIO, nothing shown.
    // (Collected first: the kernel's warnings go to the same console.)
    run(&mut m, "r=; for d in dots long twice many; do r=\"$r$d=$(ls -a /proc/hostile_$d | wc -l) \"; done; echo \"$r\"", "dots=0 long=0 twice=0 many=0");
    run(&mut m, "cat /proc/hostile_need; echo status $?", "Input/output error");
    run(&mut m, "cellctl swap procfs /lib/cells/procfs.cell", "in slot procfs");
    run(&mut m, "ls /proc/sys | grep kern", "kernel");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
