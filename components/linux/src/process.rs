//! Processes: the shared record every process has in the process table
//! ([`ProcessInfo`]), the state its own task owns ([`Process`]), and the
//! loop that runs the program and serves its system calls, faults and
//! signals.

use crate::errno::Errno;
use crate::exec;
use crate::files::{FileTable, Files};
use crate::fs::Fs;
use crate::memory::{Access, Memory, Populate};
use crate::signal::{self, SigInfo, SignalState, num};
use crate::syscall::{self, Action};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use framekernel::arch::user::{Trap, UserContext};
use framekernel::sync::SpinLock;
use framekernel::task::Task;
use tessera_sched::WaitQueue;

/// Most processes at once; `fork` beyond it fails with `EAGAIN`.
pub const MAX_PROCESSES: usize = 256;
/// Most threads at once, all processes together.
pub const MAX_THREADS: usize = 1024;
/// Process and thread ids go up to this and wrap (`/proc/sys/kernel/pid_max` is one more).
pub const MAX_PID: u32 = 32768;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `exit(status)`.
    Exited(u8),
    /// Killed by a signal.
    Killed(u8),
    /// Killed by a signal, after writing a core file.
    Dumped(u8),
}

impl Outcome {
    /// The `wait4` status word (0x80: core dumped).
    pub fn wait_status(self) -> u32 {
        match self {
            Outcome::Exited(code) => u32::from(code) << 8,
            Outcome::Killed(sig) => u32::from(sig),
            Outcome::Dumped(sig) => u32::from(sig) | 0x80,
        }
    }
}

/// No limit (`RLIM_INFINITY`).
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Resource numbers (`RLIMIT_*`) this kernel enforces.
#[allow(missing_docs)]
pub mod rlimit {
    pub const CPU: usize = 0;
    pub const FSIZE: usize = 1;
    pub const STACK: usize = 3;
    pub const CORE: usize = 4;
    pub const NPROC: usize = 6;
    pub const NOFILE: usize = 7;
    pub const MEMLOCK: usize = 8;
    pub const SIGPENDING: usize = 11;
    pub const MSGQUEUE: usize = 12;
    /// Number of resources.
    pub const COUNT: usize = 16;
}

/// A process's resource limits: (soft, hard) per `RLIMIT_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits(pub [(u64, u64); rlimit::COUNT]);

impl Default for Limits {
    /// Linux's limits for process 1 where they mean something here:
    /// 8 MiB stack, no core files, `MAX_PROCESSES` processes per user,
    /// `MAX_FILES` descriptors, 8 MiB locked memory, 800 KiB of POSIX
    /// message queues; the rest unlimited.
    fn default() -> Self {
        let mut limits = [(RLIM_INFINITY, RLIM_INFINITY); rlimit::COUNT];
        let mut set = |resource: usize, value: (u64, u64)| {
            if let Some(slot) = limits.get_mut(resource) {
                *slot = value;
            }
        };
        set(rlimit::STACK, (crate::memory::STACK_SIZE, RLIM_INFINITY));
        set(rlimit::CORE, (0, RLIM_INFINITY));
        // Half the table per ordinary user, so one user cannot fill it
        // (root is not bound by it).
        set(rlimit::NPROC, (MAX_PROCESSES as u64 / 2, MAX_PROCESSES as u64 / 2));
        set(rlimit::NOFILE, (crate::files::MAX_FILES as u64, crate::files::MAX_FILES as u64));
        set(rlimit::MEMLOCK, (8 << 20, 8 << 20));
        set(rlimit::MSGQUEUE, (819_200, 819_200));
        set(rlimit::SIGPENDING, (DEFAULT_SIGPENDING, DEFAULT_SIGPENDING));
        set(13, (0, 0)); // RLIMIT_NICE
        set(14, (0, 0)); // RLIMIT_RTPRIO
        Self(limits)
    }
}

impl Limits {
    /// The soft limit of `resource` (unlimited for an unknown one).
    pub fn soft(&self, resource: usize) -> u64 {
        self.0.get(resource).map_or(RLIM_INFINITY, |l| l.0)
    }
}

/// What `prctl` sets for a process (Linux keeps some of it per thread;
/// here the whole process shares it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrctlState {
    /// `PR_SET_PDEATHSIG`: the signal this process gets when its parent
    /// ends (0: none). Not inherited.
    pub pdeathsig: u8,
    /// `PR_SET_DUMPABLE`.
    pub dumpable: bool,
    /// `PR_SET_KEEPCAPS`.
    pub keepcaps: bool,
    /// `PR_SET_TIMERSLACK`, ns.
    pub timerslack_ns: u64,
    /// `/proc/PID/coredump_filter` (inherited; Linux's default 0x33).
    pub coredump_filter: u32,
    /// What `PR_SET_TIMERSLACK` 0 restores: the creating thread's slack.
    pub default_timerslack_ns: u64,
    /// `PR_SET_CHILD_SUBREAPER`: orphaned descendants come here, not to
    /// process 1. Not inherited.
    pub subreaper: bool,
    /// `PR_SET_NO_NEW_PRIVS`: `exec` never grants privileges (set-id bits
    /// are ignored). Inherited and never cleared.
    pub no_new_privs: bool,
    /// `PR_SET_THP_DISABLE`.
    pub thp_disable: bool,
    /// `ioprio_set`: I/O class and level (`IOPRIO_PRIO_VALUE`); kept and
    /// reported (there is one disk queue, served in order).
    pub ioprio: u16,
}

/// The I/O priority of a process that set none: class NONE (it follows
/// its nice value), as Linux reports it.
pub const IOPRIO_DEFAULT: u16 = 0;

/// Linux's default timer slack (50 µs).
pub const DEFAULT_TIMERSLACK_NS: u64 = 50_000;

impl Default for PrctlState {
    fn default() -> Self {
        Self {
            pdeathsig: 0,
            dumpable: true,
            keepcaps: false,
            timerslack_ns: DEFAULT_TIMERSLACK_NS,
            coredump_filter: 0x33,
            default_timerslack_ns: DEFAULT_TIMERSLACK_NS,
            subreaper: false,
            no_new_privs: false,
            thp_disable: false,
            ioprio: IOPRIO_DEFAULT,
        }
    }
}

impl PrctlState {
    /// What a child created by `fork` starts with.
    pub fn for_child(self) -> Self {
        Self { pdeathsig: 0, subreaper: false, default_timerslack_ns: self.timerslack_ns, ..self }
    }
}

/// A set of pending signals with the details of each. A standard signal
/// (below `SIGRTMIN`) is pending once, with the details of its first
/// sending; real-time signals queue every instance, in order, each
/// charged to a user's `RLIMIT_SIGPENDING` (Linux's rules).
pub struct Pending {
    bits: AtomicU64,
    info: SpinLock<[SigInfo; signal::NSIG + 1]>,
    /// Queued real-time instances: signal, details, the user charged.
    queue: SpinLock<alloc::collections::VecDeque<(u8, SigInfo, u32)>>,
}

/// Real-time signal instances queued per user (the `RLIMIT_SIGPENDING`
/// count), and in all.
static QUEUED_SIGNALS: SpinLock<BTreeMap<u32, u64>> = SpinLock::new(BTreeMap::new());
/// Most real-time signal instances queued at once, over all users,
/// whatever the limits say (bounds the kernel memory they take).
pub const MAX_QUEUED_SIGNALS: u64 = 65536;
/// The default `RLIMIT_SIGPENDING` (Linux sets it from memory size; a
/// few thousand on a small machine).
pub const DEFAULT_SIGPENDING: u64 = 4096;

/// `SIGRTMIN` as the kernel numbers it.
const SIGRTMIN: u8 = 32;

fn uncharge(uid: u32) {
    let mut counts = QUEUED_SIGNALS.lock();
    if let Some(count) = counts.get_mut(&uid) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&uid);
        }
    }
}

impl Pending {
    fn new() -> Self {
        Self {
            bits: AtomicU64::new(0),
            info: SpinLock::new([SigInfo::default(); signal::NSIG + 1]),
            queue: SpinLock::new(alloc::collections::VecDeque::new()),
        }
    }

    /// Makes `sig` pending. `quota` is the user charged for a real-time
    /// instance and that user's limit. Over the limit, an instance
    /// from `kill` (SI_USER) still makes the signal pending, without its
    /// details; any other fails with EAGAIN (Linux's `__send_signal`).
    fn add(&self, sig: u8, info: SigInfo, quota: (u32, u64)) -> Result<(), Errno> {
        let bit = signal::bit(sig);
        if sig < SIGRTMIN {
            if self.bits.load(Ordering::SeqCst) & bit != 0 {
                return Ok(()); // already pending: the first details stay
            }
            if let Some(slot) = self.info.lock().get_mut(usize::from(sig)) {
                *slot = info;
            }
            self.bits.fetch_or(bit, Ordering::SeqCst);
            return Ok(());
        }
        let (uid, limit) = quota;
        let charged = {
            let mut counts = QUEUED_SIGNALS.lock();
            let total: u64 = counts.values().sum();
            let mine = counts.get(&uid).copied().unwrap_or(0);
            if mine < limit && total < MAX_QUEUED_SIGNALS {
                counts.insert(uid, mine + 1);
                true
            } else {
                false
            }
        };
        if charged {
            self.queue.lock().push_back((sig, info, uid));
        } else if info.code != 0 {
            return Err(Errno::EAGAIN);
        } else if let Some(slot) = self.info.lock().get_mut(usize::from(sig)) {
            *slot = SigInfo { code: 0, addr: 0, value: 0 }; // details lost
        }
        self.bits.fetch_or(bit, Ordering::SeqCst);
        Ok(())
    }

    /// Drops every pending instance of `sig`.
    fn discard(&self, sig: u8) {
        let mut queue = self.queue.lock();
        queue.retain(|&(s, _, uid)| {
            if s == sig {
                uncharge(uid);
            }
            s != sig
        });
        self.bits.fetch_and(!signal::bit(sig), Ordering::SeqCst);
    }

    /// The pending set.
    pub fn bits(&self) -> u64 {
        self.bits.load(Ordering::SeqCst)
    }

    fn take(&self, mask: u64) -> Option<(u8, SigInfo)> {
        self.take_in(!(mask & !signal::UNBLOCKABLE))
    }

    /// Takes the lowest pending signal of `set` (one instance of a
    /// real-time signal; it stays pending while more are queued).
    fn take_in(&self, set: u64) -> Option<(u8, SigInfo)> {
        if self.bits() & set == 0 {
            return None; // (the common case, without the lock)
        }
        let mut queue = self.queue.lock();
        let ready = self.bits() & set;
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as u8 + 1;
        if sig >= SIGRTMIN
            && let Some(at) = queue.iter().position(|&(s, _, _)| s == sig)
        {
            let (_, info, uid) = queue.remove(at).unwrap_or((sig, SigInfo::default(), 0));
            uncharge(uid);
            if !queue.iter().any(|&(s, _, _)| s == sig) {
                self.bits.fetch_and(!signal::bit(sig), Ordering::SeqCst);
            }
            return Some((sig, info));
        }
        self.bits.fetch_and(!signal::bit(sig), Ordering::SeqCst);
        Some((sig, self.info.lock().get(usize::from(sig)).copied().unwrap_or_default()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for &(_, _, uid) in self.queue.lock().iter() {
            uncharge(uid);
        }
    }
}

/// Stop/continue state for job control.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobState {
    /// Stopped by this signal.
    pub stopped: Option<u8>,
    /// A stop `wait4(WUNTRACED)` has not reported yet.
    pub stop_unreported: Option<u8>,
    /// A continue `wait4(WCONTINUED)` has not reported yet.
    pub continue_unreported: bool,
}

/// One thread of a process.
pub struct ThreadInfo {
    /// Thread id (the process id for the first thread).
    pub tid: u32,
    /// Signals sent to this thread (`tgkill`, faults).
    pub pending: Pending,
    task: SpinLock<Option<Arc<Task>>>,
    /// Time spent running the program (user mode), ns.
    user_ns: AtomicU64,
    /// The thread's name (`comm`: `prctl(PR_SET_NAME)`, the program's
    /// file name after `exec`), NUL-padded.
    comm: SpinLock<[u8; 16]>,
    /// Another thread of the process is in `execve`: this one must end
    /// (at its next return to user mode; blocking calls are interrupted).
    must_exit: core::sync::atomic::AtomicBool,
    /// Scheduling policy and priority (`sched_setscheduler`).
    pub sched: SpinLock<SchedParams>,
    /// The `set_robust_list` head, for `get_robust_list` from elsewhere.
    robust: AtomicU64,
    /// A copy of the thread's blocked mask, for senders (see
    /// [`Process::sync_signal_state`]).
    blocked: AtomicU64,
    /// The signals the process ignores (`SIG_IGN`, or a default action
    /// of ignoring): senders discard them unless blocked, as Linux does.
    ignored: AtomicU64,
    /// seccomp mode (0: none), read on every system call.
    pub seccomp_mode: core::sync::atomic::AtomicU8,
    /// seccomp filters.
    pub seccomp: SpinLock<crate::seccomp::State>,
}

/// A thread's scheduling policy as `sched_setscheduler` and
/// `sched_setattr` set it. Recorded and reported; the scheduler itself
/// runs every thread round-robin (real-time policies get no precedence).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedParams {
    /// `SCHED_OTHER` 0, `SCHED_FIFO` 1, `SCHED_RR` 2, `SCHED_BATCH` 3,
    /// `SCHED_IDLE` 5, `SCHED_DEADLINE` 6.
    pub policy: u32,
    /// Real-time priority (1..=99 for FIFO and RR, else 0).
    pub priority: u32,
    /// `SCHED_RESET_ON_FORK`: children start as `SCHED_OTHER`.
    pub reset_on_fork: bool,
    /// `SCHED_DEADLINE` runtime, deadline and period (ns).
    pub deadline: [u64; 3],
}

impl SchedParams {
    /// What a child created by this thread starts with.
    pub fn for_child(self) -> Self {
        if self.reset_on_fork { Self::default() } else { self }
    }
}

impl ThreadInfo {
    fn new(tid: u32) -> Arc<Self> {
        Arc::new(Self {
            tid,
            pending: Pending::new(),
            task: SpinLock::new(None),
            user_ns: AtomicU64::new(0),
            comm: SpinLock::new([0; 16]),
            must_exit: core::sync::atomic::AtomicBool::new(false),
            sched: SpinLock::new(SchedParams::default()),
            robust: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            ignored: AtomicU64::new(signal::DEFAULT_IGNORED),
            seccomp_mode: core::sync::atomic::AtomicU8::new(0),
            seccomp: SpinLock::new(crate::seccomp::State::default()),
        })
    }

    /// Gives this new thread `from`'s seccomp state (fork, clone).
    pub fn inherit_seccomp(&self, from: &ThreadInfo) {
        let state = from.seccomp.lock().clone();
        self.seccomp_mode.store(state.mode, Ordering::SeqCst);
        *self.seccomp.lock() = state;
    }

    /// True when a signal `sig` sent now would be discarded: the process
    /// ignores it and this thread does not block it (Linux's
    /// `sig_ignored`).
    fn discards(&self, sig: u8) -> bool {
        let bit = signal::bit(sig);
        self.ignored.load(Ordering::SeqCst) & bit != 0 && self.blocked.load(Ordering::SeqCst) & bit == 0
    }

    fn wake(&self) {
        if let Some(task) = self.task.lock().clone() {
            tessera_sched::wake(&task);
        }
    }

    /// Whether the thread must end (another thread runs `execve`).
    pub fn must_exit(&self) -> bool {
        self.must_exit.load(Ordering::SeqCst)
    }

    /// The robust-futex list head it registered.
    pub fn robust_list(&self) -> u64 {
        self.robust.load(Ordering::Relaxed)
    }

    /// Records the robust-futex list head (`set_robust_list`).
    pub fn set_robust_list(&self, head: u64) {
        self.robust.store(head, Ordering::Relaxed);
    }

    /// The processor the thread runs on or last ran on (`/proc/PID/stat`'s
    /// `processor`).
    pub fn processor(&self) -> u32 {
        self.task.lock().as_ref().map_or(0, |t| t.home() as u32)
    }

    /// The processors the thread may run on, one bit each, within those
    /// online (`sched_getaffinity`).
    pub fn affinity(&self) -> u64 {
        self.task.lock().as_ref().map_or(tessera_sched::online_mask(), |t| tessera_sched::affinity(t))
    }

    /// Lets the thread run only on the processors in `mask`
    /// (`sched_setaffinity`): EINVAL when none of them is online.
    pub fn set_affinity(&self, mask: u64) -> Result<(), Errno> {
        let task = self.task.lock().clone();
        match task {
            Some(task) => tessera_sched::set_affinity(&task, mask).map_err(|_| Errno::EINVAL),
            None if mask & tessera_sched::online_mask() == 0 => Err(Errno::EINVAL),
            None => Ok(()),
        }
    }

    /// Whether the thread is running or ready to run (a thread whose task
    /// is not started yet counts as ready).
    pub fn is_runnable(&self) -> bool {
        self.task.lock().as_ref().is_none_or(tessera_sched::is_runnable)
    }

    /// Makes `sig` pending for this thread and wakes it (a signal the
    /// kernel sends: a real-time one is charged to no user's limit).
    pub fn send_signal(&self, sig: u8, info: SigInfo) {
        let _ = self.queue_signal(sig, info, (u32::MAX, MAX_QUEUED_SIGNALS));
    }

    /// Makes `sig` pending for this thread, a real-time instance charged
    /// to `quota` (user, limit): EAGAIN over the limit (see [`Pending`]).
    pub fn queue_signal(&self, sig: u8, info: SigInfo, quota: (u32, u64)) -> Result<(), Errno> {
        if sig == 0 || usize::from(sig) > signal::NSIG || self.discards(sig) {
            return Ok(());
        }
        self.pending.add(sig, info, quota)?;
        self.wake();
        Ok(())
    }
}

/// `SA_NOCLDWAIT`.
const SA_NOCLDWAIT: u64 = 2;

/// A process's user and group ids (real, effective, saved, file system)
/// and supplementary groups, as `setuid` and its relatives set them (Linux
/// rules: a process with effective uid 0 may set any; others only to one
/// of their own real, effective or saved ids). Inherited by `fork`; `exec`
/// of a set-user-id or set-group-id program changes the effective and
/// saved ids. File-system checks use the file-system ids, which follow the
/// effective ones unless `setfsuid`/`setfsgid` moved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Real user id.
    pub ruid: u32,
    /// Effective user id (what permission checks use).
    pub euid: u32,
    /// Saved set-user-id.
    pub suid: u32,
    /// File-system user id.
    pub fsuid: u32,
    /// Real group id.
    pub rgid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Saved set-group-id.
    pub sgid: u32,
    /// File-system group id.
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Arc<[u32]>,
    /// Capability sets (bit N: capability N): what privileged checks use.
    pub caps: Caps,
}

/// A process's capability sets, changed as Linux's commoncap changes
/// them: with the uids (a process whose uids all leave 0 loses its
/// permitted and effective sets unless it asked to keep them; the
/// effective set follows the effective uid), at `exec` (root, or a
/// set-user-id-root program, gets the bounding set), and by `capset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// What privileged checks see.
    pub effective: u64,
    /// What the effective set may hold.
    pub permitted: u64,
    /// What is kept across `exec` (with file capabilities; none here).
    pub inheritable: u64,
    /// The limit on what `exec` grants (`PR_CAPBSET_DROP`).
    pub bounding: u64,
    /// Kept across `exec` by unprivileged programs (`PR_CAP_AMBIENT`).
    pub ambient: u64,
    /// `PR_SET_KEEPCAPS`: keep the permitted set when the uids leave 0.
    pub keep: bool,
}

/// Every capability Linux 6.1 knows (0 ..= CAP_CHECKPOINT_RESTORE 40).
pub const ALL_CAPS: u64 = (1 << 41) - 1;

/// Capability numbers used by the checks here.
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const LINUX_IMMUTABLE: u32 = 9;
    pub const NET_ADMIN: u32 = 12;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const IPC_LOCK: u32 = 14;
    pub const IPC_OWNER: u32 = 15;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_PACCT: u32 = 20;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const SYS_NICE: u32 = 23;
    pub const SYS_RESOURCE: u32 = 24;
    pub const SYS_TIME: u32 = 25;
    pub const MKNOD: u32 = 27;
    pub const SYSLOG: u32 = 34;
    pub const MAC_OVERRIDE: u32 = 32;
}

/// The capabilities that follow the file-system uid (`setfsuid`).
const FS_CAPS: u64 = 1 << cap::CHOWN
    | 1 << cap::DAC_OVERRIDE
    | 1 << cap::DAC_READ_SEARCH
    | 1 << cap::FOWNER
    | 1 << cap::FSETID
    | 1 << cap::LINUX_IMMUTABLE
    | 1 << cap::MAC_OVERRIDE
    | 1 << cap::MKNOD;

impl Caps {
    /// Everything (uid 0 at boot).
    pub const fn full() -> Self {
        Self { effective: ALL_CAPS, permitted: ALL_CAPS, inheritable: 0, bounding: ALL_CAPS, ambient: 0, keep: false }
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self { ruid: 0, euid: 0, suid: 0, fsuid: 0, rgid: 0, egid: 0, sgid: 0, fsgid: 0, groups: Arc::from([]), caps: Caps::full() }
    }
}

/// Most supplementary groups (`NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;

impl Credentials {
    /// What the auxiliary vector reports.
    pub fn aux_ids(&self) -> exec::AuxIds {
        exec::AuxIds { uid: self.ruid, euid: self.euid, gid: self.rgid, egid: self.egid, secure: self.ruid != self.euid || self.rgid != self.egid }
    }

    /// Who file-system operations are done as.
    pub fn identity(&self) -> tessera_vfs::Identity {
        tessera_vfs::Identity { uid: self.fsuid, gid: self.fsgid, groups: self.groups.clone() }
    }

    /// The real ids as an identity (`access(2)` checks with them).
    pub fn real_identity(&self) -> tessera_vfs::Identity {
        tessera_vfs::Identity { uid: self.ruid, gid: self.rgid, groups: self.groups.clone() }
    }

    /// `setfsuid`/`setfsgid`: sets the file-system id if privileged or one
    /// of the process's own ids; returns the old one either way (Linux).
    pub fn set_fs(&mut self, kind: IdKind, id: u32) -> u32 {
        let (old, ids) = match kind {
            IdKind::User => (self.fsuid, [self.ruid, self.euid, self.suid, self.fsuid]),
            IdKind::Group => (self.fsgid, [self.rgid, self.egid, self.sgid, self.fsgid]),
        };
        let privileged = self.capable(if kind == IdKind::User { cap::SETUID } else { cap::SETGID });
        if id != KEEP && (privileged || ids.contains(&id)) {
            match kind {
                IdKind::User => {
                    let before = self.clone();
                    self.fsuid = id;
                    *self = self.clone().caps_follow_uids(&before);
                }
                IdKind::Group => self.fsgid = id,
            }
        }
        old
    }

    /// The ids after `exec` of a file with `meta`: a set-user-id file makes
    /// its owner the effective uid, a set-group-id file (with group
    /// execute) its group the effective gid; the saved ids copy the
    /// effective ones, the file-system ids follow them.
    pub fn after_exec(&self, meta: &tessera_vfs::Metadata) -> Self {
        let mut new = self.clone();
        let set_id = meta.perm & tessera_vfs::perm::SET_UID != 0 || (meta.perm & tessera_vfs::perm::SET_GID != 0 && meta.perm & 0o010 != 0);
        if meta.perm & tessera_vfs::perm::SET_UID != 0 {
            new.euid = meta.uid;
        }
        if meta.perm & tessera_vfs::perm::SET_GID != 0 && meta.perm & 0o010 != 0 {
            new.egid = meta.gid;
        }
        new.suid = new.euid;
        new.sgid = new.egid;
        new.fsuid = new.euid;
        new.fsgid = new.egid;
        // Capabilities (Linux's cap_bprm_creds_from_file with no file
        // capabilities): root, real or effective, gets the bounding set
        // and its inheritable set; the effective set is full only for
        // an effective root. Others keep only their ambient set, which a
        // set-id program clears.
        let caps = &mut new.caps;
        if set_id {
            caps.ambient = 0;
        }
        if new.euid == 0 || new.ruid == 0 {
            caps.permitted = caps.bounding | caps.inheritable;
            caps.effective = if new.euid == 0 { caps.permitted } else { 0 };
        } else {
            caps.permitted = caps.ambient;
            caps.effective = caps.ambient;
        }
        caps.keep = false;
        new
    }

    /// True when the effective set holds capability `number`.
    pub fn capable(&self, number: u32) -> bool {
        self.caps.effective & (1u64 << (number & 63)) != 0
    }

    /// Linux's `cap_emulate_setxuid` and `setfsuid` rules after the user
    /// ids changed from `old` to `self`.
    fn caps_follow_uids(mut self, old: &Self) -> Self {
        let was_root = old.ruid == 0 || old.euid == 0 || old.suid == 0;
        let none_root = self.ruid != 0 && self.euid != 0 && self.suid != 0;
        if was_root && none_root && !self.caps.keep {
            self.caps.permitted = 0;
            self.caps.effective = 0;
        }
        if was_root && none_root {
            self.caps.ambient = 0;
        }
        if old.euid == 0 && self.euid != 0 {
            self.caps.effective = 0;
        }
        if old.euid != 0 && self.euid == 0 {
            self.caps.effective = self.caps.permitted;
        }
        if old.fsuid == 0 && self.fsuid != 0 {
            self.caps.effective &= !FS_CAPS;
        } else if old.fsuid != 0 && self.fsuid == 0 {
            self.caps.effective |= self.caps.permitted & FS_CAPS;
        }
        self
    }

    /// `capset(effective, permitted, inheritable)` on one's own sets,
    /// with Linux's limits (EPERM): the permitted set only shrinks, the
    /// effective set stays within it, and the inheritable set grows only
    /// from the permitted set (from the bounding set with CAP_SETPCAP),
    /// never past the bounding set.
    pub fn set_caps(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<Self, Errno> {
        let old = self.caps;
        let inheritable_room = if self.capable(cap::SETPCAP) { old.inheritable | old.bounding } else { old.inheritable | old.permitted };
        if inheritable & !inheritable_room != 0
            || inheritable & !(old.inheritable | old.bounding) != 0
            || permitted & !old.permitted != 0
            || effective & !permitted != 0
        {
            return Err(Errno::EPERM);
        }
        let mut new = self.clone();
        new.caps.effective = effective;
        new.caps.permitted = permitted;
        new.caps.inheritable = inheritable;
        // The ambient set stays within permitted and inheritable.
        new.caps.ambient &= permitted & inheritable;
        Ok(new)
    }
}

/// `-1` in an id argument: leave that id as it is.
const KEEP: u32 = u32::MAX;

/// Sets (real, effective, saved) ids `old` to `new` (KEEP: unchanged),
/// each new id being one of the old ones unless `privileged`.
fn set_res(old: [u32; 3], new: [u32; 3], privileged: bool) -> Result<[u32; 3], Errno> {
    if !privileged && new.iter().any(|&id| id != KEEP && !old.contains(&id)) {
        return Err(Errno::EPERM);
    }
    let mut out = old;
    for (slot, id) in out.iter_mut().zip(new) {
        if id != KEEP {
            *slot = id;
        }
    }
    Ok(out)
}

/// `setreuid` rules on (real, effective, saved).
fn set_re(old: [u32; 3], real: u32, effective: u32, privileged: bool) -> Result<[u32; 3], Errno> {
    let [ruid, euid, suid] = old;
    if !privileged && ((real != KEEP && real != ruid && real != euid) || (effective != KEEP && !old.contains(&effective))) {
        return Err(Errno::EPERM);
    }
    let new_real = if real == KEEP { ruid } else { real };
    let new_effective = if effective == KEEP { euid } else { effective };
    // The saved id follows the effective one when the real id is set, or
    // the effective one is set to something other than the old real id.
    let new_saved = if real != KEEP || (effective != KEEP && effective != ruid) { new_effective } else { suid };
    Ok([new_real, new_effective, new_saved])
}

/// `setuid` rules: privileged sets all three, others only the effective
/// id, to their real or saved id.
fn set_one(old: [u32; 3], id: u32, privileged: bool) -> Result<[u32; 3], Errno> {
    if id == KEEP {
        return Err(Errno::EINVAL);
    }
    match privileged {
        true => Ok([id, id, id]),
        false if id == old[0] || id == old[2] => Ok([old[0], id, old[2]]),
        false => Err(Errno::EPERM),
    }
}

/// Which ids a call sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// User ids.
    User,
    /// Group ids.
    Group,
}

impl IdKind {
    /// The capability that lets a process set any id of this kind.
    fn cap(self) -> u32 {
        match self {
            IdKind::User => cap::SETUID,
            IdKind::Group => cap::SETGID,
        }
    }
}

impl Credentials {
    fn ids(&self, kind: IdKind) -> [u32; 3] {
        match kind {
            IdKind::User => [self.ruid, self.euid, self.suid],
            IdKind::Group => [self.rgid, self.egid, self.sgid],
        }
    }

    /// The ids with (real, effective, saved) of `kind` replaced; the
    /// file-system id follows the effective one.
    fn with(self, kind: IdKind, [r, e, s]: [u32; 3]) -> Self {
        match kind {
            IdKind::User => {
                let old = self.clone();
                Self { ruid: r, euid: e, suid: s, fsuid: e, ..self }.caps_follow_uids(&old)
            }
            IdKind::Group => Self { rgid: r, egid: e, sgid: s, fsgid: e, ..self },
        }
    }

    /// `setgroups`: the superuser only.
    pub fn set_groups(self, groups: &[u32]) -> Result<Self, Errno> {
        if !self.capable(cap::SETGID) {
            return Err(Errno::EPERM);
        }
        Ok(Self { groups: Arc::from(groups), ..self })
    }

    /// `setuid` / `setgid`.
    pub fn set_id(self, kind: IdKind, id: u32) -> Result<Self, Errno> {
        let ids = set_one(self.ids(kind), id, self.capable(kind.cap()))?;
        Ok(self.with(kind, ids))
    }

    /// `setreuid` / `setregid` (`u32::MAX`: unchanged).
    pub fn set_re(self, kind: IdKind, real: u32, effective: u32) -> Result<Self, Errno> {
        let ids = set_re(self.ids(kind), real, effective, self.capable(kind.cap()))?;
        Ok(self.with(kind, ids))
    }

    /// `setresuid` / `setresgid` (`u32::MAX`: unchanged).
    pub fn set_res(self, kind: IdKind, ids: [u32; 3]) -> Result<Self, Errno> {
        let ids = set_res(self.ids(kind), ids, self.capable(kind.cap()))?;
        Ok(self.with(kind, ids))
    }

    /// (real, effective, saved) of `kind`.
    pub fn get(&self, kind: IdKind) -> [u32; 3] {
        self.ids(kind)
    }
}

/// What a new process shares with its creator (see
/// [`Process::fork_sharing`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sharing {
    /// The address space (CLONE_VM).
    pub memory: bool,
    /// The descriptor table (CLONE_FILES).
    pub files: bool,
    /// Working directory, root and umask (CLONE_FS).
    pub fs: bool,
}

/// The process whose thread runs now, if a user thread does.
pub fn current() -> Option<Arc<ProcessInfo>> {
    let task = framekernel::task::current();
    all().into_iter().find(|p| p.threads.lock().iter().any(|t| t.task.lock().as_ref().is_some_and(|own| Arc::ptr_eq(own, &task))))
}

/// What the process table knows about a process; shared with its parent,
/// its threads, `kill` and (later) `/proc`.
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    ppid: AtomicU32,
    /// Set at `exec`: a parent waiting in `vfork` may go on.
    vfork_done: core::sync::atomic::AtomicBool,
    pgid: AtomicU32,
    sid: AtomicU32,
    outcome: SpinLock<Option<Outcome>>,
    /// Set when the process is ending (`exit_group`, fatal signal): the
    /// outcome the last thread reports.
    ending: SpinLock<Option<Outcome>>,
    /// Set with `ending`, and while `job.stopped` is set: what the return
    /// to user mode must look at besides signals (read without a lock).
    attention: core::sync::atomic::AtomicBool,
    /// Woken when a child of this process exits.
    pub children_changed: WaitQueue,
    /// Woken when this process exits.
    pub exited: WaitQueue,
    /// Job control: the stop signal while stopped; a stop or continue not
    /// yet reported to `wait4` (WUNTRACED / WCONTINUED).
    job: SpinLock<JobState>,
    /// Woken when a stopped process is continued or killed.
    continued: WaitQueue,
    /// Signals sent to the process as a whole.
    pub pending: Pending,
    threads: SpinLock<Vec<Arc<ThreadInfo>>>,
    /// Executable path.
    pub exe: SpinLock<String>,
    /// The process's descriptors and working directory, for `/proc`.
    view: SpinLock<Option<(Files, Fs)>>,
    /// The process's memory, for `/proc/[pid]/maps` (replaced at exec).
    memory_view: SpinLock<Option<Memory>>,
    /// NUL-separated arguments.
    pub cmdline: SpinLock<Vec<u8>>,
    /// User and group ids.
    credentials: SpinLock<Credentials>,
    /// When the process was created (ns since boot).
    pub start_ns: u64,
    /// Nice value (-20..=19), inherited by `fork`.
    pub nice: core::sync::atomic::AtomicI32,
    /// Resource limits (`RLIMIT_*`: soft, hard), inherited by `fork`.
    limits: SpinLock<Limits>,
    /// What `prctl` sets.
    pub prctl: SpinLock<PrctlState>,
    /// CPU time of its threads that ended: (user, total) ns.
    ended_threads: SpinLock<(u64, u64)>,
    /// CPU time of its children (and theirs) that it waited for: (user,
    /// total) ns.
    waited_children: SpinLock<(u64, u64)>,
    /// Peak resident set (KiB) of address spaces this process left
    /// (`exec`, exit): Linux's `signal->maxrss`.
    maxrss_kib: AtomicU64,
    /// Largest peak of the children it waited for (and theirs).
    children_maxrss_kib: AtomicU64,
    /// The signal the parent gets when this process ends (`clone`'s low
    /// byte; 0: none). SIGCHLD after `exec` or a new parent.
    exit_signal: core::sync::atomic::AtomicU8,
    /// Set by `exec`.
    execed: core::sync::atomic::AtomicBool,
    /// Children are reaped when they end (SIGCHLD ignored, SA_NOCLDWAIT).
    autoreap: core::sync::atomic::AtomicBool,
    /// AIO contexts by ring address (`io_setup`); gone at `exec`.
    pub aio: SpinLock<BTreeMap<u64, crate::syscall::aio::Context>>,
}

/// Time programs spent in user mode since boot, over all processes (ns).
static USER_NS_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Time all programs spent in user mode since boot (ns), for `/proc/stat`.
pub fn user_ns_total() -> u64 {
    USER_NS_TOTAL.load(Ordering::Relaxed)
}

/// Time programs spent in user mode on each processor since boot (ns).
static USER_NS_BY_CPU: [AtomicU64; framekernel::cpu::MAX_CPUS] = [const { AtomicU64::new(0) }; framekernel::cpu::MAX_CPUS];

/// Time programs spent in user mode on processor `index` since boot (ns),
/// for `/proc/stat`'s per-processor lines.
pub fn user_ns_of(index: usize) -> u64 {
    USER_NS_BY_CPU.get(index).map_or(0, |n| n.load(Ordering::Relaxed))
}

static TABLE: SpinLock<BTreeMap<u32, Arc<ProcessInfo>>> = SpinLock::new(BTreeMap::new());
static THREADS: SpinLock<BTreeMap<u32, Arc<ThreadInfo>>> = SpinLock::new(BTreeMap::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// The process with id `pid`, if it exists (zombies included).
pub fn lookup(pid: u32) -> Option<Arc<ProcessInfo>> {
    TABLE.lock().get(&pid).cloned()
}

/// The live thread with id `tid`.
pub fn lookup_thread(tid: u32) -> Option<Arc<ThreadInfo>> {
    THREADS.lock().get(&tid).cloned()
}

/// Every process, by pid.
pub fn all() -> Vec<Arc<ProcessInfo>> {
    TABLE.lock().values().cloned().collect()
}

/// Threads running or waiting for a processor (`procs_running`).
pub fn running_threads() -> u64 {
    let threads: Vec<Arc<ThreadInfo>> = THREADS.lock().values().cloned().collect();
    threads.iter().filter(|t| t.is_runnable()).count() as u64
}

/// Removes a zombie from the table (its parent has collected it).
pub fn reap(pid: u32) {
    TABLE.lock().remove(&pid);
}

/// Removes a thread that never ran; a process left without threads goes too.
fn unregister(info: &Arc<ProcessInfo>, thread: &Arc<ThreadInfo>) {
    THREADS.lock().remove(&thread.tid);
    info.threads.lock().retain(|t| !Arc::ptr_eq(t, thread));
    if info.thread_count() == 0 {
        reap(info.pid);
    }
}

/// A free id for a process or thread.
/// `kernel.pid_max`: ids are below it (default [`MAX_PID`] + 1).
pub static PID_MAX: AtomicU32 = AtomicU32::new(MAX_PID + 1);
/// Bounds for `kernel.pid_max` (Linux's: 301 ..= 4194304).
pub const PID_MAX_RANGE: core::ops::RangeInclusive<u32> = 301..=4_194_304;

/// The next free id from `NEXT_PID` on, wrapping below `pid_max` (EAGAIN
/// when every id is taken).
fn allocate_id(table: &BTreeMap<u32, Arc<ProcessInfo>>) -> Result<u32, Errno> {
    let threads = THREADS.lock();
    let limit = PID_MAX.load(Ordering::Relaxed).max(*PID_MAX_RANGE.start());
    let next = |id: u32| if id + 1 >= limit { 2 } else { id + 1 };
    // The first process is 1; after wrapping, ids start again at 2.
    let mut id = NEXT_PID.load(Ordering::Relaxed);
    if id == 0 || id >= limit {
        id = 2;
    }
    for _ in 0..limit {
        if !table.contains_key(&id) && !threads.contains_key(&id) {
            NEXT_PID.store(next(id), Ordering::Relaxed);
            return Ok(id);
        }
        id = next(id);
    }
    Err(Errno::EAGAIN)
}

/// The id last handed out (`kernel.ns_last_pid`).
pub fn last_pid() -> u32 {
    NEXT_PID.load(Ordering::Relaxed).saturating_sub(1).max(1)
}

/// Makes `last` the id last handed out, so the next is `last + 1`
/// (`kernel.ns_last_pid`, as checkpoint/restore tools set it).
pub fn set_last_pid(last: u32) {
    NEXT_PID.store(last.saturating_add(1), Ordering::Relaxed);
}

fn register(
    ppid: u32,
    pgid: u32,
    sid: u32,
    exe: &str,
    cmdline: Vec<u8>,
    credentials: Credentials,
) -> Result<(Arc<ProcessInfo>, Arc<ThreadInfo>), Errno> {
    let mut table = TABLE.lock();
    if table.len() >= MAX_PROCESSES || THREADS.lock().len() >= MAX_THREADS {
        return Err(Errno::EAGAIN);
    }
    let pid = allocate_id(&table)?;
    let thread = ThreadInfo::new(pid);
    let info = Arc::new(ProcessInfo {
        pid,
        ppid: AtomicU32::new(ppid),
        vfork_done: core::sync::atomic::AtomicBool::new(false),
        pgid: AtomicU32::new(if pgid == 0 { pid } else { pgid }),
        sid: AtomicU32::new(if sid == 0 { pid } else { sid }),
        outcome: SpinLock::new(None),
        ending: SpinLock::new(None),
        attention: core::sync::atomic::AtomicBool::new(false),
        children_changed: WaitQueue::new(),
        exited: WaitQueue::new(),
        job: SpinLock::new(JobState::default()),
        continued: WaitQueue::new(),
        pending: Pending::new(),
        threads: SpinLock::new(alloc::vec![thread.clone()]),
        exe: SpinLock::new(String::from(exe)),
        view: SpinLock::new(None),
        memory_view: SpinLock::new(None),
        cmdline: SpinLock::new(cmdline),
        credentials: SpinLock::new(credentials),
        start_ns: framekernel::time::now_ns(),
        nice: core::sync::atomic::AtomicI32::new(0),
        limits: SpinLock::new(Limits::default()),
        prctl: SpinLock::new(PrctlState::default()),
        ended_threads: SpinLock::new((0, 0)),
        waited_children: SpinLock::new((0, 0)),
        maxrss_kib: AtomicU64::new(0),
        children_maxrss_kib: AtomicU64::new(0),
        aio: SpinLock::new(BTreeMap::new()),
        exit_signal: core::sync::atomic::AtomicU8::new(num::SIGCHLD),
        execed: core::sync::atomic::AtomicBool::new(false),
        autoreap: core::sync::atomic::AtomicBool::new(false),
    });
    table.insert(pid, info.clone());
    THREADS.lock().insert(pid, thread.clone());
    Ok((info, thread))
}

impl ThreadInfo {
    /// The thread's name (`/proc/.../comm`).
    pub fn comm(&self) -> String {
        let name = *self.comm.lock();
        let len = name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(name.get(..len).unwrap_or(&[])).into_owned()
    }

    /// Renames the thread.
    pub fn set_comm(&self, name: [u8; 16]) {
        *self.comm.lock() = name;
    }

    /// This thread's CPU time: (user, total) ns.
    pub fn cpu_ns(&self) -> (u64, u64) {
        let user = self.user_ns.load(Ordering::Relaxed);
        let total = self.task.lock().as_ref().map_or(0, |t| tessera_sched::cpu_ns(t));
        (user, total.max(user))
    }
}

impl ProcessInfo {
    /// CPU time of the process (live and ended threads): (user, total) ns.
    pub fn cpu_ns(&self) -> (u64, u64) {
        // Under the thread list's lock: an ending thread moves its time
        // to `ended_threads` and leaves the list in one step (see `exit`),
        // so it is counted once, and the sum never goes back.
        let threads = self.threads.lock();
        let (mut user, mut total) = *self.ended_threads.lock();
        for thread in threads.iter() {
            let (u, t) = thread.cpu_ns();
            user += u;
            total += t;
        }
        (user, total)
    }

    /// Linux's `ptrace_may_access` (real credentials): may `tracer` read
    /// or change this process (`process_vm_*`, `pidfd_getfd`, `kcmp`,
    /// `get_robust_list`)? Itself; a process of the same user and group
    /// in all three ids that is dumpable; or with CAP_SYS_PTRACE.
    pub fn may_be_traced_by(&self, tracer: &ProcessInfo) -> bool {
        if self.pid == tracer.pid {
            return true;
        }
        let (me, them) = (tracer.credentials(), self.credentials());
        if me.capable(cap::SYS_PTRACE) {
            return true;
        }
        let same = [them.ruid, them.euid, them.suid].iter().all(|&id| id == me.ruid) && [them.rgid, them.egid, them.sgid].iter().all(|&id| id == me.rgid);
        same && self.prctl.lock().dumpable
    }

    /// Whether the process ran `exec` (accounting's AFORK is the opposite).
    pub fn did_exec(&self) -> bool {
        self.execed.load(Ordering::Relaxed)
    }

    /// Notes an `exec`.
    pub fn note_exec(&self) {
        self.execed.store(true, Ordering::Relaxed);
        self.exit_signal.store(num::SIGCHLD, Ordering::Relaxed);
    }

    /// The peak resident set recorded so far (KiB; at exit, the last one).
    pub fn maxrss_seen_kib(&self) -> u64 {
        self.maxrss_kib.load(Ordering::Relaxed)
    }

    /// Records the peak resident set of an address space the process is
    /// leaving (`exec`, exit).
    pub fn note_maxrss(&self, memory: &Memory) {
        let kib = memory.lock().peak_resident_pages() as u64 * 4;
        self.maxrss_kib.fetch_max(kib, Ordering::Relaxed);
    }

    /// `ru_maxrss` of RUSAGE_SELF: the current address space's peak or a
    /// left one's, whichever is larger (KiB).
    pub fn maxrss_kib(&self, memory: &Memory) -> u64 {
        self.maxrss_kib.load(Ordering::Relaxed).max(memory.lock().peak_resident_pages() as u64 * 4)
    }

    /// `ru_maxrss` of RUSAGE_CHILDREN (KiB).
    pub fn children_maxrss_kib(&self) -> u64 {
        self.children_maxrss_kib.load(Ordering::Relaxed)
    }

    /// CPU time of the children it waited for: (user, total) ns.
    pub fn children_cpu_ns(&self) -> (u64, u64) {
        *self.waited_children.lock()
    }

    /// `wait4` collected `child`: its time and its children's count as
    /// this process's children's time (Linux's cutime/cstime).
    pub fn add_waited_child(&self, child: &ProcessInfo) {
        let (u, t) = child.cpu_ns();
        let (cu, ct) = child.children_cpu_ns();
        let peak = child.maxrss_kib.load(Ordering::Relaxed).max(child.children_maxrss_kib());
        self.children_maxrss_kib.fetch_max(peak, Ordering::Relaxed);
        let mut waited = self.waited_children.lock();
        waited.0 += u + cu;
        waited.1 += t + ct;
    }

    /// Sets the signal the parent gets at the end (`clone`); SIGCHLD again
    /// after `exec`.
    pub fn set_exit_signal(&self, signal: u8) {
        self.exit_signal.store(signal, Ordering::Relaxed);
    }

    /// Gives the process another parent (`CLONE_PARENT`).
    pub fn set_ppid(&self, ppid: u32) {
        self.ppid.store(ppid, Ordering::Relaxed);
    }

    /// A `vfork` child let its parent go on (it ran `exec`, or ended).
    pub fn vfork_released(&self) -> bool {
        self.vfork_done.load(Ordering::SeqCst) || self.outcome().is_some()
    }

    /// Whether the process ran `exec` since it was created.
    pub fn has_execed(&self) -> bool {
        self.vfork_done.load(Ordering::SeqCst)
    }

    /// Lets a parent waiting in `vfork` go on (after `exec`).
    pub fn release_vfork(&self) {
        self.vfork_done.store(true, Ordering::SeqCst);
        self.exited.wake_all();
    }

    /// The parent's process id.
    pub fn ppid(&self) -> u32 {
        self.ppid.load(Ordering::Relaxed)
    }
    /// Process group.
    pub fn pgid(&self) -> u32 {
        self.pgid.load(Ordering::Relaxed)
    }
    /// Session.
    pub fn sid(&self) -> u32 {
        self.sid.load(Ordering::Relaxed)
    }
    /// User and group ids.
    pub fn credentials(&self) -> Credentials {
        self.credentials.lock().clone()
    }
    /// Changes them with `change` (which may refuse).
    pub fn change_credentials(&self, change: impl FnOnce(Credentials) -> Result<Credentials, Errno>) -> Result<(), Errno> {
        let mut credentials = self.credentials.lock();
        let new = change(credentials.clone())?;
        // Linux's commit_creds: a process whose effective or file-system
        // ids change, or that gains capabilities, is no longer dumpable
        // (suid_dumpable 0): no core, no ptrace-style access by others.
        let old = &*credentials;
        let gained = new.caps.permitted & !old.caps.permitted != 0 || new.caps.effective & !old.caps.effective & !old.caps.permitted != 0;
        if new.euid != old.euid || new.egid != old.egid || new.fsuid != old.fsuid || new.fsgid != old.fsgid || gained {
            self.prctl.lock().dumpable = false;
        }
        *credentials = new;
        Ok(())
    }
    /// Sets the process group.
    pub fn set_pgid(&self, pgid: u32) {
        self.pgid.store(pgid, Ordering::Relaxed);
    }
    /// Starts a new session led by this process.
    pub fn set_sid(&self) {
        self.sid.store(self.pid, Ordering::Relaxed);
        self.pgid.store(self.pid, Ordering::Relaxed);
    }
    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        *self.outcome.lock()
    }
    /// Whether the process's main thread (its first live one once the
    /// main thread has ended) is running or ready to run: the state Linux
    /// shows in `/proc/PID/stat` is the thread-group leader's.
    pub fn is_runnable(&self) -> bool {
        let threads = self.threads.lock();
        let leader = threads.iter().find(|t| t.tid == self.pid).or_else(|| threads.first());
        leader.is_some_and(|t| t.is_runnable())
    }

    /// Number of live threads.
    pub fn thread_count(&self) -> usize {
        self.threads.lock().len()
    }

    /// The process's descriptor table (for `/proc/[pid]/fd`).
    pub fn files(&self) -> Option<Files> {
        self.view.lock().as_ref().map(|(files, _)| files.clone())
    }

    /// The process's working directory and umask (for `kcmp`).
    pub fn fs(&self) -> Option<Fs> {
        self.view.lock().as_ref().map(|(_, fs)| fs.clone())
    }

    /// The memory map in `/proc/[pid]/maps` form.
    pub fn memory(&self) -> Option<Memory> {
        self.memory_view.lock().clone()
    }

    /// `/proc/[pid]/maps`, while the process has memory.
    pub fn maps(&self) -> Option<String> {
        let memory = self.memory_view.lock().clone()?;
        let text = memory.lock().maps();
        Some(text)
    }

    /// `/proc/[pid]/smaps`, while the process has memory.
    pub fn smaps(&self) -> Option<String> {
        let memory = self.memory_view.lock().clone()?;
        let text = memory.lock().smaps();
        Some(text)
    }

    /// Shows `files` and `fs` as the process's (`/proc`, `kcmp`; after
    /// `unshare`).
    pub fn set_view(&self, files: &Files, fs: &Fs) {
        *self.view.lock() = Some((files.clone(), fs.clone()));
    }

    /// Shows `memory` as the process's (at start and after exec).
    pub fn set_memory_view(&self, memory: &Memory) {
        let old = self.memory_view.lock().replace(memory.clone());
        drop(old); // outside the lock: the last handle writes files back
    }

    /// The working directory's path (for `/proc/[pid]/cwd`).
    pub fn cwd(&self) -> Option<String> {
        self.view.lock().as_ref().map(|(_, fs)| fs.cwd().path())
    }

    /// True when thread `tid` belongs to this process.
    pub fn has_thread(&self, tid: u32) -> bool {
        self.threads.lock().iter().any(|t| t.tid == tid)
    }

    /// The live threads.
    pub fn thread_list(&self) -> Vec<Arc<ThreadInfo>> {
        self.threads.lock().clone()
    }

    /// The process's name: its main thread's (or, once that ended, the
    /// first thread's).
    pub fn comm(&self) -> String {
        let threads = self.threads.lock();
        threads.iter().find(|t| t.tid == self.pid).or(threads.first()).map(|t| t.comm()).unwrap_or_default()
    }

    /// Job-control state.
    pub fn job(&self) -> JobState {
        *self.job.lock()
    }

    /// The resource limits.
    pub fn limits(&self) -> Limits {
        *self.limits.lock()
    }

    /// The soft limit of one resource (`rlimit::*`).
    pub fn soft_limit(&self, resource: usize) -> u64 {
        self.limits.lock().soft(resource)
    }

    /// Replaces the resource limits (checked by the caller).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.lock() = limits;
    }

    /// Takes an unreported stop (for `wait4(WUNTRACED)`).
    pub fn take_stop_report(&self) -> Option<u8> {
        self.job.lock().stop_unreported.take()
    }

    /// An unreported stop, left in place (`waitid(WNOWAIT)`).
    pub fn peek_stop_report(&self) -> Option<u8> {
        self.job.lock().stop_unreported
    }

    /// Whether a continue is unreported, left in place (`waitid(WNOWAIT)`).
    pub fn peek_continue_report(&self) -> bool {
        self.job.lock().continue_unreported
    }

    /// Takes an unreported continue (for `wait4(WCONTINUED)`).
    pub fn take_continue_report(&self) -> bool {
        core::mem::take(&mut self.job.lock().continue_unreported)
    }

    /// Makes `sig` pending for the process and wakes its threads so that
    /// one not blocking it takes it. SIGCONT resumes a stopped process
    /// (and drops pending stop signals); a stop signal drops a pending
    /// SIGCONT; SIGKILL also wakes a stopped process so that it dies.
    pub fn send_signal(&self, sig: u8, info: SigInfo) {
        // Signals the kernel sends (timers, notifications, children) are
        // not charged to the user's RLIMIT_SIGPENDING (Linux keeps their
        // queue entries aside); only the global bound applies.
        let _ = self.queue_signal_with(sig, info, (u32::MAX, MAX_QUEUED_SIGNALS));
    }

    /// Who a real-time signal queued for this process is charged to: its
    /// real user, with its `RLIMIT_SIGPENDING`.
    pub fn signal_quota(&self) -> (u32, u64) {
        let limit = self.limits().0.get(rlimit::SIGPENDING).map_or(DEFAULT_SIGPENDING, |l| l.0);
        (self.credentials().ruid, limit)
    }

    /// [`Self::send_signal`], reporting EAGAIN when a real-time signal
    /// with details would go over the queue limit.
    pub fn queue_signal(&self, sig: u8, info: SigInfo) -> Result<(), Errno> {
        self.queue_signal_with(sig, info, self.signal_quota())
    }

    fn queue_signal_with(&self, sig: u8, info: SigInfo, quota: (u32, u64)) -> Result<(), Errno> {
        if sig == 0 || usize::from(sig) > signal::NSIG || self.outcome().is_some() {
            return Ok(());
        }
        if sig == num::SIGCONT {
            self.resume_stopped();
        } else if signal::is_stop_signal(sig) {
            self.pending.bits.fetch_and(!signal::bit(num::SIGCONT), Ordering::SeqCst);
        }
        if sig == num::SIGKILL {
            self.continued.wake_all();
        }
        let threads = self.threads.lock().clone();
        if !threads.is_empty() && threads.iter().all(|t| t.discards(sig)) {
            return Ok(()); // ignored (after SIGCONT has resumed the process)
        }
        self.pending.add(sig, info, quota)?;
        for thread in threads {
            thread.wake();
        }
        Ok(())
    }

    /// What SIGCONT does whoever it is sent to (also by `tgkill`): the
    /// pending stop signals go, a stopped process runs again and its
    /// parent hears CLD_CONTINUED.
    pub fn resume_stopped(&self) {
        {
            for stop in [num::SIGSTOP, num::SIGTSTP, num::SIGTTIN, num::SIGTTOU] {
                self.pending.bits.fetch_and(!signal::bit(stop), Ordering::SeqCst);
            }
            let resumed = {
                let mut job = self.job.lock();
                let was = job.stopped.take().is_some();
                self.attention.store(self.ending.lock().is_some(), Ordering::SeqCst);
                if was {
                    job.continue_unreported = true;
                    job.stop_unreported = None;
                }
                was
            };
            if resumed {
                self.continued.wake_all();
                self.notify_parent(6, 0); // CLD_CONTINUED
            }
        }
    }

    /// Tells the parent about a change of this child (SIGCHLD with
    /// `code`, and a wake-up for `wait4`).
    fn notify_parent(&self, code: i32, _status: u8) {
        if let Some(parent) = lookup(self.ppid()).filter(|_| self.ppid() != 0) {
            parent.send_signal(num::SIGCHLD, SigInfo { code, addr: u64::from(self.pid), value: 0 });
            parent.children_changed.wake_all();
        }
    }

    /// Blocks the calling kernel task until this process has ended.
    pub fn wait_exit(&self) -> Outcome {
        self.exited.wait_until(|| self.outcome())
    }
}

/// A thread as its own task holds it; the process's memory, files and
/// signal actions are shared handles.
pub struct Process {
    /// The process's table entry.
    pub info: Arc<ProcessInfo>,
    /// This thread.
    pub thread: Arc<ThreadInfo>,
    /// Address space (shared by the threads).
    pub memory: Memory,
    /// Open files (shared by the threads).
    pub files: Files,
    /// Working directory and umask (shared by the threads).
    pub fs: Fs,
    /// `set_tid_address` / `CLONE_CHILD_CLEARTID` pointer.
    pub clear_child_tid: u64,
    /// `CLONE_CHILD_SETTID` pointer: the new thread stores its id there
    /// itself, in its own address space, before it first runs user code
    /// (Linux's `schedule_tail`; a bad address is ignored, as there).
    /// Written from the parent, the store loaded the child's page tables
    /// and then the parent's again: two whole-TLB flushes under QEMU.
    pub set_child_tid: u64,
    /// `set_robust_list` head.
    pub robust_list: u64,
    /// A sleep a stop interrupted: its deadline and `rem` pointer, for
    /// `restart_syscall` (Linux's restart block).
    pub restart_sleep: Option<(u64, u64)>,
    /// Signal actions (shared) and this thread's mask.
    pub signals: SignalState,
    /// Thread name (`prctl(PR_SET_NAME)`), NUL padded.
    pub name: [u8; 16],
    /// `personality(2)` (inherited by `fork` and threads, kept by `exec`).
    pub personality: u32,
    /// The bounce buffer of this thread's reads and writes, kept between
    /// calls so that it is not allocated and zeroed for each (it only
    /// grows, to `IO_CHUNK` at most; a new program starts without it).
    /// It holds bytes of this thread's earlier transfers: only the bytes
    /// a transfer fills are ever copied out.
    pub io_buffer: Vec<u8>,
}

/// How one thread's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadEnd {
    /// `exit`: only this thread ends (the process ends with the last one).
    Thread(u8),
    /// `exit_group` or a fatal signal: the whole process ends.
    Group(Outcome),
}

/// What [`Process::interrupt_check`]'s closure answers: a signal pending
/// and not in `mask` (the unblockable ones already taken out), or the
/// thread told to exit.
fn interrupted(info: &ProcessInfo, thread: &ThreadInfo, mask: u64) -> bool {
    (thread.pending.bits() | info.pending.bits()) & !mask != 0 || thread.must_exit.load(Ordering::SeqCst)
}

/// [`Process::interrupt_check`] from the process's parts, lent instead of
/// cloned: for a caller that holds other fields of the process mutably at
/// the same time (`read`/`write` and their bounce buffer), on every call.
pub fn lent_interrupt_check<'a>(info: &'a ProcessInfo, thread: &'a ThreadInfo, signals: &SignalState) -> impl Fn() -> bool + 'a {
    let mask = signals.mask & !signal::UNBLOCKABLE;
    move || interrupted(info, thread, mask)
}

impl Process {
    /// True when a signal this thread does not block is pending for it or
    /// for its process (blocking calls return `EINTR` then).
    pub fn interrupted(&self) -> bool {
        let mask = self.signals.mask & !signal::UNBLOCKABLE;
        (self.thread.pending.bits() | self.info.pending.bits()) & !mask != 0
    }

    /// A closure form of [`Process::interrupted`] for wait conditions.
    pub fn interrupt_check(&self) -> impl Fn() -> bool + use<> {
        let (info, thread, mask) = (self.info.clone(), self.thread.clone(), self.signals.mask & !signal::UNBLOCKABLE);
        move || interrupted(&info, &thread, mask)
    }

    /// `execve` from one thread of a multi-threaded process: every other
    /// thread ends first (Linux's `de_thread`), so none of them runs on
    /// with the new image's credentials or memory. Returns once this is
    /// the only thread; EAGAIN if another thread's `execve` got there
    /// first (this thread then ends).
    pub fn end_other_threads(&self) -> Result<(), Errno> {
        if self.thread.must_exit.load(Ordering::SeqCst) {
            return Err(Errno::EAGAIN);
        }
        let others: Vec<Arc<ThreadInfo>> = self.info.threads.lock().iter().filter(|t| !Arc::ptr_eq(t, &self.thread)).cloned().collect();
        if others.is_empty() {
            return Ok(());
        }
        for other in &others {
            other.must_exit.store(true, Ordering::SeqCst);
            other.wake();
        }
        self.info.continued.wake_all(); // stopped threads re-check
        // The others may run on other processors: between looks, this one
        // halts until its next interrupt instead of spinning (and kicking
        // them with a wake every time).
        while self.info.threads.lock().iter().any(|t| !Arc::ptr_eq(t, &self.thread)) {
            tessera_sched::yield_now();
            framekernel::arch::wait_for_interrupt();
            for other in &others {
                other.wake();
            }
        }
        Ok(())
    }

    /// Stops the process (this thread) for job control until SIGCONT or
    /// SIGKILL arrives; tells the parent.
    pub fn stop_until_continued(&mut self, sig: u8) {
        {
            let mut job = self.info.job.lock();
            job.stopped = Some(sig);
            self.info.attention.store(true, Ordering::SeqCst);
            job.stop_unreported = Some(sig);
            job.continue_unreported = false;
        }
        self.info.notify_parent(5, sig); // CLD_STOPPED
        let info = self.info.clone();
        let thread = self.thread.clone();
        self.info.continued.wait_until(|| {
            let killed = (info.pending.bits() | thread.pending.bits()) & signal::bit(num::SIGKILL) != 0;
            (info.job.lock().stopped.is_none() || killed).then_some(())
        });
    }

    /// Job control for the other threads: while the process is stopped
    /// (by whichever thread took the stop signal), this thread waits too.
    pub fn wait_while_stopped(&self) {
        if self.info.job.lock().stopped.is_none() {
            return;
        }
        let info = self.info.clone();
        let thread = self.thread.clone();
        self.info.continued.wait_until(|| {
            let killed = (info.pending.bits() | thread.pending.bits()) & signal::bit(num::SIGKILL) != 0
                || thread.must_exit.load(Ordering::SeqCst);
            let ending = info.ending.lock().is_some();
            (info.job.lock().stopped.is_none() || killed || ending).then_some(())
        });
    }

    /// Takes the lowest pending signal in `set`, blocked or not
    /// (`rt_sigtimedwait`).
    pub fn take_signal_in(&self, set: u64) -> Option<(u8, SigInfo)> {
        self.thread.pending.take_in(set).or_else(|| self.info.pending.take_in(set)).map(|taken| self.timer_overrun(taken))
    }

    /// A POSIX timer's signal gets its overrun count as it is taken.
    fn timer_overrun(&self, (sig, mut info): (u8, SigInfo)) -> (u8, SigInfo) {
        if info.code == -2 {
            let id = info.addr as u32;
            if let Some(overrun) = crate::timers::delivered(self.info.pid, id) {
                info.addr = u64::from(id) | u64::from(overrun) << 32;
            }
        }
        (sig, info)
    }

    /// True when a signal in `set` is pending (blocked or not).
    pub fn signal_pending_in(&self, set: u64) -> bool {
        (self.thread.pending.bits() | self.info.pending.bits()) & set != 0
    }

    /// Takes the lowest pending signal this thread does not block.
    pub fn take_signal(&self) -> Option<(u8, SigInfo)> {
        let mask = self.signals.mask;
        self.thread.pending.take(mask).or_else(|| self.info.pending.take(mask)).map(|taken| self.timer_overrun(taken))
    }
}

/// The default thread name: the last path component, cut to 15 bytes.
pub fn name_of(path: &str) -> [u8; 16] {
    let base = path.rsplit('/').next().unwrap_or(path).as_bytes();
    let mut name = [0u8; 16];
    let len = base.len().min(15);
    if let (Some(dst), Some(src)) = (name.get_mut(..len), base.get(..len)) {
        dst.copy_from_slice(src);
    }
    name
}

/// The signal a CPU exception in user mode raises, with its `si_code`.
pub fn signal_for(vector: u8) -> (u8, i32) {
    match vector {
        0 => (num::SIGFPE, 1),       // FPE_INTDIV
        16 | 19 => (num::SIGFPE, 0), // x87 / SIMD
        1 | 3 => (num::SIGTRAP, 1),
        6 => (num::SIGILL, 2), // ILL_ILLOPN
        17 => (num::SIGBUS, 1),
        _ => (num::SIGSEGV, 128), // SI_KERNEL
    }
}

impl Process {
    /// Loads `program` as a new process started by the kernel (parent 0).
    /// `path` is resolved in the file system from `cwd` (absolute), which
    /// becomes the process's working directory.
    pub fn spawn(cwd: &str, path: &str, argv: &[&[u8]]) -> Result<(Process, UserContext), Errno> {
        let env = exec::default_env();
        let fs = Fs::at_root()?;
        let start = crate::fs::vfs()?.resolve(&fs.cwd(), cwd, true)?;
        fs.set_cwd(start);
        let argv_owned: Vec<Vec<u8>> = argv.iter().map(|a| a.to_vec()).collect();
        let program = exec::load_path(&fs, path.as_bytes(), argv_owned, &env, &Credentials::default())?;
        let (loaded, argv) = (program.loaded, program.argv);
        // The name is the file name asked for (`/sbin/init` is "init"
        // although it is busybox), as Linux's comm.
        let name = name_of(path);
        let path = program.exe.as_str();
        let mut context = UserContext::new();
        context.regs.rip = loaded.entry;
        context.regs.rsp = loaded.sp;
        let cmdline: Vec<u8> = argv.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
        let (info, thread) = register(0, 0, 0, path, cmdline, Credentials::default())?;
        let process = Process {
            info,
            thread,
            memory: loaded.memory,
            files: Files::new(FileTable::with_console()),
            fs,
            clear_child_tid: 0,
            set_child_tid: 0,
            robust_list: 0,
            restart_sleep: None,
            signals: SignalState::default(),
            name,
            personality: 0,
            io_buffer: Vec::new(),
        };
        Ok((process, context))
    }

    /// A child for `fork`: memory copy-on-write, its own descriptor table
    /// over the same open files, the same signal actions (copied), this
    /// thread's mask, nothing pending.
    pub fn fork(&mut self) -> Result<Process, Errno> {
        self.fork_sharing(Sharing::default())
    }

    /// A new process that shares with this one what `share` says
    /// (`clone` without `CLONE_THREAD`): the address space (CLONE_VM,
    /// as `vfork` and `posix_spawn` use it: the child's writes are the
    /// parent's), the descriptor table (CLONE_FILES), the working
    /// directory and umask (CLONE_FS); the rest is copied.
    pub fn fork_sharing(&mut self, share: Sharing) -> Result<Process, Errno> {
        // RLIMIT_NPROC: processes of the same real user, root exempt.
        let credentials = self.info.credentials();
        let limits = self.info.limits();
        if !credentials.capable(cap::SYS_RESOURCE) && !credentials.capable(cap::SYS_ADMIN) {
            let ruid = credentials.ruid;
            let owned = all().iter().filter(|q| q.credentials().ruid == ruid).count() as u64;
            if owned >= limits.soft(rlimit::NPROC) {
                return Err(Errno::EAGAIN);
            }
        }
        let memory = if share.memory { self.memory.clone() } else { self.memory.fork_copy()? };
        let exe = self.info.exe.lock().clone();
        let cmdline = self.info.cmdline.lock().clone();
        let (info, thread) = register(self.info.pid, self.info.pgid(), self.info.sid(), &exe, cmdline, self.info.credentials())?;
        info.nice.store(self.info.nice.load(Ordering::Relaxed), Ordering::Relaxed);
        info.set_limits(limits);
        *info.prctl.lock() = self.info.prctl.lock().for_child();
        *thread.sched.lock() = self.thread.sched.lock().for_child();
        thread.inherit_seccomp(&self.thread);
        if limits.0.get(rlimit::CPU).is_some_and(|&l| l != (RLIM_INFINITY, RLIM_INFINITY)) {
            crate::timers::watch_cpu_limit(info.pid, true);
        }
        Ok(Process {
            info,
            thread,
            memory,
            files: if share.files { self.files.clone() } else { self.files.fork_copy() },
            fs: if share.fs { self.fs.clone() } else { self.fs.fork_copy() },
            clear_child_tid: 0,
            set_child_tid: 0,
            robust_list: 0,
            restart_sleep: None,
            signals: SignalState { actions: self.signals.actions.fork_copy(), restore_mask: None, ..self.signals.clone() },
            name: self.name,
            personality: self.personality,
            io_buffer: Vec::new(),
        })
    }

    /// A new thread of this process (`clone` with `CLONE_THREAD`): shared
    /// memory and signal actions; files shared when `share_files`.
    pub fn new_thread(&self, share_files: bool) -> Result<Process, Errno> {
        let thread = {
            let table = TABLE.lock();
            if THREADS.lock().len() >= MAX_THREADS {
                return Err(Errno::EAGAIN);
            }
            let tid = allocate_id(&table)?;
            let thread = ThreadInfo::new(tid);
            *thread.sched.lock() = self.thread.sched.lock().for_child();
            thread.inherit_seccomp(&self.thread);
            THREADS.lock().insert(tid, thread.clone());
            thread
        };
        self.info.threads.lock().push(thread.clone());
        Ok(Process {
            info: self.info.clone(),
            thread,
            memory: self.memory.clone(),
            files: if share_files { self.files.clone() } else { self.files.fork_copy() },
            fs: self.fs.clone(),
            clear_child_tid: 0,
            set_child_tid: 0,
            robust_list: 0,
            restart_sleep: None,
            signals: SignalState { alt_stack: (0, 0), restore_mask: None, ..self.signals.clone() },
            name: self.name,
            personality: self.personality,
            io_buffer: Vec::new(),
        })
    }

    /// Starts this thread on its own kernel task, on the processors in
    /// `affinity` (one bit each; a child inherits its parent's).
    pub fn start(self, context: UserContext, affinity: u64) -> Result<Arc<ProcessInfo>, Errno> {
        let info = self.info.clone();
        self.info.view.lock().get_or_insert_with(|| (self.files.clone(), self.fs.clone()));
        if self.info.memory_view.lock().is_none() {
            self.info.set_memory_view(&self.memory);
        }
        let thread = self.thread.clone();
        thread.set_comm(self.name);
        let name = alloc::format!("tid {}", thread.tid);
        let record = thread.clone();
        let task = tessera_sched::spawn_recorded(
            &name,
            affinity,
            move || {
                let mut process = self;
                let mut context = context;
                let end = process.run(&mut context);
                process.exit(end);
            },
            // In the thread's record before it runs (maybe at once, on
            // another processor): it finds itself through it.
            move |task| *record.task.lock() = Some(task.clone()),
        );
        match task {
            Ok(_) => Ok(info),
            Err(_) => {
                unregister(&info, &thread);
                Err(Errno::ENOMEM)
            }
        }
    }

    /// Forgets a thread (or process) that was set up but never started.
    pub fn abandon(self) {
        unregister(&self.info, &self.thread);
    }

    /// Runs the thread until it exits or its process ends.
    pub fn run(&mut self, context: &mut UserContext) -> ThreadEnd {
        let mut interrupted = None;
        if self.set_child_tid != 0 {
            let _ = self.memory.write(core::mem::take(&mut self.set_child_tid), &self.thread.tid.to_le_bytes());
        }
        loop {
            // The checks below take locks; after most system calls there is
            // nothing for them to find (one look at a few atomics says so).
            if interrupted.is_some() || self.needs_attention() {
                if let Some(outcome) = self.info.ending.lock().as_ref().copied() {
                    return ThreadEnd::Group(outcome);
                }
                if self.thread.must_exit.load(Ordering::SeqCst) {
                    return ThreadEnd::Thread(0); // another thread is in execve
                }
                self.wait_while_stopped();
                if self.thread.must_exit.load(Ordering::SeqCst) {
                    return ThreadEnd::Thread(0);
                }
                if let Some(outcome) = signal::deliver(self, context, interrupted.take()) {
                    return ThreadEnd::Group(outcome);
                }
            }
            self.memory.activate();
            let trap = context.run();
            let (user, cpu) = context.last_run();
            self.thread.user_ns.fetch_add(user, Ordering::Relaxed);
            USER_NS_TOTAL.fetch_add(user, Ordering::Relaxed);
            if let Some(n) = USER_NS_BY_CPU.get(cpu) {
                n.fetch_add(user, Ordering::Relaxed);
            }
            match trap {
                Trap::Syscall => {
                    let nr = context.regs.rax;
                    match syscall::dispatch(self, context) {
                        Action::Return(value) => {
                            context.regs.rax = value;
                            if value == Errno::EINTR.as_return() {
                                interrupted = Some(nr);
                            }
                        }
                        Action::Replaced => {}
                        Action::ExitThread(code) => return ThreadEnd::Thread(code),
                        Action::ExitGroup(code) => return ThreadEnd::Group(Outcome::Exited(code)),
                        Action::Kill(sig) => return ThreadEnd::Group(Outcome::Killed(sig)),
                    }
                }
                Trap::Exception { vector: 14, error_code, fault_address } => {
                    let present = error_code & 1 != 0;
                    let access = if error_code & 16 != 0 {
                        Access::Exec
                    } else if error_code & 2 != 0 {
                        Access::Write
                    } else {
                        Access::Read
                    };
                    // A present page faults only for a write (copy-on-write)
                    // or a real protection violation.
                    let result = if present && access != Access::Write {
                        Populate::BadAccess
                    } else {
                        self.memory.populate(fault_address, access)
                    };
                    match result {
                        Populate::Ok => {}
                        Populate::NoMemory => {
                            log::warn!("pid {}: out of memory at {fault_address:#x}: killed", self.info.pid);
                            return ThreadEnd::Group(Outcome::Killed(num::SIGKILL));
                        }
                        Populate::BusError => {
                            self.force_if_blocked(num::SIGBUS);
                            self.thread.send_signal(num::SIGBUS, SigInfo { code: 2, addr: fault_address, value: 0 }); // BUS_ADRERR
                        }
                        Populate::BadAccess => {
                            let code = if present { 2 } else { 1 }; // SEGV_ACCERR / SEGV_MAPERR
                            self.force_if_blocked(num::SIGSEGV);
                            self.thread.send_signal(num::SIGSEGV, SigInfo { code, addr: fault_address, value: 0 });
                        }
                    }
                }
                Trap::Exception { vector, .. } => {
                    let (sig, code) = signal_for(vector);
                    self.force_if_blocked(sig);
                    self.thread.send_signal(sig, SigInfo { code, addr: context.regs.rip, value: 0 });
                }
                Trap::Interrupt { .. } => tessera_sched::preempt_point(),
            }
        }
    }

    /// True when the return to user mode has more to do than enter it: a
    /// signal pending that this thread does not block, a mask to restore
    /// (`rt_sigsuspend`), the process ending or stopped, or this thread
    /// told to exit. A signal or stop that comes right after the look is
    /// seen at the next trap: its sender interrupts the thread.
    fn needs_attention(&self) -> bool {
        let blocked = self.signals.mask & !signal::UNBLOCKABLE;
        (self.thread.pending.bits() | self.info.pending.bits()) & !blocked != 0
            || self.signals.restore_mask.is_some()
            || self.thread.must_exit.load(Ordering::SeqCst)
            || self.info.attention.load(Ordering::SeqCst)
    }

    /// A fault signal that is blocked or ignored cannot be left pending
    /// (the instruction would fault again forever): default action.
    /// Called before the signal is sent, so that it is not discarded.
    pub fn force_if_blocked(&mut self, sig: u8) {
        let action = self.signals.actions.get(sig);
        if self.signals.mask & signal::bit(sig) != 0 || action.handler == signal::SIG_IGN {
            self.signals.mask &= !signal::bit(sig);
            self.signals.actions.set(sig, signal::SigAction::default());
            self.sync_signal_state();
        }
    }

    /// Publishes this thread's blocked mask and the process's ignored
    /// signals to senders; called after either changes.
    pub fn sync_signal_state(&self) {
        self.thread.blocked.store(self.signals.mask, Ordering::SeqCst);
        let ignored = self.signals.actions.ignored();
        for thread in self.info.threads.lock().iter() {
            thread.ignored.store(ignored, Ordering::SeqCst);
        }
        // SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT: children are reaped
        // as they end, never zombies (POSIX; Linux).
        let chld = self.signals.actions.get(num::SIGCHLD);
        let auto = chld.handler == signal::SIG_IGN || chld.flags & SA_NOCLDWAIT != 0;
        self.info.autoreap.store(auto, Ordering::SeqCst);
    }

    /// Sets the blocked mask (never SIGKILL or SIGSTOP).
    pub fn set_signal_mask(&mut self, mask: u64) {
        self.signals.mask = mask & !signal::UNBLOCKABLE;
        self.thread.blocked.store(self.signals.mask, Ordering::SeqCst);
    }

    /// Sets the action for `sig`. An action that ignores the signal
    /// discards its pending instances, for the process and every thread
    /// (POSIX; Linux's `do_sigaction`).
    pub fn set_signal_action(&mut self, sig: u8, action: signal::SigAction) {
        self.signals.actions.set(sig, action);
        if self.signals.actions.ignored() & signal::bit(sig) != 0 {
            self.info.pending.discard(sig);
            for thread in self.info.threads.lock().iter() {
                thread.pending.discard(sig);
            }
        }
        self.sync_signal_state();
    }

    /// Ends this thread; the last thread out ends the process: children
    /// handed to pid 1 (or the kernel), parent told.
    pub fn exit(self, end: ThreadEnd) {
        let info = self.info.clone();
        let thread = self.thread.clone();
        info.note_maxrss(&self.memory);
        if let ThreadEnd::Group(outcome) = end {
            let first = {
                let mut ending = info.ending.lock();
                let first = ending.is_none();
                ending.get_or_insert(outcome);
                info.attention.store(true, Ordering::SeqCst);
                first
            };
            if first {
                for other in info.threads.lock().iter().filter(|t| !Arc::ptr_eq(t, &thread)) {
                    other.send_signal(num::SIGKILL, SigInfo::default());
                }
            }
        }
        if self.clear_child_tid != 0 {
            // Tell a joining thread: zero the tid word and wake its futex.
            let _ = self.memory.write(self.clear_child_tid, &0u32.to_le_bytes());
            crate::syscall::futex::wake(&self.memory, self.clear_child_tid, 1);
        }
        THREADS.lock().remove(&thread.tid);
        // Its CPU time stays with the process: moved to `ended_threads`
        // as it leaves the list, under the list's lock (`cpu_ns` reads
        // both under it), so no reader counts it twice or not at all.
        let last = {
            let mut threads = info.threads.lock();
            let (user, total) = thread.cpu_ns();
            {
                let mut ended = info.ended_threads.lock();
                ended.0 += user;
                ended.1 += total;
            }
            threads.retain(|t| !Arc::ptr_eq(t, &thread));
            threads.is_empty()
        };
        // The record may outlive the thread (a signalfd holds it): it must
        // not keep the finished task and its stack.
        *thread.task.lock() = None;
        drop(self); // this thread's hold on memory and files
        if !last {
            return;
        }
        let outcome = match (*info.ending.lock(), end) {
            (Some(outcome), _) => outcome,
            (None, ThreadEnd::Thread(code)) => Outcome::Exited(code),
            (None, ThreadEnd::Group(outcome)) => outcome,
        };
        let pid = info.pid;
        crate::acct::process_ended(&info, outcome, &thread.comm());
        crate::locks::release_all(crate::locks::Owner::Process(pid));
        crate::timers::remove_process(pid, false);
        crate::sysv::exit_undo(pid);
        crate::mqueue::process_ended(pid);
        // The zombie holds no files and no memory, and lets go of them
        // before anyone can see that it ended (Linux's exit_files and
        // exit_mm come before exit_notify): a parent that collects it and
        // opens a FIFO it had open must not meet the child's end, which
        // would close under it with what the parent wrote.
        *info.view.lock() = None;
        let memory = info.memory_view.lock().take();
        drop(memory);
        crate::syscall::ipc::reap_removed_segments();
        // Orphans go to the nearest living ancestor that is a subreaper
        // (PR_SET_CHILD_SUBREAPER), else to process 1.
        let reaper = {
            let mut at = info.ppid();
            let mut found = None;
            for _ in 0..MAX_PROCESSES {
                let Some(ancestor) = lookup(at).filter(|_| at != 0) else { break };
                if ancestor.outcome().is_none() && ancestor.prctl.lock().subreaper {
                    found = Some(ancestor);
                    break;
                }
                at = ancestor.ppid();
            }
            found
        };
        let init = reaper.or_else(|| lookup(1)).filter(|i| i.outcome().is_none() && i.pid != pid);
        for child in all().into_iter().filter(|c| c.ppid() == pid) {
            child.ppid.store(init.as_ref().map_or(0, |i| i.pid), Ordering::Relaxed);
            child.exit_signal.store(num::SIGCHLD, Ordering::Relaxed); // a new parent hears SIGCHLD
            if init.is_none() && child.outcome().is_some() {
                reap(child.pid); // nobody is left to collect it
            }
            let deathsig = child.prctl.lock().pdeathsig;
            if deathsig != 0 {
                child.send_signal(deathsig, SigInfo { code: 0, addr: u64::from(pid), value: 0 }); // SI_USER from the parent
            }
        }
        if let Some(init) = &init {
            init.children_changed.wake_all();
        }
        let parent = {
            // The end and the parent's signal become visible together, as
            // on Linux (both under tasklist_lock): a `wait4` (which reads
            // the outcome under this lock) that finds the child ended
            // returns with the SIGCHLD already pending, so its handler runs
            // before the program sees wait4's result; and a handler that
            // reaps with WNOHANG finds the child ended. The parent is
            // looked up after the outcome is set, under the lock: a parent
            // ending now either hands this child on first (its store of
            // the new parent comes before its look at this outcome, which
            // waits for this lock) or finds it ended and deals with it.
            let mut ended = info.outcome.lock();
            *ended = Some(outcome);
            let parent = lookup(info.ppid()).filter(|_| info.ppid() != 0);
            let signal = info.exit_signal.load(Ordering::Relaxed);
            if let Some(parent) = &parent
                && signal != 0
            {
                // CLD_EXITED, CLD_KILLED or CLD_DUMPED.
                let code = match outcome {
                    Outcome::Exited(_) => 1,
                    Outcome::Killed(_) => 2,
                    Outcome::Dumped(_) => 3,
                };
                parent.send_signal(signal, SigInfo { code, addr: u64::from(pid), value: 0 });
            }
            parent
        };
        crate::syscall::poll::notify(); // pidfds become readable
        match parent {
            Some(parent) => {
                if parent.autoreap.load(Ordering::SeqCst) {
                    reap(pid); // no zombie: the parent said it will not wait
                }
                parent.children_changed.wake_all();
            }
            // Started by the kernel, or orphaned with no init: whoever holds
            // the record reads the outcome from it; the table forgets it.
            None => reap(pid),
        }
        info.exited.wake_all();
    }
}
