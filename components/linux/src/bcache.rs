//! A block cache over one disk: blocks of one size in one contiguous
//! buffer (so a file-system cell can be shown all of them as one byte
//! slice with a sorted index, `view`, for a cache made `with_view`),
//! second-chance (clock) replacement that skips the blocks the current
//! operation uses (`pin`), write-back of dirty
//! blocks (in block order, contiguous runs in one device request) when
//! half the cache is dirty, on `flush`, and when a dirty block is
//! evicted; read-ahead of the blocks that follow a missing one.
//!
//! Not locked: its owner (a mounted file system) holds it under its lock.

use crate::block::{BlockBackend, SECTOR};
use crate::errno::Errno;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

const EMPTY: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Slot {
    block: u64,
    dirty: bool,
    /// Used since the clock hand last passed (second chance).
    referenced: bool,
    /// Last use (the cache's clock), for pinning.
    used: u64,
}

const EMPTY_SLOT: Slot = Slot { block: EMPTY, dirty: false, referenced: false, used: 0 };

/// A cache of `capacity` blocks of `block_size` bytes of `disk`.
pub struct BlockCache {
    disk: Arc<dyn BlockBackend>,
    block_size: usize,
    /// Blocks on the disk (requests past it are EIO).
    blocks: u64,
    data: Vec<u8>,
    slots: Vec<Slot>,
    /// Block → slot.
    map: BTreeMap<u64, usize>,
    /// `[block, slot]`, sorted by block: the view a file-system cell gets
    /// (kept only for a cache made `with_view`).
    index: Vec<[u64; 2]>,
    with_view: bool,
    /// Slots holding nothing.
    free: Vec<usize>,
    /// The clock hand of second-chance replacement.
    hand: usize,
    clock: u64,
    dirty: usize,
    /// Blocks used since this stamp are not evicted (the current
    /// operation's working set).
    pinned_since: u64,
    read_ahead: u64,
    /// Slots the cache may grow to when one operation needs more blocks
    /// at once than it holds (a long directory, a large tree to free).
    max_slots: usize,
}

impl BlockCache {
    /// A cache of about `bytes` (at least 64 blocks) of `disk`, read in
    /// `block_size` units; ENOMEM if the memory cannot be had.
    pub fn new(disk: Arc<dyn BlockBackend>, block_size: usize, bytes: usize, read_ahead: u64, with_view: bool) -> Result<Self, Errno> {
        if !matches!(block_size, 1024 | 2048 | 4096) {
            return Err(Errno::EINVAL);
        }
        let capacity = (bytes / block_size).max(64);
        let mut data = Vec::new();
        data.try_reserve_exact(capacity * block_size).map_err(|_| Errno::ENOMEM)?;
        data.resize(capacity * block_size, 0);
        let blocks = disk.sectors()?.saturating_mul(SECTOR) / block_size as u64;
        Ok(BlockCache {
            disk,
            block_size,
            blocks,
            data,
            slots: alloc::vec![EMPTY_SLOT; capacity],
            map: BTreeMap::new(),
            index: if with_view { Vec::with_capacity(capacity) } else { Vec::new() },
            with_view,
            free: (0..capacity).rev().collect(),
            hand: 0,
            clock: 1,
            dirty: 0,
            pinned_since: u64::MAX,
            read_ahead,
            max_slots: capacity,
        })
    }

    /// Lets the cache grow to about `bytes` when an operation needs more
    /// blocks at once than it holds (it starts at the size it was made).
    pub fn with_growth(mut self, bytes: usize) -> Self {
        self.max_slots = (bytes / self.block_size).max(self.slots.len());
        self
    }

    /// Blocks the cache may come to hold (`with_growth`).
    pub fn max_capacity(&self) -> usize {
        self.max_slots
    }

    /// Doubles the cache (up to its limit) for an operation whose blocks
    /// fill it; ENOMEM at the limit or without memory.
    fn grow(&mut self) -> Result<usize, Errno> {
        let old = self.slots.len();
        let new = old.saturating_mul(2).min(self.max_slots);
        if new <= old {
            return Err(Errno::ENOMEM);
        }
        let bs = self.block_size;
        self.data.try_reserve_exact((new - old) * bs).map_err(|_| Errno::ENOMEM)?;
        self.slots.try_reserve_exact(new - old).map_err(|_| Errno::ENOMEM)?;
        self.free.try_reserve(new - old).map_err(|_| Errno::ENOMEM)?;
        if self.with_view {
            self.index.try_reserve(new - old).map_err(|_| Errno::ENOMEM)?;
        }
        self.data.resize(new * bs, 0);
        self.slots.resize(new, EMPTY_SLOT);
        self.free.extend((old + 1..new).rev());
        Ok(old)
    }

    /// Bytes per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Blocks the disk holds.
    pub fn disk_blocks(&self) -> u64 {
        self.blocks
    }

    /// The index and the bytes, for a file-system cell.
    pub fn view(&self) -> (&[[u64; 2]], &[u8]) {
        (&self.index, &self.data)
    }

    /// From now on, blocks used are kept until `unpin`.
    pub fn pin(&mut self) {
        self.pinned_since = self.clock;
    }

    /// Ends `pin`.
    pub fn unpin(&mut self) {
        self.pinned_since = u64::MAX;
    }

    fn find(&self, block: u64) -> Option<usize> {
        self.map.get(&block).copied()
    }

    /// True if `block` is held.
    pub fn holds(&self, block: u64) -> bool {
        self.find(block).is_some()
    }

    fn touch(&mut self, slot: usize) {
        self.clock += 1;
        if let Some(s) = self.slots.get_mut(slot) {
            s.used = self.clock;
            s.referenced = true;
        }
    }

    fn bytes(&self, slot: usize) -> &[u8] {
        self.data.get(slot * self.block_size..(slot + 1) * self.block_size).unwrap_or(&[])
    }

    fn bytes_mut(&mut self, slot: usize) -> &mut [u8] {
        let bs = self.block_size;
        self.data.get_mut(slot * bs..(slot + 1) * bs).unwrap_or(&mut [])
    }

    /// A slot to fill: an empty one, or one the clock hand finds unused
    /// since it last passed (second chance), clean and not pinned; when
    /// every candidate is dirty, they are written back first.
    fn victim(&mut self) -> Result<usize, Errno> {
        if let Some(free) = self.free.pop() {
            return Ok(free);
        }
        let n = self.slots.len();
        for round in 0..2 {
            for _ in 0..2 * n {
                let i = self.hand;
                self.hand = (self.hand + 1) % n;
                let Some(s) = self.slots.get_mut(i) else { continue };
                if s.used >= self.pinned_since || s.block == EMPTY {
                    continue;
                }
                if s.referenced {
                    s.referenced = false;
                    continue;
                }
                if s.dirty {
                    continue;
                }
                let block = s.block;
                self.detach(block);
                return Ok(i);
            }
            if round == 0 {
                self.flush()?;
            }
        }
        self.grow() // every slot pinned: more room, up to the limit
    }

    fn insert(&mut self, block: u64, slot: usize) {
        if self.map.insert(block, slot).is_none()
            && self.with_view
            && let Err(at) = self.index.binary_search_by_key(&block, |e| e[0])
        {
            self.index.insert(at, [block, slot as u64]);
        }
        if let Some(s) = self.slots.get_mut(slot) {
            *s = Slot { block, ..EMPTY_SLOT };
        }
        self.touch(slot);
    }

    /// Takes `block` out of the cache; its slot, now empty, is the
    /// caller's to fill.
    fn detach(&mut self, block: u64) -> Option<usize> {
        let slot = self.map.remove(&block)?;
        if self.with_view
            && let Ok(at) = self.index.binary_search_by_key(&block, |e| e[0])
        {
            self.index.remove(at);
        }
        let s = self.slots.get_mut(slot)?;
        if s.dirty {
            self.dirty -= 1;
        }
        *s = EMPTY_SLOT;
        Some(slot)
    }

    fn remove(&mut self, block: u64) {
        if let Some(slot) = self.detach(block) {
            self.free.push(slot);
        }
    }

    fn check(&self, block: u64) -> Result<(), Errno> {
        if block >= self.blocks { Err(Errno::EIO) } else { Ok(()) }
    }

    /// Makes sure every block of `blocks` is held, reading the missing
    /// ones (with read-ahead) in runs.
    pub fn load(&mut self, blocks: &[u64]) -> Result<(), Errno> {
        let mut wanted: Vec<u64> = Vec::new();
        for &b in blocks {
            self.check(b)?;
            match self.find(b) {
                Some(slot) => {
                    self.touch(slot);
                }
                None => {
                    wanted.push(b);
                    for ahead in 1..=self.read_ahead {
                        let next = b + ahead;
                        if next >= self.blocks || self.holds(next) {
                            break;
                        }
                        wanted.push(next);
                    }
                }
            }
        }
        wanted.sort_unstable();
        wanted.dedup();
        // Contiguous runs, one device read each (into a bounce buffer).
        let mut i = 0;
        while i < wanted.len() {
            let start = wanted.get(i).copied().unwrap_or(0);
            let mut n = 1;
            while wanted.get(i + n) == Some(&(start + n as u64)) && n < 64 {
                n += 1;
            }
            self.read_run(start, n)?;
            i += n;
        }
        Ok(())
    }

    fn read_run(&mut self, start: u64, n: usize) -> Result<(), Errno> {
        let bs = self.block_size;
        let mut buf = alloc::vec![0u8; n * bs];
        self.disk.read(start * bs as u64 / SECTOR, &mut buf)?;
        for k in 0..n {
            let block = start + k as u64;
            if self.holds(block) {
                continue;
            }
            let slot = self.victim()?;
            let src = buf.get(k * bs..(k + 1) * bs).ok_or(Errno::EIO)?;
            let base = slot * bs;
            self.data.get_mut(base..base + bs).ok_or(Errno::EIO)?.copy_from_slice(src);
            self.insert(block, slot);
        }
        Ok(())
    }

    /// Block `block`'s bytes, read if needed.
    pub fn get(&mut self, block: u64) -> Result<&[u8], Errno> {
        self.load(&[block])?;
        let slot = self.find(block).ok_or(Errno::EIO)?;
        Ok(self.bytes(slot))
    }

    /// Block `block`'s bytes to change (read first unless `whole`: the
    /// caller overwrites all of it); marked dirty.
    pub fn get_mut(&mut self, block: u64, whole: bool) -> Result<&mut [u8], Errno> {
        self.check(block)?;
        let slot = match self.find(block) {
            Some(slot) => slot,
            None if whole => {
                let slot = self.victim()?;
                self.insert(block, slot);
                slot
            }
            None => {
                self.load(&[block])?;
                self.find(block).ok_or(Errno::EIO)?
            }
        };
        self.touch(slot);
        if let Some(s) = self.slots.get_mut(slot)
            && !s.dirty
        {
            s.dirty = true;
            self.dirty += 1;
        }
        Ok(self.bytes_mut(slot))
    }

    /// Forgets `block` (freed: what it held no longer matters).
    pub fn forget(&mut self, block: u64) {
        self.remove(block);
    }

    /// Forgets `block` here and on the disk (which may give its storage
    /// back: the memory store does).
    pub fn discard(&mut self, block: u64) {
        self.remove(block);
        let per = self.block_size as u64 / SECTOR;
        self.disk.discard(block.saturating_mul(per), per);
    }

    /// Writes back when half the cache is dirty.
    pub fn maybe_write_back(&mut self) -> Result<(), Errno> {
        if self.dirty * 2 > self.slots.len() { self.flush() } else { Ok(()) }
    }

    /// Dirty blocks.
    pub fn dirty_blocks(&self) -> usize {
        self.dirty
    }

    /// Writes every dirty block back (not a device flush).
    pub fn flush(&mut self) -> Result<(), Errno> {
        if self.dirty == 0 {
            return Ok(());
        }
        let slots: Vec<usize> = self.map.values().copied().filter(|&s| self.slots.get(s).is_some_and(|s| s.dirty)).collect();
        self.write_back(&slots)
    }

    /// Writes `slots` back, sorted by block, contiguous runs together.
    fn write_back(&mut self, slots: &[usize]) -> Result<(), Errno> {
        let bs = self.block_size;
        let mut order: Vec<(u64, usize)> = slots.iter().filter_map(|&s| self.slots.get(s).map(|x| (x.block, s))).collect();
        order.sort_unstable();
        let mut i = 0;
        while i < order.len() {
            let (start, _) = order.get(i).copied().unwrap_or((0, 0));
            let mut n = 1;
            while order.get(i + n).is_some_and(|&(b, _)| b == start + n as u64) && n < 64 {
                n += 1;
            }
            let mut buf = Vec::with_capacity(n * bs);
            for &(_, slot) in order.get(i..i + n).unwrap_or(&[]) {
                buf.extend_from_slice(self.bytes(slot));
            }
            self.disk.write(start * bs as u64 / SECTOR, &buf)?;
            for &(_, slot) in order.get(i..i + n).unwrap_or(&[]) {
                if let Some(s) = self.slots.get_mut(slot)
                    && s.dirty
                {
                    s.dirty = false;
                    self.dirty -= 1;
                }
            }
            i += n;
        }
        Ok(())
    }
}
