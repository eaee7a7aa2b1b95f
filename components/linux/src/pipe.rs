//! Pipes: a 64 KiB buffer between a read end and a write end. Reads block
//! until data or end of file (no writers left); writes block until there
//! is room, and fail with EPIPE (and SIGPIPE) when no reader is left.
//! Writes of at most `PIPE_BUF` bytes are never interleaved.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, device_stat};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use framekernel::sync::Mutex;
use tessera_sched::WaitQueue;

/// Bytes a pipe holds.
pub const PIPE_CAPACITY: usize = 64 * 1024;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;

static NEXT_INO: AtomicUsize = AtomicUsize::new(1);

/// The shared part of a pipe.
pub struct Pipe {
    buffer: Mutex<VecDeque<u8>>,
    readers: AtomicUsize,
    writers: AtomicUsize,
    changed: WaitQueue,
    ino: u64,
}

/// One end of a pipe, as an open file.
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    writer: bool,
    nonblocking: AtomicBool,
}

/// Makes a pipe; returns (read end, write end).
pub fn pipe(nonblocking: bool) -> (Arc<dyn File>, Arc<dyn File>) {
    let pipe = Arc::new(Pipe {
        buffer: Mutex::new(VecDeque::new()),
        readers: AtomicUsize::new(1),
        writers: AtomicUsize::new(1),
        changed: WaitQueue::new(),
        ino: NEXT_INO.fetch_add(1, Ordering::Relaxed) as u64,
    });
    let read: Arc<dyn File> =
        Arc::new(PipeEnd { pipe: pipe.clone(), writer: false, nonblocking: AtomicBool::new(nonblocking) });
    let write: Arc<dyn File> = Arc::new(PipeEnd { pipe, writer: true, nonblocking: AtomicBool::new(nonblocking) });
    (read, write)
}

impl Pipe {
    fn notify(&self) {
        self.changed.wake_all();
        crate::syscall::poll::notify();
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        if self.writer {
            self.pipe.writers.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.pipe.readers.fetch_sub(1, Ordering::SeqCst);
        }
        self.pipe.notify();
    }
}

impl File for PipeEnd {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if self.writer {
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
                for (slot, byte) in buf.iter_mut().zip(buffer.drain(..n)) {
                    *slot = byte;
                }
                return Some(Ok(n as u64));
            }
            if self.pipe.writers.load(Ordering::SeqCst) == 0 {
                return Some(Ok(0)); // end of file
            }
            if nonblocking {
                return Some(Err(Errno::EAGAIN));
            }
            if interrupted() {
                return Some(Err(Errno::EINTR));
            }
            None
        });
        if matches!(result, Ok(n) if n > 0) {
            self.pipe.notify();
        }
        result
    }

    fn write(&self, data: &[u8]) -> SysResult {
        if !self.writer {
            return Err(Errno::EBADF);
        }
        let nonblocking = self.nonblocking.load(Ordering::Relaxed);
        let mut written = 0usize;
        while written < data.len() {
            let rest = data.get(written..).unwrap_or(&[]);
            // A small write goes in whole or waits; a large one in pieces.
            let need = if rest.len() <= PIPE_BUF { rest.len() } else { 1 };
            let step = self.pipe.changed.wait_until(|| {
                if self.pipe.readers.load(Ordering::SeqCst) == 0 {
                    return Some(Err(Errno::EPIPE));
                }
                let mut buffer = self.pipe.buffer.lock();
                let room = PIPE_CAPACITY - buffer.len();
                if room >= need {
                    let n = room.min(rest.len());
                    buffer.extend(rest.iter().take(n));
                    return Some(Ok(n));
                }
                if nonblocking {
                    return Some(Err(Errno::EAGAIN));
                }
                None
            });
            match step {
                Ok(n) => {
                    written += n;
                    self.pipe.notify();
                }
                Err(e) if written == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(written as u64)
    }

    fn stat(&self) -> FileStat {
        let mut stat = device_stat(self.pipe.ino, 0, 0o600);
        stat.kind = tessera_vfs::FileType::Fifo;
        stat
    }

    fn poll(&self) -> u16 {
        let buffered = self.pipe.buffer.lock().len();
        let mut events = 0;
        if self.writer {
            if self.pipe.readers.load(Ordering::SeqCst) == 0 {
                events |= crate::files::POLLERR;
            } else if PIPE_CAPACITY - buffered >= PIPE_BUF {
                events |= crate::files::POLLOUT;
            }
        } else {
            if buffered > 0 {
                events |= crate::files::POLLIN;
            }
            if self.pipe.writers.load(Ordering::SeqCst) == 0 {
                events |= crate::files::POLLHUP;
            }
        }
        events
    }

    fn status_flags(&self) -> u32 {
        let access = if self.writer { 1 } else { 0 };
        access | if self.nonblocking.load(Ordering::Relaxed) { crate::fs::O_NONBLOCK } else { 0 }
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.store(flags & crate::fs::O_NONBLOCK != 0, Ordering::Relaxed);
    }
}
