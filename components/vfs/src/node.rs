//! The interface of a file-system node.

use crate::FsError;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A shared reference to a node.
pub type NodeRef = Arc<dyn Node>;

/// What kind of node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
}

impl FileType {
    /// The `S_IFMT` bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => 0o100000,
            FileType::Directory => 0o040000,
            FileType::Symlink => 0o120000,
            FileType::CharDevice => 0o020000,
            FileType::BlockDevice => 0o060000,
            FileType::Fifo => 0o010000,
            FileType::Socket => 0o140000,
        }
    }

    /// Every kind.
    const ALL: [FileType; 7] =
        [FileType::Regular, FileType::Directory, FileType::Symlink, FileType::CharDevice, FileType::BlockDevice, FileType::Fifo, FileType::Socket];

    /// The kind whose `S_IFMT` bits `mode` has, if any.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Self::ALL.into_iter()
        .find(|k| k.mode_bits() == mode & 0o170000)
    }

    /// The kind a directory entry's `d_type` names (`None` for 0, unknown).
    pub fn from_dirent_type(t: u8) -> Option<FileType> {
        Self::ALL.into_iter()
        .find(|k| k.dirent_type() == t)
    }

    /// The `d_type` of a directory entry.
    pub fn dirent_type(self) -> u8 {
        match self {
            FileType::Fifo => 1,
            FileType::CharDevice => 2,
            FileType::Directory => 4,
            FileType::BlockDevice => 6,
            FileType::Regular => 8,
            FileType::Symlink => 10,
            FileType::Socket => 12,
        }
    }
}

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// What `stat` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// File-system id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileType,
    /// Permission bits (07777).
    pub perm: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte units allocated, where the file system counts them
    /// (`None`: the size's, as for a file without holes).
    pub blocks: Option<u64>,
    /// Device number of a device node.
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last modification.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Metadata {
    /// `st_mode`: type and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | self.perm
    }

    /// `st_blocks`: 512-byte units allocated.
    pub fn blocks(&self) -> u64 {
        self.blocks.unwrap_or(self.size.div_ceil(512))
    }
}

/// What `statfs` reports about a file system.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// `f_type` (the Linux magic number).
    pub magic: u64,
    /// Capacity in bytes (0 for file systems without storage).
    pub capacity: u64,
    /// Bytes in use.
    pub used: u64,
    /// Nodes the file system may hold.
    pub nodes: u64,
    /// Nodes in use.
    pub nodes_used: u64,
    /// Bytes per block of a disk file system (0: the file system lives
    /// in memory; free space is also bounded by free RAM).
    pub block_size: u64,
    /// Free bytes only privileged users may take.
    pub reserved: u64,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Name.
    pub name: String,
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: FileType,
}

/// Extended attributes: full name (`security.x`, `trusted.y`) → value.
pub type Xattrs = alloc::collections::BTreeMap<String, Vec<u8>>;

/// A file, directory, link or device in some file system. Operations that
/// do not apply to a node's kind fail with `IsDir`, `NotDir` or `Invalid`.
pub trait Node: Send + Sync {
    /// Current metadata.
    fn metadata(&self) -> Metadata;
    /// Changes the permission bits.
    fn set_perm(&self, perm: u32);
    /// Changes the owner.
    fn set_owner(&self, uid: u32, gid: u32);
    /// Changes the times (None keeps a time).
    fn set_times(&self, atime: Option<Timespec>, mtime: Option<Timespec>);
    /// Sets the hard-link count (kept by the directories that link it).
    fn set_link_count(&self, links: u32);

    /// Reads at `offset`; returns bytes read (0 at the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError>;
    /// Writes at `offset`; returns bytes written.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, FsError>;
    /// Sets the size.
    fn truncate(&self, len: u64) -> Result<(), FsError>;
    /// The whole contents as a shared snapshot (for `execve`): later
    /// writes to the file do not change the snapshot.
    fn snapshot(&self) -> Result<Arc<Vec<u8>>, FsError>;

    /// A name for the file that outlives this node, for file systems
    /// that make a new node each time a file is looked up again (a file
    /// system in a cell): an id of the mounted file system (never given
    /// to another one: not its address, which a later mount may get) and
    /// the inode number. The page cache keys such a
    /// file's pages by it, so that they serve the next user of the file
    /// too; the file system must call the cache's `forget` when it frees
    /// the inode. `None` (the default): the node lives as long as the file
    /// is in use, and its address names it.
    fn cache_id(&self) -> Option<(usize, u64)> {
        None
    }

    /// Finds `name` in this directory. The directory operations default to
    /// `NotDir`, for nodes that are not directories.
    fn lookup(&self, _name: &str) -> Result<NodeRef, FsError> {
        Err(FsError::NotDir)
    }
    /// Creates a node called `name` of `kind` in this directory.
    fn create(&self, _name: &str, _kind: FileType, _perm: u32, _rdev: u64) -> Result<NodeRef, FsError> {
        Err(FsError::NotDir)
    }
    /// Creates a symbolic link `name` → `target`.
    fn symlink(&self, _name: &str, _target: &str) -> Result<NodeRef, FsError> {
        Err(FsError::NotDir)
    }
    /// Adds `node` (of this file system) as entry `name`, replacing an
    /// existing entry when `replace` is set. Counts a link on `node`.
    fn attach(&self, _name: &str, _node: NodeRef, _replace: bool) -> Result<(), FsError> {
        Err(FsError::NotDir)
    }
    /// Removes entry `name` and returns its node. Drops a link on it.
    fn detach(&self, _name: &str) -> Result<NodeRef, FsError> {
        Err(FsError::NotDir)
    }
    /// The entries, without `.` and `..`.
    fn entries(&self) -> Result<Vec<DirEntry>, FsError> {
        Err(FsError::NotDir)
    }

    /// Swaps what this directory's entry `name` and `other_dir`'s entry
    /// `other_name` name (`RENAME_EXCHANGE`), for a file system that does
    /// it in one step; `None`: do it with two `attach`es.
    fn exchange(&self, _name: &str, _other_dir: &NodeRef, _other_name: &str) -> Option<Result<(), FsError>> {
        None
    }

    /// The target of a symbolic link (`Invalid` for other nodes).
    fn read_link(&self) -> Result<String, FsError> {
        Err(FsError::Invalid)
    }

    /// Size and usage of the file system this node is in (`statfs`).
    fn fs_stats(&self) -> FsStats {
        FsStats::default()
    }

    /// The node's extended attributes (full name → value), where the file
    /// system keeps them; `None`: not supported (EOPNOTSUPP).
    fn xattrs(&self) -> Option<&spin::Mutex<Xattrs>> {
        None
    }

    /// Writes what the file system holds of this node (and, for a disk
    /// file system, everything else it has not written yet) to storage.
    fn sync(&self) -> Result<(), FsError> {
        Ok(())
    }

    /// Its kind (a node never changes kind); file systems that know it
    /// without reading the attributes answer faster than `metadata`.
    fn kind(&self) -> FileType {
        self.metadata().kind
    }

    /// Gives up this directory's entries (for a node being freed: its
    /// file system's nodes are then freed one at a time, not by recursion
    /// through a deep tree). The default holds none.
    fn take_entries(&self) -> Vec<NodeRef> {
        Vec::new()
    }

    /// A value for `Any`-style downcasts within one file system.
    fn fs_node_id(&self) -> (u64, u64) {
        let m = self.metadata();
        (m.dev, m.ino)
    }
}
