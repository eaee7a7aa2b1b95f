//! A process's memory: areas (VMAs) over a `VmSpace`, filled on demand.
//!
//! Pages of an area are allocated when first touched (a user page fault,
//! or a system call that reads or writes user memory), so reserving address
//! space is cheap; `brk`, `mmap`, `munmap` and `mprotect` edit the areas.

use crate::errno::Errno;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use framekernel::arch::usercopy;
use framekernel::mm::{Frame, Perms, SpaceId, VmError, VmSpace};
use framekernel::sync::{Mutex, MutexGuard};
use tessera_vfs::NodeRef;

/// Page size.
pub const PAGE: u64 = 4096;
/// Top of the user stack.
pub const STACK_TOP: u64 = 0x7fff_ffff_f000;
/// Maximum stack size (the stack area is reserved at exec).
pub const STACK_SIZE: u64 = 8 << 20;
/// `mmap` places mappings below this address, top down. 128 pages short
/// of a round 4 GiB below the stack: QEMU's TLB is indexed by the low
/// bits of the page number (up to 20 of them), and at a round distance
/// the first mappings (the vDSO and its clock page, read on every
/// `clock_gettime`) shared their TLB entries with the top of the stack,
/// evicting each other on every call (96 ns per vDSO call instead of 70).
pub const MMAP_TOP: u64 = 0x7f00_0000_0000 - 128 * PAGE;
/// Largest `brk` heap.
pub const BRK_MAX: u64 = 1 << 32;

/// Access rights of an area, as `PROT_*` bits allow them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prot {
    /// `PROT_READ`.
    pub read: bool,
    /// `PROT_WRITE`.
    pub write: bool,
    /// `PROT_EXEC`.
    pub exec: bool,
}

impl Prot {
    /// From `PROT_*` bits.
    pub fn from_bits(bits: u64) -> Self {
        Self { read: bits & 1 != 0, write: bits & 2 != 0, exec: bits & 4 != 0 }
    }

    /// Read-write data.
    pub const DATA: Prot = Prot { read: true, write: true, exec: false };

    fn page_perms(self) -> Option<Perms> {
        (self.read || self.write || self.exec).then_some(Perms { write: self.write, exec: self.exec })
    }
}

/// Most advice ranges (`MADV_DONTDUMP`, `MADV_WIPEONFORK`) kept at once,
/// Linux's default `vm.max_map_count`.
pub const MAX_ADVICE_RANGES: usize = 65530;

/// A piece of the address space in a core dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpPiece {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// ELF `PF_*` bits: read 4, write 2, execute 1.
    pub flags: u32,
    /// Whether the bytes are in the dump (else they read as zeros).
    pub contents: bool,
}

/// The kind of access that needs a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Load.
    Read,
    /// Store.
    Write,
    /// Instruction fetch.
    Exec,
}

/// Result of backing a page on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Populate {
    /// The page is there now.
    Ok,
    /// No area allows this access (SIGSEGV).
    BadAccess,
    /// No memory for the page (the process is killed, not the kernel).
    NoMemory,
    /// A file mapping's page past the end of the file (SIGBUS).
    BusError,
}

/// A file mapped by `mmap`: page `p` of the area shows the file at offset
/// `p - base` (wrapping: `base` is the address file offset 0 would have),
/// so splitting an area needs no adjustment.
#[derive(Clone)]
pub struct FileMap {
    /// The file.
    pub node: NodeRef,
    /// Address of file offset 0.
    pub base: u64,
    /// The path it was mapped by (for `/proc/[pid]/maps`).
    pub path: Arc<str>,
}

impl core::fmt::Debug for FileMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "FileMap {{ ino: {}, base: {:#x} }}", self.node.metadata().ino, self.base)
    }
}

impl FileMap {
    /// File offset shown at `page`.
    fn offset(&self, page: u64) -> u64 {
        page.wrapping_sub(self.base)
    }
}

/// One contiguous range of user address space with one set of rights.
#[derive(Debug, Clone)]
pub struct Area {
    /// One past the last byte.
    pub end: u64,
    /// Rights.
    pub prot: Prot,
    /// `MAP_SHARED`: the same memory in parent and children after `fork`.
    pub shared: bool,
    /// A private file area some of whose pages were written (private
    /// copies): core dumps treat it as anonymous memory, as Linux does a
    /// mapping with anonymous pages.
    pub anon: bool,
    /// The file shown here (`mmap` of a file). Pages are read from the file
    /// when first touched; in a shared area, written pages go back to the
    /// file on `msync`, `munmap` and when the address space ends.
    pub file: Option<FileMap>,
    /// A System V shared memory attachment shown here.
    pub shm: Option<ShmMap>,
    /// The vDSO or its clock page shown here.
    pub special: Option<Special>,
    /// Whether `mprotect` may ever make a shared area writable (Linux's
    /// `VM_MAYWRITE`): not for a file opened without write access, nor
    /// for an `SHM_RDONLY` attachment.
    pub may_write: bool,
    /// Locked in memory (`mlock`, `mlockall`): counted in `VmLck`. Pages
    /// never leave memory here, so this changes nothing else.
    pub locked: bool,
    /// `MAP_GROWSDOWN`: a fault just below extends it downwards (a stack),
    /// keeping Linux's guard gap to the mapping below.
    pub grows_down: bool,
}

/// An area the kernel provides in every process: its pages are frames
/// all processes share, mapped read-only (a write after `mprotect` copies
/// the page for the writer alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// The clock page (`[vvar]`; never writable).
    Vvar,
    /// The vDSO image (`[vdso]`), whose first page is at `base`.
    Vdso {
        /// Address of the image's first page.
        base: u64,
    },
}

impl Special {
    /// The frame shown at `page`.
    fn frame(self, page: u64) -> Result<Arc<Frame>, Errno> {
        match self {
            Special::Vvar => framekernel::time::clock_page().map_err(|_| Errno::ENOMEM),
            Special::Vdso { base } => crate::vdso::image_frame(page.wrapping_sub(base) / PAGE),
        }
    }

    /// Its name in `/proc/[pid]/maps`.
    fn name(self) -> &'static str {
        match self {
            Special::Vvar => "[vvar]",
            Special::Vdso { .. } => "[vdso]",
        }
    }
}

/// A System V shared memory segment attached by `shmat`: page `p` of the
/// area is the segment's page `(p - base) / PAGE`.
#[derive(Clone)]
pub struct ShmMap {
    /// The segment's id.
    pub id: i32,
    /// The memory.
    pub segment: Arc<crate::sysv::Segment>,
    /// Address of the segment's first byte.
    pub base: u64,
    /// This attachment (one `shmat`), so that `shmdt` removes all of it and
    /// attachments can be counted.
    pub token: u64,
}

impl core::fmt::Debug for ShmMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ShmMap {{ id: {}, base: {:#x} }}", self.id, self.base)
    }
}

static NEXT_ATTACH: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

impl Area {
    /// True for a `MAP_SHARED` file mapping (whose written pages are
    /// tracked: they are mapped read-only until the first write).
    fn writes_back(&self) -> bool {
        self.shared && self.file.is_some()
    }
}

/// A process's address space (see [`Memory`] for the shared handle).
pub struct AddressSpace {
    space: VmSpace,
    /// Areas by start address; disjoint, page aligned.
    areas: BTreeMap<u64, Area>,
    /// Start of the `brk` heap.
    pub brk_start: u64,
    /// Current program break.
    pub brk: u64,
    /// Contents of pages made inaccessible (`PROT_NONE`), kept for when
    /// access returns.
    parked: BTreeMap<u64, Arc<Frame>>,
    /// Written pages of shared file mappings, not yet written back.
    dirty: BTreeSet<u64>,
    /// `MADV_WIPEONFORK` ranges (start → end, disjoint): a child made by
    /// `fork` sees zeros there.
    wipe_on_fork: BTreeMap<u64, u64>,
    /// `mlockall(MCL_FUTURE)`: new areas start locked.
    lock_future: bool,
    /// Most pages resident at once so far (`ru_maxrss`).
    hiwater: usize,
    /// `MADV_DONTDUMP` ranges (start → end, disjoint): left out of core
    /// dumps.
    dont_dump: BTreeMap<u64, u64>,
    /// `membarrier` registrations (the `MEMBARRIER_CMD_REGISTER_*` bits
    /// given); a new space (exec, fork) has none, as Linux's.
    pub membarrier_registered: u64,
}

/// Adds (`on`) or removes `[start, end)` in a map of disjoint ranges
/// (start → end): the range is cut out of every stored one, then added
/// back if on.
fn set_range(ranges: &mut BTreeMap<u64, u64>, start: u64, end: u64, on: bool) {
    let overlapping: alloc::vec::Vec<(u64, u64)> = ranges.iter().filter(|&(&s, &e)| s < end && start < e).map(|(&s, &e)| (s, e)).collect();
    for (s, e) in overlapping {
        ranges.remove(&s);
        if s < start {
            ranges.insert(s, start);
        }
        if e > end {
            ranges.insert(end, e);
        }
    }
    if on {
        ranges.insert(start, end);
    }
}

/// True when `page` lies in one of the disjoint `ranges`.
fn in_ranges(ranges: &BTreeMap<u64, u64>, page: u64) -> bool {
    ranges.range(..=page).next_back().is_some_and(|(_, &end)| page < end)
}

fn page_down(addr: u64) -> u64 {
    addr & !(PAGE - 1)
}

fn page_up(addr: u64) -> Option<u64> {
    addr.checked_add(PAGE - 1).map(|a| a & !(PAGE - 1))
}

impl AddressSpace {
    /// An empty address space.
    pub fn new() -> Result<Self, Errno> {
        Ok(Self {
            space: VmSpace::new().map_err(|_| Errno::ENOMEM)?,
            areas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
            parked: BTreeMap::new(),
            dirty: BTreeSet::new(),
            wipe_on_fork: BTreeMap::new(),
            lock_future: false,
            hiwater: 0,
            dont_dump: BTreeMap::new(),
            membarrier_registered: 0,
        })
    }

    /// The page tables.
    pub fn space(&self) -> &VmSpace {
        &self.space
    }

    /// Pages currently backed by memory.
    pub fn resident_pages(&self) -> usize {
        self.space.page_count()
    }

    /// Bytes of locked areas (`VmLck`).
    pub fn locked_size(&self) -> u64 {
        self.areas.iter().filter(|(_, a)| a.locked).map(|(&start, a)| a.end - start).sum()
    }

    /// Bytes of locked areas within `[start, end)`.
    pub fn locked_within(&self, start: u64, end: u64) -> u64 {
        self.areas
            .iter()
            .filter(|(_, a)| a.locked)
            .map(|(&s, a)| a.end.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    /// Locks (or unlocks) the areas of `[start, end)` (split at its ends).
    pub fn set_locked(&mut self, start: u64, end: u64, on: bool) {
        self.split_at(start);
        self.split_at(end);
        for (_, area) in self.areas.range_mut(start..end) {
            area.locked = on;
        }
    }

    /// `mlockall` (`current`: every area now; `future`: areas to come) and
    /// `munlockall` (both false).
    pub fn lock_all(&mut self, current: bool, future: bool) {
        if current || !future {
            for area in self.areas.values_mut() {
                area.locked = current;
            }
        }
        self.lock_future = future;
    }

    /// Bytes of address space the areas take (`VmSize`).
    pub fn virtual_size(&self) -> u64 {
        self.areas.iter().map(|(&start, a)| a.end - start).sum()
    }

    /// The area containing `addr`.
    pub fn area_at(&self, addr: u64) -> Option<(u64, Area)> {
        self.area_ref(addr).map(|(s, a)| (s, a.clone()))
    }

    /// [`AddressSpace::area_at`] without the copy (an area holds `Arc`s:
    /// a copy per page of a `fork` was a tenth of its work).
    fn area_ref(&self, addr: u64) -> Option<(u64, &Area)> {
        self.areas.range(..=addr).next_back().filter(|(_, a)| addr < a.end).map(|(&s, a)| (s, a))
    }

    /// The end of the area holding `addr`, if one does.
    pub fn area_end(&self, addr: u64) -> Option<u64> {
        self.area_ref(addr).map(|(_, a)| a.end)
    }

    /// The start of the first area at or above `addr`, if any.
    pub fn next_area_start(&self, addr: u64) -> Option<u64> {
        self.areas.range(addr..).next().map(|(&start, _)| start)
    }

    /// True when every byte of `[start, end)` is in some area.
    pub fn is_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.area_ref(at) {
                Some((_, area)) => at = area.end,
                None => return false,
            }
        }
        true
    }

    /// Whether a shared writable area shows `node` (`F_SEAL_WRITE` is
    /// refused then).
    pub fn maps_shared_writable(&self, node: &NodeRef) -> bool {
        // Writable now, or could be made so by mprotect (Linux's VM_MAYWRITE).
        self.areas.values().any(|a| a.shared && (a.prot.write || a.may_write) && a.file.as_ref().is_some_and(|f| Arc::ptr_eq(&f.node, node)))
    }

    /// `mincore`: for each page of `[start, end)`, whether memory backs it
    /// now (mapped, or kept while `PROT_NONE`).
    pub fn residency(&self, start: u64, end: u64) -> alloc::vec::Vec<bool> {
        let resident: BTreeSet<u64> = self.space.pages_in(start, end).map(|(v, _)| v).collect();
        (start..end)
            .step_by(4096)
            .map(|page| resident.contains(&page) || self.parked.contains_key(&page))
            .collect()
    }

    /// `MADV_DONTNEED`: the pages of private areas in `[start, end)` go, so
    /// the next touch sees zeros (anonymous) or the file again; shared
    /// pages keep their contents.
    pub fn discard(&mut self, start: u64, end: u64) {
        let pages: alloc::vec::Vec<u64> = self.space.pages_in(start, end).map(|(v, _)| v).collect();
        for page in pages {
            if self.area_ref(page).is_some_and(|(_, a)| !a.shared) {
                let _ = self.space.unmap(page);
            }
        }
        let parked: alloc::vec::Vec<u64> = self.parked.range(start..end).map(|(&v, _)| v).collect();
        for page in parked {
            if self.area_ref(page).is_some_and(|(_, a)| !a.shared) {
                self.parked.remove(&page);
            }
        }
    }

    /// True when no area overlaps `[start, end)`.
    pub fn is_free(&self, start: u64, end: u64) -> bool {
        self.areas.range(..end).next_back().is_none_or(|(_, a)| a.end <= start)
    }

    /// Adds an area. The range must be page aligned and free.
    pub fn add_area(&mut self, start: u64, end: u64, prot: Prot, shared: bool) -> Result<(), Errno> {
        if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || start >= end || end > STACK_TOP || !self.is_free(start, end) {
            return Err(Errno::EINVAL);
        }
        let locked = self.lock_future;
        self.areas.insert(start, Area { end, prot, shared, anon: false, file: None, shm: None, special: None, may_write: true, locked, grows_down: false });
        Ok(())
    }

    /// Adds an area showing `node` from file offset `offset` (`mmap` of a
    /// file; `shared` writes go back to the file).
    pub fn add_file_area(
        &mut self,
        start: u64,
        end: u64,
        prot: Prot,
        (shared, may_write): (bool, bool),
        file: (NodeRef, alloc::string::String),
        offset: u64,
    ) -> Result<(), Errno> {
        self.add_area(start, end, prot, shared)?;
        if let Some(area) = self.areas.get_mut(&start) {
            let (node, path) = file;
            area.file = Some(FileMap { node, base: start.wrapping_sub(offset), path: path.into() });
            area.may_write = may_write;
        }
        Ok(())
    }

    /// Adds an area showing `special` at `[start, end)`, which is free.
    pub fn add_special_area(&mut self, start: u64, end: u64, prot: Prot, special: Special) -> Result<(), Errno> {
        self.add_area(start, end, prot, false)?;
        if let Some(area) = self.areas.get_mut(&start) {
            area.special = Some(special);
        }
        Ok(())
    }

    /// `shmat`: shows `segment` (id `id`) at `[start, end)`, which is free.
    pub fn attach_shm(&mut self, start: u64, end: u64, prot: Prot, id: i32, segment: Arc<crate::sysv::Segment>) -> Result<(), Errno> {
        self.add_area(start, end, prot, true)?;
        if let Some(area) = self.areas.get_mut(&start) {
            let token = NEXT_ATTACH.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            area.shm = Some(ShmMap { id, segment, base: start, token });
            area.may_write = prot.write; // SHM_RDONLY stays read-only
        }
        Ok(())
    }

    /// `shmdt(addr)`: removes the attachment whose segment starts at
    /// `addr` (every area of it); returns the segment id.
    pub fn detach_shm(&mut self, addr: u64) -> Option<i32> {
        let (_, area) = self.area_at(addr)?;
        let shm = area.shm.filter(|s| s.base == addr)?;
        let parts: alloc::vec::Vec<(u64, u64)> = self
            .areas
            .iter()
            .filter(|(_, a)| a.shm.as_ref().is_some_and(|s| s.token == shm.token))
            .map(|(&s, a)| (s, a.end))
            .collect();
        for (start, end) in parts {
            self.remove_range(start, end);
        }
        Some(shm.id)
    }

    /// The attachments (tokens) of segment `id` in this address space.
    pub fn shm_attachments(&self, id: i32) -> alloc::collections::BTreeSet<u64> {
        self.areas.values().filter_map(|a| a.shm.as_ref().filter(|s| s.id == id).map(|s| s.token)).collect()
    }

    /// Writes the written pages of shared file mappings in `[start, end)`
    /// back to their files (never past a file's end, as Linux). When
    /// `keep`, the pages stay mapped, read-only until written again.
    /// Returns EIO if a file refused the data.
    pub fn write_back(&mut self, start: u64, end: u64, keep: bool) -> Result<(), Errno> {
        let pages: alloc::vec::Vec<u64> = self.dirty.range(start..end).copied().collect();
        let mut result = Ok(());
        let mut data = alloc::vec![0u8; PAGE as usize];
        for page in pages {
            self.dirty.remove(&page);
            let Some((_, area)) = self.area_at(page) else { continue };
            let Some(file) = area.file.as_ref().filter(|_| area.shared) else { continue };
            let read = match self.parked.get(&page) {
                Some(frame) => frame.read_bytes(0, &mut data).is_ok(),
                None => self.space.read_bytes(page, &mut data).is_ok(),
            };
            let offset = file.offset(page);
            let size = file.node.metadata().size;
            if !read || offset >= size {
                continue;
            }
            let len = (size - offset).min(PAGE) as usize;
            if file.node.write_at(offset, data.get(..len).unwrap_or(&[])).is_err() {
                result = Err(Errno::EIO);
            }
            if keep && self.space.perms(page).is_some() {
                let _ = self.space.protect(page, Perms { write: false, exec: area.prot.exec });
            }
        }
        result
    }

    /// `msync`: writes back `[start, end)`, which must be mapped.
    pub fn sync(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let (_, area) = self.area_at(at).ok_or(Errno::ENOMEM)?;
            at = area.end;
        }
        self.write_back(start, end, true)
    }

    /// The areas as `/proc/[pid]/maps` lists them.
    pub fn maps(&self) -> alloc::string::String {
        self.maps_with(false)
    }

    /// `/proc/[pid]/smaps`: each `maps` line followed by the area's size,
    /// resident, private/shared, anonymous, locked and swap counts (kB).
    pub fn smaps(&self) -> alloc::string::String {
        self.maps_with(true)
    }

    fn maps_with(&self, details: bool) -> alloc::string::String {
        use core::fmt::Write;
        let mut out = alloc::string::String::new();
        let resident: alloc::vec::Vec<u64> = if details { self.space.pages().map(|(page, _)| page).collect() } else { alloc::vec::Vec::new() };
        for (&start, area) in &self.areas {
            let perms = [
                if area.prot.read { 'r' } else { '-' },
                if area.prot.write { 'w' } else { '-' },
                if area.prot.exec { 'x' } else { '-' },
                if area.shared { 's' } else { 'p' },
            ];
            let (offset, ino, name) = if let Some(shm) = &area.shm {
                (start - shm.base, shm.id as u64, alloc::format!("/SYSV{:08x} (deleted)", shm.id))
            } else if let Some(file) = &area.file {
                (file.offset(start), file.node.metadata().ino, alloc::string::String::from(&*file.path))
            } else if let Some(special) = area.special {
                (0, 0, special.name().into())
            } else if area.end == STACK_TOP {
                (0, 0, "[stack]".into())
            } else if self.brk_start != 0 && start >= self.brk_start && start < self.brk_start.saturating_add(BRK_MAX) {
                (0, 0, "[heap]".into())
            } else {
                (0, 0, alloc::string::String::new())
            };
            let perms: alloc::string::String = perms.iter().collect();
            let _ = writeln!(out, "{start:08x}-{:08x} {perms} {offset:08x} 00:00 {ino:<10} {name}", area.end);
            if details {
                let size = (area.end - start) / 1024;
                let first = resident.partition_point(|&page| page < start);
                let pages: alloc::vec::Vec<u64> = resident.get(first..).unwrap_or(&[]).iter().copied().take_while(|&page| page < area.end).collect();
                let rss = pages.len() as u64 * 4;
                let shared = area.shared || area.shm.is_some();
                // Clean: a file's page-cache page not written through this
                // mapping; shared when another mapping holds it too.
                let (mut shared_clean, mut private_clean, mut shared_rss, mut private_rss) = (0u64, 0u64, 0u64, 0u64);
                for &page in &pages {
                    let mappers = match (&area.file, self.space.share(page)) {
                        (Some(file), Some(frame)) if !self.dirty.contains(&page) => crate::pagecache::mappers(&file.node, file.offset(page) / PAGE, &frame),
                        _ => None,
                    };
                    match mappers {
                        Some(n) if n >= 2 => shared_clean += 4,
                        Some(_) => private_clean += 4,
                        None if shared => shared_rss += 4,
                        None => private_rss += 4,
                    }
                }
                let anonymous = if !shared { private_rss } else { 0 };
                let locked = if area.locked { rss } else { 0 };
                let _ = write!(
                    out,
                    "Size:           {size:8} kB\nKernelPageSize:        4 kB\nMMUPageSize:           4 kB\nRss:            {rss:8} kB\nPss:            {rss:8} kB\n\
                     Shared_Clean:   {shared_clean:8} kB\nShared_Dirty:   {shared_rss:8} kB\nPrivate_Clean:  {private_clean:8} kB\nPrivate_Dirty:  {private_rss:8} kB\n\
                     Referenced:     {rss:8} kB\nAnonymous:      {anonymous:8} kB\nLazyFree:              0 kB\nAnonHugePages:         0 kB\n\
                     ShmemPmdMapped:        0 kB\nFilePmdMapped:         0 kB\nShared_Hugetlb:        0 kB\nPrivate_Hugetlb:       0 kB\n\
                     Swap:                  0 kB\nSwapPss:               0 kB\nLocked:         {locked:8} kB\nTHPeligible:    0\n"
                );
                let mut flags = alloc::string::String::from("VmFlags:");
                for (on, flag) in [(area.prot.read, " rd"), (area.prot.write, " wr"), (area.prot.exec, " ex"), (shared, " sh"), (area.locked, " lo"), (area.grows_down, " gd")] {
                    if on {
                        flags.push_str(flag);
                    }
                }
                let _ = writeln!(out, "{flags}");
            }
        }
        out
    }

    /// Splits areas so that `addr` is an area boundary (if inside one).
    fn split_at(&mut self, addr: u64) {
        if let Some((start, area)) = self.area_at(addr).filter(|(start, _)| *start < addr) {
            self.areas.insert(start, Area { end: addr, ..area.clone() });
            self.areas.insert(addr, area);
        }
    }

    /// Marks the area starting at `start` as a `MAP_GROWSDOWN` stack.
    pub fn set_grows_down(&mut self, start: u64) {
        if let Some(area) = self.areas.get_mut(&start) {
            area.grows_down = true;
        }
    }

    /// A fault at `page` in no area: when the area just above grows down
    /// and Linux's guard gap (256 pages) to the accessible mapping below
    /// stays free, that area now starts at `page`.
    fn grow_down_to(&mut self, page: u64) {
        const GUARD_GAP: u64 = 256 * PAGE;
        let Some((&start, area)) = self.areas.range(page..).next() else { return };
        if !area.grows_down {
            return;
        }
        let below = self.areas.range(..page).next_back().map(|(_, a)| (a.end, a.grows_down || a.prot.page_perms().is_none()));
        if let Some((end, exempt)) = below
            && !exempt
            && page < end.saturating_add(GUARD_GAP)
        {
            return;
        }
        if let Some(area) = self.areas.remove(&start) {
            self.areas.insert(page, area);
        }
    }

    /// `MADV_WIPEONFORK` (`on`) or `MADV_KEEPONFORK` for `[start, end)`.
    pub fn set_wipe_on_fork(&mut self, start: u64, end: u64, on: bool) {
        set_range(&mut self.wipe_on_fork, start, end, on);
    }

    /// True when one more advice range may be kept (Linux's
    /// `max_map_count` bounds the mappings advice splits).
    pub fn advice_room(&self) -> bool {
        self.dont_dump.len() + self.wipe_on_fork.len() < MAX_ADVICE_RANGES
    }

    /// `MADV_DONTDUMP` (`on`) and `MADV_DODUMP` over `[start, end)`.
    pub fn set_dont_dump(&mut self, start: u64, end: u64, on: bool) {
        set_range(&mut self.dont_dump, start, end, on);
    }

    fn not_dumped(&self, page: u64) -> bool {
        in_ranges(&self.dont_dump, page)
    }

    fn wiped_on_fork(&self, page: u64) -> bool {
        in_ranges(&self.wipe_on_fork, page)
    }

    /// Removes `[start, end)` from the areas and frees its pages.
    pub fn remove_range(&mut self, start: u64, end: u64) {
        self.set_wipe_on_fork(start, end, false);
        self.set_dont_dump(start, end, false);
        // Nothing written through a shared file mapping is lost (a file
        // that refuses the data has already reported it to msync callers).
        let _ = self.write_back(start, end, false);
        self.split_at(start);
        self.split_at(end);
        let starts: alloc::vec::Vec<u64> = self.areas.range(start..end).map(|(&s, _)| s).collect();
        for s in starts {
            self.areas.remove(&s);
        }
        let mapped: alloc::vec::Vec<u64> = self.space.pages_in(start, end).map(|(v, _)| v).collect();
        for page in mapped {
            let _ = self.space.unmap(page);
        }
        let parked: alloc::vec::Vec<u64> = self.parked.range(start..end).map(|(&v, _)| v).collect();
        for page in parked {
            self.parked.remove(&page);
        }
    }

    /// Changes the rights of `[start, end)`, which must be wholly covered by
    /// areas.
    pub fn protect(&mut self, start: u64, end: u64, prot: Prot) -> Result<(), Errno> {
        let mut at = start;
        while at < end {
            let (_, area) = self.area_at(at).ok_or(Errno::ENOMEM)?;
            // A shared mapping cannot gain a write right it was not given,
            // nor the clock page any (Linux: EACCES).
            if prot.write && ((area.shared && !area.may_write) || area.special == Some(Special::Vvar)) {
                return Err(Errno::EACCES);
            }
            at = area.end;
        }
        self.split_at(start);
        self.split_at(end);
        let starts: alloc::vec::Vec<u64> = self.areas.range(start..end).map(|(&s, _)| s).collect();
        for s in starts {
            if let Some(area) = self.areas.get_mut(&s) {
                area.prot = prot;
            }
        }
        let mapped: alloc::vec::Vec<u64> = self.space.pages_in(start, end).map(|(v, _)| v).collect();
        for page in mapped {
            let tracked = self.area_ref(page).is_some_and(|(_, a)| a.writes_back()) && !self.dirty.contains(&page);
            // A private page still shared copy-on-write (after fork) stays
            // read-only: the first write must copy it, not write the frame
            // another process shows.
            let copy_on_write = self.area_ref(page).is_some_and(|(_, a)| !a.shared) && self.space.is_shared(page);
            match prot.page_perms() {
                Some(perms) => {
                    let perms = if tracked || copy_on_write { Perms { write: false, ..perms } } else { perms };
                    let _ = self.space.protect(page, perms);
                }
                None => {
                    // PROT_NONE: keep the contents, remove access.
                    if let Ok(frame) = self.space.unmap(page) {
                        self.parked.insert(page, frame);
                    }
                }
            }
        }
        Ok(())
    }

    /// `mremap`: resizes the mapping at `old` (`old_len` bytes, all in one
    /// area) to `new_len`, in place or, when `may_move`, elsewhere.
    /// Lengths are page multiples. Returns the new address.
    pub fn remap(&mut self, old: u64, old_len: u64, new_len: u64, may_move: bool) -> Result<u64, Errno> {
        self.remap_to(old, old_len, new_len, may_move, None)
    }

    /// [`AddressSpace::remap`], to exactly `fixed` when given
    /// (`MREMAP_FIXED`: whatever is there is unmapped first).
    pub fn remap_to(&mut self, old: u64, old_len: u64, new_len: u64, may_move: bool, fixed: Option<u64>) -> Result<u64, Errno> {
        let (start, area) = self.area_at(old).ok_or(Errno::EFAULT)?;
        let old_end = old.checked_add(old_len).ok_or(Errno::EINVAL)?;
        if start > old || area.end < old_end {
            return Err(Errno::EFAULT); // not one mapping
        }
        if let Some(target) = fixed {
            let target_end = target.checked_add(new_len).filter(|&e| e <= STACK_TOP).ok_or(Errno::EINVAL)?;
            if target < old_end && old < target_end {
                return Err(Errno::EINVAL); // overlapping ranges
            }
            self.remove_range(target, target_end);
            if new_len < old_len {
                self.remove_range(old + new_len, old_end);
            }
            return self.move_area(old, old.saturating_add(old_len.min(new_len)), &area, target, new_len);
        }
        if new_len <= old_len {
            self.remove_range(old + new_len, old_end);
            return Ok(old);
        }
        let grow_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
        if area.end == old_end && grow_end <= STACK_TOP && self.is_free(old_end, grow_end) {
            self.areas.insert(start, Area { end: grow_end, ..area });
            self.carry_advice(old, old_end, old, grow_end);
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let target = self.find_free(new_len).ok_or(Errno::ENOMEM)?;
        self.move_area(old, old_end, &area, target, new_len)
    }

    /// Moves the pages of `[old, old_end)` (part of `area`) to a new area
    /// of `new_len` bytes at `target`, which is free.
    fn move_area(&mut self, old: u64, old_end: u64, area: &Area, target: u64, new_len: u64) -> Result<u64, Errno> {
        self.add_area(target, target + new_len, area.prot, area.shared)?;
        if let Some(added) = self.areas.get_mut(&target) {
            added.anon = area.anon;
            added.special = area.special.map(|special| match special {
                Special::Vdso { base } => Special::Vdso { base: base.wrapping_sub(old).wrapping_add(target) },
                other => other,
            });
            added.file = area.file.as_ref().map(|f| FileMap { base: f.base.wrapping_sub(old).wrapping_add(target), ..f.clone() });
            added.shm = area.shm.as_ref().map(|s| ShmMap { base: s.base.wrapping_sub(old).wrapping_add(target), ..s.clone() });
            added.may_write = area.may_write;
            added.locked = area.locked;
            added.grows_down = area.grows_down;
        }
        let mut page = old;
        while page < old_end {
            let moved = page - old + target;
            if self.dirty.remove(&page) {
                self.dirty.insert(moved);
            }
            let perms = self.space.perms(page);
            if let Ok(frame) = self.space.unmap(page) {
                let perms = perms.unwrap_or(Perms::READ);
                self.space.map_shared(moved, frame, perms).map_err(|_| Errno::ENOMEM)?;
            } else if let Some(frame) = self.parked.remove(&page) {
                self.parked.insert(moved, frame);
            }
            page += PAGE;
        }
        self.carry_advice(old, old_end, target, target + new_len);
        self.remove_range(old, old_end);
        Ok(target)
    }

    /// After `mremap` of `[old, old_end)` to `target` (or in place): the
    /// advice on those pages (`MADV_WIPEONFORK`, `MADV_DONTDUMP`) goes
    /// with them, and a part grown past them (up to `new_end`) takes the
    /// advice of their last page, as a Linux mapping keeps its flags when
    /// it is moved or grown.
    fn carry_advice(&mut self, old: u64, old_end: u64, target: u64, new_end: u64) {
        if old_end <= old {
            return;
        }
        let moved_end = target.saturating_add(old_end - old);
        for ranges in [&mut self.wipe_on_fork, &mut self.dont_dump] {
            let inside: alloc::vec::Vec<(u64, u64)> =
                ranges.range(..old_end).filter(|&(_, &e)| e > old).map(|(&s, &e)| (s.max(old), e.min(old_end))).collect();
            let grown = in_ranges(ranges, old_end - PAGE);
            for (s, e) in inside {
                set_range(ranges, s - old + target, e - old + target, true);
            }
            if grown && moved_end < new_end {
                set_range(ranges, moved_end, new_end, true);
            }
        }
    }

    /// Finds a free range of `len` bytes below [`MMAP_TOP`], top down.
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let floor = self.brk_start.saturating_add(BRK_MAX);
        let mut hole_end = MMAP_TOP;
        for (&start, area) in self.areas.range(..MMAP_TOP).rev() {
            // The hole between this area and the one above is [area.end, hole_end).
            if area.end <= hole_end && hole_end - area.end >= len {
                return Some(hole_end - len).filter(|&s| s >= floor);
            }
            hole_end = hole_end.min(start);
        }
        hole_end.checked_sub(len).filter(|&s| s >= floor)
    }

    /// Makes sure the page containing `addr` is backed, if an area allows
    /// the access (`write` for a write). Returns false for a bad access.
    pub fn populate(&mut self, addr: u64, access: Access) -> Populate {
        let result = self.populate_page(addr, access);
        self.hiwater = self.hiwater.max(self.space.page_count());
        result
    }

    /// What a core dump shows (see `crate::coredump`): the areas in
    /// address order, cut into runs of resident pages (with contents) and
    /// the gaps between them (zeros, no contents); areas that cannot be
    /// read have no contents. At most `max` pieces: past that, the rest
    /// of the address space is left out.
    pub fn dump_plan(&self, max: usize, filter: u32) -> alloc::vec::Vec<DumpPiece> {
        let resident: alloc::vec::Vec<u64> = self.space.pages().filter(|&(page, _)| !self.not_dumped(page)).map(|(page, _)| page).collect();
        let mut plan = alloc::vec::Vec::new();
        for (&start, area) in &self.areas {
            let flags = u32::from(area.prot.read) << 2 | u32::from(area.prot.write) << 1 | u32::from(area.prot.exec);
            // coredump_filter: bit 0 private anonymous, 1 shared anonymous,
            // 2 private file-backed, 3 shared file-backed memory.
            // A private file area with written pages (a program's data
            // segment) holds anonymous copies and is dumped as such.
            let file_backed = area.file.is_some() && !area.anon;
            let bit = match (file_backed, area.shared || area.shm.is_some()) {
                (false, false) => 1,
                (false, true) => 2,
                (true, false) => 4,
                (true, true) => 8,
            };
            if !area.prot.read || filter & bit == 0 {
                plan.push(DumpPiece { start, end: area.end, flags, contents: false });
                continue;
            }
            let mut at = start;
            let first = resident.partition_point(|&page| page < start);
            let mut pages = resident.get(first..).unwrap_or(&[]).iter().copied().take_while(|&page| page < area.end).peekable();
            while at < area.end && plan.len() < max {
                match pages.peek().copied() {
                    Some(page) if page == at => {
                        let mut end = at;
                        while pages.peek() == Some(&end) {
                            pages.next();
                            end += PAGE;
                        }
                        plan.push(DumpPiece { start: at, end, flags, contents: true });
                        at = end;
                    }
                    next => {
                        let end = next.unwrap_or(area.end).min(area.end);
                        plan.push(DumpPiece { start: at, end, flags, contents: false });
                        at = end;
                    }
                }
            }
            if plan.len() >= max {
                break;
            }
        }
        plan
    }

    /// The most pages resident at once so far.
    pub fn peak_resident_pages(&self) -> usize {
        self.hiwater.max(self.space.page_count())
    }

    fn populate_page(&mut self, addr: u64, access: Access) -> Populate {
        let page = page_down(addr);
        if self.area_ref(addr).is_none() {
            self.grow_down_to(page);
        }
        let Some((area_start, area)) = self.area_at(addr) else { return Populate::BadAccess };
        let Some(perms) = area.prot.page_perms() else { return Populate::BadAccess };
        let allowed = match access {
            Access::Read => area.prot.read || area.prot.write,
            Access::Write => area.prot.write,
            Access::Exec => area.prot.exec,
        };
        if !allowed {
            return Populate::BadAccess;
        }
        if let Some(mapped) = self.space.perms(page) {
            if access != Access::Write || mapped.write {
                return Populate::Ok;
            }
            // A write to a read-only page of a writable area: copy on write
            // (a shared area keeps its one frame).
            if !area.shared && self.space.is_shared(page) && user_memory_exhausted() {
                return Populate::NoMemory;
            }
            if area.writes_back() {
                self.dirty.insert(page);
            }
            if !area.shared && area.file.is_some() {
                self.mark_anon(area_start);
            }
            let private = if area.shared { Ok(()) } else { self.space.make_private(page) };
            return match private.and_then(|()| self.space.protect(page, perms)) {
                Ok(()) => Populate::Ok,
                Err(VmError::OutOfMemory) => Populate::NoMemory,
                Err(_) => Populate::BadAccess,
            };
        }
        // A shared file page is mapped read-only until written, so that
        // only written pages go back to the file.
        let perms = if area.writes_back() && !self.dirty.contains(&page) {
            if access == Access::Write {
                self.dirty.insert(page);
                perms
            } else {
                Perms { write: false, ..perms }
            }
        } else {
            perms
        };
        let result = match self.parked.remove(&page) {
            // A page made inaccessible comes back with the area's rights,
            // except that a frame another mapping shows (a fork's
            // copy-on-write page, a file's page-cache page, the vDSO)
            // comes back read-only in a private area: a write then copies
            // it, as on every other path.
            Some(frame) => {
                let perms = if !area.shared && Arc::strong_count(&frame) > 1 { Perms { write: false, ..perms } } else { perms };
                self.space.map_shared(page, frame, perms).map_err(|(e, _)| e)
            }
            None if user_memory_exhausted() => return Populate::NoMemory,
            None if area.special.is_some() => match area.special.map(|special| special.frame(page)) {
                Some(Ok(frame)) => self.space.map_shared(page, frame, Perms { write: false, ..perms }).map_err(|(e, _)| e),
                Some(Err(Errno::ENOMEM)) => return Populate::NoMemory,
                _ => return Populate::BusError,
            },
            None if area.shm.is_some() => match &area.shm {
                Some(shm) => match shm.segment.frame((page - shm.base) / PAGE) {
                    Ok(frame) => self.space.map_shared(page, frame, perms).map_err(|(e, _)| e),
                    Err(_) => return Populate::NoMemory,
                },
                None => return Populate::BadAccess,
            },
            None => match (&area.file, area.file.as_ref().map(|file| crate::pagecache::Stamp::of(&file.node))) {
                // A page wholly past the end of the file: SIGBUS, as Linux.
                (Some(file), Some(stamp)) if page_up(stamp.size).is_none_or(|end| file.offset(page) >= end) => {
                    return Populate::BusError;
                }
                // Shared: the page cache's frame, the one every mapping shows.
                (Some(file), Some(stamp)) if area.shared => match crate::pagecache::frame(&file.node, file.offset(page) / PAGE, stamp) {
                    Ok(frame) => self.space.map_shared(page, frame, perms).map_err(|(e, _)| e),
                    Err(_) => return Populate::NoMemory,
                },
                // Private, read: the page cache's frame too, read-only, so
                // every process mapping the file (libc, say) shares it until
                // one writes (copy on write), as Linux does.
                (Some(file), Some(stamp)) if access != Access::Write => match crate::pagecache::frame(&file.node, file.offset(page) / PAGE, stamp) {
                    Ok(frame) => {
                        let mapped = self.space.map_shared(page, frame, Perms { write: false, ..perms }).map_err(|(e, _)| e);
                        if mapped.is_ok() {
                            self.map_around(area_start, &area, page, perms, stamp);
                        }
                        mapped
                    }
                    Err(_) => return Populate::NoMemory,
                },
                _ => match Frame::alloc() {
                    Ok(mut frame) => {
                        if let Some(file) = &area.file {
                            self.mark_anon(area_start);
                            // Private: a copy of what the file shows now.
                            let mut data = alloc::vec![0u8; PAGE as usize];
                            let offset = file.offset(page);
                            if let Ok(n) = file.node.read_at(offset, &mut data) {
                                let shown = data.get_mut(..n).unwrap_or(&mut []);
                                crate::pagecache::read(&file.node, offset, shown);
                                let _ = frame.write_bytes(0, shown);
                            }
                        }
                        self.space.map(page, frame, perms).map_err(|(e, _)| e)
                    }
                    Err(_) => return Populate::NoMemory,
                },
            },
        };
        match result {
            Ok(()) if access == Access::Write => self.populate(addr, access), // private copy if shared
            Ok(()) => Populate::Ok,
            Err(VmError::OutOfMemory) => Populate::NoMemory,
            Err(_) => Populate::BadAccess,
        }
    }

    /// Marks the private file area starting at `start` as holding written
    /// (anonymous) pages.
    fn mark_anon(&mut self, start: u64) {
        if let Some(area) = self.areas.get_mut(&start) {
            area.anon = true;
        }
    }

    /// Linux's fault-around: after a read fault in a file area, the other
    /// pages of the aligned 64 KiB window around it (inside the area and
    /// the file) that the page cache holds are mapped too, read-only, so a
    /// program whose code other processes ran faults once per 16 pages.
    fn map_around(&mut self, area_start: u64, area: &Area, page: u64, perms: Perms, stamp: crate::pagecache::Stamp) {
        const AROUND: usize = 16;
        let Some(file) = &area.file else { return };
        let window = page & !(AROUND as u64 * PAGE - 1);
        let first = file.offset(window) / PAGE;
        if file.offset(window) % PAGE != 0 || first.checked_add(AROUND as u64).is_none() {
            return;
        }
        let frames = crate::pagecache::cached::<AROUND>(&file.node, first, stamp);
        let perms = Perms { write: false, ..perms };
        for (i, frame) in frames.into_iter().enumerate() {
            let at = window + i as u64 * PAGE;
            let Some(frame) = frame else { continue };
            // (The cache gives only pages inside the file.)
            let inside = at >= area_start && at < area.end && at != page;
            // (`map_shared` leaves a page that is mapped already alone.)
            if inside && !self.parked.contains_key(&at) && !self.dirty.contains(&at) {
                let _ = self.space.map_shared(at, frame, perms);
            }
        }
    }

    /// Loads this address space in CR3 if it is not already.
    pub fn activate(&self) {
        if !self.space.is_active() {
            self.space.activate();
        }
    }

    /// The child's memory for `fork`: same areas, every page shared
    /// copy-on-write (writable pages become read-only in both spaces and
    /// are copied by whichever side writes first).
    pub fn fork_copy(&mut self) -> Result<AddressSpace, Errno> {
        let mut copy = AddressSpace::new()?;
        copy.areas = self.areas.clone();
        // Memory locks are not inherited by a child (Linux).
        for area in copy.areas.values_mut() {
            area.locked = false;
        }
        copy.brk_start = self.brk_start;
        copy.brk = self.brk;
        // Shared anonymous areas must exist in full before both sides map
        // them (shared file pages are found in the page cache by both).
        let shared_areas: alloc::vec::Vec<(u64, u64)> = self
            .areas
            .iter()
            .filter(|(_, a)| a.shared && a.file.is_none() && a.shm.is_none() && a.prot.page_perms().is_some())
            .map(|(&s, a)| (s, a.end))
            .collect();
        for (start, end) in shared_areas {
            self.populate_range(start, end - start, false)?;
        }
        copy.wipe_on_fork = self.wipe_on_fork.clone();
        // Area by area (and the gaps between, where nothing should be
        // mapped), each page shared with the child: copy-on-write outside
        // shared areas, and not at all in `MADV_WIPEONFORK` ranges.
        let mut runs: alloc::vec::Vec<(u64, u64, bool)> = alloc::vec::Vec::new(); // start, end, copy on write
        let mut at = 0;
        for (&start, area) in &self.areas {
            if at < start {
                runs.push((at, start, true));
            }
            runs.push((start, area.end, !area.shared));
            at = area.end;
        }
        runs.push((at, u64::MAX, true));
        for (start, end, copy_on_write) in runs {
            let mut lo = start;
            for (&wipe_start, &wipe_end) in self.wipe_on_fork.range(..end) {
                if wipe_end <= lo {
                    continue;
                }
                if wipe_start > lo {
                    self.space.share_into(&mut copy.space, lo, wipe_start, copy_on_write).map_err(|_| Errno::ENOMEM)?;
                }
                lo = lo.max(wipe_end); // the child starts with zeros here
            }
            if lo < end {
                self.space.share_into(&mut copy.space, lo, end, copy_on_write).map_err(|_| Errno::ENOMEM)?;
            }
        }
        for (&page, frame) in &self.parked {
            if !self.wiped_on_fork(page) {
                copy.parked.insert(page, frame.clone());
            }
        }
        copy.dirty = self.dirty.clone();
        copy.hiwater = copy.space.page_count();
        Ok(copy)
    }

    /// Backs every page of `[addr, addr+len)` for the access, or fails with EFAULT.
    pub fn populate_range(&mut self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        let mut page = page_down(addr);
        let access = if write { Access::Write } else { Access::Read };
        while page < end {
            self.fault_in(page, access)?;
            page += PAGE;
        }
        Ok(())
    }

    /// Backs the page holding `addr` for `access` (as a fault there from
    /// the program would), or says why it cannot be.
    fn fault_in(&mut self, addr: u64, access: Access) -> Result<(), Errno> {
        match self.populate(page_down(addr), access) {
            Populate::Ok => Ok(()),
            Populate::BadAccess | Populate::BusError => Err(Errno::EFAULT),
            Populate::NoMemory => Err(Errno::ENOMEM),
        }
    }

    /// Runs `copy(from)` (a user copy of the range from byte `from` on)
    /// until it succeeds, backing each page it faults on, as the page
    /// fault handler would for the program. Pages that are mapped already
    /// (nearly always) cost nothing more than the copy. A second fault at
    /// the same address after the page was backed is EFAULT.
    fn copy_faulting_in(
        &mut self,
        addr: u64,
        len: usize,
        access: Access,
        mut copy: impl FnMut(usize) -> Result<(), usercopy::UserFault>,
    ) -> Result<(), Errno> {
        self.activate();
        let mut from = 0usize;
        let mut last = None;
        while let Err(fault) = copy(from) {
            if last == Some(fault.address) {
                return Err(Errno::EFAULT);
            }
            last = Some(fault.address);
            self.fault_in(fault.address, access)?;
            self.activate();
            from = usize::try_from(fault.address.wrapping_sub(addr)).unwrap_or(usize::MAX).min(len);
        }
        Ok(())
    }

    /// Copies user memory into `out` (making this space active).
    pub fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), Errno> {
        let len = out.len();
        self.copy_faulting_in(addr, len, Access::Read, |from| match out.get_mut(from..) {
            Some(rest) => usercopy::copy_from_user(addr.wrapping_add(from as u64), rest),
            None => Ok(()),
        })
    }

    /// Copies `data` to user memory (making this space active). A value
    /// of up to 8 bytes across a page boundary is stored whole or not at
    /// all, as Linux's `put_user` (one store) does: both pages are made
    /// writable first.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if is_split_value(addr, data.len()) && self.prepare_write(addr, data.len() as u64)? < data.len() as u64 {
            return Err(Errno::EFAULT);
        }
        self.copy_faulting_in(addr, data.len(), Access::Write, |from| match data.get(from..) {
            Some(rest) => usercopy::copy_to_user(addr.wrapping_add(from as u64), rest),
            None => Ok(()),
        })
    }

    /// Makes `[addr, addr+len)` writable by the kernel's user copies now
    /// (backing pages as a write fault would), so that data taken from
    /// somewhere (a pipe, a socket) is not lost to a bad buffer after.
    /// Returns how many bytes from `addr` on can be written: `len`, or
    /// fewer when the range runs into a page that cannot (EFAULT when not
    /// even the first can; ENOMEM when memory ran out).
    ///
    /// Each page is probed with an atomic compare-exchange that never
    /// changes the word (0 for 0): the CPU checks write access even when
    /// the comparison fails, and a word another thread writes meanwhile
    /// keeps that thread's value.
    pub fn prepare_write(&mut self, addr: u64, len: u64) -> Result<u64, Errno> {
        if len == 0 {
            return Ok(0);
        }
        let end = addr.saturating_add(len);
        self.activate();
        let mut page = page_down(addr);
        while page < end {
            let word = page.max(addr) & !3;
            if usercopy::compare_exchange_user_u32(word, 0, 0).is_err() {
                let backed = match self.fault_in(word, Access::Write) {
                    Err(Errno::ENOMEM) => return Err(Errno::ENOMEM),
                    result => result.is_ok(),
                };
                self.activate();
                if !backed || usercopy::compare_exchange_user_u32(word, 0, 0).is_err() {
                    return match page.max(addr) - addr {
                        0 => Err(Errno::EFAULT),
                        room => Ok(room),
                    };
                }
            }
            page = page.saturating_add(PAGE);
        }
        Ok(end - addr)
    }

    /// Atomically replaces the aligned word at `addr` with `new` if it
    /// holds `expected` (as other processors' threads see it); returns
    /// the word it held.
    pub fn compare_exchange_u32(&mut self, addr: u64, expected: u32, new: u32) -> Result<u32, Errno> {
        self.activate();
        if let Ok(old) = usercopy::compare_exchange_user_u32(addr, expected, new) {
            return Ok(old);
        }
        self.fault_in(addr, Access::Write)?;
        self.activate();
        usercopy::compare_exchange_user_u32(addr, expected, new).map_err(Errno::from)
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    pub fn read_c_string(&mut self, addr: u64, max: usize) -> Result<alloc::vec::Vec<u8>, Errno> {
        let mut out = alloc::vec::Vec::new();
        let mut at = addr;
        loop {
            let mut chunk = [0u8; 64];
            let room = (PAGE - at % PAGE).min(64) as usize;
            let part = chunk.get_mut(..room).ok_or(Errno::EFAULT)?;
            self.read(at, part)?;
            if let Some(nul) = part.iter().position(|&b| b == 0) {
                out.extend_from_slice(part.get(..nul).unwrap_or(&[]));
                return Ok(out);
            }
            out.extend_from_slice(part);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            at = at.checked_add(room as u64).ok_or(Errno::EFAULT)?;
        }
    }

    /// The frame behind `addr` when it lies in a `MAP_SHARED` area (backed
    /// now if it was not): what a shared futex is keyed by, so that every
    /// process mapping the page finds the same waiters.
    pub fn shared_frame(&mut self, addr: u64) -> Result<Option<Arc<Frame>>, Errno> {
        let Some((_, area)) = self.area_at(addr) else { return Err(Errno::EFAULT) };
        if !area.shared {
            return Ok(None);
        }
        self.populate_range(addr, 4, false)?;
        Ok(self.space.share(page_down(addr)))
    }

    /// Maps `frame` (already filled) at `page` with `prot` (used by exec).
    pub fn map_filled(&mut self, page: u64, frame: Frame, prot: Prot) -> Result<(), Errno> {
        let perms = prot.page_perms().unwrap_or(Perms::READ);
        self.space.map(page, frame, perms).map_err(|(e, _)| match e {
            VmError::OutOfMemory => Errno::ENOMEM,
            _ => Errno::EINVAL,
        })
    }

    /// Writes into mapped pages regardless of rights (used by exec).
    pub fn write_image(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.populate_range(addr, data.len() as u64, false)?;
        if let Some((start, area)) = self.area_ref(addr)
            && area.file.is_some()
            && !area.shared
        {
            self.mark_anon(start);
        }
        self.space.write_bytes(addr, data).map_err(|_| Errno::EFAULT)
    }

    /// Moves the program break; returns the new break (unchanged on failure,
    /// as Linux does).
    pub fn set_brk(&mut self, requested: u64) -> u64 {
        if requested < self.brk_start || requested > self.brk_start.saturating_add(BRK_MAX) {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) = (page_up(self.brk), page_up(requested)) else { return self.brk };
        if new_end > old_end {
            if !self.is_free(old_end, new_end) {
                return self.brk;
            }
            // Grow the heap area (or start it).
            match self.area_at(old_end.saturating_sub(1)).filter(|(s, _)| *s >= self.brk_start) {
                Some((start, area)) if area.end == old_end => {
                    let locked = self.lock_future;
                    self.areas.insert(start, Area { end: new_end, prot: Prot::DATA, shared: false, anon: false, file: None, shm: None, special: None, may_write: true, locked, grows_down: false });
                }
                _ => {
                    if self.add_area(old_end, new_end, Prot::DATA, false).is_err() {
                        return self.brk;
                    }
                }
            }
        } else if new_end < old_end {
            self.remove_range(new_end, old_end);
        }
        self.brk = requested;
        self.brk
    }
}

impl Drop for AddressSpace {
    /// The address space ends (exit or exec): what was written through
    /// shared file mappings goes to the files.
    fn drop(&mut self) {
        let _ = self.write_back(0, u64::MAX, false);
    }
}

/// True when user pages may not take more memory: the last 1/32 of RAM
/// (at least 4 MiB) stays for the kernel, so a program that exhausts
/// memory is killed while the kernel's own allocations still succeed.
pub fn user_memory_exhausted() -> bool {
    let short = || {
        let stats = framekernel::mm::frame_stats();
        stats.free <= (stats.total / 32).max(1024)
    };
    if !short() {
        return false;
    }
    // File pages no mapping holds are the first to go.
    crate::pagecache::release_unmapped();
    short()
}

/// A value of 2 to 8 bytes (one of the kernel's stores of a word, an id,
/// a status) that crosses a page boundary: the user copy, byte by byte at
/// a fault, would leave part of it written.
fn is_split_value(addr: u64, len: usize) -> bool {
    (2..=8).contains(&len) && (addr % PAGE) + len as u64 > PAGE
}

/// A process's memory as its threads share it: the address space behind
/// a lock. Each method locks for its own duration only; nothing blocks
/// while holding the lock.
///
/// User copies skip the lock when the space is the one loaded here (as a
/// system call's nearly always is): the base's copies catch any fault,
/// and a copy that faults is done again under the lock, backing the page
/// (a bad address is EFAULT there). A copy racing an `munmap` or
/// `mprotect` of another thread is the race a program's own stores have:
/// the other thread's TLB shootdown orders it. The id is taken once, at
/// [`Memory::new`]: the space behind the lock is never replaced (an exec
/// makes a new `Memory`), and the handle keeps it alive.
#[derive(Clone)]
pub struct Memory(Arc<Mutex<AddressSpace>>, SpaceId);

impl Memory {
    /// Identifies the shared object (`kcmp`): equal for handles of one object.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// Shares `space`.
    pub fn new(space: AddressSpace) -> Self {
        let id = space.space.id();
        Self(Arc::new(Mutex::new(space)), id)
    }

    /// The address space, locked.
    pub fn lock(&self) -> MutexGuard<'_, AddressSpace> {
        self.0.lock()
    }

    /// Identifies the address space (futex keys).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// See [`AddressSpace::read`].
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), Errno> {
        if self.1.is_active() && usercopy::copy_from_user(addr, out).is_ok() {
            return Ok(());
        }
        self.lock().read(addr, out)
    }

    /// See [`AddressSpace::write`].
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        if !is_split_value(addr, data.len()) && self.1.is_active() && usercopy::copy_to_user(addr, data).is_ok() {
            return Ok(());
        }
        self.lock().write(addr, data)
    }

    /// See [`AddressSpace::compare_exchange_u32`].
    pub fn compare_exchange_u32(&self, addr: u64, expected: u32, new: u32) -> Result<u32, Errno> {
        self.lock().compare_exchange_u32(addr, expected, new)
    }

    /// See [`AddressSpace::read_c_string`].
    pub fn read_c_string(&self, addr: u64, max: usize) -> Result<alloc::vec::Vec<u8>, Errno> {
        self.lock().read_c_string(addr, max)
    }

    /// See [`AddressSpace::populate`].
    pub fn populate(&self, addr: u64, access: Access) -> Populate {
        self.lock().populate(addr, access)
    }

    /// See [`AddressSpace::populate_range`].
    pub fn populate_range(&self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        self.lock().populate_range(addr, len, write)
    }

    /// See [`AddressSpace::prepare_write`].
    pub fn prepare_write(&self, addr: u64, len: u64) -> Result<u64, Errno> {
        self.lock().prepare_write(addr, len)
    }

    /// See [`AddressSpace::activate`].
    pub fn activate(&self) {
        self.lock().activate();
    }

    /// See [`AddressSpace::shared_frame`].
    pub fn shared_frame(&self, addr: u64) -> Result<Option<Arc<Frame>>, Errno> {
        self.lock().shared_frame(addr)
    }

    /// See [`AddressSpace::set_brk`].
    pub fn set_brk(&self, requested: u64) -> u64 {
        self.lock().set_brk(requested)
    }

    /// A copy-on-write copy for a forked child.
    pub fn fork_copy(&self) -> Result<Memory, Errno> {
        self.lock().fork_copy().map(Memory::new)
    }
}
