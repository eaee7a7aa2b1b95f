//! File I/O system calls: read, write, stat, ioctl.

use super::IO_CHUNK;
use crate::errno::{Errno, SysResult};
use crate::process::Process;
#[allow(unused_imports)]
use alloc::vec;
#[allow(unused_imports)]
use framekernel::arch::user::UserContext;
#[allow(unused_imports)]
use framekernel::logic::layout::is_user_half;
use crate::files::FileStat;
use super::fs::O_CLOEXEC;

pub(super) fn read(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let len = (count as usize).min(IO_CHUNK);
    p.memory.populate_range(buf, len as u64, true)?;
    let mut data = vec![0u8; len];
    let interrupted = p.interrupt_check();
    let n = file.read(&mut data, &interrupted)? as usize;
    p.memory.write(buf, data.get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

pub(super) fn write(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let mut done = 0u64;
    while done < count {
        let len = ((count - done) as usize).min(IO_CHUNK);
        let mut data = vec![0u8; len];
        p.memory.read(buf.checked_add(done).ok_or(Errno::EFAULT)?, &mut data)?;
        let n = file.write(&data)?;
        done += n;
        if (n as usize) < len {
            break;
        }
    }
    Ok(done)
}

pub(super) fn writev(p: &mut Process, fd: u64, iov: u64, count: u64) -> SysResult {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut total = 0u64;
    for i in 0..count {
        let mut entry = [0u8; 16];
        p.memory.read(iov.checked_add(i * 16).ok_or(Errno::EFAULT)?, &mut entry)?;
        let base = u64::from_le_bytes(entry.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let len = u64::from_le_bytes(entry.get(8..).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        total += write(p, fd, base, len)?;
    }
    Ok(total)
}

/// Encodes `struct stat` (x86_64, 144 bytes).
pub(super) fn stat_bytes(st: &FileStat) -> [u8; 144] {
    let mut b = [0u8; 144];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &st.dev.to_le_bytes());
    put(8, &st.ino.to_le_bytes());
    put(16, &u64::from(st.nlink.max(1)).to_le_bytes());
    put(24, &st.mode().to_le_bytes());
    put(28, &st.uid.to_le_bytes());
    put(32, &st.gid.to_le_bytes());
    put(40, &st.rdev.to_le_bytes());
    put(48, &st.size.to_le_bytes());
    put(56, &4096u64.to_le_bytes()); // st_blksize
    put(64, &st.size.div_ceil(512).to_le_bytes());
    for (at, t) in [(72, st.atime), (88, st.mtime), (104, st.ctime)] {
        put(at, &t.sec.to_le_bytes());
        put(at + 8, &u64::from(t.nsec).to_le_bytes());
    }
    b
}

pub(super) fn fstat(p: &mut Process, fd: u64, buf: u64) -> SysResult {
    let st = p.files.get(fd)?.stat();
    p.memory.write(buf, &stat_bytes(&st))?;
    Ok(0)
}


const TCGETS: u64 = 0x5401;
const TCSETS: u64 = 0x5402;
const TCSETSW: u64 = 0x5403;
const TCSETSF: u64 = 0x5404;
const TIOCGWINSZ: u64 = 0x5413;

pub(super) fn ioctl(p: &mut Process, fd: u64, request: u64, arg: u64) -> SysResult {
    let file = p.files.get(fd)?;
    if !file.is_tty() {
        return Err(Errno::ENOTTY);
    }
    match request {
        TCGETS => {
            // The kernel termios (36 bytes): cooked mode with echo, as a
            // terminal starts. The tty layer will make this settable.
            let mut t = [0u8; 36];
            t[0..4].copy_from_slice(&0x0500u32.to_le_bytes()); // ICRNL | IXON
            t[4..8].copy_from_slice(&0x0005u32.to_le_bytes()); // OPOST | ONLCR
            t[8..12].copy_from_slice(&0x00bfu32.to_le_bytes()); // B38400 | CS8 | CREAD
            t[12..16].copy_from_slice(&0x8a3bu32.to_le_bytes()); // ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE IEXTEN
            let cc = [3u8, 28, 127, 21, 4, 0, 1, 0, 17, 19, 26, 0, 18, 15, 23, 22];
            t[17..17 + cc.len()].copy_from_slice(&cc);
            p.memory.write(arg, &t)?;
            Ok(0)
        }
        TCSETS | TCSETSW | TCSETSF => {
            let mut t = [0u8; 36];
            p.memory.read(arg, &mut t)?;
            Ok(0)
        }
        TIOCGWINSZ => {
            let mut w = [0u8; 8];
            w[0..2].copy_from_slice(&24u16.to_le_bytes());
            w[2..4].copy_from_slice(&80u16.to_le_bytes());
            p.memory.write(arg, &w)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}


pub(super) fn readv(p: &mut Process, fd: u64, iov: u64, count: u64) -> SysResult {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut total = 0u64;
    for i in 0..count {
        let mut entry = [0u8; 16];
        p.memory.read(iov.checked_add(i * 16).ok_or(Errno::EFAULT)?, &mut entry)?;
        let base = u64::from_le_bytes(entry.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let len = u64::from_le_bytes(entry.get(8..).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        if len == 0 {
            continue;
        }
        let n = read(p, fd, base, len)?;
        total += n;
        if n < len {
            break;
        }
    }
    Ok(total)
}


pub(super) fn dup(p: &mut Process, fd: u64) -> SysResult {
    let file = p.files.get(fd)?;
    p.files.insert(file, 0, false)
}

pub(super) fn dup3(p: &mut Process, old: u64, new: u64, flags: u64, allow_same: bool) -> SysResult {
    let file = p.files.get(old)?;
    if old == new {
        return if allow_same { Ok(new) } else { Err(Errno::EINVAL) };
    }
    if flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    p.files.put(new, file, flags & O_CLOEXEC != 0)
}

const F_DUPFD: u64 = 0;
const F_GETFD: u64 = 1;
const F_SETFD: u64 = 2;
const F_GETFL: u64 = 3;
const F_SETFL: u64 = 4;
const F_DUPFD_CLOEXEC: u64 = 1030;

pub(super) fn fcntl(p: &mut Process, fd: u64, cmd: u64, arg: u64) -> SysResult {
    let file = p.files.get(fd)?;
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let min = usize::try_from(arg).ok().filter(|&m| m < crate::files::MAX_FILES).ok_or(Errno::EINVAL)?;
            p.files.insert(file, min, cmd == F_DUPFD_CLOEXEC)
        }
        F_GETFD => Ok(u64::from(p.files.cloexec(fd)?)),
        F_SETFD => p.files.set_cloexec(fd, arg & 1 != 0).map(|()| 0),
        F_GETFL => Ok(u64::from(file.status_flags())),
        F_SETFL => {
            file.set_status_flags(arg as u32);
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
