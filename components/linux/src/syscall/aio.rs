//! Linux native AIO (`io_setup`, `io_submit`, `io_getevents`,
//! `io_pgetevents`, `io_cancel`, `io_destroy`). A context is a page of
//! the caller's address space (the ring's address is the context id, as
//! on Linux; its header says "no user-space ring", so libaio asks the
//! kernel for events) and a queue of completion events kept with the
//! process. Requests run when submitted: reads and writes (plain and
//! vectored) at an offset, and fsync/fdatasync, with the same checks and
//! results as `pread`/`pwrite`/`preadv`/`pwritev`/`fsync`; their events
//! wait in the context until `io_getevents` takes them. `IOCB_FLAG_RESFD`
//! adds 1 to the given eventfd. Nothing is ever in flight, so
//! `io_cancel` finds nothing (EINVAL). At most 65,536 events over all
//! contexts (`/proc/sys/fs/aio-max-nr`; EAGAIN beyond).

use crate::errno::{Errno, SysResult};
use crate::memory::Prot;
use crate::process::Process;
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, Ordering};

/// `fs.aio-max-nr`.
pub const AIO_MAX_NR: u64 = 65536;
/// Events of all live contexts (`fs.aio-nr`).
pub static AIO_NR: AtomicU64 = AtomicU64::new(0);

const PAGE: u64 = 4096;
const IOCB_CMD_PREAD: u16 = 0;
const IOCB_CMD_PWRITE: u16 = 1;
const IOCB_CMD_FSYNC: u16 = 2;
const IOCB_CMD_FDSYNC: u16 = 3;
const IOCB_CMD_PREADV: u16 = 7;
const IOCB_CMD_PWRITEV: u16 = 8;
const IOCB_FLAG_RESFD: u32 = 1;

/// One context: its size and the completed requests' events
/// (`struct io_event`: data, iocb address, result, 0).
pub struct Context {
    max: u64,
    events: VecDeque<[u64; 4]>,
}

impl Drop for Context {
    fn drop(&mut self) {
        AIO_NR.fetch_sub(self.max, Ordering::SeqCst);
    }
}

/// `io_setup(nr_events, ctxp)`.
pub(super) fn io_setup(p: &mut Process, nr: u64, ctxp: u64) -> SysResult {
    let mut current = [0u8; 8];
    p.memory.read(ctxp, &mut current)?;
    let nr = u64::from(nr as u32);
    if u64::from_le_bytes(current) != 0 || nr == 0 || nr > 0x1000_0000 / 32 {
        return Err(Errno::EINVAL);
    }
    if AIO_NR.fetch_add(nr, Ordering::SeqCst) + nr > AIO_MAX_NR {
        AIO_NR.fetch_sub(nr, Ordering::SeqCst);
        return Err(Errno::EAGAIN);
    }
    let context = Context { max: nr, events: VecDeque::new() };
    // The ring page: id 0, nr, head 0, tail 0, magic 0 (no ring here),
    // header length 32.
    let ring = {
        let mut memory = p.memory.lock();
        let start = memory.find_free(PAGE).ok_or(Errno::EAGAIN)?;
        memory.add_area(start, start + PAGE, Prot { read: true, write: true, exec: false }, false)?;
        start
    };
    let mut header = [0u8; 32];
    header[4..8].copy_from_slice(&(nr as u32).to_le_bytes());
    header[28..32].copy_from_slice(&32u32.to_le_bytes());
    let written = p.memory.write(ring, &header).and_then(|()| p.memory.write(ctxp, &ring.to_le_bytes()));
    if let Err(e) = written {
        p.memory.lock().remove_range(ring, ring + PAGE);
        return Err(e);
    }
    p.info.aio.lock().insert(ring, context);
    Ok(0)
}

/// `io_destroy(ctx)`.
pub(super) fn io_destroy(p: &mut Process, ctx: u64) -> SysResult {
    let context = p.info.aio.lock().remove(&ctx).ok_or(Errno::EINVAL)?;
    drop(context);
    p.memory.lock().remove_range(ctx, ctx + PAGE);
    Ok(0)
}

fn word(raw: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(raw.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]))
}

/// `io_submit(ctx, nr, iocbpp)`: runs each request now; returns how many
/// were taken (the first one's error if none).
pub(super) fn io_submit(p: &mut Process, ctx: u64, nr: u64, list: u64) -> SysResult {
    if (nr as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let max = p.info.aio.lock().get(&ctx).map(|c| c.max).ok_or(Errno::EINVAL)?;
    let mut done = 0u64;
    for i in 0..nr.min(max) {
        match submit_one(p, ctx, list.wrapping_add(i * 8)) {
            Ok(()) => done += 1,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    if done > 0 {
        super::poll::notify(); // waiters in io_getevents
    }
    Ok(done)
}

fn submit_one(p: &mut Process, ctx: u64, slot: u64) -> Result<(), Errno> {
    let mut pointer = [0u8; 8];
    p.memory.read(slot, &mut pointer)?;
    let at = u64::from_le_bytes(pointer);
    let mut iocb = [0u8; 64];
    p.memory.read(at, &mut iocb)?;
    let data = word(&iocb, 0);
    let opcode = u16::from_le_bytes([iocb[16], iocb[17]]);
    let fd = u64::from(u32::from_le_bytes([iocb[20], iocb[21], iocb[22], iocb[23]]));
    let (buf, nbytes, offset) = (word(&iocb, 24), word(&iocb, 32), word(&iocb, 40));
    let reserved = word(&iocb, 48);
    let flags = u32::from_le_bytes([iocb[56], iocb[57], iocb[58], iocb[59]]);
    let resfd = u64::from(u32::from_le_bytes([iocb[60], iocb[61], iocb[62], iocb[63]]));
    if reserved != 0 || (offset as i64) < 0 && matches!(opcode, IOCB_CMD_PREAD | IOCB_CMD_PWRITE | IOCB_CMD_PREADV | IOCB_CMD_PWRITEV) {
        return Err(Errno::EINVAL);
    }
    // The descriptor and its access mode are checked before anything runs.
    let file = p.files.get(fd as u32 as u64)?;
    let status = file.status_flags();
    let needs_read = matches!(opcode, IOCB_CMD_PREAD | IOCB_CMD_PREADV);
    let needs_write = matches!(opcode, IOCB_CMD_PWRITE | IOCB_CMD_PWRITEV);
    if (needs_read && status & 3 == 1) || (needs_write && status & 3 == 0) {
        return Err(Errno::EBADF);
    }
    // Room for the event first: a full context refuses before any I/O.
    {
        let contexts = p.info.aio.lock();
        let context = contexts.get(&ctx).ok_or(Errno::EINVAL)?;
        if context.events.len() as u64 >= context.max {
            return Err(Errno::EAGAIN);
        }
    }
    let eventfd = if flags & IOCB_FLAG_RESFD != 0 {
        let target = p.files.get(resfd)?;
        if !target.is_eventfd() {
            return Err(Errno::EINVAL);
        }
        Some(target)
    } else {
        None
    };
    let result = match opcode {
        IOCB_CMD_PREAD => super::fs::pread64(p, fd, buf, nbytes, offset),
        IOCB_CMD_PWRITE => super::fs::pwrite64(p, fd, buf, nbytes, offset),
        IOCB_CMD_PREADV => super::io::preadv(p, fd, buf, nbytes, offset, None),
        IOCB_CMD_PWRITEV => super::io::pwritev(p, fd, buf, nbytes, offset, None),
        IOCB_CMD_FSYNC | IOCB_CMD_FDSYNC => file.sync(),
        _ => return Err(Errno::EINVAL),
    };
    let res = match result {
        Ok(n) => n,
        Err(e) => (-(e as i64)) as u64,
    };
    {
        let mut contexts = p.info.aio.lock();
        let context = contexts.get_mut(&ctx).ok_or(Errno::EINVAL)?;
        if context.events.len() as u64 >= context.max {
            return Err(Errno::EAGAIN);
        }
        context.events.push_back([data, at, res, 0]);
    }
    if let Some(eventfd) = eventfd {
        let _ = eventfd.write(&1u64.to_le_bytes());
    }
    Ok(())
}

/// `io_getevents(ctx, min_nr, nr, events, timeout)` and `io_pgetevents`
/// (whose signal mask is not applied): takes up to `nr` events, waiting
/// for `min_nr` until the time-out (relative; none: no limit).
pub(super) fn io_getevents(p: &mut Process, ctx: u64, min_nr: u64, nr: u64, out: u64, timeout: u64) -> SysResult {
    let (min_nr, nr) = (min_nr as i64, nr as i64);
    if !p.info.aio.lock().contains_key(&ctx) || min_nr < 0 || nr < 0 || min_nr > nr {
        return Err(Errno::EINVAL);
    }
    let deadline = if timeout == 0 { u64::MAX } else { framekernel::time::now_ns().saturating_add(super::proc::read_timespec(p, timeout)?) };
    let interrupted = p.interrupt_check();
    let info = p.info.clone();
    let ready = super::proc::SLEEPERS.wait_until(|| {
        let available = info.aio.lock().get(&ctx).map(|c| c.events.len() as i64);
        let Some(available) = available else { return Some(Err(Errno::EINVAL)) };
        if available >= min_nr || nr == 0 || framekernel::time::now_ns() >= deadline {
            return Some(Ok(()));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        super::proc::NEXT_WAKE.fetch_min(deadline, Ordering::Relaxed);
        None
    });
    ready?;
    let taken: alloc::vec::Vec<[u64; 4]> = {
        let mut contexts = p.info.aio.lock();
        let context = contexts.get_mut(&ctx).ok_or(Errno::EINVAL)?;
        let count = (nr as usize).min(context.events.len());
        context.events.drain(..count).collect()
    };
    let mut bytes = alloc::vec::Vec::with_capacity(taken.len() * 32);
    for event in &taken {
        for field in event {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
    }
    if let Err(e) = p.memory.write(out, &bytes) {
        // Put them back: nothing is lost to a bad buffer.
        if let Some(context) = p.info.aio.lock().get_mut(&ctx) {
            for event in taken.into_iter().rev() {
                context.events.push_front(event);
            }
        }
        return Err(e);
    }
    Ok((bytes.len() / 32) as u64)
}

/// `io_cancel(ctx, iocb, result)`: the request's key is read first
/// (EFAULT); nothing is ever in flight, so there is nothing to cancel.
pub(super) fn io_cancel(p: &mut Process, ctx: u64, iocb: u64, _result: u64) -> SysResult {
    let mut key = [0u8; 4];
    p.memory.read(iocb.wrapping_add(8), &mut key)?;
    if !p.info.aio.lock().contains_key(&ctx) {
        return Err(Errno::EINVAL);
    }
    Err(Errno::EINVAL)
}
