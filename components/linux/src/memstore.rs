//! The memory store under the in-memory file systems (tmpfs, devtmpfs,
//! sysfs), which the `tmpfs` cell formats like a disk: a sparse set of
//! 4 KiB pages over a space of 2^52 blocks. A page never written, or
//! written with zeros, or discarded, reads as zeros and takes no memory,
//! so the cell can place its structures at fixed block numbers without
//! allocating them (see `components/cells/tmpfs`).

use crate::block::{BlockBackend, SECTOR};
use crate::errno::Errno;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel::sync::SpinLock;

/// Pages held by all memory stores (`Shmem:` in `/proc/meminfo`, which
/// counts tmpfs pages on Linux).
static PAGES: AtomicU64 = AtomicU64::new(0);

/// Bytes held by all memory stores.
pub fn bytes_in_use() -> u64 {
    PAGES.load(Ordering::Relaxed) * PAGE
}

/// Bytes per page.
const PAGE: u64 = 4096;
/// Sectors the store pretends to have: 2^52 pages.
const SECTORS: u64 = (1 << 52) * (PAGE / SECTOR);

/// A sparse store of pages.
#[derive(Default)]
pub struct MemStore {
    pages: SpinLock<BTreeMap<u64, Box<[u8]>>>,
}

impl MemStore {
    /// An empty store (all zeros).
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages holding data (for `/proc/meminfo`-style accounting and tests).
    pub fn pages(&self) -> usize {
        self.pages.lock().len()
    }

    /// Calls `f` with each page piece of the byte range of `len` bytes at
    /// `sector`: page number, offset in the page, offset in the range,
    /// length.
    fn pieces(sector: u64, len: usize, mut f: impl FnMut(u64, usize, usize, usize) -> Result<(), Errno>) -> Result<(), Errno> {
        let start = sector.checked_mul(SECTOR).ok_or(Errno::EIO)?;
        let mut done = 0usize;
        while done < len {
            let at = start + done as u64;
            let (page, off) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - off).min(len - done);
            f(page, off, done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl BlockBackend for MemStore {
    fn sectors(&self) -> Result<u64, Errno> {
        Ok(SECTORS)
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let pages = self.pages.lock();
        Self::pieces(sector, buf.len(), |page, off, at, n| {
            let dst = buf.get_mut(at..at + n).ok_or(Errno::EIO)?;
            match pages.get(&page).and_then(|p| p.get(off..off + n)) {
                Some(src) => dst.copy_from_slice(src),
                None => dst.fill(0),
            }
            Ok(())
        })
    }

    /// Out of memory is `ENOSPC`, as a full tmpfs says it.
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), Errno> {
        let mut pages = self.pages.lock();
        Self::pieces(sector, buf.len(), |page, off, at, n| {
            let src = buf.get(at..at + n).ok_or(Errno::EIO)?;
            if let Some(p) = pages.get_mut(&page) {
                p.get_mut(off..off + n).ok_or(Errno::EIO)?.copy_from_slice(src);
                if p.iter().all(|&b| b == 0) {
                    pages.remove(&page);
                    PAGES.fetch_sub(1, Ordering::Relaxed);
                }
                return Ok(());
            }
            if src.iter().all(|&b| b == 0) {
                return Ok(());
            }
            let mut fresh = Vec::new();
            fresh.try_reserve_exact(PAGE as usize).map_err(|_| Errno::ENOSPC)?;
            fresh.resize(PAGE as usize, 0);
            fresh.get_mut(off..off + n).ok_or(Errno::EIO)?.copy_from_slice(src);
            pages.insert(page, fresh.into_boxed_slice());
            PAGES.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }

    fn discard(&self, sector: u64, count: u64) {
        let (Some(start), Some(len)) = (sector.checked_mul(SECTOR), count.checked_mul(SECTOR)) else { return };
        let mut pages = self.pages.lock();
        let first = start.div_ceil(PAGE);
        let end = start.saturating_add(len) / PAGE;
        let doomed: Vec<u64> = if end.saturating_sub(first) <= 64 {
            (first..end).filter(|p| pages.contains_key(p)).collect()
        } else {
            pages.range(first..end).map(|(&p, _)| p).collect()
        };
        for page in &doomed {
            pages.remove(page);
        }
        PAGES.fetch_sub(doomed.len() as u64, Ordering::Relaxed);
    }
}

impl Drop for MemStore {
    fn drop(&mut self) {
        PAGES.fetch_sub(self.pages.lock().len() as u64, Ordering::Relaxed);
    }
}
