//! The POSIX message-queue calls over [`crate::mqueue`]: `mq_open`,
//! `mq_unlink`, `mq_timedsend`, `mq_timedreceive`, `mq_notify` and
//! `mq_getsetattr`, with Linux's checks.

use crate::errno::{Errno, SysResult};
use crate::mqueue::{self, MqFile, Notify};
use crate::process::Process;
use core::sync::atomic::Ordering;
use tessera_vfs::perm::{MAY_READ, MAY_WRITE};

const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_NONBLOCK: u64 = 0o4000;
const O_CLOEXEC: u64 = 0o2000000;
const NAME_MAX: usize = 255;

/// The queue name (glibc passes it without the leading `/`).
fn queue_name(p: &Process, at: u64) -> Result<alloc::string::String, Errno> {
    let name = p.memory.read_c_string(at, 4096)?;
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return Err(Errno::EACCES); // not a name in the queue directory
    }
    alloc::string::String::from_utf8(name).map_err(|_| Errno::EINVAL)
}

/// May the caller open `queue` for `mask`?
fn allowed(p: &Process, queue: &mqueue::Queue, mask: u32) -> bool {
    let (uid, gid, perm) = queue.owner;
    let meta = tessera_vfs::Metadata { uid, gid, perm, ..crate::files::device_stat(0, 0, 0) };
    p.info.credentials().identity().may(&meta, mask)
}

fn read_long(p: &Process, at: u64, index: u64) -> Result<i64, Errno> {
    let mut word = [0u8; 8];
    p.memory.read(at.checked_add(index * 8).ok_or(Errno::EFAULT)?, &mut word)?;
    Ok(i64::from_le_bytes(word))
}

pub(super) fn mq_open(p: &mut Process, name: u64, flags: u64, mode: u64, attr: u64) -> SysResult {
    let name = queue_name(p, name)?;
    let access = flags & O_ACCMODE;
    if access == 3 {
        return Err(Errno::EINVAL);
    }
    let creds = p.info.credentials();
    let mut created = false;
    let queue = match mqueue::lookup(&name) {
        Some(_) if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL => return Err(Errno::EEXIST),
        Some(queue) => queue,
        None if flags & O_CREAT == 0 => return Err(Errno::ENOENT),
        None => {
            let (mut max_messages, mut message_size) = (mqueue::MSG_MAX, mqueue::MSGSIZE_MAX);
            if attr != 0 {
                let (maxmsg, msgsize) = (read_long(p, attr, 1)?, read_long(p, attr, 2)?);
                let root = creds.capable(crate::process::cap::SYS_RESOURCE);
                let (msg_limit, size_limit) =
                    if root { (mqueue::HARD_MSG_MAX, mqueue::HARD_MSGSIZE_MAX) } else { (mqueue::MSG_MAX, mqueue::MSGSIZE_MAX) };
                if maxmsg <= 0 || msgsize <= 0 || maxmsg as u64 > msg_limit as u64 || msgsize as u64 > size_limit as u64 {
                    return Err(Errno::EINVAL);
                }
                (max_messages, message_size) = (maxmsg as usize, msgsize as usize);
            }
            let perm = (mode as u32) & 0o777 & !p.fs.umask();
            let limit = p.info.soft_limit(crate::process::rlimit::MSGQUEUE);
            created = true;
            mqueue::create(&name, max_messages, message_size, (creds.euid, creds.egid, perm), limit, creds.capable(crate::process::cap::SYS_RESOURCE))?
        }
    };
    let existing_needs = match access {
        0 => MAY_READ,
        1 => MAY_WRITE,
        _ => MAY_READ | MAY_WRITE,
    };
    if !created && !allowed(p, &queue, existing_needs) {
        return Err(Errno::EACCES);
    }
    let file = MqFile::open(queue, access as u32, flags & O_NONBLOCK != 0);
    let fd = p.files.insert(file, 0, flags & O_CLOEXEC != 0);
    if fd.is_err() && created {
        // No descriptor (EMFILE): Linux takes the descriptor first, so
        // the queue must not be left behind.
        mqueue::unlink(&name);
    }
    fd
}

pub(super) fn mq_unlink(p: &mut Process, name: u64) -> SysResult {
    let name = queue_name(p, name)?;
    let queue = mqueue::lookup(&name).ok_or(Errno::ENOENT)?;
    let creds = p.info.credentials();
    // The queue directory is sticky: its owner or root removes a queue.
    if !creds.capable(crate::process::cap::FOWNER) && creds.euid != queue.owner.0 {
        return Err(Errno::EACCES);
    }
    mqueue::unlink(&name);
    Ok(0)
}

fn queue_file(p: &Process, fd: u64) -> Result<alloc::sync::Arc<dyn crate::files::File>, Errno> {
    let file = p.files.get(fd)?;
    if file.as_mqueue().is_none() {
        return Err(Errno::EBADF);
    }
    Ok(file)
}

/// An absolute `CLOCK_REALTIME` timeout as a deadline in monotonic ns
/// (`None`: wait without limit). Read only when the call would block.
fn deadline(p: &Process, timeout: u64) -> Result<Option<u64>, Errno> {
    if timeout == 0 {
        return Ok(None);
    }
    let (sec, nsec) = (read_long(p, timeout, 0)?, read_long(p, timeout, 1)?);
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    let wall = (sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64);
    let now = framekernel::time::now_ns();
    let offset = framekernel::time::realtime_ns().saturating_sub(now);
    Ok(Some(wall.saturating_sub(offset)))
}

/// Waits on `queue` until `ready` gives a result, the deadline passes
/// (ETIMEDOUT) or a signal comes (EINTR).
fn wait<R>(p: &Process, queue: &mqueue::Queue, timeout: u64, mut ready: impl FnMut() -> Option<R>) -> Result<R, Errno> {
    let mut limit: Option<Option<u64>> = None;
    let interrupted = p.interrupt_check();
    super::proc::SLEEPERS.wait_until(|| {
        if let Some(found) = ready() {
            return Some(Ok(found));
        }
        let deadline = match limit {
            Some(d) => d,
            None => match deadline(p, timeout) {
                Ok(d) => {
                    limit = Some(d);
                    d
                }
                Err(e) => return Some(Err(e)),
            },
        };
        if let Some(d) = deadline {
            if framekernel::time::now_ns() >= d {
                return Some(Err(Errno::ETIMEDOUT));
            }
            super::proc::NEXT_WAKE.fetch_min(d, Ordering::Relaxed);
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        let _ = queue;
        None
    })
}

pub(super) fn mq_timedsend(p: &mut Process, fd: u64, msg: u64, len: u64, priority: u64, timeout: u64) -> SysResult {
    if priority >= u64::from(mqueue::PRIO_MAX) {
        return Err(Errno::EINVAL);
    }
    let file = queue_file(p, fd)?;
    let mq = file.as_mqueue().ok_or(Errno::EBADF)?;
    if mq.access == 0 {
        return Err(Errno::EBADF);
    }
    let queue = mq.queue.clone();
    if len as usize > queue.message_size {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = alloc::vec![0u8; len as usize];
    p.memory.read(msg, &mut data)?;
    let nonblocking = mq.nonblocking();
    let sent = wait(p, &queue, timeout, || match queue.try_send(&data, priority as u32, queue.receivers.load(Ordering::SeqCst) > 0) {
        Ok(notify) => Some(Ok(notify)),
        Err(e) if nonblocking => Some(Err(e)),
        Err(_) => None,
    })??;
    super::poll::notify();
    if let Some(Notify { pid, signal: Some((sig, value)) }) = sent
        && let Some(target) = crate::process::lookup(pid)
    {
        // SI_MESGQ: the sender's pid and uid, the registered value.
        let uid = p.info.credentials().ruid;
        target.send_signal(sig, crate::signal::SigInfo { code: -3, addr: u64::from(p.info.pid) | u64::from(uid) << 32, value });
    }
    Ok(0)
}

pub(super) fn mq_timedreceive(p: &mut Process, fd: u64, msg: u64, len: u64, priority: u64, timeout: u64) -> SysResult {
    let file = queue_file(p, fd)?;
    let mq = file.as_mqueue().ok_or(Errno::EBADF)?;
    if mq.access == 1 {
        return Err(Errno::EBADF);
    }
    let queue = mq.queue.clone();
    if (len as usize) < queue.message_size {
        return Err(Errno::EMSGSIZE);
    }
    let nonblocking = mq.nonblocking();
    queue.receivers.fetch_add(1, Ordering::SeqCst);
    let got = wait(p, &queue, timeout, || match queue.try_receive() {
        Some(found) => Some(Ok(found)),
        None if nonblocking => Some(Err(Errno::EAGAIN)),
        None => None,
    });
    queue.receivers.fetch_sub(1, Ordering::SeqCst);
    let (data, prio) = got??;
    super::poll::notify();
    p.memory.write(msg, &data)?;
    if priority != 0 {
        p.memory.write(priority, &prio.to_le_bytes())?;
    }
    Ok(data.len() as u64)
}

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;

pub(super) fn mq_notify(p: &mut Process, fd: u64, event: u64) -> SysResult {
    // The request is checked before the descriptor (Linux's order).
    let request = if event == 0 {
        None
    } else {
        let mut bytes = [0u8; 16];
        p.memory.read(event, &mut bytes)?;
        let value = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        let signo = i32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
        let how = i32::from_le_bytes(bytes[12..16].try_into().unwrap_or([0; 4]));
        Some(match how {
            SIGEV_NONE => None,
            SIGEV_SIGNAL if (1..=crate::signal::NSIG as i32).contains(&signo) => Some((signo as u8, value)),
            // SIGEV_THREAD needs a netlink socket (none here); others are invalid.
            _ => return Err(Errno::EINVAL),
        })
    };
    let file = queue_file(p, fd)?;
    let mq = file.as_mqueue().ok_or(Errno::EBADF)?;
    let pid = p.info.pid;
    match request {
        None => mq.queue.set_notify(pid, None).map(|()| 0),
        Some(signal) => mq.queue.set_notify(pid, Some(Notify { pid, signal })).map(|()| 0),
    }
}

pub(super) fn mq_getsetattr(p: &mut Process, fd: u64, new: u64, old: u64) -> SysResult {
    let file = queue_file(p, fd)?;
    let mq = file.as_mqueue().ok_or(Errno::EBADF)?;
    let set = if new != 0 {
        let flags = read_long(p, new, 0)? as u64;
        if flags & !O_NONBLOCK != 0 {
            return Err(Errno::EINVAL);
        }
        Some(flags & O_NONBLOCK != 0)
    } else {
        None
    };
    if old != 0 {
        let mut out = [0u8; 64];
        let fields = [if mq.nonblocking() { O_NONBLOCK } else { 0 }, mq.queue.max_messages as u64, mq.queue.message_size as u64, mq.queue.len() as u64];
        for (i, value) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
        }
        p.memory.write(old, &out)?;
    }
    if let Some(on) = set {
        mq.set_nonblocking(on);
    }
    Ok(0)
}
