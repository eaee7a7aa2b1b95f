//! Signal system calls: actions, masks, sending, waiting and returning.

use crate::errno::{Errno, SysResult};
use crate::process::{self, Process};
use crate::signal::{self, SigAction, SigInfo, UNBLOCKABLE, num};
use alloc::vec::Vec;
use framekernel::arch::user::UserContext;

fn valid(sig: u64) -> Result<u8, Errno> {
    if (1..=signal::NSIG as u64).contains(&sig) { Ok(sig as u8) } else { Err(Errno::EINVAL) }
}

pub(super) fn rt_sigaction(p: &mut Process, sig: u64, act: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = valid(sig)?;
    let current = p.signals.actions.get(sig);
    if act != 0 && (sig == num::SIGKILL || sig == num::SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 {
        let mut bytes = [0u8; 32];
        p.memory.read(act, &mut bytes)?;
        Some(SigAction::from_bytes(&bytes))
    } else {
        None
    };
    if old != 0 {
        p.memory.write(old, &current.to_bytes())?;
    }
    if let Some(mut new) = new {
        new.mask &= !UNBLOCKABLE;
        p.set_signal_action(sig, new);
    }
    Ok(0)
}

pub(super) fn rt_sigprocmask(p: &mut Process, how: u64, set: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if set != 0 {
        let mut bytes = [0u8; 8];
        p.memory.read(set, &mut bytes)?;
        Some(u64::from_le_bytes(bytes))
    } else {
        None
    };
    if how > 2 && new.is_some() {
        return Err(Errno::EINVAL);
    }
    if old != 0 {
        p.memory.write(old, &p.signals.mask.to_le_bytes())?;
    }
    if let Some(set) = new {
        let mask = match how {
            0 => p.signals.mask | set,
            1 => p.signals.mask & !set,
            _ => set,
        };
        p.set_signal_mask(mask);
    }
    Ok(0)
}

pub(super) fn rt_sigpending(p: &mut Process, set: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let pending = (p.info.pending.bits() | p.thread.pending.bits()) & p.signals.mask;
    p.memory.write(set, &pending.to_le_bytes())?;
    Ok(0)
}

pub(super) fn rt_sigreturn(p: &mut Process, ctx: &mut UserContext) -> Result<(), Errno> {
    signal::sigreturn(p, ctx)
}

/// Blocks until a signal the thread does not block is pending.
fn wait_for_signal(p: &Process) {
    let interrupted = p.interrupt_check();
    let queue = tessera_sched::WaitQueue::new();
    queue.wait_until(|| interrupted().then_some(()));
}

pub(super) fn rt_sigsuspend(p: &mut Process, set: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 8];
    p.memory.read(set, &mut bytes)?;
    let temporary = u64::from_le_bytes(bytes) & !UNBLOCKABLE;
    p.signals.restore_mask = Some(p.signals.mask);
    p.set_signal_mask(temporary);
    wait_for_signal(p);
    Err(Errno::EINTR)
}

pub(super) fn pause(p: &mut Process) -> SysResult {
    wait_for_signal(p);
    Err(Errno::EINTR)
}

const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;
const MINSIGSTKSZ: u64 = 2048;

pub(super) fn sigaltstack(p: &mut Process, ctx: &UserContext, new: u64, old: u64) -> SysResult {
    let (base, size) = p.signals.alt_stack;
    let on_stack = size > 0 && (base..base + size).contains(&ctx.regs.rsp);
    if old != 0 {
        let mut bytes = [0u8; 24];
        bytes[..8].copy_from_slice(&base.to_le_bytes());
        let flags = if size == 0 { SS_DISABLE } else if on_stack { SS_ONSTACK } else { 0 };
        bytes[8..12].copy_from_slice(&flags.to_le_bytes());
        bytes[16..].copy_from_slice(&size.to_le_bytes());
        p.memory.write(old, &bytes)?;
    }
    if new != 0 {
        if on_stack {
            return Err(Errno::EPERM);
        }
        let mut bytes = [0u8; 24];
        p.memory.read(new, &mut bytes)?;
        let word = |at: usize| u64::from_le_bytes(bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let flags = word(8) as u32;
        if flags & !(SS_DISABLE | SS_ONSTACK | 0x8000_0000) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & SS_DISABLE != 0 {
            p.signals.alt_stack = (0, 0);
        } else {
            let (sp, size) = (word(0), word(16));
            if size < MINSIGSTKSZ {
                return Err(Errno::ENOMEM);
            }
            p.signals.alt_stack = (sp, size);
        }
    }
    Ok(0)
}

pub(super) fn kill(p: &mut Process, pid: u64, sig: u64) -> SysResult {
    let sig = if sig == 0 { 0 } else { valid(sig)? };
    let pid = pid as i64 as i32;
    let me = p.info.pid;
    // Zombies are still there to be signalled (nothing happens), as on Linux.
    let targets: Vec<_> = process::all()
        .into_iter()
        .filter(|t| match pid {
            0 => t.pgid() == p.info.pgid(),
            -1 => t.pid != 1 && t.pid != me,
            n if n > 0 => t.pid == n as u32,
            n => t.pgid() == n.unsigned_abs(),
        })
        .collect();
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    let sender = p.info.credentials();
    let allowed: Vec<_> = targets.into_iter().filter(|t| may_signal(&sender, &p.info, t, sig)).collect();
    if allowed.is_empty() {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        for target in allowed {
            // SI_USER: si_pid, si_uid.
            target.send_signal(sig, SigInfo { code: 0, addr: u64::from(me) | u64::from(sender.ruid) << 32, value: 0 });
        }
    }
    Ok(0)
}

/// Linux's `kill_ok_by_cred`: the superuser may signal anyone; others a
/// process whose real or saved uid is their real or effective uid, and
/// SIGCONT goes to any process of their session.
fn may_signal(sender: &process::Credentials, me: &process::ProcessInfo, target: &process::ProcessInfo, sig: u8) -> bool {
    if sender.capable(crate::process::cap::KILL) || (sig == 18 && target.sid() == me.sid()) {
        return true;
    }
    let t = target.credentials();
    [sender.ruid, sender.euid].iter().any(|id| *id == t.ruid || *id == t.suid)
}

fn signal_thread(p: &Process, tgid: Option<u32>, tid: u64, sig: u64) -> SysResult {
    if (tid as i32) <= 0 {
        return Err(Errno::EINVAL); // a pid_t
    }
    let sig = if sig == 0 { 0 } else { valid(sig)? };
    let thread = process::lookup_thread(tid as u32).ok_or(Errno::ESRCH)?;
    if let Some(tgid) = tgid {
        let group = process::lookup(tgid).ok_or(Errno::ESRCH)?;
        if !group.has_thread(tid as u32) {
            return Err(Errno::ESRCH);
        }
    }
    let owner = process::all().into_iter().find(|t| t.has_thread(tid as u32)).ok_or(Errno::ESRCH)?;
    if !may_signal(&p.info.credentials(), &p.info, &owner, sig) {
        return Err(Errno::EPERM);
    }
    if sig == crate::signal::num::SIGCONT {
        owner.resume_stopped(); // even when SIGCONT itself is ignored
    }
    if sig != 0 {
        let uid = u64::from(p.info.credentials().ruid);
        thread.queue_signal(sig, SigInfo { code: -6, addr: u64::from(p.info.pid) | uid << 32, value: 0 }, owner.signal_quota())?; // SI_TKILL
    }
    Ok(0)
}

pub(super) fn tgkill(p: &mut Process, tgid: u64, tid: u64, sig: u64) -> SysResult {
    if (tgid as i32) <= 0 || (tid as i32) <= 0 {
        return Err(Errno::EINVAL);
    }
    signal_thread(p, Some(tgid as u32), tid, sig)
}

pub(super) fn tkill(p: &mut Process, tid: u64, sig: u64) -> SysResult {
    signal_thread(p, None, tid, sig)
}

pub(super) fn rt_sigtimedwait(p: &mut Process, set: u64, info: u64, timeout: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 8];
    p.memory.read(set, &mut bytes)?;
    let set = u64::from_le_bytes(bytes) & !UNBLOCKABLE;
    let deadline = if timeout == 0 {
        u64::MAX
    } else {
        framekernel::time::now_ns().saturating_add(super::proc::read_timespec(p, timeout)?)
    };
    // Wait for a signal of the set, or any other deliverable signal (EINTR).
    let check = p.interrupt_check();
    let waiting = {
        let (info, thread) = (p.info.clone(), p.thread.clone());
        move || (thread.pending.bits() | info.pending.bits()) & set != 0
    };
    // Signals wake the thread directly; the alarm at the deadline.
    let _alarm = super::proc::Alarm::new(deadline);
    tessera_sched::WaitQueue::new().wait_until(|| {
        if waiting() {
            return Some(());
        }
        if check() || framekernel::time::now_ns() >= deadline {
            return Some(());
        }
        None
    });
    match p.take_signal_in(set) {
        Some((sig, details)) => {
            if info != 0 {
                let mut si = [0u8; 128];
                si[..4].copy_from_slice(&i32::from(sig).to_le_bytes());
                si[8..12].copy_from_slice(&details.code.to_le_bytes());
                si[16..24].copy_from_slice(&details.addr.to_le_bytes());
                si[24..32].copy_from_slice(&details.value.to_le_bytes());
                p.memory.write(info, &si)?;
            }
            Ok(u64::from(sig))
        }
        None if framekernel::time::now_ns() >= deadline => Err(Errno::EAGAIN),
        None => Err(Errno::EINTR),
    }
}

/// A caller-supplied `siginfo_t` (rt_sigqueueinfo, pidfd_send_signal):
/// its signal number and the fields the kernel passes on. Only the
/// sender's own process may claim a kernel code (`si_code >= 0`) or
/// SI_TKILL, as Linux's rule.
fn user_siginfo(p: &Process, at: u64, target: u32) -> Result<(u32, SigInfo), Errno> {
    let mut bytes = [0u8; 32];
    p.memory.read(at, &mut bytes)?;
    let word = |i: usize| u32::from_le_bytes(bytes.get(i..i + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
    let code = word(8) as i32;
    if (code >= 0 || code == -6) && target != p.info.pid {
        return Err(Errno::EPERM);
    }
    let value = u64::from(word(24)) | u64::from(word(28)) << 32;
    Ok((word(0), SigInfo { code, addr: u64::from(word(16)) | u64::from(word(20)) << 32, value }))
}

/// `rt_sigqueueinfo(tgid, sig, info)` and `rt_tgsigqueueinfo(tgid, tid, sig, info)`.
pub(super) fn rt_sigqueueinfo(p: &mut Process, tgid: u64, tid: Option<u64>, sig: u64, info: u64) -> SysResult {
    let sig = if sig == 0 { 0 } else { valid(sig)? };
    // The process, found by its id or the id of any of its threads.
    let id = tgid as i32;
    if id <= 0 && tid.is_some() {
        return Err(Errno::EINVAL);
    }
    let group = process::lookup(id as u32)
        .or_else(|| process::all().into_iter().find(|q| q.has_thread(id as u32)))
        .filter(|_| id > 0)
        .ok_or(Errno::ESRCH)?;
    let (_, info) = user_siginfo(p, info, group.pid)?;
    if !may_signal(&p.info.credentials(), &p.info, &group, sig) {
        return Err(Errno::EPERM);
    }
    match tid {
        None if sig != 0 => group.queue_signal(sig, info)?,
        Some(tid) => {
            let thread = process::lookup_thread(tid as u32).filter(|_| group.has_thread(tid as u32)).ok_or(Errno::ESRCH)?;
            if sig != 0 {
                thread.queue_signal(sig, info, group.signal_quota())?;
            }
        }
        None => {}
    }
    Ok(0)
}

/// `pidfd_open(pid, flags)`: a close-on-exec descriptor for a process
/// (a thread-group leader); flags 0 or PIDFD_NONBLOCK.
pub(super) fn pidfd_open(p: &mut Process, pid: u64, flags: u64) -> SysResult {
    let nonblock = u64::from(crate::fs::O_NONBLOCK);
    let pid = pid as i32; // a pid_t
    if flags & !nonblock != 0 || pid <= 0 {
        return Err(Errno::EINVAL);
    }
    let target = process::lookup(pid as u32).filter(|t| t.outcome().is_none()).ok_or(Errno::ESRCH)?;
    p.files.insert(crate::pidfd::PidFd::open(target, 2 | flags as u32), 0, true)
}

/// `pidfd_send_signal(pidfd, sig, info, flags)`.
pub(super) fn pidfd_send_signal(p: &mut Process, fd: u64, sig: u64, info: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    // A process descriptor, or an open /proc/PID directory.
    let target = match file.as_pidfd() {
        Some(pidfd) => pidfd.target().clone(),
        None => {
            let node = file.location().ok_or(Errno::EBADF)?.node().clone();
            let pid = crate::procfs::process_of_dir(&node).ok_or(Errno::EBADF)?;
            process::lookup(pid).ok_or(Errno::ESRCH)?
        }
    };
    let sig = if sig == 0 { 0 } else { valid(sig)? };
    if target.outcome().is_some() {
        return Err(Errno::ESRCH);
    }
    let sender = p.info.credentials();
    let info = if info != 0 {
        let (signo, info) = user_siginfo(p, info, target.pid)?;
        if signo != u32::from(sig) {
            return Err(Errno::EINVAL);
        }
        info
    } else {
        SigInfo { code: 0, addr: u64::from(p.info.pid) | u64::from(sender.ruid) << 32, value: 0 } // SI_USER
    };
    if !may_signal(&sender, &p.info, &target, sig) {
        return Err(Errno::EPERM);
    }
    if sig != 0 {
        target.queue_signal(sig, info)?;
    }
    Ok(0)
}

const SFD_CLOEXEC: u64 = 0o2000000;
const SFD_NONBLOCK: u64 = 0o4000;

/// `signalfd4(fd, mask, size, flags)` (and `signalfd` with flags 0): a new
/// signalfd when `fd` is -1, else a new mask for that signalfd.
pub(super) fn signalfd4(p: &mut Process, fd: u64, mask: u64, size: u64, flags: u64) -> SysResult {
    if size != 8 || flags & !(SFD_CLOEXEC | SFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 8];
    p.memory.read(mask, &mut bytes)?;
    let set = u64::from_le_bytes(bytes);
    if fd as i32 == -1 {
        let file = crate::signalfd::SignalFd::open(set, flags & SFD_NONBLOCK != 0, p.info.clone(), p.thread.clone(), crate::epoll::anon_ino());
        return p.files.insert(file, 0, flags & SFD_CLOEXEC != 0);
    }
    let file = p.files.get(fd)?;
    file.as_signalfd().ok_or(Errno::EINVAL)?.set_mask(set);
    Ok(fd)
}

/// `read` of a signalfd: whole records of the caller's pending signals of
/// the mask, waiting for one unless non-blocking.
pub(super) fn signalfd_read(p: &mut Process, file: &crate::signalfd::SignalFd, buf: u64, count: u64) -> SysResult {
    use crate::signalfd::RECORD;
    let room = (count as usize / RECORD).min(64);
    if room == 0 {
        return Err(Errno::EINVAL);
    }
    let interrupted = p.interrupt_check();
    let mask = file.mask();
    let waiting = {
        let (info, thread) = (p.info.clone(), p.thread.clone());
        move || (thread.pending.bits() | info.pending.bits()) & mask != 0
    };
    // A signal made pending wakes the thread directly.
    tessera_sched::WaitQueue::new().wait_until(|| {
        if waiting() {
            return Some(Ok(()));
        }
        if file.nonblocking() {
            return Some(Err(Errno::EAGAIN));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        None
    })?;
    let mut out = Vec::with_capacity(room * RECORD);
    while out.len() < room * RECORD {
        let Some((sig, info)) = p.take_signal_in(mask) else { break };
        out.extend_from_slice(&crate::signalfd::record(sig, &info));
    }
    if out.is_empty() {
        return Err(Errno::EAGAIN); // another reader took them
    }
    p.memory.write(buf, &out)?;
    Ok(out.len() as u64)
}
