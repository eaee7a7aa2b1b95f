//! `/dev/cellctl`: the cell manager's interface for `cellctl`. Write one
//! command (see `tessera_live_update::control`); the write fails with an
//! errno naming the kind of problem (EINVAL, ENOENT, ENOEXEC, EBUSY, EIO,
//! ENOMEM), and reading the same open file returns the reply: the
//! command's output, or the message that explains the failure. Commands
//! that load or change ring-0 code (`load`, `unload`, `swap`, `restart`)
//! need effective uid 0 (`EPERM` otherwise); `list` and `info` do not.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat};
use alloc::string::String;
use alloc::vec::Vec;
use framekernel::sync::Mutex;
use tessera_live_update::control::{self, Failure};

/// Device number: misc major 10, minor 240.
pub const RDEV: u64 = 0x0af0;

/// Commands that load or change ring-0 code: root only (as Linux asks
/// `CAP_SYS_MODULE` for modules).
const PRIVILEGED: [&str; 4] = ["load", "unload", "swap", "restart"];

/// One open `/dev/cellctl`, with the credentials of whoever opened it:
/// privilege is judged by the opener, as Linux judges a file by its
/// `f_cred` (a set-uid program whose output is redirected here does not
/// lend its rights to the redirecting user).
#[derive(Default)]
pub struct CellCtl {
    reply: Mutex<(Vec<u8>, usize)>,
    opener: Option<crate::process::Credentials>,
}

impl CellCtl {
    /// An open file for the calling process.
    pub fn open() -> Self {
        Self { reply: Mutex::new((Vec::new(), 0)), opener: crate::process::current().map(|p| p.credentials()) }
    }
}

fn errno(failure: Failure) -> Errno {
    match failure {
        Failure::Usage | Failure::WrongInterface => Errno::EINVAL,
        Failure::NotFound => Errno::ENOENT,
        Failure::BadCell => Errno::ENOEXEC,
        Failure::Busy => Errno::EBUSY,
        Failure::StartFailed => Errno::EIO,
        Failure::NoMemory => Errno::ENOMEM,
    }
}

impl File for CellCtl {
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        let mut reply = self.reply.lock();
        let (text, at) = &mut *reply;
        let rest = text.get(*at..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf.get_mut(..n).ok_or(Errno::EFAULT)?.copy_from_slice(rest.get(..n).unwrap_or(&[]));
        *at += n;
        Ok(n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        let line = core::str::from_utf8(buf).map_err(|_| Errno::EINVAL)?;
        let command = line.split_ascii_whitespace().next().unwrap_or("");
        if PRIVILEGED.contains(&command) {
            // Both the opener and the writer must be privileged.
            let writer = crate::process::current().map(|p| p.credentials());
            let privileged = |c: &Option<crate::process::Credentials>| c.as_ref().is_some_and(|c| c.euid == 0 && c.capable(crate::process::cap::SYS_MODULE));
            let caller = if privileged(&writer) { self.opener.clone() } else { writer };
            if !privileged(&caller) {
                let euid = caller.map_or_else(|| String::from("none"), |c| alloc::format!("{}", c.euid));
                let text = alloc::format!("{command}: loading or changing cells needs root (effective uid 0); the caller's is {euid}\n");
                *self.reply.lock() = (text.into_bytes(), 0);
                return Err(Errno::EPERM);
            }
        }
        let read_file = |path: &str| {
            crate::fs::read_file(path).map(|bytes| bytes.to_vec()).map_err(|e| alloc::format!("cannot read ({e:?})"))
        };
        // The lock is not held while the command runs: a swap waits for
        // calls in flight to drain.
        let (text, result): (String, SysResult) = match control::command(line, &read_file) {
            Ok(text) => (text, Ok(buf.len() as u64)),
            Err(e) => (alloc::format!("{}\n", e.message), Err(errno(e.failure))),
        };
        *self.reply.lock() = (text.into_bytes(), 0);
        result
    }

    fn stat(&self) -> FileStat {
        crate::files::device_stat(0, RDEV, 0o600)
    }
}
