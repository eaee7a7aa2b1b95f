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
//! `ITIMER_VIRTUAL` (user time), `ITIMER_PROF` (user and system time)
//! and POSIX timers on CLOCK_PROCESS_CPUTIME_ID / CLOCK_THREAD_CPUTIME_ID
//! count CPU time: their deadline is on that clock, and a wall-clock
//! estimate (CPU time cannot pass faster than wall time on one CPU) says
//! when to sample it again; they fire once the clock has reached the
//! deadline, never before.

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
    /// Expiries missed at the last signal the process took
    /// (`timer_getoverrun`), at most `i32::MAX` (Linux caps it there).
    overrun: u32,
    /// A POSIX timer's signal is pending: expiries meanwhile send no
    /// other and are counted in `missed` instead.
    queued: bool,
    /// Expiries missed since the pending signal was sent; they become
    /// `overrun` when the process takes the signal (Linux latches its
    /// `it_overrun_last` at dequeue).
    missed: u64,
    /// Expiries already missed when the timer was armed (an absolute
    /// deadline before boot); counted into the first overrun.
    carried: u64,
    /// A POSIX timer's clock id.
    clock: u32,
    /// The CPU clock a CPU-time timer counts, and its deadline there.
    cpu: Option<(CpuSource, u64)>,
}

/// A CPU-time clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// The process's user and system time.
    Process(u32),
    /// The process's user time.
    User(u32),
    /// One thread's time.
    Thread(u32),
}

impl CpuSource {
    /// The clock's reading (ns), or none when its owner is gone.
    fn now(self) -> Option<u64> {
        match self {
            CpuSource::Process(pid) => crate::process::lookup(pid).map(|p| p.cpu_ns().1),
            CpuSource::User(pid) => crate::process::lookup(pid).map(|p| p.cpu_ns().0),
            CpuSource::Thread(tid) => crate::process::lookup_thread(tid).map(|t| t.cpu_ns().1),
        }
    }
}

/// The CPU clock `which` of `pid` counts, if any (`clock` for a POSIX
/// timer, `tid` its creator).
fn cpu_source(pid: u32, which: Which, clock: u32, tid: u32) -> Option<CpuSource> {
    match which {
        Which::Virtual => Some(CpuSource::User(pid)),
        Which::Prof => Some(CpuSource::Process(pid)),
        Which::Posix(_) if clock == 2 => Some(CpuSource::Process(pid)),
        Which::Posix(_) if clock == 3 => Some(CpuSource::Thread(tid)),
        _ => None,
    }
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
    let mut due: Vec<(u32, Which, Notify, u64)> = Vec::new();
    // The CPU clocks of the CPU-time timers that may be due, read with no
    // timer lock held (they look up processes).
    let sources: Vec<((u32, Which), CpuSource)> =
        TIMERS.lock().iter().filter(|(_, t)| t.deadline != 0 && t.deadline <= now).filter_map(|(&k, t)| t.cpu.map(|(s, _)| (k, s))).collect();
    let samples: BTreeMap<(u32, Which), Option<u64>> = sources.into_iter().map(|(k, s)| (k, s.now())).collect();
    {
        let mut timers = TIMERS.lock();
        for (&(pid, which), timer) in timers.iter_mut() {
            if timer.deadline == 0 || timer.deadline > now {
                continue;
            }
            if let Some((source, cpu_deadline)) = timer.cpu {
                let Some(&sample) = samples.get(&(pid, which)) else { continue }; // armed meanwhile
                let Some(cpu_now) = sample else {
                    timer.deadline = 0; // the clock's owner is gone
                    continue;
                };
                if cpu_now < cpu_deadline {
                    timer.deadline = now.saturating_add(cpu_deadline - cpu_now);
                    continue;
                }
                let missed = match (cpu_now - cpu_deadline).checked_div(timer.interval) {
                    Some(missed) => {
                        let next = cpu_deadline.saturating_add((missed + 1).saturating_mul(timer.interval));
                        timer.cpu = Some((source, next));
                        timer.deadline = now.saturating_add(next - cpu_now);
                        missed
                    }
                    None => {
                        timer.deadline = 0;
                        0
                    }
                };
                due.push((pid, which, timer.notify, missed));
                continue;
            }
            let missed = match (now - timer.deadline).checked_div(timer.interval) {
                Some(missed) => {
                    timer.deadline = timer.deadline.saturating_add((missed + 1).saturating_mul(timer.interval));
                    missed.saturating_add(core::mem::take(&mut timer.carried))
                }
                None => {
                    timer.deadline = 0; // one shot
                    0
                }
            };
            due.push((pid, which, timer.notify, missed));
        }
        recompute(&timers);
    }
    for (pid, which, notify, missed) in due {
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
                // SI_TIMER: si_timerid, si_overrun (set when taken), si_value.
                let info = SigInfo { code: -2, addr: u64::from(id), value };
                (signal, info, thread)
            }
        };
        let Some(process) = crate::process::lookup(pid) else { continue };
        // The target thread only while it is still one of the timer's
        // process (a tid can be reused by another process); else the process.
        let target = thread.filter(|&tid| process.has_thread(tid)).and_then(crate::process::lookup_thread);
        if let Which::Posix(id) = which {
            let pending = target.as_ref().map_or(0, |t| t.pending.bits()) | process.pending.bits();
            if !expired(pid, id, missed, pending & crate::signal::bit(signal) != 0) {
                continue; // its signal is still pending: counted as overruns
            }
        }
        match target {
            Some(thread) => thread.send_signal(signal, info),
            None => process.send_signal(signal, info),
        }
    }
}

/// POSIX timer `id` of `pid` expired after `missed` more periods: true
/// when its signal is to be sent; false when the last one is still
/// `pending` (Linux sends one at a time and counts the rest as overruns).
fn expired(pid: u32, id: u32, missed: u64, pending: bool) -> bool {
    let mut timers = TIMERS.lock();
    let Some(timer) = timers.get_mut(&(pid, Which::Posix(id))) else { return false }; // deleted meanwhile
    if timer.queued && pending {
        timer.missed = timer.missed.saturating_add(missed).saturating_add(1);
        return false;
    }
    // Not pending though sent: ignored or discarded; a new one goes.
    timer.queued = true;
    timer.missed = missed;
    true
}

/// The process took the SI_TIMER signal of its POSIX timer `id`: the
/// overruns counted since it was sent are latched for
/// `timer_getoverrun` and returned for its `si_overrun` (none when no
/// signal of the timer was outstanding: a forged SI_TIMER from `sigqueue`).
pub fn delivered(pid: u32, id: u32) -> Option<u32> {
    let mut timers = TIMERS.lock();
    let timer = timers.get_mut(&(pid, Which::Posix(id))).filter(|t| t.queued)?;
    timer.queued = false;
    timer.overrun = u32::try_from(core::mem::take(&mut timer.missed).min(i32::MAX as u64)).unwrap_or(i32::MAX as u32);
    Some(timer.overrun)
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
    set_on(pid, which, value, interval, absolute, missed, 0)
}

/// [`set`] by thread `tid` (whose clock a CLOCK_THREAD_CPUTIME_ID timer
/// counts).
pub fn set_on(pid: u32, which: Which, value: u64, interval: u64, absolute: bool, missed: u64, tid: u32) -> Result<(u64, u64), Errno> {
    // A CPU-time timer: its clock is read first, with no timer lock held.
    let clock = TIMERS.lock().get(&(pid, which)).map_or(0, |t| t.clock);
    let source = cpu_source(pid, which, clock, if tid == 0 { pid } else { tid });
    let cpu_now = source.and_then(CpuSource::now).unwrap_or(0);
    let now = framekernel::time::now_ns();
    let mut timers = TIMERS.lock();
    let notify = match which {
        Which::Posix(_) => timers.get(&(pid, which)).ok_or(Errno::EINVAL)?.notify,
        _ => Notify::None, // unused: the kind decides the signal
    };
    let old = timers.get(&(pid, which)).map_or((0, 0), |t| (remaining(t, now, cpu_now), t.interval));
    let (deadline, cpu) = match (value, source) {
        (0, _) => (0, None),
        (v, Some(source)) => {
            let cpu_deadline = if absolute { v } else { cpu_now.saturating_add(v) };
            (now.saturating_add(cpu_deadline.saturating_sub(cpu_now)).max(1), Some((source, cpu_deadline)))
        }
        (v, None) if absolute => (v.max(1), None),
        (v, None) => (now.saturating_add(v), None),
    };
    // Arming clears the last overrun count (Linux's common_timer_set); a
    // signal still pending keeps counting.
    let (queued, missed_since, clock) = timers.get(&(pid, which)).map_or((false, 0, clock), |t| (t.queued, t.missed, t.clock));
    if deadline == 0 && !matches!(which, Which::Posix(_)) {
        timers.remove(&(pid, which));
    } else {
        let interval = if deadline == 0 { 0 } else { interval };
        let carried = if deadline == 0 { 0 } else { missed };
        timers.insert((pid, which), Timer { deadline, interval, notify, overrun: 0, queued, missed: missed_since, carried, clock, cpu });
    }
    recompute(&timers);
    drop(timers);
    // A deadline already past fires at the next tick.
    Ok(old)
}

/// Time left (`cpu_now`: the reading of a CPU-time timer's clock).
fn remaining(timer: &Timer, now: u64, cpu_now: u64) -> u64 {
    match (timer.deadline, timer.cpu) {
        (0, _) => 0,
        (_, Some((_, cpu_deadline))) => cpu_deadline.saturating_sub(cpu_now).max(1),
        (deadline, None) => deadline.saturating_sub(now).max(1),
    }
}

/// (time left, interval) of a timer (zeros when disarmed); EINVAL for an
/// unknown POSIX timer.
pub fn get(pid: u32, which: Which) -> Result<(u64, u64), Errno> {
    let source = TIMERS.lock().get(&(pid, which)).and_then(|t| t.cpu.map(|(s, _)| s));
    let cpu_now = source.and_then(CpuSource::now).unwrap_or(0);
    let now = framekernel::time::now_ns();
    match TIMERS.lock().get(&(pid, which)) {
        Some(t) => Ok((remaining(t, now, cpu_now), t.interval)),
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
    timers.insert((pid, Which::Posix(id)), Timer { deadline: 0, interval: 0, notify: notify(id), overrun: 0, queued: false, missed: 0, carried: 0, clock, cpu: None });
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
