//! The file-system view of processes: the global tree, each process's
//! working directory and umask, open files of the tree, and device nodes.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, Null, SEEK_CUR, SEEK_END, SEEK_SET, device_stat};
use alloc::string::String;
use alloc::sync::Arc;
use framekernel::sync::Mutex;
use tessera_vfs::{FileType, FsError, Location, NodeRef, Vfs};

static VFS: spin::Once<Vfs> = spin::Once::new();

impl From<FsError> for Errno {
    fn from(e: FsError) -> Self {
        match e {
            FsError::NotFound => Errno::ENOENT,
            FsError::Exists => Errno::EEXIST,
            FsError::NotDir => Errno::ENOTDIR,
            FsError::IsDir => Errno::EISDIR,
            FsError::NotEmpty => Errno::ENOTEMPTY,
            FsError::NoSpace => Errno::ENOSPC,
            FsError::NameTooLong => Errno::ENAMETOOLONG,
            FsError::Loop => Errno::ELOOP,
            FsError::Invalid | FsError::Unsupported => Errno::EINVAL,
            FsError::CrossDevice => Errno::EXDEV,
            FsError::NotPermitted => Errno::EPERM,
            FsError::Busy => Errno::EBUSY,
            FsError::Access => Errno::EACCES,
            FsError::Io => Errno::EIO,
            FsError::Corrupt => Errno::EUCLEAN,
            FsError::TooBig => Errno::EFBIG,
            FsError::TooManyLinks => Errno::EMLINK,
            FsError::ReadOnly => Errno::EROFS,
        }
    }
}

/// Wall-clock time for file timestamps.
pub fn now() -> tessera_vfs::Timespec {
    let ns = framekernel::time::realtime_ns();
    tessera_vfs::Timespec { sec: (ns / 1_000_000_000) as i64, nsec: (ns % 1_000_000_000) as u32 }
}

/// Sets the root file system (once, at boot).
pub fn set_root(root: NodeRef) {
    VFS.call_once(|| Vfs::new(root));
}

/// The tree. Before `set_root` there is none (programs cannot run then).
pub fn vfs() -> Result<&'static Vfs, Errno> {
    VFS.get().ok_or(Errno::ENOENT)
}

/// The contents of the regular file at absolute `path` (a copy-on-write
/// snapshot: later writes to the file do not change it).
pub fn read_file(path: &str) -> Result<Arc<alloc::vec::Vec<u8>>, Errno> {
    let vfs = vfs()?;
    let location = vfs.resolve(&vfs.root(), path, true)?;
    match location.node().metadata().kind {
        FileType::Regular => Ok(location.node().snapshot()?),
        FileType::Directory => Err(Errno::EISDIR),
        _ => Err(Errno::EINVAL),
    }
}

/// The names in the directory at absolute `path`, sorted.
pub fn list_dir(path: &str) -> Result<alloc::vec::Vec<String>, Errno> {
    let vfs = vfs()?;
    let location = vfs.resolve(&vfs.root(), path, true)?;
    let mut names: alloc::vec::Vec<String> = location.node().entries()?.into_iter().map(|e| e.name).collect();
    names.retain(|n| n != "." && n != "..");
    names.sort();
    Ok(names)
}

/// A program file found for `execve`.
pub struct Executable {
    /// Its first bytes: [`EXEC_HEAD`] of them (all of a shorter file).
    /// Exec reads no more of the file than that and the headers that lie
    /// further (read apart): the segments show the page cache, filled as
    /// the program touches its pages.
    pub head: alloc::vec::Vec<u8>,
    /// Its size when it was opened.
    pub len: u64,
    /// Its absolute path.
    pub path: String,
    /// Its metadata (set-id bits).
    pub meta: tessera_vfs::Metadata,
    /// The file, whose page-cache pages the program's segments show.
    pub node: NodeRef,
}

/// Bytes of a program read at exec before its headers are looked at (the
/// ELF header, the program headers and the interpreter path lie in the
/// first page of nearly every program; Linux reads 256 bytes, then the
/// headers).
pub const EXEC_HEAD: u64 = 4096;

impl Executable {
    /// Reads `buf.len()` bytes at `offset` as read(2) would; EIO when the
    /// file ends first (it shrank since it was opened).
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
            let at = offset.checked_add(done as u64).ok_or(Errno::EIO)?;
            match self.node.read_at(at, rest)? {
                0 => return Err(Errno::EIO),
                n => {
                    // What read(2) gives: a shared mapping's stores the
                    // file does not have yet show (the segments' other
                    // pages are those cached pages themselves).
                    crate::pagecache::read(&self.node, at, rest.get_mut(..n).unwrap_or_default());
                    done += n;
                }
            }
        }
        Ok(())
    }
}

/// The program at `path` (from the process's current directory, under its
/// root), checking that it is an executable regular file; its first
/// [`EXEC_HEAD`] bytes are read.
pub fn open_executable(fs: &Fs, path: &[u8], who: &tessera_vfs::Identity) -> Result<Executable, Errno> {
    let path = core::str::from_utf8(path).map_err(|_| Errno::ENOENT)?;
    let location = vfs()?.resolve_in(&fs.root(), &fs.cwd(), path, true, who)?;
    let meta = location.node().metadata();
    // A regular file that `who` may execute (the superuser: any x bit).
    if meta.kind != FileType::Regular || !who.may(&meta, tessera_vfs::perm::MAY_EXEC) {
        return Err(Errno::EACCES);
    }
    let mut program = Executable { head: alloc::vec::Vec::new(), len: meta.size, path: location.path(), meta, node: location.node().clone() };
    let mut head = alloc::vec![0u8; program.len.min(EXEC_HEAD) as usize];
    program.read_exact_at(0, &mut head)?;
    program.head = head;
    Ok(program)
}

/// Working directory and umask, shared by the threads of a process.
pub struct FsContext {
    /// Root directory (`chroot`).
    pub root: Location,
    /// Current directory.
    pub cwd: Location,
    /// File-creation mask.
    pub umask: u32,
}

/// The handle threads share; `fork` copies it.
#[derive(Clone)]
pub struct Fs(Arc<Mutex<FsContext>>);

impl Fs {
    /// Identifies the shared object (`kcmp`): equal for handles of one object.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// At the root, umask 022.
    pub fn at_root() -> Result<Self, Errno> {
        let root = vfs()?.root();
        Ok(Self(Arc::new(Mutex::new(FsContext { root: root.clone(), cwd: root, umask: 0o022 }))))
    }

    /// A separate copy (for `fork`).
    pub fn fork_copy(&self) -> Self {
        let ctx = self.0.lock();
        Self(Arc::new(Mutex::new(FsContext { root: ctx.root.clone(), cwd: ctx.cwd.clone(), umask: ctx.umask })))
    }

    /// The current directory.
    pub fn cwd(&self) -> Location {
        self.0.lock().cwd.clone()
    }

    /// The root directory (`/` unless `chroot` moved it).
    pub fn root(&self) -> Location {
        self.0.lock().root.clone()
    }

    /// Changes the root directory (`chroot`).
    pub fn set_root(&self, location: Location) {
        self.0.lock().root = location;
    }

    /// The current directory as this process names it: from its root
    /// (`(unreachable)` before the path when it is outside, as Linux).
    pub fn cwd_path(&self) -> String {
        let ctx = self.0.lock();
        ctx.cwd.path_from(&ctx.root).unwrap_or_else(|| alloc::format!("(unreachable){}", ctx.cwd.path()))
    }

    /// Changes the current directory.
    pub fn set_cwd(&self, location: Location) {
        self.0.lock().cwd = location;
    }

    /// Sets the umask; returns the old one.
    pub fn swap_umask(&self, mask: u32) -> u32 {
        core::mem::replace(&mut self.0.lock().umask, mask & 0o777)
    }

    /// The umask.
    pub fn umask(&self) -> u32 {
        self.0.lock().umask
    }
}

/// Open-file flags kept by an open file.
pub const O_ACCMODE: u32 = 3;
/// Open for writing only.
pub const O_WRONLY: u32 = 1;
/// Open for reading and writing.
pub const O_RDWR: u32 = 2;
/// Writes go to the end.
pub const O_APPEND: u32 = 0o2000;
/// Non-blocking.
pub const O_NONBLOCK: u32 = 0o4000;
/// A descriptor that only names a file (`O_PATH`).
pub const O_PATH: u32 = 0o10000000;

impl Drop for VfsFile {
    /// The open file description ends: its OFD and `flock` locks go.
    fn drop(&mut self) {
        crate::locks::release_open_file(self as *const VfsFile as *const () as usize);
        if *self.flags.lock() & O_PATH == 0 {
            let bits = if self.writable() { crate::inotify::mask::CLOSE_WRITE } else { crate::inotify::mask::CLOSE_NOWRITE };
            crate::inotify::file_event(&self.location, bits);
        }
    }
}

/// A write by anyone but the superuser takes the set-user-id (and, with
/// group execute, set-group-id) bit off a file, as Linux does.
fn remove_privileges(node: &NodeRef) {
    let meta = node.metadata();
    if meta.perm & (tessera_vfs::perm::SET_UID | tessera_vfs::perm::SET_GID) == 0 {
        return;
    }
    if let Some(writer) = crate::process::current() {
        let perm = tessera_vfs::perm::after_write(&meta, &writer.credentials().identity());
        if perm != meta.perm {
            node.set_perm(perm);
        }
    }
}

/// A regular file or directory of the tree, opened.
pub struct VfsFile {
    location: Location,
    offset: Mutex<u64>,
    flags: Mutex<u32>,
    /// A directory's entries as the first `getdents` from the start saw
    /// them: later calls continue in this list, so removing entries while
    /// reading (`rm -r`) skips none (POSIX leaves it open whether entries
    /// added or removed since `opendir`/`rewinddir` show up). Dropped by
    /// `lseek`.
    listing: Mutex<Option<Arc<alloc::vec::Vec<tessera_vfs::DirEntry>>>>,
}

impl VfsFile {
    /// Opens `location` with `flags` (access mode and status flags).
    pub fn new(location: Location, flags: u32) -> Self {
        Self { location, offset: Mutex::new(0), flags: Mutex::new(flags), listing: Mutex::new(None) }
    }

    fn node(&self) -> &NodeRef {
        self.location.node()
    }

    /// Open for reading (an `O_PATH` descriptor is open for nothing).
    fn readable(&self) -> bool {
        let flags = *self.flags.lock();
        flags & O_PATH == 0 && flags & O_ACCMODE != O_WRONLY
    }

    fn writable(&self) -> bool {
        let flags = *self.flags.lock();
        flags & O_PATH == 0 && matches!(flags & O_ACCMODE, O_WRONLY | O_RDWR)
    }
}

impl File for VfsFile {
    fn reads_whole(&self) -> bool {
        // The node's kind is known without its attributes (a device
        // node's number is not).
        crate::files::reads_whole(self.node().kind(), || self.stat().rdev)
    }
    fn sync(&self) -> SysResult {
        if *self.flags.lock() & O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        // tmpfs and the page cache are the storage: nothing to flush; a
        // disk file system writes back.
        self.location.node().sync()?;
        Ok(0)
    }

    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        // The offset lock (a spin lock) is not held across the node's I/O:
        // a disk file system may wait for its disk or its cell's slot.
        let at = *self.offset.lock();
        let n = self.node().read_at(at, buf)?;
        crate::pagecache::read(self.node(), at, buf.get_mut(..n).unwrap_or(&mut []));
        *self.offset.lock() = at + n as u64;
        if n > 0 {
            crate::inotify::file_event(&self.location, crate::inotify::mask::ACCESS);
        }
        Ok(n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        let append = *self.flags.lock() & O_APPEND != 0;
        // As in `read`, no spin lock is held across the node's I/O.
        let at = if append { self.node().metadata().size } else { *self.offset.lock() };
        crate::memfd::check_write(self.node(), at, buf.len())?;
        let n = self.node().write_at(at, buf)?;
        crate::pagecache::wrote(self.node(), at, buf.get(..n).unwrap_or(&[]));
        remove_privileges(self.node());
        *self.offset.lock() = at + n as u64;
        if n > 0 {
            crate::inotify::file_event(&self.location, crate::inotify::mask::MODIFY);
        }
        Ok(n as u64)
    }

    fn stat(&self) -> FileStat {
        self.node().metadata()
    }

    fn seek(&self, offset: i64, whence: u32) -> SysResult {
        // The size is asked before the lock is taken (it may wait for a disk).
        let size = if whence == SEEK_END { self.node().metadata().size as i64 } else { 0 };
        *self.listing.lock() = None;
        let mut current = self.offset.lock();
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => *current as i64,
            SEEK_END => size,
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).filter(|&n| n >= 0).ok_or(Errno::EINVAL)?;
        *current = new as u64;
        Ok(new as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> SysResult {
        if !self.readable() {
            return Err(Errno::EBADF);
        }
        let n = self.node().read_at(offset, buf)?;
        crate::pagecache::read(self.node(), offset, buf.get_mut(..n).unwrap_or(&mut []));
        if n > 0 {
            crate::inotify::file_event(&self.location, crate::inotify::mask::ACCESS);
        }
        Ok(n as u64)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> SysResult {
        if !self.writable() {
            return Err(Errno::EBADF);
        }
        // With O_APPEND, pwrite appends whatever the offset (Linux's
        // documented behaviour).
        let offset = if *self.flags.lock() & O_APPEND != 0 { self.node().metadata().size } else { offset };
        crate::memfd::check_write(self.node(), offset, buf.len())?;
        let n = self.node().write_at(offset, buf)?;
        crate::pagecache::wrote(self.node(), offset, buf.get(..n).unwrap_or(&[]));
        remove_privileges(self.node());
        if n > 0 {
            crate::inotify::file_event(&self.location, crate::inotify::mask::MODIFY);
        }
        Ok(n as u64)
    }

    fn location(&self) -> Option<Location> {
        Some(self.location.clone())
    }

    fn read_dir(&self, buf: &mut [u8]) -> SysResult {
        if *self.flags.lock() & O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        let node = self.node();
        let start = *self.offset.lock();
        let cached = if start == 0 { None } else { self.listing.lock().clone() };
        let entries = match cached {
            Some(entries) => entries,
            None => {
                let mut entries = node.entries()?;
                let meta = node.metadata();
                let dots = [
                    tessera_vfs::DirEntry { name: String::from("."), ino: meta.ino, kind: FileType::Directory },
                    tessera_vfs::DirEntry { name: String::from(".."), ino: meta.ino, kind: FileType::Directory },
                ];
                entries.splice(0..0, dots);
                let entries = Arc::new(entries);
                *self.listing.lock() = Some(entries.clone());
                entries
            }
        };
        // The offset counts entries already returned.
        let mut index = self.offset.lock();
        let mut used = 0usize;
        for entry in entries.iter().skip(*index as usize) {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name\0, padded to 8.
            let reclen = (19 + entry.name.len() + 1).next_multiple_of(8);
            let Some(record) = buf.get_mut(used..used + reclen) else {
                if used == 0 {
                    return Err(Errno::EINVAL); // buffer too small for one entry
                }
                break;
            };
            record.fill(0);
            record[..8].copy_from_slice(&entry.ino.to_le_bytes());
            record[8..16].copy_from_slice(&(*index as i64 + 1).to_le_bytes());
            record[16..18].copy_from_slice(&(reclen as u16).to_le_bytes());
            record[18] = entry.kind.dirent_type();
            record[19..19 + entry.name.len()].copy_from_slice(entry.name.as_bytes());
            used += reclen;
            *index += 1;
        }
        drop(index);
        if used > 0 {
            crate::inotify::file_event(&self.location, crate::inotify::mask::ACCESS);
        }
        Ok(used as u64)
    }

    fn status_flags(&self) -> u32 {
        *self.flags.lock()
    }

    fn set_status_flags(&self, flags: u32) {
        let mut current = self.flags.lock();
        *current = (*current & !(O_APPEND | O_NONBLOCK)) | (flags & (O_APPEND | O_NONBLOCK));
    }
}

/// Zeroes `buf`. A few bytes are stored one by one: `memset` (three
/// `rep stos`, each its own emulated block under QEMU's TCG) was a tenth
/// of a 1-byte read of /dev/zero. (`black_box` keeps the compiler from
/// turning the loop back into `memset`.)
fn zero_fill(buf: &mut [u8]) {
    if buf.len() <= 16 {
        for byte in buf.iter_mut() {
            *byte = core::hint::black_box(0);
        }
    } else {
        buf.fill(0);
    }
}

/// `/dev/zero`: endless zeros.
pub struct Zero;

impl File for Zero {
    fn reads_whole(&self) -> bool {
        true
    }
    fn read_consumes_nothing(&self) -> bool {
        true
    }
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        zero_fill(buf);
        Ok(buf.len() as u64)
    }
    fn write(&self, buf: &[u8]) -> SysResult {
        Ok(buf.len() as u64)
    }
    fn stat(&self) -> FileStat {
        device_stat(3, (1 << 8) | 5, 0o666)
    }
}

/// `/dev/full`: zeros to read, ENOSPC to write.
pub struct Full;

impl File for Full {
    fn reads_whole(&self) -> bool {
        true
    }
    fn read_consumes_nothing(&self) -> bool {
        true
    }
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        zero_fill(buf);
        Ok(buf.len() as u64)
    }
    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::ENOSPC)
    }
    fn stat(&self) -> FileStat {
        device_stat(4, (1 << 8) | 7, 0o666)
    }
}

/// `/dev/random` and `/dev/urandom`.
pub struct Random;

impl File for Random {
    fn reads_whole(&self) -> bool {
        true
    }
    fn read_consumes_nothing(&self) -> bool {
        true
    }
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        framekernel::random::fill(buf);
        Ok(buf.len() as u64)
    }
    fn write(&self, buf: &[u8]) -> SysResult {
        Ok(buf.len() as u64)
    }
    fn stat(&self) -> FileStat {
        device_stat(5, (1 << 8) | 9, 0o666)
    }
}

/// The driver for a device node's number (major << 8 | minor).
pub fn open_device(rdev: u64) -> Result<Arc<dyn File>, Errno> {
    match rdev {
        0x103 => Ok(Arc::new(Null)),
        0x105 => Ok(Arc::new(Zero)),
        0x107 => Ok(Arc::new(Full)),
        0x108 | 0x109 => Ok(Arc::new(Random)),
        0x400..=0x501 => Ok(crate::files::console()), // ttyS*, tty, console
        crate::cellctl::RDEV => Ok(Arc::new(crate::cellctl::CellCtl::open())),
        _ => Err(Errno::ENODEV),
    }
}

/// The `/dev` path of device number `rdev` (what `/proc/PID/fd` shows for
/// a descriptor of a device, whose open file keeps no path).
pub fn device_path(rdev: u64) -> Option<alloc::string::String> {
    DEVICES.iter().find(|(_, number, _)| *number == rdev).map(|(name, _, _)| alloc::format!("/dev/{name}"))
}

/// The `/dev` node of an open file that keeps no path: `/dev/console`
/// for the console terminal, a character device's by its number; `None`
/// for anything else (pipes, anonymous files).
pub fn device_node_of(file: &dyn crate::files::File) -> Option<alloc::string::String> {
    if file.as_pty_master().is_some() {
        return Some(alloc::string::String::from("/dev/ptmx"));
    }
    if let Some(pty) = file.as_tty().and_then(crate::files::Tty::pty) {
        return Some(alloc::format!("/dev/pts/{}", pty.number()));
    }
    if file.is_tty() {
        return Some(alloc::string::String::from("/dev/console"));
    }
    let stat = file.stat();
    if stat.kind == FileType::CharDevice { device_path(stat.rdev) } else { None }
}

/// Device nodes made in `/dev` at boot: name, number, permissions.
pub const DEVICES: [(&str, u64, u32); 10] = [
    ("null", 0x103, 0o666),
    ("zero", 0x105, 0o666),
    ("full", 0x107, 0o666),
    ("random", 0x108, 0o666),
    ("urandom", 0x109, 0o666),
    ("tty", 0x500, 0o666),
    ("console", 0x501, 0o620),
    ("ptmx", crate::pty::PTMX_RDEV, 0o666),
    ("ttyS0", 0x440, 0o620),
    ("cellctl", crate::cellctl::RDEV, 0o666), // changing cells checks the euid
];

/// Fills a new `devtmpfs` (Linux's: a tmpfs the kernel puts its device
/// nodes in): the character devices, the disks, and the `fd` and
/// `std{in,out,err}` links.
pub fn fill_devtmpfs(root: &NodeRef) -> Result<(), FsError> {
    for (name, rdev, perm) in DEVICES {
        root.create(name, FileType::CharDevice, perm, rdev)?;
    }
    for (name, rdev, _) in crate::block::disks() {
        root.create(&name, FileType::BlockDevice, 0o660, rdev)?;
    }
    dev_links(root)
}

/// The `fd` and `std{in,out,err}` links of `/dev` (made by udev on
/// Debian; programs and scripts name `/dev/stdin` freely).
fn dev_links(dev: &NodeRef) -> Result<(), FsError> {
    for (name, target) in [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")] {
        if dev.lookup(name).is_err() {
            dev.symlink(name, target)?;
        }
    }
    Ok(())
}

fn make_dirs(root: &NodeRef, path: &str) -> Result<NodeRef, FsError> {
    let mut dir = root.clone();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir = match dir.lookup(part) {
            Ok(existing) => existing,
            Err(FsError::NotFound) => dir.create(part, FileType::Directory, 0o755, 0)?,
            Err(e) => return Err(e),
        };
    }
    Ok(dir)
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(at) => (path.get(..at).unwrap_or(""), path.get(at + 1..).unwrap_or("")),
        None => ("", path),
    }
}

/// Builds the root file system at boot: a tmpfs of at most `limit` bytes
/// holding the boot archive's files, `/dev` with its device nodes, `/tmp`.
/// The `tmpfs` cell serves it; without that cell (an archive without
/// `lib/cells/tmpfs.cell`) the kernel's own tmpfs does, so the system
/// still comes up. Returns the number of archive entries unpacked and
/// which tmpfs serves the root, or a message naming the entry that could
/// not be unpacked.
pub fn boot_root(archive: &[u8], limit: u64, clock: tessera_vfs::tmpfs::Clock) -> Result<(usize, &'static str), String> {
    let (root, server) = match crate::cellfs::mount_memory("tmpfs", &alloc::format!("size={limit},mode=755")) {
        Ok(root) => (root, "the tmpfs cell"),
        Err(e) => {
            log::warn!("root file system: the tmpfs cell cannot serve it ({e:?}); the kernel's tmpfs does");
            (tessera_vfs::tmpfs::TmpFs::new_root(limit, Some(clock)), "the kernel (no tmpfs cell)")
        }
    };
    let mut count = 0;
    for entry in tessera_cpio::Reader::new(archive) {
        let entry = entry.map_err(|e| alloc::format!("boot archive: {e}"))?;
        let fail = |e: FsError| alloc::format!("boot archive entry '{}': {e:?}", entry.name);
        let (dir, name) = split_parent(entry.name);
        if name.is_empty() {
            continue;
        }
        let parent = make_dirs(&root, dir).map_err(fail)?;
        let perm = entry.mode & 0o7777;
        if entry.is_dir() {
            match parent.lookup(name) {
                Ok(_) => {}
                Err(_) => {
                    parent.create(name, FileType::Directory, perm, 0).map_err(fail)?;
                }
            }
        } else if entry.is_symlink() {
            let target = core::str::from_utf8(entry.data).map_err(|_| fail(FsError::Invalid))?;
            // A later entry (an overlay) replaces an earlier one.
            if let Ok(old) = parent.lookup(name) {
                if old.metadata().kind == FileType::Directory {
                    return Err(fail(FsError::IsDir));
                }
                parent.detach(name).map_err(fail)?;
            }
            parent.symlink(name, target).map_err(fail)?;
        } else if entry.is_file() {
            let file = match parent.lookup(name) {
                Ok(old) if old.metadata().kind == FileType::Regular => {
                    old.truncate(0).map_err(fail)?;
                    old.set_perm(perm);
                    old
                }
                Ok(_) => {
                    parent.detach(name).map_err(fail)?;
                    parent.create(name, FileType::Regular, perm, 0).map_err(fail)?
                }
                Err(_) => parent.create(name, FileType::Regular, perm, 0).map_err(fail)?,
            };
            file.write_at(0, entry.data).map_err(fail)?;
        } else {
            continue; // device nodes and fifos in archives come later
        }
        count += 1;
    }
    let dev = make_dirs(&root, "dev").map_err(|e| alloc::format!("/dev: {e:?}"))?;
    for (name, rdev, perm) in DEVICES {
        if dev.lookup(name).is_err() {
            dev.create(name, FileType::CharDevice, perm, rdev).map_err(|e| alloc::format!("/dev/{name}: {e:?}"))?;
        }
    }
    dev_links(&dev).map_err(|e| alloc::format!("/dev links: {e:?}"))?;
    let tmp = make_dirs(&root, "tmp").map_err(|e| alloc::format!("/tmp: {e:?}"))?;
    tmp.set_perm(0o1777);
    set_root(root);
    Ok((count, server))
}
