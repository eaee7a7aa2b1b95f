//! Disk file systems as cells (ext2 first).
//!
//! The cell keeps no state between calls: everything it knows is on the
//! disk, and the kernel holds the disk's metadata blocks in its block
//! cache. Each call passes a [`Request`] with a view of that cache:
//! `index` lists `[block, slot]` pairs sorted by block number, and block
//! `block`'s bytes are `data[slot * block_size ..][.. block_size]`.
//!
//! The cell answers with a [`Reply`]. When it needs a block the view does
//! not hold, the outcome is [`Outcome::Need`] and the kernel reads the
//! blocks and calls again (a call is a pure function of request and
//! blocks, so repeating it is always safe). Blocks the cell changes come
//! back whole in `writes`/`written`: the kernel applies them to its cache
//! only when the call succeeded, so a cell that faults half-way through an
//! operation leaves the file system as it was. File contents never pass
//! through the cell: it maps file blocks to disk blocks
//! ([`Request::Map`], [`Request::Write`]) and the kernel moves the data.
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// Marks a block of a `Write` answer that was allocated by that call.
pub const FRESH: u64 = 1 << 63;

/// Why an operation failed; the kernel turns it into an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsErr {
    /// ENOENT.
    NotFound,
    /// EEXIST.
    Exists,
    /// ENOTDIR.
    NotDir,
    /// EISDIR.
    IsDir,
    /// ENOTEMPTY.
    NotEmpty,
    /// ENOSPC.
    NoSpace,
    /// ENAMETOOLONG.
    NameTooLong,
    /// EINVAL.
    Invalid,
    /// EFBIG: past the largest file the format can hold.
    TooBig,
    /// EMLINK: too many links.
    TooManyLinks,
    /// EROFS: the file system may only be read.
    ReadOnly,
    /// EUCLEAN: the structures on disk are inconsistent.
    Corrupt,
    /// EINVAL at mount: not this file system, or a feature it lacks.
    NotSupported,
}
framekernel_boundary::cell_data!(enum FsErr { NotFound, Exists, NotDir, IsDir, NotEmpty, NoSpace, NameTooLong, Invalid, TooBig, TooManyLinks, ReadOnly, Corrupt, NotSupported });

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Time {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds (kept only where the format has room).
    pub nsec: u32,
}
framekernel_boundary::cell_data!(struct Time { sec, nsec });

/// What `stat` needs of an inode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte sectors allocated.
    pub blocks: u64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Last access.
    pub atime: Time,
    /// Last modification.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
}
framekernel_boundary::cell_data!(struct Attr { ino, mode, nlink, uid, gid, size, blocks, rdev, atime, mtime, ctime });

/// A mounted file system's geometry and usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// Bytes per block.
    pub block_size: u32,
    /// Blocks in the file system.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free blocks ordinary users may not take.
    pub reserved_blocks: u64,
    /// Inodes.
    pub inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// The root directory's inode number.
    pub root: u64,
    /// True when the cell can only read this file system (features).
    pub read_only: bool,
    /// The volume label.
    pub label: String,
}
framekernel_boundary::cell_data!(struct Info { block_size, blocks, free_blocks, reserved_blocks, inodes, free_inodes, root, read_only, label });

/// Changes to an inode's attributes (`None` keeps one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (07777).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<Time>,
    /// New modification time.
    pub mtime: Option<Time>,
}
framekernel_boundary::cell_data!(struct SetAttr { perm, uid, gid, atime, mtime });

/// One operation. `now` is the time to stamp on what changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Checks the superblock and says what the file system is. In this
    /// call's view blocks are 1024 bytes (the superblock is block 1)
    /// whatever the file system's own size; nothing is written.
    Probe,
    /// Starts using the file system (with its own block size from now
    /// on); with `write`, marks it mounted (not clean) on disk. `options`
    /// are the file system's own mount options (`size=1m,mode=755`), as
    /// the kernel passes them on (it puts its own first: `memory=BYTES`
    /// for the in-memory file systems).
    Mount { write: bool, now: Time, options: String },
    /// Marks the file system cleanly unmounted.
    Unmount { now: Time },
    /// The size and usage (`statfs`).
    Statfs,
    /// An inode's attributes.
    Stat { ino: u64 },
    /// Finds `name` in directory `dir`: its attributes.
    Lookup { dir: u64, name: String },
    /// Every entry of directory `dir` but `.` and `..`.
    ReadDir { dir: u64 },
    /// Creates `name` in `dir` with `mode` (type and permissions).
    Create { dir: u64, name: String, mode: u32, uid: u32, gid: u32, rdev: u64, now: Time },
    /// Creates the symbolic link `name` → `target` in `dir`.
    Symlink { dir: u64, name: String, target: String, uid: u32, gid: u32, now: Time },
    /// Adds entry `name` in `dir` for inode `ino` (a link, or the new
    /// place of a renamed inode), replacing an existing entry if
    /// `replace`. Answers the replaced inode's attributes, if any.
    Link { dir: u64, name: String, ino: u64, replace: bool, now: Time },
    /// Removes entry `name` from `dir`; answers the inode's attributes
    /// afterwards (`nlink` 0: no name is left; free it with `Release`
    /// once it is no longer open).
    Unlink { dir: u64, name: String, now: Time },
    /// Frees an inode that no entry names any more.
    Release { ino: u64, now: Time },
    /// Changes attributes; answers the new ones.
    SetAttr { ino: u64, set: SetAttr, now: Time },
    /// Sets the size (freeing or adding holes); answers the new
    /// attributes and, in `Done::Blocks`, the disk block holding the
    /// new end when it falls inside a block (the kernel zeroes its tail).
    Truncate { ino: u64, size: u64, now: Time },
    /// The disk blocks of file blocks `first..first + count` (0 for a hole).
    Map { ino: u64, first: u64, count: u32 },
    /// Makes room for `len` bytes at `offset`: allocates missing blocks
    /// and grows the size; answers the disk blocks of the range, fewer
    /// when the disk filled up (the size then ends with the last one).
    /// A block with [`FRESH`] set was allocated by this call: its old
    /// contents are garbage, so the kernel writes it whole.
    Write { ino: u64, offset: u64, len: u64, now: Time },
    /// The target of a symbolic link.
    ReadLink { ino: u64 },
    /// Swaps what entries `a_name` in `a_dir` and `b_name` in `b_dir`
    /// name (`RENAME_EXCHANGE`; both exist, the kernel checked the rest);
    /// a directory's parent follows it. `Invalid` where the file system
    /// has no such operation (Linux's ext2).
    Exchange { a_dir: u64, a_name: String, b_dir: u64, b_name: String, now: Time },
}
framekernel_boundary::cell_data!(enum Request {
    Probe, Mount { write, now, options }, Unmount { now }, Statfs, Stat { ino }, Lookup { dir, name }, ReadDir { dir },
    Create { dir, name, mode, uid, gid, rdev, now }, Symlink { dir, name, target, uid, gid, now },
    Link { dir, name, ino, replace, now }, Unlink { dir, name, now }, Release { ino, now },
    SetAttr { ino, set, now }, Truncate { ino, size, now }, Map { ino, first, count },
    Write { ino, offset, len, now }, ReadLink { ino }, Exchange { a_dir, a_name, b_dir, b_name, now },
});

/// Directory entries, in three parallel lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    /// The names, each followed by a NUL byte.
    pub names: String,
    /// Inode numbers.
    pub inos: Vec<u64>,
    /// `d_type` values (0 when the directory does not record types).
    pub kinds: Vec<u8>,
}
framekernel_boundary::cell_data!(struct Entries { names, inos, kinds });

/// What a completed operation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Nothing to say.
    Unit,
    /// What `Probe`, `Mount` and `Statfs` answer.
    Info(Info),
    /// An inode's attributes.
    Attr(Attr),
    /// Perhaps an inode's attributes (`Link`: the replaced inode).
    Maybe(Option<Attr>),
    /// Attributes and disk blocks (`Write`, `Truncate`).
    Blocks(Attr, Vec<u64>),
    /// Disk blocks of a file range (`Map`).
    Map(Vec<u64>),
    /// Directory entries.
    Entries(Entries),
    /// A symbolic link's target.
    Text(String),
}
framekernel_boundary::cell_data!(enum Done { Unit, Info(i), Attr(a), Maybe(a), Blocks(a, b), Map(b), Entries(e), Text(t) });

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Done(Done),
    /// Failed; nothing is to be written.
    Failed(FsErr),
    /// Needs these blocks in the view; call again with them.
    Need(Vec<u64>),
}
framekernel_boundary::cell_data!(enum Outcome { Done(d), Failed(e), Need(b) });

/// The answer to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// How it ended.
    pub outcome: Outcome,
    /// Blocks to write (only with `Outcome::Done`), in this order.
    pub writes: Vec<u64>,
    /// Their new contents, one whole block each, concatenated.
    pub written: Vec<u8>,
    /// Blocks the operation freed: the kernel forgets what it holds of
    /// them (they may come back as file data).
    pub freed: Vec<u64>,
}
framekernel_boundary::cell_data!(struct Reply { outcome, writes, written, freed });

/// A disk file system.
pub trait FileSystem: Send + Sync {
    /// The file system's name (`ext2`): what `mount -t` and
    /// `/proc/filesystems` say.
    fn name(&self) -> String;
    /// Serves `request` over the kernel's view of the disk, whose blocks
    /// are `block_size` bytes (see the module's documentation).
    fn serve(&self, request: Request, block_size: u32, index: &[[u64; 2]], data: &[u8]) -> Reply;
}

/// What a file-system cell exports.
pub type Export = Box<dyn FileSystem>;
