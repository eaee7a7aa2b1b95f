//! Safe mappings in the kernel window: [`MappedArea`] (frames seen as one
//! byte slice) and [`IoMem`] (device registers, uncached, bounds-checked).

use super::frames::Frame;
use super::paging;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel_logic::layout::{KMAP_BASE, KMAP_END, PAGE_SIZE, align_down, align_up};
use framekernel_logic::memmap::Range;
use x86_64::structures::paging::PageTableFlags as Flags;

/// Next free address of the kernel window. The window is 32 TiB and ranges
/// are never reused; a range allocator will replace this when mappings
/// become frequent (documented in docs/architecture.md).
static NEXT: AtomicU64 = AtomicU64::new(KMAP_BASE);

/// Why a mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Nothing to map.
    Empty,
    /// The kernel window is used up.
    WindowFull,
    /// The page tables could not be extended.
    PageTables(&'static str),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::Empty => f.write_str("nothing to map"),
            MapError::WindowFull => f.write_str("kernel mapping window exhausted"),
            MapError::PageTables(why) => write!(f, "page tables: {why}"),
        }
    }
}

fn reserve_window(pages: u64) -> Result<u64, MapError> {
    let bytes = pages.checked_mul(PAGE_SIZE).ok_or(MapError::WindowFull)?;
    // One unmapped guard page after each range.
    let step = bytes.checked_add(PAGE_SIZE).ok_or(MapError::WindowFull)?;
    let base = NEXT.fetch_add(step, Ordering::Relaxed);
    if base.checked_add(step).is_none_or(|end| end > KMAP_END) {
        return Err(MapError::WindowFull);
    }
    Ok(base)
}

/// Frames mapped contiguously in the kernel window, readable and writable
/// as one byte slice. Owns its frames; unmaps and frees them on drop.
pub struct MappedArea {
    base: u64,
    frames: Vec<u64>,
}

impl MappedArea {
    /// Maps `frames` in order, read-write, not executable.
    pub fn new(frames: Vec<Frame>) -> Result<Self, MapError> {
        if frames.is_empty() {
            return Err(MapError::Empty);
        }
        let base = reserve_window(frames.len() as u64)?;
        let phys: Vec<u64> = frames.into_iter().map(Frame::into_phys).collect();
        if let Err(why) = paging::map(base, &phys, Flags::PRESENT | Flags::WRITABLE | paging::nx()) {
            for &p in &phys {
                // SAFETY: each came from `into_phys` above and the failed
                // `map` left none of them mapped.
                drop(unsafe { Frame::from_phys(p) });
            }
            return Err(MapError::PageTables(why));
        }
        Ok(Self { base, frames: phys })
    }

    /// Virtual address of the first byte.
    pub fn virt_addr(&self) -> u64 {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.frames.len() * PAGE_SIZE as usize
    }

    /// Never true: an area holds at least one frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Physical address of each page, in order.
    pub fn phys_pages(&self) -> &[u64] {
        &self.frames
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `base..base+len` is mapped read-write to frames this area
        // owns exclusively, for as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.base as *const u8, self.len()) }
    }

    /// The mapped bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.base as *mut u8, self.len()) }
    }
}

impl Drop for MappedArea {
    fn drop(&mut self) {
        paging::unmap(self.base, self.frames.len() as u64);
        for &p in &self.frames {
            // SAFETY: the frame came from `into_phys` in `new` and is no
            // longer mapped.
            drop(unsafe { Frame::from_phys(p) });
        }
    }
}

/// Why device memory could not be acquired or accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMemError {
    /// Zero length or a range that wraps.
    BadRange { phys: u64, len: u64 },
    /// The range overlaps RAM: MMIO handles must not alias memory.
    IsRam { phys: u64, len: u64 },
    /// Someone else holds (part of) the range.
    Busy { phys: u64 },
    /// Mapping failed.
    Map(MapError),
    /// An access outside the range.
    OutOfRange { offset: u64, width: u64, len: u64 },
    /// An access not aligned to its width.
    Misaligned { offset: u64, width: u64 },
    /// The claim was revoked (the cell call that took it faulted).
    Revoked,
}

impl core::fmt::Display for IoMemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IoMemError::BadRange { phys, len } => write!(f, "bad MMIO range {phys:#x}+{len:#x}"),
            IoMemError::IsRam { phys, len } => write!(f, "MMIO range {phys:#x}+{len:#x} overlaps RAM"),
            IoMemError::Busy { phys } => write!(f, "MMIO range at {phys:#x} is already acquired"),
            IoMemError::Revoked => f.write_str("the MMIO claim was revoked (the cell call that took it faulted)"),
            IoMemError::Map(e) => write!(f, "{e}"),
            IoMemError::OutOfRange { offset, width, len } => {
                write!(f, "{width}-byte access at offset {offset:#x} outside a {len:#x}-byte MMIO range")
            }
            IoMemError::Misaligned { offset, width } => write!(f, "{width}-byte MMIO access at unaligned {offset:#x}"),
        }
    }
}

/// One past the highest physical address this processor can address
/// (CPUID 0x80000008: 36 bits when the leaf is missing).
fn physical_limit() -> u64 {
    let bits = if core::arch::x86_64::__cpuid(0x8000_0000).eax >= 0x8000_0008 {
        core::arch::x86_64::__cpuid(0x8000_0008).eax & 0xff
    } else {
        36
    };
    1u64 << bits.clamp(32, 52)
}

/// Acquired ranges with their claim tokens and fault domains.
static ACQUIRED: crate::sync::BaseLock<Vec<MmioClaim>> = crate::sync::BaseLock::new(Vec::new());

/// One acquired range: the range, its claim token, its fault domain and
/// the live flag shared with the handle.
type MmioClaim = (Range, u64, u64, Arc<crate::sync::Claim>);

/// Gives back the claim `token` (a handle's drop; a no-op once revoked).
fn release_iomem(token: u64) {
    ACQUIRED.lock().retain(|(_, t, ..)| *t != token);
}

/// Gives back every MMIO claim taken in calls of the faulted cell `domain`
/// (the abandoned handles' mappings stay, unused; the range is free).
pub(crate) fn revoke_domain(domain: u64) {
    ACQUIRED.lock().retain(|(_, _, d, live)| {
        if *d == domain {
            // The handle answers `Revoked` from now on, and an access
            // another processor began has ended.
            live.revoke();
        }
        *d != domain
    });
}

/// Exclusive, uncached access to a device's memory-mapped registers.
pub struct IoMem {
    phys: u64,
    len: u64,
    /// Start of the page-aligned mapping.
    map_base: u64,
    pages: u64,
    /// Offset of `phys` inside the first mapped page.
    skew: u64,
    /// The claim, in `ACQUIRED`.
    token: u64,
    /// Revoked with the claim: every access then fails.
    live: Arc<crate::sync::Claim>,
}

impl IoMem {
    /// Claims and maps `len` bytes of device memory at `phys` (the base's
    /// own use: a claimed PCI function's memory BAR).
    pub(crate) fn acquire(phys: u64, len: u64) -> Result<Self, IoMemError> {
        // Past the processor's physical address width a page-table entry
        // would set reserved bits (a fault on first access).
        let end = phys.checked_add(len).filter(|&end| len > 0 && end <= physical_limit()).ok_or(IoMemError::BadRange { phys, len })?;
        let range = Range::new(phys, end);
        if super::overlaps_ram(range) {
            return Err(IoMemError::IsRam { phys, len });
        }
        let first = align_down(phys, PAGE_SIZE);
        let pages = (align_up(end, PAGE_SIZE) - first) / PAGE_SIZE;
        let busy = |acquired: &[MmioClaim]| acquired.iter().find(|(r, ..)| r.overlaps(&range)).map(|(r, ..)| r.start.max(phys));
        if let Some(at) = busy(&ACQUIRED.lock()) {
            return Err(IoMemError::Busy { phys: at });
        }
        // Everything that allocates happens before the claim lock is taken.
        let map_base = reserve_window(pages).map_err(IoMemError::Map)?;
        let mut frames: Vec<u64> = Vec::new();
        frames.try_reserve_exact(pages as usize).map_err(|_| IoMemError::Map(MapError::PageTables("no memory to record the mapping")))?;
        frames.extend((0..pages).map(|i| first + i * PAGE_SIZE));
        let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_CACHE | Flags::WRITE_THROUGH | paging::nx();
        paging::map(map_base, &frames, flags).map_err(|e| IoMemError::Map(MapError::PageTables(e)))?;
        let token = crate::cell::claim_token();
        let live = Arc::new(crate::sync::Claim::new());
        let mut acquired = ACQUIRED.lock();
        let claimed = match busy(&acquired) {
            Some(at) => Err(IoMemError::Busy { phys: at }),
            // A call of a copy whose claims were already revoked (another
            // call of it faulted) gets none: nothing would revoke it.
            None if crate::cell::current_call_tainted() => Err(IoMemError::Revoked),
            None => acquired.try_reserve(1).map_err(|_| IoMemError::Map(MapError::PageTables("no memory to record the mapping"))),
        };
        if let Err(e) = claimed {
            drop(acquired);
            paging::unmap(map_base, pages);
            return Err(e);
        }
        // Claimed inside a cell call: revoked if a call of that cell faults.
        acquired.push((range, token, crate::cell::current_domain(), live.clone()));
        Ok(Self { phys, len, map_base, pages, skew: phys - first, token, live })
    }

    /// Physical address of the first register.
    pub fn phys_addr(&self) -> u64 {
        self.phys
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Never true: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn address(&self, offset: u64, width: u64) -> Result<u64, IoMemError> {
        if !offset.is_multiple_of(width) {
            return Err(IoMemError::Misaligned { offset, width });
        }
        match offset.checked_add(width) {
            Some(end) if end <= self.len => Ok(self.map_base + self.skew + offset),
            _ => Err(IoMemError::OutOfRange { offset, width, len: self.len }),
        }
    }

    /// Reads a `u8`, `u16`, `u32` or `u64` register at `offset` (aligned
    /// to its size).
    pub fn read<T: Register>(&self, offset: u64) -> Result<T, IoMemError> {
        let addr = self.address(offset, size_of::<T>() as u64)?;
        self.access(addr, size_of::<T>(), None).map(T::from_u64).ok_or(IoMemError::Revoked)
    }

    /// Writes a `u8`, `u16`, `u32` or `u64` register at `offset` (aligned
    /// to its size).
    pub fn write<T: Register>(&self, offset: u64, value: T) -> Result<(), IoMemError> {
        let addr = self.address(offset, size_of::<T>() as u64)?;
        self.access(addr, size_of::<T>(), Some(value.to_u64())).map(|_| ()).ok_or(IoMemError::Revoked)
    }

    /// One register access of `width` bytes at `addr` (checked by
    /// `address`): a write of `value` if given, else a read. Not generic
    /// and never inlined, so it runs as the base's code even when a cell
    /// reads or writes (`read`/`write` are compiled into the cell): the
    /// watchdog never stops a cell inside it, so the in-flight count of
    /// its claim always comes down. `None` once the claim is revoked.
    #[inline(never)]
    fn access(&self, addr: u64, width: usize, value: Option<u64>) -> Option<u64> {
        self.live.access(|| {
            // SAFETY: `addr..addr + width` is inside this handle's uncached
            // mapping of device memory (checked by `address`; the mapping
            // lives as long as the handle), which is not RAM and is held
            // exclusively for the whole access (`Claim`), and it is aligned
            // for its width (checked); the values are plain integers.
            // Device side effects (such as DMA) are a driver-trust
            // assumption documented in docs/architecture.md.
            unsafe {
                match (width, value) {
                    (1, Some(v)) => core::ptr::write_volatile(addr as *mut u8, v as u8),
                    (2, Some(v)) => core::ptr::write_volatile(addr as *mut u16, v as u16),
                    (4, Some(v)) => core::ptr::write_volatile(addr as *mut u32, v as u32),
                    (_, Some(v)) => core::ptr::write_volatile(addr as *mut u64, v),
                    (1, None) => return u64::from(core::ptr::read_volatile(addr as *const u8)),
                    (2, None) => return u64::from(core::ptr::read_volatile(addr as *const u16)),
                    (4, None) => return u64::from(core::ptr::read_volatile(addr as *const u32)),
                    (_, None) => return core::ptr::read_volatile(addr as *const u64),
                }
            }
            0
        })
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Integer widths a device register can have: `u8`, `u16`, `u32`, `u64`.
pub trait Register: sealed::Sealed + Copy {
    /// Widened (zero-extended).
    fn to_u64(self) -> u64;
    /// Narrowed (the low bytes).
    fn from_u64(value: u64) -> Self;
}

macro_rules! register {
    ($($t:ty),*) => { $(
        impl sealed::Sealed for $t {}
        impl Register for $t {
            #[inline(always)]
            fn to_u64(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_u64(value: u64) -> Self {
                value as $t
            }
        }
    )* };
}
register!(u8, u16, u32, u64);

impl Drop for IoMem {
    fn drop(&mut self) {
        paging::unmap(self.map_base, self.pages);
        release_iomem(self.token);
    }
}
