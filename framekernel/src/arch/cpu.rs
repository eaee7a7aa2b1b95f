//! Per-CPU setup: SSE for user programs, SMEP/SMAP, the `syscall` MSRs and
//! the per-CPU block that the entry assembly reaches through `gs`.
//!
//! Tessera runs on one CPU for now; the per-CPU block is already the shape
//! SMP needs (one block per CPU, found through GS base).

use super::gdt::Selectors;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, GsBase, KernelGsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

/// The block the entry assembly reaches at `gs:OFFSET` while in the kernel.
/// Field offsets are part of the assembly contract in `arch::user`.
#[repr(C)]
pub(crate) struct PerCpu {
    /// 0: the block's own address.
    self_address: u64,
    /// 8: kernel stack pointer to resume when user mode traps back.
    pub(crate) kernel_resume_rsp: u64,
    /// 16: scratch for the user stack pointer during `syscall` entry.
    user_rsp_scratch: u64,
    /// 24: the `UserContext` being run.
    pub(crate) current_context: u64,
    /// 32: address of the TSS `rsp0` field.
    tss_rsp0: u64,
}

// Reached from Rust only through raw pointers (see `current_context`), and
// from assembly through gs.
static mut PER_CPU: PerCpu =
    PerCpu { self_address: 0, kernel_resume_rsp: 0, user_rsp_scratch: 0, current_context: 0, tss_rsp0: 0 };

/// CPU features the base uses, detected at boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Supervisor-mode execution prevention is on.
    pub smep: bool,
    /// Supervisor-mode access prevention is on (user copies use STAC/CLAC).
    pub smap: bool,
}

static FEATURES: spin::Once<Features> = spin::Once::new();

/// Features detected at boot.
pub fn features() -> Features {
    FEATURES.get().copied().unwrap_or_default()
}

/// Set when SMAP is on: the user-copy assembly executes STAC/CLAC only then
/// (the instructions fault on CPUs without SMAP).
#[unsafe(no_mangle)]
static TESSERA_SMAP_ENABLED: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

unsafe extern "C" {
    fn tessera_syscall_entry();
}

/// The per-CPU state the user-entry assembly keeps for the task that
/// entered user mode: saved and restored on every task switch.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UserEntry {
    kernel_resume_rsp: u64,
    current_context: u64,
    rsp0: u64,
}

impl UserEntry {
    /// This CPU's state now.
    pub(crate) fn save() -> Self {
        let block = core::ptr::addr_of!(PER_CPU);
        let rsp0 = super::gdt::rsp0_address() as *const u64;
        // SAFETY: plain reads of u64 fields of the per-CPU block and the
        // TSS, written only on this CPU with interrupts disabled (the
        // caller, `switch_to`, has them disabled too).
        unsafe {
            Self {
                kernel_resume_rsp: core::ptr::addr_of!((*block).kernel_resume_rsp).read_volatile(),
                current_context: core::ptr::addr_of!((*block).current_context).read_volatile(),
                rsp0: rsp0.read_unaligned(), // the TSS field is at offset 4
            }
        }
    }

    /// Puts this state back on this CPU.
    pub(crate) fn restore(&self) {
        let block = core::ptr::addr_of_mut!(PER_CPU);
        let rsp0 = super::gdt::rsp0_address() as *mut u64;
        // SAFETY: as in `save`: plain u64 writes to this CPU's block and
        // TSS with interrupts disabled; the values were saved from this
        // CPU for the task being entered (or are 0 for a new task, which
        // sets them itself before it enters user mode).
        unsafe {
            core::ptr::addr_of_mut!((*block).kernel_resume_rsp).write_volatile(self.kernel_resume_rsp);
            core::ptr::addr_of_mut!((*block).current_context).write_volatile(self.current_context);
            if self.rsp0 != 0 {
                rsp0.write_unaligned(self.rsp0);
            }
        }
    }
}

/// The `UserContext` address recorded by the last entry to user mode.
pub(crate) fn current_context() -> u64 {
    // SAFETY: a plain read of a u64 field; the field is written only by the
    // user-entry assembly on this CPU with interrupts disabled.
    unsafe { core::ptr::addr_of!(PER_CPU.current_context).read_volatile() }
}

/// Prepares this CPU to run user code. `selectors` must be the loaded GDT's.
pub(crate) fn init(selectors: &Selectors) {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let smep = leaf7.ebx & (1 << 7) != 0;
    let smap = leaf7.ebx & (1 << 20) != 0;
    // SAFETY: enabling SSE state handling (user programs use SSE; the kernel
    // itself is built soft-float and never touches vector registers) and
    // SMEP/SMAP where the CPU has them; all other bits are kept.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            if smep {
                f.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if smap {
                f.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    super::user::detect_mxcsr_mask();
    TESSERA_SMAP_ENABLED.store(u8::from(smap), core::sync::atomic::Ordering::Relaxed);
    FEATURES.call_once(|| Features { smep, smap });
    // The user-entry assembly hard-codes these selectors.
    assert!(
        selectors.user_data.0 == super::user::USER_SS && selectors.user_code.0 == super::user::USER_CS,
        "GDT user selectors moved: {:?}",
        selectors
    );
    if let Err(e) = Star::write(selectors.user_code, selectors.user_data, selectors.kernel_code, selectors.kernel_data) {
        panic!("STAR selectors rejected: {e:?}");
    }
    LStar::write(VirtAddr::new(tessera_syscall_entry as *const () as u64));
    // Cleared on syscall entry: interrupts stay off until the entry code has
    // switched stacks; no single-stepping, direction up, no user access.
    SFMask::write(RFlags::INTERRUPT_FLAG | RFlags::TRAP_FLAG | RFlags::DIRECTION_FLAG | RFlags::ALIGNMENT_CHECK);
    let block = core::ptr::addr_of_mut!(PER_CPU);
    // SAFETY: boot, one CPU, interrupts off: nothing else accesses the block.
    unsafe {
        (*block).self_address = block as u64;
        (*block).tss_rsp0 = super::gdt::rsp0_address();
    }
    GsBase::write(VirtAddr::new(block as u64));
    KernelGsBase::write(VirtAddr::new(0));
}
