//! User programs: the static test programs of userspace/tests run under
//! Tessera and must all pass (each also passes on the Linux host).

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

#[test]
fn user_test_programs_pass() {
    let mut machine = Machine::start("usertests", &MachineOptions::kernel("tessera.usertests"));
    let exit = machine.wait_exit(Duration::from_secs(300));
    let output = machine.output();
    let programs = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../userspace/tests"))
        .expect("userspace/tests")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "c"))
        .count();
    assert!(programs > 0, "no test programs found");
    let programs = programs * 2; // built with glibc and with musl
    assert!(!output.contains("FAILED"), "a user program failed:\n{output}");
    assert!(!output.contains("not ok"), "a check inside a program failed:\n{output}");
    assert!(
        output.contains(&format!("usertests: {programs} passed, 0 failed")),
        "expected all {programs} programs to pass:\n{output}"
    );
    assert_eq!(exit, Exit::Success, "{output}");
}

#[test]
fn hello_prints_and_exits_zero() {
    let mut machine = Machine::start("hello", &MachineOptions::kernel("tessera.run=/bin/hello"));
    machine.expect("hello from /bin/hello", Duration::from_secs(60));
    machine.expect("hello: ", Duration::from_secs(60));
    machine.expect("/bin/hello: exited with status 0", Duration::from_secs(60));
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("run /bin/nonexistent\r");
    machine.expect("/bin/nonexistent: no such program in the boot archive", Duration::from_secs(30));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
}
