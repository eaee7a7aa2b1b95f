//! Scheduling-policy calls: `sched_{set,get}{scheduler,param,attr}`,
//! priority ranges, `sched_rr_get_interval`, CPU affinity and `getcpu`.
//!
//! Policies and priorities are kept per thread and reported back exactly
//! as Linux reports them, with Linux's checks (ranges, root for the
//! real-time and deadline policies, owners). The scheduler itself runs
//! every thread round-robin on the one CPU: a real-time policy gets no
//! precedence yet.

use crate::errno::{Errno, SysResult};
use crate::process::{self, Process, ProcessInfo, SchedParams, ThreadInfo};
use alloc::sync::Arc;

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
const SCHED_DEADLINE: u32 = 6;
const SCHED_RESET_ON_FORK: u32 = 0x4000_0000;
/// `sched_attr` sizes: version 0 (without utilization clamps) and 1.
const SCHED_ATTR_SIZE_VER0: u64 = 48;
const SCHED_ATTR_SIZE_VER1: u64 = 56;
const SCHED_FLAG_RESET_ON_FORK: u64 = 1;
/// Linux's round-robin time slice (`/proc/sys/kernel/sched_rr_timeslice_ms`).
pub const RR_TIMESLICE_MS: u64 = 100;
/// The time slice an ordinary thread gets here (the timer period).
const OTHER_TIMESLICE_NS: u64 = 10_000_000;

fn real_time(policy: u32) -> bool {
    policy == SCHED_FIFO || policy == SCHED_RR
}

/// The thread `pid` names (0: the caller) and its process.
fn target(p: &Process, pid: u64) -> Result<(Arc<ThreadInfo>, Arc<ProcessInfo>), Errno> {
    let pid = pid as i64;
    if pid < 0 || pid > i64::from(i32::MAX) {
        return Err(Errno::EINVAL);
    }
    if pid == 0 {
        return Ok((p.thread.clone(), p.info.clone()));
    }
    let thread = process::lookup_thread(pid as u32).ok_or(Errno::ESRCH)?;
    let owner = process::all().into_iter().find(|q| q.has_thread(pid as u32)).ok_or(Errno::ESRCH)?;
    Ok((thread, owner))
}

/// Linux's check_same_owner (or root): may the caller change `owner`'s threads?
fn may_change(p: &Process, owner: &ProcessInfo) -> Result<(), Errno> {
    let me = p.info.credentials();
    let them = owner.credentials();
    if me.capable(crate::process::cap::SYS_NICE) || me.euid == them.euid || me.euid == them.ruid { Ok(()) } else { Err(Errno::EPERM) }
}

/// Checks and applies a new policy: `priority` for FIFO/RR (1..=99),
/// 0 for the others; real-time and deadline policies need root.
fn apply(p: &Process, thread: &ThreadInfo, owner: &ProcessInfo, new: SchedParams) -> Result<(), Errno> {
    let valid_priority = if real_time(new.policy) { (1..=99).contains(&new.priority) } else { new.priority == 0 };
    if !valid_priority {
        return Err(Errno::EINVAL);
    }
    may_change(p, owner)?;
    let root = p.info.credentials().capable(crate::process::cap::SYS_NICE);
    let old = *thread.sched.lock();
    // RLIMIT_RTPRIO is 0: without root no real-time policy, and a reset
    // on fork once set stays.
    if !root && ((real_time(new.policy) && new.priority > old.priority) || new.policy == SCHED_DEADLINE || (old.reset_on_fork && !new.reset_on_fork)) {
        return Err(Errno::EPERM);
    }
    *thread.sched.lock() = new;
    Ok(())
}

fn read_priority(p: &Process, param: u64) -> Result<u32, Errno> {
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 4];
    p.memory.read(param, &mut bytes)?;
    let priority = i32::from_le_bytes(bytes);
    u32::try_from(priority).map_err(|_| Errno::EINVAL)
}

pub(super) fn sched_setscheduler(p: &mut Process, pid: u64, policy: u64, param: u64) -> SysResult {
    let policy = i32::try_from(policy as i64).ok().and_then(|v| u32::try_from(v).ok()).ok_or(Errno::EINVAL)?;
    let reset_on_fork = policy & SCHED_RESET_ON_FORK != 0;
    let policy = policy & !SCHED_RESET_ON_FORK;
    if ![SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE].contains(&policy) {
        return Err(Errno::EINVAL);
    }
    let priority = read_priority(p, param)?;
    let (thread, owner) = target(p, pid)?;
    apply(p, &thread, &owner, SchedParams { policy, priority, reset_on_fork, deadline: [0; 3] }).map(|()| 0)
}

pub(super) fn sched_setparam(p: &mut Process, pid: u64, param: u64) -> SysResult {
    let priority = read_priority(p, param)?;
    let (thread, owner) = target(p, pid)?;
    let current = *thread.sched.lock();
    apply(p, &thread, &owner, SchedParams { priority, ..current }).map(|()| 0)
}

pub(super) fn sched_getscheduler(p: &mut Process, pid: u64) -> SysResult {
    let (thread, _) = target(p, pid)?;
    let params = *thread.sched.lock();
    Ok(u64::from(params.policy | if params.reset_on_fork { SCHED_RESET_ON_FORK } else { 0 }))
}

pub(super) fn sched_getparam(p: &mut Process, pid: u64, param: u64) -> SysResult {
    if param == 0 {
        return Err(Errno::EINVAL);
    }
    let (thread, _) = target(p, pid)?;
    let priority = thread.sched.lock().priority;
    p.memory.write(param, &priority.to_le_bytes()).map(|()| 0)
}

pub(super) fn sched_priority_range(policy: u64, max: bool) -> SysResult {
    match policy as i64 as i32 as u32 {
        SCHED_FIFO | SCHED_RR => Ok(if max { 99 } else { 1 }),
        SCHED_OTHER | SCHED_BATCH | SCHED_IDLE | SCHED_DEADLINE => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn sched_rr_get_interval(p: &mut Process, pid: u64, out: u64) -> SysResult {
    let (thread, _) = target(p, pid)?;
    let ns = match thread.sched.lock().policy {
        SCHED_RR => RR_TIMESLICE_MS * 1_000_000,
        SCHED_FIFO => 0,
        _ => OTHER_TIMESLICE_NS,
    };
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    p.memory.write(out, &ts).map(|()| 0)
}

pub(super) fn sched_setattr(p: &mut Process, pid: u64, attr: u64, flags: u64) -> SysResult {
    if attr == 0 || flags != 0 {
        return Err(Errno::EINVAL);
    }
    let mut head = [0u8; 4];
    p.memory.read(attr, &mut head)?;
    let size = match u64::from(u32::from_le_bytes(head)) {
        0 => SCHED_ATTR_SIZE_VER0,
        s => s,
    };
    if !(SCHED_ATTR_SIZE_VER0..=4096).contains(&size) {
        // Too small or too large: E2BIG, and the size this kernel knows.
        p.memory.write(attr, &(SCHED_ATTR_SIZE_VER1 as u32).to_le_bytes())?;
        return Err(Errno::E2BIG);
    }
    let mut bytes = [0u8; SCHED_ATTR_SIZE_VER0 as usize];
    p.memory.read(attr, &mut bytes)?;
    let u32_at = |at: usize| u32::from_le_bytes(bytes.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
    let u64_at = |at: usize| u64::from_le_bytes(bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let (policy, sched_flags, nice, priority) = (u32_at(4), u64_at(8), u32_at(16) as i32, u32_at(20));
    let deadline = [u64_at(24), u64_at(32), u64_at(40)];
    if ![SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, SCHED_DEADLINE].contains(&policy) || sched_flags & !0x7f != 0 {
        return Err(Errno::EINVAL);
    }
    if policy == SCHED_DEADLINE {
        // Linux's __checkparam_dl: runtime >= 1024 ns, runtime <= deadline
        // <= period (period 0: the deadline), deadline not 0.
        let [runtime, dl, period] = deadline;
        let period = if period == 0 { dl } else { period };
        if dl == 0 || runtime < 1024 || runtime > dl || dl > period || (dl | period) & (1 << 63) != 0 {
            return Err(Errno::EINVAL);
        }
    }
    let (thread, owner) = target(p, pid)?;
    let reset_on_fork = sched_flags & SCHED_FLAG_RESET_ON_FORK != 0;
    let deadline = if policy == SCHED_DEADLINE { deadline } else { [0; 3] };
    apply(p, &thread, &owner, SchedParams { policy, priority, reset_on_fork, deadline })?;
    if policy == SCHED_OTHER || policy == SCHED_BATCH {
        let nice = nice.clamp(-20, 19);
        if nice < owner.nice.load(core::sync::atomic::Ordering::Relaxed) && !p.info.credentials().capable(crate::process::cap::SYS_NICE) {
            return Err(Errno::EPERM);
        }
        owner.nice.store(nice, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(0)
}

pub(super) fn sched_getattr(p: &mut Process, pid: u64, attr: u64, size: u64, flags: u64) -> SysResult {
    if attr == 0 || flags != 0 || !(SCHED_ATTR_SIZE_VER0..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let (thread, owner) = target(p, pid)?;
    let params = *thread.sched.lock();
    let size = size.min(SCHED_ATTR_SIZE_VER1);
    let nice = if real_time(params.policy) || params.policy == SCHED_DEADLINE { 0 } else { owner.nice.load(core::sync::atomic::Ordering::Relaxed) };
    let mut out = [0u8; SCHED_ATTR_SIZE_VER1 as usize];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &(size as u32).to_le_bytes());
    put(4, &params.policy.to_le_bytes());
    put(8, &u64::from(params.reset_on_fork).to_le_bytes());
    put(16, &nice.to_le_bytes());
    put(20, &params.priority.to_le_bytes());
    for (i, value) in params.deadline.iter().enumerate() {
        put(24 + i * 8, &value.to_le_bytes());
    }
    put(52, &1024u32.to_le_bytes()); // sched_util_max: no clamp
    p.memory.write(attr, out.get(..size as usize).unwrap_or(&out)).map(|()| 0)
}

pub(super) fn sched_getaffinity(p: &mut Process, pid: u64, len: u64, mask: u64) -> SysResult {
    // Linux: room for every possible CPU's bit, in whole longs; returns
    // the bytes written (a long here: at most 64 processors).
    if len < 8 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let (thread, _) = target(p, pid).map_err(|e| if e == Errno::EINVAL { Errno::ESRCH } else { e })?;
    p.memory.write(mask, &thread.affinity().to_le_bytes())?;
    Ok(8)
}

pub(super) fn sched_setaffinity(p: &mut Process, pid: u64, len: u64, mask: u64) -> SysResult {
    let mut bytes = [0u8; 8];
    let take = (len as usize).min(8);
    p.memory.read(mask, bytes.get_mut(..take).unwrap_or(&mut []))?;
    let (thread, owner) = target(p, pid).map_err(|e| if e == Errno::EINVAL { Errno::ESRCH } else { e })?;
    may_change(p, &owner)?;
    // A mask without an online CPU leaves the thread nowhere to run.
    thread.set_affinity(u64::from_le_bytes(bytes))?;
    Ok(0)
}

pub(super) fn getcpu(p: &mut Process, cpu: u64, node: u64) -> SysResult {
    let here = framekernel::cpu::current_index() as u32;
    for (at, value) in [(cpu, here), (node, 0)] {
        if at != 0 {
            p.memory.write(at, &value.to_le_bytes())?;
        }
    }
    Ok(0)
}
