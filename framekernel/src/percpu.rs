//! Per-CPU data: one [`PerCpu`] block per processor, found through the
//! processor's GS base while it runs kernel code.
//!
//! The first fields are the user-entry assembly's (fixed offsets, reached as
//! `gs:OFFSET`); the rest is the base's per-processor state: the running
//! task, the task just left, the running task's stack bounds, the innermost
//! cell-call record, the interrupt nesting depth, and the processor's task
//! state segment and descriptor table.
//!
//! Why GS is always the kernel's here: every way into the kernel from ring
//! 3 (`syscall`, interrupts, exceptions) executes `swapgs` first, and every
//! way out executes it last, with interrupts off in between. Only an NMI,
//! a machine check or a double fault can arrive in those few instructions;
//! their entry (`arch::trap`) reads the GS base register and swaps when it
//! holds a user value (user GS bases are always in the user half, checked
//! before entering user mode), as Linux's "paranoid" entries do. Every
//! processor installs its block first thing (the boot processor at the top
//! of `framekernel_entry`, an AP at the top of `framekernel_ap_entry`), so
//! [`this_cpu`] has no early-boot case: called before that, it would read
//! `gs:0` through whatever GS base the loader left (at best stopping the
//! machine in `not_a_block`).

use crate::sync::BaseLock;
use crate::task::Task;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use x86_64::structures::gdt::GlobalDescriptorTable;
use x86_64::structures::tss::TaskStateSegment;

/// Most processors Tessera uses (the rest are reported and left parked).
pub const MAX_CPUS: usize = 16;

/// One processor's block. Offsets of the first six fields are part of the
/// assembly contract (`arch::user`, `arch::trap`). Its size is a power of
/// two, so that `this_cpu` checks an address with one mask (see there).
#[repr(C, align(1024))]
pub(crate) struct PerCpu {
    /// 0: the block's own address (what `this_cpu` reads through GS).
    self_address: AtomicU64,
    /// 8: kernel stack pointer to resume when user mode traps back.
    pub(crate) kernel_resume_rsp: AtomicU64,
    /// 16: scratch for the user stack pointer during `syscall` entry.
    user_rsp_scratch: AtomicU64,
    /// 24: the `UserContext` being run.
    pub(crate) current_context: AtomicU64,
    /// 32: address of this processor's TSS `rsp0` field.
    pub(crate) tss_rsp0: AtomicU64,
    /// Interrupt handlers running (nested) on this processor.
    pub(crate) irq_depth: AtomicU64,
    /// The running task's innermost cell-call record (0: none).
    pub(crate) innermost: AtomicU64,
    /// The task running on this processor.
    pub(crate) current: BaseLock<Option<Arc<Task>>>,
    /// The task `current` holds (null before the first `task::current`),
    /// read without the lock by `task::current` on this processor. Both
    /// are written together, only by this processor, interrupts off.
    pub(crate) current_ptr: core::sync::atomic::AtomicPtr<Task>,
    /// The task this processor just left, dropped by the task entered.
    pub(crate) previous: BaseLock<Option<Arc<Task>>>,
    /// Bounds of the running task's stack, for the fault reporter.
    pub(crate) stack_bounds: BaseLock<(u64, u64)>,
    /// Bounds of the stack the processor started on (its first task's).
    pub(crate) initial_stack: (AtomicU64, AtomicU64),
    /// Bounds of the double-fault, NMI and machine-check stacks.
    pub(crate) ist_stacks: [(AtomicU64, AtomicU64); 3],
    /// The processor's task-state segment: written by this processor only
    /// (set-up before it is loaded; `rsp0` by the user-entry code and
    /// `UserEntry::restore`, interrupts off), read by the processor.
    pub(crate) tss: UnsafeCell<TaskStateSegment>,
    /// The processor's GDT (it names this processor's TSS).
    pub(crate) gdt: spin::Once<(GlobalDescriptorTable, crate::arch::gdt::Selectors)>,
    /// The processor's local APIC id.
    pub(crate) apic_id: AtomicU32,
    /// Set once the processor has loaded its descriptor tables, its block
    /// and its system-call registers.
    pub(crate) ready: AtomicBool,
    /// The PML4 in this processor's CR3 (updated right after each load).
    pub(crate) active_root: AtomicU64,
    /// Set once the processor runs the kernel's work (`cpu::start_others`).
    pub(crate) online: AtomicBool,
    /// The last TLB shootdown request aimed at this processor, and the
    /// last one it carried out (a request is carried out only by its
    /// targets: see `mm::tlb::on_nmi`).
    pub(crate) tlb_want: AtomicU64,
    pub(crate) tlb_ack: AtomicU64,
    /// NMIs this processor took, and where the last one's frame was.
    pub(crate) nmis: AtomicU64,
    /// Id of the user context whose FPU state this processor's registers
    /// hold and its memory does not (0: none; `arch::user`'s lazy FPU).
    pub(crate) fpu_live: AtomicU64,
    pub(crate) nmi_frame: AtomicU64,
    /// Local timer interrupts and kicks this processor took.
    pub(crate) local_ticks: AtomicU64,
    pub(crate) kicks: AtomicU64,
    /// TLB shootdown requests (and barriers, holds) it carried out.
    pub(crate) shootdowns: AtomicU64,
    /// Set once this processor's local APIC timer runs (`cpu::start_others`).
    pub(crate) local_timer: AtomicBool,
    /// Interrupts this processor took on each legacy line.
    pub(crate) lines: [AtomicU64; 16],
    /// Set while this processor takes the cell watchdog's NMIs (busy,
    /// its local APIC timer on).
    pub(crate) watchdog_nmi: AtomicBool,
}

// SAFETY: every field but `tss` is atomic or a lock. `tss` is written only
// by the processor that owns the block (before loading it, and its `rsp0`
// with interrupts off) and otherwise only read by that processor's
// hardware and by the same processor's `UserEntry::save`; no Rust
// reference to it is ever formed.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new() -> Self {
        Self {
            self_address: AtomicU64::new(0),
            kernel_resume_rsp: AtomicU64::new(0),
            user_rsp_scratch: AtomicU64::new(0),
            current_context: AtomicU64::new(0),
            tss_rsp0: AtomicU64::new(0),
            irq_depth: AtomicU64::new(0),
            innermost: AtomicU64::new(0),
            current: BaseLock::new(None),
            current_ptr: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
            previous: BaseLock::new(None),
            stack_bounds: BaseLock::new((0, 0)),
            initial_stack: (AtomicU64::new(0), AtomicU64::new(0)),
            ist_stacks: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 3],
            tss: UnsafeCell::new(TaskStateSegment::new()),
            gdt: spin::Once::new(),
            apic_id: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            active_root: AtomicU64::new(0),
            online: AtomicBool::new(false),
            tlb_want: AtomicU64::new(0),
            tlb_ack: AtomicU64::new(0),
            nmis: AtomicU64::new(0),
            fpu_live: AtomicU64::new(0),
            nmi_frame: AtomicU64::new(0),
            local_ticks: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
            shootdowns: AtomicU64::new(0),
            lines: [const { AtomicU64::new(0) }; 16],
            watchdog_nmi: AtomicBool::new(false),
            local_timer: AtomicBool::new(false),
        }
    }

    /// The processor's index (0: the boot processor).
    #[inline]
    pub(crate) fn index(&self) -> usize {
        let base = BLOCKS.as_ptr() as usize;
        (self as *const Self as usize - base) / core::mem::size_of::<Self>()
    }

    /// Bounds (bottom, top) of the stack the processor started on.
    pub(crate) fn initial_stack(&self) -> (u64, u64) {
        load_pair(&self.initial_stack)
    }

    /// Bounds of the double-fault, NMI and machine-check stacks.
    pub(crate) fn ist_bounds(&self) -> [(u64, u64); 3] {
        self.ist_stacks.each_ref().map(load_pair)
    }

    /// Records the processor's stacks (the boot processor's at install,
    /// an AP's by the boot processor before it wakes the AP).
    pub(crate) fn set_stacks(&self, initial: (u64, u64), ist: [(u64, u64); 3]) {
        for (pair, (bottom, top)) in core::iter::once(&self.initial_stack).chain(&self.ist_stacks).zip(core::iter::once(initial).chain(ist)) {
            pair.0.store(bottom, Ordering::Relaxed);
            pair.1.store(top, Ordering::Release);
        }
    }

    /// The block's address.
    pub(crate) fn address(&self) -> u64 {
        self as *const Self as u64
    }

    /// Address of the TSS (for its GDT descriptor and `rsp0`).
    pub(crate) fn tss_address(&self) -> u64 {
        self.tss.get() as u64
    }
}

const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_resume_rsp) == 8);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == 16);
const _: () = assert!(core::mem::offset_of!(PerCpu, current_context) == 24);
const _: () = assert!(core::mem::offset_of!(PerCpu, tss_rsp0) == 32);

static BLOCKS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];
/// A block's size, and where its index starts in an offset into `BLOCKS`.
const BLOCK_SIZE: u64 = core::mem::size_of::<PerCpu>() as u64;
const BLOCK_SHIFT: u32 = BLOCK_SIZE.trailing_zeros();
const _: () = assert!(BLOCK_SIZE.is_power_of_two() && MAX_CPUS.is_power_of_two());
/// The bits an offset into `BLOCKS` may have set to be a block's start:
/// those of the index alone.
const BLOCK_INDEX_BITS: u64 = (MAX_CPUS as u64 - 1) << BLOCK_SHIFT;

fn load_pair((bottom, top): &(AtomicU64, AtomicU64)) -> (u64, u64) {
    let top = top.load(Ordering::Acquire);
    (bottom.load(Ordering::Relaxed), top)
}

/// Block `index` (none past [`MAX_CPUS`]).
pub(crate) fn block(index: usize) -> Option<&'static PerCpu> {
    BLOCKS.get(index)
}

/// Makes block `index` this processor's: its GS base (and the kernel GS
/// base that `swapgs` exchanges with, which holds the user's value only in
/// user mode) point at it. Called once per processor, first thing (the
/// boot processor's at kernel entry, before any code reads its block; an
/// AP's before it uses its stacks, which the boot processor recorded),
/// with interrupts off.
pub(crate) fn install(index: usize) -> Option<&'static PerCpu> {
    use x86_64::VirtAddr;
    use x86_64::instructions::segmentation::{GS, Segment};
    use x86_64::registers::model_specific::{GsBase, KernelGsBase};
    use x86_64::registers::segmentation::SegmentSelector;
    let block = BLOCKS.get(index)?;
    let address = block as *const PerCpu as u64;
    block.self_address.store(address, Ordering::Relaxed);
    block.tss_rsp0.store(block.tss_address() + 4, Ordering::Relaxed); // TSS: a reserved u32, then rsp0
    // SAFETY: the null selector is always valid for GS in 64-bit mode;
    // loading it zeroes the base, written right after.
    unsafe { GS::set_reg(SegmentSelector(0)) };
    GsBase::write(VirtAddr::new(address));
    KernelGsBase::write(VirtAddr::new(0));
    Some(block)
}

/// This processor's block (inlined: it runs several times per system
/// call).
#[inline]
pub(crate) fn this_cpu() -> &'static PerCpu {
    let address: u64;
    // SAFETY: a plain 8-byte load from `gs:0`. GS holds this processor's
    // block whenever kernel code runs (module documentation), and every
    // processor installs its block before running any code that calls
    // this; the load has no other effect.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) address, options(nostack, readonly, preserves_flags)) };
    // A block's start is `BLOCKS` plus an index times the (power of two)
    // size: an offset with no bit set outside the index's. One test, as
    // this runs several times per system call.
    let offset = address.wrapping_sub(BLOCKS.as_ptr() as u64);
    match BLOCKS.get((offset >> BLOCK_SHIFT) as usize & (MAX_CPUS - 1)) {
        Some(block) if offset & !BLOCK_INDEX_BITS == 0 => block,
        // Not a block: the GS invariant is broken, and no processor's
        // state may be used for another's.
        _ => not_a_block(address),
    }
}

#[cold]
#[inline(never)]
fn not_a_block(address: u64) -> ! {
    crate::console::emergency_print(format_args!("\n!!! per-CPU block address {address:#x} is not one of the base's\n"));
    crate::arch::qemu::exit(crate::arch::qemu::ExitCode::Failure)
}
