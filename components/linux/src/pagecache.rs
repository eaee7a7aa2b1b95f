//! The page cache: a page of a file is one frame, found here by (file,
//! page index). Every `MAP_SHARED` mapping of the page maps this frame,
//! and a private mapping (a program's segments included) maps it
//! read-only until it writes (then copies it), so processes share a
//! program's and a library's pages; `read(2)` sees what was stored
//! through shared mappings and not yet written back, and `write(2)`
//! updates the frame, so mappings and file calls see the same bytes, as
//! on Linux.
//!
//! The file itself stays the store: pages written through a mapping go
//! back to it on `msync`, `munmap` and exit (see `memory.rs`). A page no
//! mapping holds any more stays cached (the next program run finds its
//! code already in memory, and the emulator's translations of it stay
//! valid) while the file is unchanged, up to [`KEEP_UNMAPPED`] pages and
//! while user memory is not short. Entries hold their file weakly: a
//! deleted file's memory is freed when its last user goes. A file of a
//! file system that makes a new node per lookup (a cell's) is named by
//! its [`Node::cache_id`] instead of its node, so its pages outlive the
//! node and serve the next program that runs it; the file system calls
//! [`forget`] when it frees the inode.

use crate::errno::Errno;
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use framekernel::mm::Frame;
use framekernel::sync::SpinLock;
use tessera_vfs::{Node, NodeRef, Timespec};

const PAGE: u64 = 4096;

/// Most cached pages no mapping holds (16 MiB); past it they all go.
pub const KEEP_UNMAPPED: usize = 4096;

/// What a file looked like when a page was read: a page no mapping holds
/// is used again only while its file still looks so.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The file's size.
    pub size: u64,
    mtime: Timespec,
    ctime: Timespec,
}

impl Stamp {
    /// How `node` looks now (one metadata read: a fault that maps pages
    /// around it asks once for them all).
    pub fn of(node: &NodeRef) -> Self {
        let meta = node.metadata();
        Self { size: meta.size, mtime: meta.mtime, ctime: meta.ctime }
    }
}

struct Entry {
    /// The file (weakly: the cache does not keep a deleted file; while
    /// the entry exists the node's address, the key, is not reused).
    node: Weak<dyn Node>,
    frame: Arc<Frame>,
    stamp: Stamp,
}

impl Entry {
    fn mapped(&self) -> bool {
        Arc::strong_count(&self.frame) > 1
    }

    /// Usable, as the entry of `key`, for a file that looks like `stamp` now.
    fn fresh(&self, key: FileKey, stamp: Stamp) -> bool {
        self.mapped() || (self.stamp == stamp && (lasting(key) || self.node.strong_count() > 0))
    }
}

/// Keyed by the file's [`Node::cache_id`]: the entry stays usable after
/// the node went.
fn lasting(key: FileKey) -> bool {
    key.0 == 1
}

/// Names a file: `(0, node address, 0)`, or `(1, file-system id, inode)`
/// for a file with a [`Node::cache_id`].
type FileKey = (u8, usize, u64);

struct Cache {
    pages: BTreeMap<(FileKey, u64), Entry>,
    /// Entry count at which the next insertion sweeps.
    sweep_at: usize,
}

static CACHE: SpinLock<Cache> = SpinLock::new(Cache { pages: BTreeMap::new(), sweep_at: KEEP_UNMAPPED });

fn node_key(node: &NodeRef) -> FileKey {
    match node.cache_id() {
        Some((fs, ino)) => (1, fs, ino),
        None => (0, Arc::as_ptr(node) as *const () as usize, 0),
    }
}

/// The file system freed inode `ino` (its [`Node::cache_id`] was `(fs,
/// ino)`): its pages no mapping holds go, and the others are never found
/// again (a new file may get the inode number).
pub fn forget(fs: usize, ino: u64) {
    remove_range(((1, fs, ino), 0), ((1, fs, ino), u64::MAX));
}

/// A file system with [`Node::cache_id`]s went (its id is never used
/// again): its pages go.
pub fn forget_fs(fs: usize) {
    remove_range(((1, fs, 0), 0), ((1, fs, u64::MAX), u64::MAX));
}

/// Removes the entries with keys in `first..=last`; their frames go
/// after the lock.
fn remove_range(first: (FileKey, u64), last: (FileKey, u64)) {
    let removed: vec::Vec<Entry> = {
        let mut cache = CACHE.lock();
        let keys: vec::Vec<(FileKey, u64)> = cache.pages.range(first..=last).map(|(&k, _)| k).collect();
        keys.into_iter().filter_map(|k| cache.pages.remove(&k)).collect()
    };
    drop(removed);
}

impl Cache {
    /// Removes entries of deleted files, and every entry no mapping holds
    /// when there are more than [`KEEP_UNMAPPED`] (or `all`). The removed
    /// entries are returned, to be dropped after the lock.
    fn sweep(&mut self, all: bool) -> vec::Vec<Entry> {
        let unmapped = self.pages.values().filter(|e| !e.mapped()).count();
        let drop_unmapped = all || unmapped > KEEP_UNMAPPED;
        let gone: vec::Vec<(FileKey, u64)> = self
            .pages
            .iter()
            .filter(|((file, _), e)| !e.mapped() && (drop_unmapped || (!lasting(*file) && e.node.strong_count() == 0)))
            .map(|(k, _)| *k)
            .collect();
        let removed = gone.iter().filter_map(|k| self.pages.remove(k)).collect();
        self.sweep_at = self.pages.len() + KEEP_UNMAPPED;
        removed
    }
}

/// The frame for page `index` of `node`, read from the file the first time.
pub fn frame(node: &NodeRef, index: u64, stamp: Stamp) -> Result<Arc<Frame>, Errno> {
    let key = (node_key(node), index);
    let stale = {
        let mut cache = CACHE.lock();
        match cache.pages.get(&key) {
            Some(entry) if entry.fresh(key.0, stamp) => return Ok(entry.frame.clone()),
            Some(_) => cache.pages.remove(&key),
            None => None,
        }
    };
    drop(stale);
    let mut data = vec![0u8; PAGE as usize];
    let offset = index.checked_mul(PAGE).ok_or(Errno::EINVAL)?;
    let n = node.read_at(offset, &mut data).unwrap_or(0);
    let mut frame = Frame::alloc().map_err(|_| Errno::ENOMEM)?;
    frame.write_bytes(0, data.get(..n).unwrap_or(&[])).map_err(|_| Errno::EINVAL)?;
    let (found, removed) = {
        let mut cache = CACHE.lock();
        let removed = if cache.pages.len() >= cache.sweep_at { cache.sweep(false) } else { vec::Vec::new() };
        // Filled while unlocked: another mapper may have been first.
        let entry = cache.pages.entry(key).or_insert_with(|| Entry { node: Arc::downgrade(node), frame: Arc::new(frame), stamp });
        (entry.frame.clone(), removed)
    };
    drop(removed);
    Ok(found)
}

/// Up to `N` cached frames for pages `first..first + N` of `node` (those
/// the cache holds and may use, inside the file; `None` for the others):
/// for mapping the pages around a fault without reading the file.
pub fn cached<const N: usize>(node: &NodeRef, first: u64, stamp: Stamp) -> [Option<Arc<Frame>>; N] {
    let key = node_key(node);
    let mut out = [const { None }; N];
    let last = first.saturating_add(N as u64 - 1);
    let cache = CACHE.lock();
    for (&(_, index), entry) in cache.pages.range((key, first)..=(key, last)) {
        if let Some(slot) = out.get_mut((index - first) as usize)
            && entry.fresh(key, stamp)
            && index < stamp.size.div_ceil(PAGE)
        {
            *slot = Some(entry.frame.clone());
        }
    }
    out
}

/// How many mappings hold page `index` of `node` when `frame` (a handle
/// the caller took from one of them) is its page-cache frame; `None` for
/// any other frame (a private copy).
pub fn mappers(node: &NodeRef, index: u64, frame: &Arc<Frame>) -> Option<usize> {
    let cache = CACHE.lock();
    let entry = cache.pages.get(&(node_key(node), index)).filter(|e| Arc::ptr_eq(&e.frame, frame))?;
    // Not counted: the cache's own handle and the caller's.
    Some(Arc::strong_count(&entry.frame).saturating_sub(2))
}

/// Drops every entry no mapping holds (`umount`, and when user memory
/// runs short).
pub fn release_unmapped() {
    let removed = CACHE.lock().sweep(true);
    // The frames go after the lock is released.
    drop(removed);
}

/// Calls `f(frame, offset in the frame, range of the file bytes)` for every
/// cached page of `node` that overlaps `[offset, offset + len)`: every one
/// (`all`) or only those a mapping holds.
fn overlapping(node: &NodeRef, offset: u64, len: usize, all: bool, mut f: impl FnMut(&Frame, usize, core::ops::Range<usize>)) {
    if len == 0 {
        return;
    }
    let Some(end) = offset.checked_add(len as u64) else { return };
    let key = node_key(node);
    let cache = CACHE.lock();
    for (&(_, index), entry) in cache.pages.range((key, offset / PAGE)..=(key, (end - 1) / PAGE)) {
        if !entry.mapped() && !all {
            continue;
        }
        let page_start = index * PAGE;
        let from = offset.max(page_start);
        let to = end.min(page_start + PAGE);
        f(&entry.frame, (from - page_start) as usize, (from - offset) as usize..(to - offset) as usize);
    }
}

/// After `node.read_at(offset)` filled `buf`: the cached pages' bytes
/// replace the file's (they may hold stores not yet written back).
pub fn read(node: &NodeRef, offset: u64, buf: &mut [u8]) {
    let len = buf.len();
    // Only mapped pages can hold stores the file does not have yet.
    overlapping(node, offset, len, false, |frame, at, range| {
        if let Some(part) = buf.get_mut(range) {
            let _ = frame.read_bytes(at, part);
        }
    });
}

/// After `node.write_at(offset, data)`: the cached pages show the data too.
pub fn wrote(node: &NodeRef, offset: u64, data: &[u8]) {
    overlapping(node, offset, data.len(), true, |frame, at, range| {
        if let Some(part) = data.get(range) {
            let _ = frame.write_shared(at, part);
        }
    });
}

/// After the file was truncated to `size`: cached bytes past the end read
/// as zero (as Linux zeroes the tail of the last page).
pub fn truncated(node: &NodeRef, size: u64) {
    let zeros = [0u8; PAGE as usize];
    overlapping(node, size, (u64::MAX - size).min(1 << 40) as usize, true, |frame, at, range| {
        let _ = frame.write_shared(at, zeros.get(..range.len()).unwrap_or(&[]));
    });
}
