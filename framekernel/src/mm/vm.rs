//! User address spaces: [`VmSpace`] owns a page-table tree whose lower half
//! maps user pages and whose upper half is the kernel's (shared entries).
//!
//! A `VmSpace` holds every frame it maps (`Arc<Frame>`: a frame may be
//! shared read-only between spaces for copy-on-write); unmapping gives the
//! frame back and dropping the space frees frames and page tables. Writes
//! the kernel makes through [`VmSpace::write_bytes`] never reach a shared
//! frame: the page is made private first. Only user-half,
//! page-aligned addresses are accepted, so a `VmSpace` can never map over
//! the kernel.

use super::frames::{self, Frame, OutOfMemory};
use super::paging;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use framekernel_logic::layout::{DIRECT_MAP_BASE, PAGE_SIZE, is_user_half};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as Flags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Serialises CR3 switches with their bookkeeping (each processor's
/// `active_root`, which TLB shootdowns read).
static SWITCH: crate::sync::BaseLock<()> = crate::sync::BaseLock::new(());

/// Access rights of a user page (always readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Perms {
    /// Read-only, not executable.
    pub const READ: Perms = Perms { write: false, exec: false };
    /// Read-write.
    pub const READ_WRITE: Perms = Perms { write: true, exec: false };
    /// Read and execute.
    pub const READ_EXEC: Perms = Perms { write: false, exec: true };

    fn flags(self) -> Flags {
        let mut flags = Flags::PRESENT | Flags::USER_ACCESSIBLE;
        if self.write {
            flags |= Flags::WRITABLE;
        }
        if !self.exec {
            flags |= paging::nx();
        }
        flags
    }
}

/// Why an address-space operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmError {
    /// The address is not a page-aligned address in the user half.
    BadAddress(u64),
    /// Something is already mapped there.
    AlreadyMapped(u64),
    /// Nothing is mapped there.
    NotMapped(u64),
    /// No memory for page tables.
    OutOfMemory,
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmError::BadAddress(a) => write!(f, "{a:#x} is not a page-aligned user address"),
            VmError::AlreadyMapped(a) => write!(f, "{a:#x} is already mapped"),
            VmError::NotMapped(a) => write!(f, "{a:#x} is not mapped"),
            VmError::OutOfMemory => f.write_str("out of memory for page tables"),
        }
    }
}

struct TableFrames;

// SAFETY: frames come fresh from the frame allocator, zeroed here, before
// the mapper links them into the tree; from then on the tree owns them.
// (The x86_64 crate makes the parent entry present first and zeroes the
// new table after it: in between, another processor walking the tree
// would read whatever the frame held, a freed user page or an old table,
// and could cache a translation from it. Zeroed first, every entry it
// can read is not present until the mapper writes it.)
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let phys = frames::alloc_raw()?;
        frames::zero(phys);
        // The zeroing stores before the stores that link the table.
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        PhysFrame::from_start_address(PhysAddr::new(phys)).ok()
    }
}

/// Intermediate tables of user mappings must allow user access.
const USER_PARENT: Flags = Flags::PRESENT.union(Flags::WRITABLE).union(Flags::USER_ACCESSIBLE);

/// Names a [`VmSpace`] for the one question that needs no access to the
/// space itself: is it loaded in this processor's CR3 ([`SpaceId::is_active`])?
/// Its owner may keep the space behind a lock and ask before taking it
/// (a user copy into the active space needs no lock: a fault in it is
/// caught). An id outlives nothing: once its space is dropped, a space
/// made later may reuse its page-table root and answer to it; hold the
/// space as long as its id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SpaceId(u64);

impl core::fmt::Debug for SpaceId {
    /// Opaque: the root's physical address stays inside the base.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SpaceId(..)")
    }
}

impl SpaceId {
    /// True while the space named is loaded in this processor's CR3 (as
    /// [`VmSpace::is_active`]).
    pub fn is_active(self) -> bool {
        crate::percpu::this_cpu().active_root.load(Ordering::SeqCst) == self.0
    }
}

/// A user address space.
pub struct VmSpace {
    root: u64,
    pages: BTreeMap<u64, (Arc<Frame>, Perms)>,
}

fn check_page(vaddr: u64) -> Result<(), VmError> {
    if vaddr.is_multiple_of(PAGE_SIZE) && is_user_half(vaddr) { Ok(()) } else { Err(VmError::BadAddress(vaddr)) }
}

impl VmSpace {
    /// An empty address space sharing the kernel half.
    pub fn new() -> Result<Self, OutOfMemory> {
        let root = Frame::alloc()?.into_phys();
        let kernel_root = paging::kernel_root();
        // SAFETY: `root` was just allocated and zeroed and is owned by this
        // space; `kernel_root` is the live kernel PML4. Both are RAM in the
        // direct map; only the kernel half (entries 256..512) is copied,
        // and the kernel half never changes after boot (see paging::init).
        unsafe {
            let dst = &mut *((DIRECT_MAP_BASE + root) as *mut PageTable);
            let src = &*((DIRECT_MAP_BASE + kernel_root) as *const PageTable);
            for i in 256..512 {
                dst[i] = src[i].clone();
            }
        }
        Ok(Self { root, pages: BTreeMap::new() })
    }

    fn table(&mut self) -> OffsetPageTable<'_> {
        // SAFETY: `root` is this space's PML4, owned by it, reachable through
        // the direct map; `&mut self` makes this the only mapper for it.
        unsafe {
            OffsetPageTable::new(&mut *((DIRECT_MAP_BASE + self.root) as *mut PageTable), VirtAddr::new(DIRECT_MAP_BASE))
        }
    }

    /// True while this space is loaded in this processor's CR3.
    pub fn is_active(&self) -> bool {
        self.id().is_active()
    }

    /// This space's [`SpaceId`].
    pub fn id(&self) -> SpaceId {
        SpaceId(self.root)
    }

    /// Returns once every other processor that has this space loaded has
    /// taken an interrupt (an NMI, which serializes it and orders its
    /// memory accesses): `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`.
    pub fn barrier_others(&self) {
        super::tlb::shootdown(super::tlb::others_using(self.root), 0, 0, 0);
    }

    /// After a change to the page at `vaddr`: this processor's TLB (when
    /// the space is loaded here) and every other processor's that has the
    /// space loaded forget it.
    fn flush_page(&self, vaddr: u64, local: bool) {
        if local {
            x86_64::instructions::tlb::flush(VirtAddr::new(vaddr));
        }
        super::tlb::shootdown(super::tlb::others_using(self.root), vaddr, 1, 0);
    }

    /// Maps `frame` at `vaddr`. On error the frame comes back.
    pub fn map(&mut self, vaddr: u64, frame: Frame, perms: Perms) -> Result<(), (VmError, Frame)> {
        self.map_shared(vaddr, Arc::new(frame), perms).map_err(|(e, frame)| {
            // Just wrapped above, so the only reference: unwrap it again.
            (e, Arc::try_unwrap(frame).unwrap_or_else(|_| unreachable!("frame shared during a failed map")))
        })
    }

    /// Maps a frame that other spaces may map too. To keep sharing safe,
    /// map a frame shared with another space without write access.
    pub fn map_shared(&mut self, vaddr: u64, frame: Arc<Frame>, perms: Perms) -> Result<(), (VmError, Arc<Frame>)> {
        if let Err(e) = check_page(vaddr) {
            return Err((e, frame));
        }
        if self.pages.contains_key(&vaddr) {
            return Err((VmError::AlreadyMapped(vaddr), frame));
        }
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
        let target = PhysFrame::containing_address(PhysAddr::new(frame.phys_addr()));
        // SAFETY: `vaddr` is a user-half page not yet mapped in this space;
        // the frame stays alive while mapped (an `Arc` kept in `pages`). A
        // frame mapped by several spaces is user memory only, so sharing it
        // cannot reach kernel data.
        let result =
            unsafe { self.table().map_to_with_table_flags(page, target, perms.flags(), USER_PARENT, &mut TableFrames) };
        match result {
            Ok(flush) => {
                // No TLB entry to forget: the page was not present (a
                // present one fails `map_to`), and x86 processors never
                // cache a translation that is not present, nor one through
                // the tables `map_to` may have added, which are zeroed
                // before they are linked (`TableFrames`; Intel SDM vol.
                // 3A, 4.10.2.3 and 4.10.3.1). An `invlpg` per mapped page
                // cost QEMU a TLB and jump-cache flush of the page each,
                // some 150 per `fork`+`exec`.
                flush.ignore();
                self.pages.insert(vaddr, (frame, perms));
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err((VmError::OutOfMemory, frame)),
            Err(_) => Err((VmError::AlreadyMapped(vaddr), frame)),
        }
    }

    /// Unmaps the page at `vaddr` and returns its frame.
    pub fn unmap(&mut self, vaddr: u64) -> Result<Arc<Frame>, VmError> {
        check_page(vaddr)?;
        if !self.pages.contains_key(&vaddr) {
            return Err(VmError::NotMapped(vaddr));
        }
        let active = self.is_active();
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
        match self.table().unmap(page) {
            Ok((_, flush)) => {
                flush.ignore();
                self.flush_page(vaddr, active);
            }
            Err(UnmapError::PageNotMapped) => {}
            Err(_) => return Err(VmError::NotMapped(vaddr)),
        }
        self.pages.remove(&vaddr).map(|(frame, _)| frame).ok_or(VmError::NotMapped(vaddr))
    }

    /// Changes the rights of the page at `vaddr`.
    pub fn protect(&mut self, vaddr: u64, perms: Perms) -> Result<(), VmError> {
        check_page(vaddr)?;
        let active = self.is_active();
        let entry = self.pages.get_mut(&vaddr).ok_or(VmError::NotMapped(vaddr))?;
        entry.1 = perms;
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
        // SAFETY: changes the leaf flags of a page this space maps; the
        // frame stays the same and stays owned by this space.
        match unsafe { self.table().update_flags(page, perms.flags()) } {
            Ok(flush) => {
                flush.ignore();
                self.flush_page(vaddr, active);
                Ok(())
            }
            Err(_) => Err(VmError::NotMapped(vaddr)),
        }
    }

    /// Rights of the page at `vaddr`, if mapped.
    pub fn perms(&self, vaddr: u64) -> Option<Perms> {
        self.pages.get(&(vaddr & !(PAGE_SIZE - 1))).map(|(_, p)| *p)
    }

    /// The frame mapped at the page containing `vaddr`, as a new shared
    /// reference (for copy-on-write).
    pub fn share(&self, vaddr: u64) -> Option<Arc<Frame>> {
        self.pages.get(&(vaddr & !(PAGE_SIZE - 1))).map(|(f, _)| f.clone())
    }

    /// True when the page at `vaddr` is mapped by another space too.
    pub fn is_shared(&self, vaddr: u64) -> bool {
        self.pages.get(&(vaddr & !(PAGE_SIZE - 1))).is_some_and(|(f, _)| Arc::strong_count(f) > 1)
    }

    /// Gives the page at `vaddr` a private copy of its frame if it is
    /// shared (copy-on-write), keeping its rights.
    pub fn make_private(&mut self, vaddr: u64) -> Result<(), VmError> {
        let page = vaddr & !(PAGE_SIZE - 1);
        let (frame, perms) = self.pages.get(&page).cloned().ok_or(VmError::NotMapped(page))?;
        if Arc::strong_count(&frame) == 1 {
            return Ok(());
        }
        let copy = Frame::copy_of(&frame).map_err(|_| VmError::OutOfMemory)?;
        drop(frame);
        self.unmap(page)?;
        self.map(page, copy, perms).map_err(|(e, _)| e)
    }

    /// Number of mapped pages.
    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The mapped pages in address order, with their rights.
    pub fn pages(&self) -> impl Iterator<Item = (u64, Perms)> + '_ {
        self.pages.iter().map(|(&v, (_, p))| (v, *p))
    }

    /// Copies `data` into mapped pages starting at `vaddr`, ignoring page
    /// rights (for loaders). Fails at the first unmapped page.
    pub fn write_bytes(&mut self, vaddr: u64, data: &[u8]) -> Result<(), VmError> {
        let mut done = 0usize;
        while done < data.len() {
            let addr = vaddr.checked_add(done as u64).ok_or(VmError::BadAddress(vaddr))?;
            let page = addr & !(PAGE_SIZE - 1);
            let offset = (addr - page) as usize;
            let chunk = (PAGE_SIZE as usize - offset).min(data.len() - done);
            self.make_private(page)?;
            let (frame, _) = self.pages.get_mut(&page).ok_or(VmError::NotMapped(page))?;
            let frame = Arc::get_mut(frame).ok_or(VmError::NotMapped(page))?;
            let part = data.get(done..done + chunk).ok_or(VmError::BadAddress(addr))?;
            frame.write_bytes(offset, part).map_err(|_| VmError::BadAddress(addr))?;
            done += chunk;
        }
        Ok(())
    }

    /// Copies mapped memory starting at `vaddr` into `out`, ignoring rights.
    pub fn read_bytes(&self, vaddr: u64, out: &mut [u8]) -> Result<(), VmError> {
        let mut done = 0usize;
        while done < out.len() {
            let addr = vaddr.checked_add(done as u64).ok_or(VmError::BadAddress(vaddr))?;
            let page = addr & !(PAGE_SIZE - 1);
            let offset = (addr - page) as usize;
            let chunk = (PAGE_SIZE as usize - offset).min(out.len() - done);
            let (frame, _) = self.pages.get(&page).ok_or(VmError::NotMapped(page))?;
            let part = out.get_mut(done..done + chunk).ok_or(VmError::BadAddress(addr))?;
            frame.read_bytes(offset, part).map_err(|_| VmError::BadAddress(addr))?;
            done += chunk;
        }
        Ok(())
    }

    /// Loads this space in CR3: user code run next sees it, and the user
    /// copy functions reach it. A no-op inside an interrupt handler: the
    /// interrupted code (user mode included) keeps its own space.
    pub fn activate(&self) {
        if crate::irq::in_interrupt() {
            return;
        }
        let _guard = SWITCH.lock();
        // SAFETY: the PML4 holds the kernel half unchanged, so the kernel
        // keeps running; the lower half maps only frames this space owns.
        unsafe { load_root(self.root) };
    }
}

/// Loads the kernel's page tables (no user half) on this processor, if a
/// user space is loaded: for an idle processor, which then takes no TLB
/// shootdown NMIs for the space it ran last (they go to the processors
/// whose CR3 holds the space). User memory is out of reach until a space
/// is activated again ([`VmSpace::activate`]; user copies then fail with
/// a fault, they never reach another space). A no-op inside an interrupt
/// handler, where the interrupted code may be using its space.
pub fn leave_user_space() {
    if crate::irq::in_interrupt() {
        return;
    }
    let kernel = paging::kernel_root();
    if crate::percpu::this_cpu().active_root.load(Ordering::SeqCst) == kernel {
        return;
    }
    let _guard = SWITCH.lock();
    // SAFETY: the kernel PML4 is always valid to load (every space shares
    // its kernel half).
    unsafe { load_root(kernel) };
}

/// Loads `root` in CR3 and records it.
///
/// # Safety
///
/// `root` must be a PML4 whose kernel half equals the kernel's.
unsafe fn load_root(root: u64) {
    let (_, flags) = Cr3::read();
    // SAFETY: guaranteed by the caller.
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(root)), flags) };
    // After the load. Leaving a space: a shootdown that reads the old
    // value meanwhile sends this processor a needless NMI, never misses it.
    // Entering one: a shootdown for it needs `&mut VmSpace` (unmap,
    // protect, drop) while `activate` holds `&self`, so the two never
    // overlap and this store is seen by any later shootdown.
    crate::percpu::this_cpu().active_root.store(root, Ordering::SeqCst);
}

/// Records the kernel PML4 as active on this processor (once paging is on,
/// and on each other processor as it starts).
pub(crate) fn note_kernel_root(root: u64) {
    crate::percpu::this_cpu().active_root.store(root, Ordering::SeqCst);
}

/// Frees the page-table frames of the lower half below `table` at `level`
/// (4 = PML4), not the user frames they map (those belong to `pages`).
///
/// Level-1 tables map only user frames, so they are freed without being
/// read; the others are read eight entries at a time, and a group with no
/// present entry (most of a sparse tree) is passed over at once (QEMU's
/// TCG runs each loop step as a block of its own: an entry at a time, a
/// process's tables took some 13,000 steps to free).
fn free_tables(table_phys: u64, level: u8) {
    /// Where the next table's address is in an entry (bits 12–51).
    const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
    let (present, huge) = (Flags::PRESENT.bits(), Flags::HUGE_PAGE.bits());
    // SAFETY: `table_phys` is a page table of a space being dropped (not
    // active, no other users), reachable through the direct map; a table
    // is 512 eight-byte entries (`PageTable` is `[PageTableEntry; 512]`,
    // each entry a transparent `u64`).
    let table = unsafe { &*((DIRECT_MAP_BASE + table_phys) as *const [u64; 512]) };
    let user = if level == 4 { &table[..256] } else { &table[..] };
    for group in user.chunks_exact(8) {
        if group.iter().fold(0, |any, entry| any | entry) & present == 0 {
            continue;
        }
        for &entry in group {
            if entry & present != 0 && entry & huge == 0 {
                let child = entry & ADDRESS;
                if level > 2 {
                    free_tables(child, level - 1);
                }
                frames::free_raw(child);
            }
        }
    }
}

impl Drop for VmSpace {
    fn drop(&mut self) {
        if self.is_active() {
            let _guard = SWITCH.lock();
            // SAFETY: the kernel PML4 is always valid to load.
            unsafe { load_root(paging::kernel_root()) };
        }
        // Other processors whose CR3 still holds it (they ran a task of
        // this space last) load the kernel's before its tables are freed.
        super::tlb::shootdown(super::tlb::others_using(self.root), 0, 0, self.root);
        free_tables(self.root, 4);
        self.pages.clear();
        frames::free_raw(self.root);
    }
}
