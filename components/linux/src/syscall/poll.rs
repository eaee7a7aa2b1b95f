//! Waiting on several files: poll, ppoll, select, pselect6; and pipe(2).

use super::proc::{NEXT_WAKE, SLEEPERS};
use crate::errno::{Errno, SysResult};
use crate::files::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
use crate::process::Process;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Something a poller may wait for changed (pipe data, console input, a
/// closed end): wake the waiters to re-check.
pub fn notify() {
    SLEEPERS.wake_all();
}

/// Most descriptors in one poll.
const MAX_POLL: u64 = 1024;

/// One `struct pollfd`.
#[derive(Clone, Copy)]
struct PollFd {
    fd: i32,
    events: u16,
    revents: u16,
}

/// Waits until `check` finds something (`Some`), `deadline` (ns since
/// boot) passes (`None`) or a signal arrives (EINTR); re-checked whenever
/// a file may have changed.
fn wait_ready<R>(p: &Process, deadline: Option<u64>, mut check: impl FnMut() -> Option<R>) -> Result<Option<R>, Errno> {
    let interrupted = p.interrupt_check();
    SLEEPERS.wait_until(|| {
        if let Some(found) = check() {
            return Some(Ok(Some(found)));
        }
        if deadline.is_some_and(|d| framekernel::time::now_ns() >= d) {
            return Some(Ok(None));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        if let Some(d) = deadline {
            NEXT_WAKE.fetch_min(d, Ordering::Relaxed);
        }
        None
    })
}

/// Waits until one of `fds` is ready, `deadline` (ns since boot) passes
/// or a signal arrives. Fills in `revents`; returns the ready count.
fn wait(p: &Process, fds: &mut [PollFd], deadline: Option<u64>) -> Result<usize, Errno> {
    let files = p.files.clone();
    let found = wait_ready(p, deadline, || {
        let mut ready = 0;
        for entry in fds.iter_mut() {
            entry.revents = if entry.fd < 0 {
                0
            } else {
                match files.get(entry.fd as u64) {
                    Ok(file) => file.poll() & (entry.events | POLLHUP | POLLERR),
                    Err(_) => POLLNVAL,
                }
            };
            if entry.revents != 0 {
                ready += 1;
            }
        }
        (ready > 0).then_some(ready)
    })?;
    Ok(found.unwrap_or(0))
}

fn deadline_after(ns: u64) -> u64 {
    framekernel::time::now_ns().saturating_add(ns)
}

fn read_pollfds(p: &Process, addr: u64, count: u64) -> Result<Vec<PollFd>, Errno> {
    if count > MAX_POLL {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; count as usize * 8];
    p.memory.read(addr, &mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| PollFd {
            fd: i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            events: u16::from_le_bytes([c[4], c[5]]),
            revents: 0,
        })
        .collect())
}

fn write_pollfds(p: &Process, addr: u64, fds: &[PollFd]) -> Result<(), Errno> {
    let mut raw = Vec::with_capacity(fds.len() * 8);
    for f in fds {
        raw.extend_from_slice(&f.fd.to_le_bytes());
        raw.extend_from_slice(&f.events.to_le_bytes());
        raw.extend_from_slice(&f.revents.to_le_bytes());
    }
    p.memory.write(addr, &raw)
}

pub(super) fn poll(p: &mut Process, fds: u64, count: u64, timeout_ms: u64) -> SysResult {
    let mut entries = read_pollfds(p, fds, count)?;
    let timeout = timeout_ms as i32;
    let deadline = (timeout >= 0).then(|| deadline_after(timeout as u64 * 1_000_000));
    let ready = wait(p, &mut entries, deadline)?;
    write_pollfds(p, fds, &entries)?;
    Ok(ready as u64)
}

fn read_timespec_ns(p: &Process, addr: u64) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    super::proc::read_timespec(p, addr).map(Some)
}

/// Runs a wait with the signal mask at `mask` (a `sigset_t`; none: as
/// is) in force, as `ppoll`, `pselect6` and `epoll_pwait` do: the old
/// mask comes back afterwards, or, when a signal interrupted the wait,
/// after its handler ran (Linux's restore_saved_sigmask_unless).
pub(super) fn with_sigmask(p: &mut Process, mask: u64, size: u64, wait: impl FnOnce(&mut Process) -> SysResult) -> SysResult {
    if mask == 0 {
        return wait(p);
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; 8];
    p.memory.read(mask, &mut raw)?;
    let old = p.signals.mask;
    p.set_signal_mask(u64::from_le_bytes(raw));
    let result = wait(p);
    if result == Err(Errno::EINTR) {
        p.signals.restore_mask = Some(old);
    } else {
        p.set_signal_mask(old);
    }
    result
}

pub(super) fn ppoll(p: &mut Process, fds: u64, count: u64, timeout: u64) -> SysResult {
    let mut entries = read_pollfds(p, fds, count)?;
    let deadline = read_timespec_ns(p, timeout)?.map(deadline_after);
    let ready = wait(p, &mut entries, deadline)?;
    write_pollfds(p, fds, &entries)?;
    Ok(ready as u64)
}

/// select/pselect6: fd_set bitmaps in, bitmaps of ready descriptors out.
fn select_common(p: &mut Process, nfds: u64, sets: [u64; 3], deadline: Option<u64>) -> SysResult {
    if nfds > MAX_POLL {
        return Err(Errno::EINVAL);
    }
    let words = (nfds as usize).div_ceil(64);
    let mut bits = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    for (set, addr) in bits.iter_mut().zip(sets) {
        if addr != 0 && words > 0 {
            let mut raw = vec![0u8; words * 8];
            p.memory.read(addr, &mut raw)?;
            for (w, chunk) in set.iter_mut().zip(raw.chunks_exact(8)) {
                *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            }
        }
    }
    let mut entries = Vec::new();
    for fd in 0..nfds as usize {
        let mask = 1u64 << (fd % 64);
        let want = |set: &Vec<u64>| set.get(fd / 64).is_some_and(|w| w & mask != 0);
        let mut events = 0;
        if want(&bits[0]) {
            events |= POLLIN;
        }
        if want(&bits[1]) {
            events |= POLLOUT;
        }
        if want(&bits[2]) {
            events |= POLLERR;
        }
        if events != 0 {
            if p.files.get(fd as u64).is_err() {
                return Err(Errno::EBADF);
            }
            entries.push(PollFd { fd: fd as i32, events, revents: 0 });
        }
    }
    wait(p, &mut entries, deadline)?;
    let mut out = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    let mut count = 0;
    for e in &entries {
        let (word, mask) = (e.fd as usize / 64, 1u64 << (e.fd as usize % 64));
        let marks = [
            e.events & POLLIN != 0 && e.revents & (POLLIN | POLLHUP | POLLERR) != 0,
            e.events & POLLOUT != 0 && e.revents & (POLLOUT | POLLERR) != 0,
            e.events & POLLERR != 0 && e.revents & POLLERR != 0,
        ];
        for (set, mark) in out.iter_mut().zip(marks) {
            if let (true, Some(w)) = (mark, set.get_mut(word)) {
                *w |= mask;
                count += 1;
            }
        }
    }
    for (set, addr) in out.iter().zip(sets) {
        if addr != 0 && words > 0 {
            let raw: Vec<u8> = set.iter().flat_map(|w| w.to_le_bytes()).collect();
            p.memory.write(addr, &raw)?;
        }
    }
    Ok(count)
}

pub(super) fn select(p: &mut Process, nfds: u64, r: u64, w: u64, e: u64, timeout: u64) -> SysResult {
    let deadline = if timeout == 0 {
        None
    } else {
        let mut tv = [0u8; 16];
        p.memory.read(timeout, &mut tv)?;
        let sec = i64::from_le_bytes(tv.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let usec = i64::from_le_bytes(tv.get(8..).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        if sec < 0 || !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        Some(deadline_after((sec as u64).saturating_mul(1_000_000_000).saturating_add(usec as u64 * 1000)))
    };
    select_common(p, nfds, [r, w, e], deadline)
}

pub(super) fn pselect6(p: &mut Process, nfds: u64, r: u64, w: u64, e: u64, timeout: u64) -> SysResult {
    let deadline = read_timespec_ns(p, timeout)?.map(deadline_after);
    select_common(p, nfds, [r, w, e], deadline)
}

const O_NONBLOCK: u64 = 0o4000;

pub(super) fn pipe2(p: &mut Process, fds: u64, flags: u64) -> SysResult {
    if flags & !(super::fs::O_CLOEXEC | O_NONBLOCK | 0o40000 /* O_DIRECT */) != 0 {
        return Err(Errno::EINVAL);
    }
    let (read, write) = crate::pipe::pipe(flags & O_NONBLOCK != 0, p.info.credentials().capable(crate::process::cap::SYS_RESOURCE));
    let cloexec = flags & super::fs::O_CLOEXEC != 0;
    let r = p.files.insert(read, 0, cloexec)?;
    let w = match p.files.insert(write, 0, cloexec) {
        Ok(w) => w,
        Err(e) => {
            let _ = p.files.close(r);
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(r as i32).to_le_bytes());
    out[4..].copy_from_slice(&(w as i32).to_le_bytes());
    if let Err(e) = p.memory.write(fds, &out) {
        let _ = p.files.close(r);
        let _ = p.files.close(w);
        return Err(e);
    }
    Ok(0)
}

const EPOLL_CLOEXEC: u64 = 0o2000000;
const EFD_SEMAPHORE: u64 = 1;
const EFD_NONBLOCK: u64 = 0o4000;

/// `epoll_create(size)` (size > 0, else EINVAL) and `epoll_create1(flags)`.
pub(super) fn epoll_create(p: &mut Process, size_or_flags: u64, create1: bool) -> SysResult {
    let cloexec = if create1 {
        if size_or_flags & !EPOLL_CLOEXEC != 0 {
            return Err(Errno::EINVAL);
        }
        size_or_flags & EPOLL_CLOEXEC != 0
    } else {
        if size_or_flags as i32 <= 0 {
            return Err(Errno::EINVAL);
        }
        false
    };
    let epoll: alloc::sync::Arc<dyn crate::files::File> = crate::epoll::Epoll::new();
    p.files.insert(epoll, 0, cloexec)
}

/// Most epoll instances one instance may reach through nesting.
const MAX_NESTED_INSTANCES: usize = 64;

/// `epoll_ctl(epfd, op, fd, event)`: `struct epoll_event` is packed, 12
/// bytes (events u32, data u64).
pub(super) fn epoll_ctl(p: &mut Process, epfd: u64, op: u64, fd: u64, event: u64) -> SysResult {
    let epoll_file = p.files.get(epfd)?;
    let target = p.files.get(fd)?;
    let epoll = epoll_file.as_epoll().ok_or(Errno::EINVAL)?;
    if epfd == fd {
        return Err(Errno::EINVAL);
    }
    // Regular files and directories are always ready: Linux refuses them.
    if target.location().is_some_and(|l| matches!(l.node().metadata().kind, tessera_vfs::FileType::Regular | tessera_vfs::FileType::Directory)) {
        return Err(Errno::EPERM);
    }
    let (events, data) = if op == 2 {
        (0, 0)
    } else {
        let mut raw = [0u8; 12];
        p.memory.read(event, &mut raw)?;
        (u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]), u64::from_le_bytes(raw[4..12].try_into().unwrap_or([0; 8])))
    };
    if op == 1 && target.as_epoll().is_some_and(|inner| inner.reaches(&epoll_file, 0)) {
        return Err(Errno::ELOOP);
    }
    // Nested instances make every wait poll through them: Linux bounds
    // the paths (EINVAL), so that no wait can be made to take forever,
    // and the depth: this instance and at most four more below it.
    if op == 1
        && let Some(inner) = target.as_epoll()
        && (inner.nested_instances(2, MAX_NESTED_INSTANCES).is_none() || epoll.nested_instances(0, MAX_NESTED_INSTANCES).is_none())
    {
        return Err(Errno::EINVAL);
    }
    epoll.control(op as u32, fd as i32, &target, events, data)?;
    Ok(0)
}

/// `epoll_wait` / `epoll_pwait` / `epoll_pwait2`: waits (until the deadline,
/// a signal, or an entry ready) and writes up to `max` events.
pub(super) fn epoll_wait(p: &mut Process, epfd: u64, events: u64, max: u64, deadline: Option<u64>) -> SysResult {
    let max = max as i32;
    if max <= 0 || max as usize > usize::MAX / 12 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(epfd)?;
    let epoll = file.as_epoll().ok_or(Errno::EINVAL)?;
    if events == 0 || !framekernel::logic::layout::is_user_half(events) {
        return Err(Errno::EFAULT);
    }
    let ready = wait_ready(p, deadline, || Some(epoll.ready(max as usize)).filter(|r| !r.is_empty()))?.unwrap_or_default();
    let mut raw = Vec::with_capacity(ready.len() * 12);
    for (revents, data) in &ready {
        raw.extend_from_slice(&revents.to_le_bytes());
        raw.extend_from_slice(&data.to_le_bytes());
    }
    p.memory.write(events, &raw)?;
    Ok(ready.len() as u64)
}

/// A millisecond timeout (negative: none) as a deadline.
pub(super) fn deadline_ms(timeout: u64) -> Option<u64> {
    let timeout = timeout as i32;
    (timeout >= 0).then(|| deadline_after(timeout as u64 * 1_000_000))
}

/// A `struct timespec` timeout (NULL: none) as a deadline.
pub(super) fn deadline_ts(p: &Process, timeout: u64) -> Result<Option<u64>, Errno> {
    Ok(read_timespec_ns(p, timeout)?.map(deadline_after))
}

/// `eventfd(initval)` and `eventfd2(initval, flags)`.
pub(super) fn eventfd(p: &mut Process, initial: u64, flags: u64) -> SysResult {
    if flags & !(EFD_SEMAPHORE | EFD_NONBLOCK | EPOLL_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = crate::epoll::EventFd::open(u64::from(initial as u32), flags & EFD_SEMAPHORE != 0, flags & EFD_NONBLOCK != 0);
    p.files.insert(file, 0, flags & EPOLL_CLOEXEC != 0)
}
