//! Mappings of loaded cells in the cell area (`CELLS_BASE..CELLS_END`, the
//! top 2 GiB next to the kernel image, so cells reach kernel symbols with
//! 32-bit relocations). Each part of a cell gets its own page rights: text
//! read+execute, read-only data read, data read+write, never write+execute.
//! The image is written into fresh frames before they are mapped, so no
//! cell page is ever writable and executable in the cell area.

use super::frames::Frame;
use super::kmap::MapError;
use super::paging;
use alloc::vec::Vec;
use framekernel_logic::layout::{CELLS_BASE, CELLS_END, PAGE_SIZE};
use x86_64::structures::paging::PageTableFlags as Flags;

/// Page rights of one part of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// Read and execute (text).
    Execute,
    /// Read only (constants, the GOT).
    ReadOnly,
    /// Read and write, not executable (data, zero-fill).
    ReadWrite,
}

/// Address ranges of the cell area: (next never-used address, freed ranges).
static AREA: crate::sync::BaseLock<(u64, Vec<(u64, u64)>)> = crate::sync::BaseLock::new((CELLS_BASE, Vec::new()));

/// Reserves `bytes` (a page multiple) of the cell area, followed by an
/// unmapped guard page.
pub(crate) fn reserve(bytes: u64) -> Result<u64, MapError> {
    let need = bytes.checked_add(PAGE_SIZE).ok_or(MapError::WindowFull)?;
    let mut area = AREA.lock();
    if let Some(i) = area.1.iter().position(|&(_, len)| len >= need) {
        let (start, len) = area.1.swap_remove(i);
        if len > need {
            area.1.push((start + need, len - need));
        }
        return Ok(start);
    }
    let start = area.0;
    if start.checked_add(need).is_none_or(|end| end > CELLS_END) {
        return Err(MapError::WindowFull);
    }
    area.0 = start + need;
    Ok(start)
}

/// Returns a range `reserve` gave out (with its guard page).
pub(crate) fn release(start: u64, bytes: u64) {
    AREA.lock().1.push((start, bytes + PAGE_SIZE));
}

/// A cell image mapped at its address. Owns its frames; unmaps them and
/// gives the range back when dropped.
pub(crate) struct CellMapping {
    base: u64,
    reserved: u64,
    /// One per page of the image, in order (mapped or not).
    frames: Vec<Frame>,
}

impl CellMapping {
    /// Copies `image` (linked for `base`, a range of `image.len()` bytes
    /// that `reserve` returned and that the mapping now owns) into fresh frames and maps each page with the rights of
    /// the part that contains it; pages outside every part stay unmapped.
    pub(crate) fn map(base: u64, image: &[u8], parts: &[((u64, u64), Rights)]) -> Result<Self, MapError> {
        let reserved = (image.len() as u64).next_multiple_of(PAGE_SIZE);
        let mut mapping = Self { base, reserved, frames: Vec::new() };
        for chunk in image.chunks(PAGE_SIZE as usize) {
            let mut frame = Frame::alloc().map_err(|_| MapError::PageTables("out of memory for a cell page"))?;
            frame.write_bytes(0, chunk).map_err(|_| MapError::PageTables("cell page larger than a frame"))?;
            mapping.frames.push(frame);
        }
        for (index, phys) in mapping.frames.iter().map(Frame::phys_addr).enumerate() {
            let offset = index as u64 * PAGE_SIZE;
            let rights = parts.iter().find(|((start, end), _)| offset + PAGE_SIZE > *start && offset < *end).map(|(_, r)| *r);
            let flags = match rights {
                Some(Rights::Execute) => Flags::PRESENT | Flags::GLOBAL,
                Some(Rights::ReadOnly) => Flags::PRESENT | Flags::GLOBAL | paging::nx(),
                Some(Rights::ReadWrite) => Flags::PRESENT | Flags::GLOBAL | Flags::WRITABLE | paging::nx(),
                None => continue,
            };
            if let Err(why) = paging::map(base + offset, &[phys], flags) {
                return Err(MapError::PageTables(why)); // `mapping` drops: all undone
            }
        }
        Ok(mapping)
    }

    /// Writes `bytes` back over the pages from `offset` (a page multiple)
    /// on: the writable data of a copy that nothing runs in any more
    /// (`LoadedCell::renew`). The pages stay mapped as they are; the rest
    /// of each last page is zeroed. Returns false (nothing written) when
    /// the range is not inside the image.
    pub(crate) fn restore(&mut self, offset: u64, bytes: &[u8]) -> bool {
        let first = (offset / PAGE_SIZE) as usize;
        let pages = bytes.len().div_ceil(PAGE_SIZE as usize);
        if !offset.is_multiple_of(PAGE_SIZE) || first.checked_add(pages).is_none_or(|end| end > self.frames.len()) {
            return false;
        }
        for (frame, chunk) in self.frames[first..first + pages].iter_mut().zip(bytes.chunks(PAGE_SIZE as usize)) {
            frame.fill(0);
            // A chunk is at most a page: the write cannot fail.
            let _ = frame.write_bytes(0, chunk);
        }
        true
    }

    /// Bytes of memory the mapping holds.
    pub(crate) fn bytes(&self) -> u64 {
        self.frames.len() as u64 * PAGE_SIZE
    }

    /// First address.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }
}

impl Drop for CellMapping {
    fn drop(&mut self) {
        // Unmapping a page that was never mapped does nothing. The frames
        // are freed only after (when the vector drops), unmapped.
        paging::unmap(self.base, self.frames.len() as u64);
        release(self.base, self.reserved);
    }
}
