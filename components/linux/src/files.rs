//! Open files of a process. Until the VFS exists there is one kind of file:
//! the console.

use crate::errno::{Errno, SysResult};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Most open files per process (`RLIMIT_NOFILE`).
pub const MAX_FILES: usize = 1024;

/// What `stat` reports (the VFS's metadata, also for non-VFS files).
pub use tessera_vfs::Metadata as FileStat;
use tessera_vfs::{FileType, Location, Timespec};

/// Metadata for a character device that is not in a file system.
pub fn device_stat(ino: u64, rdev: u64, perm: u32) -> FileStat {
    FileStat {
        dev: 0,
        ino,
        kind: FileType::CharDevice,
        perm,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: 0,
        rdev,
        atime: Timespec::default(),
        mtime: Timespec::default(),
        ctime: Timespec::default(),
    }
}

/// `lseek` origins.
pub const SEEK_SET: u32 = 0;
/// Relative to the current offset.
pub const SEEK_CUR: u32 = 1;
/// Relative to the end.
pub const SEEK_END: u32 = 2;

/// An open file.
pub trait File: Send + Sync {
    /// Reads into `buf`; returns the bytes read (0 at end of file). A read
    /// that blocks gives up with `EINTR` once `interrupted()` is true.
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult;
    /// Writes `buf`; returns the bytes written.
    fn write(&self, buf: &[u8]) -> SysResult;
    /// File status.
    fn stat(&self) -> FileStat;
    /// True for terminals (`TCGETS` and friends work).
    fn is_tty(&self) -> bool {
        false
    }
    /// Moves the offset (`lseek`); ESPIPE for streams.
    fn seek(&self, _offset: i64, _whence: u32) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Reads at `offset` without moving the offset (`pread64`).
    fn read_at(&self, _offset: u64, _buf: &mut [u8]) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Writes at `offset` without moving the offset (`pwrite64`).
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Where the file is in the tree (for `fchdir`, `*at` calls, `ftruncate`).
    fn location(&self) -> Option<Location> {
        None
    }
    /// Directory entries for `getdents64`: fills `buf`, returns bytes used.
    fn read_dir(&self, _buf: &mut [u8]) -> SysResult {
        Err(Errno::ENOTDIR)
    }
    /// `O_*` status flags (`fcntl(F_GETFL)`).
    fn status_flags(&self) -> u32 {
        2 // O_RDWR
    }
    /// Changes `O_APPEND`/`O_NONBLOCK` (`fcntl(F_SETFL)`).
    fn set_status_flags(&self, _flags: u32) {}
    /// Ready events now (`POLLIN`, `POLLOUT`, `POLLHUP`, `POLLERR`).
    fn poll(&self) -> u16 {
        POLLIN | POLLOUT
    }
}

/// Data to read.
pub const POLLIN: u16 = 0x1;
/// Room to write.
pub const POLLOUT: u16 = 0x4;
/// Error (a pipe with no reader).
pub const POLLERR: u16 = 0x8;
/// Hung up (a pipe with no writer).
pub const POLLHUP: u16 = 0x10;
/// Not an open descriptor.
pub const POLLNVAL: u16 = 0x20;

/// The kernel console (the serial port).
pub struct Console;

static CONSOLE_INPUT: tessera_sched::WaitQueue = tessera_sched::WaitQueue::new();

/// Called by the base when console bytes arrive: wakes blocked readers.
pub fn console_input_arrived() {
    CONSOLE_INPUT.wake_all();
    crate::syscall::poll::notify();
}

impl File for Console {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if buf.is_empty() {
            return Ok(0);
        }
        // Block until a byte arrives, then take up to a line.
        CONSOLE_INPUT.wait_until(|| {
            let mut count = 0;
            while let Some(byte) = framekernel::console::read_byte() {
                if let Some(slot) = buf.get_mut(count) {
                    *slot = if byte == b'\r' { b'\n' } else { byte };
                    count += 1;
                }
                if count == buf.len() || byte == b'\r' || byte == b'\n' {
                    break;
                }
            }
            if count > 0 {
                Some(Ok(count as u64))
            } else if interrupted() {
                Some(Err(Errno::EINTR))
            } else {
                None
            }
        })
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        framekernel::console::write_bytes(buf);
        Ok(buf.len() as u64)
    }

    fn stat(&self) -> FileStat {
        // A character device, like /dev/console (major 5, minor 1).
        device_stat(1, (5 << 8) | 1, 0o620)
    }

    fn is_tty(&self) -> bool {
        true
    }

    fn poll(&self) -> u16 {
        if framekernel::console::has_input() { POLLIN | POLLOUT } else { POLLOUT }
    }
}

/// `/dev/null`: reads end at once, writes vanish.
pub struct Null;

impl File for Null {
    fn read(&self, _buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        Ok(0)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        Ok(buf.len() as u64)
    }

    fn stat(&self) -> FileStat {
        device_stat(2, (1 << 8) | 3, 0o666)
    }
}


/// One descriptor: the open file and its close-on-exec flag.
#[derive(Clone)]
struct Slot {
    file: Arc<dyn File>,
    cloexec: bool,
}

/// A process's file-descriptor table.
#[derive(Clone)]
pub struct FileTable {
    slots: Vec<Option<Slot>>,
}

impl FileTable {
    /// Descriptors 0, 1 and 2 on the console.
    pub fn with_console() -> Self {
        let console: Arc<dyn File> = Arc::new(Console);
        let slot = || Some(Slot { file: console.clone(), cloexec: false });
        Self { slots: alloc::vec![slot(), slot(), slot()] }
    }

    /// The file open as `fd`.
    pub fn get(&self, fd: u64) -> Result<Arc<dyn File>, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref().map(|s| s.file.clone()))
            .ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor `>= min`.
    pub fn insert(&mut self, file: Arc<dyn File>, min: usize, cloexec: bool) -> Result<u64, Errno> {
        let index = (min..MAX_FILES).find(|&i| self.slots.get(i).is_none_or(Option::is_none)).ok_or(Errno::EMFILE)?;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Slot { file, cloexec });
        }
        Ok(index as u64)
    }

    /// Puts `file` at exactly `fd`, closing what was there.
    pub fn put(&mut self, fd: u64, file: Arc<dyn File>, cloexec: bool) -> Result<u64, Errno> {
        let index = usize::try_from(fd).ok().filter(|&i| i < MAX_FILES).ok_or(Errno::EBADF)?;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Slot { file, cloexec });
        }
        Ok(fd)
    }

    /// Closes `fd`.
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        let slot = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).ok_or(Errno::EBADF)?;
        slot.take().map(|_| ()).ok_or(Errno::EBADF)
    }

    /// The close-on-exec flag of `fd`.
    pub fn cloexec(&self, fd: u64) -> Result<bool, Errno> {
        usize::try_from(fd).ok().and_then(|i| self.slots.get(i)).and_then(|s| s.as_ref()).map(|s| s.cloexec).ok_or(Errno::EBADF)
    }

    /// Sets the close-on-exec flag of `fd`.
    pub fn set_cloexec(&mut self, fd: u64, on: bool) -> Result<(), Errno> {
        let slot = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).and_then(|s| s.as_mut()).ok_or(Errno::EBADF)?;
        slot.cloexec = on;
        Ok(())
    }

    /// Closes every close-on-exec descriptor (at `execve`).
    pub fn close_on_exec(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| s.cloexec) {
                *slot = None;
            }
        }
    }
}

/// A descriptor table as a process's threads share it.
#[derive(Clone)]
pub struct Files(Arc<framekernel::sync::Mutex<FileTable>>);

impl Files {
    /// Shares `table`.
    pub fn new(table: FileTable) -> Self {
        Self(Arc::new(framekernel::sync::Mutex::new(table)))
    }

    /// A separate copy (for `fork`): same open files, own descriptors.
    pub fn fork_copy(&self) -> Self {
        Self::new(self.0.lock().clone())
    }

    /// See [`FileTable::get`].
    pub fn get(&self, fd: u64) -> Result<Arc<dyn File>, Errno> {
        self.0.lock().get(fd)
    }

    /// See [`FileTable::insert`].
    pub fn insert(&self, file: Arc<dyn File>, min: usize, cloexec: bool) -> Result<u64, Errno> {
        self.0.lock().insert(file, min, cloexec)
    }

    /// See [`FileTable::put`].
    pub fn put(&self, fd: u64, file: Arc<dyn File>, cloexec: bool) -> Result<u64, Errno> {
        self.0.lock().put(fd, file, cloexec)
    }

    /// See [`FileTable::close`].
    pub fn close(&self, fd: u64) -> Result<(), Errno> {
        self.0.lock().close(fd)
    }

    /// See [`FileTable::cloexec`].
    pub fn cloexec(&self, fd: u64) -> Result<bool, Errno> {
        self.0.lock().cloexec(fd)
    }

    /// See [`FileTable::set_cloexec`].
    pub fn set_cloexec(&self, fd: u64, on: bool) -> Result<(), Errno> {
        self.0.lock().set_cloexec(fd, on)
    }

    /// See [`FileTable::close_on_exec`].
    pub fn close_on_exec(&self) {
        self.0.lock().close_on_exec();
    }
}
