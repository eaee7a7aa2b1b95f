//! Global descriptor table and task-state segment.
//!
//! The TSS supplies the interrupt stacks (IST) used for double faults and
//! NMIs, so that a kernel stack overflow is still reported.

use crate::arch::trap::{DOUBLE_FAULT_IST, NMI_IST};
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

// The IST stacks are only ever touched by the CPU when it delivers a double
// fault or NMI; Rust code never forms references to them.
static mut DOUBLE_FAULT_STACK: Stack = Stack([0; IST_STACK_SIZE]);
static mut NMI_STACK: Stack = Stack([0; IST_STACK_SIZE]);

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

/// The TSS is written after the GDT refers to it (`rsp0` changes whenever
/// the CPU is about to run user code), so it is only ever reached through
/// raw pointers: no Rust reference to it exists.
static mut TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: spin::Once<(GlobalDescriptorTable, Selectors)> = spin::Once::new();

/// Address of the TSS `rsp0` field: the stack the CPU switches to when an
/// interrupt or exception arrives in user mode (written by the user-entry
/// assembly).
pub fn rsp0_address() -> u64 {
    // TSS layout: a reserved u32, then rsp0.
    core::ptr::addr_of!(TSS) as u64 + 4
}

/// Top and bottom of an IST stack, for the stack walker.
pub fn ist_stacks() -> [(u64, u64); 2] {
    let df = core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64;
    let nmi = core::ptr::addr_of!(NMI_STACK) as u64;
    [(df, df + IST_STACK_SIZE as u64), (nmi, nmi + IST_STACK_SIZE as u64)]
}

/// Builds and loads the GDT and TSS; returns the selectors.
pub fn init() -> Selectors {
    let tss = core::ptr::addr_of_mut!(TSS);
    let [(_, df_top), (_, nmi_top)] = ist_stacks();
    // SAFETY: runs once at boot on the only CPU, before the TSS is loaded;
    // nothing else accesses the TSS yet.
    unsafe {
        (*tss).interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(df_top);
        (*tss).interrupt_stack_table[usize::from(NMI_IST - 1)] = VirtAddr::new(nmi_top);
    }
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is a 'static that lives as long as the GDT.
        let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
        (gdt, Selectors { kernel_code, kernel_data, user_data, user_code, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are valid 64-bit kernel segments and whose TSS descriptor
    // points at the 'static TSS above.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        FS::set_reg(SegmentSelector(0));
        GS::set_reg(SegmentSelector(0));
        load_tss(selectors.tss);
    }
    *selectors
}
