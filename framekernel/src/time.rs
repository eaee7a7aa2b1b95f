//! Time: a monotonic clock from the TSC (calibrated against the PIT), the
//! periodic timer tick (PIT channel 0, IRQ 0) and tick callbacks.

use crate::arch::{self, pit};
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 1000;
/// Most tick callbacks registered at once.
pub const MAX_TICK_CALLBACKS: usize = 16;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
type CallbackTable = [Option<fn(u64)>; MAX_TICK_CALLBACKS];

static CALLBACKS: SpinLock<CallbackTable> = SpinLock::new([None; MAX_TICK_CALLBACKS]);

/// Errors from the timer API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerError {
    /// All callback slots are taken.
    NoFreeSlot,
    /// The callback is not registered.
    NotRegistered,
}

/// Records the TSC at kernel entry: the zero of [`now`].
pub(crate) fn mark_boot() {
    BOOT_TSC.store(arch::rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency against the PIT. Takes about 10 ms.
pub(crate) fn calibrate() {
    // Two 5 ms windows; the smaller count is the less disturbed by emulation
    // hiccups, which only ever make a window look longer.
    let ticks = (0..2).map(|_| pit::measure_tsc(5)).min().unwrap_or(0);
    let hz = ticks.saturating_mul(200).max(1_000_000);
    TSC_HZ.store(hz, Ordering::Relaxed);
}

/// TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Converts a TSC delta to nanoseconds (0 before calibration).
pub fn tsc_to_ns(delta: u64) -> u64 {
    match tsc_hz() {
        0 => 0,
        hz => (u128::from(delta) * 1_000_000_000 / u128::from(hz)) as u64,
    }
}

/// Nanoseconds since kernel entry (0 before calibration).
pub fn now_ns() -> u64 {
    tsc_to_ns(arch::rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Time since kernel entry.
pub fn now() -> Duration {
    Duration::from_nanos(now_ns())
}

/// The TSC value at kernel entry (the TSC counts from machine reset, so this
/// is the time firmware and boot loader took, in TSC ticks).
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// Timer interrupts since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Spins for `duration` (works with interrupts off).
pub fn busy_wait(duration: Duration) {
    let end = now().saturating_add(duration);
    while now() < end {
        core::hint::spin_loop();
    }
}

/// Sleeps for `duration`, halting between timer interrupts.
/// Interrupts must be enabled, or this degrades to [`busy_wait`].
pub fn sleep(duration: Duration) {
    if !arch::interrupts_enabled() {
        return busy_wait(duration);
    }
    let end = now().saturating_add(duration);
    while now() < end {
        arch::wait_for_interrupt();
    }
}

/// Calls `callback(tick)` from the timer interrupt on every tick, with
/// interrupts disabled. Keep it short. Registering the same function twice
/// is allowed; each registration is called.
pub fn on_tick(callback: fn(u64)) -> Result<(), TimerError> {
    let mut slots = CALLBACKS.lock();
    let slot = slots.iter_mut().find(|s| s.is_none()).ok_or(TimerError::NoFreeSlot)?;
    *slot = Some(callback);
    Ok(())
}

/// Removes one registration of `callback`.
pub fn remove_tick_callback(callback: fn(u64)) -> Result<(), TimerError> {
    let mut slots = CALLBACKS.lock();
    let slot = slots
        .iter_mut()
        .find(|s| s.is_some_and(|f| core::ptr::fn_addr_eq(f, callback)))
        .ok_or(TimerError::NotRegistered)?;
    *slot = None;
    Ok(())
}

fn timer_interrupt() {
    let tick = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    // Copy the table so that a callback may (un)register without deadlock.
    let callbacks = *CALLBACKS.lock();
    for callback in callbacks.iter().flatten() {
        callback(tick);
    }
}

/// Starts the periodic tick.
pub(crate) fn start_timer() {
    pit::start_periodic(TICK_HZ);
    let _ = crate::irq::register_base(0, timer_interrupt);
}
