//! Path-based system calls over the VFS: open, stat, directories, links,
//! renames, permissions, times, the working directory.

use super::IO_CHUNK;
use crate::errno::{Errno, SysResult};
use crate::files::File;
use crate::fs::{self, O_ACCMODE, VfsFile};
use crate::process::Process;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use tessera_vfs::perm::{MAY_EXEC, MAY_READ, MAY_WRITE};
use tessera_vfs::{FileType, Identity, Location, Metadata, NodeRef, Timespec};

/// `dirfd` meaning "the working directory".
const AT_FDCWD: i32 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_REMOVEDIR: u64 = 0x200;
const AT_SYMLINK_FOLLOW: u64 = 0x400;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_EACCESS: u64 = 0x200;

const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_NOFOLLOW: u64 = 0o400000;
pub(super) const O_CLOEXEC: u64 = 0o2000000;
const O_PATH: u64 = 0o10000000;
const O_TMPFILE: u64 = 0o20000000;
const O_NOATIME: u64 = 0o1000000;

/// Who this process's file-system operations are done as.
pub(super) fn who(p: &Process) -> Identity {
    p.info.credentials().identity()
}

/// EROFS when `location` is on a read-only mount (checked before the
/// permission bits, as Linux's `mnt_want_write`).
fn writable_fs(location: &Location) -> Result<(), Errno> {
    if fs::vfs()?.is_read_only(location) { Err(Errno::EROFS) } else { Ok(()) }
}

/// EACCES unless `who` may access `meta` for `mask`.
fn check(who: &Identity, meta: &Metadata, mask: u32) -> Result<(), Errno> {
    if who.may(meta, mask) { Ok(()) } else { Err(Errno::EACCES) }
}

/// The parent directory and last name of `(dirfd, path)`, searched as
/// this process.
fn parent_of(p: &Process, dirfd: u64, path: &str) -> Result<(Location, String), Errno> {
    Ok(fs::vfs()?.resolve_parent_in(&p.fs.root(), &base_dir(p, dirfd, path)?, path, &who(p))?)
}

/// A new node in `parent` belongs to its creator: the fsuid, and the
/// fsgid or, in a set-group-id directory, the directory's group (a new
/// directory there is set-group-id too), as Linux's `inode_init_owner`.
fn init_owner(who: &Identity, parent: &Metadata, node: &NodeRef) {
    let meta = node.metadata();
    let sgid_dir = parent.perm & tessera_vfs::perm::SET_GID != 0;
    let gid = if sgid_dir { parent.gid } else { who.gid };
    node.set_owner(who.uid, gid);
    if sgid_dir && meta.kind == FileType::Directory {
        node.set_perm(meta.perm | tessera_vfs::perm::SET_GID);
    } else if meta.perm & tessera_vfs::perm::SET_GID != 0 && !who.in_group(gid) && !who.is_root() {
        node.set_perm(meta.perm & !tessera_vfs::perm::SET_GID);
    }
}

/// Reads a path argument.
pub fn path_arg(p: &Process, addr: u64) -> Result<String, Errno> {
    let bytes = p.memory.read_c_string(addr, tessera_vfs::MAX_PATH)?;
    // Linux's getname: a path with no NUL in its first PATH_MAX bytes
    // is too long, before any directory is looked at.
    if bytes.len() >= tessera_vfs::MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    String::from_utf8(bytes).map_err(|_| Errno::EINVAL)
}

/// The directory `dirfd` names (the working directory for AT_FDCWD).
pub(super) fn at_dir(p: &Process, dirfd: u64) -> Result<Location, Errno> {
    if dirfd as i32 == AT_FDCWD {
        return Ok(p.fs.cwd());
    }
    let location = p.files.get(dirfd)?.location().ok_or(Errno::ENOTDIR)?;
    if location.node().metadata().kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    Ok(location)
}

/// The directory a relative `path` starts from; an absolute path ignores
/// `dirfd` altogether (even an invalid one), as Linux.
fn base_dir(p: &Process, dirfd: u64, path: &str) -> Result<Location, Errno> {
    if path.starts_with('/') { Ok(p.fs.cwd()) } else { at_dir(p, dirfd) }
}

/// Resolves `(dirfd, path)`; an empty path means `dirfd` itself when
/// `AT_EMPTY_PATH` is set.
fn lookup(p: &Process, dirfd: u64, path: &str, flags: u64) -> Result<Location, Errno> {
    if path.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd as i32 == AT_FDCWD {
            return Ok(p.fs.cwd());
        }
        return p.files.get(dirfd)?.location().ok_or(Errno::EBADF);
    }
    let base = base_dir(p, dirfd, path)?;
    Ok(fs::vfs()?.resolve_in(&p.fs.root(), &base, path, flags & AT_SYMLINK_NOFOLLOW == 0, &who(p))?)
}

fn open_location(p: &Process, location: Location, flags: u64) -> Result<Arc<dyn File>, Errno> {
    let meta = location.node().metadata();
    match meta.kind {
        FileType::Fifo if flags & O_PATH == 0 => crate::pipe::open_fifo(location.node(), flags, &p.interrupt_check(), p.info.credentials().capable(crate::process::cap::SYS_RESOURCE)),
        FileType::CharDevice if flags & O_PATH == 0 && crate::pty::handles(meta.rdev) => crate::pty::open(meta.rdev, flags, &p.info),
        // /dev/tty: a pty session's terminal, else the console.
        FileType::CharDevice if flags & O_PATH == 0 && meta.rdev == crate::pty::TTY_RDEV => match crate::pty::controlling(&p.info) {
            Some(tty) => Ok(tty),
            None => fs::open_device(meta.rdev),
        },
        FileType::CharDevice if flags & O_PATH == 0 => fs::open_device(meta.rdev),
        FileType::BlockDevice if flags & O_PATH == 0 => crate::block::open(meta.rdev),
        FileType::Regular | FileType::Directory | FileType::CharDevice | FileType::BlockDevice | FileType::Fifo | FileType::Symlink => {
            // __O_TMPFILE stays in the flags of a linkable unnamed file.
            Ok(Arc::new(VfsFile::new(location, (flags & 0o37777777) as u32)))
        }
        _ => Err(Errno::ENXIO),
    }
}

pub(super) fn openat(p: &mut Process, dirfd: u64, path: u64, flags: u64, mode: u64) -> SysResult {
    let path = path_arg(p, path)?;
    let file = open_path(p, dirfd, &path, flags, mode)?;
    p.files.insert(file, 0, flags & O_CLOEXEC != 0)
}

const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_IN_ROOT: u64 = 0x10;
const RESOLVE_CACHED: u64 = 0x20;
/// The `open` flags Linux knows (`VALID_OPEN_FLAGS`).
const VALID_OPEN_FLAGS: u64 = 0o3 | 0o100 | 0o200 | 0o400 | 0o1000 | 0o2000 | 0o4000 | 0o10000 | 0o20000 | 0o40000 | 0o100000 | 0o200000 | 0o400000 | 0o1000000 | 0o2000000 | 0o4000000 | 0o10000000 | 0o20000000;

/// `openat2(dirfd, path, how, size)`: `struct open_how` (flags, mode,
/// resolve) checked strictly, then the path walked once under the
/// `RESOLVE_*` rules before it is opened: no symlinks, no procfs magic
/// links (ELOOP), no other file system (EXDEV), nothing above `dirfd`
/// (EXDEV), or `dirfd` as the root. (The walk and the open are two
/// steps; a rename in between is not caught.)
pub(super) fn openat2(p: &mut Process, dirfd: u64, path: u64, how: u64, size: u64) -> SysResult {
    if size < 24 {
        return Err(Errno::EINVAL);
    }
    if size > 4096 {
        return Err(Errno::E2BIG);
    }
    let mut raw = alloc::vec![0u8; size as usize];
    p.memory.read(how, &mut raw)?;
    if raw.get(24..).is_some_and(|rest| rest.iter().any(|&b| b != 0)) {
        return Err(Errno::E2BIG);
    }
    let field = |i: usize| u64::from_le_bytes(raw.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let (flags, mode, resolve) = (field(0), field(1), field(2));
    if flags & !VALID_OPEN_FLAGS != 0 || mode & !0o7777 != 0 || resolve & !0x3f != 0 {
        return Err(Errno::EINVAL);
    }
    if mode != 0 && flags & (O_CREAT | O_TMPFILE) == 0 {
        return Err(Errno::EINVAL);
    }
    if resolve & RESOLVE_BENEATH != 0 && resolve & RESOLVE_IN_ROOT != 0 {
        return Err(Errno::EINVAL);
    }
    if resolve & RESOLVE_CACHED != 0 && flags & (O_CREAT | O_TRUNC | O_TMPFILE) != 0 {
        return Err(Errno::EAGAIN);
    }
    let name = path_arg(p, path)?;
    let root = if resolve & RESOLVE_IN_ROOT != 0 { Some(at_dir(p, dirfd)?) } else { None };
    if resolve & (RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 {
        check_resolve(p, root.clone(), dirfd, &name, flags, resolve)?;
    }
    let file = open_path_in(p, root, dirfd, &name, flags, mode)?;
    p.files.insert(file, 0, flags & O_CLOEXEC != 0)
}

/// Walks `path` from `dirfd` one component at a time (symlinks expanded
/// in place, at most 40) and refuses what `resolve` forbids.
fn check_resolve(p: &Process, root: Option<Location>, dirfd: u64, path: &str, flags: u64, resolve: u64) -> Result<(), Errno> {
    let vfs = fs::vfs()?;
    let me = who(p);
    let root = root.unwrap_or_else(|| p.fs.root());
    let start = if dirfd as i32 == AT_FDCWD { p.fs.cwd() } else { at_dir(p, dirfd)? };
    let start_dev = start.node().metadata().dev;
    let mut at = start.clone();
    let mut depth: usize = 0;
    let mut parts: alloc::collections::VecDeque<String> = path.split('/').map(String::from).collect();
    let mut links = 0;
    if path.starts_with('/') {
        if resolve & RESOLVE_BENEATH != 0 {
            return Err(Errno::EXDEV);
        }
        at = root.clone();
        if resolve & RESOLVE_NO_XDEV != 0 && at.node().metadata().dev != start_dev {
            return Err(Errno::EXDEV);
        }
    }
    while let Some(part) = parts.pop_front() {
        let last = parts.iter().all(|s| s.is_empty() || s == ".");
        if part.is_empty() || part == "." {
            continue;
        }
        if part == ".." {
            if resolve & RESOLVE_BENEATH != 0 {
                depth = depth.checked_sub(1).ok_or(Errno::EXDEV)?;
            }
        } else if resolve & RESOLVE_BENEATH != 0 {
            depth += 1;
        }
        let Ok(next) = vfs.resolve_in(&root, &at, &part, false, &me) else {
            return Ok(()); // missing: the open says what is wrong (or creates it)
        };
        if resolve & RESOLVE_NO_XDEV != 0 && next.node().metadata().dev != start_dev {
            return Err(Errno::EXDEV);
        }
        if next.node().metadata().kind == FileType::Symlink && !(last && flags & (O_NOFOLLOW | O_PATH) != 0) {
            if resolve & (RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) != 0 && crate::procfs::is_magic_link(next.node()) {
                return Err(Errno::ELOOP);
            }
            if resolve & RESOLVE_NO_SYMLINKS != 0 {
                return Err(Errno::ELOOP);
            }
            // A magic link jumps to an object anywhere: not from under a
            // RESOLVE_BENEATH or RESOLVE_IN_ROOT directory (Linux: EXDEV).
            if resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) != 0 && crate::procfs::is_magic_link(next.node()) {
                return Err(Errno::EXDEV);
            }
            links += 1;
            if links > 40 {
                return Err(Errno::ELOOP);
            }
            if crate::procfs::is_magic_link(next.node()) {
                return Ok(()); // names an object: nothing further to walk
            }
            let target = next.node().read_link().map_err(|_| Errno::EINVAL)?;
            if resolve & RESOLVE_BENEATH != 0 {
                if target.starts_with('/') {
                    return Err(Errno::EXDEV);
                }
                depth = depth.saturating_sub(1); // the link's own name
            }
            if target.starts_with('/') {
                at = root.clone();
            }
            for piece in target.split('/').rev() {
                parts.push_front(String::from(piece));
            }
            continue;
        }
        at = next;
    }
    Ok(())
}

static TMPFILE_SEQ: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// `O_TMPFILE`: an unnamed regular file in directory `path`, open for
/// writing (EINVAL otherwise), with no link; unless `O_EXCL`, `linkat`
/// may give it a name later (through `/proc/self/fd/N` or
/// `AT_EMPTY_PATH`).
fn open_tmpfile(p: &Process, root: Location, dirfd: u64, path: &str, flags: u64, mode: u64) -> Result<Arc<dyn File>, Errno> {
    if flags & O_ACCMODE as u64 == 0 {
        return Err(Errno::EINVAL);
    }
    let vfs = fs::vfs()?;
    let me = who(p);
    let base = base_dir(p, dirfd, path)?;
    let dir = vfs.resolve_in(&root, &base, path, true, &me)?;
    let dir_meta = dir.node().metadata();
    if dir_meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    writable_fs(&dir)?;
    check(&me, &dir_meta, MAY_WRITE | MAY_EXEC)?;
    // Made under an unguessable private name and unlinked at once (a name
    // taken already: another try).
    let perm = (mode as u32) & 0o7777 & !p.fs.umask();
    let mut attempt = 0;
    let (name, node) = loop {
        let mut noise = [0u8; 8];
        framekernel::random::fill(&mut noise);
        let name = alloc::format!(".tmpfile-{:016x}-{}", u64::from_le_bytes(noise), TMPFILE_SEQ.fetch_add(1, core::sync::atomic::Ordering::Relaxed));
        match dir.node().create(&name, FileType::Regular, perm, 0) {
            Ok(node) => break (name, node),
            Err(tessera_vfs::FsError::Exists) if attempt < 8 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    init_owner(&me, &dir_meta, &node);
    let location = vfs.resolve(&dir, &name, false);
    let _ = dir.node().detach(&name);
    let location = location?;
    let kept = if flags & O_EXCL != 0 { flags & !O_TMPFILE_BIT } else { flags };
    Ok(Arc::new(VfsFile::new(location, (kept & 0o37777777 & !O_DIRECTORY_BIT) as u32)))
}

/// The bit of `O_TMPFILE` beyond `O_DIRECTORY`.
const O_TMPFILE_BIT: u64 = 0o20000000;
const O_DIRECTORY_BIT: u64 = 0o200000;

/// `openat` on a path the kernel holds: the open file, with every check
/// `openat` makes (used by core dumps too).
pub fn open_path(p: &Process, dirfd: u64, path: &str, flags: u64, mode: u64) -> Result<Arc<dyn File>, Errno> {
    open_path_in(p, None, dirfd, path, flags, mode)
}

/// [`open_path`] with `root` (if any) as the root directory for the path
/// (openat2's RESOLVE_IN_ROOT).
fn open_path_in(p: &Process, root: Option<Location>, dirfd: u64, path: &str, flags: u64, mode: u64) -> Result<Arc<dyn File>, Errno> {
    let in_root = root.clone();
    let root_dir = || in_root.clone().unwrap_or_else(|| p.fs.root());
    if flags & O_ACCMODE as u64 == 3 {
        return Err(Errno::EINVAL);
    }
    if flags & O_TMPFILE == O_TMPFILE {
        return open_tmpfile(p, root_dir(), dirfd, path, flags, mode);
    }
    if flags & O_TMPFILE_BIT != 0 {
        return Err(Errno::EINVAL); // __O_TMPFILE without O_DIRECTORY
    }
    // O_PATH names a file and opens it for nothing: every other flag but
    // these is ignored (no O_CREAT, no O_TRUNC, no access mode), as Linux.
    let flags = if flags & O_PATH != 0 { flags & (O_PATH | O_CLOEXEC | O_DIRECTORY | O_NOFOLLOW) } else { flags };
    let vfs = fs::vfs()?;
    let base = match &root {
        Some(r) => r.clone(),
        None => base_dir(p, dirfd, path)?,
    };
    let me = who(p);
    let mut created = false;
    // A /proc/PID/fd/N link opens the file it stands for again (even one
    // with no name: a memfd, an unlinked file), as Linux's magic links.
    // That walk follows every link, as the open below does: where it
    // ended on no link, its answer is the open's (no second walk).
    let mut walked = None;
    let linked = if flags & O_NOFOLLOW == 0 {
        match vfs.resolve_keeping(&root_dir(), &base, path, &crate::procfs::is_magic_link, &me) {
            Ok(location) => match crate::procfs::file_of_link(location.node()) {
                Some(file) => Some(file),
                // (A magic link without a file, such as /proc/self/exe,
                // is followed by the walk below.)
                None => {
                    if location.node().kind() != FileType::Symlink {
                        walked = Some(location);
                    }
                    None
                }
            },
            Err(_) => None,
        }
    } else {
        None
    };
    // A magic link names a file that exists: O_CREAT | O_EXCL is EEXIST.
    if linked.is_some() && flags & O_CREAT != 0 && flags & O_EXCL != 0 {
        return Err(Errno::EEXIST);
    }
    let reopened = match linked {
        None => None,
        Some(file) => match file.location() {
            Some(location) => Some(location),
            None => {
                // A file with no name: a pipe end opens a new end of its
                // pipe, a device its node in /dev (the console terminal:
                // /dev/console); anything else ENXIO, as Linux.
                if flags & O_PATH == 0
                    && let Some(reopened) = file.reopen(flags, &p.interrupt_check())
                {
                    return if flags & O_DIRECTORY != 0 { Err(Errno::ENOTDIR) } else { reopened };
                }
                let device = fs::device_node_of(&*file).ok_or(Errno::ENXIO)?;
                Some(vfs.resolve_in(&root_dir(), &root_dir(), &device, true, &me)?)
            }
        },
    };
    let location = if let Some(location) = reopened {
        location
    } else if flags & O_CREAT != 0 {
        let root = root_dir();
        let (parent, name) = vfs.resolve_parent_in(&root, &base, path, &me)?;
        match vfs.resolve_in(&root, &parent, &name, flags & O_NOFOLLOW == 0, &me).map_err(Errno::from) {
            Ok(_) if flags & O_EXCL != 0 => return Err(Errno::EEXIST),
            Ok(existing) => existing,
            Err(Errno::ENOENT) if path.ends_with('/') => return Err(Errno::EISDIR),
            Err(Errno::ENOENT) => {
                if name == "." || name == ".." {
                    return Err(Errno::EISDIR);
                }
                writable_fs(&parent)?;
                let parent_meta = parent.node().metadata();
                check(&me, &parent_meta, MAY_WRITE | MAY_EXEC)?;
                let perm = (mode as u32) & 0o7777 & !p.fs.umask();
                let node = parent.node().create(&name, FileType::Regular, perm, 0)?;
                init_owner(&me, &parent_meta, &node);
                crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, false);
                created = true;
                vfs.resolve(&parent, &name, false)?
            }
            Err(e) => return Err(e),
        }
    } else if let Some(location) = walked {
        location
    } else {
        vfs.resolve_in(&root_dir(), &base, path, flags & O_NOFOLLOW == 0, &me)?
    };
    let meta = location.node().metadata();
    if meta.kind == FileType::Symlink && flags & O_PATH == 0 {
        return Err(Errno::ELOOP); // O_NOFOLLOW on a link
    }
    if flags & O_DIRECTORY != 0 && meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    if meta.kind == FileType::Directory && (flags & O_ACCMODE as u64 != 0 || flags & O_CREAT != 0) {
        return Err(Errno::EISDIR);
    }
    // Writing a file or directory of a read-only mount: EROFS.
    let wants_write = flags & O_ACCMODE as u64 != 0 || flags & O_TRUNC != 0;
    if wants_write && flags & O_PATH == 0 && matches!(meta.kind, FileType::Regular | FileType::Directory | FileType::Symlink) {
        writable_fs(&location)?;
    }
    // The creator of a file may open it whatever its mode; others need the
    // rights the access mode (and O_TRUNC) asks for.
    if !created && flags & O_PATH == 0 {
        let mut mask = match flags & O_ACCMODE as u64 {
            0 => MAY_READ,
            1 => MAY_WRITE,
            _ => MAY_READ | MAY_WRITE,
        };
        if flags & O_TRUNC != 0 {
            mask |= MAY_WRITE;
        }
        check(&me, &meta, mask)?;
    }
    // O_NOATIME: the file's owner or root only.
    if flags & O_NOATIME != 0 && flags & O_PATH == 0 && !me.is_root() && me.uid != meta.uid {
        return Err(Errno::EPERM);
    }
    if flags & O_TRUNC != 0 && meta.kind == FileType::Regular && flags & O_ACCMODE as u64 != 0 {
        location.node().truncate(0)?;
        crate::pagecache::truncated(location.node(), 0);
        if !created {
            crate::inotify::file_event(&location, crate::inotify::mask::MODIFY);
        }
    }
    let events = if flags & O_PATH == 0 { Some(location.clone()) } else { None };
    let file = open_location(p, location, flags)?;
    if let Some(location) = events {
        crate::inotify::file_event(&location, crate::inotify::mask::OPEN);
    }
    Ok(file)
}

pub(super) fn getdents64(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let mut data = vec![0u8; (count as usize).min(IO_CHUNK)];
    let n = file.read_dir(&mut data)? as usize;
    p.memory.write(buf, data.get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

/// `getdents`: the old `struct linux_dirent` (the type in the record's
/// last byte, the name right after the length). Each record has the same
/// length as its `linux_dirent64` form, so the entries are rewritten in
/// place.
pub(super) fn getdents(p: &mut Process, fd: u64, buf: u64, count: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let mut data = vec![0u8; (count as usize).min(IO_CHUNK)];
    let n = file.read_dir(&mut data)? as usize;
    let mut at = 0usize;
    while at + 19 <= n {
        let reclen = usize::from(u16::from_le_bytes([data[at + 16], data[at + 17]]));
        let Some(record) = data.get_mut(at..at + reclen) else { break };
        if reclen < 20 {
            break;
        }
        let kind = record[18];
        // name (NUL-terminated) moves down one byte; the type goes last.
        record.copy_within(19.., 18);
        record[reclen - 1] = kind;
        at += reclen;
    }
    p.memory.write(buf, data.get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

pub(super) fn lseek(p: &mut Process, fd: u64, offset: u64, whence: u64) -> SysResult {
    p.files.get(fd)?.seek(offset as i64, whence as u32)
}

pub(super) fn pread64(p: &mut Process, fd: u64, buf: u64, count: u64, offset: u64) -> SysResult {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    // All that was asked for (positioned reads do not block).
    super::io::read_to_user(p, buf, count, true, true, |data, done| file.read_at(offset.checked_add(done).ok_or(Errno::EINVAL)?, data))
}

pub(super) fn pwrite64(p: &mut Process, fd: u64, buf: u64, count: u64, offset: u64) -> SysResult {
    if (offset as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    let count = super::io::fsize_room(p, &file, Some(offset), count)?;
    let mut done = 0u64;
    while done < count {
        let len = ((count - done) as usize).min(IO_CHUNK);
        let mut data = vec![0u8; len];
        p.memory.read(buf.checked_add(done).ok_or(Errno::EFAULT)?, &mut data)?;
        let at = offset.checked_add(done).ok_or(Errno::EINVAL)?;
        let n = match file.write_at(at, &data) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += n;
        if (n as usize) < len {
            break;
        }
    }
    Ok(done)
}

/// `AT_NO_AUTOMOUNT`: accepted by the stat calls; nothing here automounts.
const AT_NO_AUTOMOUNT: u64 = 0x800;
/// `AT_STATX_SYNC_TYPE`: statx's sync bits (both set is invalid).
const AT_STATX_SYNC_TYPE: u64 = 0x6000;
/// `STATX__RESERVED`: a mask bit kept for future extension.
const STATX_RESERVED: u64 = 0x8000_0000;

pub(super) fn newfstatat(p: &mut Process, dirfd: u64, path: u64, buf: u64, flags: u64) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    let meta = if name.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd as i32 != AT_FDCWD {
        p.files.get(dirfd)?.stat()
    } else {
        lookup(p, dirfd, &name, flags)?.node().metadata()
    };
    p.memory.write(buf, &super::io::stat_bytes(&meta))?;
    Ok(0)
}

pub(super) fn statx(p: &mut Process, dirfd: u64, path: u64, flags: u64, mask: u64, buf: u64) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE) != 0
        || flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE
        || mask & STATX_RESERVED != 0
    {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    let meta = if name.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd as i32 != AT_FDCWD {
        p.files.get(dirfd)?.stat()
    } else {
        lookup(p, dirfd, &name, flags)?.node().metadata()
    };
    let mut b = [0u8; 256];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &0x7ffu32.to_le_bytes()); // STATX_BASIC_STATS
    put(4, &4096u32.to_le_bytes());
    put(16, &meta.nlink.to_le_bytes());
    put(20, &meta.uid.to_le_bytes());
    put(24, &meta.gid.to_le_bytes());
    put(28, &(meta.mode() as u16).to_le_bytes());
    put(32, &meta.ino.to_le_bytes());
    put(40, &meta.size.to_le_bytes());
    put(48, &meta.blocks().to_le_bytes());
    for (at, t) in [(64, meta.atime), (80, meta.ctime), (96, meta.ctime), (112, meta.mtime)] {
        put(at, &t.sec.to_le_bytes());
        put(at + 8, &t.nsec.to_le_bytes());
    }
    put(128, &((meta.rdev >> 8) as u32).to_le_bytes());
    put(132, &((meta.rdev & 0xff) as u32).to_le_bytes());
    put(140, &(meta.dev as u32).to_le_bytes());
    p.memory.write(buf, &b)?;
    Ok(0)
}

pub(super) fn mkdirat(p: &mut Process, dirfd: u64, path: u64, mode: u64) -> SysResult {
    let path = path_arg(p, path)?;
    let (parent, name) = parent_of(p, dirfd, &path)?;
    if name == "." || name == ".." {
        return Err(Errno::EEXIST);
    }
    if parent.node().lookup(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_fs(&parent)?;
    let me = who(p);
    let parent_meta = parent.node().metadata();
    check(&me, &parent_meta, MAY_WRITE | MAY_EXEC)?;
    let perm = (mode as u32) & 0o7777 & !p.fs.umask();
    let node = parent.node().create(&name, FileType::Directory, perm, 0)?;
    init_owner(&me, &parent_meta, &node);
    crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, true);
    Ok(0)
}

pub(super) fn mknodat(p: &mut Process, dirfd: u64, path: u64, mode: u64, dev: u64) -> SysResult {
    let path = path_arg(p, path)?;
    let (parent, name) = parent_of(p, dirfd, &path)?;
    // No type bits is a regular file; directories and links are not made here.
    let kind = match FileType::from_mode(mode as u32) {
        _ if (mode as u32) & 0o170000 == 0 => FileType::Regular,
        Some(FileType::Directory | FileType::Symlink) | None => return Err(Errno::EINVAL),
        Some(kind) => kind,
    };
    let perm = (mode as u32) & 0o7777 & !p.fs.umask();
    // Device numbers: old-style 16-bit encoding (major << 8 | minor).
    let rdev = ((dev >> 8) & 0xfff) << 8 | (dev & 0xff);
    let me = who(p);
    // Device nodes need CAP_MKNOD.
    if matches!(kind, FileType::CharDevice | FileType::BlockDevice) && !me.is_root() {
        return Err(Errno::EPERM);
    }
    if parent.node().lookup(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_fs(&parent)?;
    let parent_meta = parent.node().metadata();
    check(&me, &parent_meta, MAY_WRITE | MAY_EXEC)?;
    let node = parent.node().create(&name, kind, perm, rdev)?;
    init_owner(&me, &parent_meta, &node);
    crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, false);
    Ok(0)
}

/// Makes the socket node an `AF_UNIX` `bind` names (`path`, relative to
/// the working directory): its (device, inode). EADDRINUSE when the name
/// exists, else the errors of `mknod`.
pub(super) fn make_socket_node(p: &Process, path: &str) -> Result<(u64, u64), Errno> {
    let (parent, name) = parent_of(p, AT_FDCWD as u64, path)?;
    if parent.node().lookup(&name).is_ok() || path.ends_with('/') {
        return Err(Errno::EADDRINUSE);
    }
    writable_fs(&parent)?;
    let me = who(p);
    let parent_meta = parent.node().metadata();
    check(&me, &parent_meta, MAY_WRITE | MAY_EXEC)?;
    let perm = 0o777 & !p.fs.umask();
    let node = parent.node().create(&name, FileType::Socket, perm, 0)?;
    init_owner(&me, &parent_meta, &node);
    crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, false);
    let meta = node.metadata();
    Ok((meta.dev, meta.ino))
}

/// The socket node an `AF_UNIX` `connect` or `sendto` names: its (device,
/// inode). The caller needs write permission on it (EACCES); a node that
/// is not a socket is ECONNREFUSED, as on Linux.
pub(super) fn socket_node(p: &Process, path: &str) -> Result<(u64, u64), Errno> {
    let location = lookup(p, AT_FDCWD as u64, path, 0)?;
    let meta = location.node().metadata();
    check(&who(p), &meta, MAY_WRITE)?;
    if meta.kind != FileType::Socket {
        return Err(Errno::ECONNREFUSED);
    }
    Ok((meta.dev, meta.ino))
}

pub(super) fn unlinkat(p: &mut Process, dirfd: u64, path: u64, flags: u64) -> SysResult {
    if flags & !AT_REMOVEDIR != 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(p, path)?;
    let vfs = fs::vfs()?;
    let (parent, name) = parent_of(p, dirfd, &path)?;
    if parent.node().lookup(&name).is_ok() {
        writable_fs(&parent)?;
    }
    may_delete(p, &parent, &name)?;
    let victim = parent.node().lookup(&name).ok();
    if flags & AT_REMOVEDIR != 0 {
        vfs.rmdir(&parent, &name)?;
    } else {
        if path.ends_with('/') {
            return Err(Errno::EISDIR);
        }
        vfs.unlink(&parent, &name)?;
    }
    if let Some(node) = victim {
        removed(parent.node(), &name, &node);
    }
    Ok(0)
}

/// inotify, in Linux's order: a removed file's own watchers hear
/// IN_ATTRIB (its link count), the directory IN_DELETE, and with the last
/// link (or for a directory) the node's watchers IN_DELETE_SELF.
fn removed(parent: &NodeRef, name: &str, node: &NodeRef) {
    use crate::inotify::{self, mask};
    let meta = node.metadata();
    let dir = meta.kind == FileType::Directory;
    if !dir {
        inotify::self_event(node, mask::ATTRIB);
    }
    inotify::dir_event(parent, name, mask::DELETE, 0, dir);
    if dir || meta.nlink == 0 {
        inotify::self_event(node, mask::DELETE_SELF);
    }
}

/// May this process remove or move away `name` from `parent`? It needs
/// write and search permission on the directory and, in a sticky one, to
/// own the entry or the directory (EPERM otherwise, as Linux).
fn may_delete(p: &Process, parent: &Location, name: &str) -> Result<(), Errno> {
    let me = who(p);
    let dir = parent.node().metadata();
    let Ok(child) = parent.node().lookup(name) else { return Ok(()) }; // ENOENT comes from the operation
    check(&me, &dir, MAY_WRITE | MAY_EXEC)?;
    if !me.may_delete(&dir, &child.metadata()) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

const RENAME_NOREPLACE: u64 = 1;
const RENAME_EXCHANGE: u64 = 2;

pub(super) fn renameat2(p: &mut Process, olddir: u64, old: u64, newdir: u64, new: u64, flags: u64) -> SysResult {
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0 || flags == RENAME_NOREPLACE | RENAME_EXCHANGE {
        return Err(Errno::EINVAL);
    }
    let (old, new) = (path_arg(p, old)?, path_arg(p, new)?);
    let vfs = fs::vfs()?;
    let (old_parent, old_name) = parent_of(p, olddir, &old)?;
    let (new_parent, new_name) = parent_of(p, newdir, &new)?;
    // Linux's ext2 takes no rename flag but RENAME_NOREPLACE (EINVAL); so
    // does every disk file system served by a cell here.
    if flags & RENAME_EXCHANGE != 0 && crate::cellfs::mounted(old_parent.node().fs_node_id().0).is_some_and(|fs| !fs.in_memory()) {
        return Err(Errno::EINVAL);
    }
    if old_parent.node().lookup(&old_name).is_ok() {
        writable_fs(&old_parent)?;
        writable_fs(&new_parent)?;
    }
    if flags & RENAME_EXCHANGE != 0 {
        // Both entries must exist; both directories lose and gain one.
        let a = old_parent.node().lookup(&old_name).map_err(|_| Errno::ENOENT)?;
        let b = new_parent.node().lookup(&new_name).map_err(|_| Errno::ENOENT)?;
        may_delete(p, &old_parent, &old_name)?;
        may_delete(p, &new_parent, &new_name)?;
        vfs.exchange(&old_parent, &old_name, &new_parent, &new_name)?;
        use crate::inotify::{self, mask};
        for (node, from, from_name, to, to_name) in [(&a, &old_parent, &old_name, &new_parent, &new_name), (&b, &new_parent, &new_name, &old_parent, &old_name)] {
            let dir = node.metadata().kind == FileType::Directory;
            let cookie = inotify::cookie();
            inotify::dir_event(from.node(), from_name, mask::MOVED_FROM, cookie, dir);
            inotify::dir_event(to.node(), to_name, mask::MOVED_TO, cookie, dir);
        }
        if core::ptr::addr_eq(Arc::as_ptr(old_parent.node()), Arc::as_ptr(new_parent.node())) {
            inotify::renamed_within(old_parent.node());
        }
        return Ok(0);
    }
    if flags & RENAME_NOREPLACE != 0 && new_parent.node().lookup(&new_name).is_ok() {
        return Err(Errno::EEXIST);
    }
    may_delete(p, &old_parent, &old_name)?;
    if old_parent.node().lookup(&old_name).is_ok() {
        // The target directory is written even when nothing is replaced.
        check(&who(p), &new_parent.node().metadata(), MAY_WRITE | MAY_EXEC)?;
        may_delete(p, &new_parent, &new_name)?;
    }
    let moving = old_parent.node().lookup(&old_name).ok();
    let victim = new_parent.node().lookup(&new_name).ok().filter(|v| moving.as_ref().is_none_or(|m| !Arc::ptr_eq(m, v)));
    vfs.rename(&old_parent, &old_name, &new_parent, &new_name)?;
    if let Some(node) = moving {
        use crate::inotify::{self, mask};
        let dir = node.metadata().kind == FileType::Directory;
        let cookie = inotify::cookie();
        inotify::dir_event(old_parent.node(), &old_name, mask::MOVED_FROM, cookie, dir);
        inotify::dir_event(new_parent.node(), &new_name, mask::MOVED_TO, cookie, dir);
        if core::ptr::addr_eq(Arc::as_ptr(old_parent.node()), Arc::as_ptr(new_parent.node())) {
            inotify::renamed_within(old_parent.node());
        }
        inotify::self_event(&node, mask::MOVE_SELF);
        if let Some(victim) = victim {
            let meta = victim.metadata();
            if meta.kind == FileType::Directory || meta.nlink == 0 {
                inotify::self_event(&victim, mask::DELETE_SELF);
            }
        }
    }
    Ok(0)
}

pub(super) fn linkat(p: &mut Process, olddir: u64, old: u64, newdir: u64, new: u64, flags: u64) -> SysResult {
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let (old, new) = (path_arg(p, old)?, path_arg(p, new)?);
    let follow = if flags & AT_SYMLINK_FOLLOW != 0 { 0 } else { AT_SYMLINK_NOFOLLOW };
    // The file behind a descriptor (AT_EMPTY_PATH, or following a
    // /proc/PID/fd link): a file with no link left may get one only if it
    // was made by O_TMPFILE without O_EXCL (ENOENT otherwise).
    // Linking a descriptor by AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH
    // (ENOENT otherwise, as Linux).
    if flags & AT_EMPTY_PATH != 0 && old.is_empty() && !p.info.credentials().capable(crate::process::cap::DAC_READ_SEARCH) {
        return Err(Errno::ENOENT);
    }
    let behind = if old.is_empty() && flags & AT_EMPTY_PATH != 0 && dirfd_is_file(p, olddir) {
        Some(p.files.get(olddir)?)
    } else if flags & AT_SYMLINK_FOLLOW != 0 {
        lookup(p, olddir, &old, AT_SYMLINK_NOFOLLOW).ok().and_then(|l| crate::procfs::file_of_link(l.node()))
    } else {
        None
    };
    let source = match &behind {
        Some(file) => {
            let location = file.location().ok_or(Errno::ENOENT)?;
            if location.node().metadata().nlink == 0 && u64::from(file.status_flags()) & O_TMPFILE_BIT == 0 {
                return Err(Errno::ENOENT);
            }
            location
        }
        None => lookup(p, olddir, &old, follow | (flags & AT_EMPTY_PATH))?,
    };
    let vfs = fs::vfs()?;
    let (parent, name) = parent_of(p, newdir, &new)?;
    if parent.node().lookup(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_fs(&parent)?;
    check(&who(p), &parent.node().metadata(), MAY_WRITE | MAY_EXEC)?;
    vfs.link(source.node(), &parent, &name)?;
    crate::inotify::file_event(&source, crate::inotify::mask::ATTRIB);
    crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, false);
    Ok(0)
}

pub(super) fn symlinkat(p: &mut Process, target: u64, newdir: u64, path: u64) -> SysResult {
    let (target, path) = (path_arg(p, target)?, path_arg(p, path)?);
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let (parent, name) = parent_of(p, newdir, &path)?;
    if parent.node().lookup(&name).is_ok() {
        return Err(Errno::EEXIST);
    }
    writable_fs(&parent)?;
    let me = who(p);
    let parent_meta = parent.node().metadata();
    check(&me, &parent_meta, MAY_WRITE | MAY_EXEC)?;
    let node = parent.node().symlink(&name, &target)?;
    init_owner(&me, &parent_meta, &node);
    crate::inotify::dir_event(parent.node(), &name, crate::inotify::mask::CREATE, 0, false);
    Ok(0)
}

pub(super) fn readlinkat(p: &mut Process, dirfd: u64, path: u64, buf: u64, size: u64) -> SysResult {
    if size == 0 || size > i32::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    // /proc/self/exe until procfs exists.
    let target = if name == "/proc/self/exe" {
        p.info.exe.lock().clone()
    } else {
        // An empty path names the symbolic link dirfd was opened on
        // (O_PATH | O_NOFOLLOW); anything else there is ENOENT.
        let flags = if name.is_empty() { AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH } else { AT_SYMLINK_NOFOLLOW };
        let location = lookup(p, dirfd, &name, flags)?;
        if name.is_empty() && location.node().metadata().kind != FileType::Symlink {
            return Err(Errno::ENOENT);
        }
        location.node().read_link().map_err(|_| Errno::EINVAL)?
    };
    let n = target.len().min(size as usize);
    p.memory.write(buf, target.as_bytes().get(..n).unwrap_or(&[]))?;
    Ok(n as u64)
}

/// `location` if it is a directory the caller may search (ENOTDIR,
/// EACCES): what `chdir`, `fchdir` and `chroot` may move to.
fn enterable(p: &Process, location: Location) -> Result<Location, Errno> {
    let meta = location.node().metadata();
    if meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    check(&who(p), &meta, MAY_EXEC)?;
    Ok(location)
}

pub(super) fn chdir(p: &mut Process, path: u64) -> SysResult {
    let path = path_arg(p, path)?;
    let location = enterable(p, fs::vfs()?.resolve_in(&p.fs.root(), &p.fs.cwd(), &path, true, &who(p))?)?;
    p.fs.set_cwd(location);
    Ok(0)
}

/// `chroot(path)`: the directory becomes the process's `/` (its current
/// directory stays, as on Linux). Lookup errors first, then search
/// permission on it (EACCES), then root only (EPERM).
pub(super) fn chroot(p: &mut Process, path: u64) -> SysResult {
    let path = path_arg(p, path)?;
    let location = enterable(p, fs::vfs()?.resolve_in(&p.fs.root(), &p.fs.cwd(), &path, true, &who(p))?)?;
    if !p.info.credentials().capable(crate::process::cap::SYS_CHROOT) {
        return Err(Errno::EPERM);
    }
    p.fs.set_root(location);
    Ok(0)
}

pub(super) fn fchdir(p: &mut Process, fd: u64) -> SysResult {
    let location = enterable(p, p.files.get(fd)?.location().ok_or(Errno::ENOTDIR)?)?;
    p.fs.set_cwd(location);
    Ok(0)
}

pub(super) fn getcwd(p: &mut Process, buf: u64, size: u64) -> SysResult {
    let mut path = p.fs.cwd_path().into_bytes();
    path.push(0);
    // Linux's d_path works in one page: a longer path is ENAMETOOLONG,
    // whatever the buffer.
    if path.len() > 4096 {
        return Err(Errno::ENAMETOOLONG);
    }
    if (size as usize) < path.len() {
        return Err(Errno::ERANGE);
    }
    p.memory.write(buf, &path)?;
    Ok(path.len() as u64)
}

pub(super) fn fchmodat(p: &mut Process, dirfd: u64, path: u64, mode: u64) -> SysResult {
    let name = path_arg(p, path)?;
    chmod_node(p, &lookup(p, dirfd, &name, 0)?, mode)
}

/// `MAX_HANDLE_SZ`.
const MAX_HANDLE_SZ: u32 = 128;
/// Bytes of a handle here: inode number (8) and a check word (4).
const HANDLE_BYTES: u32 = 12;
/// `FILEID_INO32_GEN`-like type tag of the handles made here.
const HANDLE_TYPE: i32 = 1;
/// Most handles remembered (the oldest are forgotten: ESTALE).
const MAX_HANDLES: usize = 4096;

/// Files named by `name_to_handle_at`, by (device, inode): where they
/// are, so that `open_by_handle_at` can open them again.
static HANDLES: framekernel::sync::SpinLock<alloc::collections::VecDeque<((u64, u64), Location)>> =
    framekernel::sync::SpinLock::new(alloc::collections::VecDeque::new());

fn handle_check(dev: u64, ino: u64) -> u32 {
    ((dev.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ino) >> 17) as u32
}

/// `name_to_handle_at(dirfd, path, handle, mount_id, flags)`: a
/// `struct file_handle` for the file (EOVERFLOW with the size needed
/// when `handle_bytes` is too small) and its mount id.
pub(super) fn name_to_handle_at(p: &mut Process, dirfd: u64, path: u64, handle: u64, mount_id: u64, flags: u64) -> SysResult {
    const AT_HANDLE_FID: u64 = 0x200;
    if flags & !(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH | AT_HANDLE_FID) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    let follow = if flags & AT_SYMLINK_FOLLOW != 0 { 0 } else { AT_SYMLINK_NOFOLLOW };
    let location = lookup(p, dirfd, &name, follow | (flags & AT_EMPTY_PATH))?;
    let mut head = [0u8; 8];
    p.memory.read(handle, &mut head)?;
    let room = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if room > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    if room < HANDLE_BYTES {
        p.memory.write(handle, &HANDLE_BYTES.to_le_bytes())?;
        return Err(Errno::EOVERFLOW);
    }
    let meta = location.node().metadata();
    let mut out = [0u8; 8 + HANDLE_BYTES as usize];
    out[0..4].copy_from_slice(&HANDLE_BYTES.to_le_bytes());
    out[4..8].copy_from_slice(&HANDLE_TYPE.to_le_bytes());
    out[8..16].copy_from_slice(&meta.ino.to_le_bytes());
    out[16..20].copy_from_slice(&handle_check(meta.dev, meta.ino).to_le_bytes());
    p.memory.write(handle, &out)?;
    p.memory.write(mount_id, &(meta.dev as i32).to_le_bytes())?;
    let mut handles = HANDLES.lock();
    // Files whose last name went are let go (their memory with them).
    handles.retain(|(key, l)| *key != (meta.dev, meta.ino) && (l.node().metadata().nlink > 0 || l.node().metadata().kind == FileType::Directory));
    if handles.len() >= MAX_HANDLES {
        handles.pop_front();
    }
    handles.push_back(((meta.dev, meta.ino), location));
    Ok(0)
}

/// `open_by_handle_at(mount_fd, handle, flags)`: CAP_DAC_READ_SEARCH;
/// the file a handle made here names, on the file system of `mount_fd`
/// (ESTALE if it is not there, or no longer exists), opened with the
/// usual checks.
pub(super) fn open_by_handle_at(p: &mut Process, mount_fd: u64, handle: u64, flags: u64) -> SysResult {
    // Linux's order: privilege, the handle, then the mount descriptor.
    if !p.info.credentials().capable(crate::process::cap::DAC_READ_SEARCH) {
        return Err(Errno::EPERM);
    }
    let mut head = [0u8; 8];
    p.memory.read(handle, &mut head)?;
    let bytes = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if bytes == 0 || bytes > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    let mut body = alloc::vec![0u8; bytes as usize];
    p.memory.read(handle + 8, &mut body)?;
    let mount = if mount_fd as i32 == AT_FDCWD { p.fs.cwd() } else { p.files.get(mount_fd)?.location().ok_or(Errno::ESTALE)? };
    let kind = i32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if bytes != HANDLE_BYTES || kind != HANDLE_TYPE {
        return Err(Errno::ESTALE);
    }
    let ino = u64::from_le_bytes(body.get(0..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let check_word = u32::from_le_bytes(body.get(8..12).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
    let dev = mount.node().metadata().dev;
    if check_word != handle_check(dev, ino) {
        return Err(Errno::ESTALE);
    }
    let location = HANDLES.lock().iter().find(|(key, _)| *key == (dev, ino)).map(|(_, l)| l.clone()).ok_or(Errno::ESTALE)?;
    let meta = location.node().metadata();
    if meta.nlink == 0 && meta.kind != FileType::Directory {
        return Err(Errno::ESTALE);
    }
    if meta.kind == FileType::Symlink && flags & O_PATH == 0 {
        return Err(Errno::ELOOP);
    }
    if meta.kind == FileType::Directory && flags & O_ACCMODE as u64 != 0 {
        return Err(Errno::EISDIR);
    }
    if flags & O_PATH == 0 {
        let mask = match flags & O_ACCMODE as u64 {
            0 => MAY_READ,
            1 => MAY_WRITE,
            _ => MAY_READ | MAY_WRITE,
        };
        check(&who(p), &meta, mask)?;
    }
    let file = open_location(p, location, flags)?;
    p.files.insert(file, 0, flags & O_CLOEXEC != 0)
}

/// True when `dirfd` is an open descriptor (not AT_FDCWD).
fn dirfd_is_file(p: &Process, dirfd: u64) -> bool {
    dirfd as i32 != AT_FDCWD && p.files.get(dirfd).is_ok()
}

/// The file of a descriptor that is open for something (not `O_PATH`).
fn opened_location(p: &Process, fd: u64) -> Result<Location, Errno> {
    let file = p.files.get(fd)?;
    if file.status_flags() & fs::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    file.location().ok_or(Errno::EBADF)
}

pub(super) fn fchmod(p: &mut Process, fd: u64, mode: u64) -> SysResult {
    let location = opened_location(p, fd)?;
    chmod_node(p, &location, mode)
}

/// `chmod`: the owner or the superuser (EPERM otherwise).
fn chmod_node(p: &Process, location: &Location, mode: u64) -> SysResult {
    let node = location.node();
    writable_fs(location)?;
    let me = who(p);
    let meta = node.metadata();
    if !me.owns(&meta) {
        return Err(Errno::EPERM);
    }
    node.set_perm(me.chmod_bits(&meta, mode as u32));
    crate::inotify::file_event(location, crate::inotify::mask::ATTRIB);
    Ok(0)
}

/// `chown`: only the superuser gives files away; the owner may change the
/// group to one of its own. The set-id bits of a regular file go.
fn chown_node(p: &Process, location: &Location, uid: u64, gid: u64) -> SysResult {
    let node = location.node();
    writable_fs(location)?;
    let me = who(p);
    let meta = node.metadata();
    let (uid, gid) = (uid as u32, gid as u32);
    if !me.may_chown(&meta, uid, gid) {
        return Err(Errno::EPERM);
    }
    let new_uid = if uid == u32::MAX { meta.uid } else { uid };
    let new_gid = if gid == u32::MAX { meta.gid } else { gid };
    node.set_owner(new_uid, new_gid);
    if uid != u32::MAX || gid != u32::MAX {
        node.set_perm(tessera_vfs::perm::after_chown(&meta));
    }
    crate::inotify::file_event(location, crate::inotify::mask::ATTRIB);
    Ok(0)
}

pub(super) fn fchownat(p: &mut Process, dirfd: u64, path: u64, uid: u64, gid: u64, flags: u64) -> SysResult {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    chown_node(p, &lookup(p, dirfd, &name, flags)?, uid, gid)
}

pub(super) fn fchown(p: &mut Process, fd: u64, uid: u64, gid: u64) -> SysResult {
    let location = opened_location(p, fd)?;
    chown_node(p, &location, uid, gid)
}

pub(super) fn truncate(p: &mut Process, path: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    let location = lookup(p, AT_FDCWD as u64, &name, 0)?;
    let meta = location.node().metadata();
    if meta.kind == FileType::Directory {
        return Err(Errno::EISDIR);
    }
    writable_fs(&location)?;
    check(&who(p), &meta, MAY_WRITE)?;
    super::io::fsize_check(p, len)?;
    crate::memfd::check_resize(location.node(), len)?;
    location.node().truncate(len)?;
    crate::pagecache::truncated(location.node(), len);
    crate::inotify::file_event(&location, crate::inotify::mask::MODIFY);
    Ok(0)
}

pub(super) fn ftruncate(p: &mut Process, fd: u64, len: u64) -> SysResult {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    let location = file.location().ok_or(Errno::EINVAL)?;
    if file.status_flags() & fs::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    if file.status_flags() & O_ACCMODE == 0 {
        return Err(Errno::EINVAL); // not open for writing (Linux: EINVAL or EBADF)
    }
    super::io::fsize_check(p, len)?;
    crate::memfd::check_resize(location.node(), len)?;
    location.node().truncate(len)?;
    crate::pagecache::truncated(location.node(), len);
    crate::inotify::file_event(&location, crate::inotify::mask::MODIFY);
    Ok(0)
}

const FALLOC_FL_KEEP_SIZE: u64 = 1;
const FALLOC_FL_PUNCH_HOLE: u64 = 2;
const FALLOC_FL_ZERO_RANGE: u64 = 0x10;
/// `statfs`'s `f_type` of ext2.
const EXT2_MAGIC: u64 = 0xef53;

/// `fallocate(fd, mode, offset, len)`: memory-backed files need no space
/// reserved, so mode 0 only extends the file, `FALLOC_FL_KEEP_SIZE` does
/// nothing more, `PUNCH_HOLE` (with `KEEP_SIZE`) and `ZERO_RANGE` zero the
/// bytes; collapsing and inserting ranges are EOPNOTSUPP, and so is all
/// of it on ext2 (as Linux's ext2 driver has none).
pub(super) fn fallocate(p: &mut Process, fd: u64, mode: u64, offset: u64, len: u64) -> SysResult {
    let (offset, len) = (offset as i64, len as i64);
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    let end = offset.checked_add(len).ok_or(Errno::EFBIG)? as u64;
    let file = p.files.get(fd)?;
    if file.status_flags() & O_ACCMODE == 0 {
        return Err(Errno::EBADF);
    }
    let kind = file.stat().kind;
    if kind == FileType::Fifo {
        return Err(Errno::ESPIPE);
    }
    let location = file.location().ok_or(Errno::ENODEV)?;
    if kind != FileType::Regular {
        return Err(if kind == FileType::Directory { Errno::EISDIR } else { Errno::ENODEV });
    }
    let node = location.node();
    // Linux's ext2 has no fallocate at all.
    if node.fs_stats().magic == EXT2_MAGIC {
        return Err(Errno::EOPNOTSUPP);
    }
    let size = node.metadata().size;
    writable_fs(&location)?;
    if mode & FALLOC_FL_KEEP_SIZE == 0 && end > size {
        // Growing: RLIMIT_FSIZE and a memfd's F_SEAL_GROW apply.
        super::io::fsize_check(p, end)?;
        crate::memfd::check_resize(node, end)?;
    }
    match mode {
        0 | FALLOC_FL_KEEP_SIZE => {}
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE || m & !FALLOC_FL_KEEP_SIZE == FALLOC_FL_ZERO_RANGE => {
            let zero_end = if m & FALLOC_FL_KEEP_SIZE != 0 { end.min(size) } else { end };
            let mut at = offset as u64;
            let zeros = vec![0u8; IO_CHUNK];
            while at < zero_end {
                let n = ((zero_end - at) as usize).min(IO_CHUNK);
                file.write_at(at, zeros.get(..n).unwrap_or(&[]))?;
                at += n as u64;
            }
        }
        FALLOC_FL_PUNCH_HOLE => return Err(Errno::EOPNOTSUPP), // needs KEEP_SIZE
        _ => return Err(Errno::EOPNOTSUPP),
    }
    if mode & FALLOC_FL_KEEP_SIZE == 0 && end > node.metadata().size {
        node.truncate(end)?;
    }
    Ok(0)
}

pub(super) fn faccessat(p: &mut Process, dirfd: u64, path: u64, mode: u64, flags: u64) -> SysResult {
    if mode & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_EACCESS) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    // access(2) asks with the real ids (AT_EACCESS: the effective ones),
    // also while walking the path.
    let credentials = p.info.credentials();
    let me = if flags & AT_EACCESS != 0 { credentials.identity() } else { credentials.real_identity() };
    let location = if name.is_empty() {
        lookup(p, dirfd, &name, flags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH))?
    } else {
        fs::vfs()?.resolve_in(&p.fs.root(), &base_dir(p, dirfd, &name)?, &name, flags & AT_SYMLINK_NOFOLLOW == 0, &me)?
    };
    let meta = location.node().metadata();
    // W_OK on a read-only mount: EROFS for files, directories and links.
    if mode & 2 != 0 && matches!(meta.kind, FileType::Regular | FileType::Directory | FileType::Symlink) {
        writable_fs(&location)?;
    }
    check(&me, &meta, mode as u32)?;
    Ok(0)
}

pub(super) fn umask(p: &mut Process, mask: u64) -> SysResult {
    Ok(u64::from(p.fs.swap_umask(mask as u32)))
}

const UTIME_NOW: i64 = 0x3fff_ffff;
const UTIME_OMIT: i64 = 0x3fff_fffe;

pub(super) fn utimensat(p: &mut Process, dirfd: u64, path: u64, times: u64, flags: u64) -> SysResult {
    let location = if path == 0 {
        if dirfd as i32 == AT_FDCWD {
            return Err(Errno::EFAULT);
        }
        p.files.get(dirfd)?.location().ok_or(Errno::EINVAL)?
    } else {
        let name = path_arg(p, path)?;
        lookup(p, dirfd, &name, flags)?
    };
    let now = fs::now();
    let (atime, mtime) = if times == 0 {
        (Some(now), Some(now))
    } else {
        let mut raw = [0u8; 32];
        p.memory.read(times, &mut raw)?;
        let field = |at: usize| i64::from_le_bytes(raw.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let pick = |sec: i64, nsec: i64| -> Result<Option<Timespec>, Errno> {
            match nsec {
                UTIME_OMIT => Ok(None),
                UTIME_NOW => Ok(Some(now)),
                n if (0..1_000_000_000).contains(&n) => Ok(Some(Timespec { sec, nsec: n as u32 })),
                _ => Err(Errno::EINVAL),
            }
        };
        (pick(field(0), field(8))?, pick(field(16), field(24))?)
    };
    let only_now = times == 0 || (atime.is_none_or(|t| t == now) && mtime.is_none_or(|t| t == now));
    apply_times(p, &location, atime, mtime, only_now)
}

/// Sets a file's times (None keeps one). Setting them to now needs
/// ownership or write permission; any other time ownership (EPERM), as
/// Linux.
fn apply_times(p: &Process, location: &Location, atime: Option<Timespec>, mtime: Option<Timespec>, only_now: bool) -> SysResult {
    let me = who(p);
    writable_fs(location)?;
    let meta = location.node().metadata();
    if !me.owns(&meta) {
        if !only_now {
            return Err(Errno::EPERM);
        }
        check(&me, &meta, MAY_WRITE)?;
    }
    location.node().set_times(atime, mtime);
    crate::inotify::file_event(location, crate::inotify::mask::ATTRIB);
    Ok(0)
}

/// `utime(path, utimbuf)`, `utimes(path, timeval[2])` and
/// `futimesat(dirfd, path, timeval[2])`: the older forms of `utimensat`
/// (`unit` 0 for whole seconds, 1000 ns for microseconds); a null times
/// pointer sets both to now.
pub(super) fn utimes(p: &mut Process, dirfd: u64, path: u64, times: u64, unit: u64) -> SysResult {
    let name = path_arg(p, path)?;
    let location = lookup(p, dirfd, &name, 0)?;
    if times == 0 {
        let now = fs::now();
        return apply_times(p, &location, Some(now), Some(now), true);
    }
    let mut raw = [0u8; 32];
    let size = if unit == 0 { 16 } else { 32 };
    p.memory.read(times, raw.get_mut(..size).unwrap_or(&mut []))?;
    let field = |at: usize| i64::from_le_bytes(raw.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let time = |index: usize| -> Result<Timespec, Errno> {
        if unit == 0 {
            return Ok(Timespec { sec: field(index * 8), nsec: 0 });
        }
        let usec = field(index * 16 + 8);
        if !(0..1_000_000).contains(&usec) {
            return Err(Errno::EINVAL);
        }
        Ok(Timespec { sec: field(index * 16), nsec: (usec * 1000) as u32 })
    };
    apply_times(p, &location, Some(time(0)?), Some(time(1)?), false)
}

pub(super) fn statfs(p: &mut Process, path: u64, buf: u64) -> SysResult {
    let name = path_arg(p, path)?;
    let location = lookup(p, AT_FDCWD as u64, &name, 0)?;
    write_statfs(p, location.node().fs_stats(), buf)
}

pub(super) fn fstatfs(p: &mut Process, fd: u64, buf: u64) -> SysResult {
    let file = p.files.get(fd)?;
    // Pipes and devices outside the tree: an empty in-memory file system.
    let stats = file.location().map(|l| l.node().fs_stats()).unwrap_or_default();
    write_statfs(p, stats, buf)
}

/// `ustat(dev, buf)`: free blocks and inodes of the mounted file system
/// whose device number is `dev` (EINVAL if none): `struct ustat`.
pub(super) fn ustat(p: &mut Process, dev: u64, buf: u64) -> SysResult {
    let dev = dev as u32;
    let vfs = fs::vfs()?;
    let root = p.fs.root();
    let mut paths: alloc::vec::Vec<String> = vfs.mount_list().into_iter().map(|(path, _, _)| path).collect();
    paths.insert(0, String::from("/"));
    let stats = paths
        .iter()
        .filter_map(|path| vfs.resolve_in(&root, &root, path, true, &tessera_vfs::Identity::root()).ok())
        .map(|location| location.node().clone())
        .find(|node| node.metadata().dev as u32 == dev)
        .map(|node| node.fs_stats())
        .ok_or(Errno::EINVAL)?;
    const BLOCK: u64 = 4096;
    let free = stats.capacity.saturating_sub(stats.used).min(framekernel::mm::frame_stats().free * BLOCK) / BLOCK;
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&(free.min(i32::MAX as u64) as i32).to_le_bytes());
    b[8..16].copy_from_slice(&stats.nodes.saturating_sub(stats.nodes_used).to_le_bytes());
    p.memory.write(buf, &b)?;
    Ok(0)
}

/// Writes a `struct statfs` for `stats`. Free space is also bounded by
/// free memory, since every file system here lives in RAM.
fn write_statfs(p: &mut Process, stats: tessera_vfs::FsStats, buf: u64) -> SysResult {
    let disk = stats.block_size != 0;
    let block = if disk { stats.block_size } else { 4096 };
    let free_ram = if disk { u64::MAX } else { framekernel::mm::frame_stats().free * block };
    let blocks = stats.capacity / block;
    let free = (stats.capacity.saturating_sub(stats.used)).min(free_ram) / block;
    let available = free.saturating_sub(stats.reserved / block);
    let free_nodes = stats.nodes.saturating_sub(stats.nodes_used);
    let mut b = [0u8; 120];
    let words: [(usize, u64); 9] = [
        (0, stats.magic),
        (8, block),       // f_bsize
        (16, blocks),     // f_blocks
        (24, free),       // f_bfree
        (32, available),  // f_bavail
        (40, stats.nodes),
        (48, free_nodes),
        (64, tessera_vfs::MAX_NAME as u64),
        (72, block), // f_frsize
    ];
    for (at, value) in words {
        if let Some(dst) = b.get_mut(at..at + 8) {
            dst.copy_from_slice(&value.to_le_bytes());
        }
    }
    p.memory.write(buf, &b)?;
    Ok(0)
}

/// The extended-attribute calls (`*xattr`, numbers 188-199): no file here
/// has extended attributes and none can be set, as on a file system
/// without xattr support: get gives ENODATA, list an empty list, set and
/// remove EOPNOTSUPP — after the file itself was found (ENOENT, EBADF).
const XATTR_CREATE: u64 = 1;
const XATTR_REPLACE: u64 = 2;
/// Longest attribute name and value, and list (Linux's limits).
const XATTR_NAME_MAX: usize = 255;
const XATTR_SIZE_MAX: usize = 65536;
/// Most bytes of names and values one file keeps (kernel memory).
const XATTR_NODE_MAX: usize = 64 * 1024;

/// The node a `*xattr` call names: by descriptor (`f*`), by path without
/// following a final link (`l*`), or by path.
fn xattr_target(p: &mut Process, number: u64, target: u64) -> Result<Location, Errno> {
    if matches!(number, 190 | 193 | 196 | 199) {
        let file = p.files.get(target)?;
        if file.status_flags() & fs::O_PATH != 0 {
            return Err(Errno::EBADF);
        }
        return file.location().ok_or(Errno::EOPNOTSUPP);
    }
    let nofollow = matches!(number, 189 | 192 | 195 | 198);
    let name = path_arg(p, target)?;
    lookup(p, AT_FDCWD as u64, &name, if nofollow { AT_SYMLINK_NOFOLLOW } else { 0 })
}

/// Linux's xattr_permission and capability hooks, for a tmpfs (as Linux
/// 6.6 and later, which keep `user.*` there too): `security.*` readable
/// by all, written by root; `trusted.*` root only (others: EPERM to
/// write, ENODATA to read); `user.*` on regular files and directories
/// with read or write permission (in a sticky directory only its owner
/// or root writes); `system.*` (ACLs) and anything else EOPNOTSUPP.
fn xattr_access(p: &Process, node: &NodeRef, name: &str, write: bool) -> Result<(), Errno> {
    let creds = p.info.credentials();
    let root = creds.capable(crate::process::cap::SYS_ADMIN);
    if name.starts_with("security.") {
        return if write && !root { Err(Errno::EPERM) } else { Ok(()) };
    }
    if name.starts_with("trusted.") {
        return match (root, write) {
            (true, _) => Ok(()),
            (false, true) => Err(Errno::EPERM),
            (false, false) => Err(Errno::ENODATA),
        };
    }
    if name.starts_with("user.") {
        let meta = node.metadata();
        if meta.kind != FileType::Regular && meta.kind != FileType::Directory {
            return Err(if write { Errno::EPERM } else { Errno::ENODATA });
        }
        if write && meta.kind == FileType::Directory && meta.perm & 0o1000 != 0 && !root && creds.fsuid != meta.uid {
            return Err(Errno::EPERM);
        }
        return check(&who(p), &meta, if write { MAY_WRITE } else { MAY_READ });
    }
    Err(Errno::EOPNOTSUPP)
}

fn xattr_name(p: &Process, at: u64) -> Result<String, Errno> {
    let name = p.memory.read_c_string(at, XATTR_NAME_MAX + 1).map_err(|e| if e == Errno::ENAMETOOLONG { Errno::ERANGE } else { e })?;
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(Errno::ERANGE);
    }
    String::from_utf8(name).map_err(|_| Errno::EOPNOTSUPP)
}

/// The `*xattr` calls (188..=199): set, get, list and remove extended
/// attributes, by path, by path without following links, or by
/// descriptor.
pub(super) fn xattr(p: &mut Process, number: u64, a: [u64; 5]) -> SysResult {
    let [target, arg1, arg2, arg3, arg4] = a;
    match number {
        188..=190 => {
            let (name, value, size, flags) = (arg1, arg2, arg3, arg4);
            // As Linux: the file first, then the arguments.
            let location = xattr_target(p, number, target)?;
            writable_fs(&location)?;
            let node = location.node().clone();
            if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
                return Err(Errno::EINVAL);
            }
            let name = xattr_name(p, name)?;
            if size as usize > XATTR_SIZE_MAX {
                return Err(Errno::E2BIG);
            }
            let mut bytes = vec![0u8; size as usize];
            p.memory.read(value, &mut bytes)?;
            xattr_access(p, &node, &name, true)?;
            let store = node.xattrs().ok_or(Errno::EOPNOTSUPP)?;
            let mut attrs = store.lock();
            let exists = attrs.contains_key(&name);
            if flags & XATTR_CREATE != 0 && exists {
                return Err(Errno::EEXIST);
            }
            if flags & XATTR_REPLACE != 0 && !exists {
                return Err(Errno::ENODATA);
            }
            let used: usize = attrs.iter().filter(|(k, _)| **k != name).map(|(k, v)| k.len() + v.len()).sum();
            if used + name.len() + bytes.len() > XATTR_NODE_MAX {
                return Err(Errno::ENOSPC);
            }
            // All files' attributes together are bounded too (kernel memory).
            let old = attrs.get(&name).map_or(0, |v| name.len() + v.len());
            tessera_vfs::tmpfs::charge_xattrs((name.len() + bytes.len()) as i64 - old as i64)?;
            attrs.insert(name, bytes);
            drop(attrs);
            crate::inotify::self_event(&node, crate::inotify::mask::ATTRIB);
            Ok(0)
        }
        191..=193 => {
            let (name, value, size) = (arg1, arg2, arg3);
            let node = xattr_target(p, number, target)?.node().clone();
            let name = xattr_name(p, name)?;
            xattr_access(p, &node, &name, false)?;
            let store = node.xattrs().ok_or(Errno::EOPNOTSUPP)?;
            let data = store.lock().get(&name).cloned().ok_or(Errno::ENODATA)?;
            if size == 0 {
                return Ok(data.len() as u64);
            }
            if (size as usize).min(XATTR_SIZE_MAX) < data.len() {
                return Err(Errno::ERANGE);
            }
            p.memory.write(value, &data)?;
            Ok(data.len() as u64)
        }
        194..=196 => {
            let (list, size) = (arg1, arg2);
            let node = xattr_target(p, number, target)?.node().clone();
            let root = p.info.credentials().capable(crate::process::cap::SYS_ADMIN);
            let mut names = alloc::vec::Vec::new();
            if let Some(store) = node.xattrs() {
                for name in store.lock().keys().filter(|n| root || !n.starts_with("trusted.")) {
                    names.extend_from_slice(name.as_bytes());
                    names.push(0);
                }
            }
            if size == 0 {
                return Ok(names.len() as u64);
            }
            if (size as usize).min(XATTR_SIZE_MAX) < names.len() {
                return Err(Errno::ERANGE);
            }
            p.memory.write(list, &names)?;
            Ok(names.len() as u64)
        }
        _ => {
            let location = xattr_target(p, number, target)?;
            writable_fs(&location)?;
            let node = location.node().clone();
            let name = xattr_name(p, arg1)?;
            xattr_access(p, &node, &name, true)?;
            let store = node.xattrs().ok_or(Errno::EOPNOTSUPP)?;
            let value = store.lock().remove(&name).ok_or(Errno::ENODATA)?;
            tessera_vfs::tmpfs::charge_xattrs(-((name.len() + value.len()) as i64))?;
            crate::inotify::self_event(&node, crate::inotify::mask::ATTRIB);
            Ok(0)
        }
    }
}

const MFD_CLOEXEC: u64 = 1;
const MFD_ALLOW_SEALING: u64 = 2;
const MFD_HUGETLB: u64 = 4;
/// Longest memfd name: NAME_MAX less "memfd:".
const MFD_NAME_MAX: usize = 249;

/// `memfd_create(name, flags)`: an anonymous memory file open for reading
/// and writing (no huge pages here: MFD_HUGETLB is EINVAL).
pub(super) fn memfd_create(p: &mut Process, name: u64, flags: u64) -> SysResult {
    if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING) != 0 || flags & MFD_HUGETLB != 0 {
        return Err(Errno::EINVAL);
    }
    let name = p.memory.read_c_string(name, MFD_NAME_MAX + 2).map_err(|e| if e == Errno::ENAMETOOLONG { Errno::EINVAL } else { e })?;
    if name.len() > MFD_NAME_MAX || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    let name = String::from_utf8_lossy(&name).into_owned();
    let location = crate::memfd::create(&name, flags & MFD_ALLOW_SEALING != 0)?;
    // Its creator owns it (mode 0777, as Linux's).
    let me = who(p);
    location.node().set_owner(me.uid, me.gid);
    let file: Arc<dyn crate::files::File> = Arc::new(VfsFile::new(location, 2 | 0o100000)); // O_RDWR | O_LARGEFILE
    p.files.insert(file, 0, flags & MFD_CLOEXEC != 0)
}

const IN_NONBLOCK: u64 = 0o4000;
const IN_CLOEXEC: u64 = 0o2000000;

/// `inotify_init1(flags)` (and `inotify_init` with 0).
pub(super) fn inotify_init(p: &mut Process, flags: u64) -> SysResult {
    if flags & !(IN_NONBLOCK | IN_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = crate::inotify::Inotify::open(p.info.credentials().ruid, flags & IN_NONBLOCK != 0)?;
    p.files.insert(file, 0, flags & IN_CLOEXEC != 0)
}

/// `inotify_add_watch(fd, path, mask)`: the file must be readable by the
/// caller; IN_ONLYDIR wants a directory, IN_DONT_FOLLOW a final link
/// itself.
pub(super) fn inotify_add_watch(p: &mut Process, fd: u64, path: u64, wanted: u64) -> SysResult {
    use crate::inotify::mask;
    let wanted = wanted as u32;
    let file = p.files.get(fd)?;
    let instance = file.as_inotify().ok_or(Errno::EINVAL)?;
    if wanted & mask::ALL_EVENTS == 0 || wanted & (mask::MASK_ADD | mask::MASK_CREATE) == (mask::MASK_ADD | mask::MASK_CREATE) {
        return Err(Errno::EINVAL);
    }
    let name = path_arg(p, path)?;
    let follow = if wanted & mask::DONT_FOLLOW != 0 { AT_SYMLINK_NOFOLLOW } else { 0 };
    let location = lookup(p, AT_FDCWD as u64, &name, follow)?;
    let meta = location.node().metadata();
    if wanted & mask::ONLYDIR != 0 && meta.kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    check(&who(p), &meta, MAY_READ)?;
    instance.add_watch(location.node(), wanted).map(|wd| wd as u64)
}

pub(super) fn inotify_rm_watch(p: &mut Process, fd: u64, wd: u64) -> SysResult {
    let file = p.files.get(fd)?;
    let instance = file.as_inotify().ok_or(Errno::EINVAL)?;
    instance.remove_watch(wd as i32).map(|()| 0)
}
