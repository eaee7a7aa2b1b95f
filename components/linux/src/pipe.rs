//! Pipes: a 64 KiB buffer between a read end and a write end. Reads block
//! until data or end of file (no writers left); writes block until there
//! is room, and fail with EPIPE (and SIGPIPE) when no reader is left.
//! Writes of at most `PIPE_BUF` bytes are never interleaved.
//!
//! A FIFO (named pipe) is the same buffer, found through its file-system
//! node: opening one for reading waits for a writer and the other way
//! round (as Linux: `O_NONBLOCK` readers do not wait, `O_NONBLOCK` writers
//! without a reader get `ENXIO`, `O_RDWR` never waits). The buffer lives
//! while any end is open; its contents go when the last end closes.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, device_stat};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use tessera_vfs::NodeRef;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use framekernel::sync::{Mutex, SpinLock};
use tessera_sched::WaitQueue;

/// Bytes a pipe holds at first.
pub const PIPE_CAPACITY: usize = 64 * 1024;
/// Most bytes `F_SETPIPE_SZ` gives an unprivileged process
/// (`/proc/sys/fs/pipe-max-size`, Linux's default).
pub static PIPE_MAX_SIZE: AtomicUsize = AtomicUsize::new(1024 * 1024);
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

static NEXT_INO: AtomicUsize = AtomicUsize::new(1);

/// The shared part of a pipe.
pub struct Pipe {
    buffer: Mutex<VecDeque<u8>>,
    readers: AtomicUsize,
    writers: AtomicUsize,
    /// Ends ever opened for reading / writing (a FIFO opener waits for
    /// the other side's count to move, even if that end closed again).
    read_opens: AtomicUsize,
    write_opens: AtomicUsize,
    /// Held while an end is counted in or out (see `open_end`).
    meet: SpinLock<()>,
    /// Bytes it holds (`F_GETPIPE_SZ`).
    capacity: AtomicUsize,
    /// The open ends (for `O_ASYNC` signals).
    ends: SpinLock<alloc::vec::Vec<Weak<PipeEnd>>>,
    /// Open ends with `O_ASYNC` set: reads and writes skip the signalling
    /// while there are none.
    async_ends: AtomicUsize,
    changed: WaitQueue,
    ino: u64,
}

/// One end of a pipe, as an open file (both ends for a FIFO opened
/// `O_RDWR`).
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    /// `O_ASYNC`: readiness is signalled to the owner.
    async_io: AtomicBool,
    reads: bool,
    writes: bool,
    nonblocking: AtomicBool,
    /// The FIFO's node (for `stat`); none for `pipe(2)`.
    node: Option<NodeRef>,
}

/// Makes a pipe; returns (read end, write end).
/// `privileged` (CAP_SYS_RESOURCE): the default capacity even when
/// `pipe-max-size` is smaller.
pub fn pipe(nonblocking: bool, privileged: bool) -> (Arc<dyn File>, Arc<dyn File>) {
    let pipe = Pipe::new(privileged);
    let (read, _) = pipe.open_end(true, false, nonblocking, None);
    let (write, _) = pipe.open_end(false, true, nonblocking, None);
    (read, write)
}

/// Open FIFOs by node (the node's address, with the node kept so the
/// address is not reused while the entry exists).
static FIFOS: SpinLock<BTreeMap<usize, (NodeRef, Weak<Pipe>)>> = SpinLock::new(BTreeMap::new());

const O_ACCMODE: u64 = 3;
const O_NONBLOCK: u64 = 0o4000;
/// Signal-driven I/O (`fcntl(F_SETFL, O_ASYNC)`).
const O_ASYNC: u32 = 0o20000;

/// Opens the FIFO `node` with `open(2)` `flags`; waits for the other side
/// as Linux does, giving up with EINTR when `interrupted()`.
pub fn open_fifo(node: &NodeRef, flags: u64, interrupted: &dyn Fn() -> bool, privileged: bool) -> Result<Arc<dyn File>, Errno> {
    let key = Arc::as_ptr(node) as *const () as usize;
    let pipe = {
        let mut fifos = FIFOS.lock();
        fifos.retain(|_, (_, pipe)| pipe.strong_count() > 0);
        match fifos.get(&key).and_then(|(_, pipe)| pipe.upgrade()) {
            Some(pipe) => pipe,
            None => {
                let pipe = Pipe::new(privileged);
                fifos.insert(key, (node.clone(), Arc::downgrade(&pipe)));
                pipe
            }
        }
    };
    pipe.open(flags, interrupted, Some(node.clone()))
}

impl Pipe {
    /// A new end of this pipe for `open(2)` `flags`. A FIFO's (`node`)
    /// opener waits for the other side; a `pipe(2)` pipe's does not, as
    /// Linux's `fifo_open` for a pipe's inode.
    fn open(self: &Arc<Self>, flags: u64, interrupted: &dyn Fn() -> bool, node: Option<NodeRef>) -> Result<Arc<dyn File>, Errno> {
        let nonblocking = flags & O_NONBLOCK != 0;
        let fifo = node.is_some();
        let wait = fifo && !nonblocking;
        match flags & O_ACCMODE {
            0 => {
                let (end, unmet) = self.open_end(true, false, nonblocking, node);
                if let Some(seen) = unmet.filter(|_| wait) {
                    self.wait_for_other(seen, &self.write_opens, interrupted)?;
                }
                Ok(end)
            }
            1 => {
                if fifo && nonblocking && self.readers.load(Ordering::SeqCst) == 0 {
                    return Err(Errno::ENXIO);
                }
                let (end, unmet) = self.open_end(false, true, nonblocking, node);
                if let Some(seen) = unmet.filter(|_| wait) {
                    self.wait_for_other(seen, &self.read_opens, interrupted)?;
                }
                Ok(end)
            }
            _ => Ok(self.open_end(true, true, nonblocking, node).0),
        }
    }
}

impl Pipe {
    /// A new pipe: 64 KiB, or `pipe-max-size` if that is smaller and the
    /// creator is not privileged (Linux's `alloc_pipe_info`).
    fn new(privileged: bool) -> Arc<Pipe> {
        let max = PIPE_MAX_SIZE.load(Ordering::Relaxed);
        let capacity = if privileged || max >= PIPE_CAPACITY { PIPE_CAPACITY } else { (max / 4096).max(1) * 4096 };
        Arc::new(Pipe {
            buffer: Mutex::new(VecDeque::new()),
            readers: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            read_opens: AtomicUsize::new(0),
            write_opens: AtomicUsize::new(0),
            meet: SpinLock::new(()),
            capacity: AtomicUsize::new(capacity),
            ends: SpinLock::new(alloc::vec::Vec::new()),
            async_ends: AtomicUsize::new(0),
            changed: WaitQueue::new(),
            ino: NEXT_INO.fetch_add(1, Ordering::Relaxed) as u64,
        })
    }

    /// A new end; counts it before it exists as a file, so that an opener
    /// waiting for this side sees it. Also returns, for a reader or a
    /// writer only, the other side's count of opens when no end of that
    /// side was open as this one was counted (the opener waits for that
    /// count to move), or `None`: met already. Both under `meet`, as
    /// Linux's `fifo_open` under the pipe's mutex: a writer that met this
    /// reader, wrote and closed before the reader looked would otherwise
    /// leave it waiting for another writer.
    fn open_end(self: &Arc<Self>, reads: bool, writes: bool, nonblocking: bool, node: Option<NodeRef>) -> (Arc<dyn File>, Option<usize>) {
        let unmet = {
            let _meet = self.meet.lock();
            if reads {
                self.readers.fetch_add(1, Ordering::SeqCst);
                self.read_opens.fetch_add(1, Ordering::SeqCst);
            }
            if writes {
                self.writers.fetch_add(1, Ordering::SeqCst);
                self.write_opens.fetch_add(1, Ordering::SeqCst);
            }
            match (reads, writes) {
                (true, false) if self.writers.load(Ordering::SeqCst) == 0 => Some(self.write_opens.load(Ordering::SeqCst)),
                (false, true) if self.readers.load(Ordering::SeqCst) == 0 => Some(self.read_opens.load(Ordering::SeqCst)),
                _ => None,
            }
        };
        self.notify();
        let end = Arc::new(PipeEnd { pipe: self.clone(), async_io: AtomicBool::new(false), reads, writes, nonblocking: AtomicBool::new(nonblocking), node });
        let mut ends = self.ends.lock();
        ends.retain(|w| w.strong_count() > 0);
        ends.push(Arc::downgrade(&end));
        drop(ends);
        (end, unmet)
    }

    /// Waits until the other side's count of `opens` moves from `seen`
    /// (an end of it was opened, even if it closed again since).
    fn wait_for_other(&self, seen: usize, opens: &AtomicUsize, interrupted: &dyn Fn() -> bool) -> Result<(), Errno> {
        self.changed.wait_until(|| {
            if opens.load(Ordering::SeqCst) != seen {
                return Some(Ok(()));
            }
            if interrupted() {
                return Some(Err(Errno::EINTR));
            }
            None
        })
    }

    fn notify(&self) {
        self.changed.wake_all();
        crate::syscall::poll::notify();
    }

    /// Signal-driven I/O: the ends with `O_ASYNC` that can now read
    /// (`input`) or write are signalled.
    fn signal_async(&self, input: bool) {
        if self.async_ends.load(Ordering::Relaxed) == 0 {
            return;
        }
        let ends: alloc::vec::Vec<Arc<PipeEnd>> = {
            let mut list = self.ends.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for end in ends {
            if end.async_io.load(Ordering::Relaxed) && (if input { end.reads } else { end.writes }) {
                crate::syscall::signal_io(Arc::as_ptr(&end) as *const (), if input { 1 } else { 2 });
            }
        }
    }
}

impl PipeEnd {
    /// Bytes buffered now (`FIONREAD`).
    pub fn available(&self) -> usize {
        self.pipe.buffer.lock().len()
    }

    /// Whether this end reads (else it writes).
    pub fn reads(&self) -> bool {
        self.reads
    }

    /// Whether both ends are of the same pipe.
    pub fn same_pipe(&self, other: &PipeEnd) -> bool {
        Arc::ptr_eq(&self.pipe, &other.pipe)
    }

    /// Copies up to `max` buffered bytes without taking them (`splice`,
    /// `tee`), waiting for data like a read: empty at end of file; EAGAIN
    /// when non-blocking (`nonblocking` or the file's flag).
    pub fn peek(&self, max: usize, nonblocking: bool, interrupted: &dyn Fn() -> bool) -> Result<alloc::vec::Vec<u8>, Errno> {
        if !self.reads {
            return Err(Errno::EBADF);
        }
        let nonblocking = nonblocking || self.nonblocking.load(Ordering::Relaxed);
        self.pipe.changed.wait_until(|| {
            let buffer = self.pipe.buffer.lock();
            if !buffer.is_empty() {
                return Some(Ok(buffer.iter().take(max).copied().collect()));
            }
            if self.pipe.writers.load(Ordering::SeqCst) == 0 {
                return Some(Ok(alloc::vec::Vec::new()));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })
    }

    /// Writes `data`: all of it, waiting for room (a write of at most
    /// `PIPE_BUF` bytes goes in whole), unless `partial`, which stops once
    /// something is written (`vmsplice`, `splice`). A wait ends with EAGAIN
    /// when non-blocking, EPIPE without readers, EINTR when `interrupted()`
    /// — or the bytes written so far.
    pub fn put(&self, data: &[u8], partial: bool, interrupted: &dyn Fn() -> bool) -> SysResult {
        if !self.writes {
            return Err(Errno::EBADF);
        }
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        let mut written = 0usize;
        while written < data.len() {
            let rest = data.get(written..).unwrap_or(&[]);
            // A small write goes in whole or waits; a large one in pieces.
            let need = if rest.len() <= PIPE_BUF && !partial { rest.len() } else { 1 };
            let step = self.pipe.changed.wait_until(|| {
                if self.pipe.readers.load(Ordering::SeqCst) == 0 {
                    return Some(Err(Errno::EPIPE));
                }
                let mut buffer = self.pipe.buffer.lock();
                let room = self.pipe.capacity.load(Ordering::Relaxed).saturating_sub(buffer.len());
                if room >= need {
                    let n = room.min(rest.len());
                    // From a slice: copied in at most two pieces (an
                    // iterator with `take` went byte by byte).
                    buffer.extend(rest.get(..n).unwrap_or(&[]));
                    return Some(Ok(n));
                }
                crate::files::nothing_yet(nonblocking, interrupted)
            });
            match step {
                Ok(n) => {
                    written += n;
                    self.pipe.notify();
                    self.pipe.signal_async(true);
                    if partial {
                        break;
                    }
                }
                Err(e) if written == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(written as u64)
    }

    /// Drops the first `n` buffered bytes (after a `peek` whose bytes went
    /// elsewhere).
    pub fn consume(&self, n: usize) {
        let mut buffer = self.pipe.buffer.lock();
        let n = n.min(buffer.len());
        buffer.drain(..n);
        drop(buffer);
        self.pipe.notify();
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        {
            let _meet = self.pipe.meet.lock();
            if self.writes {
                self.pipe.writers.fetch_sub(1, Ordering::SeqCst);
            }
            if self.reads {
                self.pipe.readers.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.async_io.load(Ordering::Relaxed) {
            self.pipe.async_ends.fetch_sub(1, Ordering::Relaxed);
        }
        self.pipe.notify();
    }
}

impl File for PipeEnd {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if !self.reads {
            return Err(Errno::EBADF);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        let result = self.pipe.changed.wait_until(|| {
            let mut buffer = self.pipe.buffer.lock();
            if !buffer.is_empty() {
                let n = buf.len().min(buffer.len());
                // The buffer's two halves copied out, then dropped from
                // the front (byte by byte through `drain` before).
                let (front, back) = buffer.as_slices();
                let from_front = n.min(front.len());
                let (first, second) = buf.split_at_mut(from_front);
                first.copy_from_slice(front.get(..from_front).unwrap_or(&[]));
                let rest = n - from_front;
                second.get_mut(..rest).unwrap_or_default().copy_from_slice(back.get(..rest).unwrap_or(&[]));
                buffer.drain(..n);
                return Some(Ok(n as u64));
            }
            if self.pipe.writers.load(Ordering::SeqCst) == 0 {
                return Some(Ok(0)); // end of file
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        });
        if matches!(result, Ok(n) if n > 0) {
            self.pipe.notify();
            self.pipe.signal_async(false);
        }
        result
    }

    fn write(&self, data: &[u8]) -> SysResult {
        self.write_interruptible(data, &|| false)
    }

    fn write_interruptible(&self, data: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        self.put(data, false, interrupted)
    }

    fn stat(&self) -> FileStat {
        if let Some(node) = &self.node {
            return node.metadata();
        }
        let mut stat = device_stat(self.pipe.ino, 0, 0o600);
        stat.kind = tessera_vfs::FileType::Fifo;
        stat
    }

    fn poll(&self) -> u16 {
        let buffered = self.pipe.buffer.lock().len();
        let mut events = 0;
        if self.writes {
            if self.pipe.readers.load(Ordering::SeqCst) == 0 {
                events |= crate::files::POLLERR;
            } else if self.pipe.capacity.load(Ordering::Relaxed).saturating_sub(buffered) >= PIPE_BUF {
                events |= crate::files::POLLOUT;
            }
        }
        if self.reads {
            if buffered > 0 {
                events |= crate::files::POLLIN;
            }
            // A FIFO reader that never had a writer is not hung up (Linux).
            let had_writer = self.node.is_none() || self.pipe.write_opens.load(Ordering::SeqCst) > 0;
            if self.pipe.writers.load(Ordering::SeqCst) == 0 && had_writer {
                events |= crate::files::POLLHUP;
            }
        }
        events
    }

    fn as_pipe(&self) -> Option<&PipeEnd> {
        Some(self)
    }

    fn reopen(&self, flags: u64, interrupted: &dyn Fn() -> bool) -> Option<Result<Arc<dyn File>, Errno>> {
        Some(self.pipe.open(flags, interrupted, self.node.clone()))
    }
    fn pipe_size(&self, new: Option<(usize, bool)>) -> Result<usize, Errno> {
        let Some((wanted, privileged)) = new else { return Ok(self.pipe.capacity.load(Ordering::Relaxed)) };
        if wanted > 1 << 31 {
            return Err(Errno::EINVAL); // Linux's round_pipe_size gives up
        }
        if wanted > PIPE_MAX_SIZE.load(Ordering::Relaxed) && !privileged {
            return Err(Errno::EPERM);
        }
        // Whole pages, a power of two of them (Linux), at least one page.
        // Pipe buffers are kernel memory: even root gets at most 4 MiB.
        let size = wanted.max(4096).checked_next_power_of_two().filter(|&s| s <= 4 << 20).ok_or(Errno::EPERM)?;
        let buffer = self.pipe.buffer.lock();
        if buffer.len() > size {
            return Err(Errno::EBUSY);
        }
        self.pipe.capacity.store(size, Ordering::Relaxed);
        drop(buffer);
        self.pipe.notify();
        Ok(size)
    }

    fn status_flags(&self) -> u32 {
        let access = match (self.reads, self.writes) {
            (true, true) => 2,
            (false, true) => 1,
            _ => 0,
        };
        access
            | if self.nonblocking.load(Ordering::Relaxed) { crate::fs::O_NONBLOCK } else { 0 }
            | if self.async_io.load(Ordering::Relaxed) { O_ASYNC } else { 0 }
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.store(flags & crate::fs::O_NONBLOCK != 0, Ordering::Relaxed);
        let on = flags & O_ASYNC != 0;
        if self.async_io.swap(on, Ordering::Relaxed) != on {
            if on {
                self.pipe.async_ends.fetch_add(1, Ordering::Relaxed);
            } else {
                self.pipe.async_ends.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}
