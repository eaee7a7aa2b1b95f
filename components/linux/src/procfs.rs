//! `/proc`: files generated when read, from the process table and the
//! kernel's figures. `/proc/self` names the process that asks.

use crate::process::{self, ProcessInfo};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use tessera_vfs::{DirEntry, FileType, FsError, FsStats, Metadata, Node, NodeRef, Timespec};

/// What `statfs` reports for procfs: Linux's `PROC_SUPER_MAGIC`, no storage.
const PROC_STATS: FsStats = FsStats { magic: 0x9fa0, capacity: 0, used: 0, nodes: 0, nodes_used: 0, block_size: 0, reserved: 0 };

/// Device number of procfs.
const PROC_DEV: u64 = 0x50;

static CURRENT: AtomicU32 = AtomicU32::new(0);

/// Records which process is making system calls now (`/proc/self`).
pub fn set_current(pid: u32) {
    CURRENT.store(pid, Ordering::Relaxed);
}

/// A new procfs root.
pub fn new_root() -> NodeRef {
    Arc::new(Dir(DirKind::Root))
}

#[derive(Clone, Copy)]
enum DirKind {
    Root,
    /// `/proc/sys` or a directory under it, by its path below `sys`.
    Sys(&'static str),
    Pid(u32),
    Fds(u32),
    /// `/proc/[pid]/fdinfo`.
    FdInfos(u32),
    /// `/proc/[pid]/task`.
    Tasks(u32),
    /// `/proc/[pid]/task/[tid]`.
    Task(u32, u32),
    /// `/proc/sysvipc`.
    SysvIpc,
}

#[derive(Clone, Copy)]
enum FileKind {
    Meminfo,
    Uptime,
    Version,
    Mounts,
    Cpuinfo,
    Loadavg,
    Filesystems,
    Partitions,
    Stat,
    Cmdline,
    Cells,
    PidStat(u32),
    PidStatus(u32),
    PidMaps(u32),
    /// `/proc/[pid]/smaps`.
    PidSmaps(u32),
    PidCmdline(u32),
    PidComm(u32),
    PidTimerslack(u32),
    /// `/proc/[pid]/coredump_filter`.
    PidCoredumpFilter(u32),
    /// A `/proc/sys` value, by index in [`SYS_FILES`].
    Sys(usize),
    /// `/proc/[pid]/task/[tid]/comm`.
    TaskComm(u32, u32),
    /// `/proc/[pid]/task/[tid]/stat`: the thread's own state letter.
    TaskStat(u32, u32),
    /// `/proc/sysvipc/{msg,sem,shm}`.
    SysvIpc(&'static str),
    /// `/proc/[pid]/fdinfo/[fd]`.
    FdInfo(u32, u32),
}

/// `/proc/sys` (read-only): the limits and facts programs and test suites
/// read, each this kernel's real value.
type SysValue = fn() -> String;
const SYS_FILES: [(&str, SysValue); 39] = [
    ("kernel/pid_max", || format!("{}\n", process::PID_MAX.load(core::sync::atomic::Ordering::Relaxed))),
    ("kernel/ns_last_pid", || format!("{}\n", process::last_pid())),
    ("kernel/threads-max", || format!("{}\n", process::MAX_THREADS)),
    ("kernel/tainted", || "0\n".to_string()),
    // Core files are written as `core` in the working directory.
    ("kernel/core_pattern", || crate::coredump::pattern() + "\n"),
    ("kernel/core_uses_pid", || "0\n".to_string()),
    ("kernel/random/entropy_avail", || "256\n".to_string()),
    ("kernel/random/poolsize", || "256\n".to_string()),
    ("fs/aio-max-nr", || format!("{}\n", crate::syscall::aio::AIO_MAX_NR)),
    ("fs/aio-nr", || format!("{}\n", crate::syscall::aio::AIO_NR.load(core::sync::atomic::Ordering::Relaxed))),
    ("kernel/ostype", || "Linux\n".to_string()),
    ("kernel/osrelease", || format!("{}\n", crate::syscall::RELEASE)),
    ("kernel/version", || format!("{}\n", crate::syscall::VERSION)),
    ("kernel/hostname", || crate::syscall::hostname_string() + "\n"),
    ("kernel/ngroups_max", || format!("{}\n", process::MAX_GROUPS)),
    ("fs/pipe-max-size", || format!("{}\n", crate::pipe::PIPE_MAX_SIZE.load(core::sync::atomic::Ordering::Relaxed))),
    ("fs/inotify/max_queued_events", || format!("{}\n", crate::inotify::MAX_QUEUED_EVENTS)),
    ("fs/inotify/max_user_instances", || format!("{}\n", crate::inotify::MAX_USER_INSTANCES)),
    ("fs/inotify/max_user_watches", || format!("{}\n", crate::inotify::MAX_USER_WATCHES)),
    ("fs/mqueue/queues_max", || format!("{}\n", crate::mqueue::QUEUES_MAX.load(core::sync::atomic::Ordering::Relaxed))),
    ("fs/mqueue/msg_max", || format!("{}\n", crate::mqueue::MSG_MAX)),
    ("fs/mqueue/msgsize_max", || format!("{}\n", crate::mqueue::MSGSIZE_MAX)),
    ("fs/mqueue/msg_default", || format!("{}\n", crate::mqueue::MSG_MAX)),
    ("fs/mqueue/msgsize_default", || format!("{}\n", crate::mqueue::MSGSIZE_MAX)),
    ("kernel/msg_next_id", || format!("{}\n", crate::sysv::QUEUES.lock().next_id.map_or(-1, i64::from))),
    ("kernel/sem_next_id", || format!("{}\n", crate::sysv::SEMS.lock().next_id.map_or(-1, i64::from))),
    ("kernel/shm_next_id", || format!("{}\n", crate::sysv::SHMS.lock().next_id.map_or(-1, i64::from))),
    ("kernel/shmmax", || format!("{}\n", crate::sysv::shm_max())),
    ("kernel/shmall", || format!("{}\n", crate::sysv::SHMMAX / 4096)),
    ("kernel/shmmni", || format!("{}\n", crate::sysv::SHMS.lock().limit)),
    ("kernel/msgmax", || format!("{}\n", crate::sysv::MSGMAX)),
    ("kernel/msgmnb", || format!("{}\n", crate::sysv::MSGMNB)),
    ("kernel/msgmni", || format!("{}\n", crate::sysv::QUEUES.lock().limit)),
    ("kernel/sem", || format!("{}\t{}\t{}\t{}\n", crate::sysv::SEMMSL, crate::sysv::SEMMNS, crate::sysv::SEMOPM, crate::sysv::MAX_IDS)),
    ("kernel/domainname", || crate::syscall::domainname_string() + "\n"),
    ("kernel/sched_rr_timeslice_ms", || format!("{}\n", crate::syscall::RR_TIMESLICE_MS)),
    ("fs/nr_open", || format!("{}\n", crate::files::MAX_FILES)),
    ("fs/file-max", || format!("{}\n", crate::files::MAX_FILES * process::MAX_PROCESSES)),
    ("vm/overcommit_memory", || "0\n".to_string()),
];

#[derive(Clone, Copy)]
enum LinkKind {
    SelfPid,
    Exe(u32),
    Cwd(u32),
    Fd(u32, u32),
}

struct Dir(DirKind);
struct File(FileKind);
struct Link(LinkKind);

const ROOT_FILES: [(&str, FileKind); 11] = [
    ("meminfo", FileKind::Meminfo),
    ("uptime", FileKind::Uptime),
    ("version", FileKind::Version),
    ("mounts", FileKind::Mounts),
    ("cpuinfo", FileKind::Cpuinfo),
    ("loadavg", FileKind::Loadavg),
    ("filesystems", FileKind::Filesystems),
    ("partitions", FileKind::Partitions),
    ("stat", FileKind::Stat),
    ("cmdline", FileKind::Cmdline),
    ("cells", FileKind::Cells),
];

/// The process a `/proc/PID` directory stands for (`pidfd_send_signal`
/// takes such a descriptor as a process descriptor, as Linux).
/// `/proc/self`'s inode number.
const SELF_INO: u64 = 9;
/// Inode numbers of the magic links: a kind tag and the ids.
const LINK_EXE: u64 = 1 << 60;
const LINK_CWD: u64 = 2 << 60;
const LINK_FD: u64 = 3 << 60;

/// The open file a `/proc/PID/fd/N` link stands for (what following it
/// reaches on Linux, even for a file with no name).
pub fn file_of_link(node: &tessera_vfs::NodeRef) -> Option<alloc::sync::Arc<dyn crate::files::File>> {
    let meta = node.metadata();
    if meta.dev != PROC_DEV || meta.kind != FileType::Symlink || meta.ino >> 60 != LINK_FD >> 60 {
        return None;
    }
    let (pid, fd) = (((meta.ino >> 32) & 0x0fff_ffff) as u32, meta.ino as u32);
    traceable(pid).ok()?.files()?.get(u64::from(fd)).ok()
}

/// True for the "magic" links of procfs (`/proc/PID/exe`, `cwd`,
/// `fd/N`), which name an object rather than a path
/// (`RESOLVE_NO_MAGICLINKS` refuses them).
pub fn is_magic_link(node: &tessera_vfs::NodeRef) -> bool {
    let meta = node.metadata();
    meta.dev == PROC_DEV && meta.kind == FileType::Symlink && meta.ino != SELF_INO
}

pub fn process_of_dir(node: &tessera_vfs::NodeRef) -> Option<u32> {
    let meta = node.metadata();
    let pid_dir = meta.dev == PROC_DEV && meta.kind == FileType::Directory && meta.ino >= 256 && meta.ino & 0xff == 0;
    pid_dir.then_some((meta.ino >> 8) as u32)
}

fn meta(ino: u64, kind: FileType, perm: u32, size: u64) -> Metadata {
    let now = crate::fs::now();
    Metadata {
        dev: PROC_DEV,
        ino,
        kind,
        perm,
        nlink: 1,
        uid: 0,
        gid: 0,
        size,
        blocks: None,
        rdev: 0,
        atime: now,
        mtime: now,
        ctime: now,
    }
}

fn process(pid: u32) -> Result<Arc<ProcessInfo>, FsError> {
    process::lookup(pid).ok_or(FsError::NotFound)
}

/// Descriptor `name` of process `pid`, if it is open and the caller may
/// see it (`/proc/PID/fd/N`, `fdinfo/N`).
fn open_fd(pid: u32, name: &str) -> Result<u32, FsError> {
    let fd: u32 = name.parse().map_err(|_| FsError::NotFound)?;
    let files = traceable(pid)?.files().ok_or(FsError::NotFound)?;
    files.get(u64::from(fd)).map_err(|_| FsError::NotFound)?;
    Ok(fd)
}

/// The process `pid`, if the caller may look into it as ptrace would
/// (its descriptors, their details, its memory map): Linux's
/// `ptrace_may_access` for /proc/PID/fd, fdinfo, smaps. EACCES otherwise.
fn traceable(pid: u32) -> Result<Arc<ProcessInfo>, FsError> {
    let target = process(pid)?;
    match process::current() {
        Some(me) if !target.may_be_traced_by(&me) => Err(FsError::Access),
        _ => Ok(target),
    }
}

fn comm(info: &ProcessInfo) -> String {
    let name = info.comm();
    if !name.is_empty() {
        return name;
    }
    let exe = info.exe.lock().clone();
    exe.rsplit('/').next().unwrap_or("").chars().take(15).collect()
}

/// The process state as `/proc/[pid]/status` names it; its first letter
/// is the state in `/proc/[pid]/stat`.
fn state(info: &ProcessInfo) -> &'static str {
    if info.outcome().is_some() {
        "Z (zombie)"
    } else if info.job().stopped.is_some() {
        "T (stopped)"
    } else if info.is_runnable() {
        "R (running)"
    } else {
        "S (sleeping)"
    }
}

fn pid_stat(info: &ProcessInfo, thread: Option<u32>) -> String {
    let mut state = state(info).chars().next().unwrap_or('S');
    // A thread's own line: sleeping or running on its own.
    if let Some(tid) = thread
        && (state == 'R' || state == 'S')
    {
        let runnable = crate::process::lookup_thread(tid).is_some_and(|t| t.is_runnable());
        state = if runnable { 'R' } else { 'S' };
    }
    let ticks = |ns: u64| ns / 10_000_000;
    let (user, total) = info.cpu_ns();
    let (cuser, ctotal) = info.children_cpu_ns();
    let (utime, stime, cutime, cstime) = (ticks(user), ticks(total.saturating_sub(user)), ticks(cuser), ticks(ctotal.saturating_sub(cuser)));
    let start = ticks(info.start_ns);
    let (vsize, rss) = info.memory().map_or((0, 0), |m| {
        let space = m.lock();
        (space.virtual_size(), space.resident_pages())
    });
    // The console terminal (ttyS0, device 4:64) if it is this session's.
    let tty = crate::files::console();
    let (tty_nr, tpgid) =
        if tty.session() != 0 && tty.session() == info.sid() { (4u32 << 8 | 64, i64::from(tty.foreground())) } else { (0, -1) };
    format!(
        "{} ({}) {state} {} {} {} {tty_nr} {tpgid} 4194560 0 0 0 0 {utime} {stime} {cutime} {cstime} {} {} {} 0 {start} {vsize} {rss} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
        thread.unwrap_or(info.pid),
        comm(info),
        info.ppid(),
        info.pgid(),
        info.sid(),
        20 + info.nice.load(core::sync::atomic::Ordering::Relaxed),
        info.nice.load(core::sync::atomic::Ordering::Relaxed),
        info.thread_count()
    )
}

fn generate(kind: FileKind) -> Result<String, FsError> {
    let frames = framekernel::mm::frame_stats();
    let uptime_ns = framekernel::time::now_ns();
    Ok(match kind {
        FileKind::Meminfo => {
            let (total, free) = (frames.total * 4, frames.free * 4);
            let shmem = crate::memstore::bytes_in_use() / 1024;
            format!(
                "MemTotal:       {total:>8} kB\nMemFree:        {free:>8} kB\nMemAvailable:   {free:>8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:          {shmem:>8} kB\n"
            )
        }
        FileKind::Uptime => {
            let centis = uptime_ns / 10_000_000;
            format!("{}.{:02} {}.{:02}\n", centis / 100, centis % 100, centis / 100, centis % 100)
        }
        FileKind::Version => "Linux version 6.1.0-tessera (Tessera framekernel) #1\n".to_string(),
        FileKind::Mounts => {
            let mut out = String::from("rootfs / tmpfs rw 0 0\n");
            for (source, path, fstype, read_only) in crate::fs::vfs().map(|v| v.mount_table()).unwrap_or_default() {
                let mode = if read_only { "ro" } else { "rw" };
                out.push_str(&format!("{source} {path} {fstype} {mode} 0 0\n"));
            }
            out
        }
        FileKind::Cpuinfo => "processor\t: 0\nvendor_id\t: QEMU\nmodel name\t: x86_64 (Tessera)\ncpu cores\t: 1\nflags\t\t: fpu sse sse2\n\n".to_string(),
        FileKind::Loadavg => {
            let procs = process::all().len();
            format!("0.00 0.00 0.00 1/{procs} {}\n", procs)
        }
        FileKind::Cells => tessera_live_update::registry::proc_cells(),
        FileKind::Sys(i) => SYS_FILES.get(i).map(|(_, value)| value()).unwrap_or_default(),
        FileKind::TaskComm(pid, tid) => {
            let info = process(pid)?;
            let thread = info.thread_list().into_iter().find(|t| t.tid == tid).ok_or(FsError::NotFound)?;
            format!("{}\n", thread.comm())
        }
        FileKind::Partitions => {
            let mut out = String::from("major minor  #blocks  name\n\n");
            for (name, rdev, sectors) in crate::block::disks() {
                out.push_str(&format!("{:4}  {:7} {:10} {name}\n", rdev >> 8, rdev & 0xff, sectors / 2));
            }
            out
        }
        FileKind::Filesystems => {
            let mut out: String = crate::syscall::FILESYSTEMS.iter().map(|fs| format!("nodev\t{fs}\n")).collect();
            for name in crate::cellfs::type_names() {
                out.push_str(&format!("\t{name}\n"));
            }
            out
        }
        FileKind::Stat => {
            // One CPU: programs' user time, the idle task's time, and the
            // rest (the kernel) as system time; clock ticks of 100 Hz.
            // (Read from a system call: no program and no idle task is
            // running now, so each figure is complete and only grows.)
            let (user_ns, idle_ns) = (process::user_ns_total(), tessera_sched::idle_ns());
            let system = uptime_ns.saturating_sub(user_ns + idle_ns) / 10_000_000;
            let (user, idle) = (user_ns / 10_000_000, idle_ns / 10_000_000);
            format!(
                "cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\ncpu0 {user} 0 {system} {idle} 0 0 0 0 0 0\nbtime {}\nprocesses {}\nprocs_running 1\nprocs_blocked 0\n",
                framekernel::time::realtime_ns().saturating_sub(uptime_ns) / 1_000_000_000,
                process::all().len()
            )
        }
        FileKind::Cmdline => "tessera\n".to_string(),
        FileKind::PidStat(pid) => pid_stat(&*process(pid)?, None),
        FileKind::TaskStat(pid, tid) => pid_stat(&*process(pid)?, Some(tid)),
        FileKind::PidStatus(pid) => {
            let info = process(pid)?;
            let state = state(&info);
            let c = info.credentials();
            // Real, effective, saved and file-system ids; supplementary groups.
            let groups: alloc::vec::Vec<alloc::string::String> = c.groups.iter().map(|g| format!("{g}")).collect();
            // Memory lines while the process has memory (not for zombies).
            let memory = info.memory().map_or(String::new(), |m| {
                let space = m.lock();
                format!(
                    "VmSize:\t{} kB\nVmLck:\t{} kB\nVmRSS:\t{} kB\nVmSwap:\t0 kB\n",
                    space.virtual_size() / 1024,
                    space.locked_size() / 1024,
                    space.resident_pages() * 4
                )
            });
            format!(
                "Name:\t{}\nState:\t{state}\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{}\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nGroups:\t{}\n{memory}Threads:\t{}\nCapInh:\t{:016x}\nCapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}\nNoNewPrivs:\t{}\nSeccomp:\t{}\n",
                comm(&info),
                info.ppid(),
                c.ruid,
                c.euid,
                c.suid,
                c.fsuid,
                c.rgid,
                c.egid,
                c.sgid,
                c.fsgid,
                groups.join(" "),
                info.thread_count(),
                c.caps.inheritable,
                c.caps.permitted,
                c.caps.effective,
                c.caps.bounding,
                c.caps.ambient,
                u8::from(info.prctl.lock().no_new_privs),
                info.thread_list().first().map_or(0, |t| t.seccomp_mode.load(core::sync::atomic::Ordering::Relaxed))
            )
        }
        FileKind::PidMaps(pid) => traceable(pid)?.maps().unwrap_or_default(),
        FileKind::PidSmaps(pid) => traceable(pid)?.smaps().unwrap_or_default(),
        FileKind::PidCmdline(pid) => {
            let bytes = process(pid)?.cmdline.lock().clone();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        FileKind::PidComm(pid) => format!("{}\n", comm(&*process(pid)?)),
        FileKind::PidTimerslack(pid) => format!("{}\n", process(pid)?.prctl.lock().timerslack_ns),
        FileKind::PidCoredumpFilter(pid) => format!("{:08x}\n", process(pid)?.prctl.lock().coredump_filter),
        FileKind::SysvIpc(kind) => crate::syscall::ipc::proc_listing(kind),
        FileKind::FdInfo(pid, fd) => {
            // Linux's layout: position, flags in octal (with O_CLOEXEC),
            // mount id, inode, then what the file kind adds.
            let files = traceable(pid)?.files().ok_or(FsError::NotFound)?;
            let file = files.get(u64::from(fd)).map_err(|_| FsError::NotFound)?;
            let cloexec = if files.cloexec(u64::from(fd)).unwrap_or(false) { 0o2000000 } else { 0 };
            let pos = file.seek(0, 1).unwrap_or(0);
            let flags = file.status_flags() | cloexec;
            format!("pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{}\nino:\t{}\n{}", 1, file.stat().ino, file.fdinfo())
        }
    })
}

fn not_permitted<T>() -> Result<T, FsError> {
    Err(FsError::NotPermitted)
}

impl Node for Dir {
    fn fs_stats(&self) -> FsStats {
        PROC_STATS
    }

    fn metadata(&self) -> Metadata {
        let ino = match self.0 {
            DirKind::Root => 1,
            DirKind::Sys(path) => 2 + path.len() as u64,
            DirKind::Pid(pid) => u64::from(pid) << 8,
            DirKind::Fds(pid) => (u64::from(pid) << 8) | 1,
            DirKind::FdInfos(pid) => (u64::from(pid) << 8) | 13,
            DirKind::Tasks(pid) => (u64::from(pid) << 8) | 10,
            DirKind::Task(_, tid) => (u64::from(tid) << 8) | 11,
            DirKind::SysvIpc => 200,
        };
        meta(ino, FileType::Directory, 0o555, 0)
    }
    fn set_perm(&self, _perm: u32) {}
    fn set_owner(&self, _uid: u32, _gid: u32) {}
    fn set_times(&self, _a: Option<Timespec>, _m: Option<Timespec>) {}
    fn set_link_count(&self, _links: u32) {}
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Result<usize, FsError> {
        Err(FsError::IsDir)
    }
    fn write_at(&self, _offset: u64, _data: &[u8]) -> Result<usize, FsError> {
        Err(FsError::IsDir)
    }
    fn truncate(&self, _len: u64) -> Result<(), FsError> {
        Err(FsError::IsDir)
    }
    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        Err(FsError::IsDir)
    }
    fn lookup(&self, name: &str) -> Result<NodeRef, FsError> {
        match self.0 {
            DirKind::Root => {
                if name == "self" {
                    return Ok(Arc::new(Link(LinkKind::SelfPid)));
                }
                if let Some((_, kind)) = ROOT_FILES.iter().find(|(n, _)| *n == name) {
                    return Ok(Arc::new(File(*kind)));
                }
                if name == "sys" {
                    return Ok(Arc::new(Dir(DirKind::Sys(""))));
                }
                if name == "sysvipc" {
                    return Ok(Arc::new(Dir(DirKind::SysvIpc)));
                }
                let pid: u32 = name.parse().map_err(|_| FsError::NotFound)?;
                if process(pid).is_err() {
                    // A thread id: /proc/TID is found (not listed) as Linux
                    // finds it, showing the thread.
                    let owner = process::all().into_iter().find(|q| q.has_thread(pid)).ok_or(FsError::NotFound)?;
                    return Ok(Arc::new(Dir(DirKind::Task(owner.pid, pid))));
                }
                Ok(Arc::new(Dir(DirKind::Pid(pid))))
            }
            DirKind::Sys(dir) => {
                let wanted = if dir.is_empty() { String::from(name) } else { format!("{dir}/{name}") };
                for (i, (path, _)) in SYS_FILES.iter().enumerate() {
                    if *path == wanted {
                        return Ok(Arc::new(File(FileKind::Sys(i))));
                    }
                    if path.starts_with(&wanted) && path.as_bytes().get(wanted.len()) == Some(&b'/') {
                        return Ok(Arc::new(Dir(DirKind::Sys(path.get(..wanted.len()).unwrap_or("")))));
                    }
                }
                Err(FsError::NotFound)
            }
            // What ptrace access guards is refused at lookup (EACCES), as
            // Linux's permission checks on these entries refuse opening.
            DirKind::Pid(pid) if matches!(name, "fd" | "fdinfo" | "maps" | "smaps" | "exe" | "cwd") && traceable(pid).is_err() => Err(FsError::Access),
            DirKind::Pid(pid) => match name {
                "stat" => Ok(Arc::new(File(FileKind::PidStat(pid)))),
                "status" => Ok(Arc::new(File(FileKind::PidStatus(pid)))),
                "maps" => Ok(Arc::new(File(FileKind::PidMaps(pid)))),
                "smaps" => Ok(Arc::new(File(FileKind::PidSmaps(pid)))),
                "cmdline" => Ok(Arc::new(File(FileKind::PidCmdline(pid)))),
                "comm" => Ok(Arc::new(File(FileKind::PidComm(pid)))),
                "timerslack_ns" => Ok(Arc::new(File(FileKind::PidTimerslack(pid)))),
                "coredump_filter" => Ok(Arc::new(File(FileKind::PidCoredumpFilter(pid)))),
                "mounts" => Ok(Arc::new(File(FileKind::Mounts))), // one mount namespace
                "exe" => Ok(Arc::new(Link(LinkKind::Exe(pid)))),
                "cwd" => Ok(Arc::new(Link(LinkKind::Cwd(pid)))),
                "fd" => Ok(Arc::new(Dir(DirKind::Fds(pid)))),
                "fdinfo" => Ok(Arc::new(Dir(DirKind::FdInfos(pid)))),
                "task" => Ok(Arc::new(Dir(DirKind::Tasks(pid)))),
                _ => Err(FsError::NotFound),
            },
            DirKind::Tasks(pid) => {
                let tid: u32 = name.parse().map_err(|_| FsError::NotFound)?;
                if !process(pid)?.has_thread(tid) {
                    return Err(FsError::NotFound);
                }
                Ok(Arc::new(Dir(DirKind::Task(pid, tid))))
            }
            DirKind::Task(pid, tid) => match name {
                "comm" => Ok(Arc::new(File(FileKind::TaskComm(pid, tid)))),
                "stat" => Ok(Arc::new(File(FileKind::TaskStat(pid, tid)))),
                "status" => Ok(Arc::new(File(FileKind::PidStatus(pid)))),
                _ => Err(FsError::NotFound),
            },
            DirKind::Fds(pid) | DirKind::FdInfos(pid) => {
                let fd = open_fd(pid, name)?;
                Ok(if matches!(self.0, DirKind::Fds(_)) { Arc::new(Link(LinkKind::Fd(pid, fd))) } else { Arc::new(File(FileKind::FdInfo(pid, fd))) })
            }
            DirKind::SysvIpc => match name {
                "msg" => Ok(Arc::new(File(FileKind::SysvIpc("msg")))),
                "sem" => Ok(Arc::new(File(FileKind::SysvIpc("sem")))),
                "shm" => Ok(Arc::new(File(FileKind::SysvIpc("shm")))),
                _ => Err(FsError::NotFound),
            },
        }
    }
    fn create(&self, _name: &str, _kind: FileType, _perm: u32, _rdev: u64) -> Result<NodeRef, FsError> {
        not_permitted()
    }
    fn symlink(&self, _name: &str, _target: &str) -> Result<NodeRef, FsError> {
        not_permitted()
    }
    fn attach(&self, _name: &str, _node: NodeRef, _replace: bool) -> Result<(), FsError> {
        not_permitted()
    }
    fn detach(&self, _name: &str) -> Result<NodeRef, FsError> {
        not_permitted()
    }
    fn entries(&self) -> Result<Vec<DirEntry>, FsError> {
        let entry = |name: &str, ino: u64, kind| DirEntry { name: name.to_string(), ino, kind };
        Ok(match self.0 {
            DirKind::Root => {
                let mut out: Vec<DirEntry> =
                    ROOT_FILES.iter().enumerate().map(|(i, (n, _))| entry(n, 10 + i as u64, FileType::Regular)).collect();
                out.push(entry("self", 9, FileType::Symlink));
                out.push(entry("sys", 2, FileType::Directory));
                out.push(entry("sysvipc", 200, FileType::Directory));
                for info in process::all() {
                    out.push(entry(&info.pid.to_string(), u64::from(info.pid) << 8, FileType::Directory));
                }
                out
            }
            DirKind::Sys(dir) => {
                let mut out: Vec<DirEntry> = Vec::new();
                for (i, (path, _)) in SYS_FILES.iter().enumerate() {
                    let rest = if dir.is_empty() { Some(*path) } else { path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) };
                    let Some(rest) = rest else { continue };
                    let (name, kind) = match rest.split_once('/') {
                        Some((sub, _)) => (sub, FileType::Directory),
                        None => (rest, FileType::Regular),
                    };
                    if !out.iter().any(|e| e.name == name) {
                        out.push(entry(name, 0x1000 + i as u64, kind));
                    }
                }
                out
            }
            DirKind::Pid(pid) => {
                let base = u64::from(pid) << 8;
                ["stat", "status", "cmdline", "comm", "maps", "mounts"]
                    .iter()
                    .enumerate()
                    .map(|(i, n)| entry(n, base + 2 + i as u64, FileType::Regular))
                    .chain([entry("exe", base + 8, FileType::Symlink), entry("cwd", base + 9, FileType::Symlink)])
                    .chain([entry("fd", base + 1, FileType::Directory), entry("task", base + 10, FileType::Directory)])
                    .chain([entry("fdinfo", base + 13, FileType::Directory)])
                    .chain([entry("timerslack_ns", base + 12, FileType::Regular), entry("coredump_filter", base + 14, FileType::Regular)])
                    .chain([entry("smaps", base + 15, FileType::Regular)])
                    .collect()
            }
            DirKind::Tasks(pid) => process(pid)?
                .thread_list()
                .iter()
                .map(|t| entry(&t.tid.to_string(), (u64::from(t.tid) << 8) | 11, FileType::Directory))
                .collect(),
            DirKind::Task(_, tid) => {
                let base = u64::from(tid) << 8;
                ["comm", "stat", "status"].iter().enumerate().map(|(i, n)| entry(n, base + 0x20 + i as u64, FileType::Regular)).collect()
            }
            DirKind::Fds(pid) | DirKind::FdInfos(pid) => {
                // fd/N links and fdinfo/N files, one per open descriptor.
                let (tag, kind) = if matches!(self.0, DirKind::Fds(_)) { (0, FileType::Symlink) } else { (0x80000, FileType::Regular) };
                let files = traceable(pid)?.files().ok_or(FsError::NotFound)?;
                (0..crate::files::MAX_FILES as u64)
                    .filter(|&fd| files.get(fd).is_ok())
                    .map(|fd| entry(&fd.to_string(), (u64::from(pid) << 20) | tag | fd, kind))
                    .collect()
            }
            DirKind::SysvIpc => ["msg", "sem", "shm"].iter().enumerate().map(|(i, n)| entry(n, 201 + i as u64, FileType::Regular)).collect(),
        })
    }
}

/// Sets a `/proc/sys` text.
type TextSetter = fn(&str) -> Result<(), crate::errno::Errno>;

/// The `/proc/sys` texts root may change (the trailing newline dropped).
fn text_setter(index: usize) -> Option<TextSetter> {
    match SYS_FILES.get(index)?.0 {
        "kernel/core_pattern" => Some(crate::coredump::set_pattern),
        "kernel/hostname" => Some(|t| crate::syscall::set_uts_text(false, t)),
        "kernel/domainname" => Some(|t| crate::syscall::set_uts_text(true, t)),
        _ => None,
    }
}

/// The `/proc/sys` values root may change: a number in range, stored.
fn sys_setter(index: usize) -> Option<fn(i64) -> Result<(), FsError>> {
    use core::sync::atomic::Ordering::Relaxed;
    match SYS_FILES.get(index)?.0 {
        // Whole pages, rounded up to a power of two as Linux's round_pipe_size.
        "fs/pipe-max-size" => Some(|v| {
            let size = usize::try_from(v).ok().filter(|v| (4096..=1 << 30).contains(v)).ok_or(FsError::Invalid)?;
            crate::pipe::PIPE_MAX_SIZE.store(size.next_power_of_two(), Relaxed);
            Ok(())
        }),
        // The next System V id (-1: the usual order), 0..=INT_MAX.
        "kernel/msg_next_id" => Some(|v| next_id(&crate::sysv::QUEUES, v)),
        "kernel/pid_max" => Some(|v| {
            let max = u32::try_from(v).ok().filter(|m| process::PID_MAX_RANGE.contains(m)).ok_or(FsError::Invalid)?;
            process::PID_MAX.store(max, Relaxed);
            Ok(())
        }),
        "kernel/ns_last_pid" => Some(|v| {
            let last = u32::try_from(v).ok().filter(|&l| l < process::PID_MAX.load(Relaxed)).ok_or(FsError::Invalid)?;
            process::set_last_pid(last);
            Ok(())
        }),
        // How many objects of a kind there may be, 0..=32000.
        "kernel/msgmni" => Some(|v| id_limit(&crate::sysv::QUEUES, v)),
        "kernel/shmmni" => Some(|v| id_limit(&crate::sysv::SHMS, v)),
        // The largest segment, 1 byte ..= 4 GiB here.
        "kernel/shmmax" => Some(|v| {
            let max = u64::try_from(v).ok().filter(|m| (1..=crate::sysv::SHMMAX).contains(m)).ok_or(FsError::Invalid)?;
            crate::sysv::SHM_MAX.store(max, Relaxed);
            Ok(())
        }),
        "kernel/sem_next_id" => Some(|v| next_id(&crate::sysv::SEMS, v)),
        "kernel/shm_next_id" => Some(|v| next_id(&crate::sysv::SHMS, v)),
        "fs/mqueue/queues_max" => Some(|v| {
            let count = usize::try_from(v).ok().filter(|&v| v <= 65536).ok_or(FsError::Invalid)?;
            crate::mqueue::QUEUES_MAX.store(count, Relaxed);
            Ok(())
        }),
        _ => None,
    }
}

fn id_limit<T>(table: &framekernel::sync::SpinLock<crate::sysv::Table<T>>, value: i64) -> Result<(), FsError> {
    table.lock().limit = usize::try_from(value).ok().filter(|&v| v <= crate::sysv::MAX_IDS).ok_or(FsError::Invalid)?;
    Ok(())
}

fn next_id<T>(table: &framekernel::sync::SpinLock<crate::sysv::Table<T>>, value: i64) -> Result<(), FsError> {
    table.lock().next_id = match value {
        -1 => None,
        v => Some(u32::try_from(v).ok().filter(|&v| v <= i32::MAX as u32).ok_or(FsError::Invalid)?),
    };
    Ok(())
}

impl Node for File {
    fn fs_stats(&self) -> FsStats {
        PROC_STATS
    }

    fn metadata(&self) -> Metadata {
        let writable = matches!(self.0, FileKind::Sys(i) if sys_setter(i).is_some() || text_setter(i).is_some())
            || matches!(self.0, FileKind::PidCoredumpFilter(_));
        meta(100, FileType::Regular, if writable { 0o644 } else { 0o444 }, 0)
    }
    fn set_perm(&self, _perm: u32) {}
    fn set_owner(&self, _uid: u32, _gid: u32) {}
    fn set_times(&self, _a: Option<Timespec>, _m: Option<Timespec>) {}
    fn set_link_count(&self, _links: u32) {}
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let text = generate(self.0)?;
        let bytes = text.as_bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), bytes.get(start..start + n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
    fn write_at(&self, _offset: u64, data: &[u8]) -> Result<usize, FsError> {
        if let FileKind::PidCoredumpFilter(pid) = self.0 {
            // Hexadecimal (0x optional), as Linux reads it.
            let text = core::str::from_utf8(data).map_err(|_| FsError::Invalid)?.trim();
            let value = u32::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|_| FsError::Invalid)?;
            process(pid)?.prctl.lock().coredump_filter = value & 0x1ff;
            return Ok(data.len());
        }
        // A tunable takes a decimal number (whitespace around it ignored).
        let FileKind::Sys(index) = self.0 else { return not_permitted() };
        if let Some(set) = text_setter(index) {
            let text = core::str::from_utf8(data).map_err(|_| FsError::Invalid)?;
            set(text.trim_end_matches('\n')).map_err(|_| FsError::Invalid)?;
            return Ok(data.len());
        }
        let set = sys_setter(index).ok_or(FsError::NotPermitted)?;
        let text = core::str::from_utf8(data).map_err(|_| FsError::Invalid)?;
        let value: i64 = text.trim().parse().map_err(|_| FsError::Invalid)?;
        set(value)?;
        Ok(data.len())
    }
    fn truncate(&self, _len: u64) -> Result<(), FsError> {
        // Opening a tunable for writing truncates it: nothing to do.
        match self.0 {
            FileKind::Sys(index) if sys_setter(index).is_some() || text_setter(index).is_some() => Ok(()),
            FileKind::PidCoredumpFilter(_) => Ok(()),
            _ => not_permitted(),
        }
    }
    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        Ok(Arc::new(generate(self.0)?.into_bytes()))
    }
}

impl Node for Link {
    fn fs_stats(&self) -> FsStats {
        PROC_STATS
    }

    fn metadata(&self) -> Metadata {
        // The numbers the directory listings give.
        let ino = match self.0 {
            LinkKind::SelfPid => SELF_INO,
            LinkKind::Exe(pid) => LINK_EXE | u64::from(pid),
            LinkKind::Cwd(pid) => LINK_CWD | u64::from(pid),
            LinkKind::Fd(pid, fd) => LINK_FD | (u64::from(pid) << 32) | u64::from(fd),
        };
        meta(ino, FileType::Symlink, 0o777, 0)
    }
    fn set_perm(&self, _perm: u32) {}
    fn set_owner(&self, _uid: u32, _gid: u32) {}
    fn set_times(&self, _a: Option<Timespec>, _m: Option<Timespec>) {}
    fn set_link_count(&self, _links: u32) {}
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> Result<usize, FsError> {
        Err(FsError::Invalid)
    }
    fn write_at(&self, _offset: u64, _data: &[u8]) -> Result<usize, FsError> {
        Err(FsError::Invalid)
    }
    fn truncate(&self, _len: u64) -> Result<(), FsError> {
        Err(FsError::Invalid)
    }
    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        Err(FsError::Invalid)
    }
    fn read_link(&self) -> Result<String, FsError> {
        match self.0 {
            LinkKind::SelfPid => Ok(CURRENT.load(Ordering::Relaxed).to_string()),
            LinkKind::Exe(pid) => Ok(traceable(pid)?.exe.lock().clone()),
            LinkKind::Cwd(pid) => traceable(pid)?.cwd().ok_or(FsError::NotFound),
            LinkKind::Fd(pid, fd) => {
                let files = traceable(pid)?.files().ok_or(FsError::NotFound)?;
                let file = files.get(u64::from(fd)).map_err(|_| FsError::NotFound)?;
                Ok(match file.location() {
                    // A file whose last name went: " (deleted)", as Linux.
                    Some(location) if location.node().metadata().nlink == 0 && location.node().metadata().kind == FileType::Regular => {
                        location.path() + " (deleted)"
                    }
                    Some(location) => location.path(),
                    None if file.is_tty() => "/dev/console".to_string(),
                    None if file.stat().kind == FileType::CharDevice => {
                        crate::fs::device_path(file.stat().rdev).unwrap_or_else(|| format!("anon_inode:[{}]", file.stat().ino))
                    }
                    None => format!("pipe:[{}]", file.stat().ino),
                })
            }
        }
    }
}
