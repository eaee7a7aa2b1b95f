//! The x86_64 system-call dispatcher: number in `rax`, arguments in `rdi`,
//! `rsi`, `rdx`, `r10`, `r8`, `r9`; result or `-errno` back in `rax`.
//! Unknown numbers return `ENOSYS` and are logged once each.

pub mod aio;
mod fs;
pub(crate) use fs::{open_path, path_arg};
pub mod futex;
pub mod ipc;
mod io;
mod misc;
mod mq;
mod pvm;
mod mm;
pub mod net;
pub mod poll;
pub mod names;
pub mod proc;
mod sched;
mod splice;
mod signal;
mod timer;
mod unix;
mod netlink;

use crate::errno::Errno;
use crate::process::{IdKind, Process};
use alloc::collections::BTreeSet;
use framekernel::arch::user::UserContext;
use framekernel::sync::SpinLock;
use io::*;
use misc::*;
use mm::*;
use signal::*;

/// What the process loop does after a system call.
pub enum Action {
    /// Put this value in `rax` and continue.
    Return(u64),
    /// The registers were replaced (`execve`, `rt_sigreturn`): continue as is.
    Replaced,
    /// This thread exits (`exit`).
    ExitThread(u8),
    /// The whole process exits (`exit_group`).
    ExitGroup(u8),
    /// The process is killed by a signal (an unusable signal frame).
    Kill(u8),
}

pub use io::signal_io;
pub use misc::{FILESYSTEMS, domainname_string, set_uts_text};
pub use sched::RR_TIMESLICE_MS;

/// The release `uname` and `/proc/sys/kernel/osrelease` report.
pub const RELEASE: &str = "6.1.0-tessera";
/// The version `uname` and `/proc/sys/kernel/version` report.
pub const VERSION: &str = "#1 Tessera framekernel";

/// The host name, as text.
pub fn hostname_string() -> alloc::string::String {
    let host = misc::hostname();
    let len = host.iter().position(|&b| b == 0).unwrap_or(host.len());
    alloc::string::String::from_utf8_lossy(host.get(..len).unwrap_or(&[])).into_owned()
}

/// Largest chunk copied between user and kernel per step of read/write.
pub(crate) const IO_CHUNK: usize = 64 * 1024;

/// System call numbers (x86_64).
#[allow(missing_docs)]
pub mod nr {
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
    pub const RT_SIGRETURN: u64 = 15;
    pub const IOCTL: u64 = 16;
    pub const OPEN: u64 = 2;
    pub const MREMAP: u64 = 25;
    pub const MSYNC: u64 = 26;
    pub const SENDFILE: u64 = 40;
    pub const SYSLOG: u64 = 103;
    pub const RT_SIGTIMEDWAIT: u64 = 128;
    pub const GETRUSAGE: u64 = 98;
    pub const SYSINFO: u64 = 99;
    pub const TIMES: u64 = 100;
    pub const GETPRIORITY: u64 = 140;
    pub const SETPRIORITY: u64 = 141;
    pub const MOUNT: u64 = 165;
    pub const UMOUNT2: u64 = 166;
    pub const REBOOT: u64 = 169;
    pub const SETHOSTNAME: u64 = 170;
    pub const SETDOMAINNAME: u64 = 171;
    pub const POLL: u64 = 7;
    pub const PIPE: u64 = 22;
    pub const SELECT: u64 = 23;
    pub const TIME: u64 = 201;
    pub const PSELECT6: u64 = 270;
    pub const PPOLL: u64 = 271;
    pub const PIPE2: u64 = 293;
    pub const STAT: u64 = 4;
    pub const LSTAT: u64 = 6;
    pub const LSEEK: u64 = 8;
    pub const PREAD64: u64 = 17;
    pub const PWRITE64: u64 = 18;
    pub const ACCESS: u64 = 21;
    pub const FSYNC: u64 = 74;
    pub const FDATASYNC: u64 = 75;
    pub const TRUNCATE: u64 = 76;
    pub const FTRUNCATE: u64 = 77;
    pub const GETCWD: u64 = 79;
    pub const CHDIR: u64 = 80;
    pub const FCHDIR: u64 = 81;
    pub const RENAME: u64 = 82;
    pub const MKDIR: u64 = 83;
    pub const RMDIR: u64 = 84;
    pub const CREAT: u64 = 85;
    pub const LINK: u64 = 86;
    pub const UNLINK: u64 = 87;
    pub const SYMLINK: u64 = 88;
    pub const CHMOD: u64 = 90;
    pub const FCHMOD: u64 = 91;
    pub const CHOWN: u64 = 92;
    pub const FCHOWN: u64 = 93;
    pub const LCHOWN: u64 = 94;
    pub const UMASK: u64 = 95;
    pub const MKNOD: u64 = 133;
    pub const STATFS: u64 = 137;
    pub const FSTATFS: u64 = 138;
    pub const SYNC: u64 = 162;
    pub const GETDENTS64: u64 = 217;
    pub const MKDIRAT: u64 = 258;
    pub const MKNODAT: u64 = 259;
    pub const FCHOWNAT: u64 = 260;
    pub const UNLINKAT: u64 = 263;
    pub const RENAMEAT: u64 = 264;
    pub const LINKAT: u64 = 265;
    pub const SYMLINKAT: u64 = 266;
    pub const FCHMODAT: u64 = 268;
    pub const FACCESSAT: u64 = 269;
    pub const UTIMENSAT: u64 = 280;
    pub const RENAMEAT2: u64 = 316;
    pub const STATX: u64 = 332;
    pub const FACCESSAT2: u64 = 439;
    pub const READV: u64 = 19;
    pub const WRITEV: u64 = 20;
    pub const DUP: u64 = 32;
    pub const DUP2: u64 = 33;
    pub const FCNTL: u64 = 72;
    pub const GETTIMEOFDAY: u64 = 96;
    pub const GETRLIMIT: u64 = 97;
    pub const PRCTL: u64 = 157;
    pub const OPENAT: u64 = 257;
    pub const DUP3: u64 = 292;
    pub const SCHED_YIELD: u64 = 24;
    pub const MADVISE: u64 = 28;
    pub const PAUSE: u64 = 34;
    pub const NANOSLEEP: u64 = 35;
    pub const GETPID: u64 = 39;
    pub const CLONE: u64 = 56;
    pub const FORK: u64 = 57;
    pub const VFORK: u64 = 58;
    pub const EXECVE: u64 = 59;
    pub const EXIT: u64 = 60;
    pub const WAIT4: u64 = 61;
    pub const KILL: u64 = 62;
    pub const UNAME: u64 = 63;
    pub const READLINK: u64 = 89;
    pub const GETUID: u64 = 102;
    pub const GETGID: u64 = 104;
    pub const SETUID: u64 = 105;
    pub const SETGID: u64 = 106;
    pub const GETEUID: u64 = 107;
    pub const GETEGID: u64 = 108;
    pub const SETREUID: u64 = 113;
    pub const SETREGID: u64 = 114;
    pub const SETRESUID: u64 = 117;
    pub const GETRESUID: u64 = 118;
    pub const SETRESGID: u64 = 119;
    pub const GETRESGID: u64 = 120;
    pub const SETPGID: u64 = 109;
    pub const GETPPID: u64 = 110;
    pub const GETPGRP: u64 = 111;
    pub const SETSID: u64 = 112;
    pub const GETPGID: u64 = 121;
    pub const GETSID: u64 = 124;
    pub const RT_SIGPENDING: u64 = 127;
    pub const RT_SIGSUSPEND: u64 = 130;
    pub const SIGALTSTACK: u64 = 131;
    pub const ARCH_PRCTL: u64 = 158;
    pub const GETTID: u64 = 186;
    pub const TKILL: u64 = 200;
    pub const FUTEX: u64 = 202;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const RESTART_SYSCALL: u64 = 219;
    pub const EXIT_GROUP: u64 = 231;
    pub const TGKILL: u64 = 234;
    pub const NEWFSTATAT: u64 = 262;
    pub const READLINKAT: u64 = 267;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const PRLIMIT64: u64 = 302;
    pub const GETRANDOM: u64 = 318;
    pub const RSEQ: u64 = 334;
}

static REPORTED: SpinLock<BTreeSet<u64>> = SpinLock::new(BTreeSet::new());

const SIGCHLD: u64 = 17;
/// AT_FDCWD as a register value.
const CWD: u64 = -100i64 as u64;

/// A write that failed with EPIPE also raises SIGPIPE, as on Linux.
fn sigpipe(p: &Process, result: crate::errno::SysResult) -> crate::errno::SysResult {
    if result == Err(Errno::EPIPE) {
        p.thread.send_signal(13, crate::signal::SigInfo::default());
    }
    result
}

/// `getgroups(size, list)`: the count for size 0, EINVAL if `size` is too
/// small.
fn getgroups(p: &mut Process, size: u64, list: u64) -> crate::errno::SysResult {
    let groups = p.info.credentials().groups;
    let size = size as i32;
    if size < 0 {
        return Err(Errno::EINVAL);
    }
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if (size as usize) < groups.len() {
        return Err(Errno::EINVAL);
    }
    let bytes: alloc::vec::Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    p.memory.write(list, &bytes)?;
    Ok(groups.len() as u64)
}

/// `setgroups(size, list)`: the superuser only; at most `MAX_GROUPS`.
fn setgroups(p: &mut Process, size: u64, list: u64) -> crate::errno::SysResult {
    if size as usize > crate::process::MAX_GROUPS {
        return Err(Errno::EINVAL);
    }
    if !p.info.credentials().capable(crate::process::cap::SETGID) {
        return Err(Errno::EPERM);
    }
    let mut bytes = alloc::vec![0u8; size as usize * 4];
    p.memory.read(list, &mut bytes)?;
    let groups: alloc::vec::Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    p.info.change_credentials(|c| c.set_groups(&groups)).map(|()| 0)
}

/// Serves the system call in `context`.
pub fn dispatch(p: &mut Process, context: &mut UserContext) -> Action {
    let r = context.regs;
    let a = [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9];
    // seccomp decides first (one atomic load when it is off).
    if p.thread.seccomp_mode.load(core::sync::atomic::Ordering::Relaxed) != 0 {
        use crate::seccomp::Verdict;
        // The filters run with no lock held (interrupts stay on).
        let state = p.thread.seccomp.lock().clone();
        let verdict = state.verdict(r.rax, a, r.rip);
        match verdict {
            Verdict::Allow => {}
            Verdict::Errno(errno) => return Action::Return((-i64::from(errno)) as u64),
            Verdict::Trap(data) => {
                // SIGSYS, SYS_SECCOMP: si_call_addr, si_syscall, si_arch;
                // the call is not made (rax keeps its number).
                p.force_if_blocked(crate::signal::num::SIGSYS);
                let info = crate::signal::SigInfo { code: 1, addr: r.rip, value: (r.rax & 0xffff_ffff) | (0xc000_003e << 32) };
                let _ = data;
                p.thread.send_signal(crate::signal::num::SIGSYS, info);
                return Action::Return(r.rax);
            }
            Verdict::KillThread if p.info.thread_count() > 1 => return Action::ExitThread(0),
            Verdict::KillThread | Verdict::KillProcess => return Action::Kill(crate::signal::num::SIGSYS),
            Verdict::StrictKill => return Action::Kill(crate::signal::num::SIGKILL),
        }
    }
    // Calls that need a descriptor open for I/O take none opened with
    // O_PATH (Linux's `fdget` refuses them: EBADF).
    if matches!(r.rax, nr::IOCTL | nr::LSEEK | nr::GETDENTS64 | 78 /* getdents */ | 187 /* readahead */ | 221 /* fadvise64 */ | 73 /* flock */)
        && p.files.get(a[0]).is_ok_and(|f| f.status_flags() & crate::fs::O_PATH != 0)
    {
        return Action::Return(Errno::EBADF.as_return());
    }
    let result = match r.rax {
        nr::EXIT => return Action::ExitThread(a[0] as u8),
        nr::EXIT_GROUP => return Action::ExitGroup(a[0] as u8),
        nr::EXECVE => match proc::execve(p, context, a[0], a[1], a[2]) {
            Ok(action) => return action,
            Err(errno) => Err(errno),
        },
        322 => match proc::execveat(p, context, a[0], a[1], a[2], a[3], a[4]) {
            Ok(action) => return action,
            Err(errno) => Err(errno),
        },
        nr::RT_SIGRETURN => match rt_sigreturn(p, context) {
            Ok(()) => return Action::Replaced,
            Err(_) => return Action::Kill(11), // unusable frame: SIGSEGV
        },
        nr::READ => read(p, a[0], a[1], a[2]),
        nr::WRITE => {
            let result = write(p, a[0], a[1], a[2]);
            sigpipe(p, result)
        }
        nr::WRITEV => {
            let result = writev(p, a[0], a[1], a[2]);
            sigpipe(p, result)
        }
        nr::POLL => poll::poll(p, a[0], a[1], a[2]),
        213 => poll::epoll_create(p, a[0], false),
        291 => poll::epoll_create(p, a[0], true),
        233 => poll::epoll_ctl(p, a[0], a[1], a[2], a[3]),
        232 => poll::epoll_wait(p, a[0], a[1], a[2], poll::deadline_ms(a[3])),
        281 => poll::with_sigmask(p, a[4], a[5], |p| poll::epoll_wait(p, a[0], a[1], a[2], poll::deadline_ms(a[3]))),
        441 => poll::deadline_ts(p, a[3]).and_then(|deadline| poll::with_sigmask(p, a[4], a[5], |p| poll::epoll_wait(p, a[0], a[1], a[2], deadline))),
        284 => poll::eventfd(p, a[0], 0),
        290 => poll::eventfd(p, a[0], a[1]),
        nr::RT_SIGTIMEDWAIT => rt_sigtimedwait(p, a[0], a[1], a[2], a[3]),
        nr::SENDFILE => sendfile(p, a[0], a[1], a[2], a[3]),
        240 => mq::mq_open(p, a[0], a[1], a[2], a[3]),
        241 => mq::mq_unlink(p, a[0]),
        242 => mq::mq_timedsend(p, a[0], a[1], a[2], a[3], a[4]),
        243 => mq::mq_timedreceive(p, a[0], a[1], a[2], a[3], a[4]),
        244 => mq::mq_notify(p, a[0], a[1]),
        245 => mq::mq_getsetattr(p, a[0], a[1], a[2]),
        275 => {
            let result = splice::splice(p, a[0], a[1], a[2], a[3], a[4], a[5]);
            sigpipe(p, result)
        }
        276 => splice::tee(p, a[0], a[1], a[2], a[3]),
        278 => {
            let result = splice::vmsplice(p, a[0], a[1], a[2], a[3]);
            sigpipe(p, result)
        }
        nr::SYSLOG => syslog(p, a[0], a[1], a[2]),
        nr::MOUNT => mount(p, a[0], a[1], a[2], a[3], a[4]),
        nr::UMOUNT2 => umount2(p, a[0], a[1]),
        nr::REBOOT => reboot(p, a[0], a[1], a[2]),
        nr::SETHOSTNAME => set_uts_name(p, a[0], a[1], false),
        nr::SETDOMAINNAME => set_uts_name(p, a[0], a[1], true),
        nr::SYSINFO => sysinfo(p, a[0]),
        nr::TIMES => times(p, a[0]),
        nr::GETRUSAGE => getrusage(p, a[0], a[1]),
        nr::GETPRIORITY => getpriority(p, a[0], a[1]),
        nr::SETPRIORITY => setpriority(p, a[0], a[1], a[2]),
        nr::PPOLL => poll::with_sigmask(p, a[3], a[4], |p| poll::ppoll(p, a[0], a[1], a[2])),
        nr::SELECT => poll::select(p, a[0], a[1], a[2], a[3], a[4]),
        nr::PSELECT6 => {
            // The sixth argument: { const sigset_t *set; size_t size; }.
            let mut pair = [0u8; 16];
            let sig = if a[5] == 0 { Ok((0, 0)) } else { p.memory.read(a[5], &mut pair).map(|()| (u64::from_le_bytes(pair[..8].try_into().unwrap_or([0; 8])), u64::from_le_bytes(pair[8..].try_into().unwrap_or([0; 8])))) };
            sig.and_then(|(set, size)| poll::with_sigmask(p, set, size, |p| poll::pselect6(p, a[0], a[1], a[2], a[3], a[4])))
        }
        nr::PIPE => poll::pipe2(p, a[0], 0),
        nr::PIPE2 => poll::pipe2(p, a[0], a[1]),
        nr::TIME => {
            let seconds = framekernel::time::realtime_ns() / 1_000_000_000;
            if a[0] != 0 {
                p.memory.write(a[0], &seconds.to_le_bytes()).map(|()| seconds)
            } else {
                Ok(seconds)
            }
        }
        nr::READV => readv(p, a[0], a[1], a[2]),
        295 => preadv(p, a[0], a[1], a[2], a[3], None),
        296 => {
            let result = pwritev(p, a[0], a[1], a[2], a[3], None);
            sigpipe(p, result)
        }
        327 => preadv(p, a[0], a[1], a[2], a[3], Some(a[5])),
        328 => {
            let result = pwritev(p, a[0], a[1], a[2], a[3], Some(a[5]));
            sigpipe(p, result)
        }
        nr::OPEN => fs::openat(p, CWD, a[0], a[1], a[2]),
        nr::CREAT => fs::openat(p, CWD, a[0], 0o1101, a[1]), // O_CREAT|O_WRONLY|O_TRUNC
        nr::OPENAT => fs::openat(p, a[0], a[1], a[2], a[3]),
        nr::STAT => fs::newfstatat(p, CWD, a[0], a[1], 0),
        nr::LSTAT => fs::newfstatat(p, CWD, a[0], a[1], 0x100),
        nr::STATX => fs::statx(p, a[0], a[1], a[2], a[3] & 0xffff_ffff, a[4]),
        nr::LSEEK => fs::lseek(p, a[0], a[1], a[2]),
        nr::PREAD64 => fs::pread64(p, a[0], a[1], a[2], a[3]),
        nr::PWRITE64 => fs::pwrite64(p, a[0], a[1], a[2], a[3]),
        nr::GETDENTS64 => fs::getdents64(p, a[0], a[1], a[2]),
        78 => fs::getdents(p, a[0], a[1], a[2]),
        nr::ACCESS => fs::faccessat(p, CWD, a[0], a[1], 0),
        nr::FACCESSAT => fs::faccessat(p, a[0], a[1], a[2], 0),
        nr::FACCESSAT2 => fs::faccessat(p, a[0], a[1], a[2], a[3]),
        nr::FSYNC | nr::FDATASYNC => p.files.get(a[0]).and_then(|f| f.sync()),
        306 => syncfs(p, a[0]),
        277 => sync_file_range(p, a[0], a[1], a[2], a[3]),
        139 => sysfs(p, a[0], a[1], a[2]),
        153 => vhangup(p),
        312 => kcmp(p, a[0], a[1], a[2], a[3], a[4]),
        326 => copy_file_range(p, a[0], a[1], a[2], a[3], a[4], a[5]),
        253 => fs::inotify_init(p, 0),
        294 => fs::inotify_init(p, a[0]),
        254 => fs::inotify_add_watch(p, a[0], a[1], a[2]),
        255 => fs::inotify_rm_watch(p, a[0], a[1]),
        nr::SYNC => {
            crate::block::sync_all();
            Ok(0)
        }
        nr::TRUNCATE => fs::truncate(p, a[0], a[1]),
        nr::FTRUNCATE => fs::ftruncate(p, a[0], a[1]),
        nr::GETCWD => fs::getcwd(p, a[0], a[1]),
        nr::CHDIR => fs::chdir(p, a[0]),
        nr::FCHDIR => fs::fchdir(p, a[0]),
        161 => fs::chroot(p, a[0]),
        nr::RENAME => fs::renameat2(p, CWD, a[0], CWD, a[1], 0),
        nr::RENAMEAT => fs::renameat2(p, a[0], a[1], a[2], a[3], 0),
        nr::RENAMEAT2 => fs::renameat2(p, a[0], a[1], a[2], a[3], a[4]),
        nr::MKDIR => fs::mkdirat(p, CWD, a[0], a[1]),
        nr::MKDIRAT => fs::mkdirat(p, a[0], a[1], a[2]),
        nr::MKNOD => fs::mknodat(p, CWD, a[0], a[1], a[2]),
        nr::MKNODAT => fs::mknodat(p, a[0], a[1], a[2], a[3]),
        nr::RMDIR => fs::unlinkat(p, CWD, a[0], 0x200),
        nr::UNLINK => fs::unlinkat(p, CWD, a[0], 0),
        nr::UNLINKAT => fs::unlinkat(p, a[0], a[1], a[2]),
        nr::LINK => fs::linkat(p, CWD, a[0], CWD, a[1], 0),
        nr::LINKAT => fs::linkat(p, a[0], a[1], a[2], a[3], a[4]),
        nr::SYMLINK => fs::symlinkat(p, a[0], CWD, a[1]),
        nr::SYMLINKAT => fs::symlinkat(p, a[0], a[1], a[2]),
        nr::CHMOD => fs::fchmodat(p, CWD, a[0], a[1]),
        nr::FCHMOD => fs::fchmod(p, a[0], a[1]),
        nr::FCHMODAT => fs::fchmodat(p, a[0], a[1], a[2]),
        nr::CHOWN => fs::fchownat(p, CWD, a[0], a[1], a[2], 0),
        nr::LCHOWN => fs::fchownat(p, CWD, a[0], a[1], a[2], 0x100),
        nr::FCHOWN => fs::fchown(p, a[0], a[1], a[2]),
        nr::FCHOWNAT => fs::fchownat(p, a[0], a[1], a[2], a[3], a[4]),
        nr::UMASK => fs::umask(p, a[0]),
        nr::UTIMENSAT => fs::utimensat(p, a[0], a[1], a[2], a[3]),
        132 => fs::utimes(p, CWD, a[0], a[1], 0),
        235 => fs::utimes(p, CWD, a[0], a[1], 1000),
        261 => fs::utimes(p, a[0], a[1], a[2], 1000),
        160 => prlimit64(p, 0, a[0], a[1], 0),
        274 => get_robust_list(p, a[0], a[1], a[2]),
        324 => membarrier(p, a[0], a[1], a[2]),
        187 => readahead(p, a[0]),
        251 => ioprio_set(p, a[0], a[1], a[2]),
        252 => ioprio_get(p, a[0], a[1]),
        188..=199 => fs::xattr(p, r.rax, [a[0], a[1], a[2], a[3], a[4]]),
        nr::STATFS => fs::statfs(p, a[0], a[1]),
        nr::FSTATFS => fs::fstatfs(p, a[0], a[1]),
        nr::DUP => dup(p, a[0]),
        nr::DUP2 => dup3(p, a[0], a[1], 0, true),
        nr::DUP3 => dup3(p, a[0], a[1], a[2], false),
        nr::FCNTL => fcntl(p, a[0], a[1], a[2]),
        29 => ipc::shmget(p, a[0], a[1], a[2]),
        30 => ipc::shmat(p, a[0], a[1], a[2]),
        31 => ipc::shmctl(p, a[0], a[1], a[2]),
        67 => {
            let result = ipc::shmdt(p, a[0]);
            ipc::reap_removed_segments();
            result
        }
        64 => ipc::semget(p, a[0], a[1], a[2]),
        65 => ipc::semtimedop(p, a[0], a[1], a[2], None),
        220 => poll::deadline_ts(p, a[3]).and_then(|deadline| ipc::semtimedop(p, a[0], a[1], a[2], deadline)),
        66 => ipc::semctl(p, a[0], a[1], a[2], a[3]),
        68 => ipc::msgget(p, a[0], a[1]),
        69 => ipc::msgsnd(p, a[0], a[1], a[2], a[3]),
        70 => ipc::msgrcv(p, a[0], a[1], a[2], a[3], a[4]),
        71 => ipc::msgctl(p, a[0], a[1], a[2]),
        436 => close_range(p, a[0], a[1], a[2]),
        221 => fadvise64(p, a[0], a[1], a[2], a[3]),
        285 => fs::fallocate(p, a[0], a[1], a[2], a[3]),
        319 => fs::memfd_create(p, a[0], a[1]),
        36 => timer::getitimer(p, a[0], a[1]),
        37 => timer::alarm(p, a[0]),
        38 => timer::setitimer(p, a[0], a[1], a[2]),
        222 => timer::timer_create(p, a[0], a[1], a[2]),
        223 => timer::timer_settime(p, a[0], a[1], a[2], a[3]),
        224 => timer::timer_gettime(p, a[0], a[1]),
        225 => timer::timer_getoverrun(p, a[0]),
        226 => timer::timer_delete(p, a[0]),
        159 => timer::adjtimex(p, a[0]),
        305 => timer::clock_adjtime(p, a[0], a[1]),
        283 => timer::timerfd_create(p, a[0], a[1]),
        286 => timer::timerfd_settime(p, a[0], a[1], a[2], a[3]),
        287 => timer::timerfd_gettime(p, a[0], a[1]),
        282 => signalfd4(p, a[0], a[1], a[2], 0),
        289 => signalfd4(p, a[0], a[1], a[2], a[3]),
        73 => flock(p, a[0], a[1]),
        nr::GETTIMEOFDAY => gettimeofday(p, a[0], a[1]),
        nr::GETRLIMIT => getrlimit(p, a[0], a[1]),
        nr::PRCTL => prctl(p, a[0], [a[1], a[2], a[3], a[4]]),
        nr::CLOSE => p.files.close(a[0]).map(|()| 0),
        nr::FSTAT => fstat(p, a[0], a[1]),
        nr::NEWFSTATAT => fs::newfstatat(p, a[0], a[1], a[2], a[3]),
        nr::IOCTL => ioctl(p, a[0], a[1] & 0xffff_ffff, a[2]), // the request is an unsigned int (musl passes it sign-extended)
        nr::MMAP => mmap(p, a[0], a[1], a[2], a[3], a[4], a[5]),
        nr::MSYNC => msync(p, a[0], a[1], a[2]),
        nr::MUNMAP => munmap(p, a[0], a[1]),
        nr::MREMAP => mremap(p, a[0], a[1], a[2], a[3], a[4]),
        149 => mlock(p, a[0], a[1], true, false),
        150 => mlock(p, a[0], a[1], false, false),
        151 => mlockall(p, a[0]),
        152 => munlockall(p),
        325 => {
            if a[2] & !1 != 0 { Err(Errno::EINVAL) } else { mlock(p, a[0], a[1], true, a[2] & 1 != 0) } // mlock2(MLOCK_ONFAULT)
        }
        nr::MPROTECT => mprotect(p, a[0], a[1], a[2]),
        nr::MADVISE => madvise(p, a[0], a[1], a[2]),
        27 => mincore(p, a[0], a[1], a[2]),
        nr::BRK => Ok(p.memory.set_brk(a[0])),
        nr::RT_SIGACTION => rt_sigaction(p, a[0], a[1], a[2], a[3]),
        nr::RT_SIGPROCMASK => rt_sigprocmask(p, a[0], a[1], a[2], a[3]),
        nr::RT_SIGPENDING => rt_sigpending(p, a[0], a[1]),
        nr::RT_SIGSUSPEND => rt_sigsuspend(p, a[0], a[1]),
        nr::SIGALTSTACK => sigaltstack(p, context, a[0], a[1]),
        nr::PAUSE => pause(p),
        nr::KILL => kill(p, a[0], a[1]),
        nr::TKILL => tkill(p, a[0], a[1]),
        nr::TGKILL => tgkill(p, a[0], a[1], a[2]),
        nr::CLONE => proc::clone(p, context, a[0], a[1], a[2], a[3], a[4]),
        435 => proc::clone3(p, context, a[0], a[1]),
        163 => crate::acct::acct(p, a[0]),
        136 => fs::ustat(p, a[0], a[1]),
        437 => fs::openat2(p, a[0], a[1], a[2], a[3]),
        317 => crate::seccomp::seccomp(p, a[0], a[1], a[2]),
        216 => mm::remap_file_pages(p, a[0], a[1], a[2], a[3], a[4]),
        303 => fs::name_to_handle_at(p, a[0], a[1], a[2], a[3], a[4]),
        304 => fs::open_by_handle_at(p, a[0], a[1], a[2]),
        nr::FORK => proc::clone(p, context, SIGCHLD, 0, 0, 0, 0),
        nr::VFORK => proc::clone(p, context, SIGCHLD | 0x4000 | 0x100, 0, 0, 0, 0), // CLONE_VFORK | CLONE_VM
        272 => proc::unshare(p, a[0]),
        nr::WAIT4 => proc::wait4(p, a[0], a[1], a[2], a[3]),
        247 => proc::waitid(p, a[0], a[1], a[2], a[3], a[4]),
        434 => pidfd_open(p, a[0], a[1]),
        424 => pidfd_send_signal(p, a[0], a[1], a[2], a[3]),
        129 => rt_sigqueueinfo(p, a[0], None, a[1], a[2]),
        297 => rt_sigqueueinfo(p, a[0], Some(a[1]), a[2], a[3]),
        nr::NANOSLEEP => proc::nanosleep(p, a[0], a[1]),
        nr::RESTART_SYSCALL => proc::restart_syscall(p),
        nr::CLOCK_NANOSLEEP => proc::clock_nanosleep(p, a[0], a[1], a[2], a[3]),
        142 => sched::sched_setparam(p, a[0], a[1]),
        143 => sched::sched_getparam(p, a[0], a[1]),
        144 => sched::sched_setscheduler(p, a[0], a[1], a[2]),
        145 => sched::sched_getscheduler(p, a[0]),
        146 => sched::sched_priority_range(a[0], true),
        147 => sched::sched_priority_range(a[0], false),
        148 => sched::sched_rr_get_interval(p, a[0], a[1]),
        203 => sched::sched_setaffinity(p, a[0], a[1], a[2]),
        204 => sched::sched_getaffinity(p, a[0], a[1], a[2]),
        309 => sched::getcpu(p, a[0], a[1]),
        314 => sched::sched_setattr(p, a[0], a[1], a[2]),
        315 => sched::sched_getattr(p, a[0], a[1], a[2], a[3]),
        nr::SCHED_YIELD => {
            tessera_sched::yield_now();
            Ok(0)
        }
        nr::GETPID => Ok(u64::from(p.info.pid)),
        nr::GETTID => Ok(u64::from(p.thread.tid)),
        nr::FUTEX => futex::futex(p, a[0], a[1], a[2], a[3], a[4], a[5]),
        310 => pvm::process_vm(p, a, false),
        311 => pvm::process_vm(p, a, true),
        438 => pvm::pidfd_getfd(p, a[0], a[1], a[2]),
        206 => aio::io_setup(p, a[0], a[1]),
        207 => aio::io_destroy(p, a[0]),
        208 => aio::io_getevents(p, a[0], a[1], a[2], a[3], a[4]),
        209 => aio::io_submit(p, a[0], a[1], a[2]),
        210 => aio::io_cancel(p, a[0], a[1], a[2]),
        333 => aio::io_getevents(p, a[0], a[1], a[2], a[3], a[4]),
        449 => futex::futex_waitv(p, a[0], a[1], a[2], a[3], a[4]),
        nr::GETPPID => Ok(u64::from(p.info.ppid())),
        nr::GETPGRP => Ok(u64::from(p.info.pgid())),
        nr::GETPGID => proc::getpgid(p, a[0]),
        nr::SETPGID => proc::setpgid(p, a[0], a[1]),
        nr::GETSID => proc::getsid(p, a[0]),
        nr::SETSID => proc::setsid(p),
        nr::GETUID => Ok(u64::from(p.info.credentials().ruid)),
        nr::GETEUID => Ok(u64::from(p.info.credentials().euid)),
        nr::GETGID => Ok(u64::from(p.info.credentials().rgid)),
        nr::GETEGID => Ok(u64::from(p.info.credentials().egid)),
        nr::SETUID => p.info.change_credentials(|c| c.set_id(IdKind::User, a[0] as u32)).map(|()| 0),
        nr::SETGID => p.info.change_credentials(|c| c.set_id(IdKind::Group, a[0] as u32)).map(|()| 0),
        nr::SETREUID => p.info.change_credentials(|c| c.set_re(IdKind::User, a[0] as u32, a[1] as u32)).map(|()| 0),
        nr::SETREGID => p.info.change_credentials(|c| c.set_re(IdKind::Group, a[0] as u32, a[1] as u32)).map(|()| 0),
        nr::SETRESUID => p.info.change_credentials(|c| c.set_res(IdKind::User, [a[0] as u32, a[1] as u32, a[2] as u32])).map(|()| 0),
        nr::SETRESGID => p.info.change_credentials(|c| c.set_res(IdKind::Group, [a[0] as u32, a[1] as u32, a[2] as u32])).map(|()| 0),
        nr::GETRESUID | nr::GETRESGID => {
            let kind = if r.rax == nr::GETRESUID { IdKind::User } else { IdKind::Group };
            let ids = p.info.credentials().get(kind);
            a.iter().zip(ids).try_for_each(|(&at, id)| p.memory.write(at, &id.to_le_bytes())).map(|()| 0)
        }
        115 => getgroups(p, a[0], a[1]),
        116 => setgroups(p, a[0], a[1]),
        122 | 123 => {
            let kind = if r.rax == 122 { IdKind::User } else { IdKind::Group };
            let mut old = 0;
            p.info
                .change_credentials(|mut c| {
                    old = c.set_fs(kind, a[0] as u32);
                    Ok(c)
                })
                .map(|()| u64::from(old))
        }
        nr::UNAME => uname(p, a[0]),
        125 => capget(p, a[0], a[1]),
        126 => capset(p, a[0], a[1]),
        135 => {
            // personality: 0xffffffff only asks; any other value is taken.
            let old = p.personality;
            if a[0] as u32 != u32::MAX {
                p.personality = a[0] as u32;
            }
            Ok(u64::from(old))
        }
        nr::READLINK => fs::readlinkat(p, CWD, a[0], a[1], a[2]),
        nr::READLINKAT => fs::readlinkat(p, a[0], a[1], a[2], a[3]),
        nr::ARCH_PRCTL => arch_prctl(p, context, a[0], a[1]),
        nr::SET_TID_ADDRESS => {
            p.clear_child_tid = a[0];
            Ok(u64::from(p.thread.tid))
        }
        nr::SET_ROBUST_LIST => {
            if a[1] != 24 {
                Err(Errno::EINVAL)
            } else {
                p.robust_list = a[0];
                p.thread.set_robust_list(a[0]);
                Ok(0)
            }
        }
        nr::CLOCK_GETTIME => clock_gettime(p, a[0], a[1]),
        229 => clock_getres(p, a[0], a[1]),
        227 => clock_settime(p, a[0], a[1]),
        164 => settimeofday(p, a[0], a[1]),
        nr::PRLIMIT64 => prlimit64(p, a[0], a[1], a[2], a[3]),
        nr::GETRANDOM => getrandom(p, a[0], a[1], a[2]),
        nr::RSEQ => Err(Errno::ENOSYS),
        41 => net::socket(p, a[0], a[1], a[2]),
        42 => net::connect(p, a[0], a[1], a[2]),
        43 => net::accept(p, a[0], a[1], a[2], 0),
        288 => net::accept(p, a[0], a[1], a[2], a[3]),
        48 => net::shutdown(p, a[0], a[1]),
        50 => net::listen(p, a[0], a[1]),
        44 => net::sendto(p, a[0], a[1], a[2], a[3], a[4], a[5]),
        45 => net::recvfrom(p, a[0], a[1], a[2], a[3], a[4], a[5]),
        46 => net::sendmsg(p, a[0], a[1], a[2]),
        47 => net::recvmsg(p, a[0], a[1], a[2]),
        49 => net::bind(p, a[0], a[1], a[2]),
        51 => net::getsockname(p, a[0], a[1], a[2]),
        52 => net::getpeername(p, a[0], a[1], a[2]),
        53 => net::socketpair(p, a[0], a[1], a[2], a[3]),
        54 => net::setsockopt(p, a[0], a[1], a[2], a[3], a[4]),
        55 => net::getsockopt(p, a[0], a[1], a[2], a[3], a[4]),
        other => {
            if REPORTED.lock().insert(other) {
                let exe = p.info.exe.lock().clone();
                let name = names::name(other).unwrap_or("unnamed");
                log::warn!("pid {} ({exe}): system call {other} ({name}) is not implemented: ENOSYS", p.info.pid);
            }
            Err(Errno::ENOSYS)
        }
    };
    Action::Return(match result {
        Ok(value) => value,
        Err(errno) => errno.as_return(),
    })
}
