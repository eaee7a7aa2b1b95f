//! Disk file systems served by cells (`tessera_cell_api::fs`): the
//! kernel side. A mount holds the disk's block caches, one for metadata
//! (shown whole to the cell at every call) and one for file data (which
//! never passes through the cell), and turns VFS node operations into
//! requests. A request runs in rounds: the cell asks for blocks it lacks,
//! the kernel reads them and calls again; when the cell is done, the
//! blocks it changed go into the metadata cache. A cell that faults or
//! answers nonsense leaves the caches as they were: the operation fails
//! with EIO and the file system stays consistent and writable.
//!
//! One operation at a time per mount (a sleeping lock: a caller may wait
//! for the disk or for the cell's slot during a swap).

use crate::bcache::BlockCache;
use crate::block::BlockBackend;
use crate::errno::Errno;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel::sync::{Mutex, SpinLock};
use tessera_cell_api::fs::{Attr, Done, Entries, Export, FRESH, FsErr, Info, Outcome, Request, SetAttr, Time};
use tessera_live_update::Slot;
use tessera_vfs::{DirEntry, FileType, FsError, FsStats, Metadata, Node, NodeRef, Timespec};

/// A file-system cell's slot.
pub type FsSlot = Slot<Export>;

/// Registered file-system types: name and slot.
static TYPES: SpinLock<Vec<(String, Arc<FsSlot>)>> = SpinLock::new(Vec::new());
/// The cell serving the in-memory file systems (`tmpfs`).
static MEMORY: SpinLock<Option<Arc<FsSlot>>> = SpinLock::new(None);
/// Mounted cell file systems.
static MOUNTED: SpinLock<Vec<Arc<CellFs>>> = SpinLock::new(Vec::new());

/// Bytes of metadata and data cache per disk mount.
const DISK_CACHES: (usize, usize) = (4 << 20, 16 << 20);
/// The same per in-memory mount: the store below is memory too, so the
/// caches only need to hold what one request uses.
const MEMORY_CACHES: (usize, usize) = (256 << 10, 256 << 10);
/// The metadata cache of any mount grows up to this when one request
/// needs more blocks at once (a directory of 100,000 names in 4 KiB
/// blocks of ext2 or tmpfs takes 25 MiB).
const META_LIMIT: usize = 64 << 20;
/// Blocks of the memory store (see `memstore`).
const MEMORY_BLOCKS: u64 = 1 << 52;
/// Rounds a request may take before the cell is judged to loop.
const MAX_ROUNDS: usize = 4096;
/// Blocks a file operation maps per request.
const MAP_CHUNK: u64 = 256;

/// Makes file-system type `name` (`ext2`) available to `mount`.
pub fn register(name: &str, slot: Arc<FsSlot>) {
    let mut types = TYPES.lock();
    types.retain(|(n, _)| n != name);
    types.push((name.into(), slot));
}

/// The registered types (`/proc/filesystems`).
pub fn type_names() -> Vec<String> {
    TYPES.lock().iter().map(|(n, _)| n.clone()).collect()
}

/// Makes the in-memory file systems (`tmpfs`, `devtmpfs`, `sysfs`)
/// cell-served: `slot` holds the `tmpfs` cell.
pub fn register_memory(slot: Arc<FsSlot>) {
    *MEMORY.lock() = Some(slot);
}

/// True when a cell serves the in-memory file systems.
pub fn memory_served() -> bool {
    MEMORY.lock().is_some()
}

/// True when mounts of type `fstype` may be served by a cell (a disk type,
/// or an in-memory one while the tmpfs cell is there).
pub fn may_serve(fstype: &str) -> bool {
    TYPES.lock().iter().any(|(n, _)| n == fstype) || (memory_served() && matches!(fstype, "tmpfs" | "devtmpfs" | "sysfs"))
}

const SYSFS_MAGIC: u64 = 0x6265_6572;

/// `statfs`'s `f_type` of file-system type `fstype`, as Linux's.
fn magic_of(fstype: &str) -> u64 {
    match fstype {
        "tmpfs" | "devtmpfs" | "ramfs" => 0x0102_1994,
        "sysfs" => SYSFS_MAGIC,
        _ => 0xef53,
    }
}

/// Mounts a new, empty in-memory file system of type `fstype` (`tmpfs`,
/// `devtmpfs`, `sysfs`) with the file system's own `options`
/// (`size=`, `nr_inodes=`, `mode=`, `uid=`, `gid=`).
/// (A read-only mount is the mount table's to enforce: the store is made
/// writable, to be filled.)
pub fn mount_memory(fstype: &str, options: &str) -> Result<NodeRef, Errno> {
    let slot = MEMORY.lock().clone().ok_or(Errno::ENODEV)?;
    let dev = tessera_vfs::tmpfs::new_anonymous_dev();
    let memory = framekernel::mm::frame_stats().total * 4096;
    let options = alloc::format!("memory={memory},{options}");
    mount_as(fstype, Arc::new(crate::memstore::MemStore::new()), dev, fstype, slot, false, &options)
}

fn slot_of(name: &str) -> Option<Arc<FsSlot>> {
    TYPES.lock().iter().find(|(n, _)| n == name).map(|(_, s)| s.clone())
}

fn now() -> Time {
    let t = crate::fs::now();
    Time { sec: t.sec, nsec: t.nsec }
}

fn fs_errno(e: FsErr) -> FsError {
    match e {
        FsErr::NotFound => FsError::NotFound,
        FsErr::Exists => FsError::Exists,
        FsErr::NotDir => FsError::NotDir,
        FsErr::IsDir => FsError::IsDir,
        FsErr::NotEmpty => FsError::NotEmpty,
        FsErr::NoSpace => FsError::NoSpace,
        FsErr::NameTooLong => FsError::NameTooLong,
        FsErr::Invalid | FsErr::NotSupported => FsError::Invalid,
        FsErr::TooBig => FsError::TooBig,
        FsErr::TooManyLinks => FsError::TooManyLinks,
        FsErr::ReadOnly => FsError::ReadOnly,
        FsErr::Corrupt => FsError::Corrupt,
    }
}

fn io(e: Errno) -> FsError {
    log::debug!("cellfs: {e:?}");
    FsError::Io
}

/// The caches of one mount.
struct State {
    meta: BlockCache,
    data: BlockCache,
    /// Complete listings of directories (name → inode), read once with
    /// `ReadDir` and kept up to date by this mount's own changes, so a
    /// lookup (a hit, or a miss before a create) is no scan of the
    /// directory on disk. At most [`DIR_CACHE_NAMES`] names in all.
    dirs: BTreeMap<u64, BTreeMap<String, u64>>,
    dir_names: usize,
}

/// Names the directory listings of one mount may hold.
const DIR_CACHE_NAMES: usize = 200_000;

impl State {
    /// Keeps the directory listings true after `request` answered `result`.
    fn note_entries(&mut self, request: &Request, result: &Result<Done, FsError>) {
        let (dir, change) = match (request, result) {
            (Request::Create { dir, name, .. } | Request::Symlink { dir, name, .. }, Ok(Done::Attr(a))) => (*dir, Some((name, Some(a.ino)))),
            (Request::Link { dir, name, ino, .. }, Ok(done)) => {
                if let Done::Maybe(Some(v)) = done
                    && v.nlink == 0
                    && v.mode & 0o170000 == 0o040000
                {
                    self.forget_dir(v.ino);
                }
                (*dir, Some((name, Some(*ino))))
            }
            (Request::Unlink { dir, name, .. }, Ok(Done::Attr(a))) => {
                if a.nlink == 0 && a.mode & 0o170000 == 0o040000 {
                    self.forget_dir(a.ino);
                }
                (*dir, Some((name, None)))
            }
            (Request::Create { dir, .. } | Request::Symlink { dir, .. } | Request::Link { dir, .. } | Request::Unlink { dir, .. }, Err(_)) => (*dir, None),
            (Request::Exchange { a_dir, b_dir, .. }, _) => {
                self.forget_dir(*a_dir);
                self.forget_dir(*b_dir);
                return;
            }
            (Request::Mount { .. } | Request::Unmount { .. }, _) => {
                self.dirs.clear();
                self.dir_names = 0;
                return;
            }
            _ => return,
        };
        match change {
            Some((name, ino)) => {
                if let Some(listing) = self.dirs.get_mut(&dir) {
                    let had = match ino {
                        Some(ino) => listing.insert(name.clone(), ino).is_some(),
                        None => listing.remove(name.as_str()).is_some(),
                    };
                    match (had, ino.is_some()) {
                        (false, true) => self.dir_names += 1,
                        (true, false) => self.dir_names = self.dir_names.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            // A failed change: the listing is read again when next needed.
            None => self.forget_dir(dir),
        }
    }

    fn forget_dir(&mut self, dir: u64) {
        if let Some(listing) = self.dirs.remove(&dir) {
            self.dir_names = self.dir_names.saturating_sub(listing.len());
        }
    }
}

/// A mounted disk file system.
pub struct CellFs {
    source: String,
    slot: Arc<FsSlot>,
    disk: Arc<dyn BlockBackend>,
    /// `st_dev` of its files: the disk's device number.
    dev: u64,
    block_size: u32,
    blocks: u64,
    /// `statfs`'s `f_type`.
    magic: u64,
    /// In memory (the tmpfs cell over a memory store).
    memory: bool,
    /// Extended attributes of the inodes of an in-memory mount, kept by
    /// the kernel as Linux's tmpfs keeps them (in memory, per inode).
    xattrs: Mutex<BTreeMap<u64, Arc<spin::Mutex<tessera_vfs::Xattrs>>>>,
    root: u64,
    read_only: bool,
    state: spin::Mutex<State>,
    /// Attributes answered since the inode last changed. Changed only by
    /// the holder of `state` (a change removes the inode's entry before
    /// its request runs), read without it: `stat` of a file whose
    /// attributes are known takes this lock alone.
    attrs: Mutex<BTreeMap<u64, Attr>>,
    waiters: tessera_sched::WaitQueue,
    nodes: Mutex<BTreeMap<u64, Weak<CellNode>>>,
    /// The nodes made last, kept alive so that a path walked again finds
    /// its nodes (a walk would otherwise make and free one per name).
    recent: Mutex<Recent>,
    /// Inodes without names whose last user went: freed at the next
    /// operation.
    orphans: Mutex<Vec<u64>>,
    /// Set while `orphans` is not empty (changed under its lock), so that
    /// an operation with none to free does not take the lock.
    has_orphans: AtomicBool,
    gone: AtomicBool,
    /// Whole-file copies (`Node::snapshot`: the kernel's whole-file reads,
    /// `fs::read_file`, such as a cell file loaded again) still in use, by
    /// inode: the next read of an unchanged file shares the copy, instead
    /// of reading it again.
    snapshots: Mutex<BTreeMap<u64, Weak<Vec<u8>>>>,
    /// Counts changes to file contents (a copy made while one happened is
    /// not kept).
    changes: AtomicU64,
    /// Names this mount in the page cache ([`Node::cache_id`]): never
    /// given to another mount, unlike the mount's address, which the next
    /// mount may get once this one is freed (its pages would then serve
    /// that mount's files of the same inode number, size and times).
    cache_id: usize,
}

/// Nodes a mount keeps alive after their last user: the last [`KEPT`] made.
#[derive(Default)]
struct Recent {
    nodes: [Option<Arc<CellNode>>; KEPT],
    /// The slot the next node takes (the oldest).
    next: usize,
    /// Set while the mount is listed (a node kept after its unmount would
    /// keep the mount, which its nodes hold, forever).
    open: bool,
}

/// Nodes a mount keeps made ([`Recent`]).
const KEPT: usize = 16;

impl Recent {
    /// Keeps `node`; returns the one it pushes out, for the caller to drop
    /// once it holds no lock of the mount.
    fn keep(&mut self, node: &Arc<CellNode>) -> Option<Arc<CellNode>> {
        if !self.open {
            return None;
        }
        let at = self.next % KEPT;
        self.next = (at + 1) % KEPT;
        self.nodes.get_mut(at).and_then(|slot| slot.replace(node.clone()))
    }

    /// Gives up the kept node of inode `ino` (to be dropped by the caller
    /// once it holds no lock of the mount).
    fn take(&mut self, ino: u64) -> Option<Arc<CellNode>> {
        self.nodes.iter_mut().find(|n| n.as_ref().is_some_and(|n| n.ino == ino)).and_then(Option::take)
    }
}

/// The next mount's [`CellFs::cache_id`].
static NEXT_CACHE_ID: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);

impl Drop for CellFs {
    fn drop(&mut self) {
        // No node of it is left (each holds the mount), so no mapping
        // holds its pages: they can never be found again.
        crate::pagecache::forget_fs(self.cache_id);
    }
}

/// Holds a mount's state; wakes the next waiter when dropped.
struct Held<'a> {
    fs: &'a CellFs,
    guard: Option<spin::MutexGuard<'a, State>>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.fs.waiters.wake_all();
    }
}

impl core::ops::Deref for Held<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.guard.as_deref().unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

impl core::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!("held until dropped"))
    }
}

fn mutating(r: &Request) -> bool {
    if let Request::Mount { write, .. } = r {
        return *write;
    }
    !matches!(r, Request::Probe | Request::Statfs | Request::Stat { .. } | Request::Lookup { .. } | Request::ReadDir { .. } | Request::Map { .. } | Request::ReadLink { .. })
}

/// Entries a kernel can take: three lists of one length, the names as
/// [`listing_ok`] wants them.
fn entries_ok(e: &tessera_cell_api::fs::Entries) -> bool {
    e.kinds.len() == e.inos.len() && listing_ok(&e.names, e.inos.len())
}

/// A cell's listing of `n` entries whose names are `names`, each ended by
/// NUL: at most a million, exactly `n` names, each a name a directory
/// can hold (1..=255 bytes, no `/`, not `.` or `..`, which the kernel
/// adds itself) and none twice (any cell's: file systems and procfs).
pub(crate) fn listing_ok(names: &str, n: usize) -> bool {
    if n > 1 << 20 || names.bytes().filter(|&b| b == 0).count() != n || names.ends_with('\0') != (n > 0) {
        return false;
    }
    let mut seen = alloc::collections::BTreeSet::new();
    names.split_terminator('\0').all(|name| {
        (1..=255).contains(&name.len()) && !name.contains('/') && name != "." && name != ".." && seen.insert(name)
    })
}

/// The inodes whose attributes `request` may change (`None`: any).
fn touched(request: &Request) -> Option<[Option<u64>; 2]> {
    Some(match request {
        Request::Create { dir, .. } | Request::Symlink { dir, .. } => [Some(*dir), None],
        // A replaced inode comes back in the answer; a moved directory's
        // old parent is changed by the `Unlink` that follows.
        Request::Link { dir, ino, .. } => [Some(*dir), Some(*ino)],
        // The removed entry's inode is in the answer.
        Request::Unlink { dir, .. } => [Some(*dir), None],
        Request::Release { ino, .. } | Request::SetAttr { ino, .. } | Request::Truncate { ino, .. } | Request::Write { ino, .. } => [Some(*ino), None],
        _ => return None,
    })
}

/// Runs `request` against `cache` through `slot` until it is done
/// (see the module's documentation); applies the cell's changes.
fn run(slot: &FsSlot, cache: &mut BlockCache, mut data: Option<&mut BlockCache>, fs_blocks: u64, request: &Request) -> Result<Done, FsError> {
    let bs = cache.block_size();
    let idempotent = !mutating(request);
    cache.pin();
    let result = (|| {
        for _ in 0..MAX_ROUNDS {
            let reply = {
                let (index, bytes) = cache.view();
                slot.call(idempotent, |cell| cell.call((request.clone(), bs as u32, index, bytes), |fs, (r, b, i, d)| fs.serve(r, b, i, d)))
            };
            let reply = reply.map_err(|e| {
                log::warn!("file-system cell: {e}");
                FsError::Io
            })?;
            match reply.outcome {
                Outcome::Need(blocks) => {
                    // Asking again for what it holds, or for nothing, or
                    // past the file system: the cell is not making progress.
                    if blocks.is_empty() || blocks.len() > cache.max_capacity() / 2 || blocks.iter().any(|&b| b >= fs_blocks || cache.holds(b)) {
                        log::warn!("file-system cell: bad request for blocks {:?}", blocks.get(..4));
                        return Err(FsError::Io);
                    }
                    cache.load(&blocks).map_err(io)?;
                }
                Outcome::Failed(e) => return Err(fs_errno(e)),
                Outcome::Done(done) => {
                    if reply.written.len() != reply.writes.len() * bs || reply.writes.iter().chain(&reply.freed).any(|&b| b >= fs_blocks) {
                        log::warn!("file-system cell: malformed answer");
                        return Err(FsError::Io);
                    }
                    // All or nothing: an answer the cache cannot take
                    // whole is refused before any of it is applied, and
                    // the operation's blocks are no longer pinned, so
                    // making room can only write back earlier changes.
                    if reply.writes.len() > cache.max_capacity() / 2 {
                        log::warn!("file-system cell: an answer of {} blocks is more than the cache takes", reply.writes.len());
                        return Err(FsError::Io);
                    }
                    cache.unpin();
                    for (i, &b) in reply.writes.iter().enumerate() {
                        let src = reply.written.get(i * bs..(i + 1) * bs).ok_or(FsError::Io)?;
                        cache.get_mut(b, true).map_err(io)?.copy_from_slice(src);
                        if let Some(d) = data.as_deref_mut() {
                            d.forget(b);
                        }
                    }
                    for &b in &reply.freed {
                        cache.discard(b);
                        if let Some(d) = data.as_deref_mut() {
                            d.forget(b);
                        }
                    }
                    return Ok(done);
                }
            }
        }
        log::warn!("file-system cell: no answer after {MAX_ROUNDS} rounds");
        Err(FsError::Io)
    })();
    cache.unpin();
    result
}

/// Mounts the disk at `source` (a block device node) with file-system
/// type `fstype` (`None`: whichever registered type recognises it).
pub fn mount(source: &str, disk: Arc<dyn BlockBackend>, dev: u64, fstype: Option<&str>, read_only: bool) -> Result<(NodeRef, String), Errno> {
    if MOUNTED.lock().iter().any(|m| m.dev == dev) {
        return Err(Errno::EBUSY);
    }
    let candidates: Vec<(String, Arc<FsSlot>)> = match fstype {
        Some(name) => alloc::vec![(name.into(), slot_of(name).ok_or(Errno::ENODEV)?)],
        None => TYPES.lock().clone(),
    };
    let mut last = Errno::EINVAL;
    for (name, slot) in candidates {
        match mount_as(source, disk.clone(), dev, &name, slot, read_only, "") {
            Ok(root) => return Ok((root, name)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn mount_as(source: &str, disk: Arc<dyn BlockBackend>, dev: u64, fstype: &str, slot: Arc<FsSlot>, read_only: bool, options: &str) -> Result<NodeRef, Errno> {
    let memory = options.starts_with("memory=");
    // The superblock, read in 1 KiB blocks.
    let mut probe = BlockCache::new(disk.clone(), 1024, 64 * 1024, 0, true)?;
    let disk_blocks = probe.disk_blocks();
    let info = match run(&slot, &mut probe, None, disk_blocks, &Request::Probe) {
        Ok(Done::Info(info)) => info,
        Ok(_) => return Err(Errno::EIO),
        Err(FsError::Io) => return Err(Errno::EIO),
        Err(_) => return Err(Errno::EINVAL), // not this type, or unsupported features
    };
    let bs = info.block_size as usize;
    let disk_bytes = disk.sectors()?.saturating_mul(crate::block::SECTOR);
    if !memory && info.blocks.saturating_mul(bs as u64) > disk_bytes {
        log::warn!("{source}: {fstype} of {} blocks of {bs} bytes is larger than the device ({disk_bytes} bytes)", info.blocks);
        return Err(Errno::EINVAL);
    }
    let read_only = read_only || info.read_only;
    let (meta_bytes, data_bytes) = if memory { MEMORY_CACHES } else { DISK_CACHES };
    let meta = BlockCache::new(disk.clone(), bs, meta_bytes, if memory { 0 } else { 8 }, true)?.with_growth(META_LIMIT);
    let data = BlockCache::new(disk.clone(), bs, data_bytes, if memory { 0 } else { (128 * 1024 / bs) as u64 }, false)?;
    let fs = Arc::new(CellFs {
        source: source.into(),
        slot,
        disk,
        dev,
        block_size: info.block_size,
        blocks: if memory { MEMORY_BLOCKS } else { info.blocks },
        magic: magic_of(fstype),
        memory,
        xattrs: Mutex::new(BTreeMap::new()),
        root: info.root,
        read_only,
        state: spin::Mutex::new(State { meta, data, dirs: BTreeMap::new(), dir_names: 0 }),
        attrs: Mutex::new(BTreeMap::new()),
        waiters: tessera_sched::WaitQueue::new(),
        nodes: Mutex::new(BTreeMap::new()),
        recent: Mutex::new(Recent::default()),
        orphans: Mutex::new(Vec::new()),
        has_orphans: AtomicBool::new(false),
        gone: AtomicBool::new(false),
        snapshots: Mutex::new(BTreeMap::new()),
        changes: AtomicU64::new(0),
        cache_id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
    });
    fs.request(Request::Mount { write: !read_only, now: now(), options: options.into() })?;
    let root = fs.stat(info.root)?;
    if root.mode & 0o170000 != 0o040000 {
        return Err(Errno::EUCLEAN);
    }
    let node = fs.node_for(&root);
    MOUNTED.lock().push(fs.clone());
    // Listed: its nodes may be kept (unmount lets them go).
    fs.recent.lock().open = true;
    start_writeback();
    if !memory {
        log::info!("{source}: {fstype} mounted ({} blocks of {bs} bytes{})", info.blocks, if read_only { ", read-only" } else { "" });
    }
    Ok(node)
}

/// The mounted cell file system whose files have device number `dev`.
pub fn mounted(dev: u64) -> Option<Arc<CellFs>> {
    MOUNTED.lock().iter().find(|m| m.dev == dev).cloned()
}

/// Seconds between periodic write-backs.
pub const WRITEBACK_SECONDS: u64 = 5;

/// Starts the task that writes what mounted file systems hold dirty back
/// every [`WRITEBACK_SECONDS`] (Linux's flusher threads wake every 5 s),
/// so at most that much work is lost if the machine stops unsynced.
fn start_writeback() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::Relaxed) {
        return;
    }
    let spawned = tessera_sched::spawn("writeback", || {
        loop {
            crate::syscall::proc::kernel_sleep(WRITEBACK_SECONDS * 1_000_000_000);
            let all = MOUNTED.lock().clone();
            for fs in all {
                if fs.dirty()
                    && let Err(e) = fs.sync()
                {
                    log::warn!("{}: write-back failed: {e:?}", fs.source);
                }
            }
        }
    });
    if spawned.is_err() {
        STARTED.store(false, Ordering::Relaxed);
        log::warn!("cellfs: no write-back task (out of memory): data is written on sync and unmount only");
    }
}

/// The mounted cell file system whose root directory is `root`.
pub fn mounted_root(root: &NodeRef) -> Option<Arc<CellFs>> {
    let (dev, ino) = root.fs_node_id();
    mounted(dev).filter(|fs| fs.root == ino)
}

/// Writes every mounted cell file system's changes to its disk.
pub fn sync_all() {
    let all = MOUNTED.lock().clone();
    for fs in all {
        if let Err(e) = fs.sync() {
            log::warn!("{}: sync failed: {e:?}", fs.source);
        }
    }
}

impl CellFs {
    fn lock(&self) -> Held<'_> {
        let guard = self.waiters.wait_until(|| self.state.try_lock());
        Held { fs: self, guard: Some(guard) }
    }

    /// Runs `request`, then frees the inodes whose last user went.
    fn with_state<R>(&self, f: impl FnOnce(&CellFs, &mut State) -> Result<R, FsError>) -> Result<R, FsError> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(FsError::Io);
        }
        let mut held = self.lock();
        let result = f(self, &mut held);
        self.release_orphans(&mut held);
        if let Err(e) = held.meta.maybe_write_back().and_then(|()| held.data.maybe_write_back()) {
            log::warn!("{}: write-back failed: {e:?}", self.source);
        }
        result
    }

    fn release_orphans(&self, st: &mut State) {
        // (An orphan pushed right after this look is freed at the next
        // operation, as one pushed right after the take below is.)
        if !self.has_orphans.load(Ordering::Acquire) {
            return;
        }
        let orphans = {
            let mut listed = self.orphans.lock();
            self.has_orphans.store(false, Ordering::Release);
            core::mem::take(&mut *listed)
        };
        for ino in orphans {
            self.contents_change(ino);
            crate::pagecache::forget(self.cache_id, ino);
            if let Err(e) = self.run_in(st, &Request::Release { ino, now: now() }) {
                log::warn!("{}: inode {ino} not freed: {e:?}", self.source);
            }
            self.drop_xattrs(ino);
        }
    }

    fn run_in(&self, st: &mut State, request: &Request) -> Result<Done, FsError> {
        if mutating(request) {
            if self.read_only {
                return Err(FsError::ReadOnly);
            }
            // The inodes a request may change; any other's cached
            // attributes stay true.
            match touched(request) {
                Some(inodes) => {
                    let mut attrs = self.attrs.lock();
                    for ino in inodes.into_iter().flatten() {
                        attrs.remove(&ino);
                    }
                }
                None => self.attrs.lock().clear(),
            }
        }
        let result = run(&self.slot, &mut st.meta, Some(&mut st.data), self.blocks, request);
        st.note_entries(request, &result);
        match &result {
            Ok(Done::Attr(a) | Done::Blocks(a, _) | Done::Maybe(Some(a))) => {
                self.attrs.lock().insert(a.ino, *a);
            }
            Ok(_) => {}
            // A failed change may have been half-understood: forget all.
            Err(_) if mutating(request) => self.attrs.lock().clear(),
            Err(_) => {}
        }
        result
    }

    /// Reads directory `dir`'s entries, checked, and keeps its listing
    /// for lookups.
    fn read_dir(&self, st: &mut State, dir: u64) -> Result<Entries, FsError> {
        let Done::Entries(e) = self.run_in(st, &Request::ReadDir { dir })? else { return Err(FsError::Io) };
        if !entries_ok(&e) {
            return Err(FsError::Io);
        }
        st.forget_dir(dir);
        if st.dir_names + e.inos.len() > DIR_CACHE_NAMES {
            st.dirs.clear();
            st.dir_names = 0;
        }
        let listing: BTreeMap<String, u64> = e.names.split('\0').zip(e.inos.iter().copied()).map(|(n, i)| (String::from(n), i)).collect();
        st.dir_names += listing.len();
        st.dirs.insert(dir, listing);
        Ok(e)
    }

    fn request(&self, request: Request) -> Result<Done, FsError> {
        self.with_state(|fs, st| fs.run_in(st, &request))
    }

    fn attr_of(&self, request: Request) -> Result<Attr, FsError> {
        match self.request(request)? {
            Done::Attr(a) => Ok(a),
            _ => Err(FsError::Io),
        }
    }

    fn stat(&self, ino: u64) -> Result<Attr, FsError> {
        if self.gone.load(Ordering::Relaxed) {
            return Err(FsError::Io);
        }
        if let Some(a) = self.attrs.lock().get(&ino).copied() {
            return Ok(a);
        }
        self.with_state(|fs, st| {
            if let Some(a) = fs.attrs.lock().get(&ino).copied() {
                return Ok(a);
            }
            match fs.run_in(st, &Request::Stat { ino })? {
                Done::Attr(a) => Ok(a),
                _ => Err(FsError::Io),
            }
        })
    }

    /// The node for inode `attr.ino` (one per inode while it is used).
    fn node_for(self: &Arc<Self>, attr: &Attr) -> Arc<CellNode> {
        let node = {
            let mut nodes = self.nodes.lock();
            if let Some(node) = nodes.get(&attr.ino).and_then(Weak::upgrade) {
                return node;
            }
            let node = Arc::new(CellNode {
                fs: self.clone(),
                ino: attr.ino,
                kind: kind_of(attr.mode),
                orphan: AtomicBool::new(false),
                xattrs: spin::Once::new(),
            });
            nodes.insert(attr.ino, Arc::downgrade(&node));
            node
        };
        // Dropped outside the lock (a node's drop takes the mount's locks).
        let pushed_out = self.recent.lock().keep(&node);
        drop(pushed_out);
        node
    }

    /// Lets go of the kept reference to inode `ino`'s node, if any (it has
    /// no name left: its last user frees it).
    fn unkeep(&self, ino: u64) {
        let kept = self.recent.lock().take(ino);
        drop(kept);
    }

    /// The contents of inode `ino` change (or it is freed): a copy made
    /// before is not handed out again.
    fn contents_change(&self, ino: u64) {
        self.changes.fetch_add(1, Ordering::Relaxed);
        self.snapshots.lock().remove(&ino);
    }

    /// True for an in-memory mount (the tmpfs cell).
    pub fn in_memory(&self) -> bool {
        self.memory
    }

    /// Forgets inode `ino`'s extended attributes (it was freed), giving
    /// back what they counted against the tmpfs limit.
    fn drop_xattrs(&self, ino: u64) {
        if let Some(x) = self.xattrs.lock().remove(&ino) {
            let bytes: usize = x.lock().iter().map(|(k, v)| k.len() + v.len()).sum();
            let _ = tessera_vfs::tmpfs::charge_xattrs(-(bytes as i64));
        }
    }

    /// Writes everything held back and flushes the disk.
    pub fn sync(&self) -> Result<(), FsError> {
        self.with_state(|fs, st| {
            st.meta.flush().map_err(io)?;
            st.data.flush().map_err(io)?;
            fs.disk.flush().map_err(io)
        })
    }

    /// True when either cache holds blocks not yet written.
    fn dirty(&self) -> bool {
        match self.state.try_lock() {
            Some(st) => st.meta.dirty_blocks() + st.data.dirty_blocks() > 0,
            None => true, // in use: ask again through `sync`
        }
    }

    /// True while files of it are in use: any node but the root, or the
    /// root by anyone but the mount table (a working directory, an open
    /// directory).
    pub fn busy(&self) -> bool {
        let kept: Vec<u64> = self.recent.lock().nodes.iter().flatten().map(|n| n.ino).collect();
        self.nodes.lock().iter().any(|(&ino, n)| {
            let users = n.strong_count().saturating_sub(kept.iter().filter(|&&k| k == ino).count());
            if ino == self.root { users > 1 } else { users > 0 }
        })
    }

    /// Ends the mount: frees orphans, marks the file system clean,
    /// writes everything back.
    pub fn unmount(&self) -> Result<(), FsError> {
        if !self.read_only {
            self.request(Request::Unmount { now: now() })?;
        }
        self.sync()?;
        self.gone.store(true, Ordering::Relaxed);
        MOUNTED.lock().retain(|m| !core::ptr::eq(&**m, self));
        // The kept nodes hold the mount: let them go (outside the lock:
        // a node's drop takes the mount's locks).
        let kept = {
            let mut recent = self.recent.lock();
            recent.open = false;
            core::mem::take(&mut recent.nodes)
        };
        drop(kept);
        Ok(())
    }
}

fn kind_of(mode: u32) -> FileType {
    FileType::from_mode(mode).unwrap_or(FileType::Regular)
}

fn time(t: Time) -> Timespec {
    Timespec { sec: t.sec, nsec: t.nsec }
}

fn from_time(t: Timespec) -> Time {
    Time { sec: t.sec, nsec: t.nsec }
}

/// A file, directory or other node of a cell file system.
pub struct CellNode {
    fs: Arc<CellFs>,
    ino: u64,
    kind: FileType,
    /// No name is left: the inode is freed when the node goes.
    orphan: AtomicBool,
    /// Its extended attributes (in-memory mounts only), shared with the
    /// other nodes of the inode through the mount's table: looked up
    /// there on first use.
    xattrs: spin::Once<Arc<spin::Mutex<tessera_vfs::Xattrs>>>,
}

impl Drop for CellNode {
    fn drop(&mut self) {
        if self.orphan.load(Ordering::Relaxed) {
            let mut listed = self.fs.orphans.lock();
            listed.push(self.ino);
            self.fs.has_orphans.store(true, Ordering::Release);
        }
        let mut nodes = self.fs.nodes.lock();
        if nodes.get(&self.ino).is_some_and(|w| w.strong_count() == 0) {
            nodes.remove(&self.ino);
            // No attributes to keep: no entry either.
            if self.xattrs.get().is_some_and(|x| x.lock().is_empty()) {
                self.fs.xattrs.lock().remove(&self.ino);
            }
        }
    }
}

impl CellNode {
    fn attr(&self) -> Result<Attr, FsError> {
        self.fs.stat(self.ino)
    }

    fn set(&self, set: SetAttr) {
        if let Err(e) = self.fs.request(Request::SetAttr { ino: self.ino, set, now: now() }) {
            log::warn!("{}: inode {}: attributes not changed: {e:?}", self.fs.source, self.ino);
        }
    }

    /// Marks the node of `attr` orphaned if no name is left.
    fn orphaned(&self, attr: &Attr) -> NodeRef {
        let node = self.fs.node_for(attr);
        if attr.nlink == 0 {
            node.orphan.store(true, Ordering::Relaxed);
            self.fs.unkeep(attr.ino);
        }
        node
    }
}

impl Node for CellNode {
    /// The node goes when its last user does (the next lookup makes a new
    /// one): the page cache names the file by mount and inode, and
    /// `release_orphans` tells it when the inode is freed.
    fn cache_id(&self) -> Option<(usize, u64)> {
        Some((self.fs.cache_id, self.ino))
    }

    fn kind(&self) -> FileType {
        self.kind
    }

    fn metadata(&self) -> Metadata {
        let a = self.attr().unwrap_or(Attr { ino: self.ino, ..Attr::default() });
        Metadata {
            dev: self.fs.dev,
            ino: self.ino,
            kind: self.kind,
            perm: a.mode & 0o7777,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            blocks: Some(a.blocks),
            rdev: a.rdev,
            atime: time(a.atime),
            mtime: time(a.mtime),
            ctime: time(a.ctime),
        }
    }

    fn set_perm(&self, perm: u32) {
        self.set(SetAttr { perm: Some(perm), ..SetAttr::default() });
    }

    fn set_owner(&self, uid: u32, gid: u32) {
        self.set(SetAttr { uid: Some(uid), gid: Some(gid), ..SetAttr::default() });
    }

    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) {
        self.set(SetAttr { atime: atime.map(from_time), mtime: mtime.map(from_time), ..SetAttr::default() });
    }

    fn set_link_count(&self, _links: u32) {
        // Kept on disk by the directory operations.
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        if self.kind == FileType::Directory {
            return Err(FsError::IsDir);
        }
        let ino = self.ino;
        self.fs.with_state(|fs, st| {
            let known = fs.attrs.lock().get(&ino).map(|a| a.size);
            let size = match known {
                Some(size) => size,
                None => match fs.run_in(st, &Request::Stat { ino })? {
                    Done::Attr(a) => a.size,
                    _ => return Err(FsError::Io),
                },
            };
            let end = size.min(offset.saturating_add(buf.len() as u64));
            if offset >= end {
                return Ok(0);
            }
            let bs = u64::from(fs.block_size);
            let mut l = offset / bs;
            let last = (end - 1) / bs;
            while l <= last {
                // At most half the data cache at once (it loads them together).
                let count = (last + 1 - l).min(MAP_CHUNK).min((st.data.capacity() / 2).max(1) as u64);
                let Done::Map(blocks) = fs.run_in(st, &Request::Map { ino, first: l, count: count as u32 })? else { return Err(FsError::Io) };
                if blocks.is_empty() || blocks.iter().any(|&b| b >= fs.blocks) {
                    return Err(FsError::Io);
                }
                let present: Vec<u64> = blocks.iter().copied().filter(|&b| b != 0).collect();
                st.data.pin();
                let loaded = st.data.load(&present);
                st.data.unpin();
                loaded.map_err(io)?;
                for (k, &b) in blocks.iter().enumerate() {
                    let start = (l + k as u64) * bs;
                    let from = offset.max(start);
                    let to = end.min(start + bs);
                    if from >= to {
                        continue;
                    }
                    let dst = buf.get_mut((from - offset) as usize..(to - offset) as usize).ok_or(FsError::Io)?;
                    if b == 0 {
                        dst.fill(0);
                    } else {
                        let src = st.data.get(b).map_err(io)?;
                        dst.copy_from_slice(src.get((from - start) as usize..(to - start) as usize).ok_or(FsError::Io)?);
                    }
                }
                l += blocks.len() as u64;
            }
            Ok((end - offset) as usize)
        })
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        if self.kind != FileType::Regular {
            return Err(if self.kind == FileType::Directory { FsError::IsDir } else { FsError::Invalid });
        }
        let ino = self.ino;
        // Before and after: a copy read in between is not kept either.
        self.fs.contents_change(ino);
        let written = self.fs.with_state(|fs, st| {
            let bs = u64::from(fs.block_size);
            let mut done = 0usize;
            while done < data.len() || (data.is_empty() && done == 0) {
                let at = offset + done as u64;
                let want = ((data.len() - done) as u64).min(MAP_CHUNK * bs - at % bs);
                let blocks = match fs.run_in(st, &Request::Write { ino, offset: at, len: want, now: now() }) {
                    Ok(Done::Blocks(_, blocks)) => blocks,
                    Ok(_) => return Err(FsError::Io),
                    Err(_) if done > 0 => break, // a short write (the disk is full)
                    Err(e) => return Err(e),
                };
                if data.is_empty() {
                    break;
                }
                if blocks.is_empty() {
                    return Err(FsError::Io);
                }
                let first = at / bs;
                for (k, &b) in blocks.iter().enumerate() {
                    let fresh = b & FRESH != 0;
                    let b = b & !FRESH;
                    if b >= fs.blocks {
                        return Err(FsError::Io);
                    }
                    let start = (first + k as u64) * bs;
                    let from = at.max(start);
                    let to = (offset + data.len() as u64).min(start + bs);
                    if from >= to {
                        continue;
                    }
                    st.meta.forget(b);
                    let whole = fresh || (from == start && to == start + bs);
                    let dst = st.data.get_mut(b, whole).map_err(io)?;
                    if fresh {
                        dst.fill(0);
                    }
                    let src = data.get((from - offset) as usize..(to - offset) as usize).ok_or(FsError::Io)?;
                    dst.get_mut((from - start) as usize..(to - start) as usize).ok_or(FsError::Io)?.copy_from_slice(src);
                    done = (to - offset) as usize;
                }
                st.data.maybe_write_back().map_err(io)?;
            }
            Ok(done)
        });
        self.fs.contents_change(ino);
        written
    }

    fn truncate(&self, len: u64) -> Result<(), FsError> {
        let ino = self.ino;
        self.fs.contents_change(ino);
        let truncated = self.fs.with_state(|fs, st| {
            let Done::Blocks(attr, tail) = fs.run_in(st, &Request::Truncate { ino, size: len, now: now() })? else { return Err(FsError::Io) };
            fs.attrs.lock().insert(ino, attr);
            let bs = u64::from(fs.block_size);
            for b in tail {
                if b >= fs.blocks {
                    return Err(FsError::Io);
                }
                let dst = st.data.get_mut(b, false).map_err(io)?;
                dst.get_mut((len % bs) as usize..).ok_or(FsError::Io)?.fill(0);
            }
            Ok(())
        });
        self.fs.contents_change(ino);
        truncated
    }

    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        if let Some(copy) = self.fs.snapshots.lock().get(&self.ino).and_then(Weak::upgrade) {
            return Ok(copy);
        }
        let changes = self.fs.changes.load(Ordering::Relaxed);
        let size = self.attr()?.size;
        // The file is copied whole: refuse one larger than half the free
        // memory instead of failing an allocation (a sparse file may claim
        // terabytes).
        let free = framekernel::mm::frame_stats().free.saturating_mul(4096);
        if size > free / 2 {
            return Err(FsError::TooBig);
        }
        let mut out = Vec::new();
        out.try_reserve_exact(usize::try_from(size).map_err(|_| FsError::TooBig)?).map_err(|_| FsError::TooBig)?;
        out.resize(size as usize, 0);
        let n = self.read_at(0, &mut out)?;
        out.truncate(n);
        let copy = Arc::new(out);
        let mut snapshots = self.fs.snapshots.lock();
        // Kept unless some file changed while it was read.
        if self.fs.changes.load(Ordering::Relaxed) == changes {
            snapshots.retain(|_, c| c.strong_count() > 0);
            snapshots.insert(self.ino, Arc::downgrade(&copy));
        }
        Ok(copy)
    }

    fn lookup(&self, name: &str) -> Result<NodeRef, FsError> {
        if self.kind != FileType::Directory {
            return Err(FsError::NotDir);
        }
        let dir = self.ino;
        let attr = self.fs.with_state(|fs, st| {
            if name == "." || name == ".." {
                return match fs.run_in(st, &Request::Lookup { dir, name: name.into() })? {
                    Done::Attr(a) => Ok(a),
                    _ => Err(FsError::Io),
                };
            }
            if !st.dirs.contains_key(&dir) {
                fs.read_dir(st, dir)?;
            }
            let ino = *st.dirs.get(&dir).and_then(|l| l.get(name)).ok_or(FsError::NotFound)?;
            if let Some(a) = fs.attrs.lock().get(&ino).copied() {
                return Ok(a);
            }
            match fs.run_in(st, &Request::Stat { ino })? {
                Done::Attr(a) => Ok(a),
                _ => Err(FsError::Io),
            }
        })?;
        Ok(self.fs.node_for(&attr))
    }

    fn create(&self, name: &str, kind: FileType, perm: u32, rdev: u64) -> Result<NodeRef, FsError> {
        let attr = self.fs.attr_of(Request::Create { dir: self.ino, name: name.into(), mode: kind.mode_bits() | (perm & 0o7777), uid: 0, gid: 0, rdev, now: now() })?;
        Ok(self.fs.node_for(&attr))
    }

    fn symlink(&self, name: &str, target: &str) -> Result<NodeRef, FsError> {
        let attr = self.fs.attr_of(Request::Symlink { dir: self.ino, name: name.into(), target: target.into(), uid: 0, gid: 0, now: now() })?;
        Ok(self.fs.node_for(&attr))
    }

    fn attach(&self, name: &str, node: NodeRef, replace: bool) -> Result<(), FsError> {
        let (dev, ino) = node.fs_node_id();
        if dev != self.fs.dev {
            return Err(FsError::CrossDevice);
        }
        let linked = self.fs.request(Request::Link { dir: self.ino, name: name.into(), ino, replace, now: now() })?;
        // A file that had no name (O_TMPFILE) has one now: keep it.
        let named = self.fs.nodes.lock().get(&ino).and_then(Weak::upgrade);
        if let Some(node) = named {
            node.orphan.store(false, Ordering::Relaxed);
        }
        match linked {
            Done::Maybe(Some(victim)) => {
                drop(self.orphaned(&victim));
                Ok(())
            }
            Done::Maybe(None) => Ok(()),
            _ => Err(FsError::Io),
        }
    }

    fn detach(&self, name: &str) -> Result<NodeRef, FsError> {
        let attr = self.fs.attr_of(Request::Unlink { dir: self.ino, name: name.into(), now: now() })?;
        Ok(self.orphaned(&attr))
    }

    fn entries(&self) -> Result<Vec<DirEntry>, FsError> {
        let e = self.fs.with_state(|fs, st| fs.read_dir(st, self.ino))?;
        let mut out = Vec::new();
        out.try_reserve_exact(e.inos.len()).map_err(|_| FsError::Io)?;
        for ((name, &ino), &t) in e.names.split('\0').zip(e.inos.iter()).zip(e.kinds.iter()) {
            let kind = match FileType::from_dirent_type(t) {
                Some(kind) => kind,
                None => self.fs.stat(ino).map(|a| kind_of(a.mode)).unwrap_or(FileType::Regular),
            };
            out.push(DirEntry { name: name.into(), ino, kind });
        }
        Ok(out)
    }

    fn exchange(&self, name: &str, other_dir: &NodeRef, other_name: &str) -> Option<Result<(), FsError>> {
        let (dev, other) = other_dir.fs_node_id();
        if dev != self.fs.dev {
            return Some(Err(FsError::CrossDevice));
        }
        let request = Request::Exchange { a_dir: self.ino, a_name: name.into(), b_dir: other, b_name: other_name.into(), now: now() };
        Some(self.fs.request(request).map(drop))
    }

    fn xattrs(&self) -> Option<&spin::Mutex<tessera_vfs::Xattrs>> {
        if !self.fs.memory {
            return None;
        }
        Some(self.xattrs.call_once(|| self.fs.xattrs.lock().entry(self.ino).or_default().clone()))
    }

    fn read_link(&self) -> Result<String, FsError> {
        match self.fs.request(Request::ReadLink { ino: self.ino })? {
            Done::Text(t) => Ok(t),
            _ => Err(FsError::Io),
        }
    }

    fn fs_stats(&self) -> FsStats {
        if self.fs.magic == SYSFS_MAGIC {
            // As Linux's sysfs: no size, no inode counts.
            return FsStats { magic: SYSFS_MAGIC, block_size: 4096, ..FsStats::default() };
        }
        let info = match self.fs.request(Request::Statfs) {
            Ok(Done::Info(i)) => i,
            _ => Info::default(),
        };
        let bs = u64::from(info.block_size);
        FsStats {
            magic: self.fs.magic,
            capacity: info.blocks.saturating_mul(bs),
            used: info.blocks.saturating_sub(info.free_blocks).saturating_mul(bs),
            nodes: info.inodes,
            nodes_used: info.inodes.saturating_sub(info.free_inodes),
            block_size: bs,
            reserved: info.reserved_blocks.min(info.free_blocks).saturating_mul(bs),
        }
    }

    fn sync(&self) -> Result<(), FsError> {
        self.fs.sync()
    }

    fn fs_node_id(&self) -> (u64, u64) {
        (self.fs.dev, self.ino)
    }
}
