//! The busybox shell on the serial console, driven like a person would:
//! commands, a pipeline, ^C on a command that never ends, /proc, files,
//! and poweroff.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(60);

fn shell() -> Machine {
    let mut machine = Machine::start("shell", &MachineOptions::kernel(""));
    machine.expect("built-in shell (ash)", T);
    machine.expect("# ", T);
    machine
}

fn run(machine: &mut Machine, command: &str, answer: &str) {
    machine.shell(command, answer, T);
}

#[test]
fn commands_pipelines_and_ctrl_c() {
    let mut m = shell();
    run(&mut m, "echo $((6*7)) and $(echo nested)", "42 and nested");
    run(&mut m, "uname -sm", "Linux x86_64");
    run(&mut m, "seq 1 100 | sort -rn | head -3 | tr '\\n' ,", "100,99,98,");
    run(&mut m, "cat /etc/hostname", "tessera");
    run(&mut m, "cd /tmp && mkdir -p a/b && echo data > a/b/f && cat a/b/f && pwd", "/tmp");
    run(&mut m, "ls /tmp/a/b", "f");
    run(&mut m, "wc -c < /tmp/a/b/f", "5");
    run(&mut m, "ln -s /tmp/a/b/f /tmp/link && readlink /tmp/link", "/tmp/a/b/f");
    // ^C stops a command that never ends; the shell keeps answering.
    m.send("sleep 1000\r");
    std::thread::sleep(Duration::from_millis(500));
    m.send("\x03");
    m.expect("# ", T);
    run(&mut m, "echo still here", "still here");
    // Line editing: tab completes a command name, up-arrow recalls history.
    run(&mut m, "ech\t $((40+2))tab", "42tab");
    m.send("\x1b[A\r");
    m.expect("42tab", T);
    m.expect("# ", T);
    // Job control: ^Z stops the job, jobs lists it, fg resumes it, ^C ends it.
    m.send("sleep 1000\r");
    std::thread::sleep(Duration::from_millis(500));
    m.send("\x1a");
    m.expect("Stopped", T);
    m.expect("# ", T);
    run(&mut m, "jobs", "Stopped");
    m.send("fg\r");
    m.expect("sleep 1000", T);
    std::thread::sleep(Duration::from_millis(500));
    m.send("\x03");
    m.expect("# ", T);
    run(&mut m, "echo status $?", "status 130");
    // A background job that reads the terminal is stopped (SIGTTIN); in
    // the foreground its read starts again and gets what is typed.
    m.send("cat > /tmp/typed &\r");
    m.expect("# ", T);
    run(&mut m, "sleep 1; jobs", "Stopped");
    m.send("fg\r");
    m.expect("cat 1>/tmp/typed", T);
    // Give the shell time to hand over the terminal (input typed while it
    // still has it in raw mode would be read raw, as on Linux).
    std::thread::sleep(Duration::from_millis(1500));
    m.send("typed in the foreground\r\x04");
    m.expect("# ", T);
    run(&mut m, "cat /tmp/typed", "typed in the foreground");
    // If it cannot be stopped (SIGTTIN ignored), the read fails with EIO.
    run(&mut m, "sh -c \"trap '' TTIN; cat\" & wait $!", "read error: Input/output error");
    run(&mut m, "test -d /proc/1 && cat /proc/1/comm", "init"); // the name it was started by, as on Linux
    run(&mut m, "cat /proc/$$/task/$$/comm /proc/$$/comm | tr '\\n' ,", "sh,sh,");
    run(&mut m, "awk '/\\[stack\\]/ {print \"stack\", $2}' /proc/self/maps", "stack rw-p");
    run(&mut m, "uptime", "load average");
    run(&mut m, "mount | grep ' /proc '", "proc on /proc type proc");
    run(&mut m, "top -b -n 1 | head -2", "CPU:");
    run(&mut m, "ps | grep -c sh", "");
    run(&mut m, "grep MemTotal /proc/meminfo", "MemTotal:");
    run(&mut m, "false || echo status $?", "status 1");
    // A full tmpfs: ENOSPC, and the shell carries on.
    run(&mut m, "mkdir -p /mnt/small && mount -t tmpfs -o size=64k tmpfs /mnt/small && echo mounted", "mounted");
    run(&mut m, "dd if=/dev/zero of=/mnt/small/fill bs=4096 count=100 2>&1 | grep -o 'No space left on device'", "No space left on device");
    // df reads each file system's own size and usage (statfs).
    run(&mut m, "df /mnt/small | awk 'NR==2 {print \"size\", $2, $5, $6}'", "size 64 100% /mnt/small");
    run(&mut m, "stat -f -c 'type %T' /proc", "type proc");
    run(&mut m, "umount /mnt/small && echo unmounted", "unmounted");
    // Long names and symlink loops get their errors.
    run(&mut m, "touch /tmp/$(printf 'n%.0s' $(seq 300)) 2>&1 | grep -o 'too long'", "too long");
    run(&mut m, "ln -s loop2 /tmp/loop1 && ln -s loop1 /tmp/loop2 && cat /tmp/loop1 2>&1 | grep -o 'Symbolic link loop'", "Symbolic link loop");
    run(&mut m, "sleep 1 & wait $! && echo background done", "background done");
    run(&mut m, "dmesg | head -c 1; echo", "[");
    // A fork bomb runs into the process limit (EAGAIN, "can't fork");
    // kill -9 -1 ends it and the shell keeps answering.
    m.send("bomb() { bomb | bomb & }; bomb\r");
    std::thread::sleep(Duration::from_secs(3));
    m.send("kill -9 -1; sleep 1; kill -9 -1; echo sur$((0))vived\r");
    m.expect("sur0vived", T);
    m.expect("# ", T);
    run(&mut m, "echo $((6*7))after", "42after");
    // A runaway pipeline that eats memory is killed; the shell survives.
    run(&mut m, "cat /dev/zero | sort > /dev/null; echo status $?", "status 137");
    // vi: open, insert, save.
    m.send("vi /tmp/v.txt\r");
    std::thread::sleep(Duration::from_millis(1500));
    m.send("ihello from vi\x1b");
    std::thread::sleep(Duration::from_millis(500));
    m.send(":wq\r");
    std::thread::sleep(Duration::from_millis(1000));
    run(&mut m, "cat /tmp/v.txt", "hello from vi");
    m.send("poweroff\r");
    m.expect("Requesting system poweroff", T);
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
