//! `/proc` as a cell: the kernel hands facts, the cell decides what the
//! tree holds and renders every file.
//!
//! The cell keeps nothing between calls. Each call passes a [`Request`]
//! and the [`Facts`] the kernel gathered for it so far. When the cell
//! needs a fact it was not given, it answers [`Reply::Need`] and the
//! kernel calls again with that fact added (a call is a pure function of
//! request and facts, so repeating it is always safe, and a fault loses
//! nothing). Writes to `/proc/sys` and `coredump_filter` come back as a
//! typed [`Setting`]: the kernel checks its range and applies it.
//!
//! The kernel gives only what the caller may see: the descriptors, memory
//! maps and fd details of a process the caller may not trace (Linux's
//! `ptrace_may_access`) are not given, and the cell answers
//! [`ProcErr::Access`] (EACCES) for them. The magic links (`self`,
//! `PID/exe`, `PID/cwd`, `PID/fd/N`) are the kernel's to follow: the cell
//! names them by inode number ([`link_ino`]), the kernel reads them and
//! checks access on the object they name when they are used.
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// Why a request failed; the kernel turns it into an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcErr {
    /// ENOENT.
    NotFound,
    /// EACCES: the caller may not look into that process.
    Access,
    /// EINVAL: a value that does not parse.
    Invalid,
    /// EPERM: not writable.
    NotPermitted,
    /// ENOTDIR.
    NotDir,
    /// EISDIR.
    IsDir,
}
framekernel_boundary::cell_data!(enum ProcErr { NotFound, Access, Invalid, NotPermitted, NotDir, IsDir });

/// Inode number of `/proc`.
pub const ROOT_INO: u64 = 1;
/// Inode number of `/proc/self`.
pub const SELF_INO: u64 = 9;
/// Tags (bits 60..) of the magic links' inode numbers.
pub const LINK_EXE: u64 = 1;
/// `/proc/PID/cwd`.
pub const LINK_CWD: u64 = 2;
/// `/proc/PID/fd/N`.
pub const LINK_FD: u64 = 3;
/// The tag of `/proc/PID/fdinfo/N` (numbered as the links are).
pub const FDINFO_TAG: u64 = 4;

/// The inode number of magic link `tag` ([`LINK_EXE`], [`LINK_CWD`],
/// [`LINK_FD`]) of process `pid` (descriptor `fd`).
pub const fn link_ino(tag: u64, pid: u32, fd: u32) -> u64 {
    tag << 60 | (pid as u64 & 0x0fff_ffff) << 32 | fd as u64
}

/// The tag, process and descriptor of a magic link's inode number.
pub const fn link_of(ino: u64) -> (u64, u32, u32) {
    (ino >> 60, ((ino >> 32) & 0x0fff_ffff) as u32, ino as u32)
}

/// The inode number of directory `/proc/PID`.
pub const fn pid_dir_ino(pid: u32) -> u64 {
    (pid as u64) << 8
}

/// The process of a `/proc/PID` directory's inode number (`None` for any
/// other directory).
pub const fn pid_of_dir(ino: u64) -> Option<u32> {
    if ino >= 256 && ino & 0xff == 0 && ino >> 40 == 0 { Some((ino >> 8) as u32) } else { None }
}

/// The inode number of entry `low` (1..=255) of `/proc/PID`.
pub const fn pid_entry_ino(pid: u32, low: u64) -> u64 {
    pid_dir_ino(pid) | (low & 0xff)
}

/// `low` of `/proc/PID/coredump_filter`.
pub const COREDUMP_FILTER: u64 = 14;

/// The inode number of `/proc/sys` value `index` (in [`Sys`]'s order).
pub const fn sys_ino(index: u32) -> u64 {
    5 << 60 | index as u64
}

/// One node of the tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Node {
    /// Inode number (also what the kernel names the node by in requests).
    pub ino: u64,
    /// Type and permission bits (`S_IFDIR | 0o555`, `S_IFREG | 0o444` or
    /// `0o644` where it takes writes, `S_IFLNK | 0o777`).
    pub mode: u32,
}
framekernel_boundary::cell_data!(struct Node { ino, mode });

/// What the kernel asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Entry `name` of directory `dir`: [`Done::Node`].
    Lookup { dir: u64, name: String },
    /// The entries of directory `dir`: [`Done::Entries`].
    List { dir: u64 },
    /// The contents of file `ino`: [`Done::Text`].
    Read { ino: u64 },
    /// `text` written to file `ino`: [`Done::Set`].
    Write { ino: u64, text: String },
}
framekernel_boundary::cell_data!(enum Request { Lookup { dir, name }, List { dir }, Read { ino }, Write { ino, text } });

/// Directory entries, in parallel lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// The names, each followed by a NUL byte.
    pub names: String,
    /// Their nodes' inode numbers.
    pub inos: Vec<u64>,
    /// Their nodes' modes (as [`Node::mode`]).
    pub modes: Vec<u32>,
}
framekernel_boundary::cell_data!(struct Entries { names, inos, modes });

/// A change the kernel makes for a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `/proc/sys` value `index` (in [`Sys`]'s order) becomes `value`.
    Number { index: u32, value: i64 },
    /// `/proc/sys` text `index` becomes `text` (the newline dropped).
    Text { index: u32, text: String },
    /// Process `pid`'s `coredump_filter`.
    CoredumpFilter { pid: u32, value: u32 },
}
framekernel_boundary::cell_data!(enum Setting { Number { index, value }, Text { index, text }, CoredumpFilter { pid, value } });

/// What a completed request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// A node (`Lookup`).
    Node(Node),
    /// Directory entries (`List`).
    Entries(Entries),
    /// A file's contents (`Read`); bytes, as `cmdline` need not be UTF-8.
    Text(Vec<u8>),
    /// What a write changes (`Write`).
    Set(Setting),
}
framekernel_boundary::cell_data!(enum Done { Node(n), Entries(e), Text(t), Set(s) });

/// A fact the cell needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// [`Facts::system`].
    System,
    /// [`Facts::tables`].
    Tables,
    /// [`Facts::processes`].
    Processes,
    /// [`Facts::process`] for this process.
    Process(u32),
    /// [`Facts::text`]: `Maps`/`Smaps` of a process, `SysvIpc` of a kind,
    /// `Cells`.
    Text(TextFact),
    /// [`Facts::fd`] for descriptor `fd` of process `pid`.
    Fd { pid: u32, fd: u32 },
    /// [`Facts::sys`].
    Sys,
}
framekernel_boundary::cell_data!(enum Fact { System, Tables, Processes, Process(p), Text(t), Fd { pid, fd }, Sys });

/// Texts the kernel renders itself (they come from other subsystems).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFact {
    /// `/proc/PID/maps`.
    Maps(u32),
    /// `/proc/PID/smaps`.
    Smaps(u32),
    /// `/proc/sysvipc/{msg,sem,shm}`: 0, 1, 2.
    SysvIpc(u8),
    /// `/proc/cells`.
    Cells,
    /// `/proc/net/{dev,route}`: 0, 1.
    Net(u8),
}
framekernel_boundary::cell_data!(enum TextFact { Maps(p), Smaps(p), SysvIpc(k), Cells, Net(k) });

/// The machine's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct System {
    /// Memory in KiB: all, free, in in-memory file systems.
    pub total_kb: u64,
    /// Free.
    pub free_kb: u64,
    /// tmpfs pages.
    pub shmem_kb: u64,
    /// Since boot.
    pub uptime_ns: u64,
    /// Since the epoch.
    pub realtime_ns: u64,
    /// Time spent in user programs, in all.
    pub user_ns: u64,
    /// Time the CPU idled.
    pub idle_ns: u64,
    /// Processes in the table.
    pub processes: u64,
    /// Time spent in user programs, per online processor.
    pub cpu_user_ns: Vec<u64>,
    /// Time each online processor idled.
    pub cpu_idle_ns: Vec<u64>,
    /// Threads running or waiting for a processor.
    pub running: u64,
    /// Per online processor: local timer interrupts, kicks (rescheduling
    /// interrupts), NMIs taken and TLB shootdowns carried out
    /// (`/proc/interrupts`).
    pub cpu_local_timer: Vec<u64>,
    pub cpu_kicks: Vec<u64>,
    pub cpu_nmis: Vec<u64>,
    pub cpu_tlb_shootdowns: Vec<u64>,
    /// Interrupts taken on each legacy IRQ line (0..16) by each online
    /// processor: line 0's counts (one per processor), then line 1's, ...
    pub irq_lines: Vec<u64>,
    /// What delivers the legacy lines (`IO-APIC` or `XT-PIC`).
    pub irq_chip: String,
    /// Bit per level-triggered line.
    pub irq_level: u64,
}
framekernel_boundary::cell_data!(struct System { total_kb, free_kb, shmem_kb, uptime_ns, realtime_ns, user_ns, idle_ns, processes, cpu_user_ns, cpu_idle_ns, running, cpu_local_timer, cpu_kicks, cpu_nmis, cpu_tlb_shootdowns, irq_lines, irq_chip, irq_level });

/// The kernel's tables: mounts, disks, file-system types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    /// Mounts: source, path and type, each NUL-terminated, per mount.
    pub mounts: String,
    /// 1 where the mount is read-only, per mount.
    pub mounts_read_only: Vec<u8>,
    /// Disks: names, NUL-terminated.
    pub disks: String,
    /// Their device numbers.
    pub disk_rdevs: Vec<u64>,
    /// Their sizes in 512-byte sectors.
    pub disk_sectors: Vec<u64>,
    /// File-system types without a device, NUL-terminated.
    pub nodev_types: String,
    /// File-system types on a device, NUL-terminated.
    pub device_types: String,
}
framekernel_boundary::cell_data!(struct Tables { mounts, mounts_read_only, disks, disk_rdevs, disk_sectors, nodev_types, device_types });

/// Every process and thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processes {
    /// Process ids, ascending.
    pub pids: Vec<u32>,
    /// `[tid, pid]` of every thread.
    pub threads: Vec<[u32; 2]>,
}
framekernel_boundary::cell_data!(struct Processes { pids, threads });

/// One process, as far as the caller may see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent, process group, session.
    pub ppid: u32,
    /// Process group.
    pub pgid: u32,
    /// Session.
    pub sid: u32,
    /// `R`, `S`, `T` or `Z`.
    pub state: u8,
    /// Command name.
    pub comm: String,
    /// Nice value.
    pub nice: i32,
    /// CPU time in user mode and in all, of it and of its waited-for
    /// children, in ns.
    pub cpu_ns: [u64; 4],
    /// Start, ns after boot.
    pub start_ns: u64,
    /// Has an address space (not a zombie).
    pub has_memory: bool,
    /// Virtual size, locked bytes, resident pages.
    pub memory: [u64; 3],
    /// Controlling terminal's device number and foreground group (0, -1:
    /// none).
    pub tty_nr: u32,
    /// Foreground process group of its terminal.
    pub tpgid: i64,
    /// Real, effective, saved and file-system user ids, then group ids.
    pub ids: [u32; 8],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Capability sets: inheritable, permitted, effective, bounding, ambient.
    pub caps: [u64; 5],
    /// `no_new_privs`.
    pub no_new_privs: bool,
    /// Seccomp mode.
    pub seccomp: u32,
    /// Its command line (NUL-separated arguments).
    pub cmdline: Vec<u8>,
    /// `timerslack_ns`.
    pub timerslack_ns: u64,
    /// `coredump_filter`.
    pub coredump_filter: u32,
    /// Thread ids.
    pub tids: Vec<u32>,
    /// Per thread: runnable (1) or not.
    pub tids_running: Vec<u8>,
    /// Per thread: the processor it runs on or last ran on.
    pub tids_cpu: Vec<u32>,
    /// Per thread: its name, NUL-terminated.
    pub tid_comms: String,
    /// The caller may look into it as ptrace would.
    pub traceable: bool,
    /// Its open descriptors (empty when not traceable).
    pub fds: Vec<u32>,
}
framekernel_boundary::cell_data!(struct Process {
    pid, ppid, pgid, sid, state, comm, nice, cpu_ns, start_ns, has_memory, memory, tty_nr, tpgid, ids, groups, caps,
    no_new_privs, seccomp, cmdline, timerslack_ns, coredump_filter, tids, tids_running, tids_cpu, tid_comms, traceable, fds,
});

/// An open descriptor (`/proc/PID/fdinfo/N`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fd {
    /// File position.
    pub pos: u64,
    /// Status flags with `O_CLOEXEC`.
    pub flags: u32,
    /// Inode number.
    pub ino: u64,
    /// What the file's kind adds (eventfd count, inotify watches, ...).
    pub extra: String,
}
framekernel_boundary::cell_data!(struct Fd { pos, flags, ino, extra });

/// `/proc/sys`: every value the kernel offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sys {
    /// Paths below `sys` (`kernel/pid_max`), NUL-terminated.
    pub names: String,
    /// Their current values as text, NUL-terminated.
    pub values: String,
    /// Per value: 0 read-only, 1 takes a decimal number, 2 takes text.
    pub writable: Vec<u8>,
}
framekernel_boundary::cell_data!(struct Sys { names, values, writable });

/// The facts gathered for one request; `None` until asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// [`Fact::System`].
    pub system: Option<System>,
    /// [`Fact::Tables`].
    pub tables: Option<Tables>,
    /// [`Fact::Processes`].
    pub processes: Option<Processes>,
    /// [`Fact::Process`]: the one asked for (`Some(None)`: it does not
    /// exist).
    pub process: Option<Option<Process>>,
    /// [`Fact::Text`] (`Some(None)`: not available, or not to this caller).
    pub text: Option<Option<String>>,
    /// [`Fact::Fd`] (`Some(None)`: not open, or not to this caller).
    pub fd: Option<Option<Fd>>,
    /// [`Fact::Sys`].
    pub sys: Option<Sys>,
}
framekernel_boundary::cell_data!(struct Facts { system, tables, processes, process, text, fd, sys });

/// The answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Done(Done),
    /// Failed.
    Failed(ProcErr),
    /// Needs this fact; call again with it (replacing any other of the
    /// same field).
    Need(Fact),
}
framekernel_boundary::cell_data!(enum Reply { Done(d), Failed(e), Need(f) });

/// The `/proc` file system.
pub trait ProcFs: Send + Sync {
    /// Serves `request` with `facts` (see the module's documentation).
    fn serve(&self, request: Request, facts: Facts) -> Reply;
}

/// What a procfs cell exports.
pub type Export = Box<dyn ProcFs>;
