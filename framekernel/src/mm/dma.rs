//! Memory shared with devices: [`DmaBuffer`], physically contiguous frames
//! whose physical address a driver gives to its device.
//!
//! A device may write the buffer at any time, so its bytes are never lent
//! out as Rust references: they are reached by volatile typed accesses and
//! volatile copies only. Frames are zeroed when allocated and again before
//! they return to the pool.
//!
//! Trust note: without an IOMMU a device can be told any physical address;
//! the base cannot stop a driver from pointing its device elsewhere. A
//! driver's device handle (`pci::PciDevice`) turns bus mastering off when it
//! drops, so declare it before the buffers the device uses.

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
}

impl DmaBuffer {
    /// At least `bytes` (rounded up to pages) of zeroed, contiguous memory.
    pub fn new(bytes: usize) -> Result<Self, OutOfMemory> {
        let pages = (bytes.max(1) as u64).div_ceil(PAGE_SIZE);
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
        Ok(Self { phys, pages, virt })
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
        for i in 0..self.pages {
            let phys = self.phys + i * PAGE_SIZE;
            frames::zero(phys);
            frames::free_raw(phys);
        }
    }
}
