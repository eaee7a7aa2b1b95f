//! Open files of a process. Until the VFS exists there is one kind of file:
//! the console.

use crate::errno::{Errno, SysResult};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Most open files per process (`RLIMIT_NOFILE`).
pub const MAX_FILES: usize = 1024;

/// What `stat` reports (the VFS's metadata, also for non-VFS files).
pub use tessera_vfs::Metadata as FileStat;
use framekernel::cell::{Arg, Ret};
use tessera_cell_api::tty;
use tessera_live_update::AnySlot;
use tessera_vfs::{FileType, Location, Timespec};

/// Metadata for a socket (every kind: packet, inet, raw), mode 0777 as
/// Linux's sockfs gives.
pub fn socket_stat(ino: u64) -> FileStat {
    FileStat { kind: FileType::Socket, ..device_stat(ino, 0, 0o777) }
}

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
        blocks: None,
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
    /// [`File::write`] for a writer that a signal may interrupt: a write
    /// that blocks gives up once `interrupted()` is true (EINTR, or the
    /// bytes written so far). Files whose writes never block need not
    /// implement it.
    fn write_interruptible(&self, buf: &[u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        self.write(buf)
    }
    /// File status.
    fn stat(&self) -> FileStat;
    /// True when a read never blocks and brings all that was asked for
    /// (up to the end): regular files, disks and the memory devices
    /// (major 1: null, zero, full, random, urandom), as on Linux. Pipes,
    /// sockets and terminals return what one read brings.
    fn reads_whole(&self) -> bool {
        let stat = self.stat();
        reads_whole(stat.kind, || stat.rdev)
    }
    /// True when a read takes nothing away (the memory devices: zero,
    /// full, random): it may be made before the user's buffer is
    /// checked, since a buffer that turns out bad loses nothing.
    fn read_consumes_nothing(&self) -> bool {
        false
    }
    /// True for an eventfd (`IOCB_FLAG_RESFD` signals one).
    fn is_eventfd(&self) -> bool {
        false
    }
    /// Lines this kind of file adds to `/proc/PID/fdinfo/FD` (inotify
    /// watches, an eventfd's count, a signalfd's mask).
    fn fdinfo(&self) -> alloc::string::String {
        alloc::string::String::new()
    }
    /// True for terminals (`TCGETS` and friends work).
    fn is_tty(&self) -> bool {
        false
    }
    /// Moves the offset (`lseek`); ESPIPE for streams.
    fn seek(&self, _offset: i64, _whence: u32) -> SysResult {
        Err(Errno::ESPIPE)
    }
    /// Makes the file's data durable (`fsync`). Pipes, devices without
    /// storage and the anonymous kinds have nothing to sync: EINVAL, as
    /// on Linux (no `fsync` operation).
    fn sync(&self) -> SysResult {
        Err(Errno::EINVAL)
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
    /// Opens a file with no name again with `open(2)` `flags`, as
    /// following its `/proc/PID/fd/N` link does (a pipe end: a new end of
    /// the same pipe, as Linux opens a pipe's inode like a FIFO's);
    /// `None` for kinds that cannot be (ENXIO, as Linux for sockets and
    /// anonymous files).
    fn reopen(&self, _flags: u64, _interrupted: &dyn Fn() -> bool) -> Option<Result<Arc<dyn File>, Errno>> {
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
    /// The terminal behind this file, if it is one.
    fn as_tty(&self) -> Option<&Tty> {
        None
    }
    /// A pipe's capacity (`F_GETPIPE_SZ`), or sets it (`F_SETPIPE_SZ`:
    /// bytes asked for, whether the caller is privileged); EBADF for
    /// files that are not pipes.
    fn pipe_size(&self, _new: Option<(usize, bool)>) -> Result<usize, Errno> {
        Err(Errno::EBADF)
    }
    /// The epoll instance behind this file, if it is one.
    fn as_epoll(&self) -> Option<&crate::epoll::Epoll> {
        None
    }
    /// The pipe end behind this file, if it is one.
    fn as_pipe(&self) -> Option<&crate::pipe::PipeEnd> {
        None
    }
    /// The packet socket behind this file, if it is one.
    fn as_packet_socket(&self) -> Option<&crate::socket::PacketSocket> {
        None
    }
    /// The `AF_INET` socket behind this file, if it is one.
    fn as_inet_socket(&self) -> Option<&crate::inet::InetSocket> {
        None
    }
    /// The `AF_UNIX` socket behind this file, if it is one.
    fn as_unix_socket(&self) -> Option<&crate::unix::UnixSocket> {
        None
    }
    /// The pty master behind this file, if it is one.
    fn as_pty_master(&self) -> Option<&crate::pty::PtyMaster> {
        None
    }
    /// The `AF_NETLINK` socket behind this file, if it is one.
    fn as_netlink_socket(&self) -> Option<&crate::netlink::NetlinkSocket> {
        None
    }
    /// The inotify instance behind this file, if it is one.
    fn as_inotify(&self) -> Option<&crate::inotify::Inotify> {
        None
    }
    /// The message queue behind this file, if it is one.
    fn as_mqueue(&self) -> Option<&crate::mqueue::MqFile> {
        None
    }
    /// The timerfd behind this file, if it is one.
    fn as_timerfd(&self) -> Option<&crate::timerfd::TimerFd> {
        None
    }
    /// The signalfd behind this file, if it is one.
    fn as_signalfd(&self) -> Option<&crate::signalfd::SignalFd> {
        None
    }
    /// The process descriptor behind this file, if it is one.
    fn as_pidfd(&self) -> Option<&crate::pidfd::PidFd> {
        None
    }
}

/// The status flags of a file whose only changeable flag is `O_NONBLOCK`
/// (eventfd, timerfd, signalfd, inotify): open for reading and writing.
pub struct NonBlocking(core::sync::atomic::AtomicBool);

impl NonBlocking {
    /// `O_NONBLOCK` set or not.
    pub fn new(on: bool) -> Self {
        Self(core::sync::atomic::AtomicBool::new(on))
    }

    /// Whether waits give EAGAIN instead.
    pub fn get(&self) -> bool {
        self.0.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// `fcntl(F_GETFL)`: `O_RDWR`, with `O_NONBLOCK` when set.
    pub fn status_flags(&self) -> u32 {
        2 | if self.get() { crate::fs::O_NONBLOCK } else { 0 }
    }

    /// `fcntl(F_SETFL)`: takes `O_NONBLOCK` from `flags`.
    pub fn set_from(&self, flags: u32) {
        self.0.store(flags & crate::fs::O_NONBLOCK != 0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The end of a blocking file operation's check that found nothing to do:
/// EAGAIN for a non-blocking file, EINTR once a signal is due, else `None`
/// (wait on).
pub fn nothing_yet<T>(nonblocking: bool, interrupted: &dyn Fn() -> bool) -> Option<Result<T, Errno>> {
    if nonblocking {
        return Some(Err(Errno::EAGAIN));
    }
    if interrupted() {
        return Some(Err(Errno::EINTR));
    }
    None
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

/// The console terminal: the serial port behind a line discipline (the
/// `tty` cell, reached through its slot), with a foreground process group
/// and a session.
///
/// Without a working tty cell (none loaded, or held after repeated faults)
/// the terminal degrades to raw: typed bytes reach readers unprocessed, no
/// echo, no signals, output unchanged.
pub struct Tty {
    readers: tessera_sched::WaitQueue,
    /// Bumped whenever input was processed or settings changed: readers
    /// wait for it to move.
    generation: core::sync::atomic::AtomicU64,
    foreground: core::sync::atomic::AtomicU32,
    session: core::sync::atomic::AtomicU32,
    winsize: framekernel::sync::SpinLock<[u16; 4]>,
    /// Raw input while there is no line discipline.
    raw: framekernel::sync::SpinLock<alloc::collections::VecDeque<u8>>,
    /// The terminal's number in the tty cell (0: the console).
    index: u32,
    /// The pseudo-terminal whose slave this is (none: the console).
    pty: Option<alloc::sync::Weak<crate::pty::Pty>>,
    /// The other side is gone (a pty master closed): reads end, writes fail.
    hung_up: core::sync::atomic::AtomicBool,
}

/// The line disciplines' slot.
pub type TtySlot = tessera_live_update::Slot<tty::Export>;

/// The console's terminal number in the tty cell.
const CONSOLE_TTY: u32 = 0;

static CONSOLE: spin::Once<Arc<Tty>> = spin::Once::new();
static LINE_DISCIPLINES: spin::Once<Arc<TtySlot>> = spin::Once::new();
static INPUT_PENDING: tessera_sched::WaitQueue = tessera_sched::WaitQueue::new();

/// Connects the terminals to the tty cell's slot (once, at boot).
pub fn set_line_disciplines(slot: Arc<TtySlot>) {
    LINE_DISCIPLINES.call_once(|| slot);
    console().changed();
}

/// The console terminal.
pub fn console() -> Arc<Tty> {
    CONSOLE
        .call_once(|| {
            Arc::new(Tty::new(CONSOLE_TTY, None))
        })
        .clone()
}

/// Called by the base (in interrupt context) when console bytes arrive:
/// wakes the terminal's input task.
pub fn console_input_arrived() {
    INPUT_PENDING.wake_all();
}

/// The terminal's input task: runs typed bytes through the line
/// discipline, echoes, raises signals for the foreground process group,
/// wakes readers. A task, not the interrupt, because the line discipline
/// is a cell whose slot may make a caller wait (during a swap).
pub fn start_input_task() -> Result<(), framekernel::mm::OutOfMemory> {
    tessera_sched::spawn("tty-input", || {
        loop {
            INPUT_PENDING.wait_until(|| framekernel::console::has_input().then_some(()));
            let tty = console();
            tty.replay_raw();
            while let Some(byte) = framekernel::console::read_byte() {
                tty.input(byte, &mut |echo| framekernel::console::write_raw(echo));
            }
            tty.changed();
        }
    })
    .map(|_| ())
}

impl Tty {
    /// A terminal with line discipline number `index` (a pty's slave when
    /// `pty` is given), in the line discipline's default settings.
    pub(crate) fn new(index: u32, pty: Option<alloc::sync::Weak<crate::pty::Pty>>) -> Tty {
        Tty {
            readers: tessera_sched::WaitQueue::new(),
            generation: core::sync::atomic::AtomicU64::new(0),
            foreground: core::sync::atomic::AtomicU32::new(0),
            session: core::sync::atomic::AtomicU32::new(0),
            winsize: framekernel::sync::SpinLock::new([24, 80, 0, 0]),
            raw: framekernel::sync::SpinLock::new(alloc::collections::VecDeque::new()),
            index,
            pty,
            hung_up: core::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Runs one typed byte through the line discipline: `echo` gets what
    /// to show, the foreground group the signal it raises. Without a
    /// line discipline the byte waits raw. Readers are not woken (call
    /// [`Tty::changed`] after a batch).
    pub(crate) fn input(&self, byte: u8, echo: &mut dyn FnMut(&[u8])) {
        let index = self.index;
        // Retried after a fault: the fresh line discipline gets the byte.
        match self.line_discipline(true, (index, byte), |ld, (index, byte)| ld.input(index, byte)) {
            Some(effect) => {
                if !effect.echo.is_empty() {
                    echo(&effect.echo);
                }
                if let Some(signal) = effect.signal {
                    let sig = match signal {
                        tty::TtySignal::Interrupt => crate::signal::num::SIGINT,
                        tty::TtySignal::Quit => crate::signal::num::SIGQUIT,
                        tty::TtySignal::Suspend => crate::signal::num::SIGTSTP,
                    };
                    self.signal_foreground(sig);
                }
            }
            None => {
                let mut raw = self.raw.lock();
                if raw.len() < tty::MAX_INPUT {
                    raw.push_back(byte);
                }
            }
        }
    }

    /// The other side went away (a pty's master closed): readers get end
    /// of file, writers EIO, the foreground group SIGHUP and SIGCONT.
    pub(crate) fn hang_up(&self) {
        self.hung_up.store(true, core::sync::atomic::Ordering::SeqCst);
        self.signal_foreground(crate::signal::num::SIGHUP);
        self.signal_foreground(crate::signal::num::SIGCONT);
        self.changed();
    }

    /// The pty this terminal is the slave of.
    pub fn pty(&self) -> Option<Arc<crate::pty::Pty>> {
        self.pty.as_ref().and_then(alloc::sync::Weak::upgrade)
    }

    /// The line discipline back to its defaults (a pty number used again).
    pub(crate) fn reset(&self) {
        self.line_discipline(true, self.index, |ld, index| {
            ld.flush_input(index);
            ld.set_termios(index, tty::Termios::default());
        });
    }

    /// Calls the line discipline; `None` without a working one.
    /// `f(line discipline, arg)` runs inside the cell boundary; only `arg`
    /// crosses (copied again for a retry).
    fn line_discipline<A: Arg + Copy, R: Ret>(&self, idempotent: bool, arg: A, f: fn(&tty::Export, A) -> R) -> Option<R> {
        LINE_DISCIPLINES.get()?.call(idempotent, |cell| cell.call(arg, f)).ok()
    }

    /// Bytes kept raw while no line discipline worked go through one as
    /// soon as one does again (in order, before newer input).
    fn replay_raw(&self) {
        let pending: Vec<u8> = {
            let mut raw = self.raw.lock();
            if raw.is_empty() || LINE_DISCIPLINES.get().is_none_or(|slot| slot.is_held()) {
                return;
            }
            raw.drain(..).collect()
        };
        let index = self.index;
        for byte in pending {
            let _ = self.line_discipline(true, (index, byte), |ld, (index, byte)| ld.input(index, byte));
        }
    }

    /// Input was processed or settings changed: wake readers and pollers.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, core::sync::atomic::Ordering::Release);
        self.readers.wake_all();
        crate::syscall::poll::notify();
    }

    /// One read attempt: `None` when the reader must wait.
    fn try_read(&self, buf: &mut [u8]) -> Option<usize> {
        let max = buf.len();
        match self.line_discipline(false, (self.index, max), |ld, (index, max)| ld.read(index, max)) {
            Some(Some(bytes)) => {
                let n = bytes.len().min(buf.len());
                buf.get_mut(..n)?.copy_from_slice(bytes.get(..n)?);
                Some(n)
            }
            Some(None) => None,
            None => {
                let mut raw = self.raw.lock();
                if raw.is_empty() {
                    return None;
                }
                let mut n = 0;
                for slot in buf.iter_mut() {
                    let Some(byte) = raw.pop_front() else { break };
                    *slot = byte;
                    n += 1;
                }
                Some(n)
            }
        }
    }

    /// Reads, waiting for input; gives up with `EINTR` once `interrupted()`.
    fn read_waiting(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        loop {
            let seen = self.generation.load(core::sync::atomic::Ordering::Acquire);
            if let Some(n) = self.try_read(buf) {
                return Ok(n as u64);
            }
            if self.hung_up.load(core::sync::atomic::Ordering::SeqCst) {
                return Ok(0);
            }
            if interrupted() {
                return Err(Errno::EINTR);
            }
            self.readers.wait_until(|| {
                (self.generation.load(core::sync::atomic::Ordering::Acquire) != seen || interrupted()).then_some(())
            });
        }
    }

    /// Sends `sig` to every process of the foreground process group.
    pub fn signal_foreground(&self, sig: u8) {
        let group = self.foreground.load(core::sync::atomic::Ordering::Relaxed);
        if group == 0 {
            return;
        }
        for process in crate::process::all().into_iter().filter(|p| p.pgid() == group) {
            process.send_signal(sig, crate::signal::SigInfo { code: 0x80, ..Default::default() });
        }
    }

    /// The foreground process group (0: none).
    pub fn foreground(&self) -> u32 {
        self.foreground.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Makes `group` the foreground process group.
    pub fn set_foreground(&self, group: u32) {
        self.foreground.store(group, core::sync::atomic::Ordering::Relaxed);
    }

    /// The controlling session (0: none).
    pub fn session(&self) -> u32 {
        self.session.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Makes `session` the terminal's session, with `group` in front.
    pub fn set_session(&self, session: u32, group: u32) {
        self.session.store(session, core::sync::atomic::Ordering::Relaxed);
        self.set_foreground(group);
    }

    /// The settings.
    pub fn termios(&self) -> tty::Termios {
        self.line_discipline(true, self.index, |ld, index| ld.termios(index)).unwrap_or_default()
    }

    /// New settings; `flush` drops pending input first.
    pub fn set_termios(&self, termios: tty::Termios, flush: bool) {
        self.line_discipline(true, (self.index, flush, termios), |ld, (index, flush, termios)| {
            if flush {
                ld.flush_input(index);
            }
            ld.set_termios(index, termios);
        });
        self.changed();
    }

    /// Drops pending input.
    pub fn flush_input(&self) {
        if self.line_discipline(true, self.index, |ld, index| ld.flush_input(index)).is_none() {
            self.raw.lock().clear();
        }
    }

    /// Bytes a read would get now.
    pub fn available(&self) -> usize {
        self.line_discipline(true, self.index, |ld, index| ld.available(index)).unwrap_or_else(|| self.raw.lock().len())
    }

    /// Window size: rows, columns, x and y pixels.
    pub fn winsize(&self) -> [u16; 4] {
        *self.winsize.lock()
    }

    /// Sets the window size; a change signals the foreground group
    /// (SIGWINCH), as Linux.
    pub fn set_winsize(&self, size: [u16; 4]) {
        let old = core::mem::replace(&mut *self.winsize.lock(), size);
        if old != size {
            self.signal_foreground(crate::signal::num::SIGWINCH);
        }
    }

    /// Reads like a program would (for the kernel's own console monitor).
    pub fn read_blocking(&self, buf: &mut [u8]) -> usize {
        self.read_waiting(buf, &|| false).unwrap_or(0) as usize
    }
}

impl File for Tty {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_waiting(buf, interrupted)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.write_interruptible(buf, &|| false)
    }

    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if self.hung_up.load(core::sync::atomic::Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        let index = self.index;
        let out = self.line_discipline(true, (index, buf), |ld, (index, buf)| ld.output(index, buf));
        let out = out.as_deref().unwrap_or(buf);
        match &self.pty {
            Some(pty) => pty.upgrade().ok_or(Errno::EIO)?.slave_output(out, interrupted)?,
            None => framekernel::console::write_raw(out),
        }
        Ok(buf.len() as u64)
    }

    fn stat(&self) -> FileStat {
        match self.pty() {
            // /dev/pts/N.
            Some(pty) => pty.stat(),
            // A character device, like /dev/console (major 5, minor 1).
            None => device_stat(1, (5 << 8) | 1, 0o620),
        }
    }

    fn is_tty(&self) -> bool {
        true
    }

    fn as_tty(&self) -> Option<&Tty> {
        Some(self)
    }

    fn poll(&self) -> u16 {
        // Polling may run where waiting is not allowed: never block here;
        // while the line discipline is unavailable, say readable (a read
        // then waits properly).
        if self.hung_up.load(core::sync::atomic::Ordering::SeqCst) {
            return POLLIN | POLLOUT | POLLHUP;
        }
        let readable = match LINE_DISCIPLINES.get().map(|slot| slot.try_call(|cell| cell.call(self.index, |ld, index| ld.readable(index)))) {
            Some(Ok(readable)) => readable,
            // Held: the terminal is raw now.
            Some(Err(tessera_live_update::SlotError::Held { .. })) | None => !self.raw.lock().is_empty(),
            Some(Err(_)) => true,
        };
        if readable { POLLIN | POLLOUT } else { POLLOUT }
    }
}

/// `/dev/null`: reads end at once, writes vanish.
pub struct Null;

/// [`File::reads_whole`] for a file of `kind` (`rdev`: its device number,
/// asked only for a character device).
pub fn reads_whole(kind: tessera_vfs::FileType, rdev: impl FnOnce() -> u64) -> bool {
    match kind {
        tessera_vfs::FileType::Regular | tessera_vfs::FileType::BlockDevice => true,
        tessera_vfs::FileType::CharDevice => rdev() >> 8 == 1,
        _ => false,
    }
}

impl File for Null {
    fn reads_whole(&self) -> bool {
        true
    }
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
    /// Descriptors go below this (`RLIMIT_NOFILE`'s soft limit, at most
    /// `MAX_FILES`).
    limit: usize,
}

impl FileTable {
    /// Descriptors 0, 1 and 2 on the console.
    pub fn with_console() -> Self {
        let console: Arc<dyn File> = console();
        let slot = || Some(Slot { file: console.clone(), cloexec: false });
        Self { slots: alloc::vec![slot(), slot(), slot()], limit: MAX_FILES }
    }

    /// The file open as `fd`.
    pub fn get(&self, fd: u64) -> Result<Arc<dyn File>, Errno> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref().map(|s| s.file.clone()))
            .ok_or(Errno::EBADF)
    }

    /// The lowest free descriptor `>= min` below the limit (EMFILE: none).
    fn free_slot(&self, min: usize) -> Result<usize, Errno> {
        (min..self.limit).find(|&i| self.slots.get(i).is_none_or(Option::is_none)).ok_or(Errno::EMFILE)
    }

    /// Installs `file` at the lowest free descriptor `>= min`.
    pub fn insert(&mut self, file: Arc<dyn File>, min: usize, cloexec: bool) -> Result<u64, Errno> {
        let index = self.free_slot(min)?;
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
        let index = usize::try_from(fd).ok().filter(|&i| i < self.limit).ok_or(Errno::EBADF)?;
        if self.slots.len() <= index {
            self.slots.resize(index + 1, None);
        }
        if let Some(slot) = self.slots.get_mut(index)
            && let Some(old) = slot.replace(Slot { file, cloexec })
        {
            crate::locks::descriptor_closed(&old.file);
        }
        Ok(fd)
    }

    /// Closes `fd` (the process's POSIX locks on the file go with it).
    pub fn close(&mut self, fd: u64) -> Result<(), Errno> {
        let slot = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).ok_or(Errno::EBADF)?;
        let old = slot.take().ok_or(Errno::EBADF)?;
        crate::locks::descriptor_closed(&old.file);
        Ok(())
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
            if slot.as_ref().is_some_and(|s| s.cloexec)
                && let Some(old) = slot.take()
            {
                crate::locks::descriptor_closed(&old.file);
            }
        }
    }
}

/// A descriptor table as a process's threads share it.
#[derive(Clone)]
pub struct Files(Arc<framekernel::sync::Mutex<FileTable>>);

impl Files {
    /// Identifies the shared object (`kcmp`): equal for handles of one object.
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// Shares `table`.
    pub fn new(table: FileTable) -> Self {
        Self(Arc::new(framekernel::sync::Mutex::new(table)))
    }

    /// A separate copy (for `fork`): same open files, own descriptors.
    pub fn fork_copy(&self) -> Self {
        Self::new(self.0.lock().clone())
    }

    /// The descriptor limit (`RLIMIT_NOFILE`): new descriptors go below it.
    pub fn limit(&self) -> usize {
        self.0.lock().limit
    }

    /// Sets the descriptor limit (at most `MAX_FILES`); open descriptors
    /// above it stay open, as on Linux.
    pub fn set_limit(&self, limit: usize) {
        self.0.lock().limit = limit.min(MAX_FILES);
    }

    /// See [`FileTable::get`].
    pub fn get(&self, fd: u64) -> Result<Arc<dyn File>, Errno> {
        self.0.lock().get(fd)
    }

    /// See [`FileTable::insert`].
    pub fn insert(&self, file: Arc<dyn File>, min: usize, cloexec: bool) -> Result<u64, Errno> {
        self.0.lock().insert(file, min, cloexec)
    }

    /// EMFILE when no descriptor is free: checked before a call takes
    /// something it could not give back (`accept` takes a connection
    /// off the queue; Linux finds the descriptor first, and the
    /// connection stays queued).
    pub fn check_room(&self) -> Result<(), Errno> {
        self.0.lock().free_slot(0).map(drop)
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
