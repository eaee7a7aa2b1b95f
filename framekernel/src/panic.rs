//! The panic handler: message, location, memory figures and a stack trace
//! on the console, then QEMU exits with the failure code.

use crate::arch::{exception, qemu};
use crate::console::emergency_print as out;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // A panic inside a cell call becomes that call's error (does not return).
    crate::cell::contain_panic(info);
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::SeqCst) {
        out(format_args!("\n!!! panic while panicking: {}\n", info.message()));
        qemu::exit(qemu::ExitCode::Failure);
    }
    out(format_args!("\n!!! KERNEL PANIC: {}\n", info.message()));
    if let Some(location) = info.location() {
        out(format_args!("    at {}:{}:{}\n", location.file(), location.line(), location.column()));
    }
    let heap = crate::mm::heap_stats();
    let frames = crate::mm::frame_stats();
    out(format_args!(
        "    kernel heap: {} bytes in use, {} bytes claimed, {} failed grows; physical memory: {} of {} frames free ({} KiB of {} KiB)\n",
        heap.in_use,
        heap.claimed,
        heap.failed_grows,
        frames.free,
        frames.total,
        frames.free * 4,
        frames.total * 4
    ));
    let rbp: u64;
    // SAFETY: reads the frame-pointer register; no memory access.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) };
    exception::backtrace(rbp);
    qemu::exit(qemu::ExitCode::Failure)
}
