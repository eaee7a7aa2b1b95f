//! Real programs at the shell, run by name as a user would: unmodified,
//! dynamically linked Debian programs (with Debian's loader and libraries,
//! brought by tools/bring.sh into /opt/tessera/debian), and shell scripts
//! started through their `#!` line.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(90);

fn run(machine: &mut Machine, command: &str, answer: &str) {
    machine.shell(command, answer, T);
}

#[test]
fn dynamically_linked_debian_programs_and_scripts_run_by_name() {
    let mut m = Machine::start("programs", &MachineOptions::kernel(""));
    m.expect("# ", T);
    // Busybox's shell prefers its own applets over PATH: the Debian
    // programs are named by path.
    run(&mut m, "cd /opt/tessera/debian", "");
    // GNU coreutils, linked against Debian's glibc.
    run(&mut m, "ls -l /opt/tessera/debian/ls | cut -c1-10", "-rwxr-xr-x");
    run(&mut m, "./id", "uid=0(root) gid=0(root) groups=0(root)");
    run(&mut m, "printf 'pear\\napple\\n' | ./sort | ./cat -n | tr -s ' ' | tr '\\t\\n' '=;'", "1=apple; 2=pear;");
    run(&mut m, "./env -i ANSWER=42 ./env", "ANSWER=42");
    // Debian's dash runs a command and reports what it ran.
    run(&mut m, "./dash -c 'echo dash says $((6*7))'", "dash says 42");
    // Scripts by name: the interpreter gets its optional argument, the
    // script's path as given, then the arguments.
    run(&mut m, "cd /tmp && printf '#!/bin/sh\\necho \"sh script $0 $1\"\\n' > s.sh && chmod +x s.sh", "");
    run(&mut m, "./s.sh first", "sh script ./s.sh first");
    run(&mut m, "printf '#!/usr/bin/awk -f\\nBEGIN { print \"awk got\", ARGV[1] }\\n' > a.awk && chmod +x a.awk", "");
    run(&mut m, "./a.awk xyz", "awk got xyz");
    // A script whose interpreter is a dynamically linked program, itself
    // started from a script (nested interpreters).
    run(&mut m, "printf '#!/opt/tessera/debian/dash\\necho \"dash script $0 $*\"\\n' > d.sh && chmod +x d.sh", "");
    run(&mut m, "printf '#!/tmp/d.sh\\n' > outer && chmod +x outer && ./outer one", "dash script /tmp/d.sh ./outer one");
    // A missing interpreter is "not found", a script without the x bit
    // "Permission denied", as with Linux's errors (ENOENT, EACCES).
    run(&mut m, "printf '#!/no/such/interp\\n' > bad.sh && chmod +x bad.sh && ./bad.sh; echo status $?", "status 127");
    run(&mut m, "chmod -x s.sh && ./s.sh; echo status $?", "status 126");
    run(&mut m, "chmod +x s.sh", "");
    // The same as an ordinary user (busybox su, set-user-id root, drops to
    // uid 1000): programs and scripts run, root's files are protected,
    // cells cannot be changed.
    run(&mut m, "su user -c '/opt/tessera/debian/id'", "uid=1000(user) gid=1000(user) groups=1000(user)");
    run(&mut m, "su user -c '/tmp/s.sh as-user'", "sh script /tmp/s.sh as-user");
    run(&mut m, "su user -c '/tmp/outer two'", "dash script /tmp/d.sh /tmp/outer two");
    run(&mut m, "su user -c 'cd && /opt/tessera/debian/ls -ln ~ >/dev/null && touch mine && stat -c %u:%g mine'", "1000:1000");
    run(&mut m, "su user -c 'echo x >> /etc/passwd; cat /etc/shadow'", "can't open '/etc/shadow': Permission denied");
    run(&mut m, "su user -c 'cellctl restart tty'", "needs root (effective uid 0); the caller's is 1000");
    // Root sets a password; su from the user to the user then asks for it.
    run(&mut m, "printf 'pass1234\\npass1234\\n' | passwd user >/dev/null 2>&1; echo status $?", "status 0");
    run(&mut m, "su user -c \"echo pass1234 | su user -c 'echo I am \\$(whoami)'\"", "I am user");
    run(&mut m, "su user -c \"echo wrong | su root -c id\"; echo status $?", "status 1");
    // AF_UNIX through real programs: busybox syslogd binds the datagram
    // socket /dev/log, logger (as root and as a user) sends to it.
    run(&mut m, "syslogd -O /tmp/messages && stat -c %F /dev/log", "socket");
    run(&mut m, "logger -t demo 'through /dev/log' && su user -c \"logger -t demo 'from the user'\"", "");
    run(
        &mut m,
        "for i in 1 2 3 4 5 6 7 8 9 10; do grep -q 'from the user' /tmp/messages && break; sleep 1; done; echo lines=$(grep -c -e 'demo: through /dev/log' -e 'demo: from the user' /tmp/messages)",
        "lines=2",
    );
    run(&mut m, "killall syslogd && rm /dev/log", "");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(Duration::from_secs(60)), Exit::Success);
}
