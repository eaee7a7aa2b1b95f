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
use crate::signal;

pub(super) fn read(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    if let Some(signals) = file.as_signalfd() {
        return super::signal::signalfd_read(p, signals, buf, count);
    }
    if file.is_tty() {
        terminal_access(p, signal::num::SIGTTIN)?;
    }
    // Regular files, disks and the memory devices never block: read all
    // that was asked for, as Linux does (`dd if=/dev/zero bs=1M count=1`
    // gets a whole megabyte). Pipes and terminals return what one read
    // brings.
    let whole = file.reads_whole();
    let interrupted = crate::process::lent_interrupt_check(&p.info, &p.thread, &p.signals);
    // A buffer that runs into a page it cannot write still takes what a
    // pipe or stream socket holds when that fits before the page (Linux
    // copies only the bytes there are); more than fits is EFAULT.
    let fits = |room: u64| {
        let ready = file.as_pipe().map(|pipe| pipe.available() as u64)
            .or_else(|| file.as_unix_socket().and_then(|s| s.pending().ok()).map(|n| n as u64))
            .or_else(|| file.as_inet_socket().map(|s| u64::from(s.pending())));
        ready.is_some_and(|ready| ready <= room)
    };
    let lossless = file.read_consumes_nothing();
    read_to_user_fitting(&p.memory, &mut p.io_buffer, buf, count, whole, lossless, &fits, |data, _| file.read(data, &interrupted))
}

/// Takes the thread's bounce buffer, at least `len` bytes long (grown
/// with zeros; never shrunk). Give it back by storing it there again.
fn take_buffer(io_buffer: &mut alloc::vec::Vec<u8>, len: usize) -> alloc::vec::Vec<u8> {
    let mut buffer = core::mem::take(io_buffer);
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    buffer
}

/// Reads up to `count` bytes into user memory at `buf`, one chunk of at
/// most `IO_CHUNK` at a time: `step(chunk, done)` fills a chunk and says
/// how much it filled. Stops at a short chunk, or after the first unless
/// `whole`. An error after some bytes ends the transfer with those bytes.
/// `lossless`: `step` takes nothing away (`pread`, the memory devices).
pub(super) fn read_to_user(
    p: &mut Process,
    buf: u64,
    count: u64,
    whole: bool,
    lossless: bool,
    step: impl FnMut(&mut [u8], u64) -> SysResult,
) -> SysResult {
    read_to_user_fitting(&p.memory, &mut p.io_buffer, buf, count, whole, lossless, &|_| false, step)
}

/// [`read_to_user`]; when not `whole` and the buffer runs into a page that
/// cannot be written `room` bytes on, the read takes at most `room` bytes
/// if `fits(room)` (what the file holds fits), else fails with EFAULT.
///
/// The buffer is checked before each chunk is read (so that a pipe's data
/// is never lost to a bad buffer), unless `lossless` and `whole`: then the
/// chunk is read and copied out, and only a copy that fails checks how
/// much of the buffer can be written (the same outcome, one check fewer
/// per call).
#[allow(clippy::too_many_arguments)]
fn read_to_user_fitting(
    memory: &crate::memory::Memory,
    io_buffer: &mut alloc::vec::Vec<u8>,
    buf: u64,
    count: u64,
    whole: bool,
    lossless: bool,
    fits: &dyn Fn(u64) -> bool,
    mut step: impl FnMut(&mut [u8], u64) -> SysResult,
) -> SysResult {
    // A lossless whole read is read first and the buffer checked only if
    // the copy fails; every other read checks the buffer first.
    let check_first = !(lossless && whole);
    let mut done = 0u64;
    loop {
        let len = ((count - done) as usize).min(IO_CHUNK);
        let at = buf.checked_add(done).ok_or(Errno::EFAULT)?;
        let len = if check_first {
            // Only as much as the buffer takes: a regular file (`whole`)
            // gives the bytes up to a page that cannot be written, as
            // Linux's does; a pipe or socket fails with EFAULT and keeps
            // its data.
            let room = match memory.prepare_write(at, len as u64) {
                Ok(room) if room < len as u64 && !whole && !fits(room) => Err(Errno::EFAULT),
                result => result,
            };
            match room {
                Ok(room) => (room as usize).min(len),
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        } else {
            len
        };
        let mut buffer = take_buffer(io_buffer, len);
        let data = buffer.get_mut(..len).unwrap_or_default();
        let n = match step(data, done) {
            Ok(n) => (n as usize).min(len),
            Err(e) => {
                *io_buffer = buffer; // kept for the next call
                if done == 0 {
                    return Err(e);
                }
                break;
            }
        };
        let filled = data.get(..n).unwrap_or(&[]);
        let copied = match memory.write(at, filled) {
            Ok(()) => Ok(n),
            // Only up to the first page that cannot be written, as the
            // checked path reads (nothing was taken away).
            Err(_) if !check_first => memory.prepare_write(at, n as u64).and_then(|room| {
                let room = (room as usize).min(n);
                memory.write(at, filled.get(..room).unwrap_or(&[])).map(|()| room)
            }),
            Err(e) => Err(e),
        };
        *io_buffer = buffer;
        let n = match copied {
            Ok(n) => n,
            Err(e) if check_first || done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n as u64;
        if !whole || n < len || done >= count {
            break;
        }
    }
    Ok(done)
}

/// `RLIMIT_FSIZE`: how much of a `len`-byte write at `at` (the file
/// offset when `None`; the end for O_APPEND) a regular file takes. At or
/// past the limit the writer gets SIGXFSZ and EFBIG, as on Linux.
pub(super) fn fsize_room(p: &Process, file: &alloc::sync::Arc<dyn crate::files::File>, at: Option<u64>, len: u64) -> Result<u64, Errno> {
    let limit = p.info.soft_limit(crate::process::rlimit::FSIZE);
    if limit == crate::process::RLIM_INFINITY || len == 0 {
        return Ok(len);
    }
    let stat = file.stat();
    if stat.kind != tessera_vfs::FileType::Regular {
        return Ok(len);
    }
    let at = match at {
        _ if file.status_flags() & crate::fs::O_APPEND != 0 => stat.size,
        Some(at) => at,
        None => file.seek(0, crate::files::SEEK_CUR)?,
    };
    fsize_check(p, at.saturating_add(1))?;
    Ok(len.min(limit - at))
}

/// SIGXFSZ and EFBIG when a file would reach `size` bytes past the
/// writer's `RLIMIT_FSIZE`.
pub(super) fn fsize_check(p: &Process, size: u64) -> Result<(), Errno> {
    if size > p.info.soft_limit(crate::process::rlimit::FSIZE) {
        p.thread.send_signal(25, crate::signal::SigInfo { code: 0x80, ..Default::default() }); // SIGXFSZ
        return Err(Errno::EFBIG);
    }
    Ok(())
}

pub(super) fn write(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    if file.is_tty() {
        terminal_access(p, signal::num::SIGTTOU)?;
    }
    let count = fsize_room(p, &file, None, count)?;
    let interrupted = crate::process::lent_interrupt_check(&p.info, &p.thread, &p.signals);
    let mut done = 0u64;
    while done < count {
        let len = ((count - done) as usize).min(IO_CHUNK);
        let at = buf.checked_add(done).ok_or(Errno::EFAULT)?;
        let mut buffer = take_buffer(&mut p.io_buffer, len);
        let data = buffer.get_mut(..len).unwrap_or_default();
        let result = p.memory.read(at, data).and_then(|()| file.write_interruptible(data, &interrupted));
        p.io_buffer = buffer;
        let n = match result {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if (n as usize) < len {
            break;
        }
    }
    Ok(done)
}

/// The whole `struct iovec` array, checked as Linux's `import_iovec`
/// does before anything moves: at most `IOV_MAX` (1024) entries (EINVAL),
/// readable (EFAULT), no negative length and a total that fits `ssize_t`
/// (EINVAL).
pub(super) fn iovecs(p: &Process, iov: u64, count: u64) -> Result<alloc::vec::Vec<(u64, u64)>, Errno> {
    let count = count as i32;
    if !(0..=1024).contains(&count) {
        return Err(Errno::EINVAL);
    }
    let mut entries = alloc::vec::Vec::with_capacity(count as usize);
    let mut total = 0u64;
    for i in 0..count as u64 {
        let (base, len) = iovec_entry(p, iov, i)?;
        if (len as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        total = total.checked_add(len).filter(|&t| t <= i64::MAX as u64).ok_or(Errno::EINVAL)?;
        entries.push((base, len));
    }
    Ok(entries)
}

pub(super) fn writev(p: &mut Process, fd: u64, iov: u64, count: u64) -> SysResult {
    let entries = iovecs(p, iov, count)?;
    let file = p.files.get(fd)?;
    let total: u64 = entries.iter().map(|&(_, len)| len).sum();
    if total <= IO_CHUNK as u64 {
        // One write of everything: a pipe gets it atomically (PIPE_BUF), as
        // Linux's writev. A bad buffer ends the data gathered so far.
        let mut data = alloc::vec::Vec::with_capacity(total as usize);
        for &(base, len) in &entries {
            let mut part = vec![0u8; len as usize];
            match p.memory.read(base, &mut part) {
                Ok(()) => data.extend_from_slice(&part),
                Err(e) if data.is_empty() => return Err(e),
                Err(_) => break,
            }
        }
        if data.is_empty() && total > 0 {
            return Ok(0);
        }
        if file.is_tty() {
            terminal_access(p, signal::num::SIGTTOU)?;
        }
        let room = fsize_room(p, &file, None, data.len() as u64)?;
        data.truncate(room as usize);
        return file.write_interruptible(&data, &p.interrupt_check());
    }
    let mut done = 0u64;
    for (base, len) in entries {
        match write(p, fd, base, len) {
            Ok(n) => {
                done += n;
                if n < len {
                    break;
                }
            }
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(done)
}

/// Entry `i` of a user `struct iovec` array: (base, length).
fn iovec_entry(p: &Process, iov: u64, i: u64) -> Result<(u64, u64), Errno> {
    let mut entry = [0u8; 16];
    p.memory.read(iov.checked_add(i * 16).ok_or(Errno::EFAULT)?, &mut entry)?;
    let word = |at: usize| u64::from_le_bytes(entry.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    Ok((word(0), word(8)))
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
    put(16, &u64::from(st.nlink).to_le_bytes()); // 0 once the last name is gone, as Linux
    put(24, &st.mode().to_le_bytes());
    put(28, &st.uid.to_le_bytes());
    put(32, &st.gid.to_le_bytes());
    put(40, &st.rdev.to_le_bytes());
    put(48, &st.size.to_le_bytes());
    put(56, &4096u64.to_le_bytes()); // st_blksize
    put(64, &st.blocks().to_le_bytes());
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
const TCSBRK: u64 = 0x5409;
const TCXONC: u64 = 0x540A;
const TCFLSH: u64 = 0x540B;
const TIOCSCTTY: u64 = 0x540E;
const TIOCGPGRP: u64 = 0x540F;
const TIOCSPGRP: u64 = 0x5410;
const TIOCGWINSZ: u64 = 0x5413;
const TIOCSWINSZ: u64 = 0x5414;
const FIONREAD: u64 = 0x541B;
const TIOCNOTTY: u64 = 0x5422;
const TCSBRKP: u64 = 0x5425;
const TIOCOUTQ: u64 = 0x5411;
const TIOCGSID: u64 = 0x5429;
const TIOCGPTN: u64 = 0x8004_5430;
const TIOCSPTLCK: u64 = 0x4004_5431;
const TIOCGPTLCK: u64 = 0x8004_5439;
const FIONBIO: u64 = 0x5421;
const FIOCLEX: u64 = 0x5451;
const FIONCLEX: u64 = 0x5450;

pub(super) fn read_u32(p: &Process, addr: u64) -> Result<u32, Errno> {
    let mut word = [0u8; 4];
    p.memory.read(addr, &mut word)?;
    Ok(u32::from_le_bytes(word))
}

/// `RNDGETENTCNT`: the entropy count of the random devices.
const RNDGETENTCNT: u64 = 0x8004_5200;

/// The block-device ioctls `blockdev`, `mke2fs` and `fdisk` use.
fn block_ioctl(p: &mut Process, rdev: u64, request: u64, arg: u64) -> SysResult {
    const BLKROSET: u64 = 0x125d;
    const BLKROGET: u64 = 0x125e;
    const BLKRRPART: u64 = 0x125f;
    const BLKGETSIZE: u64 = 0x1260;
    const BLKFLSBUF: u64 = 0x1261;
    const BLKSSZGET: u64 = 0x1268;
    const BLKBSZGET: u64 = 0x8008_1270;
    const BLKGETSIZE64: u64 = 0x8008_1272;
    const BLKIOMIN: u64 = 0x1278;
    const BLKIOOPT: u64 = 0x1279;
    const BLKPBSZGET: u64 = 0x127b;
    let (_, disk) = crate::block::disk(rdev).ok_or(Errno::ENXIO)?;
    let bytes = disk.sectors()?.saturating_mul(crate::block::SECTOR);
    let int = |p: &mut Process, v: u32| p.memory.write(arg, &v.to_le_bytes()).map(|()| 0);
    match request {
        BLKGETSIZE64 => p.memory.write(arg, &bytes.to_le_bytes()).map(|()| 0),
        BLKGETSIZE => p.memory.write(arg, &(bytes / 512).to_le_bytes()).map(|()| 0),
        BLKSSZGET | BLKPBSZGET | BLKIOMIN => int(p, 512),
        BLKBSZGET => int(p, 4096),
        BLKIOOPT | BLKROGET => int(p, 0),
        BLKFLSBUF | BLKROSET | BLKRRPART => {
            if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) {
                return Err(Errno::EACCES);
            }
            match request {
                BLKFLSBUF => disk.flush().map(|()| 0),
                BLKRRPART => Err(Errno::EINVAL), // no partition tables yet
                _ => Err(Errno::EOPNOTSUPP),
            }
        }
        _ => Err(Errno::ENOTTY),
    }
}

pub(super) fn ioctl(p: &mut Process, fd: u64, request: u64, arg: u64) -> SysResult {
    let file = p.files.get(fd)?;
    match request {
        FIOCLEX => return p.files.set_cloexec(fd, true).map(|()| 0),
        FIONCLEX => return p.files.set_cloexec(fd, false).map(|()| 0),
        FIONBIO => {
            let on = read_u32(p, arg)? != 0;
            let flags = file.status_flags();
            let nonblock = crate::fs::O_NONBLOCK;
            file.set_status_flags(if on { flags | nonblock } else { flags & !nonblock });
            return Ok(0);
        }
        _ => {}
    }
    let socket_wide = matches!(request, crate::socket::SIOCADDRT | crate::socket::SIOCDELRT | crate::socket::SIOCGIFCONF);
    if (crate::socket::is_interface_ioctl(request) || socket_wide) && file.stat().kind == tessera_vfs::FileType::Socket {
        return super::net::interface_ioctl(p, request, arg);
    }
    if request == FIONREAD
        && let Some(s) = file.as_unix_socket()
    {
        let n = s.pending()? as u32;
        return p.memory.write(arg, &n.to_le_bytes()).map(|()| 0);
    }
    if request == FIONREAD
        && let Some(s) = file.as_inet_socket()
    {
        return p.memory.write(arg, &s.pending().to_le_bytes()).map(|()| 0);
    }
    if request == FIONREAD {
        // Bytes ready to read: an inotify queue, a pipe, a message queue...
        let ready = file.as_inotify().map(|i| i.pending_bytes()).or_else(|| file.as_pipe().map(|pipe| pipe.available()));
        if let Some(bytes) = ready {
            return p.memory.write(arg, &(bytes as u32).to_le_bytes()).map(|()| 0);
        }
    }
    // /dev/random and /dev/urandom: RNDGETENTCNT reports a full pool
    // (256 bits, as Linux 5.18+ always does once seeded).
    let stat = file.stat();
    if request == RNDGETENTCNT && stat.kind == tessera_vfs::FileType::CharDevice && matches!(stat.rdev, 0x108 | 0x109) {
        return p.memory.write(arg, &256i32.to_le_bytes()).map(|()| 0);
    }
    if stat.kind == tessera_vfs::FileType::BlockDevice {
        return block_ioctl(p, stat.rdev, request, arg);
    }
    if let Some(master) = file.as_pty_master() {
        match request {
            TIOCGPTN => return p.memory.write(arg, &master.number().to_le_bytes()).map(|()| 0),
            TIOCSPTLCK => {
                master.set_locked(read_u32(p, arg)? != 0);
                return Ok(0);
            }
            TIOCGPTLCK => return p.memory.write(arg, &u32::from(master.locked()).to_le_bytes()).map(|()| 0),
            FIONREAD => return p.memory.write(arg, &(master.pending() as u32).to_le_bytes()).map(|()| 0),
            _ => {}
        }
    }
    let tty = file.as_tty().ok_or(Errno::ENOTTY)?;
    match request {
        TCGETS => p.memory.write(arg, &tty.termios().to_bytes()).map(|()| 0),
        TCSETS | TCSETSW | TCSETSF => {
            let mut bytes = [0u8; 36];
            p.memory.read(arg, &mut bytes)?;
            tty.set_termios(tessera_cell_api::tty::Termios::from_bytes(&bytes), request == TCSETSF);
            Ok(0)
        }
        TCFLSH => {
            if arg > 2 {
                return Err(Errno::EINVAL);
            }
            if arg != 1 {
                tty.flush_input();
            }
            Ok(0)
        }
        TCXONC => Ok(0),
        TIOCGWINSZ => {
            let size = tty.winsize();
            let bytes: alloc::vec::Vec<u8> = size.iter().flat_map(|v| v.to_le_bytes()).collect();
            p.memory.write(arg, &bytes).map(|()| 0)
        }
        TIOCSWINSZ => {
            let mut bytes = [0u8; 8];
            p.memory.read(arg, &mut bytes)?;
            let field = |i: usize| u16::from_le_bytes([bytes[i * 2], bytes[i * 2 + 1]]);
            tty.set_winsize([field(0), field(1), field(2), field(3)]);
            Ok(0)
        }
        TIOCGPGRP => p.memory.write(arg, &tty.foreground().to_le_bytes()).map(|()| 0),
        TIOCSPGRP => {
            let group = read_u32(p, arg)?;
            if group == 0 || (group as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            if !crate::process::all().iter().any(|q| q.pgid() == group && q.sid() == p.info.sid()) {
                return Err(Errno::EPERM);
            }
            tty.set_foreground(group);
            Ok(0)
        }
        TIOCGSID => {
            let session = tty.session();
            if session == 0 {
                return Err(Errno::ENOTTY);
            }
            p.memory.write(arg, &session.to_le_bytes()).map(|()| 0)
        }
        TIOCSCTTY => {
            // A session leader only, and not a terminal another live
            // session holds (root may take it with arg 1), as Linux.
            let sid = p.info.sid();
            if sid != p.info.pid {
                return Err(Errno::EPERM);
            }
            let holder = tty.session();
            let held = holder != 0 && holder != sid && crate::process::all().iter().any(|q| q.sid() == holder);
            if held && !(arg == 1 && p.info.credentials().capable(crate::process::cap::SYS_ADMIN)) {
                return Err(Errno::EPERM);
            }
            tty.set_session(sid, p.info.pgid());
            Ok(0)
        }
        TIOCNOTTY => Ok(0),
        FIONREAD => p.memory.write(arg, &(tty.available() as u32).to_le_bytes()).map(|()| 0),
        // Output leaves at once: tcdrain (TCSBRK 1) and a break return
        // at once, nothing waits to go out.
        TCSBRK | TCSBRKP => Ok(0),
        TIOCOUTQ => p.memory.write(arg, &0u32.to_le_bytes()).map(|()| 0),
        // As Linux: a request no terminal knows is ENOTTY.
        _ => Err(Errno::ENOTTY),
    }
}


pub(super) fn readv(p: &mut Process, fd: u64, iov: u64, count: u64) -> SysResult {
    let entries = iovecs(p, iov, count)?;
    p.files.get(fd)?;
    let mut total = 0u64;
    for (base, len) in entries {
        if len == 0 {
            continue;
        }
        let n = match read(p, fd, base, len) {
            Ok(n) => n,
            Err(e) if total == 0 => return Err(e),
            Err(_) => break,
        };
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
    // Linux's order (fs/file.c ksys_dup3): flags, then the same
    // descriptor twice (EINVAL for dup3 even when it is not open),
    // then the descriptors themselves.
    if flags & !O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    if old == new && !allow_same {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(old)?;
    if old == new {
        return Ok(new);
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
            let min = usize::try_from(arg).ok().filter(|&m| m < p.files.limit()).ok_or(Errno::EINVAL)?;
            p.files.insert(file, min, cmd == F_DUPFD_CLOEXEC)
        }
        F_GETFD => Ok(u64::from(p.files.cloexec(fd)?)),
        F_SETFD => p.files.set_cloexec(fd, arg & 1 != 0).map(|()| 0),
        F_GETFL => Ok(u64::from(file.status_flags())),
        F_SETFL => {
            file.set_status_flags(arg as u32);
            Ok(0)
        }
        F_GETLK | F_SETLK | F_SETLKW | F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW => record_lock(p, &file, cmd, arg),
        F_GETPIPE_SZ => file.pipe_size(None).map(|n| n as u64),
        F_NOTIFY => {
            // dnotify: the directory open as `fd`; signals go to this process.
            let location = file.location().ok_or(Errno::ENOTDIR)?;
            if location.node().metadata().kind != tessera_vfs::FileType::Directory {
                return Err(Errno::ENOTDIR);
            }
            let signal = async_settings(&file, |_| {}).signal as u8;
            crate::inotify::dnotify(location.node(), &file, fd as u32, &p.info, arg as u32, signal);
            Ok(0)
        }
        F_ADD_SEALS | F_GET_SEALS => {
            let node = file.location().ok_or(Errno::EINVAL)?.node().clone();
            if cmd == F_GET_SEALS {
                return crate::memfd::seals(&node).map(u64::from).ok_or(Errno::EINVAL);
            }
            if file.status_flags() & 3 == 0 {
                return Err(Errno::EPERM); // not open for writing
            }
            let mapped = || {
                crate::process::all().iter().filter_map(|q| q.memory()).any(|m| m.lock().maps_shared_writable(&node))
            };
            crate::memfd::add_seals(&node, arg as u32, mapped).map(|()| 0)
        }
        F_SETOWN | F_GETOWN | F_SETSIG | F_GETSIG | F_SETOWN_EX | F_GETOWN_EX | F_SETLEASE | F_GETLEASE => {
            owner_settings(p, &file, cmd, arg)
        }
        F_SETPIPE_SZ => {
            let wanted = usize::try_from(arg as u32).map_err(|_| Errno::EINVAL)?;
            file.pipe_size(Some((wanted, p.info.credentials().capable(crate::process::cap::SYS_RESOURCE)))).map(|n| n as u64)
        }
        _ => Err(Errno::EINVAL),
    }
}

const F_SETOWN: u64 = 8;
const F_GETOWN: u64 = 9;
const F_SETSIG: u64 = 10;
const F_GETSIG: u64 = 11;
const F_SETOWN_EX: u64 = 15;
const F_GETOWN_EX: u64 = 16;
const F_SETLEASE: u64 = 1024;
const F_GETLEASE: u64 = 1025;

/// What `F_SETOWN`, `F_SETSIG` and `F_SETLEASE` set on an open file:
/// owner (pid, or -pgid), signal, lease type. Kept by weak reference, so
/// an entry never outlives (nor is confused with a successor of) its file.
#[derive(Clone, Copy)]
struct AsyncSettings {
    owner: i32,
    owner_type: i32,
    signal: i32,
    lease: i32,
    /// Real and effective uid of whoever set the owner: Linux's
    /// `sigio_perm` lets them signal only processes they could `kill`.
    setter: (u32, u32),
}

impl Default for AsyncSettings {
    fn default() -> Self {
        AsyncSettings { owner: 0, owner_type: 0, signal: 0, lease: 2, setter: (0, 0) } // F_UNLCK
    }
}

static ASYNC: framekernel::sync::SpinLock<alloc::vec::Vec<(alloc::sync::Weak<dyn crate::files::File>, AsyncSettings)>> =
    framekernel::sync::SpinLock::new(alloc::vec::Vec::new());

fn async_settings(file: &alloc::sync::Arc<dyn crate::files::File>, change: impl FnOnce(&mut AsyncSettings)) -> AsyncSettings {
    let mut all = ASYNC.lock();
    all.retain(|(weak, _)| weak.strong_count() > 0);
    let ptr = alloc::sync::Arc::as_ptr(file) as *const ();
    let index = match all.iter().position(|(weak, _)| weak.as_ptr() as *const () == ptr) {
        Some(i) => i,
        None => {
            all.push((alloc::sync::Arc::downgrade(file), AsyncSettings::default()));
            all.len() - 1
        }
    };
    let entry = &mut all[index].1;
    change(entry);
    *entry
}

/// Signal-driven I/O (`O_ASYNC`): the file at `file` (its allocation)
/// became ready (`POLL_IN` 1 or `POLL_OUT` 2): its owner (`F_SETOWN`: a
/// process, a process group, or with `F_SETOWN_EX` a thread) gets the
/// `F_SETSIG` signal with `si_code` and `si_band`, or plain SIGIO.
pub fn signal_io(file: *const (), reason: i32) {
    let settings = {
        let all = ASYNC.lock();
        match all.iter().find(|(weak, _)| weak.as_ptr() as *const () == file && weak.strong_count() > 0) {
            Some((_, s)) => *s,
            None => return,
        }
    };
    if settings.owner == 0 {
        return;
    }
    // POLLIN|POLLRDNORM|POLLMSG for input, POLLOUT|POLLWRNORM|POLLWRBAND for output.
    let band: u64 = if reason == 1 { 0x1 | 0x40 | 0x400 } else { 0x4 | 0x100 | 0x200 };
    let (signal, info) = if settings.signal == 0 {
        (29u8, crate::signal::SigInfo { code: 0x80, ..Default::default() }) // SIGIO, SI_KERNEL
    } else {
        (settings.signal as u8, crate::signal::SigInfo { code: reason, addr: band, value: 0 })
    };
    let owner = settings.owner;
    // Linux's sigio_perm: root's setting reaches anyone; others' only a
    // process whose real or saved uid is the setter's real or effective one.
    let (ruid, euid) = settings.setter;
    let allowed = |q: &crate::process::ProcessInfo| {
        let t = q.credentials();
        euid == 0 || [ruid, euid].iter().any(|&id| id == t.ruid || id == t.suid)
    };
    match settings.owner_type {
        1 => {
            // F_OWNER_TID
            let owner_process = crate::process::all().into_iter().find(|q| q.has_thread(owner as u32));
            if let (Some(thread), Some(process)) = (crate::process::lookup_thread(owner as u32), owner_process)
                && allowed(&process)
            {
                thread.send_signal(signal, info);
            }
        }
        _ if owner < 0 => {
            for process in crate::process::all().into_iter().filter(|q| q.pgid() == owner.unsigned_abs() && allowed(q)) {
                process.send_signal(signal, info);
            }
        }
        _ => {
            if let Some(process) = crate::process::lookup(owner as u32).filter(|q| allowed(q)) {
                process.send_signal(signal, info);
            }
        }
    }
}

/// `F_SETOWN`/`F_GETOWN` (and `_EX`), `F_SETSIG`/`F_GETSIG`: the owner
/// and signal of signal-driven I/O (sent for pipes, see [`signal_io`]). `F_SETLEASE`/`F_GETLEASE`: a read
/// lease needs a file opened read-only, a write lease one nobody else has
/// open; the owner of the file or root only.
fn owner_settings(p: &mut Process, file: &alloc::sync::Arc<dyn crate::files::File>, cmd: u64, arg: u64) -> SysResult {
    match cmd {
        F_GETOWN => Ok(async_settings(file, |_| {}).owner as i64 as u64),
        F_SETOWN => {
            let owner = arg as i32;
            if owner > 0 && crate::process::lookup(owner as u32).is_none() {
                return Err(Errno::ESRCH);
            }
            if owner == i32::MIN {
                return Err(Errno::EINVAL);
            }
            let c = p.info.credentials();
            async_settings(file, |s| {
                s.owner = owner;
                s.owner_type = if owner < 0 { 3 } else { 2 }; // F_OWNER_PGRP / F_OWNER_PID, plus one
                s.setter = (c.ruid, c.euid);
            });
            Ok(0)
        }
        F_GETSIG => Ok(async_settings(file, |_| {}).signal as u64),
        F_SETSIG => {
            let sig = arg as i32;
            if !(0..=64).contains(&sig) {
                return Err(Errno::EINVAL);
            }
            async_settings(file, |s| s.signal = sig);
            Ok(0)
        }
        F_GETOWN_EX => {
            let s = async_settings(file, |_| {});
            // Stored type is F_OWNER_* + 1 (0: never set, F_SETOWN's pid or -pgid).
            let kind = match s.owner_type {
                0 if s.owner < 0 => 2,
                0 => 1,
                t => t - 1,
            };
            let pid = s.owner.saturating_abs();
            let mut raw = [0u8; 8];
            raw[..4].copy_from_slice(&kind.to_le_bytes());
            raw[4..].copy_from_slice(&pid.to_le_bytes());
            p.memory.write(arg, &raw)?;
            Ok(0)
        }
        F_SETOWN_EX => {
            let mut raw = [0u8; 8];
            p.memory.read(arg, &mut raw)?;
            let kind = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let pid = i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]);
            // F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2.
            if !(0..=2).contains(&kind) {
                return Err(Errno::EINVAL);
            }
            if pid > 0 && kind != 2 && crate::process::lookup(pid as u32).is_none() && crate::process::lookup_thread(pid as u32).is_none() {
                return Err(Errno::ESRCH);
            }
            if pid == i32::MIN {
                return Err(Errno::EINVAL);
            }
            let c = p.info.credentials();
            async_settings(file, |s| {
                s.owner = if kind == 2 { -pid } else { pid };
                s.owner_type = kind + 1;
                s.setter = (c.ruid, c.euid);
            });
            Ok(0)
        }
        F_GETLEASE => Ok(async_settings(file, |_| {}).lease as u64),
        _ => {
            // F_SETLEASE: F_RDLCK 0, F_WRLCK 1, F_UNLCK 2.
            let kind = arg as i32;
            if !(0..=2).contains(&kind) {
                return Err(Errno::EINVAL);
            }
            let location = file.location().ok_or(Errno::EINVAL)?;
            let meta = location.node().metadata();
            if meta.kind != tessera_vfs::FileType::Regular {
                return Err(Errno::EINVAL);
            }
            let creds = p.info.credentials();
            if !creds.capable(crate::process::cap::FOWNER) && creds.fsuid != meta.uid {
                return Err(Errno::EACCES);
            }
            let access = file.status_flags() & 3;
            if kind == 0 && access != 0 {
                return Err(Errno::EAGAIN); // a read lease needs a read-only open
            }
            if kind == 1 && alloc::sync::Arc::strong_count(file) > 2 {
                return Err(Errno::EAGAIN); // opened elsewhere too
            }
            async_settings(file, |s| s.lease = kind);
            Ok(0)
        }
    }
}

const F_SETPIPE_SZ: u64 = 1031;
const F_NOTIFY: u64 = 1026;
const F_ADD_SEALS: u64 = 1033;
const F_GET_SEALS: u64 = 1034;
const F_GETPIPE_SZ: u64 = 1032;
const F_GETLK: u64 = 5;
const F_SETLK: u64 = 6;
const F_SETLKW: u64 = 7;
const F_OFD_GETLK: u64 = 36;
const F_OFD_SETLK: u64 = 37;
const F_OFD_SETLKW: u64 = 38;
const F_RDLCK: i16 = 0;
const F_WRLCK: i16 = 1;
const F_UNLCK: i16 = 2;

/// `fcntl` record locks, POSIX (per process) and OFD (per open file):
/// `struct flock` is l_type, l_whence (i16 each), l_start, l_len (i64 at
/// 8 and 16) and l_pid (i32 at 24).
fn record_lock(p: &mut Process, file: &alloc::sync::Arc<dyn crate::files::File>, cmd: u64, arg: u64) -> SysResult {
    use crate::locks::{self, Kind, Owner};
    let mut raw = [0u8; 32];
    p.memory.read(arg, &mut raw)?;
    let short = |at: usize| i16::from_le_bytes([raw[at], raw[at + 1]]);
    let long = |at: usize| i64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
    let (l_type, whence, l_start, l_len) = (short(0), short(2), long(8), long(16));
    let l_pid = i32::from_le_bytes(raw[24..28].try_into().unwrap_or([0; 4]));
    let ofd = matches!(cmd, F_OFD_GETLK | F_OFD_SETLK | F_OFD_SETLKW);
    if ofd && l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let kind = match l_type {
        F_RDLCK => Some(Kind::Read),
        F_WRLCK => Some(Kind::Write),
        F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    let key = locks::key(file).ok_or(Errno::EINVAL)?;
    let base = match whence as u32 {
        crate::files::SEEK_SET => 0,
        crate::files::SEEK_CUR => file.seek(0, crate::files::SEEK_CUR)? as i64,
        crate::files::SEEK_END => file.stat().size as i64,
        _ => return Err(Errno::EINVAL),
    };
    let start = base.checked_add(l_start).ok_or(Errno::EOVERFLOW)?;
    let (start, end) = match l_len {
        0 => (start, u64::MAX as i128),
        n if n > 0 => (start, i128::from(start) + i128::from(n)),
        n => (start.checked_add(n).ok_or(Errno::EINVAL)?, i128::from(start)),
    };
    if start < 0 {
        return Err(Errno::EINVAL);
    }
    let range = (start as u64, end.min(i128::from(u64::MAX)) as u64);
    let owner = if ofd { Owner::OpenFile(locks::open_file_id(file)) } else { Owner::Process(p.info.pid) };
    if matches!(cmd, F_GETLK | F_OFD_GETLK) {
        let kind = kind.ok_or(Errno::EINVAL)?;
        let wanted = locks::Lock { owner, kind, start: range.0, end: range.1, pid: p.info.pid };
        let mut out = raw;
        match locks::conflict(key, &wanted) {
            None => out[0..2].copy_from_slice(&F_UNLCK.to_le_bytes()),
            Some(held) => {
                let held_type = if held.kind == Kind::Write { F_WRLCK } else { F_RDLCK };
                let len = if held.end == u64::MAX { 0 } else { (held.end - held.start) as i64 };
                let pid = if matches!(held.owner, Owner::Process(_)) { held.pid as i32 } else { -1 };
                out[0..2].copy_from_slice(&held_type.to_le_bytes());
                out[2..4].copy_from_slice(&0i16.to_le_bytes());
                out[8..16].copy_from_slice(&(held.start as i64).to_le_bytes());
                out[16..24].copy_from_slice(&len.to_le_bytes());
                out[24..28].copy_from_slice(&pid.to_le_bytes());
            }
        }
        p.memory.write(arg, &out)?;
        return Ok(0);
    }
    // The descriptor must allow the kind of lock asked for.
    if file.status_flags() & crate::fs::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let access = file.status_flags() & crate::fs::O_ACCMODE;
    match kind {
        Some(Kind::Read) if access == crate::fs::O_WRONLY => return Err(Errno::EBADF),
        Some(Kind::Write) if access == 0 => return Err(Errno::EBADF),
        _ => {}
    }
    let wait = matches!(cmd, F_SETLKW | F_OFD_SETLKW);
    locks::set(key, owner, p.info.pid, kind, range, wait, &p.interrupt_check()).map(|()| 0)
}

const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;

/// `close_range(first, last, flags)`: closes (or, with
/// `CLOSE_RANGE_CLOEXEC`, marks close-on-exec) every open descriptor in
/// `[first, last]`; `CLOSE_RANGE_UNSHARE` first gives this thread its own
/// descriptor table.
pub(super) fn close_range(p: &mut Process, first: u64, last: u64, flags: u64) -> SysResult {
    let (first, last) = (first as u32, last as u32);
    if flags & !(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) != 0 || first > last {
        return Err(Errno::EINVAL);
    }
    if flags & CLOSE_RANGE_UNSHARE != 0 {
        p.files = p.files.fork_copy();
    }
    let top = u64::from(last).min(crate::files::MAX_FILES as u64 - 1);
    for fd in u64::from(first)..=top {
        if flags & CLOSE_RANGE_CLOEXEC != 0 {
            let _ = p.files.set_cloexec(fd, true);
        } else {
            let _ = p.files.close(fd);
        }
    }
    Ok(0)
}

/// `fadvise64(fd, offset, len, advice)`: advice is accepted (nothing is
/// cached that it could change); EBADF, ESPIPE for pipes, EINVAL for an
/// unknown advice or a negative length.
pub(super) fn fadvise64(p: &mut Process, fd: u64, _offset: u64, len: u64, advice: u64) -> SysResult {
    let file = p.files.get(fd)?;
    if file.stat().kind == tessera_vfs::FileType::Fifo {
        return Err(Errno::ESPIPE);
    }
    if advice > 5 || (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

const LOCK_SH: u64 = 1;
const LOCK_EX: u64 = 2;
const LOCK_NB: u64 = 4;
const LOCK_UN: u64 = 8;

/// `flock(fd, operation)`: a whole-file lock of the open file description.
pub(super) fn flock(p: &mut Process, fd: u64, operation: u64) -> SysResult {
    use crate::locks::{self, Kind, Owner};
    let file = p.files.get(fd)?;
    let kind = match operation & !LOCK_NB {
        LOCK_SH => Some(Kind::Read),
        LOCK_EX => Some(Kind::Write),
        LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let key = locks::key(&file).ok_or(Errno::EINVAL)?;
    let owner = Owner::Flock(locks::open_file_id(&file));
    // Converting a lock drops the old one first (as Linux's flock).
    if kind.is_some() {
        locks::set(key, owner, p.info.pid, None, (0, u64::MAX), false, &|| false)?;
    }
    let result = locks::set(key, owner, p.info.pid, kind, (0, u64::MAX), operation & LOCK_NB == 0, &p.interrupt_check());
    result.map(|()| 0) // EWOULDBLOCK is EAGAIN
}

/// `sendfile(out, in, offset, count)`: copies through a kernel buffer.
pub(super) fn sendfile(p: &mut Process, out_fd: u64, in_fd: u64, offset: u64, count: u64) -> SysResult {
    let input = p.files.get(in_fd)?;
    let output = p.files.get(out_fd)?;
    // The input must be open for reading, the output for writing (EBADF).
    if input.status_flags() & 3 == 1 || output.status_flags() & 3 == 0 {
        return Err(Errno::EBADF);
    }
    // As on Linux, a terminal cannot be spliced from (callers fall back
    // to read, which applies job control).
    if input.is_tty() {
        return Err(Errno::EINVAL);
    }
    if output.is_tty() {
        terminal_access(p, signal::num::SIGTTOU)?;
    }
    let mut position = if offset != 0 {
        let mut word = [0u8; 8];
        p.memory.read(offset, &mut word)?;
        let value = i64::from_le_bytes(word);
        if value < 0 {
            return Err(Errno::EINVAL);
        }
        Some(value as u64)
    } else {
        None
    };
    let interrupted = p.interrupt_check();
    let mut done = 0u64;
    let mut chunk = vec![0u8; IO_CHUNK];
    while done < count {
        let want = ((count - done) as usize).min(IO_CHUNK);
        let buf = chunk.get_mut(..want).unwrap_or(&mut []);
        let got = match position {
            Some(at) => input.read_at(at, buf)?,
            None => input.read(buf, &interrupted)?,
        } as usize;
        if got == 0 {
            break;
        }
        let wrote = output.write_interruptible(buf.get(..got).unwrap_or(&[]), &interrupted)? as usize;
        done += wrote as u64;
        if let Some(at) = position.as_mut() {
            *at += wrote as u64;
        }
        if wrote < got {
            break;
        }
    }
    if let (Some(at), true) = (position, offset != 0) {
        p.memory.write(offset, &at.to_le_bytes())?;
    }
    Ok(done)
}

/// `TOSTOP` in termios `c_lflag`: background writes stop too.
const TOSTOP: u32 = 0o400;

/// Job control on the terminal: a process in a background group of the
/// terminal's session that reads from it (or writes, with `TOSTOP`) gets
/// its group stopped by SIGTTIN (SIGTTOU) and the call starts again once
/// the group is continued in the foreground. A read that cannot stop (the
/// signal ignored or blocked, or a group no shell would continue) fails
/// with EIO; such a write goes ahead.
fn terminal_access(p: &Process, sig: u8) -> Result<(), Errno> {
    let tty = crate::files::console();
    let group = p.info.pgid();
    let foreground = tty.foreground();
    if tty.session() == 0 || tty.session() != p.info.sid() || foreground == 0 || foreground == group {
        return Ok(());
    }
    let reading = sig == signal::num::SIGTTIN;
    if !reading && tty.termios().lflag & TOSTOP == 0 {
        return Ok(());
    }
    let blocked = p.signals.mask & (1u64 << (sig - 1)) != 0;
    let ignored = p.signals.actions.get(sig).handler == signal::SIG_IGN;
    if blocked || ignored || orphaned(group) {
        return if reading { Err(Errno::EIO) } else { Ok(()) };
    }
    for member in crate::process::all().into_iter().filter(|m| m.pgid() == group && m.outcome().is_none()) {
        member.send_signal(sig, signal::SigInfo { code: 0x80, ..Default::default() });
    }
    Err(Errno::EINTR)
}

/// True when no member of `group` has a parent in another group of the
/// same session (POSIX's orphaned process group: nobody would continue it).
fn orphaned(group: u32) -> bool {
    !crate::process::all().into_iter().filter(|m| m.pgid() == group && m.outcome().is_none()).any(|m| {
        crate::process::lookup(m.ppid()).is_some_and(|parent| parent.pgid() != group && parent.sid() == m.sid())
    })
}

/// `RWF_*` flags of `preadv2`/`pwritev2` this kernel knows (HIPRI, DSYNC,
/// SYNC, NOWAIT, APPEND); others give EOPNOTSUPP as on Linux. Data is
/// written through at once, so the sync flags ask for nothing more.
const RWF_KNOWN: u64 = 0x1f;
const RWF_APPEND: u64 = 0x10;

/// `preadv`, `preadv2`: a vectored read at `offset`, or at the file offset
/// for `preadv2` with offset -1 (then as `readv`).
pub(super) fn preadv(p: &mut Process, fd: u64, iov: u64, count: u64, offset: u64, flags: Option<u64>) -> SysResult {
    if flags.is_some_and(|f| f & !RWF_KNOWN != 0) {
        return Err(Errno::EOPNOTSUPP);
    }
    if flags.is_some() && offset as i64 == -1 {
        return readv(p, fd, iov, count);
    }
    vector_at(p, fd, iov, count, offset, super::fs::pread64)
}

/// The positioned vector calls: each entry in turn at `offset` plus the
/// bytes before it, moved by `step` (`pread64`, `pwrite64`); a short step,
/// or an error after some bytes, ends the call with those bytes. EINVAL
/// for a negative offset, ESPIPE for a file that does not seek.
fn vector_at(p: &mut Process, fd: u64, iov: u64, count: u64, offset: u64, step: fn(&mut Process, u64, u64, u64, u64) -> SysResult) -> SysResult {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    if file.seek(0, crate::files::SEEK_CUR).is_err() {
        return Err(Errno::ESPIPE);
    }
    let entries = iovecs(p, iov, count)?;
    let mut done = 0u64;
    for (base, len) in entries {
        let at = offset.checked_add(done).ok_or(Errno::EINVAL)?;
        let n = match step(p, fd, base, len, at) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if n < len {
            break;
        }
    }
    Ok(done)
}

/// `pwritev`, `pwritev2`: a vectored write at `offset`, or at the file
/// offset for `pwritev2` with offset -1 (then as `writev`); RWF_APPEND
/// writes at the end.
pub(super) fn pwritev(p: &mut Process, fd: u64, iov: u64, count: u64, offset: u64, flags: Option<u64>) -> SysResult {
    let flags_given = flags.unwrap_or(0);
    if flags_given & !RWF_KNOWN != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    if flags.is_some() && (offset as i64 == -1 || flags_given & RWF_APPEND != 0) {
        if flags_given & RWF_APPEND != 0 {
            let file = p.files.get(fd)?;
            file.seek(0, crate::files::SEEK_END)?;
        }
        return writev(p, fd, iov, count);
    }
    vector_at(p, fd, iov, count, offset, super::fs::pwrite64)
}
