//! Memory shared with devices: [`DmaBuffer`], physically contiguous frames
//! whose physical address a driver gives to its device.
//!
//! A device may write the buffer at any time, so its bytes are never lent
//! out as Rust references: they are reached by volatile typed accesses and
//! volatile copies only. Frames are zeroed when allocated and again before
//! they return to the pool.
//!
//! A buffer belongs to one claimed device (`pci::PciDevice::dma_buffer`).
//! Its frames are reused only when that device can no longer write them:
//! a buffer dropped while its device is claimed waits for the claim to end
//! (the handle's drop or the revocation of a faulted cell's claims, which
//! turn bus mastering off first); a buffer abandoned by a faulted cell is
//! never dropped, so its frames stay out of use for good.
//!
//! Trust note: without an IOMMU a device can be told any physical address;
//! the base cannot stop a driver from pointing its device elsewhere
//! (docs/soundness.md, assumptions).

use super::frames::{self, OutOfMemory, frame_stats};
use super::kmap::Register;
use core::mem::size_of;
use framekernel_logic::layout::{PAGE_SIZE, phys_to_direct};

/// An access outside a [`DmaBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaOutOfRange {
    /// Offset asked for.
    pub offset: usize,
    /// Bytes asked for.
    pub len: usize,
    /// Size of the buffer.
    pub size: usize,
}

impl core::fmt::Display for DmaOutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} bytes at offset {:#x} outside a {:#x}-byte DMA buffer", self.len, self.offset, self.size)
    }
}

/// Physically contiguous memory for a device.
#[derive(Debug)]
pub struct DmaBuffer {
    phys: u64,
    pages: u64,
    virt: u64,
    /// The claim token of the device that may write it.
    device: u64,
    /// That device's function: where the frames wait when the buffer is
    /// dropped (under whichever claim of the function is live or
    /// lingering then, whatever its token).
    function: framekernel_logic::pci::PciAddress,
    /// The epoch of the claim it was made under (`pci`: a buffer made
    /// under a claim that was later revoked is never handed on unzeroed).
    epoch: u64,
    /// The fault domain of the cell call it was made in (0: none).
    maker: u64,
}

/// Frames of DMA buffers whose release could not be recorded (kept out of
/// use rather than risk a device writing reused memory).
static LEAKED_PAGES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Pages of DMA memory kept out of use for good.
pub fn leaked_pages() -> u64 {
    LEAKED_PAGES.load(core::sync::atomic::Ordering::Relaxed)
}

/// Zeroes and frees `pages` frames from `phys` (the device is stopped).
pub(crate) fn free_frames(phys: u64, pages: u64) {
    for i in 0..pages {
        frames::zero(phys + i * PAGE_SIZE);
        frames::free_raw(phys + i * PAGE_SIZE);
    }
}

/// The pages a buffer of `bytes` takes (at least one).
pub(crate) fn pages_for(bytes: usize) -> u64 {
    (bytes.max(1) as u64).div_ceil(PAGE_SIZE)
}

impl DmaBuffer {
    /// At least `bytes` (rounded up to pages) of zeroed, contiguous memory
    /// for the device whose PCI claim is `device`.
    pub(crate) fn new_for(function: framekernel_logic::pci::PciAddress, device: u64, epoch: u64, bytes: usize) -> Result<Self, OutOfMemory> {
        let pages = pages_for(bytes);
        let oom = || OutOfMemory { requested: pages, free: frame_stats().free };
        let phys = frames::alloc_contiguous_raw(pages, 1).ok_or_else(oom)?;
        let Some(virt) = phys_to_direct(phys) else {
            for i in 0..pages {
                frames::free_raw(phys + i * PAGE_SIZE);
            }
            return Err(oom());
        };
        for i in 0..pages {
            frames::zero(phys + i * PAGE_SIZE);
        }
        Ok(Self { phys, pages, virt, device, function, epoch, maker: crate::cell::current_domain() })
    }

    /// A buffer again over `pages` frames from `phys` that a buffer of the
    /// same device (`device`, its claim token) left: they were allocated
    /// contiguous by [`new_for`](Self::new_for) and have been out of use
    /// since that buffer was dropped (the device could still write them).
    /// Zeroed again if `zero`. `None` (never: the direct map covered them
    /// when they were first handed out) leaves them out of use for good.
    pub(crate) fn reuse(function: framekernel_logic::pci::PciAddress, device: u64, epoch: u64, phys: u64, pages: u64, zero: bool) -> Option<Self> {
        let Some(virt) = phys_to_direct(phys) else {
            LEAKED_PAGES.fetch_add(pages, core::sync::atomic::Ordering::Relaxed);
            return None;
        };
        if zero {
            for i in 0..pages {
                frames::zero(phys + i * PAGE_SIZE);
            }
        }
        Some(Self { phys, pages, virt, device, function, epoch, maker: crate::cell::current_domain() })
    }

    /// Physical address of the first byte, for the device.
    pub fn phys_addr(&self) -> u64 {
        self.phys
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        (self.pages * PAGE_SIZE) as usize
    }

    /// Never true: a buffer holds at least one page.
    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    fn check(&self, offset: usize, len: usize) -> Result<u64, DmaOutOfRange> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(self.virt + offset as u64),
            _ => Err(DmaOutOfRange { offset, len, size: self.len() }),
        }
    }

    /// Reads a `T` at `offset` (volatile; aligned or not).
    pub fn read<T: Register>(&self, offset: usize) -> Result<T, DmaOutOfRange> {
        let at = self.check(offset, size_of::<T>())?;
        // SAFETY: `at..at+size_of::<T>()` lies in this buffer's frames
        // (checked), which it owns and which the direct map covers; T is a
        // plain integer, valid for any bits.
        Ok(unsafe { core::ptr::read_volatile(at as *const T) })
    }

    /// Writes a `T` at `offset` (volatile).
    pub fn write<T: Register>(&self, offset: usize, value: T) -> Result<(), DmaOutOfRange> {
        let at = self.check(offset, size_of::<T>())?;
        // SAFETY: as in `read`; no Rust reference to these bytes exists.
        unsafe { core::ptr::write_volatile(at as *mut T, value) };
        Ok(())
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), DmaOutOfRange> {
        let at = self.check(offset, out.len())?;
        for (i, byte) in out.iter_mut().enumerate() {
            // SAFETY: each byte lies in the checked range.
            *byte = unsafe { core::ptr::read_volatile((at + i as u64) as *const u8) };
        }
        Ok(())
    }

    /// Copies `data` to `offset`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<(), DmaOutOfRange> {
        let at = self.check(offset, data.len())?;
        for (i, &byte) in data.iter().enumerate() {
            // SAFETY: each byte lies in the checked range.
            unsafe { core::ptr::write_volatile((at + i as u64) as *mut u8, byte) };
        }
        Ok(())
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if !crate::pci::dma_dropped(self.function, (self.device, self.epoch, self.maker), self.phys, self.pages) {
            LEAKED_PAGES.fetch_add(self.pages, core::sync::atomic::Ordering::Relaxed);
        }
    }
}
