//! Processes: the shared record every process has in the process table
//! ([`ProcessInfo`]), the state its own task owns ([`Process`]), and the
//! loop that runs the program and serves its system calls, faults and
//! signals.

use crate::errno::Errno;
use crate::exec;
use crate::files::FileTable;
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
const MAX_PID: u32 = 32768;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `exit(status)`.
    Exited(u8),
    /// Killed by a signal.
    Killed(u8),
}

impl Outcome {
    /// The `wait4` status word.
    pub fn wait_status(self) -> u32 {
        match self {
            Outcome::Exited(code) => u32::from(code) << 8,
            Outcome::Killed(sig) => u32::from(sig),
        }
    }
}

/// What the process table knows about a process; shared with its parent,
/// `kill` and (later) `/proc`.
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    ppid: AtomicU32,
    pgid: AtomicU32,
    sid: AtomicU32,
    outcome: SpinLock<Option<Outcome>>,
    /// Woken when a child of this process exits.
    pub children_changed: WaitQueue,
    /// Woken when this process exits.
    pub exited: WaitQueue,
    /// Pending signals (bit `n-1` for signal `n`) and their details.
    pending: AtomicU64,
    pending_info: SpinLock<[SigInfo; signal::NSIG + 1]>,
    task: SpinLock<Option<Arc<Task>>>,
    /// Executable path.
    pub exe: SpinLock<String>,
    /// NUL-separated arguments.
    pub cmdline: SpinLock<Vec<u8>>,
}

static TABLE: SpinLock<BTreeMap<u32, Arc<ProcessInfo>>> = SpinLock::new(BTreeMap::new());
static NEXT_PID: AtomicU32 = AtomicU32::new(1);

/// The process with id `pid`, if it exists (zombies included).
pub fn lookup(pid: u32) -> Option<Arc<ProcessInfo>> {
    TABLE.lock().get(&pid).cloned()
}

/// Every process, by pid.
pub fn all() -> Vec<Arc<ProcessInfo>> {
    TABLE.lock().values().cloned().collect()
}

/// Removes a zombie from the table (its parent has collected it).
pub fn reap(pid: u32) {
    TABLE.lock().remove(&pid);
}

fn register(ppid: u32, pgid: u32, sid: u32, exe: &str, cmdline: Vec<u8>) -> Result<Arc<ProcessInfo>, Errno> {
    let mut table = TABLE.lock();
    if table.len() >= MAX_PROCESSES {
        return Err(Errno::EAGAIN);
    }
    let mut pid = NEXT_PID.load(Ordering::Relaxed);
    while table.contains_key(&pid) || pid == 0 {
        pid = if pid >= MAX_PID { 2 } else { pid + 1 };
    }
    NEXT_PID.store(if pid >= MAX_PID { 2 } else { pid + 1 }, Ordering::Relaxed);
    let info = Arc::new(ProcessInfo {
        pid,
        ppid: AtomicU32::new(ppid),
        pgid: AtomicU32::new(if pgid == 0 { pid } else { pgid }),
        sid: AtomicU32::new(if sid == 0 { pid } else { sid }),
        outcome: SpinLock::new(None),
        children_changed: WaitQueue::new(),
        exited: WaitQueue::new(),
        pending: AtomicU64::new(0),
        pending_info: SpinLock::new([SigInfo::default(); signal::NSIG + 1]),
        task: SpinLock::new(None),
        exe: SpinLock::new(String::from(exe)),
        cmdline: SpinLock::new(cmdline),
    });
    table.insert(pid, info.clone());
    Ok(info)
}

impl ProcessInfo {
    /// Parent's pid (0 for processes the kernel started).
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

    /// Makes `sig` pending and wakes the process so it notices.
    pub fn send_signal(&self, sig: u8, info: SigInfo) {
        if sig == 0 || usize::from(sig) > signal::NSIG || self.outcome().is_some() {
            return;
        }
        if let Some(slot) = self.pending_info.lock().get_mut(usize::from(sig)) {
            *slot = info;
        }
        self.pending.fetch_or(signal::bit(sig), Ordering::SeqCst);
        if let Some(task) = self.task.lock().clone() {
            tessera_sched::wake(&task);
        }
    }

    /// True when a signal not in `mask` is pending.
    pub fn has_unblocked_signal(&self, mask: u64) -> bool {
        self.pending.load(Ordering::SeqCst) & !(mask & !signal::UNBLOCKABLE) != 0
    }

    /// Pending signals.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }

    /// Takes the lowest pending signal not in `mask`.
    pub fn take_signal(&self, mask: u64) -> Option<(u8, SigInfo)> {
        let ready = self.pending.load(Ordering::SeqCst) & !(mask & !signal::UNBLOCKABLE);
        if ready == 0 {
            return None;
        }
        let sig = ready.trailing_zeros() as u8 + 1;
        self.pending.fetch_and(!signal::bit(sig), Ordering::SeqCst);
        let info = self.pending_info.lock().get(usize::from(sig)).copied().unwrap_or_default();
        Some((sig, info))
    }

    /// Blocks the calling kernel task until this process has ended.
    pub fn wait_exit(&self) -> Outcome {
        self.exited.wait_until(|| self.outcome())
    }
}

/// A process as its own task holds it.
pub struct Process {
    /// The table entry.
    pub info: Arc<ProcessInfo>,
    /// Address space.
    pub memory: Memory,
    /// Open files.
    pub files: FileTable,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
    /// `set_robust_list` head.
    pub robust_list: u64,
    /// Signal actions and mask.
    pub signals: SignalState,
    /// Thread name (`prctl(PR_SET_NAME)`), NUL padded.
    pub name: [u8; 16],
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
    pub fn spawn(path: &str, program: &[u8], argv: &[&[u8]]) -> Result<(Process, UserContext), Errno> {
        let env = exec::default_env();
        let loaded = exec::load(program, argv, &env, path.as_bytes())?;
        let mut context = UserContext::new();
        context.regs.rip = loaded.entry;
        context.regs.rsp = loaded.sp;
        let cmdline: Vec<u8> = argv.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
        let info = register(0, 0, 0, path, cmdline)?;
        let process = Process {
            info,
            memory: loaded.memory,
            files: FileTable::with_console(),
            clear_child_tid: 0,
            robust_list: 0,
            signals: SignalState::default(),
            name: name_of(path),
        };
        Ok((process, context))
    }

    /// A copy of this process for `fork`: memory copied, files shared,
    /// same signal actions, no pending signals.
    pub fn fork(&mut self) -> Result<Process, Errno> {
        let memory = self.memory.fork_copy()?;
        let exe = self.info.exe.lock().clone();
        let cmdline = self.info.cmdline.lock().clone();
        let info = register(self.info.pid, self.info.pgid(), self.info.sid(), &exe, cmdline)?;
        Ok(Process {
            info,
            memory,
            files: self.files.clone(),
            clear_child_tid: 0,
            robust_list: 0,
            signals: self.signals.clone(),
            name: self.name,
        })
    }

    /// Starts the process on its own kernel task.
    pub fn start(self, context: UserContext) -> Result<Arc<ProcessInfo>, Errno> {
        let info = self.info.clone();
        let name = alloc::format!("pid {}", info.pid);
        let task = tessera_sched::spawn(&name, move || {
            let mut process = self;
            let mut context = context;
            let outcome = process.run(&mut context);
            process.exit(outcome);
        });
        match task {
            Ok(task) => {
                *info.task.lock() = Some(task);
                Ok(info)
            }
            Err(_) => {
                reap(info.pid);
                Err(Errno::ENOMEM)
            }
        }
    }

    /// Runs the program until it exits or is killed.
    pub fn run(&mut self, context: &mut UserContext) -> Outcome {
        let mut interrupted = None;
        loop {
            if let Some(outcome) = signal::deliver(self, context, interrupted.take()) {
                return outcome;
            }
            self.memory.activate();
            match context.run() {
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
                        Action::Exit(code) => return Outcome::Exited(code),
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
                            return Outcome::Killed(num::SIGKILL);
                        }
                        Populate::BadAccess => {
                            let code = if present { 2 } else { 1 }; // SEGV_ACCERR / SEGV_MAPERR
                            self.info.send_signal(num::SIGSEGV, SigInfo { code, addr: fault_address });
                            self.force_if_blocked(num::SIGSEGV);
                        }
                    }
                }
                Trap::Exception { vector, .. } => {
                    let (sig, code) = signal_for(vector);
                    self.info.send_signal(sig, SigInfo { code, addr: context.regs.rip });
                    self.force_if_blocked(sig);
                }
                Trap::Interrupt { .. } => tessera_sched::preempt_point(),
            }
        }
    }

    /// A fault signal that is blocked or ignored cannot be left pending
    /// (the instruction would fault again forever): default action.
    fn force_if_blocked(&mut self, sig: u8) {
        let action = self.signals.actions.get(usize::from(sig)).copied().unwrap_or_default();
        if self.signals.mask & signal::bit(sig) != 0 || action.handler == signal::SIG_IGN {
            self.signals.mask &= !signal::bit(sig);
            if let Some(a) = self.signals.actions.get_mut(usize::from(sig)) {
                *a = signal::SigAction::default();
            }
        }
    }

    /// Ends the process: memory released, children handed to pid 1 (or the
    /// kernel), parent told.
    pub fn exit(self, outcome: Outcome) {
        let pid = self.info.pid;
        let info = self.info.clone();
        drop(self); // memory and files go now, not when the zombie is reaped
        let init = lookup(1).filter(|i| i.outcome().is_none() && i.pid != pid);
        for child in all().into_iter().filter(|c| c.ppid() == pid) {
            child.ppid.store(init.as_ref().map_or(0, |i| i.pid), Ordering::Relaxed);
            if init.is_none() && child.outcome().is_some() {
                reap(child.pid); // nobody is left to collect it
            }
        }
        if let Some(init) = &init {
            init.children_changed.wake_all();
        }
        *info.outcome.lock() = Some(outcome);
        *info.task.lock() = None;
        match lookup(info.ppid()).filter(|_| info.ppid() != 0) {
            Some(parent) => {
                parent.send_signal(num::SIGCHLD, SigInfo { code: 1, addr: u64::from(pid) });
                parent.children_changed.wake_all();
            }
            // Started by the kernel, or orphaned with no init: whoever holds
            // the record reads the outcome from it; the table forgets it.
            None => reap(pid),
        }
        info.exited.wake_all();
    }
}
