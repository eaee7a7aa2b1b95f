//! Global descriptor table and task-state segment.
//!
//! The TSS supplies the interrupt stacks (IST) used for double faults and
//! NMIs, so that a kernel stack overflow is still reported.

use crate::arch::trap::{DOUBLE_FAULT_IST, MACHINE_CHECK_IST, NMI_IST};
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

// The IST stacks are only ever touched by the CPU when it delivers a double
// fault or NMI; Rust code never forms references to them.
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; IST_STACK_SIZE]);
static mut NMI_STACK: Stack = Stack([0; IST_STACK_SIZE]);
static mut MACHINE_CHECK_STACK: Stack = Stack([0; IST_STACK_SIZE]);

/// The segment selectors the rest of the kernel needs. The order of the
/// GDT entries is fixed by `syscall`/`sysret`: kernel code, kernel data,
/// then user data and user code (SYSRET loads SS from STAR+8, CS from +16).
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    /// Kernel code segment (0x08).
    pub kernel_code: SegmentSelector,
    /// Kernel data segment (0x10).
    pub kernel_data: SegmentSelector,
    /// User data segment (0x1b).
    pub user_data: SegmentSelector,
    /// User code segment (0x23).
    pub user_code: SegmentSelector,
    /// Task-state segment.
    pub tss: SegmentSelector,
}

/// Top and bottom of the boot processor's IST stacks.
fn boot_ist_stacks() -> [(u64, u64); 3] {
    let df = core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64;
    let nmi = core::ptr::addr_of!(NMI_STACK) as u64;
    let mc = core::ptr::addr_of!(MACHINE_CHECK_STACK) as u64;
    [(df, df + IST_STACK_SIZE as u64), (nmi, nmi + IST_STACK_SIZE as u64), (mc, mc + IST_STACK_SIZE as u64)]
}

/// Bytes of each IST stack.
pub(crate) const IST_SIZE: usize = IST_STACK_SIZE;

/// Builds and loads the boot processor's GDT and TSS; returns the selectors.
pub fn init() -> Selectors {
    // (Installed as this processor's first thing at entry.)
    let Some(block) = crate::percpu::block(0) else { unreachable!("block 0 exists") };
    block.set_stacks(crate::mm::image::boot_stack(), boot_ist_stacks());
    load(block)
}

/// Builds and loads the GDT and TSS of the processor whose block is
/// `block` (its own, installed), with the IST stacks recorded in it
/// (double fault, NMI, machine check: memory no one else uses, for good).
pub(crate) fn load(block: &'static crate::percpu::PerCpu) -> Selectors {
    let [(_, df_top), (_, nmi_top), (_, mc_top)] = block.ist_bounds();
    let tss = block.tss.get();
    // SAFETY: the block is this processor's, and its TSS is not loaded yet
    // (each processor loads its GDT and TSS once): nothing else reads or
    // writes it now. Plain field writes through the raw pointer.
    unsafe {
        (*tss).interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(df_top);
        (*tss).interrupt_stack_table[usize::from(NMI_IST - 1)] = VirtAddr::new(nmi_top);
        (*tss).interrupt_stack_table[usize::from(MACHINE_CHECK_IST - 1)] = VirtAddr::new(mc_top);
    }
    let (gdt, selectors) = block.gdt.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS lives in a 'static per-CPU block, as long as the GDT.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        (gdt, Selectors { kernel_code, kernel_data, user_data, user_code, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are valid 64-bit kernel segments and whose TSS descriptor
    // points at this processor's 'static TSS, not loaded by any other.
    // GS is left alone: its base is the per-CPU block (loading a selector
    // would zero it).
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        FS::set_reg(SegmentSelector(0));
        load_tss(selectors.tss);
    }
    *selectors
}
