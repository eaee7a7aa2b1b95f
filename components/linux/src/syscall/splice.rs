//! `splice`, `tee` and `vmsplice`: moving data through a pipe without a
//! user buffer.
//!
//! Linux moves page references; here the bytes are copied through the
//! kernel, a chunk at a time, with Linux's rules: one side of `splice` is
//! a pipe; an offset is only for the side that is not a pipe and then the
//! file's own offset stays; bytes leave a pipe only once they are written
//! on (a failed write loses nothing); `tee` copies without consuming.

use super::IO_CHUNK;
use crate::errno::{Errno, SysResult};
use crate::files::{File, SEEK_CUR, SEEK_SET};
use crate::process::Process;
use alloc::sync::Arc;

/// `SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT`.
const SPLICE_F_ALL: u64 = 0xf;
const SPLICE_F_NONBLOCK: u64 = 2;

fn readable(file: &Arc<dyn File>) -> bool {
    file.status_flags() & 3 != 1
}

fn writable(file: &Arc<dyn File>) -> bool {
    file.status_flags() & 3 != 0
}

/// The offset argument of a non-pipe side: `Some(position)` read from user
/// memory, EINVAL when negative; ESPIPE when the file does not seek.
fn offset_arg(p: &Process, file: &Arc<dyn File>, at: u64) -> Result<Option<u64>, Errno> {
    if at == 0 {
        return Ok(None);
    }
    if file.seek(0, SEEK_CUR).is_err() {
        return Err(Errno::ESPIPE);
    }
    let mut word = [0u8; 8];
    p.memory.read(at, &mut word)?;
    let value = i64::from_le_bytes(word);
    if value < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(value as u64))
}

/// Up to `len` (at most a chunk) bytes waiting in the pipe, left there
/// until they are written on; `None` for nothing to move (a zero length,
/// or end of file).
fn waiting_bytes(from: &crate::pipe::PipeEnd, len: u64, nonblocking: bool, interrupted: &dyn Fn() -> bool) -> Result<Option<alloc::vec::Vec<u8>>, Errno> {
    if len == 0 {
        return Ok(None);
    }
    let data = from.peek((len as usize).min(IO_CHUNK), nonblocking, interrupted)?;
    Ok(if data.is_empty() { None } else { Some(data) })
}

pub(super) fn splice(p: &mut Process, fd_in: u64, off_in: u64, fd_out: u64, off_out: u64, len: u64, flags: u64) -> SysResult {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let input = p.files.get(fd_in)?;
    let output = p.files.get(fd_out)?;
    if !readable(&input) || !writable(&output) {
        return Err(Errno::EBADF);
    }
    let nonblocking = flags & SPLICE_F_NONBLOCK != 0;
    let interrupted = p.interrupt_check();
    match (input.as_pipe(), output.as_pipe()) {
        (Some(from), Some(to)) => {
            if off_in != 0 || off_out != 0 {
                return Err(Errno::ESPIPE);
            }
            if from.same_pipe(to) {
                return Err(Errno::EINVAL);
            }
            let Some(data) = waiting_bytes(from, len, nonblocking, &interrupted)? else { return Ok(0) };
            let wrote = to.put(&data, true, &interrupted)?;
            from.consume(wrote as usize);
            Ok(wrote)
        }
        (Some(from), None) => {
            if off_in != 0 {
                return Err(Errno::ESPIPE);
            }
            let position = offset_arg(p, &output, off_out)?;
            if output.status_flags() & crate::fs::O_APPEND != 0 {
                return Err(Errno::EINVAL);
            }
            let Some(data) = waiting_bytes(from, len, nonblocking, &interrupted)? else { return Ok(0) };
            let room = super::io::fsize_room(p, &output, position, data.len() as u64)? as usize;
            let data = data.get(..room).unwrap_or(&data);
            let wrote = match position {
                Some(at) => output.write_at(at, data)?,
                None => output.write_interruptible(data, &interrupted)?,
            };
            from.consume(wrote as usize);
            if let Some(at) = position {
                p.memory.write(off_out, &(at + wrote).to_le_bytes())?;
            }
            Ok(wrote)
        }
        (None, Some(to)) => {
            if off_out != 0 {
                return Err(Errno::ESPIPE);
            }
            if input.is_tty() || input.stat().kind == tessera_vfs::FileType::Directory {
                return Err(Errno::EINVAL);
            }
            let position = offset_arg(p, &input, off_in)?;
            if len == 0 {
                return Ok(0);
            }
            // Read at an explicit position (the argument's or the file's
            // own), so that bytes the pipe does not take stay unread.
            let own = match position {
                Some(_) => None,
                None => input.seek(0, SEEK_CUR).ok(),
            };
            let mut data = alloc::vec![0u8; (len as usize).min(IO_CHUNK)];
            let got = match position.or(own) {
                Some(at) => input.read_at(at, &mut data)?,
                None => input.read(&mut data, &interrupted)?,
            } as usize;
            if got == 0 {
                return Ok(0);
            }
            let wrote = to.put(data.get(..got).unwrap_or(&[]), true, &interrupted)?;
            if let Some(at) = position {
                p.memory.write(off_in, &(at + wrote).to_le_bytes())?;
            } else if let Some(at) = own {
                input.seek((at + wrote) as i64, SEEK_SET)?;
            }
            Ok(wrote)
        }
        (None, None) => Err(Errno::EINVAL),
    }
}

/// `tee(fd_in, fd_out, len, flags)`: copies up to `len` bytes from one
/// pipe to another, leaving them in the first.
pub(super) fn tee(p: &mut Process, fd_in: u64, fd_out: u64, len: u64, flags: u64) -> SysResult {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let input = p.files.get(fd_in)?;
    let output = p.files.get(fd_out)?;
    if !readable(&input) || !writable(&output) {
        return Err(Errno::EBADF);
    }
    let (Some(from), Some(to)) = (input.as_pipe(), output.as_pipe()) else { return Err(Errno::EINVAL) };
    if from.same_pipe(to) {
        return Err(Errno::EINVAL);
    }
    let interrupted = p.interrupt_check();
    let Some(data) = waiting_bytes(from, len, flags & SPLICE_F_NONBLOCK != 0, &interrupted)? else { return Ok(0) };
    to.put(&data, true, &interrupted)
}

/// `vmsplice(fd, iov, count, flags)`: user memory into a pipe (its write
/// end) or out of it (its read end), as `writev`/`readv`.
pub(super) fn vmsplice(p: &mut Process, fd: u64, iov: u64, count: u64, flags: u64) -> SysResult {
    if flags & !SPLICE_F_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let file = p.files.get(fd)?;
    let pipe = file.as_pipe().ok_or(Errno::EBADF)?;
    if pipe.reads() && readable(&file) {
        return super::io::readv(p, fd, iov, count);
    }
    if pipe.reads() || !writable(&file) {
        return Err(Errno::EBADF);
    }
    // Into the pipe: what fits, waiting only while nothing does (Linux).
    let entries = super::io::iovecs(p, iov, count)?;
    let mut data = alloc::vec::Vec::new();
    for (base, len) in entries {
        let room = IO_CHUNK.saturating_sub(data.len()).min(len as usize);
        let mut part = alloc::vec![0u8; room];
        p.memory.read(base, &mut part)?;
        data.extend_from_slice(&part);
        if data.len() >= IO_CHUNK {
            break;
        }
    }
    if data.is_empty() {
        return Ok(0);
    }
    let interrupted = p.interrupt_check();
    pipe.put(&data, true, &interrupted)
}
