//! A process: its memory, files and identity, and the loop that runs its
//! thread and serves its system calls and faults.

use crate::errno::Errno;
use crate::exec;
use crate::files::FileTable;
use crate::memory::Memory;
use crate::syscall::{self, Action};
use alloc::string::String;
use alloc::vec::Vec;
use framekernel::arch::user::{Trap, UserContext};

/// Signal numbers used when a program faults.
pub mod signal {
    #![allow(missing_docs)]
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGBUS: u8 = 7;
    pub const SIGFPE: u8 = 8;
    pub const SIGKILL: u8 = 9;
    pub const SIGSEGV: u8 = 11;
}

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

/// One process (one thread for now).
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Address space.
    pub memory: Memory,
    /// Open files.
    pub files: FileTable,
    /// Path of the executable (`/proc/self/exe`).
    pub exe: String,
    /// The arguments, for `/proc/[pid]/cmdline`.
    pub cmdline: Vec<u8>,
    /// `set_tid_address` pointer.
    pub clear_child_tid: u64,
    /// `set_robust_list` head.
    pub robust_list: u64,
    /// Registered signal actions (handler address per signal); delivery
    /// comes with the signals work of this issue.
    pub signal_handlers: [u64; 65],
    /// Blocked signal mask.
    pub signal_mask: u64,
}

/// The signal a CPU exception in user mode raises.
pub fn signal_for(vector: u8) -> u8 {
    match vector {
        0 | 16 | 19 => signal::SIGFPE,
        1 | 3 => signal::SIGTRAP,
        6 => signal::SIGILL,
        17 => signal::SIGBUS,
        _ => signal::SIGSEGV,
    }
}

impl Process {
    /// Loads `program` as a new process with `argv` and the default
    /// environment; returns it with its first thread's registers.
    pub fn spawn(pid: u32, path: &str, program: &[u8], argv: &[&[u8]]) -> Result<(Process, UserContext), Errno> {
        let env = exec::default_env();
        let loaded = exec::load(program, argv, &env, path.as_bytes())?;
        let mut context = UserContext::new();
        context.regs.rip = loaded.entry;
        context.regs.rsp = loaded.sp;
        let cmdline: Vec<u8> = argv.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
        let process = Process {
            pid,
            ppid: 0,
            memory: loaded.memory,
            files: FileTable::with_console(),
            exe: String::from(path),
            cmdline,
            clear_child_tid: 0,
            robust_list: 0,
            signal_handlers: [0; 65],
            signal_mask: 0,
        };
        Ok((process, context))
    }

    /// Runs the process until it exits or is killed.
    pub fn run(&mut self, context: &mut UserContext) -> Outcome {
        self.memory.space().activate();
        loop {
            match context.run() {
                Trap::Syscall => match syscall::dispatch(self, context) {
                    Action::Return(value) => context.regs.rax = value,
                    Action::Exit(code) => return Outcome::Exited(code),
                },
                Trap::Exception { vector: 14, error_code, fault_address } => {
                    // Not present: maybe a page of an area not touched yet.
                    let present = error_code & 1 != 0;
                    let write = error_code & 2 != 0;
                    if !present && self.memory.populate(fault_address, write) {
                        continue;
                    }
                    log::info!(
                        "pid {} ({}): segmentation fault at {fault_address:#x} (rip {:#x})",
                        self.pid,
                        self.exe,
                        context.regs.rip
                    );
                    return Outcome::Killed(signal::SIGSEGV);
                }
                Trap::Exception { vector, .. } => {
                    let signal = signal_for(vector);
                    log::info!(
                        "pid {} ({}): exception {vector} at rip {:#x}: signal {signal}",
                        self.pid,
                        self.exe,
                        context.regs.rip
                    );
                    return Outcome::Killed(signal);
                }
                Trap::Interrupt { .. } => {}
            }
        }
    }
}
