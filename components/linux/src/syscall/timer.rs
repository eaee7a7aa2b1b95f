//! `alarm`, `getitimer`/`setitimer` and the POSIX `timer_*` calls over
//! [`crate::timers`].

use crate::errno::{Errno, SysResult};
use crate::process::Process;
use crate::timers::{self, Notify, Which};

const NS_PER_SEC: u64 = 1_000_000_000;

fn which(kind: u64) -> Result<Which, Errno> {
    match kind {
        0 => Ok(Which::Real),
        1 => Ok(Which::Virtual),
        2 => Ok(Which::Prof),
        _ => Err(Errno::EINVAL),
    }
}

/// `alarm(seconds)`: the seconds the previous alarm had left (rounded to
/// the nearest second, at least 1 while armed, as Linux).
pub(super) fn alarm(p: &mut Process, seconds: u64) -> SysResult {
    let seconds = seconds as u32; // the argument is an unsigned int
    let (left, _) = timers::set(p.info.pid, Which::Real, u64::from(seconds) * NS_PER_SEC, 0, false, 0)?;
    let mut secs = left / NS_PER_SEC;
    let usec = left % NS_PER_SEC / 1000;
    if usec >= 500_000 || (secs == 0 && usec > 0) {
        secs += 1;
    }
    Ok(secs)
}

/// A `struct timeval` (`unit` 1000 ns) or `struct timespec` (`unit` 1 ns)
/// pair — `itimerval`, `itimerspec` — as ns (interval, value); EINVAL for
/// a negative second or a sub-second field outside one second.
fn read_time_pair(p: &Process, addr: u64, unit: u64) -> Result<(u64, u64), Errno> {
    let mut raw = [0u8; 32];
    p.memory.read(addr, &mut raw)?;
    let field = |at: usize| i64::from_le_bytes(raw.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let per_sec = (NS_PER_SEC / unit) as i64;
    let ns = |sec: i64, sub: i64| -> Result<u64, Errno> {
        if sec < 0 || !(0..per_sec).contains(&sub) {
            return Err(Errno::EINVAL);
        }
        Ok((sec as u64).saturating_mul(NS_PER_SEC).saturating_add(sub as u64 * unit))
    };
    Ok((ns(field(0), field(8))?, ns(field(16), field(24))?))
}

/// Writes (time left, interval) as a `timeval` or `timespec` pair (see
/// [`read_time_pair`]), rounded up to the unit so that an armed timer never
/// reads as zero.
fn write_time_pair(p: &Process, addr: u64, (left, interval): (u64, u64), unit: u64) -> Result<(), Errno> {
    let mut raw = [0u8; 32];
    let per_sec = NS_PER_SEC / unit;
    for (at, ns) in [(0, interval), (16, left)] {
        let units = ns.div_ceil(unit);
        raw[at..at + 8].copy_from_slice(&(units / per_sec).to_le_bytes());
        raw[at + 8..at + 16].copy_from_slice(&(units % per_sec).to_le_bytes());
    }
    p.memory.write(addr, &raw)
}

/// `struct timeval` fields count microseconds.
const TIMEVAL: u64 = 1000;
/// `struct timespec` fields count nanoseconds.
const TIMESPEC: u64 = 1;

pub(super) fn getitimer(p: &mut Process, kind: u64, out: u64) -> SysResult {
    let current = timers::get(p.info.pid, which(kind)?)?;
    write_time_pair(p, out, current, TIMEVAL).map(|()| 0)
}

pub(super) fn setitimer(p: &mut Process, kind: u64, new: u64, old: u64) -> SysResult {
    let which = which(kind)?;
    let (interval, value) = if new == 0 { (0, 0) } else { read_time_pair(p, new, TIMEVAL)? };
    let previous = timers::set(p.info.pid, which, value, interval, false, 0)?;
    if old != 0 {
        write_time_pair(p, old, previous, TIMEVAL)?;
    }
    Ok(0)
}

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
const TIMER_ABSTIME: u64 = 1;

/// The clocks a POSIX timer may use: REALTIME, MONOTONIC, the CPU-time
/// clocks (counted as wall time here), BOOTTIME and its alarm variants,
/// TAI.
fn clock_ok(clock: u64) -> bool {
    matches!(clock as i32, 0..=3 | 7..=9 | 11)
}

pub(super) fn timer_create(p: &mut Process, clock: u64, event: u64, id_out: u64) -> SysResult {
    // A CPU clock named the dynamic way (glibc: pid 0, the caller): the
    // caller's process (2) or thread (3) clock.
    let clock = match clock as i32 {
        c if c < 0 => {
            let pid = !(c >> 3) as u32;
            let thread = c & 4 != 0;
            if c & 3 == 3 || (pid != 0 && pid != if thread { p.thread.tid } else { p.info.pid }) {
                return Err(Errno::EINVAL);
            }
            if thread { 3 } else { 2 }
        }
        _ => clock,
    };
    if !clock_ok(clock) {
        return Err(Errno::EINVAL);
    }
    let notify = if event == 0 {
        None
    } else {
        // struct sigevent: sigev_value (8), sigev_signo (4), sigev_notify (4), _tid (4).
        let mut raw = [0u8; 24];
        p.memory.read(event, &mut raw)?;
        let int = |at: usize| i32::from_le_bytes(raw.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
        let value = u64::from_le_bytes(raw.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let (signo, how, tid) = (int(8), int(12), int(16));
        let signal = u8::try_from(signo).ok().filter(|s| (1..=64).contains(s));
        Some(match how {
            SIGEV_NONE => Notify::None,
            SIGEV_SIGNAL | SIGEV_THREAD => Notify::Signal { signal: signal.ok_or(Errno::EINVAL)?, value, thread: None },
            SIGEV_THREAD_ID => {
                let tid = u32::try_from(tid).map_err(|_| Errno::EINVAL)?;
                if !p.info.has_thread(tid) {
                    return Err(Errno::EINVAL);
                }
                Notify::Signal { signal: signal.ok_or(Errno::EINVAL)?, value, thread: Some(tid) }
            }
            _ => return Err(Errno::EINVAL),
        })
    };
    // Without a sigevent: SIGALRM with the timer id as si_value (Linux).
    let id = timers::create(p.info.pid, clock as u32, |id| {
        notify.unwrap_or(Notify::Signal { signal: crate::signal::num::SIGALRM, value: u64::from(id), thread: None })
    })?;
    if let Err(e) = p.memory.write(id_out, &(id as i32).to_le_bytes()) {
        let _ = timers::delete(p.info.pid, id);
        return Err(e);
    }
    Ok(0)
}

fn timer_id(id: u64) -> Result<u32, Errno> {
    u32::try_from(id as i32).map_err(|_| Errno::EINVAL)
}

pub(super) fn timer_settime(p: &mut Process, id: u64, flags: u64, new: u64, old: u64) -> SysResult {
    let id = timer_id(id)?;
    timers::get(p.info.pid, Which::Posix(id))?; // EINVAL for an unknown timer, first
    if new == 0 {
        return Err(Errno::EINVAL); // Linux: no new setting is invalid, not a fault
    }
    let (interval, mut value) = read_time_pair(p, new, TIMESPEC)?;
    let absolute = flags & TIMER_ABSTIME != 0 && value != 0;
    let mut missed = 0;
    if absolute {
        // The absolute time is on the timer's clock; deadlines are on the
        // boot clock. (A REALTIME clock set later does not move it.)
        let offset = framekernel::time::realtime_ns().saturating_sub(framekernel::time::now_ns());
        if timers::clock_of(p.info.pid, id) == Some(0) {
            if value < offset && interval > 0 {
                // A deadline before boot: the periods since then have
                // been missed already (timer_getoverrun counts them).
                missed = (offset - value) / interval + 1;
                value = value.saturating_add(missed.saturating_mul(interval));
            }
            value = value.saturating_sub(offset).max(1);
        }
    }
    let previous = timers::set_on(p.info.pid, Which::Posix(id), value, interval, absolute, missed, p.thread.tid)?;
    if old != 0 {
        write_time_pair(p, old, previous, TIMESPEC)?;
    }
    Ok(0)
}

pub(super) fn timer_gettime(p: &mut Process, id: u64, out: u64) -> SysResult {
    let current = timers::get(p.info.pid, Which::Posix(timer_id(id)?))?;
    write_time_pair(p, out, current, TIMESPEC).map(|()| 0)
}

pub(super) fn timer_getoverrun(p: &mut Process, id: u64) -> SysResult {
    timers::overrun(p.info.pid, timer_id(id)?).map(u64::from)
}

pub(super) fn timer_delete(p: &mut Process, id: u64) -> SysResult {
    timers::delete(p.info.pid, timer_id(id)?).map(|()| 0)
}

const TFD_CLOEXEC: u64 = 0o2000000;
const TFD_NONBLOCK: u64 = 0o4000;
const TFD_TIMER_ABSTIME: u64 = 1;
const TFD_TIMER_CANCEL_ON_SET: u64 = 2;

/// `timerfd_create(clock, flags)`: REALTIME, MONOTONIC, BOOTTIME, and the
/// ALARM clocks for root (they count as their base clocks: nothing here
/// suspends).
pub(super) fn timerfd_create(p: &mut Process, clock: u64, flags: u64) -> SysResult {
    if flags & !(TFD_CLOEXEC | TFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let clock = match clock {
        0 | 1 | 7 => clock as u32,
        8 | 9 if p.info.credentials().capable(crate::process::cap::SYS_TIME) => clock as u32,
        8 | 9 => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    let file = crate::timerfd::TimerFd::open(clock, flags & TFD_NONBLOCK != 0, crate::epoll::anon_ino());
    p.files.insert(file, 0, flags & TFD_CLOEXEC != 0)
}

fn timerfd_of(p: &Process, fd: u64) -> Result<alloc::sync::Arc<dyn crate::files::File>, Errno> {
    let file = p.files.get(fd)?;
    if file.as_timerfd().is_none() {
        return Err(Errno::EINVAL);
    }
    Ok(file)
}

pub(super) fn timerfd_settime(p: &mut Process, fd: u64, flags: u64, new: u64, old: u64) -> SysResult {
    if flags & !(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = timerfd_of(p, fd)?;
    let timer = file.as_timerfd().ok_or(Errno::EINVAL)?;
    let (interval, value) = read_time_pair(p, new, 1)?;
    let now = framekernel::time::now_ns();
    let deadline = match value {
        0 => 0,
        v if flags & TFD_TIMER_ABSTIME != 0 && matches!(timer.clock, 0 | 8) => {
            // A wall-clock deadline, as monotonic time.
            let offset = framekernel::time::realtime_ns().saturating_sub(now);
            v.saturating_sub(offset).max(1)
        }
        v if flags & TFD_TIMER_ABSTIME != 0 => v.max(1),
        v => now.saturating_add(v),
    };
    let previous = timer.set(deadline, interval);
    if old != 0 {
        write_time_pair(p, old, previous, 1)?;
    }
    Ok(0)
}

pub(super) fn timerfd_gettime(p: &mut Process, fd: u64, out: u64) -> SysResult {
    let file = timerfd_of(p, fd)?;
    let current = file.as_timerfd().ok_or(Errno::EINVAL)?.get();
    write_time_pair(p, out, current, 1).map(|()| 0)
}

/// The kernel's NTP state as `adjtimex` reads and sets it. The values are
/// kept and reported as Linux keeps them; the clock's rate is not
/// disciplined by them (the timer hardware sets it). `ADJ_SETOFFSET`
/// does step the wall clock.
struct Ntp {
    offset: i64,
    freq: i64,
    maxerror: i64,
    esterror: i64,
    status: i32,
    constant: i64,
    tick: i64,
    tai: i32,
}

static NTP: framekernel::sync::SpinLock<Ntp> =
    framekernel::sync::SpinLock::new(Ntp { offset: 0, freq: 0, maxerror: 16_000_000, esterror: 16_000_000, status: STA_UNSYNC, constant: 2, tick: 10_000, tai: 0 });

const ADJ_OFFSET: u32 = 0x0001;
const ADJ_FREQUENCY: u32 = 0x0002;
const ADJ_MAXERROR: u32 = 0x0004;
const ADJ_ESTERROR: u32 = 0x0008;
const ADJ_STATUS: u32 = 0x0010;
const ADJ_TIMECONST: u32 = 0x0020;
const ADJ_TAI: u32 = 0x0080;
const ADJ_SETOFFSET: u32 = 0x0100;
const ADJ_NANO: u32 = 0x2000;
const ADJ_TICK: u32 = 0x4000;
const ADJ_OFFSET_SINGLESHOT: u32 = 0x8001;
const ADJ_OFFSET_SS_READ: u32 = 0xa001;
const STA_UNSYNC: i32 = 0x0040;
const STA_NANO: i32 = 0x2000;
/// Read-only status bits (PPS signal state, clock state).
const STA_RONLY: i32 = 0x0100 | 0x0200 | 0x0400 | 0x0800 | 0x1000 | 0x2000 | 0x4000 | 0x8000;
const TIME_OK: u64 = 0;
const TIME_ERROR: u64 = 5;
/// Clock ticks per second (`USER_HZ`).
const USER_HZ: i64 = 100;

/// `adjtimex(buf)` and `clock_adjtime(CLOCK_REALTIME, buf)`: reads (and,
/// for root, sets) the NTP parameters; returns the clock state.
pub(super) fn adjtimex(p: &mut Process, buf: u64) -> SysResult {
    let mut raw = [0u8; 208];
    p.memory.read(buf, &mut raw)?;
    let i64_at = |at: usize| i64::from_le_bytes(raw.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let i32_at = |at: usize| i32::from_le_bytes(raw.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
    let modes = i32_at(0) as u32;
    // ADJ_ADJTIME (0x8000) is only meaningful with the single-shot
    // offset bit (0x0001): Linux's timekeeping_validate_timex, first.
    if modes & 0x8000 != 0 && modes & 0x0001 == 0 {
        return Err(Errno::EINVAL);
    }
    if modes != 0 && modes != ADJ_OFFSET_SS_READ && !p.info.credentials().capable(crate::process::cap::SYS_TIME) {
        return Err(Errno::EPERM);
    }
    if modes & ADJ_TICK != 0 && !(900_000 / USER_HZ..=1_100_000 / USER_HZ).contains(&i64_at(88)) {
        return Err(Errno::EINVAL);
    }
    if modes & ADJ_SETOFFSET != 0 {
        // A step of the wall clock by the timeval (or timespec with ADJ_NANO).
        let (sec, sub) = (i64_at(72), i64_at(80));
        let per_sec = if modes & ADJ_NANO != 0 { 1_000_000_000 } else { 1_000_000 };
        if !(0..per_sec).contains(&sub) {
            return Err(Errno::EINVAL);
        }
        let step = i128::from(sec) * 1_000_000_000 + i128::from(sub) * i128::from(1_000_000_000 / per_sec);
        let now = i128::from(framekernel::time::realtime_ns());
        let target = u64::try_from(now + step).map_err(|_| Errno::EINVAL)?;
        framekernel::time::set_realtime_ns(target);
    }
    let mut ntp = NTP.lock();
    if modes & ADJ_OFFSET_SINGLESHOT == ADJ_OFFSET_SINGLESHOT && modes != ADJ_OFFSET_SS_READ {
        ntp.offset = i64_at(8);
    } else if modes & ADJ_OFFSET != 0 && modes & ADJ_OFFSET_SINGLESHOT != ADJ_OFFSET_SINGLESHOT {
        ntp.offset = i64_at(8).clamp(-500_000_000, 500_000_000);
    }
    if modes & ADJ_FREQUENCY != 0 {
        ntp.freq = i64_at(16).clamp(-(500 << 16), 500 << 16); // ±500 ppm
    }
    if modes & ADJ_MAXERROR != 0 {
        ntp.maxerror = i64_at(24).clamp(0, 16_000_000);
    }
    if modes & ADJ_ESTERROR != 0 {
        ntp.esterror = i64_at(32).clamp(0, 16_000_000);
    }
    if modes & ADJ_STATUS != 0 {
        ntp.status = (ntp.status & STA_RONLY) | (i32_at(40) & !STA_RONLY);
    }
    if modes & ADJ_TIMECONST != 0 {
        ntp.constant = i64_at(48).clamp(0, 10);
    }
    if modes & ADJ_TAI != 0 && i32_at(160) >= 0 {
        ntp.tai = i32_at(160);
    }
    if modes & ADJ_TICK != 0 {
        ntp.tick = i64_at(88);
    }
    if modes & ADJ_NANO != 0 {
        ntp.status |= STA_NANO;
    }
    let state = if ntp.status & STA_UNSYNC != 0 { TIME_ERROR } else { TIME_OK };
    // The whole structure back, padding zeroed (no kernel data leaks).
    let mut out = [0u8; 208];
    let wall = framekernel::time::realtime_ns();
    let sub = if ntp.status & STA_NANO != 0 { wall % NS_PER_SEC } else { wall % NS_PER_SEC / 1000 };
    let words: [(usize, i64); 13] = [
        (8, ntp.offset),
        (16, ntp.freq),
        (24, ntp.maxerror),
        (32, ntp.esterror),
        (48, ntp.constant),
        (56, 1),                       // precision, µs
        (64, 500 << 16),               // tolerance: 500 ppm
        (72, (wall / NS_PER_SEC) as i64),
        (80, sub as i64),
        (88, ntp.tick),
        (104, 0),                      // jitter
        (120, 0),                      // stabil
        (96, 0),                       // ppsfreq
    ];
    out[0..4].copy_from_slice(&modes.to_le_bytes());
    for (at, value) in words {
        out[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    out[40..44].copy_from_slice(&ntp.status.to_le_bytes());
    out[160..164].copy_from_slice(&ntp.tai.to_le_bytes());
    drop(ntp);
    p.memory.write(buf, &out)?;
    Ok(state)
}

/// `clock_adjtime(clock, buf)`: only the wall clock is adjustable.
pub(super) fn clock_adjtime(p: &mut Process, clock: u64, buf: u64) -> SysResult {
    match clock {
        0 => adjtimex(p, buf),
        1 | 4 | 6 | 7 | 2 | 3 => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EINVAL),
    }
}
