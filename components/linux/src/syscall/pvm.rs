//! Reaching into another process: `process_vm_readv`/`process_vm_writev`
//! (copy between address spaces) and `pidfd_getfd` (a copy of another
//! process's descriptor), with Linux's ptrace-access rule.

use super::io::iovecs;
use crate::errno::{Errno, SysResult};
use crate::process::{self, Process};
use alloc::vec;

/// Bytes moved per step (through a kernel buffer: the two address spaces
/// are never locked at once).
const STEP: usize = 64 * 1024;

/// `process_vm_readv` (`write` false) and `process_vm_writev` (`write`
/// true): copies between the caller's `local` iovecs and `pid`'s `remote`
/// ones, in order, until either list ends. Returns the bytes copied; a
/// fault in the remote process ends the copy (EFAULT if nothing was
/// copied), as on Linux.
pub(super) fn process_vm(p: &mut Process, args: [u64; 6], write: bool) -> SysResult {
    let [pid, local, local_count, remote, remote_count, flags] = args;
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let local = iovecs(p, local, local_count)?;
    let remote = iovecs(p, remote, remote_count)?;
    let target = process::lookup(pid as u32).filter(|_| (pid as i32) > 0).ok_or(Errno::ESRCH)?;
    if !target.may_be_traced_by(&p.info) {
        return Err(Errno::EPERM);
    }
    let their = target.memory().ok_or(Errno::ESRCH)?;
    let mut done = 0u64;
    let mut buffer = vec![0u8; STEP];
    let (mut li, mut ri) = (local.iter().copied(), remote.iter().copied());
    let (mut l, mut r) = (li.next(), ri.next());
    while let (Some((lbase, llen)), Some((rbase, rlen))) = (l, r) {
        if llen == 0 {
            l = li.next();
            continue;
        }
        if rlen == 0 {
            r = ri.next();
            continue;
        }
        let n = (llen.min(rlen) as usize).min(STEP);
        let chunk = buffer.get_mut(..n).ok_or(Errno::EFAULT)?;
        let moved = if write {
            p.memory.read(lbase, chunk).and_then(|()| their.write(rbase, chunk).map_err(|_| Errno::EFAULT))
        } else {
            their.read(rbase, chunk).map_err(|_| Errno::EFAULT).and_then(|()| p.memory.write(lbase, chunk))
        };
        if let Err(e) = moved {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n as u64;
        l = Some((lbase + n as u64, llen - n as u64));
        r = Some((rbase + n as u64, rlen - n as u64));
    }
    Ok(done)
}

/// `pidfd_getfd(pidfd, targetfd, flags)`: a close-on-exec copy of the
/// process's descriptor `targetfd` (flags must be 0).
pub(super) fn pidfd_getfd(p: &mut Process, pidfd: u64, fd: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(pidfd)?;
    let target = file.as_pidfd().ok_or(Errno::EBADF)?.target().clone();
    if target.outcome().is_some() {
        return Err(Errno::ESRCH);
    }
    if !target.may_be_traced_by(&p.info) {
        return Err(Errno::EPERM);
    }
    let files = target.files().ok_or(Errno::ESRCH)?;
    let theirs = files.get(fd)?;
    p.files.insert(theirs, 0, true)
}
