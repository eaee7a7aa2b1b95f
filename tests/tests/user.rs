//! User programs: the static test programs of userspace/tests run under
//! Tessera and must all pass (each also passes on the Linux host).

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

#[test]
fn user_test_programs_pass() {
    user_tests_pass("usertests", 2);
}

/// The same programs with four processors: threads, pipes, signals and
/// futexes under real concurrency.
#[test]
fn user_test_programs_pass_on_four_processors() {
    user_tests_pass("usertests-smp4", 4);
}

fn user_tests_pass(name: &str, cpus: u32) {
    let mut machine = Machine::start(name, &MachineOptions { cpus, ..MachineOptions::kernel("tessera.usertests") });
    let exit = machine.wait_exit(Duration::from_secs(600));
    let output = machine.output();
    // Every program the boot archive carries under /bin (glibc, musl and
    // static-pie builds), counted from the build directory.
    let bin = std::env::var("TESSERA_USER_BINS").expect("TESSERA_USER_BINS (set by make test)");
    let programs = count_files(std::path::Path::new(&bin));
    assert!(programs > 0, "no test programs found in {bin}");
    assert!(!output.contains("FAILED"), "a user program failed:\n{output}");
    assert!(!output.contains("not ok"), "a check inside a program failed:\n{output}");
    assert!(
        output.contains(&format!("usertests: {programs} passed, 0 failed")),
        "expected all {programs} programs to pass:\n{output}"
    );
    assert_eq!(exit, Exit::Success, "{output}");
}

fn count_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn hello_prints_and_exits_zero() {
    let options = MachineOptions::kernel("tessera.run=/opt/tessera/bin/hello tessera.monitor");
    let mut machine = Machine::start("hello", &options);
    machine.expect("hello from /opt/tessera/bin/hello", Duration::from_secs(60));
    machine.expect("hello: ", Duration::from_secs(60));
    machine.expect("/opt/tessera/bin/hello: exited with status 0", Duration::from_secs(60));
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("run /bin/nonexistent\r");
    machine.expect("/bin/nonexistent: no such file", Duration::from_secs(30));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
}
