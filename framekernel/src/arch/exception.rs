//! CPU exceptions (vectors 0..32): a breakpoint is counted and resumed;
//! every other exception in kernel mode is reported in full — vector, error
//! code decoded, RIP with its function and crate, CR2 for page faults,
//! registers and a stack trace — and the machine stops with a failure code.

use super::trap::TrapFrame;
use crate::console::emergency_print as out;
use crate::symbols::{Describe, DescribeReturn};
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::Cr2;

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// `int3` breakpoints taken (and resumed) since boot.
pub fn breakpoint_count() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

const NAMES: [(&str, &str); 32] = [
    ("divide error", "DE"),
    ("debug", "DB"),
    ("non-maskable interrupt", "NMI"),
    ("breakpoint", "BP"),
    ("overflow", "OF"),
    ("bound range exceeded", "BR"),
    ("invalid opcode", "UD"),
    ("device not available", "NM"),
    ("double fault", "DF"),
    ("coprocessor segment overrun", "CSO"),
    ("invalid TSS", "TS"),
    ("segment not present", "NP"),
    ("stack-segment fault", "SS"),
    ("general protection fault", "GP"),
    ("page fault", "PF"),
    ("reserved", "15"),
    ("x87 floating-point exception", "MF"),
    ("alignment check", "AC"),
    ("machine check", "MC"),
    ("SIMD floating-point exception", "XM"),
    ("virtualization exception", "VE"),
    ("control protection exception", "CP"),
    ("reserved", "22"),
    ("reserved", "23"),
    ("reserved", "24"),
    ("reserved", "25"),
    ("reserved", "26"),
    ("reserved", "27"),
    ("hypervisor injection exception", "HV"),
    ("VMM communication exception", "VC"),
    ("security exception", "SX"),
    ("reserved", "31"),
];

/// Name and mnemonic of exception `vector`.
pub fn name(vector: u64) -> (&'static str, &'static str) {
    NAMES.get(vector as usize).copied().unwrap_or(("unknown", "?"))
}

fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

static NMIS: AtomicU64 = AtomicU64::new(0);

/// NMIs taken in kernel mode since boot (the cell watchdog's ticks).
pub fn nmi_count() -> u64 {
    NMIS.load(Ordering::Relaxed)
}

/// Called for vectors 0..32.
pub(crate) fn handle(frame: &mut TrapFrame) {
    if frame.vector == 2 {
        // The watchdog's NMI (the PIT's ticks, through the I/O APIC).
        NMIS.fetch_add(1, Ordering::Relaxed);
        let block = crate::percpu::this_cpu();
        block.nmis.fetch_add(1, Ordering::Relaxed);
        block.nmi_frame.store(frame as *const TrapFrame as u64, Ordering::Relaxed);
        crate::mm::tlb::on_nmi();
        crate::cell::nmi_watchdog(frame);
        if block.index() == 0 {
            // Passed on to the processors the PIT's NMI cannot reach.
            super::lapic::forward_watchdog_nmi();
        }
        return;
    }
    if frame.vector == 3 {
        BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        return; // int3 is a trap: RIP already points past it
    }
    if let (14, Some(resume)) = (frame.vector, super::usercopy::fixup_for(frame.rip)) {
        frame.rip = resume; // a bad user pointer: the copy returns a fault
        return;
    }
    if frame.cs & 3 == 0 && !matches!(frame.vector, 2 | 18) {
        // Inside a cell call this resumes the call's continuation.
        let cr2 = if frame.vector == 14 { x86_64::registers::control::Cr2::read_raw() } else { 0 };
        crate::cell::contain_exception(frame.vector, frame.rip, cr2);
    }
    report(frame);
    super::qemu::exit(super::qemu::ExitCode::Failure);
}

fn report(frame: &TrapFrame) {
    let (name, mnemonic) = name(frame.vector);
    let mode = if frame.cs & 3 == 3 { "user" } else { "kernel" };
    out(format_args!("\n!!! CPU exception: {name} (#{mnemonic}, vector {}) in {mode} mode\n", frame.vector));
    if has_error_code(frame.vector) {
        out(format_args!("    error code: {:#x}", frame.error_code));
        if frame.vector == 14 {
            let e = frame.error_code;
            out(format_args!(
                " ({}, {}, {} mode{}{})",
                if e & 2 != 0 { "write" } else if e & 16 != 0 { "instruction fetch" } else { "read" },
                if e & 1 != 0 { "protection violation" } else { "page not present" },
                if e & 4 != 0 { "user" } else { "kernel" },
                if e & 8 != 0 { ", reserved bit set" } else { "" },
                if e & 32 != 0 { ", protection key" } else { "" },
            ));
        } else if frame.error_code != 0 && frame.vector != 8 {
            let e = frame.error_code;
            let table = match (e >> 1) & 3 {
                0 => "GDT",
                2 => "LDT",
                _ => "IDT",
            };
            out(format_args!(" (selector index {} in the {table}{})", e >> 3, if e & 1 != 0 { ", external" } else { "" }));
        }
        out(format_args!("\n"));
    }
    let cr2 = Cr2::read_raw();
    if frame.vector == 14 || frame.vector == 8 {
        out(format_args!("    faulting address (CR2): {cr2:#018x}\n"));
    }
    out(format_args!("    RIP: {:#018x} in {}\n", frame.rip, Describe(frame.rip)));
    out(format_args!(
        "    RSP: {:#018x}  RFLAGS: {:#x}  CS: {:#x}  SS: {:#x}\n",
        frame.rsp, frame.rflags, frame.cs, frame.ss
    ));
    out(format_args!(
        "    RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}\n    RSI {:#018x} RDI {:#018x} RBP {:#018x} R8  {:#018x}\n    R9  {:#018x} R10 {:#018x} R11 {:#018x} R12 {:#018x}\n    R13 {:#018x} R14 {:#018x} R15 {:#018x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.r8,
        frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15
    ));
    let guard = crate::mm::image::stack_guard();
    let in_guard = |a: u64| (guard..guard + 4096).contains(&a);
    if in_guard(cr2) || in_guard(frame.rsp) {
        out(format_args!(
            "    cause: kernel stack overflow (the access hit the guard page at {guard:#x} below the boot stack)\n"
        ));
    }
    backtrace(frame.rbp);
}

/// True when `addr..addr+16` lies in a stack the kernel runs on.
fn on_kernel_stack(addr: u64) -> bool {
    // This processor's stacks only: another's may be written meanwhile.
    let inside = |(lo, hi): (u64, u64)| addr >= lo && addr.saturating_add(16) <= hi;
    let block = crate::percpu::this_cpu();
    addr.is_multiple_of(8)
        && (inside(block.initial_stack())
            || inside(crate::task::current_stack_bounds())
            || block.ist_bounds().into_iter().any(inside))
}

/// Prints the call chain by walking frame pointers from `rbp`, reading only
/// inside known kernel stacks.
pub(crate) fn backtrace(mut rbp: u64) {
    out(format_args!("    stack trace:\n"));
    let mut previous = 0u64;
    let mut repeats = 0u64;
    for depth in 0..256 {
        if !on_kernel_stack(rbp) {
            break;
        }
        // SAFETY: `rbp..rbp+16` lies inside a kernel stack (checked above),
        // which is mapped and readable; a stale frame gives a wrong but
        // harmless address.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        // Deep recursion (a stack overflow) would bury the rest: print
        // repeated return addresses once, with a count.
        if ret == previous {
            repeats += 1;
        } else {
            if repeats > 0 {
                out(format_args!("          (the frame above repeats {repeats} more times)\n"));
                repeats = 0;
            }
            out(format_args!("      #{depth:<2} {ret:#018x} in {}\n", DescribeReturn(ret)));
            previous = ret;
        }
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    if repeats > 0 {
        out(format_args!("          (the frame above repeats {repeats} more times)\n"));
    }
}
