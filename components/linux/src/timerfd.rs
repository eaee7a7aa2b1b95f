//! `timerfd`: a timer read as a file. A read returns (and resets) the
//! number of expirations since the last read, blocking until there is at
//! least one; `poll` reports POLLIN then.
//!
//! Deadlines are kept in monotonic nanoseconds since boot; an absolute
//! `CLOCK_REALTIME` deadline is converted when it is set. Expirations are
//! counted when the file is looked at (read, poll, `timerfd_gettime`),
//! and a sleeper registers the deadline with the sleep queue's wake-up
//! time, so no task runs per timer.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, device_stat};
use crate::syscall::proc::{NEXT_WAKE, SLEEPERS};
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use framekernel::sync::SpinLock;

#[derive(Default)]
struct State {
    /// Next expiry, monotonic ns (0: disarmed).
    deadline: u64,
    /// Period (0: one shot).
    interval: u64,
    /// Expirations not yet read.
    expirations: u64,
}

impl State {
    /// Counts the expirations that have passed by `now`.
    fn advance(&mut self, now: u64) {
        if self.deadline == 0 || now < self.deadline {
            return;
        }
        match (now - self.deadline).checked_div(self.interval) {
            Some(missed) => {
                self.expirations = self.expirations.saturating_add(missed + 1);
                self.deadline = self.deadline.saturating_add((missed + 1).saturating_mul(self.interval));
            }
            None => {
                self.expirations = self.expirations.saturating_add(1);
                self.deadline = 0;
            }
        }
    }
}

/// A timerfd.
pub struct TimerFd {
    /// The clock the timer was created on (`CLOCK_REALTIME` 0, others
    /// count monotonic time).
    pub clock: u32,
    state: SpinLock<State>,
    nonblocking: crate::files::NonBlocking,
    ino: u64,
}

impl TimerFd {
    /// A disarmed timer on `clock`, as an open file.
    pub fn open(clock: u32, nonblocking: bool, ino: u64) -> Arc<dyn File> {
        Arc::new(TimerFd { clock, state: SpinLock::new(State::default()), nonblocking: crate::files::NonBlocking::new(nonblocking), ino })
    }

    /// Arms (deadline > 0, monotonic ns) or disarms the timer; returns the
    /// old (time left, interval). Pending expirations are dropped.
    pub fn set(&self, deadline: u64, interval: u64) -> (u64, u64) {
        let old = self.get();
        *self.state.lock() = State { deadline, interval: if deadline == 0 { 0 } else { interval }, expirations: 0 };
        crate::syscall::poll::notify();
        old
    }

    /// (time left, interval); zeros when disarmed.
    pub fn get(&self) -> (u64, u64) {
        let now = framekernel::time::now_ns();
        let mut state = self.state.lock();
        state.advance(now);
        let left = if state.deadline == 0 { 0 } else { state.deadline.saturating_sub(now).max(1) };
        (left, state.interval)
    }

    /// Expirations so far; registers the next deadline with the sleepers.
    fn pending(&self) -> u64 {
        let mut state = self.state.lock();
        state.advance(framekernel::time::now_ns());
        if state.expirations == 0 && state.deadline != 0 {
            NEXT_WAKE.fetch_min(state.deadline, Ordering::Relaxed);
        }
        state.expirations
    }
}

impl File for TimerFd {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let out = buf.get_mut(..8).ok_or(Errno::EINVAL)?;
        let nonblocking = self.nonblocking.get();
        let count = SLEEPERS.wait_until(|| {
            if self.pending() > 0 {
                return Some(Ok(core::mem::take(&mut self.state.lock().expirations)));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })?;
        out.copy_from_slice(&count.to_le_bytes());
        Ok(8)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> FileStat {
        device_stat(self.ino, 0, 0o600)
    }

    fn poll(&self) -> u16 {
        if self.pending() > 0 { POLLIN } else { 0 }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_timerfd(&self) -> Option<&TimerFd> {
        Some(self)
    }
}
