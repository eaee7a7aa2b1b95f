//! x86_64 machine support: boot entry, descriptor tables, traps, legacy
//! devices the base owns (serial, PIC, PIT), and small CPU helpers.

// Boot-time and machine set-up code is the base's own: calling any of it
// again (a second GDT load zeroes the per-CPU GS base; a PIC re-init
// drops masks) would break the running kernel, so it is not public.
pub(crate) mod boot;
pub mod cpu;
pub mod exception;
pub(crate) mod gdt;
pub(crate) mod ioapic;
pub(crate) mod lapic;
mod mem;
pub(crate) mod pic;
pub(crate) mod pit;
pub mod qemu;
pub(crate) mod serial;
pub(crate) mod smp;
pub(crate) mod trap;
pub mod user;
pub mod usercopy;

use x86_64::instructions::interrupts;

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; it is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A device register read between two TSC readings.
#[derive(Clone, Copy)]
pub(crate) struct Bracketed<T> {
    /// The TSC before the read.
    pub before: u64,
    /// The TSC after it.
    pub after: u64,
    /// What was read.
    pub value: T,
}

impl<T> Bracketed<T> {
    /// The tightest of three reads by `read`: a read during which the
    /// emulator stalled this processor (a busy host deschedules it for
    /// milliseconds) shows as a wide bracket, so a rate measured between
    /// two tight reads is not skewed by a stall. Used to calibrate the
    /// TSC (PIT) and the local APIC timer.
    pub(crate) fn tightest_of_three(mut read: impl FnMut() -> T) -> Self {
        let mut take = || {
            let before = rdtsc();
            let value = read();
            Bracketed { before, after: rdtsc(), value }
        };
        let mut best = take();
        for _ in 0..2 {
            let next = take();
            if next.width() < best.width() {
                best = next;
            }
        }
        best
    }

    /// TSC ticks between the two readings.
    pub(crate) fn width(&self) -> u64 {
        self.after.wrapping_sub(self.before)
    }

    /// The TSC halfway through the read.
    pub(crate) fn mid(&self) -> u64 {
        self.before / 2 + self.after / 2
    }
}

/// Enables maskable interrupts.
pub fn enable_interrupts() {
    interrupts::enable();
}

/// True when maskable interrupts are enabled on this CPU.
pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Sleeps until the next interrupt, with interrupts enabled; returns at
/// once inside an interrupt handler.
pub fn wait_for_interrupt() {
    // Inside an interrupt handler, interrupts of its priority class and
    // below cannot arrive (the handler's vector is in service): return.
    if crate::irq::in_interrupt() {
        return;
    }
    interrupts::enable_and_hlt();
}

/// Stops this CPU for good: interrupts off, halted.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Runs `f` with interrupts disabled, restoring the previous state after.
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    interrupts::without_interrupts(f)
}
