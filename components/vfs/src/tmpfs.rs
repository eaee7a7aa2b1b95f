//! tmpfs: files, directories, links and device nodes in memory, with a
//! size limit (ENOSPC when full).

use crate::node::{DirEntry, FileType, FsStats, Metadata, Node, NodeRef, Timespec};
use crate::FsError;
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

static NEXT_DEV: AtomicU64 = AtomicU64::new(1);

/// Where tmpfs gets the time for timestamps.
pub type Clock = fn() -> Timespec;

fn zero_clock() -> Timespec {
    Timespec::default()
}

/// One tmpfs instance: its limit and usage.
pub struct TmpFs {
    dev: u64,
    next_ino: AtomicU64,
    used: AtomicU64,
    limit: u64,
    /// Nodes alive.
    nodes: AtomicU64,
    clock: Clock,
}

/// Linux's `TMPFS_MAGIC`.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

enum Content {
    File(Mutex<Arc<Vec<u8>>>),
    Dir(Mutex<BTreeMap<String, NodeRef>>),
    Symlink(String),
    Device,
}

/// A tmpfs node.
pub struct TmpNode {
    fs: Arc<TmpFs>,
    meta: Mutex<Metadata>,
    content: Content,
    xattrs: Mutex<crate::node::Xattrs>,
}

/// A device number no other anonymous file system has (`0:n`).
pub fn new_anonymous_dev() -> u64 {
    anonymous_dev(NEXT_DEV.fetch_add(1, Ordering::Relaxed))
}

/// Device number `0:n` in Linux's encoding (`new_encode_dev`), as its
/// anonymous file systems have: major 0 for any `n`, so never a disk's.
fn anonymous_dev(n: u64) -> u64 {
    (n & 0xff) | ((n & !0xff) << 12)
}

impl TmpFs {
    /// A new, empty tmpfs holding at most `limit` bytes of file data;
    /// returns its root directory.
    pub fn new_root(limit: u64, clock: Option<Clock>) -> NodeRef {
        let fs = Arc::new(TmpFs {
            dev: anonymous_dev(NEXT_DEV.fetch_add(1, Ordering::Relaxed)),
            next_ino: AtomicU64::new(1),
            used: AtomicU64::new(0),
            limit,
            nodes: AtomicU64::new(0),
            clock: clock.unwrap_or(zero_clock),
        });
        TmpNode::new_node(&fs, FileType::Directory, 0o755, 0, None)
    }
}

impl TmpNode {
    fn new_node(fs: &Arc<TmpFs>, kind: FileType, perm: u32, rdev: u64, target: Option<&str>) -> NodeRef {
        let now = (fs.clock)();
        let content = match kind {
            FileType::Regular => Content::File(Mutex::new(Arc::new(Vec::new()))),
            FileType::Directory => Content::Dir(Mutex::new(BTreeMap::new())),
            FileType::Symlink => Content::Symlink(target.unwrap_or("").to_string()),
            _ => Content::Device,
        };
        let size = target.map_or(0, |t| t.len() as u64);
        fs.nodes.fetch_add(1, Ordering::Relaxed);
        Arc::new(TmpNode {
            fs: fs.clone(),
            meta: Mutex::new(Metadata {
                dev: fs.dev,
                ino: fs.next_ino.fetch_add(1, Ordering::Relaxed),
                kind,
                perm: perm & 0o7777,
                nlink: if kind == FileType::Directory { 2 } else { 0 },
                uid: 0,
                gid: 0,
                size,
                blocks: None,
                rdev,
                atime: now,
                mtime: now,
                ctime: now,
            }),
            content,
            xattrs: Mutex::new(BTreeMap::new()),
        })
    }

    fn touch(&self, modified: bool) {
        let now = (self.fs.clock)();
        let mut meta = self.meta.lock();
        meta.ctime = now;
        if modified {
            meta.mtime = now;
        }
    }

    fn dir(&self) -> Result<&Mutex<BTreeMap<String, NodeRef>>, FsError> {
        match &self.content {
            Content::Dir(entries) => Ok(entries),
            _ => Err(FsError::NotDir),
        }
    }

    fn file(&self) -> Result<&Mutex<Arc<Vec<u8>>>, FsError> {
        match &self.content {
            Content::File(data) => Ok(data),
            Content::Dir(_) => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// Charges `grow` bytes against the limit (or releases `-grow`).
    fn charge(&self, old: u64, new: u64) -> Result<(), FsError> {
        if new > old {
            let grow = new - old;
            let used = self.fs.used.fetch_add(grow, Ordering::Relaxed);
            if used + grow > self.fs.limit {
                self.fs.used.fetch_sub(grow, Ordering::Relaxed);
                return Err(FsError::NoSpace);
            }
        } else {
            self.fs.used.fetch_sub(old - new, Ordering::Relaxed);
        }
        Ok(())
    }

    fn check_name(name: &str) -> Result<(), FsError> {
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(FsError::Invalid);
        }
        if name.len() > crate::MAX_NAME {
            return Err(FsError::NameTooLong);
        }
        Ok(())
    }

    fn add_link(node: &NodeRef, delta: i32) {
        let meta = node.metadata();
        // Directories count themselves through "." (nlink stays 2 here).
        if meta.kind != FileType::Directory {
            let links = (meta.nlink as i64 + i64::from(delta)).max(0) as u32;
            node.set_link_count(links);
        }
    }
}

/// The file's contents, made private (an exec snapshot keeps the old
/// ones: copy on write) with room for `len` bytes. Memory is reserved
/// fallibly, so a full heap is `NoSpace`, never a kernel panic.
fn writable(data: &mut Arc<Vec<u8>>, len: usize) -> Result<&mut Vec<u8>, FsError> {
    if Arc::get_mut(data).is_none() {
        let mut copy = Vec::new();
        copy.try_reserve_exact(len.max(data.len())).map_err(|_| FsError::NoSpace)?;
        copy.extend_from_slice(data);
        *data = Arc::new(copy);
    }
    let contents = Arc::get_mut(data).ok_or(FsError::NoSpace)?;
    if let Some(more) = len.checked_sub(contents.len()).filter(|&m| m > 0) {
        let reserved =
            if contents.is_empty() { contents.try_reserve_exact(more) } else { contents.try_reserve(more) };
        reserved.map_err(|_| FsError::NoSpace)?;
    }
    Ok(contents)
}

/// Bytes of extended attributes (names and values) all tmpfs nodes hold:
/// kernel memory, bounded here since no file-system size counts it.
static XATTR_BYTES: AtomicU64 = AtomicU64::new(0);
/// The most extended-attribute bytes all tmpfs nodes hold together.
pub const XATTR_TOTAL_MAX: u64 = 16 << 20;

/// Charges `delta` bytes of extended attributes (negative: frees them);
/// `NoSpace` when the total would pass [`XATTR_TOTAL_MAX`].
pub fn charge_xattrs(delta: i64) -> Result<(), FsError> {
    if delta <= 0 {
        XATTR_BYTES.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        return Ok(());
    }
    let add = delta as u64;
    XATTR_BYTES
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| used.checked_add(add).filter(|&total| total <= XATTR_TOTAL_MAX))
        .map(drop)
        .map_err(|_| FsError::NoSpace)
}

impl Drop for TmpNode {
    fn drop(&mut self) {
        // A directory's subtree goes one node at a time: each child whose
        // last reference this is gives up its own entries first, so no
        // drop recurses (a tree thousands of levels deep would overflow a
        // kernel stack).
        let mut pending = self.take_entries();
        while let Some(mut node) = pending.pop() {
            // Only a node nobody else can reach (no other reference,
            // strong or weak) is emptied.
            if let Some(last) = Arc::get_mut(&mut node) {
                pending.extend(last.take_entries());
            }
        }
        self.fs.nodes.fetch_sub(1, Ordering::Relaxed);
        let xattrs: usize = self.xattrs.lock().iter().map(|(name, value)| name.len() + value.len()).sum();
        XATTR_BYTES.fetch_sub(xattrs as u64, Ordering::Relaxed);
        if let Content::File(data) = &self.content {
            let len = data.lock().len() as u64;
            self.fs.used.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

impl Node for TmpNode {
    fn take_entries(&self) -> Vec<NodeRef> {
        match &self.content {
            Content::Dir(entries) => core::mem::take(&mut *entries.lock()).into_values().collect(),
            _ => Vec::new(),
        }
    }

    fn xattrs(&self) -> Option<&Mutex<crate::node::Xattrs>> {
        Some(&self.xattrs)
    }

    fn fs_stats(&self) -> FsStats {
        FsStats {
            magic: TMPFS_MAGIC,
            capacity: self.fs.limit,
            used: self.fs.used.load(Ordering::Relaxed).min(self.fs.limit),
            // Linux's default: one node per page of capacity.
            nodes: (self.fs.limit / 4096).max(1024),
            nodes_used: self.fs.nodes.load(Ordering::Relaxed),
            ..FsStats::default()
        }
    }

    fn metadata(&self) -> Metadata {
        let mut meta = *self.meta.lock();
        if let Content::File(data) = &self.content {
            meta.size = data.lock().len() as u64;
        }
        meta
    }

    fn set_perm(&self, perm: u32) {
        self.meta.lock().perm = perm & 0o7777;
        self.touch(false);
    }

    fn set_owner(&self, uid: u32, gid: u32) {
        let mut meta = self.meta.lock();
        meta.uid = uid;
        meta.gid = gid;
    }

    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>) {
        let mut meta = self.meta.lock();
        if let Some(t) = atime {
            meta.atime = t;
        }
        if let Some(t) = mtime {
            meta.mtime = t;
        }
    }

    fn set_link_count(&self, links: u32) {
        self.meta.lock().nlink = links;
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let data = self.file()?.lock().clone();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf.get_mut(..n).unwrap_or(&mut []).copy_from_slice(data.get(start..start + n).unwrap_or(&[]));
        Ok(n)
    }

    fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<usize, FsError> {
        let end = offset.checked_add(bytes.len() as u64).ok_or(FsError::Invalid)?;
        let end_usize = usize::try_from(end).map_err(|_| FsError::NoSpace)?;
        {
            let mut data = self.file()?.lock();
            let old = data.len() as u64;
            let new = old.max(end);
            self.charge(old, new)?;
            let contents = match writable(&mut data, end_usize) {
                Ok(contents) => contents,
                Err(e) => {
                    let _ = self.charge(new, old);
                    return Err(e);
                }
            };
            if contents.len() < end_usize {
                contents.resize(end_usize, 0);
            }
            let start = offset as usize;
            if let Some(dst) = contents.get_mut(start..end_usize) {
                dst.copy_from_slice(bytes);
            }
        }
        self.touch(true);
        Ok(bytes.len())
    }

    fn truncate(&self, len: u64) -> Result<(), FsError> {
        let len_usize = usize::try_from(len).map_err(|_| FsError::NoSpace)?;
        {
            let mut data = self.file()?.lock();
            let old = data.len() as u64;
            self.charge(old, len)?;
            match writable(&mut data, len_usize) {
                Ok(contents) => contents.resize(len_usize, 0),
                Err(e) => {
                    let _ = self.charge(len, old);
                    return Err(e);
                }
            }
        }
        self.touch(true);
        Ok(())
    }

    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError> {
        Ok(self.file()?.lock().clone())
    }

    fn lookup(&self, name: &str) -> Result<NodeRef, FsError> {
        self.dir()?.lock().get(name).cloned().ok_or(FsError::NotFound)
    }

    fn create(&self, name: &str, kind: FileType, perm: u32, rdev: u64) -> Result<NodeRef, FsError> {
        Self::check_name(name)?;
        if kind == FileType::Symlink {
            return Err(FsError::Invalid);
        }
        let node = TmpNode::new_node(&self.fs, kind, perm, rdev, None);
        self.attach(name, node.clone(), false)?;
        Ok(node)
    }

    fn symlink(&self, name: &str, target: &str) -> Result<NodeRef, FsError> {
        Self::check_name(name)?;
        if target.len() > crate::MAX_PATH {
            return Err(FsError::NameTooLong);
        }
        let node = TmpNode::new_node(&self.fs, FileType::Symlink, 0o777, 0, Some(target));
        self.attach(name, node.clone(), false)?;
        Ok(node)
    }

    fn attach(&self, name: &str, node: NodeRef, replace: bool) -> Result<(), FsError> {
        Self::check_name(name)?;
        if node.metadata().dev != self.fs.dev {
            return Err(FsError::CrossDevice);
        }
        {
            let mut entries = self.dir()?.lock();
            if let Some(old) = entries.get(name).cloned() {
                if !replace {
                    return Err(FsError::Exists);
                }
                TmpNode::add_link(&old, -1);
            }
            TmpNode::add_link(&node, 1);
            entries.insert(name.to_string(), node);
        }
        self.touch(true);
        Ok(())
    }

    fn detach(&self, name: &str) -> Result<NodeRef, FsError> {
        let node = self.dir()?.lock().remove(name).ok_or(FsError::NotFound)?;
        TmpNode::add_link(&node, -1);
        self.touch(true);
        Ok(node)
    }

    fn entries(&self) -> Result<Vec<DirEntry>, FsError> {
        Ok(self
            .dir()?
            .lock()
            .iter()
            .map(|(name, node)| {
                let meta = node.metadata();
                DirEntry { name: name.clone(), ino: meta.ino, kind: meta.kind }
            })
            .collect())
    }

    fn read_link(&self) -> Result<String, FsError> {
        match &self.content {
            Content::Symlink(target) => Ok(target.clone()),
            _ => Err(FsError::Invalid),
        }
    }
}
