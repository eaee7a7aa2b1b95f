//! The kernel's page tables: built once at boot (direct map, W^X kernel
//! image, guard page) and then changed only in the kernel mapping window.

use super::{MemoryInitError, frames, image};
use framekernel_logic::bootinfo::{MemoryRegion, RegionKind};
use framekernel_logic::layout::{
    DIRECT_MAP_BASE, DIRECT_MAP_SIZE, EARLY_MAPPED, KERNEL_BASE, KMAP_BASE, LARGE_PAGE_SIZE, PAGE_SIZE, align_down,
    align_up, table_indices,
};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::mapper::{MapToError, Translate, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as Flags, PhysFrame, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Flags of intermediate tables: the leaf entry decides the permissions.
const PARENT: Flags = Flags::PRESENT.union(Flags::WRITABLE);

static KERNEL_PT: crate::sync::BaseLock<Option<OffsetPageTable<'static>>> = crate::sync::BaseLock::new(None);
static NX: crate::sync::BaseLock<Flags> = crate::sync::BaseLock::new(Flags::empty());
static KERNEL_ROOT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Physical address of the kernel's PML4.
pub(super) fn kernel_root() -> u64 {
    KERNEL_ROOT.load(core::sync::atomic::Ordering::Relaxed)
}

/// Hands the x86_64 crate's mapper frames for new page tables.
struct TableFrames {
    /// While the boot tables are active only the first GiB is reachable.
    limit: u64,
}

// SAFETY: every frame returned is freshly taken from the frame allocator,
// so it is unused and owned by the page tables from now on; it is zeroed
// before the mapper links it (see `vm::TableFrames`: the mapper makes the
// parent entry present before it zeroes the new table).
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let phys = frames::alloc_raw()?;
        if phys + PAGE_SIZE > self.limit {
            frames::free_raw(phys);
            return None;
        }
        frames::zero(phys);
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        PhysFrame::from_start_address(PhysAddr::new(phys)).ok()
    }
}

/// The no-execute flag if the CPU supports it (EFER.NXE was set at boot).
pub(super) fn nx() -> Flags {
    *NX.lock()
}

fn describe(e: MapToError<impl x86_64::structures::paging::PageSize>) -> &'static str {
    match e {
        MapToError::FrameAllocationFailed => "no frame below 1 GiB for a page table",
        MapToError::ParentEntryHugePage => "a huge page is in the way",
        MapToError::PageAlreadyMapped(_) => "a page is mapped twice",
    }
}

/// Builds the kernel page tables and switches to them.
pub(super) fn init(map: &[MemoryRegion]) -> Result<(), MemoryInitError> {
    let nx = if Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE) {
        Flags::NO_EXECUTE
    } else {
        log::warn!("CPU has no NX bit: data pages stay executable");
        Flags::empty()
    };
    *NX.lock() = nx;
    let mut alloc = TableFrames { limit: EARLY_MAPPED };
    let pml4_phys = alloc.allocate_frame().ok_or(MemoryInitError::PageTables("no frame for the PML4"))?;
    let pml4_phys = pml4_phys.start_address().as_u64();
    frames::zero(pml4_phys);
    // SAFETY: the frame was just allocated and zeroed, it lies below 1 GiB
    // where the boot tables' direct map reaches, and from here on it is
    // owned by the kernel page tables alone.
    let pml4 = unsafe { &mut *((DIRECT_MAP_BASE + pml4_phys) as *mut PageTable) };
    // SAFETY: the direct map at DIRECT_MAP_BASE covers every frame the
    // table frames come from (below 1 GiB now; all RAM once active).
    let mut table = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(DIRECT_MAP_BASE)) };

    // Direct map: every 2 MiB chunk touching RAM, plus the first 2 MiB
    // (firmware tables), read-write, never executable.
    let data = Flags::PRESENT | Flags::WRITABLE | nx;
    let mut chunks = map
        .iter()
        .filter(|r| matches!(r.kind, RegionKind::Usable | RegionKind::AcpiReclaimable | RegionKind::AcpiNvs))
        .map(|r| (align_down(r.start, LARGE_PAGE_SIZE), align_up(r.start.saturating_add(r.len), LARGE_PAGE_SIZE)))
        .chain(core::iter::once((0, LARGE_PAGE_SIZE)));
    chunks.try_for_each(|(start, end)| {
        let mut phys = start;
        while phys < end.min(DIRECT_MAP_SIZE) {
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(DIRECT_MAP_BASE + phys));
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
            // SAFETY: the direct map aliases RAM, which Rust code reaches
            // only through the base's own handles (frames, heap, tables).
            match unsafe { table.map_to_with_table_flags(page, frame, data, PARENT, &mut alloc) } {
                Ok(flush) => flush.ignore(), // not active yet
                Err(MapToError::PageAlreadyMapped(_)) => {} // regions sharing a chunk
                Err(e) => return Err(MemoryInitError::PageTables(describe(e))),
            }
            phys += LARGE_PAGE_SIZE;
        }
        Ok(())
    })?;

    // The kernel image, W^X, with the guard page below the stack left out.
    let sections = [
        (image::text(), Flags::PRESENT),
        (image::rodata(), Flags::PRESENT | nx),
        (image::data(), Flags::PRESENT | Flags::WRITABLE | nx),
    ];
    for ((start, end), flags) in sections {
        let mut virt = align_down(start, PAGE_SIZE);
        while virt < end {
            if virt != image::stack_guard() {
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
                let frame = PhysFrame::containing_address(PhysAddr::new(virt - KERNEL_BASE));
                // SAFETY: maps the kernel image to where it was loaded, with
                // the permissions its sections need.
                let flush = unsafe { table.map_to_with_table_flags(page, frame, flags, PARENT, &mut alloc) }
                    .map_err(|e| MemoryInitError::PageTables(describe(e)))?;
                flush.ignore();
            }
            virt += PAGE_SIZE;
        }
    }

    // Create the kernel-window PDPT now, so that the kernel half of the PML4
    // never changes again (address spaces made later copy it).
    let kmap_index = table_indices(KMAP_BASE)[0];
    let pdpt = alloc.allocate_frame().ok_or(MemoryInitError::PageTables("no frame for the kernel window"))?;
    frames::zero(pdpt.start_address().as_u64());
    table.level_4_table_mut()[kmap_index].set_frame(pdpt, Flags::PRESENT | Flags::WRITABLE);

    let (_, cr3_flags) = Cr3::read();
    // SAFETY: the new tables map the kernel image exactly where the running
    // code, stack and data are (same virtual addresses, same frames), and
    // the direct map that the base uses for all physical access.
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4_phys)), cr3_flags | Cr3Flags::empty()) };
    *KERNEL_PT.lock() = Some(table);
    KERNEL_ROOT.store(pml4_phys, core::sync::atomic::Ordering::Relaxed);
    super::vm::note_kernel_root(pml4_phys);
    Ok(())
}

/// Maps `frames` (physical addresses, each owned by the caller) at `virt`
/// with `flags`. On failure nothing stays mapped.
pub(super) fn map(virt: u64, frames: &[u64], flags: Flags) -> Result<(), &'static str> {
    let mut guard = KERNEL_PT.lock();
    let table = guard.as_mut().ok_or("paging not initialised")?;
    let mut alloc = TableFrames { limit: u64::MAX };
    for (i, &phys) in frames.iter().enumerate() {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt + i as u64 * PAGE_SIZE));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        // SAFETY: `virt` is a fresh range of the kernel window that nothing
        // else maps, and the caller owns `phys`.
        match unsafe { table.map_to_with_table_flags(page, frame, flags, PARENT, &mut alloc) } {
            Ok(flush) => flush.flush(),
            Err(e) => {
                drop(guard);
                unmap(virt, i as u64);
                return Err(describe(e));
            }
        }
    }
    Ok(())
}

/// Unmaps `count` pages at `virt` (a range `map` created) and flushes them.
pub(super) fn unmap(virt: u64, count: u64) {
    let mut guard = KERNEL_PT.lock();
    let Some(table) = guard.as_mut() else { return };
    for i in 0..count {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(virt + i * PAGE_SIZE));
        if let Ok((_, flush)) = table.unmap(page) {
            flush.flush();
        }
    }
    drop(guard);
    // Every other processor shares the kernel half: its TLB forgets the
    // range before the caller frees or reuses what was mapped there.
    super::tlb::shootdown(super::tlb::other_processors(), virt, count, 0);
}

/// How a virtual address is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// The physical address it translates to.
    pub phys: u64,
    /// Writable.
    pub writable: bool,
    /// Executable (no NX bit).
    pub executable: bool,
    /// Reachable from user mode.
    pub user: bool,
}

/// Looks up how `virt` is mapped in the kernel page tables.
pub fn query(virt: u64) -> Option<PageInfo> {
    let addr = VirtAddr::try_new(virt).ok()?;
    let guard = KERNEL_PT.lock();
    match guard.as_ref()?.translate(addr) {
        TranslateResult::Mapped { frame, offset, flags } => Some(PageInfo {
            phys: frame.start_address().as_u64() + offset,
            writable: flags.contains(Flags::WRITABLE),
            executable: !flags.contains(Flags::NO_EXECUTE),
            user: flags.contains(Flags::USER_ACCESSIBLE),
        }),
        _ => None,
    }
}
