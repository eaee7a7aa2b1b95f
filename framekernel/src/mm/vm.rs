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
use alloc::collections::btree_map::Entry;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use framekernel_logic::layout::{DIRECT_MAP_BASE, PAGE_SIZE, is_user_half};
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags, PhysFrame};
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

/// Bits of a page-table entry (Intel SDM vol. 3A, 4.5).
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
/// A bit the processor ignores: the page's rights include execute (kept
/// here so that [`VmSpace::perms`] answers exactly also where there is no
/// no-execute bit).
const EXEC_RIGHT: u64 = 1 << 9;
/// Where the frame or next table is in an entry (bits 12–51).
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
/// The bits the processor sets in a leaf entry as it uses it.
const ACCESSED_DIRTY: u64 = (1 << 5) | (1 << 6);
/// Intermediate tables of user mappings allow everything; the leaf decides.
const USER_PARENT: u64 = PRESENT | WRITABLE | USER;
/// Entries in one table.
const ENTRIES: usize = 512;

impl Perms {
    /// The leaf entry bits for these rights (`nx`: the no-execute bit, or 0
    /// where the processor has none).
    fn entry_bits(self, nx: u64) -> u64 {
        let mut bits = PRESENT | USER;
        if self.write {
            bits |= WRITABLE;
        }
        if self.exec { bits | EXEC_RIGHT } else { bits | nx }
    }

    /// The rights a leaf entry made by `entry_bits` holds.
    fn of_entry(entry: u64) -> Perms {
        Perms { write: entry & WRITABLE != 0, exec: entry & EXEC_RIGHT != 0 }
    }
}

/// The 512 entries of the page table at `phys`, as the processors see them.
///
/// # Safety
///
/// `phys` must be a page table of a live space (its root or a table linked
/// below it), and stay one while the reference is used.
unsafe fn entries<'a>(phys: u64) -> &'a [AtomicU64; ENTRIES] {
    // SAFETY: by the caller, a whole 4 KiB table in RAM, reachable through
    // the direct map and aligned; `AtomicU64` has the layout of the `u64`
    // entries, and every access (the processors' walks and their
    // accessed/dirty updates included) is atomic.
    unsafe { &*((DIRECT_MAP_BASE + phys) as *const [AtomicU64; ENTRIES]) }
}

/// Index of `vaddr`'s entry in its table at `level` (1 = page table).
fn index(vaddr: u64, level: u32) -> usize {
    ((vaddr >> (12 + 9 * (level - 1))) & (ENTRIES as u64 - 1)) as usize
}

/// The level-1 table for `vaddr` (a checked user-half address) under the
/// PML4 `root`, with the tables on the way linked first where missing,
/// and the level-2 table that links it. A missing table is a frame
/// zeroed before the store that links it, so no processor walking the
/// tree meanwhile finds a present entry in it. Out of memory, the tables
/// linked so far stay (empty; freed with the space).
fn link_table(root: u64, vaddr: u64) -> Result<(u64, u64), VmError> {
    let mut table = root;
    let mut parent = root;
    for level in [4, 3, 2] {
        parent = table;
        // SAFETY: `table` is `root` or a table linked below it by this
        // function; the caller holds the space mutably.
        let entry = unsafe { entries(table) }.get(index(vaddr, level)).ok_or(VmError::BadAddress(vaddr))?;
        let value = entry.load(Ordering::Relaxed);
        table = if value & PRESENT != 0 {
            value & ADDRESS
        } else {
            let next = frames::alloc_raw().ok_or(VmError::OutOfMemory)?;
            frames::zero(next);
            // Released: the zeroes are seen before the link.
            entry.store(next | USER_PARENT, Ordering::Release);
            next
        };
    }
    Ok((table, parent))
}

/// One level-1 table of a space, linked in its tree while the leaf is in
/// the space's map, and a frame of slot numbers beside it. Entry `i` is
/// present exactly when slot `i` is not 0, and then it maps the frame at
/// place `slot - 1` in the space's `frames`, which names this page.
struct Leaf {
    /// Physical address of the table.
    table: u64,
    /// Physical address of the level-2 table whose entry links it.
    parent: u64,
    /// A frame of 512 slot numbers, owned by the leaf (a frame, not the
    /// kernel heap, which never gives memory back: a process that touched
    /// a page in each of 47,000 regions left 106 MiB of free memory gone
    /// for good; red team, nineteenth review).
    slots: u64,
    /// Entries present.
    count: u16,
}

impl Leaf {
    /// The entries of the table.
    fn entries(&self) -> &[AtomicU64; ENTRIES] {
        // SAFETY: a leaf's table stays linked in its space, which owns it,
        // while the leaf is in the space's map; it is freed only after the
        // leaf leaves the map (`unmap` of its last page) or with the space.
        unsafe { entries(self.table) }
    }

    /// The slot numbers.
    fn slots(&self) -> &[AtomicU32; ENTRIES] {
        // SAFETY: `slots` is a frame this leaf owns (taken in `leaf_in`,
        // freed only by its drop): 4 KiB, 512 aligned `u32`s, in RAM
        // reachable through the direct map, reached only as atomics.
        unsafe { &*((DIRECT_MAP_BASE + self.slots) as *const [AtomicU32; ENTRIES]) }
    }

    /// The place in the space's `frames` of entry `i`'s frame.
    fn place(&self, i: usize) -> Option<usize> {
        (self.slots().get(i)?.load(Ordering::Relaxed) as usize).checked_sub(1)
    }

    /// Maps `frame` at the empty entry `i` (page `vaddr`) with the entry
    /// bits `bits`, and records it in the space's `frames`. The frame is a
    /// whole page of RAM that stays alive while mapped (the `Arc` kept in
    /// `frames`); a frame mapped by several spaces is user memory only, so
    /// sharing it cannot reach kernel data. The store is released after
    /// everything written to the frame so far.
    ///
    /// No TLB entry to forget: the entry was not present, and x86
    /// processors never cache a translation that is not present, nor one
    /// through a table `link_table` added, zeroed before it was linked
    /// (Intel SDM vol. 3A, 4.10.2.3 and 4.10.3.1). An `invlpg` per mapped
    /// page cost QEMU a TLB and jump-cache flush of the page each, some 150
    /// per `fork`+`exec`. The frame comes back when the entry is taken or
    /// `frames` has no room.
    fn fill(&mut self, i: usize, vaddr: u64, frame: Arc<Frame>, bits: u64, frames: &mut Vec<(u64, Arc<Frame>)>) -> Result<(), (VmError, Arc<Frame>)> {
        let (Some(slot), Some(entry)) = (self.slots().get(i), self.entries().get(i)) else {
            return Err((VmError::AlreadyMapped(vaddr), frame));
        };
        if slot.load(Ordering::Relaxed) != 0 {
            return Err((VmError::AlreadyMapped(vaddr), frame));
        }
        let Some(number) = u32::try_from(frames.len() + 1).ok().filter(|_| frames.try_reserve(1).is_ok()) else {
            return Err((VmError::OutOfMemory, frame));
        };
        entry.store(frame.phys_addr() | bits, Ordering::Release);
        slot.store(number, Ordering::Relaxed);
        self.count += 1;
        frames.push((vaddr, frame)); // (room reserved above)
        Ok(())
    }

    /// The present entries, index and value in order, of the pages in
    /// `[start, end)` (a non-empty range) of this leaf, whose region starts
    /// at `base`. The entries are read eight at a time, and a group with
    /// none present is passed over at once.
    fn present(&self, base: u64, start: u64, end: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        let first = if start > base { index(start, 1) / 8 } else { 0 };
        let last = if end.saturating_sub(1) < base | 0x1f_ffff { index(end.saturating_sub(1), 1) / 8 } else { ENTRIES / 8 - 1 };
        self.entries()
            .chunks_exact(8)
            .enumerate()
            .skip(first)
            .take((last + 1).saturating_sub(first))
            .filter(|(_, group)| group.iter().fold(0, |any, e| any | e.load(Ordering::Relaxed)) & PRESENT != 0)
            .flat_map(move |(g, group)| {
                group.iter().enumerate().filter_map(move |(j, entry)| {
                    let i = g * 8 + j;
                    let vaddr = base | (i as u64) << 12;
                    let value = entry.load(Ordering::Relaxed);
                    (value & PRESENT != 0 && vaddr >= start && vaddr < end).then_some((i, value))
                })
            })
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        frames::free_raw(self.slots);
    }
}

/// The leaf of the region holding `vaddr` (a checked user page) among
/// `leaves`, those of the space whose PML4 is `root`, made with its table
/// (and the tables above it) if it has none.
fn leaf_in(leaves: &mut BTreeMap<u64, Leaf>, root: u64, vaddr: u64) -> Result<&mut Leaf, VmError> {
    match leaves.entry(vaddr >> 21) {
        Entry::Occupied(leaf) => Ok(leaf.into_mut()),
        Entry::Vacant(vacant) => {
            let slots = frames::alloc_raw().ok_or(VmError::OutOfMemory)?;
            frames::zero(slots);
            match link_table(root, vaddr) {
                Ok((table, parent)) => Ok(vacant.insert(Leaf { table, parent, slots, count: 0 })),
                Err(e) => {
                    frames::free_raw(slots);
                    Err(e)
                }
            }
        }
    }
}

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
///
/// The page tables are the record of what is mapped: each level-1 table
/// has a [`Leaf`] beside it (found by the 2 MiB region's number) whose
/// slots point into one list of the mapped frames, and the rights are
/// read back from the entries. Mapping a page is a lookup of its region,
/// one store and a push; the levels above are walked only when a region
/// gets its table.
pub struct VmSpace {
    root: u64,
    /// Leaves by region (`vaddr >> 21`).
    leaves: BTreeMap<u64, Leaf>,
    /// Every mapped page and its frame, in no order (unmapping moves the
    /// last one into the gap).
    frames: Vec<(u64, Arc<Frame>)>,
    /// The no-execute bit, or 0 where the processor has none.
    nx: u64,
}

fn check_page(vaddr: u64) -> Result<(), VmError> {
    if vaddr.is_multiple_of(PAGE_SIZE) && is_user_half(vaddr) { Ok(()) } else { Err(VmError::BadAddress(vaddr)) }
}

/// Region number of `vaddr` (the key of its leaf) and its slot there.
fn place(vaddr: u64) -> (u64, usize) {
    (vaddr >> 21, index(vaddr, 1))
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
        Ok(Self { root, leaves: BTreeMap::new(), frames: Vec::new(), nx: paging::nx().bits() })
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
    fn flush_page(&self, vaddr: u64) {
        if self.is_active() {
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
        // Room in the list first: out of memory, no leaf is made.
        if self.frames.try_reserve(1).is_err() {
            return Err((VmError::OutOfMemory, frame));
        }
        let bits = perms.entry_bits(self.nx);
        let leaf = match leaf_in(&mut self.leaves, self.root, vaddr) {
            Ok(leaf) => leaf,
            Err(e) => return Err((e, frame)),
        };
        leaf.fill(place(vaddr).1, vaddr, frame, bits, &mut self.frames)
    }

    /// Unmaps the page at `vaddr` and returns its frame.
    pub fn unmap(&mut self, vaddr: u64) -> Result<Arc<Frame>, VmError> {
        check_page(vaddr)?;
        let (region, i) = place(vaddr);
        let leaf = self.leaves.get_mut(&region).ok_or(VmError::NotMapped(vaddr))?;
        let (Some(slot), Some(entry)) = (leaf.slots().get(i), leaf.entries().get(i)) else {
            return Err(VmError::NotMapped(vaddr));
        };
        let Some(at) = (slot.load(Ordering::Relaxed) as usize).checked_sub(1).filter(|&at| at < self.frames.len()) else {
            return Err(VmError::NotMapped(vaddr));
        };
        entry.store(0, Ordering::Release);
        slot.store(0, Ordering::Relaxed);
        leaf.count -= 1;
        // A table left empty is unlinked now and freed once no processor
        // can still walk through it (the flush below reaches every one
        // that has the space loaded, and `invlpg` drops the cached
        // paging-structure entries too: Intel SDM vol. 3A, 4.10.4.1).
        let emptied = if leaf.count == 0 {
            // SAFETY: `parent` is the level-2 table of this space that
            // links the leaf's table.
            if let Some(link) = unsafe { entries(leaf.parent) }.get(index(vaddr, 2)) {
                link.store(0, Ordering::Release);
            }
            self.leaves.remove(&region)
        } else {
            None
        };
        let (_, frame) = self.frames.swap_remove(at);
        // The page moved into the gap gets its new place.
        if let Some(&(moved, _)) = self.frames.get(at) {
            let (region, i) = place(moved);
            if let Some(slot) = self.leaves.get(&region).and_then(|leaf| leaf.slots().get(i)) {
                slot.store(at as u32 + 1, Ordering::Relaxed); // (below the old length, which fit)
            }
        }
        // Forgotten everywhere before the frame or the table can be freed.
        self.flush_page(vaddr);
        if let Some(leaf) = emptied {
            frames::free_raw(leaf.table);
            drop(leaf); // its slot frame
        }
        Ok(frame)
    }

    /// The entry of the mapped page at `vaddr` (a checked user page) and
    /// the place of its frame in `frames`.
    fn entry(&self, vaddr: u64) -> Option<(&AtomicU64, usize)> {
        let (region, i) = place(vaddr);
        let leaf = self.leaves.get(&region)?;
        Some((leaf.entries().get(i)?, leaf.place(i)?))
    }

    /// The place in `frames` of the page containing `vaddr`.
    fn place_of(&self, vaddr: u64) -> Option<usize> {
        let (region, i) = place(vaddr & !(PAGE_SIZE - 1));
        self.leaves.get(&region)?.place(i)
    }

    /// The frame mapped at the page containing `vaddr`.
    fn frame(&self, vaddr: u64) -> Option<&Arc<Frame>> {
        self.frames.get(self.place_of(vaddr)?).map(|(_, frame)| frame)
    }

    /// Changes the rights of the page at `vaddr`.
    pub fn protect(&mut self, vaddr: u64, perms: Perms) -> Result<(), VmError> {
        check_page(vaddr)?;
        let bits = perms.entry_bits(self.nx);
        let (entry, _) = self.entry(vaddr).ok_or(VmError::NotMapped(vaddr))?;
        let old = entry.load(Ordering::Relaxed);
        let new = (old & ADDRESS) | bits;
        // (Accessed and dirty bits the processor set are dropped: unused.)
        if old & !(ADDRESS | ACCESSED_DIRTY) == bits {
            return Ok(()); // the same rights: nothing cached to forget
        }
        entry.store(new, Ordering::Release);
        self.flush_page(vaddr);
        Ok(())
    }

    /// Rights of the page at `vaddr`, if mapped.
    pub fn perms(&self, vaddr: u64) -> Option<Perms> {
        let (entry, _) = self.entry(vaddr & !(PAGE_SIZE - 1))?;
        Some(Perms::of_entry(entry.load(Ordering::Relaxed)))
    }

    /// The frame mapped at the page containing `vaddr`, as a new shared
    /// reference (for copy-on-write).
    pub fn share(&self, vaddr: u64) -> Option<Arc<Frame>> {
        self.frame(vaddr).cloned()
    }

    /// True when the page at `vaddr` is mapped by another space too.
    pub fn is_shared(&self, vaddr: u64) -> bool {
        self.frame(vaddr).is_some_and(|f| Arc::strong_count(f) > 1)
    }

    /// Gives the page at `vaddr` a private copy of its frame if it is
    /// shared (copy-on-write), keeping its rights.
    pub fn make_private(&mut self, vaddr: u64) -> Result<(), VmError> {
        let page = vaddr & !(PAGE_SIZE - 1);
        let frame = self.frame(page).ok_or(VmError::NotMapped(page))?;
        if Arc::strong_count(frame) == 1 {
            return Ok(());
        }
        let copy = Arc::new(Frame::copy_of(frame).map_err(|_| VmError::OutOfMemory)?);
        let (entry, at) = self.entry(page).ok_or(VmError::NotMapped(page))?;
        // The copy takes the old frame's place with the same rights; the
        // old frame is kept until no processor can still reach it.
        let old_entry = entry.load(Ordering::Relaxed);
        entry.store(copy.phys_addr() | (old_entry & !(ADDRESS | ACCESSED_DIRTY)), Ordering::Release);
        let old = self.frames.get_mut(at).map(|(_, frame)| core::mem::replace(frame, copy));
        self.flush_page(page);
        drop(old);
        Ok(())
    }

    /// `fork`'s sharing: maps every page this space maps in `[start, end)`
    /// into `child` at the same address, the same frame with the same
    /// rights; with `copy_on_write`, without write access on both sides
    /// (the first write then copies: [`VmSpace::make_private`]). Pages
    /// `child` maps already are left as they are there. Out of memory it
    /// stops with the pages shared so far (and write-protected here) left
    /// so; this space's translations are forgotten either way.
    pub fn share_into(&mut self, child: &mut VmSpace, start: u64, end: u64, copy_on_write: bool) -> Result<(), VmError> {
        if end <= start {
            return Ok(());
        }
        let active = self.is_active();
        let (mut low, mut high) = (u64::MAX, 0);
        let VmSpace { root: child_root, leaves: child_leaves, frames: child_frames, nx: child_nx } = child;
        let mut result = child_frames.try_reserve(self.frames.len()).map_err(|_| VmError::OutOfMemory);
        'regions: for (&region, leaf) in self.leaves.range(start >> 21..=(end - 1) >> 21) {
            if result.is_err() {
                break;
            }
            let base = region << 21;
            let mut child_leaf: Option<&mut Leaf> = None;
            for (i, value) in leaf.present(base, start, end) {
                let vaddr = base | (i as u64) << 12;
                let (Some((_, frame)), Some(entry)) = (leaf.place(i).and_then(|at| self.frames.get(at)), leaf.entries().get(i)) else {
                    continue;
                };
                let target = match child_leaf.take() {
                    Some(target) => target,
                    None => match leaf_in(child_leaves, *child_root, vaddr) {
                        Ok(target) => target,
                        Err(e) => {
                            result = Err(e);
                            break 'regions;
                        }
                    },
                };
                let perms = Perms::of_entry(value);
                let child_perms = if copy_on_write { Perms { write: false, ..perms } } else { perms };
                match target.fill(i, vaddr, frame.clone(), child_perms.entry_bits(*child_nx), child_frames) {
                    Ok(()) | Err((VmError::AlreadyMapped(_), _)) => {}
                    Err((e, _)) => {
                        result = Err(e);
                        break 'regions;
                    }
                }
                child_leaf = Some(target);
                if copy_on_write && perms.write {
                    // Write access dropped here, the frame and other bits kept.
                    entry.fetch_and(!WRITABLE, Ordering::Release);
                    if active {
                        x86_64::instructions::tlb::flush(VirtAddr::new(vaddr));
                    }
                    (low, high) = (low.min(vaddr), high.max(vaddr));
                }
            }
        }
        // Every write access dropped above is forgotten everywhere, also
        // when the sharing stopped half-way.
        if low <= high {
            let pages = (high - low) / PAGE_SIZE + 1;
            super::tlb::shootdown(super::tlb::others_using(self.root), low, pages, 0);
        }
        result
    }

    /// Number of mapped pages.
    pub fn page_count(&self) -> usize {
        self.frames.len()
    }

    /// The mapped pages in address order, with their rights.
    pub fn pages(&self) -> impl Iterator<Item = (u64, Perms)> + '_ {
        self.pages_in(0, u64::MAX)
    }

    /// The mapped pages in `[start, end)` in address order, with their
    /// rights ([`Leaf::present`] in each region the range reaches).
    pub fn pages_in(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Perms)> + '_ {
        let first = start >> 21;
        let stop = if end > start { ((end - 1) >> 21) + 1 } else { first };
        self.leaves.range(first..stop).flat_map(move |(&region, leaf)| {
            let base = region << 21;
            leaf.present(base, start, end).map(move |(i, value)| (base | (i as u64) << 12, Perms::of_entry(value)))
        })
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
            let at = self.place_of(page).ok_or(VmError::NotMapped(page))?;
            let slot = self.frames.get_mut(at).map(|(_, frame)| frame);
            let frame = slot.and_then(Arc::get_mut).ok_or(VmError::NotMapped(page))?;
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
            let frame = self.frame(page).ok_or(VmError::NotMapped(page))?;
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
/// (4 = PML4), not the user frames they map (those belong to `frames`).
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
        self.frames.clear();
        frames::free_raw(self.root);
    }
}
