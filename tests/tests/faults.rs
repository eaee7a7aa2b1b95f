//! Fault reporting: a provoked fault is reported with the right details and
//! QEMU exits with the failure status instead of hanging.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

fn provoke(kind: &str) -> String {
    let mut machine = Machine::start(kind, &MachineOptions::kernel(&format!("tessera.fault={kind}")));
    let exit = machine.wait_exit(Duration::from_secs(90));
    let output = machine.output();
    assert_eq!(exit, Exit::Failure, "kernel did not stop with the failure status:\n{output}");
    output
}

fn assert_has(output: &str, needles: &[&str]) {
    for needle in needles {
        assert!(output.contains(needle), "missing {needle:?} in:\n{output}");
    }
}

#[test]
fn page_fault_names_address_rip_function_and_crate() {
    let out = provoke("page");
    assert_has(
        &out,
        &[
            "!!! CPU exception: page fault (#PF, vector 14) in kernel mode",
            "error code: 0x0 (read, page not present, kernel mode)",
            "faulting address (CR2): 0x00000000dead0000",
            "in framekernel::debug::provoke+0x",
            "[crate framekernel]",
            "stack trace:",
            "in tessera::main+0x",
        ],
    );
    // RIP is a kernel-text address.
    let rip = out.lines().find(|l| l.trim_start().starts_with("RIP: ")).expect("RIP line");
    assert!(rip.contains("0xffffffff80"), "RIP not in kernel text: {rip}");
}

#[test]
fn write_to_rodata_is_a_protection_fault() {
    let out = provoke("rodata");
    assert_has(&out, &["page fault (#PF, vector 14)", "(write, protection violation, kernel mode)"]);
}

#[test]
fn invalid_opcode_is_reported() {
    let out = provoke("ud");
    assert_has(&out, &["invalid opcode (#UD, vector 6) in kernel mode", "[crate framekernel]"]);
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let out = provoke("stack");
    assert_has(
        &out,
        &[
            "double fault (#DF, vector 8)",
            "cause: kernel stack overflow",
            "framekernel::debug::recurse",
            "repeats",
        ],
    );
}

#[test]
fn heap_exhaustion_panics_with_sizes() {
    let out = provoke("oom");
    assert_has(&out, &["!!! KERNEL PANIC: memory allocation of 8388608 bytes failed", "kernel heap: ", "bytes claimed"]);
    // The machine had 256 MiB: the heap grew to most of it first.
    let claimed = tessera_tests::number_after(&out, "bytes in use, ").unwrap_or(0.0);
    assert!(claimed > 100.0 * 1024.0 * 1024.0, "heap gave up early ({claimed} bytes):\n{out}");
}

#[test]
fn panic_reports_message_and_location() {
    let out = provoke("panic");
    assert_has(&out, &["!!! KERNEL PANIC: deliberate panic (tessera.fault=panic)", "framekernel/src/debug.rs:"]);
}
