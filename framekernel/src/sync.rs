//! Locks for kernel data shared with interrupt handlers.
//!
//! [`SpinLock`] disables interrupts on this CPU while it is held, so an
//! interrupt handler that takes the same lock can never deadlock against the
//! code it interrupted. The previous interrupt state is restored on release.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::panic::Location;

/// How long a lock may stay taken before a waiter reports it.
const STALL_REPORT_NS: u64 = 5_000_000_000;

/// Spins until `inner` is free. A wait longer than [`STALL_REPORT_NS`]
/// is reported once on the serial line, naming where the waiter took the
/// lock (`at`) and the processor: a lock left held (a holder that never
/// lets go, or a deadlock) is then not a silent hang. The waiter goes on
/// waiting: nothing else is safe, as the holder may be mid-update. One
/// exception: a cell's own lock, waited for in a call of a cell that has
/// faulted meanwhile (on another processor, maybe holding it): that call
/// is stopped and retried on the cell's fresh copy ([`give_up_abandoned_wait`]).
fn acquire<'a, T>(inner: &'a spin::Mutex<T>, at: &'static Location<'static>) -> spin::MutexGuard<'a, T> {
    if let Some(guard) = inner.try_lock() {
        return guard;
    }
    acquire_contended(inner, at)
}

#[cold]
fn acquire_contended<'a, T>(inner: &'a spin::Mutex<T>, at: &'static Location<'static>) -> spin::MutexGuard<'a, T> {
    // Generic, so also compiled into cells: it calls only base functions
    // on the cell import allowlist (`now_ns`, `report_stall`,
    // `give_up_abandoned_wait`).
    let started = crate::time::now_ns();
    let mut spins: u32 = 0;
    let mut reported = false;
    loop {
        if let Some(guard) = (!inner.is_locked()).then(|| inner.try_lock()).flatten() {
            if reported {
                report_stall(at, crate::time::now_ns().saturating_sub(started), true);
            }
            return guard;
        }
        core::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(4096) {
            // This function's own address: in a cell's text when the lock
            // is the cell's (this copy was compiled into it).
            give_up_abandoned_wait(acquire_contended::<T> as *const () as usize, at);
            let waited = crate::time::now_ns().saturating_sub(started);
            if !reported && waited > STALL_REPORT_NS {
                reported = true;
                report_stall(at, waited, false);
            }
        }
    }
}

/// For a lock's spin loop: if it runs in a cell call, in that cell's own
/// code (`code`, the loop's address, is inside the cell's text), and a call
/// of the cell has faulted since it began, the call stops here, as
/// `FaultKind::Poisoned` (its slot retries it on the fresh copy): the
/// faulted call may have held the lock, and the slot's recovery waits for
/// this call to leave. Returns otherwise (it never stops base code).
#[inline(never)]
pub fn give_up_abandoned_wait(code: usize, at: &Location<'_>) {
    crate::cell::stop_waiting_if_tainted(code as u64, at);
}

/// Writes a lock stall report straight to the UART (no lock: the console's
/// own lock may be the one stalled). `at` is only read, during the call.
#[inline(never)]
fn report_stall(at: &Location<'_>, waited_ns: u64, free_again: bool) {
    let processor = crate::percpu::this_cpu().index();
    if free_again {
        crate::console::emergency_print(format_args!(
            "\n!!! processor {processor}: the lock taken at {at} is free again after {} ms\n",
            waited_ns / 1_000_000
        ));
    } else {
        crate::console::emergency_print(format_args!(
            "\n!!! processor {processor}: the lock taken at {at} has been held for over {} s (never released, or a deadlock); still waiting\n",
            waited_ns / 1_000_000_000
        ));
    }
}

/// A spin lock that is safe to share with interrupt handlers.
pub struct SpinLock<T> {
    inner: spin::Mutex<T>,
}

/// Holds a [`SpinLock`]; releases it and restores interrupts when dropped.
pub struct SpinLockGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    interrupts_were_enabled: bool,
}

impl<T> SpinLock<T> {
    /// A new unlocked lock around `value`.
    pub const fn new(value: T) -> Self {
        Self { inner: spin::Mutex::new(value) }
    }

    /// Disables interrupts and spins until the lock is free (a wait of
    /// over 5 s is reported, naming the caller's source line).
    #[track_caller]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        let at = Location::caller();
        let interrupts_were_enabled = crate::arch::interrupts_enabled();
        x86_64::instructions::interrupts::disable();
        SpinLockGuard { guard: ManuallyDrop::new(acquire(&self.inner, at)), interrupts_were_enabled }
    }

    /// Takes the lock if it comes free within `tries` looks (a bounded
    /// wait for a lock that is only ever held for a moment, on paths that
    /// must not block: interrupt handlers, fault reports).
    pub fn try_lock_spinning(&self, tries: u32) -> Option<SpinLockGuard<'_, T>> {
        for _ in 0..tries {
            if let Some(guard) = self.try_lock() {
                return Some(guard);
            }
            core::hint::spin_loop();
        }
        None
    }

    /// Takes the lock only if it is free right now (for paths such as panic
    /// reporting that must never wait).
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        let interrupts_were_enabled = crate::arch::interrupts_enabled();
        x86_64::instructions::interrupts::disable();
        match self.inner.try_lock() {
            Some(guard) => Some(SpinLockGuard { guard: ManuallyDrop::new(guard), interrupts_were_enabled }),
            None => {
                if interrupts_were_enabled {
                    x86_64::instructions::interrupts::enable();
                }
                None
            }
        }
    }

    /// True while someone holds the lock.
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `guard` is dropped exactly once, here, and never used
        // again: the lock is released before interrupts come back on.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        if self.interrupts_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
    }
}

/// A spin lock for data that interrupt handlers never touch: interrupts
/// stay enabled while it is held. Kernel code is not preempted, so on one
/// CPU it is contended only if a holder blocks, which holders must not do.
pub struct Mutex<T> {
    inner: spin::Mutex<T>,
}

/// Holds a [`Mutex`].
pub type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    /// A new unlocked mutex around `value`.
    pub const fn new(value: T) -> Self {
        Self { inner: spin::Mutex::new(value) }
    }

    /// Spins until the lock is free (a wait of over 5 s is reported,
    /// naming the caller's source line).
    #[track_caller]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        acquire(&self.inner, Location::caller())
    }

    /// The value, through a unique borrow (no locking: for destructors,
    /// which must work even if a faulted call left the lock held).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// The base's own locks (frame allocator, heap, page tables, device
/// claims, console, ...): a [`SpinLock`] that also marks the running cell
/// call, if any, as inside the base while held. A fault or watchdog stop
/// there is then not contained (the base's state may be half-updated and
/// its lock would stay held): containment only ever abandons frames that
/// hold none of the base's locks.
pub(crate) struct BaseLock<T> {
    inner: SpinLock<T>,
}

/// Holds a [`BaseLock`].
pub(crate) struct BaseLockGuard<'a, T> {
    // Declared first: the lock is released before the section ends.
    guard: SpinLockGuard<'a, T>,
    _section: crate::cell::BaseSection,
}

impl<T> BaseLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self { inner: SpinLock::new(value) }
    }

    #[track_caller]
    pub(crate) fn lock(&self) -> BaseLockGuard<'_, T> {
        let section = crate::cell::BaseSection::enter();
        BaseLockGuard { guard: self.inner.lock(), _section: section }
    }

    pub(crate) fn try_lock(&self) -> Option<BaseLockGuard<'_, T>> {
        let section = crate::cell::BaseSection::enter();
        self.inner.try_lock().map(|guard| BaseLockGuard { guard, _section: section })
    }
}

impl<T> Deref for BaseLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for BaseLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// The live flag of a device claim (ports, device memory) shared between
/// the claim table and the handle, with a count of the handle's accesses
/// in flight: [`Claim::revoke`] on one processor waits for an access that
/// another processor already began, so that once it returns the handle
/// never touches the device again (the range may then be claimed anew).
#[derive(Debug)]
pub(crate) struct Claim {
    live: core::sync::atomic::AtomicBool,
    busy: core::sync::atomic::AtomicU32,
}

impl Claim {
    pub(crate) const fn new() -> Self {
        Self { live: core::sync::atomic::AtomicBool::new(true), busy: core::sync::atomic::AtomicU32::new(0) }
    }

    /// Runs `access` (one device access) if the claim is live, with
    /// interrupts off and counted in flight; `None` once revoked. `access`
    /// is the base's own code, so no fault or watchdog stop can leave the
    /// count raised (either would stop in the base: not contained).
    pub(crate) fn access<R>(&self, access: impl FnOnce() -> R) -> Option<R> {
        use core::sync::atomic::Ordering::{Acquire, SeqCst};
        // A revoked handle does not even count itself in flight: a stream
        // of accesses through dead handles cannot keep `revoke` waiting.
        if !self.live.load(Acquire) {
            return None;
        }
        // A base section too: a fault or watchdog stop in here is never
        // contained, whatever code runs it, so the count always comes down.
        let _section = crate::cell::BaseSection::enter();
        crate::arch::without_interrupts(|| {
            // SeqCst on both sides (as `revoke`): either this sees the
            // claim dead, or `revoke` sees this access in flight.
            self.busy.fetch_add(1, SeqCst);
            let result = self.live.load(SeqCst).then(access);
            self.busy.fetch_sub(1, SeqCst);
            result
        })
    }

    /// Ends the claim: every later access fails, and the accesses in
    /// flight on other processors have ended when this returns (each is
    /// one port or register access, with interrupts off).
    pub(crate) fn revoke(&self) {
        use core::sync::atomic::Ordering::SeqCst;
        self.live.store(false, SeqCst);
        while self.busy.load(SeqCst) != 0 {
            core::hint::spin_loop();
        }
    }
}
