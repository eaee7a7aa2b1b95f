//! `signalfd`: pending signals read as records from a file instead of
//! being delivered to handlers (the program blocks them first).
//!
//! A read takes the reading thread's pending signals of the file's mask
//! (its own, then its process's), as on Linux; `poll` answers for the
//! thread that created the file.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, device_stat};
use crate::process::{ProcessInfo, ThreadInfo};
use crate::signal::SigInfo;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

/// Bytes of one `struct signalfd_siginfo`.
pub const RECORD: usize = 128;

/// A signalfd.
pub struct SignalFd {
    mask: AtomicU64,
    nonblocking: crate::files::NonBlocking,
    process: Arc<ProcessInfo>,
    thread: Arc<ThreadInfo>,
    ino: u64,
}

impl SignalFd {
    /// A signalfd for `mask` (SIGKILL and SIGSTOP never included), created
    /// by `thread` of `process`.
    pub fn open(mask: u64, nonblocking: bool, process: Arc<ProcessInfo>, thread: Arc<ThreadInfo>, ino: u64) -> Arc<dyn File> {
        Arc::new(SignalFd { mask: AtomicU64::new(mask & !crate::signal::UNBLOCKABLE), nonblocking: crate::files::NonBlocking::new(nonblocking), process, thread, ino })
    }

    /// The signals the file reads.
    pub fn mask(&self) -> u64 {
        self.mask.load(Ordering::SeqCst)
    }

    /// Replaces the mask (`signalfd` on an existing descriptor).
    pub fn set_mask(&self, mask: u64) {
        self.mask.store(mask & !crate::signal::UNBLOCKABLE, Ordering::SeqCst);
        crate::syscall::poll::notify();
    }

    /// Whether reads fail with EAGAIN instead of blocking.
    pub fn nonblocking(&self) -> bool {
        self.nonblocking.get()
    }
}

/// `struct signalfd_siginfo` for signal `sig` with `info`.
pub fn record(sig: u8, info: &SigInfo) -> [u8; RECORD] {
    let mut out = [0u8; RECORD];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = out.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &u32::from(sig).to_le_bytes());
    put(8, &info.code.to_le_bytes());
    let (low, high) = (info.addr as u32, (info.addr >> 32) as u32);
    let fault = matches!(sig, 4 | 7 | 8 | 11) && info.code > 0; // SIGILL, SIGBUS, SIGFPE, SIGSEGV from the CPU
    if fault {
        put(72, &info.addr.to_le_bytes()); // ssi_addr
    } else if info.code == -2 {
        // SI_TIMER: timer id and overrun.
        put(24, &low.to_le_bytes());
        put(32, &high.to_le_bytes());
    } else {
        put(12, &low.to_le_bytes()); // ssi_pid
        put(16, &high.to_le_bytes()); // ssi_uid
    }
    if sig == crate::signal::num::SIGCHLD && info.code > 0 {
        put(40, &(info.value as u32).to_le_bytes()); // ssi_status
    } else {
        put(44, &(info.value as u32).to_le_bytes()); // ssi_int
        put(48, &info.value.to_le_bytes()); // ssi_ptr
    }
    out
}

impl File for SignalFd {
    fn fdinfo(&self) -> alloc::string::String {
        alloc::format!("sigmask:\t{:016x}\n", self.mask())
    }

    /// Reads go through the system call, which knows the reading thread.
    fn read(&self, _buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> FileStat {
        device_stat(self.ino, 0, 0o600)
    }

    fn poll(&self) -> u16 {
        if (self.process.pending.bits() | self.thread.pending.bits()) & self.mask() != 0 { POLLIN } else { 0 }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_signalfd(&self) -> Option<&SignalFd> {
        Some(self)
    }
}
