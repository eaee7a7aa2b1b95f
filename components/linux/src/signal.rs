//! Signals: actions, masks, delivery to a handler on the user stack
//! (the x86_64 `rt_sigframe` layout) and `rt_sigreturn`.

use crate::errno::Errno;
use crate::process::{Outcome, Process};
use framekernel::arch::user::UserContext;

/// Number of signals (1..=64).
pub const NSIG: usize = 64;

#[allow(missing_docs)]
pub mod num {
    pub const SIGHUP: u8 = 1;
    pub const SIGINT: u8 = 2;
    pub const SIGQUIT: u8 = 3;
    pub const SIGILL: u8 = 4;
    pub const SIGTRAP: u8 = 5;
    pub const SIGABRT: u8 = 6;
    pub const SIGBUS: u8 = 7;
    pub const SIGSYS: u8 = 31;
    pub const SIGFPE: u8 = 8;
    pub const SIGKILL: u8 = 9;
    pub const SIGUSR1: u8 = 10;
    pub const SIGSEGV: u8 = 11;
    pub const SIGUSR2: u8 = 12;
    pub const SIGPIPE: u8 = 13;
    pub const SIGALRM: u8 = 14;
    pub const SIGTERM: u8 = 15;
    pub const SIGCHLD: u8 = 17;
    pub const SIGCONT: u8 = 18;
    pub const SIGSTOP: u8 = 19;
    pub const SIGTSTP: u8 = 20;
    pub const SIGTTIN: u8 = 21;
    pub const SIGTTOU: u8 = 22;
    pub const SIGURG: u8 = 23;
    pub const SIGWINCH: u8 = 28;
}

/// `sa_handler` values.
pub const SIG_DFL: u64 = 0;
/// Ignore the signal.
pub const SIG_IGN: u64 = 1;

const SA_SIGINFO: u64 = 0x4;
const SA_ONSTACK: u64 = 0x0800_0000;
const SA_RESTORER: u64 = 0x0400_0000;
const SA_RESTART: u64 = 0x1000_0000;
const SA_NODEFER: u64 = 0x4000_0000;
const SA_RESETHAND: u64 = 0x8000_0000;

/// Signals that can be neither caught, blocked nor ignored.
pub const UNBLOCKABLE: u64 = bit(num::SIGKILL) | bit(num::SIGSTOP);

/// The mask bit of signal `sig` (1..=64).
pub const fn bit(sig: u8) -> u64 {
    1u64 << (sig - 1)
}

/// One `struct sigaction` (kernel layout: handler, flags, restorer, mask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigAction {
    /// Handler address, [`SIG_DFL`] or [`SIG_IGN`].
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// Where the handler returns to (calls `rt_sigreturn`).
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: u64,
}

impl SigAction {
    /// Decodes the 32-byte kernel structure.
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let word = |i: usize| u64::from_le_bytes(b.get(i * 8..i * 8 + 8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]));
        Self { handler: word(0), flags: word(1), restorer: word(2), mask: word(3) }
    }

    /// Encodes the 32-byte kernel structure.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask].into_iter().enumerate() {
            if let Some(dst) = b.get_mut(i * 8..i * 8 + 8) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
        }
        b
    }
}

/// The signal actions of a process, shared by its threads.
#[derive(Clone)]
pub struct Actions(alloc::sync::Arc<framekernel::sync::Mutex<[SigAction; NSIG + 1]>>);

impl Actions {
    fn new() -> Self {
        Self(alloc::sync::Arc::new(framekernel::sync::Mutex::new([SigAction::default(); NSIG + 1])))
    }

    /// The action for `sig` (default for out-of-range numbers).
    pub fn get(&self, sig: u8) -> SigAction {
        self.0.lock().get(usize::from(sig)).copied().unwrap_or_default()
    }

    /// The signals whose action ignores them: `SIG_IGN`, or `SIG_DFL`
    /// where the default is to ignore.
    pub fn ignored(&self) -> u64 {
        let table = self.0.lock();
        let mut mask = 0;
        for (sig, action) in table.iter().enumerate().skip(1) {
            let sig = sig as u8;
            if action.handler == SIG_IGN || (action.handler == SIG_DFL && default_action(sig) == Default_::Ignore) {
                mask |= bit(sig);
            }
        }
        mask
    }

    /// Sets the action for `sig`.
    pub fn set(&self, sig: u8, action: SigAction) {
        if let Some(slot) = self.0.lock().get_mut(usize::from(sig)) {
            *slot = action;
        }
    }

    /// A separate copy (for `fork`).
    pub fn fork_copy(&self) -> Self {
        Self(alloc::sync::Arc::new(framekernel::sync::Mutex::new(*self.0.lock())))
    }
}

/// Per-thread signal state, with the process's shared actions.
#[derive(Clone)]
pub struct SignalState {
    /// Action per signal (shared by the threads of a process).
    pub actions: Actions,
    /// Blocked signals.
    pub mask: u64,
    /// Alternate stack: base, size (0 = none).
    pub alt_stack: (u64, u64),
    /// The mask to restore after the next handler (set by `rt_sigsuspend`).
    pub restore_mask: Option<u64>,
}

impl core::fmt::Debug for SignalState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignalState").field("mask", &self.mask).finish_non_exhaustive()
    }
}

impl Default for SignalState {
    fn default() -> Self {
        Self { actions: Actions::new(), mask: 0, alt_stack: (0, 0), restore_mask: None }
    }
}

impl SignalState {
    /// After `execve`: handlers reset to default, ignored signals stay ignored.
    pub fn reset_for_exec(&mut self) {
        for action in self.actions.0.lock().iter_mut() {
            if action.handler != SIG_IGN {
                *action = SigAction::default();
            }
        }
        self.alt_stack = (0, 0);
    }
}

/// The signals ignored with every action at its default.
pub const DEFAULT_IGNORED: u64 = bit(num::SIGCHLD) | bit(num::SIGURG) | bit(num::SIGWINCH) | bit(num::SIGCONT);

/// True for the signals whose default action stops the process.
pub fn is_stop_signal(sig: u8) -> bool {
    default_action(sig) == Default_::Stop
}

/// What the default action of `sig` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default_ {
    /// Terminate.
    Terminate,
    /// Ignore.
    Ignore,
    /// Stop (job control; treated as ignore until the tty layer exists).
    Stop,
}

/// The default action of `sig`.
pub fn default_action(sig: u8) -> Default_ {
    match sig {
        num::SIGCHLD | num::SIGURG | num::SIGWINCH | num::SIGCONT => Default_::Ignore,
        num::SIGSTOP | num::SIGTSTP | num::SIGTTIN | num::SIGTTOU => Default_::Stop,
        _ => Default_::Terminate,
    }
}

// rt_sigframe layout (x86_64): pretcode (8) | ucontext (304) | siginfo (128);
// the FXSAVE image goes below, 64-byte aligned.
const UC: u64 = 8;
const UC_STACK: u64 = UC + 16;
const UC_MCONTEXT: u64 = UC + 40;
const UC_SIGMASK: u64 = UC + 296;
const INFO: u64 = UC + 304;
const FRAME_SIZE: u64 = INFO + 128;

/// Extra detail for the `siginfo` of a delivered signal.
#[derive(Debug, Clone, Copy, Default)]
pub struct SigInfo {
    /// `si_code`.
    pub code: i32,
    /// `si_addr` for faults, or `si_pid` and `si_uid` for kill (low and
    /// high half), or a timer's `si_timerid` and `si_overrun`.
    pub addr: u64,
    /// The word at offset 24: a timer's `si_value`, a child's `si_status`.
    pub value: u64,
}

fn mcontext_words(ctx: &UserContext, fpstate: u64, old_mask: u64) -> [u64; 32] {
    let r = &ctx.regs;
    let mut w = [0u64; 32];
    let regs = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp,
        r.rip, r.rflags,
    ];
    for (slot, value) in w.iter_mut().zip(regs) {
        *slot = value;
    }
    // cs | gs << 16 | fs << 32 | ss << 48
    w[18] = 0x33 | (0x2b << 48);
    w[21] = old_mask;
    w[23] = fpstate;
    w
}

/// Pushes a signal frame for `sig` and points the thread at its handler.
/// Fails with EFAULT when the stack is unusable (the caller then kills).
pub fn setup_frame(p: &mut Process, ctx: &mut UserContext, sig: u8, info: SigInfo) -> Result<(), Errno> {
    let action = p.signals.actions.get(sig);
    let (alt_base, alt_size) = p.signals.alt_stack;
    let on_alt = action.flags & SA_ONSTACK != 0
        && alt_size > 0
        && !(alt_base..alt_base + alt_size).contains(&ctx.regs.rsp);
    let top = if on_alt { alt_base + alt_size } else { ctx.regs.rsp.wrapping_sub(128) }; // skip the red zone
    let fpstate = top.checked_sub(512).ok_or(Errno::EFAULT)? & !63;
    let frame = ((fpstate.checked_sub(FRAME_SIZE).ok_or(Errno::EFAULT)?) & !15) - 8;
    let old_mask = p.signals.restore_mask.take().unwrap_or(p.signals.mask);
    let mut bytes = alloc::vec![0u8; FRAME_SIZE as usize];
    let mut put = |at: u64, data: &[u8]| {
        if let Some(dst) = bytes.get_mut(at as usize..at as usize + data.len()) {
            dst.copy_from_slice(data);
        }
    };
    put(0, &action.restorer.to_le_bytes());
    put(UC_STACK, &alt_base.to_le_bytes());
    put(UC_STACK + 16, &alt_size.to_le_bytes());
    for (i, word) in mcontext_words(ctx, fpstate, old_mask).iter().enumerate() {
        put(UC_MCONTEXT + i as u64 * 8, &word.to_le_bytes());
    }
    put(UC_SIGMASK, &old_mask.to_le_bytes());
    put(INFO, &i32::from(sig).to_le_bytes());
    put(INFO + 8, &info.code.to_le_bytes());
    put(INFO + 16, &info.addr.to_le_bytes());
    put(INFO + 24, &info.value.to_le_bytes());
    p.memory.write(fpstate, &ctx.fpu_state().0)?;
    p.memory.write(frame, &bytes)?;
    let mut mask = old_mask | action.mask;
    if action.flags & SA_NODEFER == 0 {
        mask |= bit(sig);
    }
    p.set_signal_mask(mask);
    if action.flags & SA_RESETHAND != 0 {
        // Only the handler goes back to the default (Linux keeps the flags,
        // SA_SIGINFO included, and the mask).
        p.set_signal_action(sig, SigAction { handler: SIG_DFL, ..action });
    }
    ctx.regs.rsp = frame;
    ctx.regs.rip = action.handler;
    ctx.regs.rdi = u64::from(sig);
    ctx.regs.rsi = frame + INFO;
    ctx.regs.rdx = frame + UC;
    ctx.regs.rax = 0;
    ctx.regs.rflags &= !(1 << 10); // direction flag clear, as the ABI wants
    Ok(())
}

/// `rt_sigreturn`: restores the registers, mask and FPU state saved by
/// [`setup_frame`]. The frame is at `rsp - 8` (the restorer popped `pretcode`).
pub fn sigreturn(p: &mut Process, ctx: &mut UserContext) -> Result<(), Errno> {
    let frame = ctx.regs.rsp.checked_sub(8).ok_or(Errno::EFAULT)?;
    let mut mc = [0u8; 256];
    p.memory.read(frame + UC_MCONTEXT, &mut mc)?;
    let word = |i: usize| u64::from_le_bytes(mc.get(i * 8..i * 8 + 8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]));
    let mut mask = [0u8; 8];
    p.memory.read(frame + UC_SIGMASK, &mut mask)?;
    let fpstate = word(23);
    let mut fpu = ctx.fpu_state();
    if fpstate != 0 {
        p.memory.read(fpstate, &mut fpu.0)?;
        // MXCSR bits 16..32 are reserved: FXRSTOR would fault on them.
        if let Some(mxcsr) = fpu.0.get_mut(26..28) {
            mxcsr.fill(0);
        }
    }
    let r = &mut ctx.regs;
    (r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15) =
        (word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7));
    (r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp) =
        (word(8), word(9), word(10), word(11), word(12), word(13), word(14), word(15));
    // rip and rsp are checked by UserContext::run; rflags is sanitised there.
    (r.rip, r.rflags) = (word(16), word(17));
    ctx.set_fpu_state(fpu);
    p.set_signal_mask(u64::from_le_bytes(mask));
    Ok(())
}

/// System calls that `SA_RESTART` restarts after a handler (as Linux does;
/// sleeps, `pause` and `sigsuspend` always return `EINTR`).
fn restartable(nr: u64) -> bool {
    use crate::syscall::nr;
    // connect, accept, sendto, recvfrom, sendmsg, recvmsg, accept4
    // (sockets without a timeout).
    matches!(nr, nr::READ | nr::WRITE | nr::READV | nr::WRITEV | nr::IOCTL | nr::WAIT4 | 42 | 43 | 44 | 45 | 46 | 47 | 288)
}

/// The sleeps that resume through `restart_syscall` after a stop.
fn is_sleep(nr: u64) -> bool {
    use crate::syscall::nr;
    matches!(nr, nr::NANOSLEEP | nr::CLOCK_NANOSLEEP | nr::RESTART_SYSCALL)
}

/// Delivers one pending, unblocked signal, if any. `interrupted` is the
/// system call number when the thread just returned EINTR from it (for
/// `SA_RESTART`). Returns how the process ends if the signal kills it.
pub fn deliver(p: &mut Process, ctx: &mut UserContext, interrupted: Option<u64>) -> Option<Outcome> {
    loop {
        let Some(pending) = p.take_signal() else {
            // rt_sigsuspend without a handler run: its mask ends here.
            if let Some(mask) = p.signals.restore_mask.take() {
                p.set_signal_mask(mask);
            }
            // No handler ran (the signals were ignored, or stopped and
            // continued the process): an interrupted call starts again,
            // as Linux's ERESTARTSYS does, instead of failing with EINTR.
            if let Some(nr) = interrupted.filter(|&nr| restartable(nr)) {
                ctx.regs.rip -= 2;
                ctx.regs.rax = nr;
            } else if interrupted.is_some_and(is_sleep) && p.restart_sleep.is_some() {
                // A sleep goes on for the time it had left.
                ctx.regs.rip -= 2;
                ctx.regs.rax = crate::syscall::nr::RESTART_SYSCALL;
            }
            return None;
        };
        let (sig, info) = pending;
        let action = p.signals.actions.get(sig);
        if sig == num::SIGKILL {
            return Some(Outcome::Killed(sig));
        }
        if sig == num::SIGSTOP {
            p.stop_until_continued(sig);
            continue;
        }
        match action.handler {
            SIG_IGN => continue,
            SIG_DFL => match default_action(sig) {
                Default_::Terminate if crate::coredump::dumps_core(sig) && crate::coredump::write(p, ctx, sig) => return Some(Outcome::Dumped(sig)),
                Default_::Terminate => return Some(Outcome::Killed(sig)),
                Default_::Ignore => continue,
                Default_::Stop => {
                    // Job control: stay stopped until SIGCONT (or SIGKILL).
                    p.stop_until_continued(sig);
                    continue;
                }
            },
            _ => {
                if let (Some(nr), true) = (interrupted.filter(|&nr| restartable(nr)), action.flags & SA_RESTART != 0) {
                    ctx.regs.rip -= 2; // back onto the `syscall` instruction
                    ctx.regs.rax = nr;
                }
                if action.flags & SA_RESTORER == 0 || setup_frame(p, ctx, sig, info).is_err() {
                    // No way back from the handler, or no room for the frame.
                    return Some(Outcome::Killed(num::SIGSEGV));
                }
                let _ = SA_SIGINFO; // handlers always get siginfo and ucontext
                return None;
            }
        }
    }
}
