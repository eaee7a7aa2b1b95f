//! Timers that raise signals: `alarm` and `setitimer` (one `ITIMER_REAL`,
//! `ITIMER_VIRTUAL` and `ITIMER_PROF` per process) and POSIX timers
//! (`timer_create` and friends, per process, numbered from 0).
//!
//! Every armed timer has a deadline in nanoseconds since boot. The timer
//! tick notices when the earliest one has passed and wakes the `timers`
//! task, which sends the signals (from task context, where the process
//! table may be locked) and re-arms periodic timers, counting the periods
//! that passed in between as overruns, as Linux does.
//!
//! There is no per-process CPU-time accounting yet, so `ITIMER_VIRTUAL`
//! and `ITIMER_PROF` count wall-clock time like `ITIMER_REAL` (they raise
//! SIGVTALRM and SIGPROF).

use crate::errno::Errno;
use crate::signal::SigInfo;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

/// Which timer of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    /// `ITIMER_REAL` (also `alarm`): SIGALRM.
    Real,
    /// `ITIMER_VIRTUAL`: SIGVTALRM.
    Virtual,
    /// `ITIMER_PROF`: SIGPROF.
    Prof,
    /// The `RLIMIT_CPU` watch: samples the process's CPU time.
    CpuLimit,
    /// A POSIX timer, by id.
    Posix(u32),
}

/// How a POSIX timer tells its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// `SIGEV_SIGNAL` (or `SIGEV_THREAD_ID` with a thread): this signal,
    /// with this `sigev_value`.
    Signal { signal: u8, value: u64, thread: Option<u32> },
    /// `SIGEV_NONE`: nothing; the timer can be read.
    None,
}

#[derive(Debug, Clone, Copy)]
struct Timer {
    /// Next expiry, ns since boot (0: disarmed).
    deadline: u64,
    /// Period (0: one shot).
    interval: u64,
    notify: Notify,
    /// Expiries missed at the last signal (`timer_getoverrun`), at most
    /// `i32::MAX` (Linux caps it there).
    overrun: u32,
    /// Expiries already missed when the timer was armed (an absolute
    /// deadline before boot); counted into the first overrun.
    carried: u64,
    /// A POSIX timer's clock id.
    clock: u32,
}

/// Most POSIX timers per process.
pub const MAX_POSIX_TIMERS: usize = 1024;

static TIMERS: SpinLock<BTreeMap<(u32, Which), Timer>> = SpinLock::new(BTreeMap::new());
/// Earliest deadline of any armed timer.
static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
static EXPIRED: AtomicBool = AtomicBool::new(false);
static WAKE: WaitQueue = WaitQueue::new();

fn recompute(timers: &BTreeMap<(u32, Which), Timer>) {
    let next = timers.values().filter(|t| t.deadline != 0).map(|t| t.deadline).min().unwrap_or(u64::MAX);
    NEXT.store(next, Ordering::SeqCst);
}

/// Timer tick (interrupt context): wakes the timer task when a deadline
/// has passed.
pub fn tick() {
    if framekernel::time::now_ns() >= NEXT.load(Ordering::Relaxed) {
        NEXT.store(u64::MAX, Ordering::Relaxed);
        EXPIRED.store(true, Ordering::SeqCst);
        WAKE.wake_all();
    }
}

/// Starts the task that delivers expired timers' signals.
pub fn start_task() -> Result<(), framekernel::mm::OutOfMemory> {
    tessera_sched::spawn("timers", || {
        loop {
            WAKE.wait_until(|| EXPIRED.swap(false, Ordering::SeqCst).then_some(()));
            fire_expired();
        }
    })
    .map(drop)
}

fn fire_expired() {
    let now = framekernel::time::now_ns();
    let mut due: Vec<(u32, Which, Notify, u32)> = Vec::new();
    {
        let mut timers = TIMERS.lock();
        for (&(pid, which), timer) in timers.iter_mut() {
            if timer.deadline == 0 || timer.deadline > now {
                continue;
            }
            let overrun = match (now - timer.deadline).checked_div(timer.interval) {
                Some(missed) => {
                    timer.deadline = timer.deadline.saturating_add((missed + 1).saturating_mul(timer.interval));
                    let missed = missed.saturating_add(core::mem::take(&mut timer.carried));
                    u32::try_from(missed.min(i32::MAX as u64)).unwrap_or(i32::MAX as u32)
                }
                None => {
                    timer.deadline = 0; // one shot
                    0
                }
            };
            timer.overrun = overrun;
            due.push((pid, which, timer.notify, overrun));
        }
        recompute(&timers);
    }
    for (pid, which, notify, overrun) in due {
        let (signal, info, thread) = match (which, notify) {
            (Which::Real, _) => (crate::signal::num::SIGALRM, SigInfo { code: 0x80, ..SigInfo::default() }, None),
            (Which::Virtual, _) => (26, SigInfo { code: 0x80, ..SigInfo::default() }, None), // SIGVTALRM
            (Which::Prof, _) => (27, SigInfo { code: 0x80, ..SigInfo::default() }, None),    // SIGPROF
            (Which::CpuLimit, _) => {
                check_cpu_limit(pid);
                continue;
            }
            (Which::Posix(_), Notify::None) => continue,
            (Which::Posix(id), Notify::Signal { signal, value, thread }) => {
                // SI_TIMER: si_timerid, si_overrun, si_value.
                let info = SigInfo { code: -2, addr: u64::from(id) | u64::from(overrun) << 32, value };
                (signal, info, thread)
            }
        };
        let Some(process) = crate::process::lookup(pid) else { continue };
        // The target thread only while it is still one of the timer's
        // process (a tid can be reused by another process); else the process.
        match thread.filter(|&tid| process.has_thread(tid)).and_then(crate::process::lookup_thread) {
            Some(thread) => thread.send_signal(signal, info),
            None => process.send_signal(signal, info),
        }
    }
}

/// How often a process's CPU time is compared with its `RLIMIT_CPU`.
const CPU_LIMIT_SAMPLE_NS: u64 = 100_000_000;

/// Watches (or stops watching) `pid`'s CPU time for `RLIMIT_CPU`.
pub fn watch_cpu_limit(pid: u32, on: bool) {
    let _ = set(pid, Which::CpuLimit, if on { CPU_LIMIT_SAMPLE_NS } else { 0 }, CPU_LIMIT_SAMPLE_NS, false, 0);
}

/// Linux's rule for `RLIMIT_CPU`: SIGKILL once the process's CPU time
/// reaches the hard limit; SIGXCPU at the soft limit, which then moves up
/// a second so that the signal repeats every CPU second.
fn check_cpu_limit(pid: u32) {
    use crate::process::{RLIM_INFINITY, rlimit};
    let Some(process) = crate::process::lookup(pid).filter(|p| p.outcome().is_none()) else { return };
    let mut limits = process.limits();
    let Some(&(soft, hard)) = limits.0.get(rlimit::CPU) else { return };
    let seconds = process.cpu_ns().1 / 1_000_000_000;
    if hard != RLIM_INFINITY && seconds >= hard {
        process.send_signal(crate::signal::num::SIGKILL, SigInfo::default());
    } else if soft != RLIM_INFINITY && seconds >= soft.max(1) {
        process.send_signal(24, SigInfo { code: 0x80, ..SigInfo::default() }); // SIGXCPU, SI_KERNEL
        if soft < hard
            && let Some(limit) = limits.0.get_mut(rlimit::CPU)
        {
            limit.0 = soft.max(1) + 1;
            process.set_limits(limits);
        }
    }
}

/// Arms (`value` > 0) or disarms a timer; returns the old (time left,
/// interval). An absolute `value` is a deadline in ns since boot;
/// `missed` periods had already passed before it (they count as
/// overruns at the first expiry).
pub fn set(pid: u32, which: Which, value: u64, interval: u64, absolute: bool, missed: u64) -> Result<(u64, u64), Errno> {
    let now = framekernel::time::now_ns();
    let mut timers = TIMERS.lock();
    let notify = match which {
        Which::Posix(_) => timers.get(&(pid, which)).ok_or(Errno::EINVAL)?.notify,
        _ => Notify::None, // unused: the kind decides the signal
    };
    let old = timers.get(&(pid, which)).map_or((0, 0), |t| (remaining(t, now), t.interval));
    let deadline = match value {
        0 => 0,
        v if absolute => v.max(1),
        v => now.saturating_add(v),
    };
    let (overrun, clock) = timers.get(&(pid, which)).map_or((0, 0), |t| (t.overrun, t.clock));
    if deadline == 0 && !matches!(which, Which::Posix(_)) {
        timers.remove(&(pid, which));
    } else {
        let interval = if deadline == 0 { 0 } else { interval };
        timers.insert((pid, which), Timer { deadline, interval, notify, overrun, carried: if deadline == 0 { 0 } else { missed }, clock });
    }
    recompute(&timers);
    drop(timers);
    // A deadline already past fires at the next tick.
    Ok(old)
}

fn remaining(timer: &Timer, now: u64) -> u64 {
    if timer.deadline == 0 { 0 } else { timer.deadline.saturating_sub(now).max(1) }
}

/// (time left, interval) of a timer (zeros when disarmed); EINVAL for an
/// unknown POSIX timer.
pub fn get(pid: u32, which: Which) -> Result<(u64, u64), Errno> {
    let now = framekernel::time::now_ns();
    match TIMERS.lock().get(&(pid, which)) {
        Some(t) => Ok((remaining(t, now), t.interval)),
        None if matches!(which, Which::Posix(_)) => Err(Errno::EINVAL),
        None => Ok((0, 0)),
    }
}

/// `timer_create`: a disarmed POSIX timer on `clock` with the lowest free
/// id; `notify` is told the id (the default `si_value` is the id).
pub fn create(pid: u32, clock: u32, notify: impl FnOnce(u32) -> Notify) -> Result<u32, Errno> {
    let mut timers = TIMERS.lock();
    let used: Vec<u32> = timers
        .range((pid, Which::Real)..=(pid, Which::Posix(u32::MAX)))
        .filter_map(|(&(_, w), _)| if let Which::Posix(id) = w { Some(id) } else { None })
        .collect();
    if used.len() >= MAX_POSIX_TIMERS {
        return Err(Errno::EAGAIN);
    }
    let id = (0u32..).find(|id| !used.contains(id)).ok_or(Errno::EAGAIN)?;
    timers.insert((pid, Which::Posix(id)), Timer { deadline: 0, interval: 0, notify: notify(id), overrun: 0, carried: 0, clock });
    Ok(id)
}

/// The clock of POSIX timer `id`.
pub fn clock_of(pid: u32, id: u32) -> Option<u32> {
    TIMERS.lock().get(&(pid, Which::Posix(id))).map(|t| t.clock)
}

/// `timer_delete`.
pub fn delete(pid: u32, id: u32) -> Result<(), Errno> {
    let mut timers = TIMERS.lock();
    timers.remove(&(pid, Which::Posix(id))).ok_or(Errno::EINVAL)?;
    recompute(&timers);
    Ok(())
}

/// `timer_getoverrun`.
pub fn overrun(pid: u32, id: u32) -> Result<u32, Errno> {
    TIMERS.lock().get(&(pid, Which::Posix(id))).map(|t| t.overrun).ok_or(Errno::EINVAL)
}

/// The process ends (or `exec`s, which keeps only the interval timers):
/// its timers go.
pub fn remove_process(pid: u32, keep_itimers: bool) {
    let mut timers = TIMERS.lock();
    timers.retain(|&(owner, which), _| owner != pid || (keep_itimers && !matches!(which, Which::Posix(_))));
    recompute(&timers);
}
