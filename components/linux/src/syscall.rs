//! The x86_64 system-call dispatcher: number in `rax`, arguments in `rdi`,
//! `rsi`, `rdx`, `r10`, `r8`, `r9`; result or `-errno` back in `rax`.
//! Unknown numbers return `ENOSYS` and are logged once each.

use crate::errno::{Errno, SysResult};
use crate::files::FileStat;
use crate::memory::{PAGE, Prot};
use crate::process::Process;
use alloc::collections::BTreeSet;
use alloc::vec;
use framekernel::arch::user::UserContext;
use framekernel::sync::SpinLock;
use framekernel::logic::layout::is_user_half;

/// What the process loop does after a system call.
pub enum Action {
    /// Put this value in `rax` and continue.
    Return(u64),
    /// The process exits with this status.
    Exit(u8),
}

/// Largest chunk copied between user and kernel per step of read/write.
const IO_CHUNK: usize = 64 * 1024;

mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const CLOSE: u64 = 3;
    pub const FSTAT: u64 = 5;
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const BRK: u64 = 12;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const IOCTL: u64 = 16;
    pub const WRITEV: u64 = 20;
    pub const SCHED_YIELD: u64 = 24;
    pub const MADVISE: u64 = 28;
    pub const GETPID: u64 = 39;
    pub const EXIT: u64 = 60;
    pub const UNAME: u64 = 63;
    pub const READLINK: u64 = 89;
    pub const GETUID: u64 = 102;
    pub const GETGID: u64 = 104;
    pub const GETEUID: u64 = 107;
    pub const GETEGID: u64 = 108;
    pub const GETPPID: u64 = 110;
    pub const ARCH_PRCTL: u64 = 158;
    pub const GETTID: u64 = 186;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const EXIT_GROUP: u64 = 231;
    pub const NEWFSTATAT: u64 = 262;
    pub const READLINKAT: u64 = 267;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const PRLIMIT64: u64 = 302;
    pub const GETRANDOM: u64 = 318;
    pub const RSEQ: u64 = 334;
}

static REPORTED: SpinLock<BTreeSet<u64>> = SpinLock::new(BTreeSet::new());

/// Serves the system call in `context`.
pub fn dispatch(process: &mut Process, context: &mut UserContext) -> Action {
    let r = context.regs;
    let args = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
    let result = match r.rax {
        nr::EXIT | nr::EXIT_GROUP => return Action::Exit(args[0] as u8),
        nr::READ => read(process, args[0], args[1], args[2]),
        nr::WRITE => write(process, args[0], args[1], args[2]),
        nr::WRITEV => writev(process, args[0], args[1], args[2]),
        nr::CLOSE => process.files.close(args[0]).map(|()| 0),
        nr::FSTAT => fstat(process, args[0], args[1]),
        nr::NEWFSTATAT => newfstatat(process, args[0], args[1], args[2], args[3]),
        nr::MMAP => mmap(process, args[0], args[1], args[2], args[3], args[4]),
        nr::MUNMAP => munmap(process, args[0], args[1]),
        nr::MPROTECT => mprotect(process, args[0], args[1], args[2]),
        nr::MADVISE => Ok(0),
        nr::BRK => Ok(process.memory.set_brk(args[0])),
        nr::RT_SIGACTION => rt_sigaction(process, args[0], args[1], args[2], args[3]),
        nr::RT_SIGPROCMASK => rt_sigprocmask(process, args[0], args[1], args[2], args[3]),
        nr::IOCTL => ioctl(process, args[0], args[1], args[2]),
        nr::SCHED_YIELD => Ok(0),
        nr::GETPID | nr::GETTID => Ok(u64::from(process.pid)),
        nr::GETPPID => Ok(u64::from(process.ppid)),
        nr::GETUID | nr::GETGID | nr::GETEUID | nr::GETEGID => Ok(0),
        nr::UNAME => uname(process, args[0]),
        nr::READLINK => readlink(process, args[0], args[1], args[2]),
        nr::READLINKAT => readlink(process, args[1], args[2], args[3]),
        nr::ARCH_PRCTL => arch_prctl(process, context, args[0], args[1]),
        nr::SET_TID_ADDRESS => {
            process.clear_child_tid = args[0];
            Ok(u64::from(process.pid))
        }
        nr::SET_ROBUST_LIST => {
            if args[1] != 24 {
                Err(Errno::EINVAL)
            } else {
                process.robust_list = args[0];
                Ok(0)
            }
        }
        nr::CLOCK_GETTIME => clock_gettime(process, args[0], args[1]),
        nr::PRLIMIT64 => prlimit64(process, args[0], args[1], args[2], args[3]),
        nr::GETRANDOM => getrandom(process, args[0], args[1], args[2]),
        nr::RSEQ => Err(Errno::ENOSYS),
        other => {
            if REPORTED.lock().insert(other) {
                log::warn!("pid {} ({}): unknown system call {other}: ENOSYS", process.pid, process.exe);
            }
            Err(Errno::ENOSYS)
        }
    };
    Action::Return(match result {
        Ok(value) => value,
        Err(errno) => errno.as_return(),
    })
}

fn read(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let len = (count as usize).min(IO_CHUNK);
    p.memory.populate_range(buf, len as u64, true)?;
    let mut data = vec![0u8; len];
    let n = file.read(&mut data)? as usize;
    p.memory.write(buf, data.get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

fn write(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
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

fn writev(p: &mut Process, fd: u64, iov: u64, count: u64) -> SysResult {
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
fn stat_bytes(st: &FileStat) -> [u8; 144] {
    let mut b = [0u8; 144];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(8, &st.ino.to_le_bytes());
    put(16, &1u64.to_le_bytes()); // st_nlink
    put(24, &st.mode.to_le_bytes());
    put(40, &st.rdev.to_le_bytes());
    put(48, &st.size.to_le_bytes());
    put(56, &4096u64.to_le_bytes()); // st_blksize
    put(64, &st.size.div_ceil(512).to_le_bytes());
    b
}

fn fstat(p: &mut Process, fd: u64, buf: u64) -> SysResult {
    let st = p.files.get(fd)?.stat();
    p.memory.write(buf, &stat_bytes(&st))?;
    Ok(0)
}

const AT_EMPTY_PATH: u64 = 0x1000;

fn newfstatat(p: &mut Process, dirfd: u64, path: u64, buf: u64, flags: u64) -> SysResult {
    let name = p.memory.read_c_string(path, 4096)?;
    if name.is_empty() && flags & AT_EMPTY_PATH != 0 {
        return fstat(p, dirfd, buf);
    }
    // No file system yet.
    Err(Errno::ENOENT)
}

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;

fn mmap(p: &mut Process, addr: u64, len: u64, prot: u64, flags: u64, fd: u64) -> SysResult {
    let kind = flags & (MAP_SHARED | MAP_PRIVATE);
    if len == 0 || kind == 0 || kind == (MAP_SHARED | MAP_PRIVATE) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS == 0 {
        // File mappings come with the VFS.
        p.files.get(fd)?;
        return Err(Errno::ENODEV);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::ENOMEM)? & !(PAGE - 1);
    let prot = Prot::from_bits(prot);
    let start = if flags & MAP_FIXED != 0 {
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if !addr.is_multiple_of(PAGE) || !is_user_half(end - 1) || addr == 0 {
            return Err(Errno::EINVAL);
        }
        p.memory.remove_range(addr, end);
        addr
    } else {
        p.memory.find_free(len).ok_or(Errno::ENOMEM)?
    };
    p.memory.add_area(start, start + len, prot)?;
    Ok(start)
}

fn check_range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
    let len = len.checked_add(PAGE - 1).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if !addr.is_multiple_of(PAGE) || len == 0 || !is_user_half(end - 1) {
        return Err(Errno::EINVAL);
    }
    Ok((addr, end))
}

fn munmap(p: &mut Process, addr: u64, len: u64) -> SysResult {
    let (start, end) = check_range(addr, len)?;
    p.memory.remove_range(start, end);
    Ok(0)
}

fn mprotect(p: &mut Process, addr: u64, len: u64, prot: u64) -> SysResult {
    if prot & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, end) = check_range(addr, len)?;
    p.memory.protect(start, end, Prot::from_bits(prot)).map(|()| 0)
}

fn rt_sigaction(p: &mut Process, signal: u64, act: u64, old: u64, size: u64) -> SysResult {
    if size != 8 || signal == 0 || signal > 64 || signal == 9 || signal == 19 {
        return Err(Errno::EINVAL);
    }
    let slot = signal as usize;
    if old != 0 {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&p.signal_handlers.get(slot).copied().unwrap_or(0).to_le_bytes());
        p.memory.write(old, &bytes)?;
    }
    if act != 0 {
        let mut handler = [0u8; 8];
        p.memory.read(act, &mut handler)?;
        if let Some(h) = p.signal_handlers.get_mut(slot) {
            *h = u64::from_le_bytes(handler);
        }
    }
    Ok(0)
}

fn rt_sigprocmask(p: &mut Process, how: u64, set: u64, old: u64, size: u64) -> SysResult {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    if old != 0 {
        p.memory.write(old, &p.signal_mask.to_le_bytes())?;
    }
    if set != 0 {
        let mut bytes = [0u8; 8];
        p.memory.read(set, &mut bytes)?;
        let set = u64::from_le_bytes(bytes) & !((1 << 8) | (1 << 18)); // SIGKILL, SIGSTOP
        p.signal_mask = match how {
            0 => p.signal_mask | set,
            1 => p.signal_mask & !set,
            2 => set,
            _ => return Err(Errno::EINVAL),
        };
    }
    Ok(0)
}

const TCGETS: u64 = 0x5401;
const TCSETS: u64 = 0x5402;
const TCSETSW: u64 = 0x5403;
const TCSETSF: u64 = 0x5404;
const TIOCGWINSZ: u64 = 0x5413;

fn ioctl(p: &mut Process, fd: u64, request: u64, arg: u64) -> SysResult {
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

fn uname(p: &mut Process, buf: u64) -> SysResult {
    let fields: [&[u8]; 6] = [b"Linux", b"tessera", b"6.1.0-tessera", b"#1 Tessera framekernel", b"x86_64", b"(none)"];
    let mut out = [0u8; 65 * 6];
    for (i, field) in fields.iter().enumerate() {
        if let Some(dst) = out.get_mut(i * 65..i * 65 + field.len()) {
            dst.copy_from_slice(field);
        }
    }
    p.memory.write(buf, &out)?;
    Ok(0)
}

fn readlink(p: &mut Process, path: u64, buf: u64, size: u64) -> SysResult {
    let name = p.memory.read_c_string(path, 4096)?;
    if size == 0 || size > i32::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    if name != b"/proc/self/exe" {
        return Err(Errno::ENOENT);
    }
    let target = p.exe.clone().into_bytes();
    let n = target.len().min(size as usize);
    p.memory.write(buf, target.get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

fn arch_prctl(p: &mut Process, context: &mut UserContext, code: u64, addr: u64) -> SysResult {
    match code {
        ARCH_SET_FS | ARCH_SET_GS => {
            if !is_user_half(addr) {
                return Err(Errno::EPERM);
            }
            if code == ARCH_SET_FS {
                context.regs.fs_base = addr;
            } else {
                context.regs.gs_base = addr;
            }
            Ok(0)
        }
        ARCH_GET_FS => p.memory.write(addr, &context.regs.fs_base.to_le_bytes()).map(|()| 0),
        ARCH_GET_GS => p.memory.write(addr, &context.regs.gs_base.to_le_bytes()).map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

fn clock_gettime(p: &mut Process, clock: u64, out: u64) -> SysResult {
    let ns = match clock {
        // CLOCK_REALTIME, CLOCK_REALTIME_COARSE
        0 | 5 => framekernel::time::realtime_ns(),
        // CLOCK_MONOTONIC, _RAW, _COARSE, CLOCK_BOOTTIME
        1 | 4 | 6 | 7 => framekernel::time::now_ns(),
        // Process and thread CPU time: approximated by time since boot.
        2 | 3 => framekernel::time::now_ns(),
        _ => return Err(Errno::EINVAL),
    };
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    p.memory.write(out, &ts)?;
    Ok(0)
}

const RLIM_INFINITY: u64 = u64::MAX;

fn prlimit64(p: &mut Process, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != u64::from(p.pid) {
        return Err(Errno::ESRCH);
    }
    let (cur, max) = match resource {
        3 => (crate::memory::STACK_SIZE, RLIM_INFINITY),       // RLIMIT_STACK
        7 => (crate::files::MAX_FILES as u64, crate::files::MAX_FILES as u64), // RLIMIT_NOFILE
        0..=15 => (RLIM_INFINITY, RLIM_INFINITY),
        _ => return Err(Errno::EINVAL),
    };
    if new != 0 {
        let mut limits = [0u8; 16];
        p.memory.read(new, &mut limits)?;
    }
    if old != 0 {
        let mut limits = [0u8; 16];
        limits[..8].copy_from_slice(&cur.to_le_bytes());
        limits[8..].copy_from_slice(&max.to_le_bytes());
        p.memory.write(old, &limits)?;
    }
    Ok(0)
}

fn getrandom(p: &mut Process, buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !0x7 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = (len as usize).min(IO_CHUNK);
    let mut bytes = vec![0u8; len];
    framekernel::random::fill(&mut bytes);
    p.memory.write(buf, &bytes)?;
    Ok(len as u64)
}
