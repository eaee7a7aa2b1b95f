//! The page cache: while any mapping shows a page of a file, that page is
//! one frame, found here by (file, page index). Every `MAP_SHARED` mapping
//! of the page maps this frame, and a private mapping maps it read-only
//! until it writes (then copies it), so processes share a library's pages;
//! `read(2)` sees what was stored through shared mappings and not yet
//! written back, and `write(2)` updates the frame, so mappings and file
//! calls see the same bytes, as on Linux.
//!
//! The file itself stays the store: pages written through a mapping go
//! back to it on `msync`, `munmap` and exit (see `memory.rs`). An entry
//! whose frame no mapping holds any more is dropped on the next insertion
//! (its written pages were already written back when they were unmapped).

use crate::errno::Errno;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use framekernel::mm::Frame;
use framekernel::sync::SpinLock;
use tessera_vfs::NodeRef;

const PAGE: u64 = 4096;

struct Entry {
    /// Keeps the node (so its address, the key, is not reused).
    _node: NodeRef,
    frame: Arc<Frame>,
}

static CACHE: SpinLock<BTreeMap<(usize, u64), Entry>> = SpinLock::new(BTreeMap::new());

fn node_key(node: &NodeRef) -> usize {
    Arc::as_ptr(node) as *const () as usize
}

/// The frame for page `index` of `node`, read from the file the first time.
pub fn frame(node: &NodeRef, index: u64) -> Result<Arc<Frame>, Errno> {
    let key = (node_key(node), index);
    if let Some(entry) = CACHE.lock().get(&key) {
        return Ok(entry.frame.clone());
    }
    let mut data = vec![0u8; PAGE as usize];
    let offset = index.checked_mul(PAGE).ok_or(Errno::EINVAL)?;
    let n = node.read_at(offset, &mut data).unwrap_or(0);
    let mut frame = Frame::alloc().map_err(|_| Errno::ENOMEM)?;
    frame.write_bytes(0, data.get(..n).unwrap_or(&[])).map_err(|_| Errno::EINVAL)?;
    let mut cache = CACHE.lock();
    cache.retain(|_, e| Arc::strong_count(&e.frame) > 1);
    // Filled while unlocked: another mapper may have been first.
    let entry = cache.entry(key).or_insert_with(|| Entry { _node: node.clone(), frame: Arc::new(frame) });
    Ok(entry.frame.clone())
}

/// Drops every entry no mapping holds (`umount` asks first, so a file
/// once mapped does not keep its file system busy).
pub fn release_unmapped() {
    let unused: alloc::vec::Vec<Entry> = {
        let mut cache = CACHE.lock();
        let keys: alloc::vec::Vec<(usize, u64)> = cache.iter().filter(|(_, e)| Arc::strong_count(&e.frame) == 1).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| cache.remove(k)).collect()
    };
    // The nodes go after the lock is released.
    drop(unused);
}

/// Calls `f(frame, offset in the frame, range of the file bytes)` for every
/// cached page of `node` that overlaps `[offset, offset + len)`.
fn overlapping(node: &NodeRef, offset: u64, len: usize, mut f: impl FnMut(&Frame, usize, core::ops::Range<usize>)) {
    if len == 0 {
        return;
    }
    let Some(end) = offset.checked_add(len as u64) else { return };
    let key = node_key(node);
    let cache = CACHE.lock();
    for (&(_, index), entry) in cache.range((key, offset / PAGE)..=(key, (end - 1) / PAGE)) {
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
    overlapping(node, offset, len, |frame, at, range| {
        if let Some(part) = buf.get_mut(range) {
            let _ = frame.read_bytes(at, part);
        }
    });
}

/// After `node.write_at(offset, data)`: the cached pages show the data too.
pub fn wrote(node: &NodeRef, offset: u64, data: &[u8]) {
    overlapping(node, offset, data.len(), |frame, at, range| {
        if let Some(part) = data.get(range) {
            let _ = frame.write_shared(at, part);
        }
    });
}

/// After the file was truncated to `size`: cached bytes past the end read
/// as zero (as Linux zeroes the tail of the last page).
pub fn truncated(node: &NodeRef, size: u64) {
    let zeros = [0u8; PAGE as usize];
    overlapping(node, size, (u64::MAX - size).min(1 << 40) as usize, |frame, at, range| {
        let _ = frame.write_shared(at, zeros.get(..range.len()).unwrap_or(&[]));
    });
}
