//! Identity, time, limits and randomness.

use super::IO_CHUNK;
use crate::errno::{Errno, SysResult};
use crate::process::Process;
use alloc::string::String;
use alloc::sync::Arc;
#[allow(unused_imports)]
use alloc::vec;
#[allow(unused_imports)]
use framekernel::arch::user::UserContext;

pub(super) fn uname(p: &mut Process, buf: u64) -> SysResult {
    let host = hostname();
    let host_len = host.iter().position(|&b| b == 0).unwrap_or(64);
    let domain = *DOMAINNAME.lock();
    let domain_len = domain.iter().position(|&b| b == 0).unwrap_or(64);
    let fields: [&[u8]; 6] = [
        b"Linux",
        host.get(..host_len).unwrap_or(b""),
        super::RELEASE.as_bytes(),
        super::VERSION.as_bytes(),
        b"x86_64",
        domain.get(..domain_len).unwrap_or(b""),
    ];
    let mut out = [0u8; 65 * 6];
    for (i, field) in fields.iter().enumerate() {
        if let Some(dst) = out.get_mut(i * 65..i * 65 + field.len()) {
            dst.copy_from_slice(field);
        }
    }
    p.memory.write(buf, &out)?;
    Ok(0)
}


const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;
const ARCH_GET_CPUID: u64 = 0x1011;
const ARCH_SET_CPUID: u64 = 0x1012;

/// Linux's `TASK_SIZE_MAX`: the user half less its last page.
const TASK_SIZE_MAX: u64 = (1 << 47) - 4096;

/// A value a program may give as its FS or GS base (`arch_prctl`, or
/// `clone`'s `CLONE_SETTLS`): below `TASK_SIZE_MAX`, as on Linux (EPERM
/// otherwise).
pub(super) fn segment_base_ok(addr: u64) -> Result<(), Errno> {
    if addr < TASK_SIZE_MAX { Ok(()) } else { Err(Errno::EPERM) }
}

pub(super) fn arch_prctl(p: &mut Process, context: &mut UserContext, code: u64, addr: u64) -> SysResult {
    match code {
        ARCH_SET_FS | ARCH_SET_GS => {
            segment_base_ok(addr)?;
            if code == ARCH_SET_FS {
                context.regs.fs_base = addr;
            } else {
                context.regs.gs_base = addr;
            }
            Ok(0)
        }
        ARCH_GET_FS => p.memory.write(addr, &context.regs.fs_base.to_le_bytes()).map(|()| 0),
        ARCH_GET_GS => p.memory.write(addr, &context.regs.gs_base.to_le_bytes()).map(|()| 0),
        // CPUID faulting is not offered (no `cpuid_fault` in /proc/cpuinfo):
        // CPUID always works, and turning that off is ENODEV (Linux).
        ARCH_GET_CPUID => Ok(1),
        ARCH_SET_CPUID => Err(Errno::ENODEV),
        _ => Err(Errno::EINVAL),
    }
}

/// `clock_settime`: only CLOCK_REALTIME can be set (EINVAL for the
/// others, as Linux), by root (EPERM).
pub(super) fn clock_settime(p: &mut Process, clock: u64, ts: u64) -> SysResult {
    let ns = super::proc::read_timespec(p, ts)?;
    if clock != 0 {
        return Err(Errno::EINVAL);
    }
    if !p.info.credentials().capable(crate::process::cap::SYS_TIME) {
        return Err(Errno::EPERM);
    }
    framekernel::time::set_realtime_ns(ns);
    Ok(0)
}

/// `settimeofday(tv, tz)`: the time zone is ignored (obsolete); the time,
/// when given, as `clock_settime(CLOCK_REALTIME)` with microseconds.
pub(super) fn settimeofday(p: &mut Process, tv: u64, _tz: u64) -> SysResult {
    if tv == 0 {
        return Ok(0);
    }
    let mut raw = [0u8; 16];
    p.memory.read(tv, &mut raw)?;
    let sec = i64::from_le_bytes(raw[..8].try_into().unwrap_or([0; 8]));
    let usec = i64::from_le_bytes(raw[8..].try_into().unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(Errno::EINVAL);
    }
    if !p.info.credentials().capable(crate::process::cap::SYS_TIME) {
        return Err(Errno::EPERM);
    }
    framekernel::time::set_realtime_ns((sec as u64).saturating_mul(1_000_000_000).saturating_add(usec as u64 * 1000));
    Ok(0)
}

/// The time of `clock` in ns: the wall clock (REALTIME and its coarse and
/// alarm forms, TAI), boot time (MONOTONIC, RAW, COARSE, BOOTTIME and its
/// alarm form), CPU time of the process or thread, or a CPU-time clock of
/// another process or thread (the negative ids of `clock_getcpuclockid`).
fn clock_ns(p: &Process, clock: u64) -> Result<u64, Errno> {
    // The clocks programs read first; the CPU-time ids after them.
    match clock {
        0 | 5 | 8 | 11 => Ok(framekernel::time::realtime_ns()),
        1 | 4 | 6 | 7 | 9 => Ok(framekernel::time::now_ns()),
        2 => Ok(p.info.cpu_ns().1),
        3 => Ok(p.thread.cpu_ns().1),
        _ if (clock as i32) < 0 => cpu_clock_ns(p, clock as i32),
        _ => Err(Errno::EINVAL),
    }
}

/// A CPU-time clock id: ~(pid << 3) | (per-thread ? 4 : 0) | type; type 3
/// is invalid.
fn cpu_clock_ns(p: &Process, id: i32) -> Result<u64, Errno> {
    if id & 3 == 3 {
        return Err(Errno::EINVAL);
    }
    let who = (!id >> 3) as u32;
    let (user, total) = if id & 4 != 0 {
        // A thread's clock: only of the caller's own process (Linux).
        let thread = if who == 0 { p.thread.clone() } else { crate::process::lookup_thread(who).filter(|_| p.info.has_thread(who)).ok_or(Errno::EINVAL)? };
        thread.cpu_ns()
    } else {
        let process = if who == 0 { p.info.clone() } else { crate::process::lookup(who).filter(|q| q.outcome().is_none()).ok_or(Errno::EINVAL)? };
        process.cpu_ns()
    };
    Ok(if id & 3 == 1 { user } else { total }) // CPUCLOCK_VIRT: user time only
}

pub(super) fn clock_gettime(p: &mut Process, clock: u64, out: u64) -> SysResult {
    // The clocks programs read most, without `clock_ns`'s jump table (an
    // indirect jump: a lookup for an emulator) and its saved registers.
    let ns = match clock {
        1 => framekernel::time::now_ns(),
        0 => framekernel::time::realtime_ns(),
        _ => clock_ns(p, clock)?,
    };
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    p.memory.write(out, &ts)?;
    Ok(0)
}

/// `clock_getres`: the timer tick (1 ms) for every clock. The clocks read
/// to the nanosecond, but sleeps and timers end on the tick, and that is
/// the precision a program can count on (the clock must exist; a null
/// pointer asks nothing).
pub(super) fn clock_getres(p: &mut Process, clock: u64, out: u64) -> SysResult {
    clock_ns(p, clock)?;
    let ns: u64 = 1_000_000_000 / u64::from(framekernel::time::TICK_HZ);
    if out != 0 {
        let mut ts = [0u8; 16];
        ts[8..].copy_from_slice(&ns.to_le_bytes());
        p.memory.write(out, &ts)?;
    }
    Ok(0)
}

const RLIM_INFINITY: u64 = u64::MAX;

pub(super) fn prlimit64(p: &mut Process, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    use crate::process::rlimit;
    let resource = usize::try_from(resource).ok().filter(|&r| r < rlimit::COUNT).ok_or(Errno::EINVAL)?;
    let me = p.info.credentials();
    let target = match pid as i64 {
        0 => p.info.clone(),
        n if n == i64::from(p.info.pid) => p.info.clone(),
        n if n > 0 && n <= i64::from(u32::MAX) => crate::process::lookup(n as u32).filter(|t| t.outcome().is_none()).ok_or(Errno::ESRCH)?,
        _ => return Err(Errno::ESRCH),
    };
    // Another process's limits: the same user and group through and
    // through (Linux's check_prlimit_permission), or root.
    if target.pid != p.info.pid && !me.capable(crate::process::cap::SYS_RESOURCE) {
        let t = target.credentials();
        let same_user = [t.ruid, t.euid, t.suid].iter().all(|&id| id == me.ruid);
        let same_group = [t.rgid, t.egid, t.sgid].iter().all(|&id| id == me.rgid);
        if !same_user || !same_group {
            return Err(Errno::EPERM);
        }
    }
    let new_limit = if new != 0 {
        let mut bytes = [0u8; 16];
        p.memory.read(new, &mut bytes)?;
        let word = |at: usize| u64::from_le_bytes(bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        Some((word(0), word(8)))
    } else {
        None
    };
    let mut limits = target.limits();
    let current = limits.0.get(resource).copied().ok_or(Errno::EINVAL)?;
    if let Some((soft, hard)) = new_limit {
        if soft > hard {
            return Err(Errno::EINVAL);
        }
        if resource == rlimit::NOFILE && hard > crate::files::MAX_FILES as u64 {
            return Err(Errno::EPERM); // above /proc/sys/fs/nr_open
        }
        if hard > current.1 && !me.capable(crate::process::cap::SYS_RESOURCE) {
            return Err(Errno::EPERM);
        }
    }
    if old != 0 {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&current.0.to_le_bytes());
        bytes[8..].copy_from_slice(&current.1.to_le_bytes());
        p.memory.write(old, &bytes)?;
    }
    if let Some(value) = new_limit {
        if let Some(slot) = limits.0.get_mut(resource) {
            *slot = value;
        }
        target.set_limits(limits);
        match resource {
            rlimit::NOFILE => {
                let limit = usize::try_from(value.0).unwrap_or(usize::MAX);
                if target.pid == p.info.pid {
                    p.files.set_limit(limit);
                } else if let Some(files) = target.files() {
                    files.set_limit(limit);
                }
            }
            rlimit::CPU => crate::timers::watch_cpu_limit(target.pid, value != (RLIM_INFINITY, RLIM_INFINITY)),
            _ => {}
        }
    }
    Ok(0)
}

pub(super) fn getrandom(p: &mut Process, buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !0x7 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = (len as usize).min(IO_CHUNK);
    let mut bytes = vec![0u8; len];
    framekernel::random::fill(&mut bytes);
    p.memory.write(buf, &bytes)?;
    Ok(len as u64)
}


pub(super) fn gettimeofday(p: &mut Process, tv: u64, tz: u64) -> SysResult {
    if tv != 0 {
        let ns = framekernel::time::realtime_ns();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        out[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        p.memory.write(tv, &out)?;
    }
    if tz != 0 {
        p.memory.write(tz, &[0u8; 8])?;
    }
    Ok(0)
}

pub(super) fn getrlimit(p: &mut Process, resource: u64, out: u64) -> SysResult {
    prlimit64(p, 0, resource, 0, out)
}

const PR_SET_PDEATHSIG: u64 = 1;
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const PR_GET_KEEPCAPS: u64 = 7;
const PR_SET_KEEPCAPS: u64 = 8;
const PR_GET_TIMING: u64 = 13;
const PR_SET_TIMING: u64 = 14;
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
const PR_GET_SECCOMP: u64 = 21;
const PR_SET_SECCOMP: u64 = 22;
const PR_CAPBSET_READ: u64 = 23;
const PR_CAPBSET_DROP: u64 = 24;
const PR_GET_SECUREBITS: u64 = 27;
const PR_SET_SECUREBITS: u64 = 28;
const PR_SET_TIMERSLACK: u64 = 29;
const PR_GET_TIMERSLACK: u64 = 30;
const PR_SET_CHILD_SUBREAPER: u64 = 36;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_NO_NEW_PRIVS: u64 = 39;
const PR_SET_THP_DISABLE: u64 = 41;
const PR_GET_THP_DISABLE: u64 = 42;
/// The highest capability number (`CAP_CHECKPOINT_RESTORE`).
const CAP_LAST_CAP: u64 = 40;

/// `prctl(option, arg2, arg3, arg4, arg5)`: the options programs and LTP
/// use, with Linux's argument checks. Options this kernel does not have
/// (seccomp filters, TSC trapping, memory-map edits, ...) are EINVAL.
pub(super) fn prctl(p: &mut Process, option: u64, args: [u64; 4]) -> SysResult {
    let [arg2, arg3, arg4, arg5] = args;
    let write_int = |p: &mut Process, value: u32| p.memory.write(arg2, &value.to_le_bytes()).map(|()| 0);
    match option {
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            p.memory.read(arg2, &mut name)?;
            let len = name.iter().position(|&b| b == 0).unwrap_or(15).min(15);
            p.name = [0; 16];
            if let (Some(dst), Some(src)) = (p.name.get_mut(..len), name.get(..len)) {
                dst.copy_from_slice(src);
            }
            p.thread.set_comm(p.name);
            Ok(0)
        }
        PR_GET_NAME => {
            let name = p.name;
            p.memory.write(arg2, &name)?;
            Ok(0)
        }
        PR_SET_PDEATHSIG => {
            if arg2 > crate::signal::NSIG as u64 {
                return Err(Errno::EINVAL);
            }
            p.info.prctl.lock().pdeathsig = arg2 as u8;
            Ok(0)
        }
        PR_GET_PDEATHSIG => {
            let sig = p.info.prctl.lock().pdeathsig;
            write_int(p, u32::from(sig))
        }
        PR_GET_DUMPABLE => Ok(u64::from(p.info.prctl.lock().dumpable)),
        PR_SET_DUMPABLE => {
            if arg2 > 1 {
                return Err(Errno::EINVAL);
            }
            p.info.prctl.lock().dumpable = arg2 == 1;
            Ok(0)
        }
        PR_GET_KEEPCAPS => Ok(u64::from(p.info.credentials().caps.keep)),
        PR_SET_KEEPCAPS => {
            if arg2 > 1 {
                return Err(Errno::EINVAL);
            }
            p.info.prctl.lock().keepcaps = arg2 == 1;
            p.info.change_credentials(|mut c| {
                c.caps.keep = arg2 == 1;
                Ok(c)
            })?;
            Ok(0)
        }
        PR_GET_TIMING => Ok(0), // PR_TIMING_STATISTICAL
        PR_SET_TIMING => if arg2 == 0 { Ok(0) } else { Err(Errno::EINVAL) },
        PR_GET_SECCOMP => Ok(u64::from(p.thread.seccomp_mode.load(core::sync::atomic::Ordering::SeqCst))),
        PR_SET_SECCOMP => match arg2 {
            1 => crate::seccomp::seccomp(p, 0, 0, 0),
            2 => crate::seccomp::seccomp(p, 1, 0, arg3),
            _ => Err(Errno::EINVAL),
        },
        PR_CAPBSET_READ => {
            if arg2 > CAP_LAST_CAP {
                return Err(Errno::EINVAL);
            }
            Ok((p.info.credentials().caps.bounding >> arg2) & 1)
        }
        PR_CAPBSET_DROP => {
            if !p.info.credentials().capable(crate::process::cap::SETPCAP) {
                return Err(Errno::EPERM);
            }
            if arg2 > CAP_LAST_CAP {
                return Err(Errno::EINVAL);
            }
            p.info.change_credentials(|mut c| {
                c.caps.bounding &= !(1u64 << arg2);
                Ok(c)
            })?;
            Ok(0)
        }
        PR_CAP_AMBIENT => cap_ambient(p, arg2, arg3, arg4, arg5),
        PR_GET_SECUREBITS => Ok(0),
        PR_SET_SECUREBITS => if p.info.credentials().capable(crate::process::cap::SETPCAP) && arg2 == 0 { Ok(0) } else { Err(Errno::EPERM) },
        PR_SET_TIMERSLACK => {
            // 0 restores the default; the value is an unsigned long.
            let mut state = p.info.prctl.lock();
            state.timerslack_ns = if arg2 == 0 { state.default_timerslack_ns } else { arg2 };
            Ok(0)
        }
        PR_GET_TIMERSLACK => Ok(p.info.prctl.lock().timerslack_ns),
        PR_SET_CHILD_SUBREAPER => {
            p.info.prctl.lock().subreaper = arg2 != 0;
            Ok(0)
        }
        PR_GET_CHILD_SUBREAPER => {
            let on = p.info.prctl.lock().subreaper;
            write_int(p, u32::from(on))
        }
        PR_SET_NO_NEW_PRIVS => {
            if arg2 != 1 || arg3 != 0 || arg4 != 0 || arg5 != 0 {
                return Err(Errno::EINVAL);
            }
            p.info.prctl.lock().no_new_privs = true;
            Ok(0)
        }
        PR_GET_NO_NEW_PRIVS => {
            if arg2 != 0 || arg3 != 0 || arg4 != 0 || arg5 != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(u64::from(p.info.prctl.lock().no_new_privs))
        }
        PR_SET_THP_DISABLE => {
            if arg3 != 0 || arg4 != 0 || arg5 != 0 {
                return Err(Errno::EINVAL);
            }
            p.info.prctl.lock().thp_disable = arg2 != 0;
            Ok(0)
        }
        PR_GET_THP_DISABLE => {
            if arg2 != 0 || arg3 != 0 || arg4 != 0 || arg5 != 0 {
                return Err(Errno::EINVAL);
            }
            Ok(u64::from(p.info.prctl.lock().thp_disable))
        }
        _ => Err(Errno::EINVAL),
    }
}

const MS_RDONLY: u64 = 1;
const MS_REMOUNT: u64 = 32;
const MS_BIND: u64 = 4096;

/// Parses a tmpfs `size=` option: bytes, with k/m/g suffixes or `N%` of RAM.
fn tmpfs_size(options: &str, ram: u64) -> Result<Option<u64>, Errno> {
    let Some(value) = options.split(',').find_map(|o| o.strip_prefix("size=")) else { return Ok(None) };
    let (digits, unit) = value.split_at(value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len()));
    let number: u64 = digits.parse().map_err(|_| Errno::EINVAL)?;
    let bytes = match unit {
        "" => number,
        "k" | "K" => number.saturating_mul(1 << 10),
        "m" | "M" => number.saturating_mul(1 << 20),
        "g" | "G" => number.saturating_mul(1 << 30),
        "%" => ram.saturating_mul(number) / 100,
        _ => return Err(Errno::EINVAL),
    };
    Ok(Some(bytes))
}

pub(super) fn mount(p: &mut Process, source: u64, target: u64, fstype: u64, flags: u64, data: u64) -> SysResult {
    if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) {
        return Err(Errno::EPERM); // CAP_SYS_ADMIN
    }
    let target = super::fs::path_arg(p, target)?;
    let vfs = crate::fs::vfs()?;
    let at = vfs.resolve_in(&p.fs.root(), &p.fs.cwd(), &target, true, &super::fs::who(p))?;
    if flags & MS_REMOUNT != 0 {
        // Options of an existing mount: read-only or writable again.
        return vfs.set_read_only(&at, flags & MS_RDONLY != 0).map(|()| 0).map_err(Errno::from);
    }
    if flags & MS_BIND != 0 {
        return Err(Errno::EINVAL);
    }
    let kind = String::from_utf8(p.memory.read_c_string(fstype, 64)?).map_err(|_| Errno::ENODEV)?;
    let root = match kind.as_str() {
        "tmpfs" if crate::cellfs::memory_served() => {
            // Served by the tmpfs cell, with its own options (size=,
            // nr_inodes=, mode=, uid=, gid=: EINVAL for others).
            let options = if data == 0 {
                String::new()
            } else {
                String::from_utf8(p.memory.read_c_string(data, 4096)?).map_err(|_| Errno::EINVAL)?
            };
            crate::cellfs::mount_memory("tmpfs", &options)?
        }
        "devtmpfs" | "sysfs" if crate::cellfs::memory_served() => {
            // Served by the tmpfs cell, filled by the kernel.
            let root = crate::cellfs::mount_memory(&kind, "mode=755")?;
            let filled = if kind == "sysfs" { crate::block::fill_sysfs(&root) } else { crate::fs::fill_devtmpfs(&root) };
            if let Err(e) = filled {
                log::warn!("{kind}: entries incomplete: {e:?}");
            }
            root
        }
        "tmpfs" | "ramfs" | "devtmpfs" => {
            let ram = framekernel::mm::frame_stats().total * 4096;
            let options = if data == 0 {
                String::new()
            } else {
                String::from_utf8(p.memory.read_c_string(data, 4096)?).map_err(|_| Errno::EINVAL)?
            };
            let limit = tmpfs_size(&options, ram)?.unwrap_or(ram / 4);
            // The root directory's mode: `mode=` (octal), else 1777 as Linux.
            let mode = match options.split(',').find_map(|o| o.strip_prefix("mode=")) {
                Some(octal) => u32::from_str_radix(octal, 8).ok().filter(|m| *m <= 0o7777).ok_or(Errno::EINVAL)?,
                None => 0o1777,
            };
            let root = tessera_vfs::tmpfs::TmpFs::new_root(limit, Some(crate::fs::now));
            root.set_perm(mode);
            root
        }
        "proc" => crate::procfs::new_root()?,
        // Without the tmpfs cell: a kernel tmpfs, filled the same way.
        "sysfs" => {
            let root = tessera_vfs::tmpfs::TmpFs::new_root(1 << 20, Some(crate::fs::now));
            if let Err(e) = crate::block::fill_sysfs(&root) {
                log::warn!("sysfs: block entries incomplete: {e:?}");
            }
            root
        }
        "devpts" => crate::pty::devpts(),
        "cgroup" | "cgroup2" => tessera_vfs::tmpfs::TmpFs::new_root(0, Some(crate::fs::now)),
        _ if crate::cellfs::type_names().contains(&kind) => {
            // A disk file system served by a cell: the source is a block
            // device node.
            let source = super::fs::path_arg(p, source)?;
            let node = vfs.resolve_in(&p.fs.root(), &p.fs.cwd(), &source, true, &super::fs::who(p))?;
            let meta = node.node().metadata();
            if meta.kind != tessera_vfs::FileType::BlockDevice {
                return Err(Errno::ENOTBLK);
            }
            let (_, disk) = crate::block::disk(meta.rdev).ok_or(Errno::ENXIO)?;
            let (root, _) = crate::cellfs::mount(&source, disk, meta.rdev, Some(&kind), flags & MS_RDONLY != 0)?;
            if let Err(e) = vfs.mount_from(&at, root, &kind, &source) {
                if let Some(fs) = crate::cellfs::mounted(meta.rdev) {
                    let _ = fs.unmount();
                }
                return Err(e.into());
            }
            if flags & MS_RDONLY != 0 {
                let mounted = vfs.resolve_in(&p.fs.root(), &p.fs.cwd(), &target, true, &super::fs::who(p))?;
                vfs.set_read_only(&mounted, true)?;
            }
            return Ok(0);
        }
        _ => return Err(Errno::ENODEV),
    };
    vfs.mount(&at, root, &kind)?;
    if flags & MS_RDONLY != 0 {
        let mounted = vfs.resolve_in(&p.fs.root(), &p.fs.cwd(), &target, true, &super::fs::who(p))?;
        vfs.set_read_only(&mounted, true)?;
    }
    Ok(0)
}

pub(super) fn umount2(p: &mut Process, target: u64, flags: u64) -> SysResult {
    if flags & !0xf != 0 {
        return Err(Errno::EINVAL);
    }
    if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    let target = super::fs::path_arg(p, target)?;
    let vfs = crate::fs::vfs()?;
    let at = vfs.resolve_in(&p.fs.root(), &p.fs.cwd(), &target, true, &super::fs::who(p))?;
    let path = at.path();
    // A cell-served file system: refused while its files are in use
    // (unless MNT_DETACH), then marked clean and written back.
    let cell_type = vfs.mount_table().into_iter().rev().find(|m| m.1 == path).is_some_and(|m| crate::cellfs::may_serve(&m.2));
    let cell = if cell_type { vfs.mount_root(&path).and_then(|root| crate::cellfs::mounted_root(&root)) } else { None };
    drop(at);
    if let Some(fs) = &cell {
        const MNT_DETACH: u64 = 2;
        crate::pagecache::release_unmapped();
        if flags & MNT_DETACH == 0 && fs.busy() {
            return Err(Errno::EBUSY);
        }
    }
    vfs.unmount(&path)?;
    if let Some(fs) = cell {
        fs.unmount().map_err(Errno::from)?;
    }
    Ok(0)
}

const LINUX_REBOOT_MAGIC1: u64 = 0xfee1_dead;
const RB_AUTOBOOT: u64 = 0x0123_4567;
const RB_HALT_SYSTEM: u64 = 0xcdef_0123;
const RB_POWER_OFF: u64 = 0x4321_fedc;
const RB_ENABLE_CAD: u64 = 0x89ab_cdef;
const RB_DISABLE_CAD: u64 = 0;

pub(super) fn reboot(p: &mut Process, magic1: u64, _magic2: u64, cmd: u64) -> SysResult {
    if !p.info.credentials().capable(crate::process::cap::SYS_BOOT) {
        return Err(Errno::EPERM); // CAP_SYS_BOOT, checked first
    }
    if magic1 as u32 as u64 != LINUX_REBOOT_MAGIC1 {
        return Err(Errno::EINVAL);
    }
    match cmd as u32 as u64 {
        RB_ENABLE_CAD | RB_DISABLE_CAD => Ok(0),
        RB_POWER_OFF | RB_HALT_SYSTEM | RB_AUTOBOOT => {
            log::info!("system going down (reboot command {cmd:#x})");
            // As Linux's `kernel_restart_prepare`/`kernel_power_off`
            // (through the file systems' shutdown): nothing written is lost.
            crate::block::sync_all();
            // QEMU runs with -no-reboot: both power off and reboot end it.
            framekernel::exit(framekernel::ExitCode::Success)
        }
        _ => Err(Errno::EINVAL),
    }
}

static HOSTNAME: framekernel::sync::SpinLock<[u8; 65]> = framekernel::sync::SpinLock::new(*b"tessera\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");

/// The host name (`uname` nodename).
pub fn hostname() -> [u8; 65] {
    *HOSTNAME.lock()
}

/// The NIS domain name (`uname` domainname, `setdomainname`).
static DOMAINNAME: framekernel::sync::SpinLock<[u8; 65]> = framekernel::sync::SpinLock::new({
    let mut name = [0u8; 65];
    let none = *b"(none)";
    let mut i = 0;
    while i < none.len() {
        name[i] = none[i];
        i += 1;
    }
    name
});

/// `sethostname` (`domain` false) and `setdomainname`: root only, at most
/// 64 bytes.
pub(super) fn set_uts_name(p: &mut Process, name: u64, len: u64, domain: bool) -> SysResult {
    if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) {
        return Err(Errno::EPERM);
    }
    if len > 64 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 65];
    p.memory.read(name, bytes.get_mut(..len as usize).unwrap_or(&mut []))?;
    store_uts(domain, bytes);
    Ok(0)
}

fn store_uts(domain: bool, bytes: [u8; 65]) {
    *(if domain { &DOMAINNAME } else { &HOSTNAME }).lock() = bytes;
}

/// Sets the host name (`domain` false) or NIS domain name from text, as
/// writing `/proc/sys/kernel/{hostname,domainname}` does (at most 64
/// bytes).
pub fn set_uts_text(domain: bool, text: &str) -> Result<(), Errno> {
    if text.len() > 64 {
        return Err(Errno::EINVAL);
    }
    let mut bytes = [0u8; 65];
    bytes.get_mut(..text.len()).ok_or(Errno::EINVAL)?.copy_from_slice(text.as_bytes());
    store_uts(domain, bytes);
    Ok(())
}

/// The NIS domain name, as text (`/proc/sys/kernel/domainname`).
pub fn domainname_string() -> alloc::string::String {
    let name = *DOMAINNAME.lock();
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    alloc::string::String::from_utf8_lossy(name.get(..len).unwrap_or(&[])).into_owned()
}

pub(super) fn sysinfo(p: &mut Process, info: u64) -> SysResult {
    let frames = framekernel::mm::frame_stats();
    let mut b = [0u8; 112];
    let uptime = framekernel::time::now_ns() / 1_000_000_000;
    let fields: [(usize, u64); 6] = [
        (0, uptime),
        (32, frames.total * 4096),  // totalram
        (40, frames.free * 4096),   // freeram
        (48, 0),                    // sharedram
        (56, 0),                    // bufferram
        (64, 0),                    // totalswap
    ];
    for (at, value) in fields {
        if let Some(dst) = b.get_mut(at..at + 8) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
    }
    let procs = crate::process::all().len() as u16;
    if let Some(dst) = b.get_mut(80..82) {
        dst.copy_from_slice(&procs.to_le_bytes());
    }
    if let Some(dst) = b.get_mut(104..108) {
        dst.copy_from_slice(&1u32.to_le_bytes()); // mem_unit
    }
    p.memory.write(info, &b)?;
    Ok(0)
}

/// Nanoseconds as clock ticks of 100 Hz (`clock_t`).
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

/// `times(buf)`: user and system time of the process and of the children
/// it waited for, in clock ticks; returns ticks since boot.
pub(super) fn times(p: &mut Process, buf: u64) -> SysResult {
    if buf != 0 {
        let (user, total) = p.info.cpu_ns();
        let (cuser, ctotal) = p.info.children_cpu_ns();
        let mut b = [0u8; 32];
        for (i, ns) in [user, total.saturating_sub(user), cuser, ctotal.saturating_sub(cuser)].into_iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&ticks(ns).to_le_bytes());
        }
        p.memory.write(buf, &b)?;
    }
    Ok(ticks(framekernel::time::now_ns()))
}

/// A `struct rusage` (144 bytes): user and system time, and the largest
/// resident size in KiB.
pub(super) fn rusage_bytes(user_ns: u64, total_ns: u64, max_rss_kib: u64) -> [u8; 144] {
    let mut b = [0u8; 144];
    let system = total_ns.saturating_sub(user_ns);
    for (at, ns) in [(0, user_ns), (16, system)] {
        let us = ns / 1000;
        b[at..at + 8].copy_from_slice(&(us / 1_000_000).to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&(us % 1_000_000).to_le_bytes());
    }
    b[32..40].copy_from_slice(&max_rss_kib.to_le_bytes());
    b
}

/// `getrusage(who)`: RUSAGE_SELF (0), RUSAGE_CHILDREN (-1), RUSAGE_THREAD (1).
pub(super) fn getrusage(p: &mut Process, who: u64, usage: u64) -> SysResult {
    let rss_kib = p.info.maxrss_kib(&p.memory);
    let bytes = match who as i32 {
        0 => {
            let (user, total) = p.info.cpu_ns();
            rusage_bytes(user, total, rss_kib)
        }
        -1 => {
            let (user, total) = p.info.children_cpu_ns();
            rusage_bytes(user, total, p.info.children_maxrss_kib())
        }
        1 => {
            let (user, total) = p.thread.cpu_ns();
            rusage_bytes(user, total, rss_kib)
        }
        _ => return Err(Errno::EINVAL),
    };
    p.memory.write(usage, &bytes)?;
    Ok(0)
}

const SYSLOG_ACTION_READ_ALL: u64 = 3;
const SYSLOG_ACTION_READ_CLEAR: u64 = 4;
const SYSLOG_ACTION_SIZE_UNREAD: u64 = 9;
const SYSLOG_ACTION_SIZE_BUFFER: u64 = 10;

/// `syslog(action, buf, len)` over the kernel log ring (`dmesg`). As
/// Linux with `dmesg_restrict` 0: anyone reads the whole ring and its
/// size; everything else needs root (EPERM). Reads do not block.
pub(super) fn syslog(p: &mut Process, action: u64, buf: u64, len: u64) -> SysResult {
    let len = len as i32; // an int
    if !matches!(action, SYSLOG_ACTION_READ_ALL | SYSLOG_ACTION_SIZE_BUFFER) && !p.info.credentials().capable(crate::process::cap::SYSLOG) {
        return Err(Errno::EPERM);
    }
    match action {
        0 | 1 | 5 | 6 | 7 => Ok(0), // close, open, clear, console off/on
        8 => if (1..=8).contains(&len) { Ok(0) } else { Err(Errno::EINVAL) }, // console level
        2 | SYSLOG_ACTION_READ_ALL | SYSLOG_ACTION_READ_CLEAR => {
            if buf == 0 || len < 0 {
                return Err(Errno::EINVAL);
            }
            let mut data = vec![0u8; (len as usize).min(framekernel::console::log_len())];
            let n = framekernel::console::read_log(&mut data);
            p.memory.write(buf, data.get(..n).unwrap_or(&[]))?;
            Ok(n as u64)
        }
        SYSLOG_ACTION_SIZE_UNREAD | SYSLOG_ACTION_SIZE_BUFFER => Ok(framekernel::console::log_len().max(1) as u64),
        _ => Err(Errno::EINVAL),
    }
}

const PRIO_PROCESS: u64 = 0;
const PRIO_PGRP: u64 = 1;
const PRIO_USER: u64 = 2;

/// The processes `getpriority`/`setpriority` name: (which, who), who 0 the
/// caller (its process, group or real user).
fn priority_targets(p: &Process, which: u64, who: u64) -> Result<alloc::vec::Vec<alloc::sync::Arc<crate::process::ProcessInfo>>, Errno> {
    let who = who as u32;
    let live = crate::process::all().into_iter().filter(|t| t.outcome().is_none());
    let targets: alloc::vec::Vec<_> = match which {
        PRIO_PROCESS => {
            let pid = if who == 0 { p.info.pid } else { who };
            live.filter(|t| t.pid == pid).collect()
        }
        PRIO_PGRP => {
            let pgid = if who == 0 { p.info.pgid() } else { who };
            live.filter(|t| t.pgid() == pgid).collect()
        }
        PRIO_USER => {
            let uid = if who == 0 { p.info.credentials().ruid } else { who };
            live.filter(|t| t.credentials().ruid == uid).collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    Ok(targets)
}

/// `getpriority`: 20 - the lowest nice value of the targets (the raw call
/// returns 1..=40; the C library turns it back into a nice value).
pub(super) fn getpriority(p: &mut Process, which: u64, who: u64) -> SysResult {
    let targets = priority_targets(p, which, who)?;
    let nice = targets.iter().map(|t| t.nice.load(core::sync::atomic::Ordering::Relaxed)).min().unwrap_or(0);
    Ok((20 - nice) as u64)
}

/// `setpriority`: the nice value, clamped to -20..=19; lowering it needs
/// root (EACCES), changing another user's process too (EPERM).
pub(super) fn setpriority(p: &mut Process, which: u64, who: u64, nice: u64) -> SysResult {
    let targets = priority_targets(p, which, who)?;
    let nice = (nice as i32).clamp(-20, 19);
    let me = p.info.credentials();
    for target in targets {
        let them = target.credentials();
        if !me.capable(crate::process::cap::SYS_NICE) && me.euid != them.euid && me.euid != them.ruid {
            return Err(Errno::EPERM);
        }
        if nice < target.nice.load(core::sync::atomic::Ordering::Relaxed) && !me.capable(crate::process::cap::SYS_NICE) {
            return Err(Errno::EACCES);
        }
        target.nice.store(nice, core::sync::atomic::Ordering::Relaxed);
    }
    Ok(0)
}

const CAP_V1: u32 = 0x1998_0330;
const CAP_V2: u32 = 0x2007_1026;
const CAP_V3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: u64 = 47;

/// `prctl(PR_CAP_AMBIENT, op, cap)`: IS_SET 1, RAISE 2 (the capability
/// must be permitted and inheritable), LOWER 3, CLEAR_ALL 4.
fn cap_ambient(p: &Process, op: u64, number: u64, arg4: u64, arg5: u64) -> SysResult {
    if arg4 != 0 || arg5 != 0 || (op == 4 && number != 0) {
        return Err(Errno::EINVAL);
    }
    if op != 4 && number > CAP_LAST_CAP {
        return Err(Errno::EINVAL);
    }
    let bit = if op == 4 { 0 } else { 1u64 << number };
    match op {
        1 => Ok(u64::from(p.info.credentials().caps.ambient & bit != 0)),
        2 => p
            .info
            .change_credentials(|mut c| {
                if c.caps.permitted & bit == 0 || c.caps.inheritable & bit == 0 {
                    return Err(Errno::EPERM);
                }
                c.caps.ambient |= bit;
                Ok(c)
            })
            .map(|()| 0),
        3 | 4 => p
            .info
            .change_credentials(|mut c| {
                c.caps.ambient = if op == 4 { 0 } else { c.caps.ambient & !bit };
                Ok(c)
            })
            .map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

/// The header of `capget`/`capset`: EINVAL (with the preferred version
/// written back) for an unknown version; the number of data words.
fn cap_header(p: &Process, header: u64) -> Result<(usize, u32), Errno> {
    let mut raw = [0u8; 8];
    p.memory.read(header, &mut raw)?;
    let version = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let pid = i32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]) as u32;
    match version {
        CAP_V1 => Ok((1, pid)),
        CAP_V2 | CAP_V3 => Ok((2, pid)),
        _ => {
            p.memory.write(header, &CAP_V3.to_le_bytes())?;
            Err(Errno::EINVAL)
        }
    }
}

/// `capget`: the effective, permitted and inheritable sets of the caller
/// (pid 0 or its own) or of another process (ESRCH if none; EINVAL for a
/// negative pid).
pub(super) fn capget(p: &mut Process, header: u64, data: u64) -> SysResult {
    let (words, pid) = cap_header(p, header)?;
    if (pid as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    let target = if pid == 0 { p.info.clone() } else { crate::process::lookup(pid).ok_or(Errno::ESRCH)? };
    if data == 0 {
        return Ok(0);
    }
    let caps = target.credentials().caps;
    let mut raw = alloc::vec::Vec::new();
    for word in 0..words {
        let part = |set: u64| ((set >> (32 * word)) as u32).to_le_bytes();
        raw.extend_from_slice(&part(caps.effective));
        raw.extend_from_slice(&part(caps.permitted));
        raw.extend_from_slice(&part(caps.inheritable));
    }
    p.memory.write(data, &raw)?;
    Ok(0)
}

/// `capset`: only the caller's own sets, within Linux's limits (EPERM;
/// see `Credentials::set_caps`).
pub(super) fn capset(p: &mut Process, header: u64, data: u64) -> SysResult {
    let (words, pid) = cap_header(p, header)?;
    if pid != 0 && pid != p.info.pid {
        return Err(Errno::EPERM);
    }
    let mut raw = alloc::vec![0u8; words * 12];
    p.memory.read(data, &mut raw)?;
    let (mut effective, mut permitted, mut inheritable) = (0u64, 0u64, 0u64);
    for (i, chunk) in raw.chunks_exact(12).enumerate() {
        let word = |at: usize| u64::from(u32::from_le_bytes(chunk.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4])));
        effective |= word(0) << (32 * i);
        permitted |= word(4) << (32 * i);
        inheritable |= word(8) << (32 * i);
    }
    // Bits past the last capability are dropped, as Linux masks them.
    let all = crate::process::ALL_CAPS;
    p.info.change_credentials(|c| c.set_caps(effective & all, permitted & all, inheritable & all))?;
    Ok(0)
}

/// The file-system types `mount` knows, in `/proc/filesystems` order
/// (also what `sysfs(2)` numbers).
pub const FILESYSTEMS: [&str; 4] = ["tmpfs", "proc", "sysfs", "devpts"];

/// `sysfs(option, ...)`: 1 a type's index by name, 2 the name at an
/// index, 3 the number of types.
pub(super) fn sysfs(p: &mut Process, option: u64, arg1: u64, arg2: u64) -> SysResult {
    match option {
        1 => {
            let name = p.memory.read_c_string(arg1, 256)?;
            FILESYSTEMS.iter().position(|fs| fs.as_bytes() == name.as_slice()).map(|i| i as u64).ok_or(Errno::EINVAL)
        }
        2 => {
            let name = FILESYSTEMS.get(usize::try_from(arg1 as u32).unwrap_or(usize::MAX)).ok_or(Errno::EINVAL)?;
            let mut bytes = alloc::vec::Vec::from(name.as_bytes());
            bytes.push(0);
            p.memory.write(arg2, &bytes).map(|()| 0)
        }
        3 => Ok(FILESYSTEMS.len() as u64),
        _ => Err(Errno::EINVAL),
    }
}

/// `vhangup`: the calling terminal is hung up for root; others EPERM.
/// (The console has no hang-up state to change.)
pub(super) fn vhangup(p: &mut Process) -> SysResult {
    if p.info.credentials().capable(crate::process::cap::SYS_ADMIN) { Ok(0) } else { Err(Errno::EPERM) }
}

/// `syncfs(fd)`: writes back the file system of `fd` (every disk here).
pub(super) fn syncfs(p: &mut Process, fd: u64) -> SysResult {
    p.files.get(fd)?;
    crate::block::sync_all();
    Ok(0)
}

/// `sync_file_range(fd, offset, nbytes, flags)`: Linux's checks (flags
/// WAIT_BEFORE|WRITE|WAIT_AFTER, no negative range, not a pipe), then the
/// file's data is made durable like `fdatasync`.
pub(super) fn sync_file_range(p: &mut Process, fd: u64, offset: u64, nbytes: u64, flags: u64) -> SysResult {
    if flags & !7 != 0 || (offset as i64) < 0 || (nbytes as i64) < 0 || offset.checked_add(nbytes).is_none_or(|e| (e as i64) < 0) {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    let kind = file.stat().kind;
    if !matches!(kind, tessera_vfs::FileType::Regular | tessera_vfs::FileType::Directory | tessera_vfs::FileType::BlockDevice | tessera_vfs::FileType::Symlink) {
        return Err(Errno::ESPIPE);
    }
    file.sync()
}

const KCMP_FILE: u64 = 0;
const KCMP_VM: u64 = 1;
const KCMP_FILES: u64 = 2;
const KCMP_FS: u64 = 3;
const KCMP_SIGHAND: u64 = 4;
const KCMP_IO: u64 = 5;
const KCMP_SYSVSEM: u64 = 6;
const KCMP_EPOLL_TFD: u64 = 7;

/// `kcmp(pid1, pid2, type, idx1, idx2)`: whether two processes share a
/// kernel object: 0 the same, 1 or 2 an order between different ones.
/// The caller must be root or own both (Linux's ptrace read check).
pub(super) fn kcmp(p: &mut Process, pid1: u64, pid2: u64, kind: u64, idx1: u64, idx2: u64) -> SysResult {
    let find = |pid: u64| crate::process::lookup(pid as u32).filter(|t| t.outcome().is_none() && (pid as i64) > 0).ok_or(Errno::ESRCH);
    let (a, b) = (find(pid1)?, find(pid2)?);
    if ![&a, &b].iter().all(|target| target.may_be_traced_by(&p.info)) {
        return Err(Errno::EPERM);
    }
    let (x, y) = match kind {
        KCMP_FILE => {
            let file = |info: &crate::process::ProcessInfo, fd: u64| -> Result<usize, Errno> {
                let files = info.files().ok_or(Errno::EBADF)?;
                Ok(Arc::as_ptr(&files.get(fd)?) as *const () as usize)
            };
            (file(&a, idx1)?, file(&b, idx2)?)
        }
        KCMP_VM => (a.memory().map_or(0, |m| m.identity()), b.memory().map_or(0, |m| m.identity())),
        KCMP_FILES => (a.files().map_or(0, |f| f.identity()), b.files().map_or(0, |f| f.identity())),
        KCMP_FS => (a.fs().map_or(0, |f| f.identity()), b.fs().map_or(0, |f| f.identity())),
        // Shared only by the threads of one process here.
        KCMP_SIGHAND | KCMP_IO | KCMP_SYSVSEM => (a.pid as usize, b.pid as usize),
        KCMP_EPOLL_TFD => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::EINVAL),
    };
    Ok(match x.cmp(&y) {
        core::cmp::Ordering::Equal => 0,
        core::cmp::Ordering::Less => 1,
        core::cmp::Ordering::Greater => 2,
    })
}

/// `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`: copies
/// between regular files through the kernel. Linux's checks: flags 0,
/// both regular files (EISDIR for a directory, EINVAL otherwise), the
/// right access modes (EBADF), O_APPEND output (EBADF), no overlap within
/// one file (EINVAL).
pub(super) fn copy_file_range(p: &mut Process, fd_in: u64, off_in: u64, fd_out: u64, off_out: u64, len: u64, flags: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let input = p.files.get(fd_in)?;
    let output = p.files.get(fd_out)?;
    if input.status_flags() & 3 == 1 || output.status_flags() & 3 == 0 || output.status_flags() & crate::fs::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    let (kin, kout) = (input.stat().kind, output.stat().kind);
    if kin == tessera_vfs::FileType::Directory || kout == tessera_vfs::FileType::Directory {
        return Err(Errno::EISDIR);
    }
    if kin != tessera_vfs::FileType::Regular || kout != tessera_vfs::FileType::Regular {
        return Err(Errno::EINVAL);
    }
    let read_offset = |p: &Process, at: u64, file: &Arc<dyn crate::files::File>| -> Result<u64, Errno> {
        if at == 0 {
            return file.seek(0, crate::files::SEEK_CUR);
        }
        let mut word = [0u8; 8];
        p.memory.read(at, &mut word)?;
        let value = i64::from_le_bytes(word);
        if value < 0 { Err(Errno::EINVAL) } else { Ok(value as u64) }
    };
    let (mut from, mut to) = (read_offset(p, off_in, &input)?, read_offset(p, off_out, &output)?);
    if from.checked_add(len).is_none_or(|e| (e as i64) < 0) || to.checked_add(len).is_none_or(|e| (e as i64) < 0) {
        return Err(Errno::EOVERFLOW);
    }
    let same = input.stat().ino == output.stat().ino && input.stat().dev == output.stat().dev;
    if same && from < to.saturating_add(len) && to < from.saturating_add(len) {
        return Err(Errno::EINVAL);
    }
    let len = super::io::fsize_room(p, &output, Some(to), len)?;
    let mut done = 0u64;
    let mut chunk = vec![0u8; IO_CHUNK];
    while done < len {
        let want = ((len - done) as usize).min(IO_CHUNK);
        let buf = chunk.get_mut(..want).unwrap_or(&mut []);
        let got = input.read_at(from, buf)? as usize;
        if got == 0 {
            break;
        }
        let wrote = output.write_at(to, buf.get(..got).unwrap_or(&[]))?;
        done += wrote;
        from += wrote;
        to += wrote;
        if (wrote as usize) < got {
            break;
        }
    }
    // The offsets move: the pointed-to ones, else the files' own.
    if off_in != 0 {
        p.memory.write(off_in, &from.to_le_bytes())?;
    } else {
        input.seek(from as i64, crate::files::SEEK_SET)?;
    }
    if off_out != 0 {
        p.memory.write(off_out, &to.to_le_bytes())?;
    } else {
        output.seek(to as i64, crate::files::SEEK_SET)?;
    }
    Ok(done)
}

/// `get_robust_list(pid, head, len)`: the robust-futex list head a thread
/// registered (the caller's, or another's for root or its owner).
pub(super) fn get_robust_list(p: &mut Process, pid: u64, head: u64, len: u64) -> SysResult {
    let tid = pid as i32;
    if tid < 0 {
        return Err(Errno::ESRCH);
    }
    let address = if tid == 0 || tid as u32 == p.thread.tid {
        p.robust_list
    } else {
        let thread = crate::process::lookup_thread(tid as u32).ok_or(Errno::ESRCH)?;
        let owner = crate::process::all().into_iter().find(|q| q.has_thread(thread.tid)).ok_or(Errno::ESRCH)?;
        // Linux's ptrace-read rule.
        if !owner.may_be_traced_by(&p.info) {
            return Err(Errno::EPERM);
        }
        thread.robust_list()
    };
    p.memory.write(head, &address.to_le_bytes())?;
    p.memory.write(len, &24u64.to_le_bytes())?;
    Ok(0)
}

const MEMBARRIER_CMD_QUERY: u64 = 0;
const MEMBARRIER_CMD_GLOBAL: u64 = 1;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: u64 = 2;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: u64 = 4;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: u64 = 8;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: u64 = 16;
/// The commands this kernel answers (the `SYNC_CORE` and `RSEQ` ones are
/// not offered: QUERY leaves them out, as a kernel without them does).
const MEMBARRIER_SUPPORTED: u64 = MEMBARRIER_CMD_GLOBAL
    | MEMBARRIER_CMD_GLOBAL_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED
    | MEMBARRIER_CMD_PRIVATE_EXPEDITED
    | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED;

/// `membarrier(cmd, flags, cpu_id)`: a barrier returns once every other
/// processor (GLOBAL, GLOBAL_EXPEDITED) or every other processor running
/// this process's memory (PRIVATE_EXPEDITED, which needs its
/// registration first: EPERM) has taken an interrupt, as Linux's IPIs.
pub(super) fn membarrier(p: &mut Process, cmd: u64, flags: u64, _cpu: u64) -> SysResult {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        MEMBARRIER_CMD_QUERY => Ok(MEMBARRIER_SUPPORTED),
        MEMBARRIER_CMD_GLOBAL | MEMBARRIER_CMD_GLOBAL_EXPEDITED => {
            framekernel::cpu::barrier_others();
            Ok(0)
        }
        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED => {
            p.memory.lock().membarrier_registered |= cmd;
            Ok(0)
        }
        MEMBARRIER_CMD_PRIVATE_EXPEDITED => {
            let space = p.memory.lock();
            if space.membarrier_registered & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED == 0 {
                return Err(Errno::EPERM);
            }
            space.space().barrier_others();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

/// `readahead(fd, offset, count)`: a hint (every file here is in memory);
/// EBADF for a bad descriptor, EINVAL for one that is not a file.
pub(super) fn readahead(p: &mut Process, fd: u64) -> SysResult {
    let file = p.files.get(fd)?;
    if file.status_flags() & 3 == 1 {
        return Err(Errno::EBADF);
    }
    if file.stat().kind != tessera_vfs::FileType::Regular {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

const IOPRIO_WHO_PROCESS: u64 = 1;
const IOPRIO_WHO_PGRP: u64 = 2;
const IOPRIO_WHO_USER: u64 = 3;

/// The processes an `ioprio_*` call names (`who` 0: the caller's process,
/// group or user).
fn ioprio_targets(p: &Process, which: u64, who: u64) -> Result<alloc::vec::Vec<Arc<crate::process::ProcessInfo>>, Errno> {
    let who = who as u32;
    let live = crate::process::all().into_iter().filter(|q| q.outcome().is_none());
    let targets: alloc::vec::Vec<_> = match which {
        IOPRIO_WHO_PROCESS => {
            let pid = if who == 0 { p.info.pid } else { who };
            live.filter(|q| q.pid == pid || q.has_thread(pid)).collect()
        }
        IOPRIO_WHO_PGRP => {
            let group = if who == 0 { p.info.pgid() } else { who };
            live.filter(|q| q.pgid() == group).collect()
        }
        IOPRIO_WHO_USER => {
            let uid = if who == 0 { p.info.credentials().ruid } else { who };
            live.filter(|q| q.credentials().ruid == uid).collect()
        }
        _ => return Err(Errno::EINVAL),
    };
    if targets.is_empty() { Err(Errno::ESRCH) } else { Ok(targets) }
}

/// `ioprio_set(which, who, ioprio)`: class NONE (level 0), RT (root), BE
/// or IDLE with levels 0..=7, Linux's checks; kept per process.
pub(super) fn ioprio_set(p: &mut Process, which: u64, who: u64, ioprio: u64) -> SysResult {
    let value = ioprio as u32;
    let (class, level) = (value >> 13, value & 0x1fff);
    match class {
        0 if level != 0 => return Err(Errno::EINVAL),
        1 if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) => return Err(Errno::EPERM),
        1..=3 if level > 7 => return Err(Errno::EINVAL),
        0..=3 => {}
        _ => return Err(Errno::EINVAL),
    }
    let me = p.info.credentials();
    for target in ioprio_targets(p, which, who)? {
        let them = target.credentials();
        if !me.capable(crate::process::cap::SYS_ADMIN) && me.euid != them.euid && me.euid != them.ruid {
            return Err(Errno::EPERM);
        }
        target.prctl.lock().ioprio = value as u16;
    }
    Ok(0)
}

/// `ioprio_get(which, who)`: the highest priority among the processes named.
pub(super) fn ioprio_get(p: &mut Process, which: u64, who: u64) -> SysResult {
    let targets = ioprio_targets(p, which, who)?;
    // Lower class, then lower level, is higher priority (NONE counts as
    // best effort at level 4).
    let rank = |v: u16| if v >> 13 == 0 { (2, 4) } else { (v >> 13, v & 0x1fff) };
    let best = targets.iter().map(|t| t.prctl.lock().ioprio).min_by_key(|&v| rank(v)).unwrap_or(crate::process::IOPRIO_DEFAULT);
    Ok(u64::from(best))
}
