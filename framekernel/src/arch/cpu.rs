//! Per-CPU setup: SSE for user programs, SMEP/SMAP and the `syscall`
//! MSRs; and the user-entry state of the per-CPU block (`crate::percpu`)
//! that follows the task, not the processor.

use super::gdt::Selectors;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use core::sync::atomic::Ordering;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

/// CPU features the base uses, detected at boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Supervisor-mode execution prevention is on.
    pub smep: bool,
    /// Supervisor-mode access prevention is on (user copies use STAC/CLAC).
    pub smap: bool,
    /// `rdtscp` works, and `IA32_TSC_AUX` holds each processor's index.
    pub rdtscp: bool,
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
        let block = crate::percpu::this_cpu();
        let rsp0 = block.tss_rsp0.load(Ordering::Relaxed) as *const u64;
        Self {
            kernel_resume_rsp: block.kernel_resume_rsp.load(Ordering::Relaxed),
            current_context: block.current_context.load(Ordering::Relaxed),
            // SAFETY: `rsp0` is the address of this processor's TSS `rsp0`
            // field (unaligned: the TSS puts it at offset 4), written only
            // on this processor with interrupts disabled, as they are here
            // (the caller, `switch_to`, disables them).
            rsp0: unsafe { rsp0.read_unaligned() },
        }
    }

    /// Puts this state back on this CPU.
    pub(crate) fn restore(&self) {
        let block = crate::percpu::this_cpu();
        block.kernel_resume_rsp.store(self.kernel_resume_rsp, Ordering::Relaxed);
        block.current_context.store(self.current_context, Ordering::Relaxed);
        if self.rsp0 != 0 {
            let rsp0 = block.tss_rsp0.load(Ordering::Relaxed) as *mut u64;
            // SAFETY: as in `save`: this processor's TSS field, written with
            // interrupts disabled; the value was saved on a processor for
            // the task being entered (a stack it owns) or is 0 for a new
            // task, which sets it itself before it enters user mode.
            unsafe { rsp0.write_unaligned(self.rsp0) };
        }
    }
}

/// The `UserContext` address recorded by the last entry to user mode on
/// this processor.
pub(crate) fn current_context() -> u64 {
    crate::percpu::this_cpu().current_context.load(Ordering::Relaxed)
}

/// Prepares the boot processor to run user code. `selectors` must be the
/// loaded GDT's.
pub(crate) fn init(selectors: &Selectors) {
    let (smep, smap) = smep_smap();
    setup(selectors, smep, smap);
    super::user::detect_mxcsr_mask();
    TESSERA_SMAP_ENABLED.store(u8::from(smap), core::sync::atomic::Ordering::Relaxed);
    let rdtscp = has_rdtscp();
    FEATURES.call_once(|| Features { smep, smap, rdtscp });
    if rdtscp {
        set_tsc_aux();
    }
    crate::time::set_cpu_in_tsc_aux(rdtscp);
    let block = crate::percpu::this_cpu();
    // Its local APIC id (CPUID leaf 1), for IPIs aimed at it.
    block.apic_id.store(core::arch::x86_64::__cpuid(1).ebx >> 24, Ordering::Relaxed);
    block.ready.store(true, Ordering::Release);
}

/// Prepares another processor as the boot processor was prepared. It must
/// have the features the base decided on at boot (the user-copy code runs
/// STAC/CLAC on every processor or on none), else it is not used.
pub(crate) fn init_ap(selectors: &Selectors) -> Result<(), &'static str> {
    let (smep, smap) = smep_smap();
    let boot = features();
    if (smep, smap) != (boot.smep, boot.smap) {
        return Err("its SMEP/SMAP support differs from the boot processor's");
    }
    if boot.rdtscp && !has_rdtscp() {
        return Err("it lacks RDTSCP, which the boot processor has (user programs read their processor number with it)");
    }
    setup(selectors, smep, smap);
    if boot.rdtscp {
        set_tsc_aux();
    }
    let mask = super::user::this_mxcsr_mask();
    if mask != 0 && mask != super::user::mxcsr_mask() {
        return Err("its MXCSR mask differs from the boot processor's");
    }
    Ok(())
}

/// Whether this processor has RDTSCP (CPUID leaf 0x8000_0001, EDX bit 27).
fn has_rdtscp() -> bool {
    let max = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0001 && core::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0
}

/// `IA32_TSC_AUX` := this processor's index, as Linux sets it (node 0 in
/// bits 12 and up): `rdtscp` and the vDSO's `getcpu` read it in user mode.
fn set_tsc_aux() {
    let index = crate::percpu::this_cpu().index() as u64;
    // SAFETY: the processor has RDTSCP (checked by the callers), so the
    // MSR exists; it only feeds `rdtscp`/`rdpid` results, which nothing in
    // the kernel reads.
    unsafe { x86_64::registers::model_specific::Msr::new(0xC000_0103).write(index) };
}

/// Whether this processor has SMEP and SMAP (CPUID leaf 7).
fn smep_smap() -> (bool, bool) {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    (leaf7.ebx & (1 << 7) != 0, leaf7.ebx & (1 << 20) != 0)
}

/// Control registers and system-call MSRs, the same on every processor.
fn setup(selectors: &Selectors, smep: bool, smap: bool) {
    // SAFETY: enabling SSE state handling (user programs use SSE; the kernel
    // itself is built soft-float and never touches vector registers), write
    // protection in ring 0 (the kernel never writes its own read-only pages)
    // and SMEP/SMAP where the CPU has them; all other bits are kept.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
            // Whatever the loader left: the user copies (`usercopy`) rely
            // on a kernel write to a read-only user page faulting, so that
            // a page shared copy-on-write is copied before it is written.
            f.insert(Cr0Flags::WRITE_PROTECT);
        });
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            // Off, whatever the loader left: with FSGSBASE a program could
            // set its GS base to a kernel address (the NMI entry tells user
            // from kernel GS by the half), and TLB shootdowns rely on a CR3
            // load flushing every user translation (no PCIDs).
            f.remove(Cr4Flags::FSGSBASE | Cr4Flags::PCID);
            if smep {
                f.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if smap {
                f.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
        Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
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
}
