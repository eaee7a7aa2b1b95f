//! Process descriptors (`pidfd_open`): a file that names one process,
//! readable by `poll` once the process has ended, usable with
//! `pidfd_send_signal` and `waitid(P_PIDFD)`.
//!
//! The file holds the process's record, not its pid: a pid reused by a
//! later process is never signalled through an old descriptor.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, device_stat};
use crate::process::ProcessInfo;
use alloc::sync::Arc;

/// An open process descriptor.
pub struct PidFd {
    target: Arc<ProcessInfo>,
    flags: u32,
}

impl PidFd {
    /// A descriptor for `target`; `flags` are its status flags (O_RDWR,
    /// O_NONBLOCK as given).
    pub fn open(target: Arc<ProcessInfo>, flags: u32) -> Arc<dyn File> {
        Arc::new(PidFd { target, flags })
    }

    /// The process named.
    pub fn target(&self) -> &Arc<ProcessInfo> {
        &self.target
    }
}

impl File for PidFd {
    fn read(&self, _buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> FileStat {
        // One anonymous inode for every pidfd, as Linux's anon_inode.
        device_stat(0x3fff_ffff, 0, 0o600)
    }

    fn poll(&self) -> u16 {
        if self.target.outcome().is_some() { POLLIN } else { 0 }
    }

    fn status_flags(&self) -> u32 {
        self.flags
    }

    fn as_pidfd(&self) -> Option<&PidFd> {
        Some(self)
    }
}
