//! `/proc`, served by the `procfs` cell: the cell decides what the tree
//! holds and renders every file; this module hands it the facts it asks
//! for (see `tessera_cell_api::procfs`), applies the settings written to
//! `/proc/sys`, and follows the magic links (`self`, `PID/exe`,
//! `PID/cwd`, `PID/fd/N`), whose targets are kernel objects. What only a
//! tracer may see (descriptors, memory maps) is given to the cell only
//! when the caller may trace the process, and a link is checked against
//! the process it names when it is followed, so a cell that answers
//! wrongly shows nothing the caller could not see anyway.

use crate::errno::Errno;
use crate::process::{self, ProcessInfo};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use framekernel::sync::SpinLock;
use tessera_cell_api::procfs::{self as api, Done, Fact, Facts, ProcErr, Reply, Request, Setting, TextFact};
use tessera_vfs::{DirEntry, FileType, FsError, FsStats, Metadata, Node, NodeRef, Timespec};

/// What `statfs` reports for procfs: Linux's `PROC_SUPER_MAGIC`, no storage.
const PROC_STATS: FsStats = FsStats { magic: 0x9fa0, capacity: 0, used: 0, nodes: 0, nodes_used: 0, block_size: 0, reserved: 0 };

/// Device number of procfs.
const PROC_DEV: u64 = 0x50;

/// Rounds of facts one request may ask for.
const MAX_ROUNDS: usize = 8;

/// Time one request may take over all its rounds (ns): the cell renders
/// in microseconds, so a request still asking after this is refused
/// (EIO) instead of holding the caller for every round's watchdog.
const REQUEST_BUDGET_NS: u64 = 2_000_000_000;

/// Entries one `/proc` directory may list: more than any directory has
/// (processes, threads and descriptors are bounded far below this).
const MAX_ENTRIES: usize = 1 << 16;

/// The procfs cell's slot.
pub type ProcSlot = tessera_live_update::Slot<api::Export>;

static SLOT: SpinLock<Option<Arc<ProcSlot>>> = SpinLock::new(None);

/// Makes `slot` serve every procfs mount (once, at boot).
pub fn register(slot: Arc<ProcSlot>) {
    *SLOT.lock() = Some(slot);
}

/// A new procfs root; ENODEV without the procfs cell.
pub fn new_root() -> Result<NodeRef, Errno> {
    if SLOT.lock().is_none() {
        return Err(Errno::ENODEV);
    }
    Ok(Arc::new(ProcNode { ino: api::ROOT_INO, mode: 0o040555 }))
}

fn proc_errno(e: ProcErr) -> FsError {
    match e {
        ProcErr::NotFound => FsError::NotFound,
        ProcErr::Access => FsError::Access,
        ProcErr::Invalid => FsError::Invalid,
        ProcErr::NotPermitted => FsError::NotPermitted,
        ProcErr::NotDir => FsError::NotDir,
        ProcErr::IsDir => FsError::IsDir,
    }
}

/// Runs `request` through the cell, gathering the facts it asks for.
/// EIO when the cell faults or asks in circles. A request is a pure
/// function of request and facts, so a fault is not retried: it would
/// fault again, and faults in a row hold the slot, which would take all
/// of `/proc` away for one file's bug. The slot restarts the cell, and
/// the next request is served.
fn call(request: Request) -> Result<Done, FsError> {
    let slot = SLOT.lock().clone().ok_or(FsError::Io)?;
    let mut facts = Facts::default();
    let started = framekernel::time::now_ns();
    for _ in 0..MAX_ROUNDS {
        if framekernel::time::now_ns().saturating_sub(started) > REQUEST_BUDGET_NS {
            log::warn!("procfs cell: no answer to {request:?} within {} ms", REQUEST_BUDGET_NS / 1_000_000);
            return Err(FsError::Io);
        }
        let reply = slot.call(false, |cell| cell.call((request.clone(), facts.clone()), |p, (r, f)| p.serve(r, f))).map_err(|e| {
            log::warn!("procfs cell: {e}");
            FsError::Io
        })?;
        match reply {
            Reply::Done(done) => return Ok(done),
            Reply::Failed(e) => return Err(proc_errno(e)),
            Reply::Need(fact) => gather(fact, &mut facts),
        }
    }
    log::warn!("procfs cell: no answer to {request:?} after {MAX_ROUNDS} rounds");
    Err(FsError::Io)
}

/// The machine's figures.
fn system() -> api::System {
    let frames = framekernel::mm::frame_stats();
    // Each online processor's interrupt counts, read once.
    let counts: Vec<framekernel::cpu::InterruptCounts> = online().map(|i| framekernel::cpu::interrupt_counts(i).unwrap_or_default()).collect();
    api::System {
        total_kb: frames.total as u64 * 4,
        free_kb: frames.free as u64 * 4,
        shmem_kb: crate::memstore::bytes_in_use() / 1024,
        uptime_ns: framekernel::time::now_ns(),
        realtime_ns: framekernel::time::realtime_ns(),
        user_ns: process::user_ns_total(),
        idle_ns: tessera_sched::idle_ns(),
        processes: process::all().len() as u64,
        cpu_user_ns: online().map(process::user_ns_of).collect(),
        cpu_idle_ns: online().map(tessera_sched::idle_ns_of).collect(),
        running: process::running_threads(),
        cpu_local_timer: counts.iter().map(|c| c.local_timer).collect(),
        cpu_kicks: counts.iter().map(|c| c.kicks).collect(),
        cpu_nmis: counts.iter().map(|c| c.nmis).collect(),
        cpu_tlb_shootdowns: counts.iter().map(|c| c.tlb_shootdowns).collect(),
        irq_lines: (0..framekernel::irq::IRQ_LINES).flat_map(|line| online().map(move |cpu| framekernel::irq::count_on(line, cpu))).collect(),
        irq_chip: match framekernel::irq::controller() {
            framekernel::irq::Controller::IoApic => "IO-APIC".into(),
            framekernel::irq::Controller::Pic => "XT-PIC".into(),
        },
        irq_level: (0..framekernel::irq::IRQ_LINES).filter(|&l| framekernel::irq::level_triggered(l)).fold(0, |m, l| m | 1 << l),
    }
}

/// The online processors' indexes.
fn online() -> impl Iterator<Item = usize> {
    let mask = tessera_sched::online_mask();
    (0..framekernel::cpu::MAX_CPUS).filter(move |&i| mask & (1 << i) != 0)
}

/// NUL-terminated.
fn push(list: &mut String, item: &str) {
    list.push_str(&item.replace('\0', ""));
    list.push('\0');
}

fn tables() -> api::Tables {
    let mut t = api::Tables::default();
    for (source, path, fstype, read_only) in crate::fs::vfs().map(|v| v.mount_table()).unwrap_or_default() {
        push(&mut t.mounts, &source);
        push(&mut t.mounts, &path);
        push(&mut t.mounts, &fstype);
        t.mounts_read_only.push(u8::from(read_only));
    }
    for (name, rdev, sectors) in crate::block::disks() {
        push(&mut t.disks, &name);
        t.disk_rdevs.push(rdev);
        t.disk_sectors.push(sectors);
    }
    for name in crate::syscall::FILESYSTEMS {
        push(&mut t.nodev_types, name);
    }
    for name in crate::cellfs::type_names() {
        push(&mut t.device_types, &name);
    }
    t
}

fn processes() -> api::Processes {
    let mut all = api::Processes::default();
    for info in process::all() {
        all.pids.push(info.pid);
        for thread in info.thread_list() {
            all.threads.push([thread.tid, info.pid]);
        }
    }
    all.pids.sort_unstable();
    all
}

fn process_facts(pid: u32) -> Option<api::Process> {
    let info = process::lookup(pid)?;
    let traceable = may_trace(&info);
    let c = info.credentials();
    let (user, total) = info.cpu_ns();
    let (cuser, ctotal) = info.children_cpu_ns();
    let memory = info.memory().map(|m| {
        let space = m.lock();
        [space.virtual_size(), space.locked_size(), space.resident_pages() as u64]
    });
    // The console terminal (ttyS0, device 4:64) if it is this session's.
    let tty = crate::files::console();
    let (tty_nr, tpgid) =
        if tty.session() != 0 && tty.session() == info.sid() { (4u32 << 8 | 64, i64::from(tty.foreground())) } else { (0, -1) };
    let threads = info.thread_list();
    let mut tid_comms = String::new();
    for t in &threads {
        push(&mut tid_comms, &t.comm());
    }
    let prctl = *info.prctl.lock();
    let fds = match info.files() {
        Some(files) if traceable => (0..crate::files::MAX_FILES as u32).filter(|&fd| files.get(u64::from(fd)).is_ok()).collect(),
        _ => Vec::new(),
    };
    Some(api::Process {
        pid,
        ppid: info.ppid(),
        pgid: info.pgid(),
        sid: info.sid(),
        state: state(&info),
        comm: comm(&info),
        nice: info.nice.load(Ordering::Relaxed),
        cpu_ns: [user, total, cuser, ctotal],
        start_ns: info.start_ns,
        has_memory: memory.is_some(),
        memory: memory.unwrap_or_default(),
        tty_nr,
        tpgid,
        ids: [c.ruid, c.euid, c.suid, c.fsuid, c.rgid, c.egid, c.sgid, c.fsgid],
        groups: c.groups.to_vec(),
        caps: [c.caps.inheritable, c.caps.permitted, c.caps.effective, c.caps.bounding, c.caps.ambient],
        no_new_privs: prctl.no_new_privs,
        seccomp: threads.first().map_or(0, |t| u32::from(t.seccomp_mode.load(Ordering::Relaxed))),
        cmdline: info.cmdline.lock().clone(),
        timerslack_ns: prctl.timerslack_ns,
        coredump_filter: prctl.coredump_filter,
        tids: threads.iter().map(|t| t.tid).collect(),
        tids_running: threads.iter().map(|t| u8::from(process::lookup_thread(t.tid).is_some_and(|t| t.is_runnable()))).collect(),
        tids_cpu: threads.iter().map(|t| t.processor()).collect(),
        tid_comms,
        traceable,
        fds,
    })
}

fn fd_facts(pid: u32, fd: u32) -> Option<api::Fd> {
    let files = traceable(pid).ok()?.files()?;
    let file = files.get(u64::from(fd)).ok()?;
    let cloexec = if files.cloexec(u64::from(fd)).unwrap_or(false) { 0o2000000 } else { 0 };
    Some(api::Fd { pos: file.seek(0, 1).unwrap_or(0), flags: file.status_flags() | cloexec, ino: file.stat().ino, extra: file.fdinfo() })
}

fn text_facts(what: TextFact) -> Option<String> {
    match what {
        TextFact::Maps(pid) => traceable(pid).ok()?.maps(),
        TextFact::Smaps(pid) => traceable(pid).ok()?.smaps(),
        TextFact::SysvIpc(kind) => Some(crate::syscall::ipc::proc_listing(["msg", "sem", "shm"].get(usize::from(kind))?)),
        TextFact::Cells => Some(tessera_live_update::registry::proc_cells()),
        TextFact::Net(0) => Some(crate::net::proc_dev()),
        TextFact::Net(1) => Some(crate::net::proc_route()),
        TextFact::Net(_) => None,
    }
}

fn sys_facts() -> api::Sys {
    let mut s = api::Sys::default();
    for (i, (name, value)) in SYS_FILES.iter().enumerate() {
        push(&mut s.names, name);
        push(&mut s.values, value().trim_end_matches('\n'));
        s.writable.push(if sys_setter(i).is_some() {
            1
        } else if text_setter(i).is_some() {
            2
        } else {
            0
        });
    }
    s
}

/// Adds `fact` to `facts`.
fn gather(fact: Fact, facts: &mut Facts) {
    match fact {
        Fact::System => facts.system = Some(system()),
        Fact::Tables => facts.tables = Some(tables()),
        Fact::Processes => facts.processes = Some(processes()),
        Fact::Process(pid) => facts.process = Some(process_facts(pid)),
        Fact::Text(what) => facts.text = Some(text_facts(what)),
        Fact::Fd { pid, fd } => facts.fd = Some(fd_facts(pid, fd)),
        Fact::Sys => facts.sys = Some(sys_facts()),
    }
}

/// Applies what a write asked for, each value and the writer's right to
/// it checked here (not left to the modes the cell reports): `/proc/sys`
/// takes writes from root only, `coredump_filter` from whoever may trace
/// the process.
fn apply(setting: Setting) -> Result<(), FsError> {
    let root = process::current().is_some_and(|me| me.credentials().euid == 0);
    match &setting {
        Setting::Number { .. } | Setting::Text { .. } if !root => return Err(FsError::Access),
        Setting::CoredumpFilter { pid, .. } if !may_trace(&*process(*pid)?) => return Err(FsError::Access),
        // A name or pattern is a C string: nothing after a NUL would show.
        Setting::Text { text, .. } if text.contains('\0') => return Err(FsError::Invalid),
        _ => {}
    }
    match setting {
        Setting::Number { index, value } => sys_setter(index as usize).ok_or(FsError::NotPermitted)?(value),
        Setting::Text { index, text } => text_setter(index as usize).ok_or(FsError::NotPermitted)?(&text).map_err(|_| FsError::Invalid),
        Setting::CoredumpFilter { pid, value } => {
            process(pid)?.prctl.lock().coredump_filter = value & 0x1ff;
            Ok(())
        }
    }
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

fn process(pid: u32) -> Result<Arc<ProcessInfo>, FsError> {
    process::lookup(pid).ok_or(FsError::NotFound)
}

/// True when the caller may look into `target` as ptrace would (its
/// descriptors, their details, its memory map): Linux's
/// `ptrace_may_access` for /proc/PID/fd, fdinfo, maps, smaps, exe, cwd.
/// Nothing when no process is calling.
fn may_trace(target: &ProcessInfo) -> bool {
    process::current().is_some_and(|me| target.may_be_traced_by(&me))
}

/// The process `pid`, if the caller may look into it; EACCES otherwise.
fn traceable(pid: u32) -> Result<Arc<ProcessInfo>, FsError> {
    let target = process(pid)?;
    if may_trace(&target) { Ok(target) } else { Err(FsError::Access) }
}

fn comm(info: &ProcessInfo) -> String {
    let name = info.comm();
    if !name.is_empty() {
        return name;
    }
    let exe = info.exe.lock().clone();
    exe.rsplit('/').next().unwrap_or("").chars().take(15).collect()
}

/// The process state letter of `/proc/[pid]/stat`.
fn state(info: &ProcessInfo) -> u8 {
    if info.outcome().is_some() {
        b'Z'
    } else if info.job().stopped.is_some() {
        b'T'
    } else if info.is_runnable() {
        b'R'
    } else {
        b'S'
    }
}

/// The open file a `/proc/PID/fd/N` link stands for (what following it
/// reaches on Linux, even for a file with no name).
pub fn file_of_link(node: &NodeRef) -> Option<Arc<dyn crate::files::File>> {
    let meta = node.metadata();
    let (tag, pid, fd) = api::link_of(meta.ino);
    if meta.dev != PROC_DEV || meta.kind != FileType::Symlink || tag != api::LINK_FD {
        return None;
    }
    traceable(pid).ok()?.files()?.get(u64::from(fd)).ok()
}

/// True for the "magic" links of procfs (`/proc/PID/exe`, `cwd`,
/// `fd/N`), which name an object rather than a path
/// (`RESOLVE_NO_MAGICLINKS` refuses them).
pub fn is_magic_link(node: &NodeRef) -> bool {
    let meta = node.metadata();
    meta.dev == PROC_DEV && meta.kind == FileType::Symlink && meta.ino != api::SELF_INO
}

/// The process a `/proc/PID` directory stands for (`pidfd_send_signal`
/// takes such a descriptor as a process descriptor, as Linux).
pub fn process_of_dir(node: &NodeRef) -> Option<u32> {
    let meta = node.metadata();
    if meta.dev != PROC_DEV || meta.kind != FileType::Directory {
        return None;
    }
    api::pid_of_dir(meta.ino)
}

/// A node of `/proc`, as the cell numbered it.
struct ProcNode {
    ino: u64,
    mode: u32,
}

impl ProcNode {
    /// The node the cell answered, if it is a kind procfs has.
    /// The kernel sets the permissions, not the cell: directories 0555,
    /// files 0444 or (where the cell says it takes writes) 0644, links
    /// 0777; never set-id or executable bits.
    fn from_cell(node: api::Node) -> Result<NodeRef, FsError> {
        let mode = match FileType::from_mode(node.mode) {
            Some(FileType::Directory) => 0o040555,
            Some(FileType::Regular) if node.mode & 0o200 != 0 => 0o100644,
            Some(FileType::Regular) => 0o100444,
            Some(FileType::Symlink) => 0o120777,
            _ => {
                log::warn!("procfs cell: a node of mode {:o}", node.mode);
                return Err(FsError::Io);
            }
        };
        Ok(Arc::new(ProcNode { ino: node.ino, mode }))
    }

    fn kind(&self) -> FileType {
        FileType::from_mode(self.mode).unwrap_or(FileType::Regular)
    }

    fn contents(&self) -> Result<Vec<u8>, FsError> {
        match call(Request::Read { ino: self.ino })? {
            Done::Text(bytes) => Ok(bytes),
            _ => Err(FsError::Io),
        }
    }

    fn writable(&self) -> bool {
        self.kind() == FileType::Regular && self.mode & 0o200 != 0
    }

    /// Who owns the node: a process's nodes (`/proc/PID` and below, by
    /// the numbering of [`api::pid_entry_ino`] and [`api::link_ino`])
    /// belong to its effective user and group while it is dumpable, as on
    /// Linux; everything else to root. Ownership only shows, and lets the
    /// owner past the mode check: every setting is still checked by
    /// [`apply`].
    fn owner(&self) -> (u32, u32) {
        let (tag, link_pid, _) = api::link_of(self.ino);
        let pid = match tag {
            0 if self.ino >> 40 == 0 && self.ino >= 256 => (self.ino >> 8) as u32,
            api::LINK_EXE | api::LINK_CWD | api::LINK_FD | api::FDINFO_TAG => link_pid,
            _ => return (0, 0),
        };
        match process::lookup(pid) {
            Some(p) if p.prctl.lock().dumpable => {
                let c = p.credentials();
                (c.euid, c.egid)
            }
            _ => (0, 0),
        }
    }
}

impl Node for ProcNode {
    fn fs_stats(&self) -> FsStats {
        PROC_STATS
    }

    fn metadata(&self) -> Metadata {
        let now = crate::fs::now();
        let (uid, gid) = self.owner();
        Metadata {
            dev: PROC_DEV,
            ino: self.ino,
            kind: self.kind(),
            perm: self.mode & 0o7777,
            nlink: 1,
            uid,
            gid,
            size: 0,
            blocks: None,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
    fn set_perm(&self, _perm: u32) {}
    fn set_owner(&self, _uid: u32, _gid: u32) {}
    fn set_times(&self, _a: Option<Timespec>, _m: Option<Timespec>) {}
    fn set_link_count(&self, _links: u32) {}
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        match self.kind() {
            FileType::Directory => return Err(FsError::IsDir),
            FileType::Symlink => return Err(FsError::Invalid),
            _ => {}
        }
        let bytes = self.contents()?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), bytes.get(start..start + n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
    fn write_at(&self, _offset: u64, data: &[u8]) -> Result<usize, FsError> {
        match self.kind() {
            FileType::Directory => return Err(FsError::IsDir),
            FileType::Symlink => return Err(FsError::Invalid),
            _ if !self.writable() => return Err(FsError::NotPermitted),
            _ => {}
        }
        let text = core::str::from_utf8(data).map_err(|_| FsError::Invalid)?;
        let Done::Set(setting) = call(Request::Write { ino: self.ino, text: text.to_string() })? else { return Err(FsError::Io) };
        // A setting for this file only (the cell names what it parsed).
        let mine = match &setting {
            Setting::Number { index, .. } | Setting::Text { index, .. } => self.ino == api::sys_ino(*index),
            Setting::CoredumpFilter { pid, .. } => self.ino == api::pid_entry_ino(*pid, api::COREDUMP_FILTER),
        };
        if !mine {
            log::warn!("procfs cell: a setting for another file than inode {:#x}", self.ino);
            return Err(FsError::Io);
        }
        apply(setting)?;
        Ok(data.len())
    }
    fn truncate(&self, _len: u64) -> Result<(), FsError> {
        // Opening a tunable for writing truncates it: nothing to do.
        if self.writable() { Ok(()) } else { Err(FsError::NotPermitted) }
    }
    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        match self.kind() {
            FileType::Directory => Err(FsError::IsDir),
            FileType::Symlink => Err(FsError::Invalid),
            _ => Ok(Arc::new(self.contents()?)),
        }
    }
    fn lookup(&self, name: &str) -> Result<NodeRef, FsError> {
        if self.kind() != FileType::Directory {
            return Err(FsError::NotDir);
        }
        match call(Request::Lookup { dir: self.ino, name: name.to_string() })? {
            Done::Node(node) => ProcNode::from_cell(node),
            _ => Err(FsError::Io),
        }
    }
    fn create(&self, _name: &str, _kind: FileType, _perm: u32, _rdev: u64) -> Result<NodeRef, FsError> {
        Err(FsError::NotPermitted)
    }
    fn symlink(&self, _name: &str, _target: &str) -> Result<NodeRef, FsError> {
        Err(FsError::NotPermitted)
    }
    fn attach(&self, _name: &str, _node: NodeRef, _replace: bool) -> Result<(), FsError> {
        Err(FsError::NotPermitted)
    }
    fn detach(&self, _name: &str) -> Result<NodeRef, FsError> {
        Err(FsError::NotPermitted)
    }
    fn entries(&self) -> Result<Vec<DirEntry>, FsError> {
        if self.kind() != FileType::Directory {
            return Err(FsError::NotDir);
        }
        let Done::Entries(e) = call(Request::List { dir: self.ino })? else { return Err(FsError::Io) };
        // Checked as the kernel checks any cell's listing.
        let n = e.inos.len();
        if n > MAX_ENTRIES || e.modes.len() != n || !crate::cellfs::listing_ok(&e.names, n) {
            log::warn!("procfs cell: a malformed listing of inode {:#x}", self.ino);
            return Err(FsError::Io);
        }
        let mut out = Vec::new();
        out.try_reserve_exact(n).map_err(|_| FsError::Io)?;
        for ((name, &ino), &mode) in e.names.split_terminator('\0').zip(&e.inos).zip(&e.modes) {
            out.push(DirEntry { name: name.to_string(), ino, kind: FileType::from_mode(mode).unwrap_or(FileType::Regular) });
        }
        Ok(out)
    }
    fn read_link(&self) -> Result<String, FsError> {
        if self.kind() != FileType::Symlink {
            return Err(FsError::Invalid);
        }
        if self.ino == api::SELF_INO {
            // The caller's own process (none: as for Linux's kernel threads).
            return process::current().map(|me| me.pid.to_string()).ok_or(FsError::NotFound);
        }
        let (tag, pid, fd) = api::link_of(self.ino);
        match tag {
            api::LINK_EXE => Ok(traceable(pid)?.exe.lock().clone()),
            api::LINK_CWD => traceable(pid)?.cwd().ok_or(FsError::NotFound),
            api::LINK_FD => {
                let files = traceable(pid)?.files().ok_or(FsError::NotFound)?;
                let file = files.get(u64::from(fd)).map_err(|_| FsError::NotFound)?;
                Ok(match file.location() {
                    // A file whose last name went: " (deleted)", as Linux.
                    Some(location) if location.node().metadata().nlink == 0 && location.node().metadata().kind == FileType::Regular => {
                        location.path() + " (deleted)"
                    }
                    Some(location) => location.path(),
                    None => match crate::fs::device_node_of(&*file) {
                        Some(path) => path,
                        None if file.stat().kind == FileType::CharDevice => format!("anon_inode:[{}]", file.stat().ino),
                        None => format!("pipe:[{}]", file.stat().ino),
                    },
                })
            }
            _ => Err(FsError::Invalid),
        }
    }
}
