//! Running user code: [`UserContext::run`] enters user mode and returns
//! when the program makes a system call, takes an exception, or is
//! interrupted — "user mode as a function call", as in Asterinas.
//!
//! Entry saves the kernel's callee-saved registers on the current kernel
//! stack, records that stack in the per-CPU block and the TSS (`rsp0`), loads
//! the program's registers, and returns to ring 3 (`sysretq` after a
//! system call, else `iretq`). Every way back (`syscall`, an exception or
//! an interrupt in ring 3) stores the program's registers into the context
//! and returns from the entry call.
//!
//! **Lazy FPU.** The kernel and the cells are built soft-float: no kernel
//! code touches the x87/SSE registers. So a program's FPU state stays in
//! the registers after it traps, and is neither saved on the way in nor
//! restored on the way out while the same context runs again on the same
//! processor (a system call then costs no FXSAVE/FXRSTOR, as on Linux).
//! Each context has an id (given at its first run, never reused); the
//! processor's block records whose state its registers hold
//! (`fpu_live`). A task switch parks that state in the leaving task
//! (`Task::fpu_parked`, base memory that lives as long as the task); the
//! next run of the context takes it back. Whoever reads or writes a
//! context's FPU state goes through [`UserContext::fpu_state`] and
//! [`UserContext::set_fpu_state`], which look in all three places (the
//! newest wins) and drop the other copies on a write. When a task runs a
//! second context while the first one's state is parked, the second one
//! saves its state eagerly (FXSAVE right after the trap), so no state is
//! ever held in two places that could both be newer. A context remembers
//! the task that ran it last (weakly), so one handed to another task finds
//! its parked state there. Limit: a state still live in another
//! processor's registers (its task gave the context away and has not
//! switched since) cannot be reached from here; the reader then sees the
//! context's previous state (never another context's).

use framekernel_logic::layout::is_user_half;

/// User data selector (GDT index 3, RPL 3); the assembly below uses it.
pub const USER_SS: u16 = 0x1b;
/// User code selector (GDT index 4, RPL 3).
pub const USER_CS: u16 = 0x23;
/// The `trap` value that marks a system call.
const TRAP_SYSCALL: u64 = 256;

/// The registers of a user program.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
    /// Thread-local storage base (`arch_prctl(ARCH_SET_FS)`).
    pub fs_base: u64,
    /// `arch_prctl(ARCH_SET_GS)`.
    pub gs_base: u64,
}

/// The FXSAVE area: x87, MMX and SSE state (512 bytes).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The state after `fninit` with SSE exceptions masked: FCW 0x037f,
    /// MXCSR 0x1f80, everything else zero.
    pub const fn initial() -> Self {
        let mut bytes = [0u8; 512];
        bytes[0] = 0x7f;
        bytes[1] = 0x03;
        bytes[24] = 0x80;
        bytes[25] = 0x1f;
        // MXCSR_MASK: which MXCSR bits may be set (FXRSTOR #GPs otherwise).
        bytes[28] = 0xff;
        bytes[29] = 0xff;
        Self(bytes)
    }
}

/// MXCSR bits this CPU implements (from FXSAVE's MXCSR_MASK at boot;
/// 0xffbf, the architectural default, until then or when it reads 0).
static MXCSR_MASK: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0xffbf);

/// Reads MXCSR_MASK from an FXSAVE image of this CPU (boot).
pub(crate) fn detect_mxcsr_mask() {
    let mask = this_mxcsr_mask();
    if mask != 0 {
        MXCSR_MASK.store(mask, core::sync::atomic::Ordering::Relaxed);
    }
}

/// MXCSR_MASK as this processor's FXSAVE image gives it (0: the
/// architectural default applies). SSE must be enabled (CR4.OSFXSR).
pub(crate) fn this_mxcsr_mask() -> u32 {
    let mut image = FpuState([0; 512]);
    // SAFETY: FXSAVE writes 512 bytes to a 16-byte aligned buffer, which
    // `FpuState` is; SSE was enabled (CR4.OSFXSR) before this runs.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) image.0.as_mut_ptr(), options(nostack)) };
    u32::from_le_bytes([image.0[28], image.0[29], image.0[30], image.0[31]])
}

/// The MXCSR bits this CPU implements.
pub fn mxcsr_mask() -> u32 {
    MXCSR_MASK.load(core::sync::atomic::Ordering::Relaxed)
}

impl FpuState {
    /// Clears the MXCSR bits this CPU does not implement (FXRSTOR raises
    /// #GP for them).
    pub fn sanitize(&mut self) {
        let mask = MXCSR_MASK.load(core::sync::atomic::Ordering::Relaxed);
        let mxcsr = u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]]) & mask;
        self.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
    }

    /// The MXCSR value in the image.
    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]])
    }
}

/// A user context's FPU state parked in its task by a switch away (see
/// the module's "Lazy FPU"); `id` 0: nothing parked.
#[derive(Clone, Copy)]
pub(crate) struct ParkedFpu {
    id: u64,
    state: FpuState,
}

impl ParkedFpu {
    pub(crate) const EMPTY: Self = Self { id: 0, state: FpuState([0; 512]) };
}

/// Ids of contexts that ran (0: never ran).
static NEXT_FPU_ID: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

fn fxsave(into: &mut FpuState) {
    // SAFETY: FXSAVE writes the 512-byte image to a 16-byte aligned buffer
    // (`FpuState` is `align(16)`), exclusively borrowed; SSE is enabled
    // (CR4.OSFXSR) on every processor before user code runs.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) into.0.as_mut_ptr(), options(nostack)) };
}

/// Loads `from` into the registers. `from` must be sanitized (MXCSR).
fn fxrstor(from: &FpuState) {
    // SAFETY: a 16-byte aligned 512-byte image whose MXCSR holds only bits
    // this processor implements (the callers sanitize it), so FXRSTOR
    // cannot fault; it changes only x87/SSE registers, which no kernel code
    // uses (soft-float).
    unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) from.0.as_ptr(), options(nostack)) };
}

/// Called by `task::switch_to` (interrupts off) for the leaving task:
/// the state a context of it left in this processor's registers is parked
/// in the task.
pub(crate) fn park_live_fpu(task: &crate::task::Task) {
    let block = crate::percpu::this_cpu();
    let live = block.fpu_live.swap(0, core::sync::atomic::Ordering::Relaxed);
    if live == 0 {
        return;
    }
    let mut parked = task.fpu_parked.lock();
    // A live state means its context ran lazily, which it does only
    // with nothing else parked in its task: the slot is free (or holds an
    // older copy of the same context).
    if parked.id == 0 || parked.id == live {
        fxsave(&mut parked.state);
        parked.id = live;
    }
}

/// Why user code stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// The program executed `syscall`; the number is in `rax`.
    Syscall,
    /// A CPU exception: `vector` 0..32, the error code (0 when the vector
    /// has none) and, for page faults, the faulting address.
    Exception { vector: u8, error_code: u64, fault_address: u64 },
    /// A device or timer interrupt arrived (already handled by the base);
    /// a scheduler may switch to another task before running again.
    Interrupt { vector: u8 },
}

/// Everything needed to run one user thread: registers, FPU/SSE state and
/// the reason it last stopped. Offsets are part of the assembly contract.
#[repr(C, align(16))]
pub struct UserContext {
    /// General registers, `rip`, `rflags` and the FS/GS bases (offset 0).
    pub regs: UserRegs,
    trap: u64,
    error_code: u64,
    fault_address: u64,
    /// Identifies the context's FPU state in `fpu_live` and a task's
    /// parked state (0 until the first run).
    fpu_id: u64,
    /// FXSAVE image (offset 192): the state unless a newer one is live in
    /// a processor's registers or parked in the task (see the module doc).
    fpu: FpuState,
    /// The task that ran the context last: where a switch parked its
    /// state (held weakly: a context does not keep a task alive).
    fpu_owner: Option<alloc::sync::Weak<crate::task::Task>>,
    /// Nanoseconds the last `run` spent in user mode, and the processor
    /// it ran on (see `last_run`).
    last_user_ns: u64,
    last_cpu: usize,
}

impl Clone for UserContext {
    /// A copy with the context's current FPU state (wherever it is), as
    /// a new context (its own id).
    fn clone(&self) -> Self {
        Self {
            regs: self.regs,
            trap: self.trap,
            error_code: self.error_code,
            fault_address: self.fault_address,
            fpu_id: 0,
            fpu: self.fpu_state(),
            fpu_owner: None,
            last_user_ns: 0,
            last_cpu: 0,
        }
    }
}

impl Drop for UserContext {
    fn drop(&mut self) {
        if self.fpu_id != 0 {
            super::without_interrupts(|| self.forget_fpu_copies());
        }
    }
}

const _: () = assert!(core::mem::offset_of!(UserContext, trap) == 160);
const _: () = assert!(core::mem::offset_of!(UserContext, fpu) == 192);
const _: () = assert!(core::mem::offset_of!(UserRegs, rip) == 128);
const _: () = assert!(core::mem::offset_of!(UserRegs, fs_base) == 144);

impl Default for UserContext {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for UserContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UserContext").field("regs", &self.regs).field("trap", &self.trap).finish_non_exhaustive()
    }
}

unsafe extern "C" {
    /// `context` points to a `UserContext` (its `repr(C)` prefix up to the
    /// FXSAVE image is the assembly's contract).
    fn tessera_enter_user(context: *mut u8);
}

fn user_address_ok(addr: u64) -> bool {
    is_user_half(addr)
}

impl UserContext {
    /// A context with zeroed registers, interrupts enabled and initial FPU state.
    pub const fn new() -> Self {
        let regs = UserRegs {
            rax: 0,
            rbx: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            rbp: 0,
            rsp: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            r11: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rip: 0,
            rflags: 0x202,
            fs_base: 0,
            gs_base: 0,
        };
        Self { regs, trap: 0, error_code: 0, fault_address: 0, fpu_id: 0, fpu: FpuState::initial(), fpu_owner: None, last_user_ns: 0, last_cpu: 0 }
    }

    /// The FPU/SSE state (the FXSAVE image): what the program's registers
    /// hold, wherever that is kept now.
    pub fn fpu_state(&self) -> FpuState {
        super::without_interrupts(|| {
            let mut state = self.fpu;
            if self.fpu_id != 0 {
                // Parked is newer than memory; live is newer than both.
                if let Some(owner) = self.owner() {
                    let parked = *owner.fpu_parked.lock();
                    if parked.id == self.fpu_id {
                        state = parked.state;
                    }
                }
                if crate::percpu::this_cpu().fpu_live.load(core::sync::atomic::Ordering::Relaxed) == self.fpu_id {
                    fxsave(&mut state);
                }
            }
            state
        })
    }

    /// Replaces the FPU/SSE state (loaded at the next run; MXCSR bits the
    /// processor lacks are cleared then).
    pub fn set_fpu_state(&mut self, state: FpuState) {
        super::without_interrupts(|| {
            self.forget_fpu_copies();
            self.fpu = state;
        });
    }

    /// Drops the live and parked copies of this context's state (with
    /// interrupts off; the memory image stays).
    fn forget_fpu_copies(&mut self) {
        if self.fpu_id == 0 {
            return;
        }
        let _ = crate::percpu::this_cpu().fpu_live.compare_exchange(
            self.fpu_id,
            0,
            core::sync::atomic::Ordering::Relaxed,
            core::sync::atomic::Ordering::Relaxed,
        );
        if let Some(owner) = self.owner() {
            let mut parked = owner.fpu_parked.lock();
            if parked.id == self.fpu_id {
                parked.id = 0;
            }
        }
    }

    /// The task that ran the context last, if it still exists.
    fn owner(&self) -> Option<alloc::sync::Arc<crate::task::Task>> {
        self.fpu_owner.as_ref().and_then(alloc::sync::Weak::upgrade)
    }

    /// Makes this processor's registers hold the context's FPU state (with
    /// interrupts off, right before entering user mode; `block` is the
    /// processor's). Returns true when the state must be saved to memory
    /// right after the run (another context's state is parked in this
    /// task).
    fn load_fpu(&mut self, block: &crate::percpu::PerCpu) -> bool {
        use core::sync::atomic::Ordering::Relaxed;
        if self.fpu_id == 0 {
            self.fpu_id = NEXT_FPU_ID.fetch_add(1, Relaxed);
        }
        let live = block.fpu_live.load(Relaxed);
        if live == self.fpu_id {
            // Ran lazily here last, with nothing parked then, and no switch
            // since (a switch clears `fpu_live`): so by this same task, and
            // nothing is parked now.
            return false;
        }
        let task = crate::task::current();
        let owner = self.owner();
        // The usual case after a switch: this task ran the context last and
        // parked its state, and nothing is live. The registers take the
        // parked image back directly (copying it into `self.fpu` first
        // cost 512 bytes of `rep movs`, one emulated step per 8 bytes
        // under QEMU's TCG); the state is then live, as after any lazy
        // run, and `fpu_state` finds it there or parked again.
        if live == 0 && owner.as_ref().is_some_and(|owner| alloc::sync::Arc::ptr_eq(owner, &task)) {
            let mut parked = task.fpu_parked.lock();
            if parked.id == self.fpu_id {
                parked.state.sanitize();
                fxrstor(&parked.state);
                parked.id = 0;
                return false;
            }
        }
        // Parked by a switch of the task that ran it last (this one, or
        // the one that handed the context over).
        if let Some(owner) = &owner {
            let mut parked = owner.fpu_parked.lock();
            if parked.id == self.fpu_id {
                self.fpu = parked.state;
                parked.id = 0;
            }
        }
        drop(owner);
        self.fpu_owner = Some(alloc::sync::Arc::downgrade(&task));
        let mut parked = task.fpu_parked.lock();
        if live != 0 {
            // Another context of this task left its state in the
            // registers (a live state means nothing was parked): park it.
            if parked.id == 0 {
                fxsave(&mut parked.state);
                parked.id = live;
            }
            block.fpu_live.store(0, Relaxed);
        }
        // The FPU image is plain bytes anyone may have written (a signal
        // frame restored from user memory, say): MXCSR bits the CPU does
        // not implement would make FXRSTOR fault in ring 0.
        self.fpu.sanitize();
        fxrstor(&self.fpu);
        parked.id != 0
    }

    /// Nanoseconds the last [`run`](Self::run) spent in user mode, and the
    /// processor it ran on (the caller's user-time accounting, without
    /// two more clock reads of its own).
    #[inline]
    pub fn last_run(&self) -> (u64, usize) {
        (self.last_user_ns, self.last_cpu)
    }

    /// Runs the program in the active user address space until it traps.
    ///
    /// A context whose `rip`, `rsp` or segment bases lie outside the user
    /// half is not entered: it returns a general-protection exception, as
    /// the CPU would, without leaving the kernel. So is any context when
    /// called from an interrupt handler: the per-CPU user-entry state then
    /// belongs to the program the interrupt stopped, whose return to the
    /// kernel would otherwise go through this entry's dead stack.
    pub fn run(&mut self) -> Trap {
        let interrupts_were_enabled = super::interrupts_enabled();
        x86_64::instructions::interrupts::disable();
        // This processor's block, read once: with interrupts off the task
        // stays here until the program traps back.
        let block = crate::percpu::this_cpu();
        let r = &self.regs;
        // All four addresses in the user half: their OR is (one test; this
        // runs on every return to user mode).
        if block.irq_depth.load(core::sync::atomic::Ordering::Relaxed) > 0
            || !user_address_ok(r.rip | r.rsp | r.fs_base | r.gs_base)
        {
            self.last_user_ns = 0;
            if interrupts_were_enabled {
                x86_64::instructions::interrupts::enable();
            }
            return Trap::Exception { vector: 13, error_code: 0, fault_address: 0 };
        }
        let eager = self.load_fpu(block);
        let entered = crate::time::now_ns_here();
        // SAFETY: `self` is a valid, exclusively borrowed context that lives
        // across the call; its rip/rsp/bases are user-half canonical (checked
        // above), the user selectors and per-CPU block were set up at boot,
        // and the user code can only reach memory the active address space
        // maps for it. The call returns, on this stack, when user mode traps.
        unsafe { tessera_enter_user((self as *mut Self).cast()) };
        // Back on the same processor, interrupts still off: the registers
        // hold the program's FPU state.
        self.last_user_ns = crate::time::now_ns_here().saturating_sub(entered);
        self.last_cpu = block.index();
        if eager {
            fxsave(&mut self.fpu);
        } else {
            block.fpu_live.store(self.fpu_id, core::sync::atomic::Ordering::Relaxed);
        }
        if interrupts_were_enabled {
            x86_64::instructions::interrupts::enable();
        }
        match self.trap {
            // (An NMI in user mode never ends the run: `trap_common`
            // handles it in place and returns to the program.)
            TRAP_SYSCALL => Trap::Syscall,
            v if v < 32 => {
                Trap::Exception { vector: v as u8, error_code: self.error_code, fault_address: self.fault_address }
            }
            v => Trap::Interrupt { vector: v as u8 },
        }
    }
}

/// Called by `trap_common` for traps taken in user mode, on the kernel stack
/// below the saved kernel registers. Records the trap in the current context
/// and lets the base handle device interrupts.
#[unsafe(no_mangle)]
extern "C" fn trap_from_user(frame: &super::trap::TrapFrame) {
    let context = super::cpu::current_context() as *mut UserContext;
    // SAFETY: `current_context` was set by `tessera_enter_user` to the
    // context that `UserContext::run` holds exclusively and that stays alive
    // until the entry call returns, which happens right after this.
    let context = unsafe { &mut *context };
    let r = &mut context.regs;
    (r.rax, r.rbx, r.rcx, r.rdx) = (frame.rax, frame.rbx, frame.rcx, frame.rdx);
    (r.rsi, r.rdi, r.rbp, r.rsp) = (frame.rsi, frame.rdi, frame.rbp, frame.rsp);
    (r.r8, r.r9, r.r10, r.r11) = (frame.r8, frame.r9, frame.r10, frame.r11);
    (r.r12, r.r13, r.r14, r.r15) = (frame.r12, frame.r13, frame.r14, frame.r15);
    (r.rip, r.rflags) = (frame.rip, frame.rflags);
    context.trap = frame.vector;
    context.error_code = frame.error_code;
    context.fault_address =
        if frame.vector == 14 { x86_64::registers::control::Cr2::read_raw() } else { 0 };
    if (32..48).contains(&frame.vector) {
        crate::irq::dispatch((frame.vector - 32) as u8);
    } else if frame.vector >= 48 {
        crate::irq::dispatch_local(frame.vector as u8);
    }
}

// Offsets: UserContext.regs fields (see UserRegs), trap 160, fpu 192;
// per-CPU block (see cpu::PerCpu): kernel_resume_rsp gs:8, user_rsp_scratch
// gs:16, current_context gs:24, tss_rsp0 address gs:32.
core::arch::global_asm!(
    r#"
    .section .text.user, "ax"
    .global tessera_enter_user
tessera_enter_user:                      /* rdi = context */
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %gs:8                     /* resume here when user mode traps */
    movq %gs:32, %rax
    movq %rsp, (%rax)                    /* TSS.rsp0: traps from ring 3 land below */
    movq %rdi, %gs:24
    /* The user's FS and GS bases: each register is written only when it
       does not hold the value already (as after a system call of the same
       program). It is read, not remembered: a program may have changed
       its own bases since (a segment load), and another program's value
       must never stay. */
    movl $0xC0000100, %ecx               /* FS_BASE */
    rdmsr
    cmpl 144(%rdi), %eax
    jne 2f
    cmpl 148(%rdi), %edx
    je 3f
2:
    movl 144(%rdi), %eax
    movl 148(%rdi), %edx
    wrmsr
3:
    movl $0xC0000102, %ecx               /* KERNEL_GS_BASE: the user's GS after swapgs */
    rdmsr
    cmpl 152(%rdi), %eax
    jne 4f
    cmpl 156(%rdi), %edx
    je 5f
4:
    movl 152(%rdi), %eax
    movl 156(%rdi), %edx
    wrmsr
5:
    movq 136(%rdi), %r11
    andq $0x240dd5, %r11                 /* flags a program may set: CF PF AF ZF SF TF DF OF AC ID */
    orq $0x202, %r11                     /* IF on, reserved bit 1 */
    movq 128(%rdi), %rcx                 /* rip */
    movq 8(%rdi), %rbx                   /* the registers both returns load */
    movq 24(%rdi), %rdx
    movq 32(%rdi), %rsi
    movq 48(%rdi), %rbp
    movq 64(%rdi), %r8
    movq 72(%rdi), %r9
    movq 80(%rdi), %r10
    movq 96(%rdi), %r12
    movq 104(%rdi), %r13
    movq 112(%rdi), %r14
    movq 120(%rdi), %r15
    movq 0(%rdi), %rax
    /* sysretq when it gives exactly the state iretq would: it loads rip
       from rcx and rflags from r11, so only when the context holds rcx =
       rip and r11 = rflags (as a system call left them). rip is in the
       user half (checked by `run`), so canonical: sysretq cannot fault. */
    testq $0x100, %r11                   /* TF: sysretq would trap before the next instruction runs (iretq runs it first) */
    jnz 1f
    cmpq 16(%rdi), %rcx
    jne 1f
    cmpq 88(%rdi), %r11
    jne 1f
    movq 56(%rdi), %rsp                  /* the user stack: interrupts are off until sysretq; NMIs and exceptions use IST stacks */
    movq 40(%rdi), %rdi
    swapgs
    sysretq
1:
    pushq $0x1b                          /* SS */
    pushq 56(%rdi)                       /* RSP */
    pushq %r11                           /* RFLAGS */
    pushq $0x23                          /* CS */
    pushq %rcx                           /* RIP */
    movq 16(%rdi), %rcx
    movq 88(%rdi), %r11
    movq 40(%rdi), %rdi
    swapgs
    iretq

    .global tessera_syscall_entry
tessera_syscall_entry:                   /* from ring 3: rcx = rip, r11 = rflags, IF off */
    swapgs
    movq %rsp, %gs:16
    movq %gs:24, %rsp
    addq $128, %rsp                      /* push downwards into context.regs */
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %gs:16                         /* rsp */
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax                           /* rsp = context */
    movq %rcx, 128(%rsp)                 /* rip */
    movq %r11, 136(%rsp)                 /* rflags */
    movq $256, 160(%rsp)                 /* trap = syscall */
    jmp tessera_resume_kernel

    .global tessera_return_from_user_trap
tessera_return_from_user_trap:           /* from trap_common, after trap_from_user */
tessera_resume_kernel:
    movq %gs:8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
"#,
    options(att_syntax)
);
