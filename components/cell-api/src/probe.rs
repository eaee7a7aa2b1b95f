//! A cell that exercises the boundary: the kernel's self-test loads it,
//! calls it and makes it fail in each way a cell can.
use alloc::boxed::Box;
use alloc::string::String;

/// How [`Probe::fail`] fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `panic!` with a message.
    Panic,
    /// A slice index out of bounds (a panic from `core`).
    OutOfBounds,
    /// A page fault in kernel code the cell called.
    PageFault,
    /// An invalid instruction in kernel code the cell called.
    InvalidOpcode,
    /// A loop without end (the watchdog must stop it).
    Hang,
    /// A loop without end with interrupts off: the timer cannot reach
    /// the watchdog, its NMI must.
    HangInterruptsOff,
    /// A panic in the middle of dropping the cell's own state: a frame
    /// is freed, then a destructor panics, so the state still names the
    /// freed frame (dropping it again would free the frame twice). The
    /// panic message names the frame (`frame 0x...`).
    DropBomb,
    /// A panic while the cell's own lock is held, once another call of
    /// this copy of the cell waits for that lock ([`Probe::wait_for_lock`]):
    /// the lock is never released.
    PanicHoldingLock,
    /// A panic once another call of this copy is in
    /// [`Probe::claim_after_fault`] (which then claims a device).
    PanicForLateClaimer,
}
framekernel_boundary::cell_data!(enum Failure { Panic, OutOfBounds, PageFault, InvalidOpcode, Hang, HangInterruptsOff, DropBomb, PanicHoldingLock, PanicForLateClaimer });

/// The probe interface.
pub trait Probe: Send + Sync {
    /// Sum of `0..n` computed through a heap vector.
    fn sum_to(&self, n: u64) -> u64;
    /// A formatted description of `n` (uses `core::fmt`), with the calls
    /// this instance answered and the calls since this copy of the cell
    /// was linked (a static: `since linking N`).
    fn describe(&self, n: u64) -> String;
    /// Calls answered by this instance so far.
    fn calls(&self) -> u64;
    /// Fails as asked; returns only if the failure did not happen.
    fn fail(&self, how: Failure) -> u64;
    /// Once a [`Failure::PanicHoldingLock`] call holds the cell's lock
    /// (10 s at most), takes that lock and returns the calls answered.
    fn wait_for_lock(&self) -> u64;
    /// Once a [`Failure::PanicForLateClaimer`] call is about to panic (10 s
    /// at most), waits `delay_ms` more, then claims COM2's ports and keeps
    /// them in a static; 1 if the claim was granted.
    fn claim_after_fault(&self, delay_ms: u64) -> u64;
}

/// What a probe cell exports.
pub type Export = Box<dyn Probe>;


