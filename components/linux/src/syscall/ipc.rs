//! System V IPC calls: `msgget msgsnd msgrcv msgctl`, `semget semop
//! semtimedop semctl`, `shmget shmat shmdt shmctl` (see `crate::sysv`).

use crate::errno::{Errno, SysResult};
use crate::process::Process;
use crate::sysv::{self, IPC_NOWAIT, Message, Perm, Queue, SemOp, SemSet, Semaphore, Shm, Try};
use alloc::vec;
use alloc::vec::Vec;

const IPC_RMID: u64 = 0;
const IPC_SET: u64 = 1;
const IPC_STAT: u64 = 2;
const IPC_INFO: u64 = 3;
const MSG_STAT: u64 = 11;
const MSG_INFO: u64 = 12;
const MSG_STAT_ANY: u64 = 13;
const MSG_NOERROR: u64 = 0o10000;
const MSG_EXCEPT: u64 = 0o20000;
const MSG_COPY: u64 = 0o40000;

/// The command without `IPC_64` (glibc does not send it on x86_64; older
/// callers may).
fn command(cmd: u64) -> Result<u64, Errno> {
    if (cmd as i32) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(cmd & !0x100)
}

pub(super) fn msgget(p: &mut Process, key: u64, flags: u64) -> SysResult {
    let creds = p.info.credentials();
    let mut queues = sysv::QUEUES.lock();
    sysv::get_or_create(&mut queues, key as i32, flags as u32, &creds, |q| &q.perm, |_| Ok(()), |perm| Ok(Queue::new(perm))).map(u64::from)
}

/// `msgsnd(id, msgp, size, flags)`: `msgp` is `long mtype; char mtext[]`.
pub(super) fn msgsnd(p: &mut Process, id: u64, msgp: u64, size: u64, flags: u64) -> SysResult {
    let id = id as i32;
    if id < 0 || (size as i64) < 0 || size as usize > sysv::MSGMAX {
        return Err(Errno::EINVAL);
    }
    let mut kind = [0u8; 8];
    p.memory.read(msgp, &mut kind)?;
    let kind = i64::from_le_bytes(kind);
    if kind < 1 {
        return Err(Errno::EINVAL);
    }
    let mut text = vec![0u8; size as usize];
    p.memory.read(msgp.checked_add(8).ok_or(Errno::EFAULT)?, &mut text)?;
    let creds = p.info.credentials();
    let interrupted = p.interrupt_check();
    let pid = p.info.pid;
    let mut message = Some(Message { kind, text });
    // A queue that is gone at once is EINVAL; one removed while we wait, EIDRM.
    let waited = core::cell::Cell::new(false);
    sysv::CHANGED.wait_until(|| {
        let mut queues = sysv::QUEUES.lock();
        let queue = match queues.get(id) {
            Ok(q) => q,
            Err(_) => return Some(Err(if waited.get() { Errno::EIDRM } else { Errno::EINVAL })),
        };
        if !queue.perm.allows(&creds, 2) {
            return Some(Err(Errno::EACCES));
        }
        let len = message.as_ref().map_or(0, |m| m.text.len());
        let fits_queue = queue.bytes + len <= queue.max_bytes && queue.messages.len() < queue.max_bytes;
        // All queues together hold a bounded amount of kernel memory; when
        // that is full a sender waits (or gets EAGAIN) as for a full queue.
        let (pool_bytes, pool_count) = queues.iter().fold((0, 0), |(b, c), (_, q)| (b + q.bytes, c + q.messages.len()));
        let fits_pool = pool_bytes + len <= sysv::MSG_POOL_BYTES && pool_count < sysv::MSG_POOL_COUNT;
        let Ok(queue) = queues.get(id) else { return Some(Err(Errno::EIDRM)) };
        if fits_queue && fits_pool {
            if let Some(m) = message.take() {
                queue.bytes += m.text.len();
                queue.messages.push_back(m);
            }
            queue.stime = sysv::now_sec();
            queue.lspid = pid;
            return Some(Ok(0));
        }
        if flags as u32 & IPC_NOWAIT != 0 {
            return Some(Err(Errno::EAGAIN));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        waited.set(true);
        None
    })
    .inspect(|_| sysv::CHANGED.wake_all())
}

/// `msgrcv(id, msgp, size, msgtyp, flags)`.
pub(super) fn msgrcv(p: &mut Process, id: u64, msgp: u64, size: u64, msgtyp: u64, flags: u64) -> SysResult {
    let id = id as i32;
    if id < 0 || (size as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let msgtyp = msgtyp as i64;
    let creds = p.info.credentials();
    if flags & MSG_COPY != 0 {
        // A copy of the message at index `msgtyp`, left in the queue: only
        // without waiting and not with MSG_EXCEPT (EINVAL), as Linux.
        if flags as u32 & IPC_NOWAIT == 0 || flags & MSG_EXCEPT != 0 {
            return Err(Errno::EINVAL);
        }
        let found = {
            let mut queues = sysv::QUEUES.lock();
            let queue = queues.get(id).map_err(|_| Errno::EINVAL)?;
            if !queue.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            let index = usize::try_from(msgtyp).map_err(|_| Errno::ENOMSG)?;
            queue.messages.get(index).map(|m| (m.kind, m.text.clone())).ok_or(Errno::ENOMSG)?
        };
        let (kind, text) = found;
        if text.len() > size as usize && flags & MSG_NOERROR == 0 {
            return Err(Errno::E2BIG);
        }
        let n = text.len().min(size as usize);
        p.memory.write(msgp, &kind.to_le_bytes())?;
        p.memory.write(msgp.checked_add(8).ok_or(Errno::EFAULT)?, text.get(..n).unwrap_or(&[]))?;
        return Ok(n as u64);
    }
    let interrupted = p.interrupt_check();
    let pid = p.info.pid;
    let waited = core::cell::Cell::new(false);
    let message = sysv::CHANGED.wait_until(|| {
        let mut queues = sysv::QUEUES.lock();
        let queue = match queues.get(id) {
            Ok(q) => q,
            Err(_) => return Some(Err(if waited.get() { Errno::EIDRM } else { Errno::EINVAL })),
        };
        if !queue.perm.allows(&creds, 4) {
            return Some(Err(Errno::EACCES));
        }
        if let Some(at) = queue.pick(msgtyp, flags & MSG_EXCEPT != 0) {
            let too_big = queue.messages.get(at).is_some_and(|m| m.text.len() > size as usize);
            if too_big && flags & MSG_NOERROR == 0 {
                return Some(Err(Errno::E2BIG));
            }
            let Some(m) = queue.messages.remove(at) else { return Some(Err(Errno::EIDRM)) };
            queue.bytes -= m.text.len();
            queue.rtime = sysv::now_sec();
            queue.lrpid = pid;
            return Some(Ok(m));
        }
        if flags as u32 & IPC_NOWAIT != 0 {
            return Some(Err(Errno::ENOMSG));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        waited.set(true);
        None
    })?;
    sysv::CHANGED.wake_all();
    let len = message.text.len().min(size as usize);
    let mut out = Vec::with_capacity(8 + len);
    out.extend_from_slice(&message.kind.to_le_bytes());
    out.extend_from_slice(message.text.get(..len).unwrap_or(&[]));
    p.memory.write(msgp, &out)?;
    Ok(len as u64)
}

/// `struct msginfo` / `seminfo` / `shminfo` style limits: eight ints.
fn write_ints(p: &Process, addr: u64, values: &[i64], width: usize) -> Result<(), Errno> {
    let mut raw = Vec::new();
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    p.memory.write(addr, &raw)
}

pub(super) fn msgctl(p: &mut Process, id: u64, cmd: u64, buf: u64) -> SysResult {
    let cmd = command(cmd)?;
    let creds = p.info.credentials();
    let mut queues = sysv::QUEUES.lock();
    match cmd {
        IPC_INFO | MSG_INFO => {
            let (count, used_bytes) = (queues.len() as i64, queues.iter().map(|(_, q)| q.bytes as i64).sum::<i64>());
            let msgs: i64 = queues.iter().map(|(_, q)| q.messages.len() as i64).sum();
            let highest = i64::from(queues.highest());
            drop(queues);
            // struct msginfo: msgpool msgmap msgmax msgmnb msgmni msgssz msgtql msgseg (ints, msgseg a short).
            let values = if cmd == MSG_INFO {
                [count, msgs, sysv::MSGMAX as i64, sysv::MSGMNB as i64, sysv::QUEUES.lock().limit as i64, 16, used_bytes, 0x7fff]
            } else {
                [0x7fff, 0x7fff, sysv::MSGMAX as i64, sysv::MSGMNB as i64, sysv::QUEUES.lock().limit as i64, 16, 0x7fff, 0x7fff]
            };
            write_ints(p, buf, &values, 4)?;
            Ok(highest as u64)
        }
        IPC_STAT | MSG_STAT | MSG_STAT_ANY => {
            let queue = queues.get(id as i32)?;
            if cmd != MSG_STAT_ANY && !queue.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            let stat = queue.stat();
            drop(queues);
            p.memory.write(buf, &stat)?;
            Ok(if cmd == IPC_STAT { 0 } else { id })
        }
        IPC_SET => {
            let mut raw = [0u8; 120];
            drop(queues);
            p.memory.read(buf, &mut raw)?;
            let mut queues = sysv::QUEUES.lock();
            let queue = queues.get(id as i32)?;
            if !queue.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            let qbytes = u64::from_le_bytes(raw[88..96].try_into().unwrap_or([0; 8])) as usize;
            if qbytes > sysv::MSGMNB && !creds.capable(crate::process::cap::SYS_RESOURCE) {
                return Err(Errno::EPERM);
            }
            queue.perm.set_from(&raw[..48]);
            queue.max_bytes = qbytes;
            queue.ctime = sysv::now_sec();
            Ok(0)
        }
        IPC_RMID => {
            let queue = queues.get(id as i32)?;
            if !queue.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            queues.remove(id as i32);
            drop(queues);
            sysv::CHANGED.wake_all();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

const GETPID: u64 = 11;
const GETVAL: u64 = 12;
const GETALL: u64 = 13;
const GETNCNT: u64 = 14;
const GETZCNT: u64 = 15;
const SETVAL: u64 = 16;
const SETALL: u64 = 17;
const SEM_STAT: u64 = 18;
const SEM_INFO: u64 = 19;
const SEM_STAT_ANY: u64 = 20;

pub(super) fn semget(p: &mut Process, key: u64, nsems: u64, flags: u64) -> SysResult {
    let nsems = nsems as i32;
    if !(0..=sysv::SEMMSL as i32).contains(&nsems) {
        return Err(Errno::EINVAL);
    }
    let creds = p.info.credentials();
    let mut sets = sysv::SEMS.lock();
    let in_use: usize = sets.iter().map(|(_, s)| s.sems.len()).sum();
    sysv::get_or_create(
        &mut sets,
        key as i32,
        flags as u32,
        &creds,
        |s| &s.perm,
        |s| if (nsems as usize) > s.sems.len() { Err(Errno::EINVAL) } else { Ok(()) },
        |perm| {
            if nsems == 0 {
                return Err(Errno::EINVAL);
            }
            if in_use + nsems as usize > sysv::SEMMNS {
                return Err(Errno::ENOSPC);
            }
            Ok(SemSet { perm, sems: vec![Semaphore::default(); nsems as usize], otime: 0, ctime: sysv::now_sec(), removed: false })
        },
    )
    .map(u64::from)
}

/// `semop` / `semtimedop`: all operations at once, waiting while any
/// would block (until the deadline: EAGAIN).
pub(super) fn semtimedop(p: &mut Process, id: u64, sops: u64, count: u64, deadline: Option<u64>) -> SysResult {
    let id = id as i32;
    if id < 0 {
        return Err(Errno::EINVAL);
    }
    if count == 0 || count as usize > sysv::SEMOPM {
        return Err(if count == 0 { Errno::EINVAL } else { Errno::E2BIG });
    }
    let mut raw = vec![0u8; count as usize * 6];
    p.memory.read(sops, &mut raw)?;
    let ops: Vec<SemOp> = raw
        .chunks_exact(6)
        .map(|c| SemOp { num: u16::from_le_bytes([c[0], c[1]]), op: i16::from_le_bytes([c[2], c[3]]), flags: i16::from_le_bytes([c[4], c[5]]) })
        .collect();
    let creds = p.info.credentials();
    let alters = ops.iter().any(|o| o.op != 0);
    let interrupted = p.interrupt_check();
    let pid = p.info.pid;
    let waited = core::cell::Cell::new(false);
    // The semaphore this caller waits on, counted in its GETNCNT or
    // GETZCNT while it waits (Linux counts the operation that blocks).
    let counted: core::cell::Cell<Option<(u16, bool)>> = core::cell::Cell::new(None);
    let count = |set: &mut SemSet, at: Option<(u16, bool)>, step: i32| {
        if let Some((num, zero)) = at
            && let Some(sem) = set.sems.get_mut(usize::from(num))
        {
            let slot = if zero { &mut sem.zcnt } else { &mut sem.ncnt };
            *slot = slot.saturating_add_signed(step);
        }
    };
    let result = sysv::CHANGED.wait_until(|| {
        let mut sets = sysv::SEMS.lock();
        let set = match sets.get(id) {
            Ok(s) => s,
            Err(_) => return Some(Err(if waited.get() { Errno::EIDRM } else { Errno::EINVAL })),
        };
        if ops.iter().any(|o| usize::from(o.num) >= set.sems.len()) {
            return Some(Err(Errno::EFBIG));
        }
        if !set.perm.allows(&creds, if alters { 2 } else { 4 }) {
            count(set, counted.take(), -1);
            return Some(Err(Errno::EACCES));
        }
        let outcome = sysv::try_ops(set, &ops, pid);
        let now = match outcome {
            Try::Block { num, zero } => Some((num, zero)),
            _ => None,
        };
        if counted.get() != now {
            count(set, counted.get(), -1);
            count(set, now, 1);
            counted.set(now);
        }
        match outcome {
            Try::Done => {
                sysv::remember_undo(pid, id as u32, &ops);
                Some(Ok(0))
            }
            Try::Fail(e) => Some(Err(e)),
            Try::Block { .. } => {
                if interrupted() || deadline.is_some_and(|d| framekernel::time::now_ns() >= d) {
                    count(set, counted.take(), -1);
                    return Some(Err(if interrupted() { Errno::EINTR } else { Errno::EAGAIN }));
                }
                if let Some(d) = deadline {
                    NEXT_SEM_DEADLINE.fetch_min(d, core::sync::atomic::Ordering::Relaxed);
                }
                waited.set(true);
                None
            }
        }
    });
    sysv::CHANGED.wake_all();
    result
}

/// Timer tick: wakes `semtimedop` waiters once the earliest deadline
/// among them has passed.
pub fn tick() {
    let now = framekernel::time::now_ns();
    if now >= NEXT_SEM_DEADLINE.load(core::sync::atomic::Ordering::Relaxed) {
        NEXT_SEM_DEADLINE.store(u64::MAX, core::sync::atomic::Ordering::Relaxed);
        sysv::CHANGED.wake_all();
    }
}

static NEXT_SEM_DEADLINE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(u64::MAX);

pub(super) fn semctl(p: &mut Process, id: u64, num: u64, cmd: u64, arg: u64) -> SysResult {
    let cmd = command(cmd)?;
    let creds = p.info.credentials();
    let num = num as i32;
    if cmd == IPC_INFO || cmd == SEM_INFO {
        let sets = sysv::SEMS.lock();
        let (count, total) = (sets.len() as i64, sets.iter().map(|(_, s)| s.sems.len() as i64).sum::<i64>());
        let highest = sets.highest();
        drop(sets);
        // struct seminfo: semmap semmni semmns semmnu semmsl semopm semume semusz semvmx semaem.
        let values = if cmd == SEM_INFO {
            [0, sysv::MAX_IDS as i64, 32000 * 32000, count, sysv::SEMMSL as i64, sysv::SEMOPM as i64, 0, count, i64::from(sysv::SEMVMX), total]
        } else {
            [0, sysv::MAX_IDS as i64, 32000 * 32000, 0, sysv::SEMMSL as i64, sysv::SEMOPM as i64, 0, 0, i64::from(sysv::SEMVMX), 0]
        };
        write_ints(p, arg, &values, 4)?;
        return Ok(u64::from(highest));
    }
    let mut sets = sysv::SEMS.lock();
    let set = sets.get(id as i32)?;
    let sem = |set: &SemSet| set.sems.get(usize::try_from(num).map_err(|_| Errno::EINVAL)?).copied().ok_or(Errno::EINVAL);
    match cmd {
        IPC_STAT | SEM_STAT | SEM_STAT_ANY => {
            if cmd != SEM_STAT_ANY && !set.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            let stat = set.stat();
            drop(sets);
            p.memory.write(arg, &stat)?;
            Ok(if cmd == IPC_STAT { 0 } else { id })
        }
        IPC_SET => {
            if !set.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            drop(sets);
            let mut raw = [0u8; 48];
            p.memory.read(arg, &mut raw)?;
            let mut sets = sysv::SEMS.lock();
            let set = sets.get(id as i32)?;
            set.perm.set_from(&raw);
            set.ctime = sysv::now_sec();
            Ok(0)
        }
        IPC_RMID => {
            if !set.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            sets.remove(id as i32);
            drop(sets);
            sysv::forget_undo(id as u32, None);
            sysv::CHANGED.wake_all();
            Ok(0)
        }
        GETVAL | GETPID | GETNCNT | GETZCNT => {
            if !set.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            let s = sem(set)?;
            Ok(match cmd {
                GETVAL => s.value as u64,
                GETPID => u64::from(s.pid),
                GETNCNT => u64::from(s.ncnt),
                _ => u64::from(s.zcnt),
            })
        }
        GETALL => {
            if !set.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            let values: Vec<u8> = set.sems.iter().flat_map(|s| (s.value as u16).to_le_bytes()).collect();
            drop(sets);
            p.memory.write(arg, &values)?;
            Ok(0)
        }
        SETVAL => {
            if !set.perm.allows(&creds, 2) {
                return Err(Errno::EACCES);
            }
            let value = arg as i32;
            if !(0..=sysv::SEMVMX).contains(&value) {
                return Err(Errno::ERANGE);
            }
            let index = usize::try_from(num).map_err(|_| Errno::EINVAL)?;
            let slot = set.sems.get_mut(index).ok_or(Errno::EINVAL)?;
            slot.value = value;
            slot.pid = p.info.pid;
            set.ctime = sysv::now_sec();
            drop(sets);
            sysv::forget_undo(id as u32, Some(index as u16));
            sysv::CHANGED.wake_all();
            Ok(0)
        }
        SETALL => {
            if !set.perm.allows(&creds, 2) {
                return Err(Errno::EACCES);
            }
            let count = set.sems.len();
            drop(sets);
            let mut raw = vec![0u8; count * 2];
            p.memory.read(arg, &mut raw)?;
            let values: Vec<u16> = raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
            if values.iter().any(|&v| i32::from(v) > sysv::SEMVMX) {
                return Err(Errno::ERANGE);
            }
            let mut sets = sysv::SEMS.lock();
            let set = sets.get(id as i32)?;
            for (slot, v) in set.sems.iter_mut().zip(values) {
                slot.value = i32::from(v);
                slot.pid = p.info.pid;
            }
            set.ctime = sysv::now_sec();
            drop(sets);
            sysv::forget_undo(id as u32, None);
            sysv::CHANGED.wake_all();
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}

const SHM_RDONLY: u64 = 0o10000;
const SHM_RND: u64 = 0o20000;
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;
const SHM_LOCK: u64 = 11;
/// `shm_perm.mode` bit of a locked segment.
const SHM_LOCKED: u32 = 0o2000;
const SHM_UNLOCK: u64 = 12;
const SHM_STAT: u64 = 13;
const SHM_INFO: u64 = 14;
const SHM_STAT_ANY: u64 = 15;
const PAGE: u64 = crate::memory::PAGE;

pub(super) fn shmget(p: &mut Process, key: u64, size: u64, flags: u64) -> SysResult {
    let creds = p.info.credentials();
    let mut shms = sysv::SHMS.lock();
    sysv::get_or_create(
        &mut shms,
        key as i32,
        flags as u32,
        &creds,
        |s| &s.perm,
        |s| if size > s.segment.size { Err(Errno::EINVAL) } else { Ok(()) },
        |perm| {
            if size == 0 || size > sysv::shm_max() {
                return Err(Errno::EINVAL);
            }
            let pages = size.div_ceil(PAGE);
            let stats = framekernel::mm::frame_stats();
            if pages > stats.free as u64 / 2 {
                return Err(Errno::ENOMEM);
            }
            Ok(Shm {
                perm,
                segment: sysv::Segment::new(size),
                atime: 0,
                dtime: 0,
                ctime: sysv::now_sec(),
                cpid: p.info.pid,
                lpid: 0,
                removed: false,
            })
        },
    )
    .map(u64::from)
}

pub(super) fn shmat(p: &mut Process, id: u64, addr: u64, flags: u64) -> SysResult {
    let id = id as i32;
    let creds = p.info.credentials();
    let segment = {
        let mut shms = sysv::SHMS.lock();
        let shm = shms.get(id)?;
        let want = if flags & SHM_RDONLY != 0 { 4 } else { 6 };
        if !shm.perm.allows(&creds, want) {
            return Err(Errno::EACCES);
        }
        shm.segment.clone()
    };
    let len = segment.size.div_ceil(PAGE) * PAGE;
    let mut memory = p.memory.lock();
    let start = if addr == 0 {
        memory.find_free(len).ok_or(Errno::ENOMEM)?
    } else {
        let addr = if flags & SHM_RND != 0 { addr & !(PAGE - 1) } else { addr };
        if !addr.is_multiple_of(PAGE) || addr == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(len).filter(|&e| framekernel::logic::layout::is_user_half(e - 1)).ok_or(Errno::EINVAL)?;
        if !memory.is_free(addr, end) {
            if flags & SHM_REMAP == 0 {
                return Err(Errno::EINVAL);
            }
            memory.remove_range(addr, end);
        }
        addr
    };
    let prot = crate::memory::Prot { read: true, write: flags & SHM_RDONLY == 0, exec: flags & SHM_EXEC != 0 };
    memory.attach_shm(start, start + len, prot, id, segment)?;
    drop(memory);
    let mut shms = sysv::SHMS.lock();
    if let Ok(shm) = shms.get(id) {
        shm.atime = sysv::now_sec();
        shm.lpid = p.info.pid;
    }
    Ok(start)
}

pub(super) fn shmdt(p: &mut Process, addr: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let id = p.memory.lock().detach_shm(addr).ok_or(Errno::EINVAL)?;
    let mut shms = sysv::SHMS.lock();
    if let Ok(shm) = shms.get(id) {
        shm.dtime = sysv::now_sec();
        shm.lpid = p.info.pid;
    }
    Ok(0)
}

/// Attachments of segment `id` now: the distinct (address space,
/// attachment) pairs of every process.
/// `/proc/sysvipc/{msg,sem,shm}`: one line per object in Linux's layout.
pub fn proc_listing(kind: &str) -> alloc::string::String {
    use core::fmt::Write;
    let mut out = alloc::string::String::new();
    match kind {
        "shm" => {
            out.push_str("       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n");
            let rows: Vec<_> = sysv::SHMS
                .lock()
                .iter()
                .filter(|(_, s)| !s.removed)
                .map(|(&id, s)| (id, s.perm, s.segment.size, s.cpid, s.lpid, s.atime, s.dtime, s.ctime))
                .collect();
            for (id, perm, size, cpid, lpid, atime, dtime, ctime) in rows {
                let nattch = attach_count(id as i32);
                let _ = writeln!(
                    out,
                    "{:10} {:10}  {:4o} {:21} {:5} {:5}  {:5} {:5} {:5} {:5} {:5} {:10} {:10} {:10} {:21} {:21}",
                    perm.key, id, perm.mode & 0o7777, size, cpid, lpid, nattch, perm.uid, perm.gid, perm.cuid, perm.cgid, atime, dtime, ctime, 0, 0
                );
            }
        }
        "msg" => {
            out.push_str("       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n");
            for (id, q) in sysv::QUEUES.lock().iter() {
                let p = &q.perm;
                let _ = writeln!(
                    out,
                    "{:10} {:10}  {:4o}  {:10} {:10} {:5} {:5} {:5} {:5} {:5} {:5} {:10} {:10} {:10}",
                    p.key, id, p.mode & 0o7777, q.bytes, q.messages.len(), q.lspid, q.lrpid, p.uid, p.gid, p.cuid, p.cgid, q.stime, q.rtime, q.ctime
                );
            }
        }
        _ => {
            out.push_str("       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n");
            for (id, set) in sysv::SEMS.lock().iter().filter(|(_, s)| !s.removed) {
                let p = &set.perm;
                let _ = writeln!(
                    out,
                    "{:10} {:10}  {:4o} {:10} {:5} {:5} {:5} {:5} {:10} {:10}",
                    p.key, id, p.mode & 0o7777, set.sems.len(), p.uid, p.gid, p.cuid, p.cgid, set.otime, set.ctime
                );
            }
        }
    }
    out
}

fn attach_count(id: i32) -> u64 {
    let mut seen = alloc::collections::BTreeSet::new();
    for info in crate::process::all() {
        if let Some(memory) = info.memory() {
            for token in memory.lock().shm_attachments(id) {
                seen.insert((memory.id(), token));
            }
        }
    }
    seen.len() as u64
}

/// A segment removed with `IPC_RMID` goes once nothing is attached.
pub fn reap_removed_segments() {
    let removed: Vec<u32> = sysv::SHMS.lock().iter().filter(|(_, s)| s.removed).map(|(&id, _)| id).collect();
    for id in removed {
        if attach_count(id as i32) == 0 {
            sysv::SHMS.lock().remove(id as i32);
        }
    }
}

pub(super) fn shmctl(p: &mut Process, id: u64, cmd: u64, buf: u64) -> SysResult {
    let cmd = command(cmd)?;
    let creds = p.info.credentials();
    if cmd == IPC_INFO || cmd == SHM_INFO {
        let shms = sysv::SHMS.lock();
        let highest = shms.highest();
        let (count, resident): (i64, i64) = (shms.len() as i64, shms.iter().map(|(_, s)| s.segment.resident() as i64).sum());
        let total: i64 = shms.iter().map(|(_, s)| s.segment.size.div_ceil(PAGE) as i64).sum();
        drop(shms);
        if cmd == SHM_INFO {
            // struct shm_info: used_ids (int), shm_tot, shm_rss, shm_swp, swap_attempts, swap_successes (longs).
            let mut raw = Vec::new();
            raw.extend_from_slice(&(count as i32).to_le_bytes());
            raw.extend_from_slice(&[0u8; 4]);
            for v in [total, resident, 0, 0, 0] {
                raw.extend_from_slice(&v.to_le_bytes());
            }
            p.memory.write(buf, &raw)?;
        } else {
            // struct shminfo: shmmax shmmin shmmni shmseg shmall (longs).
            write_ints(p, buf, &[sysv::shm_max() as i64, 1, sysv::SHMS.lock().limit as i64, 4096, (sysv::SHMMAX / PAGE) as i64], 8)?;
        }
        return Ok(u64::from(highest));
    }
    let nattch = attach_count(id as i32);
    let mut shms = sysv::SHMS.lock();
    let shm = shms.get(id as i32)?;
    match cmd {
        IPC_STAT | SHM_STAT | SHM_STAT_ANY => {
            if cmd != SHM_STAT_ANY && !shm.perm.allows(&creds, 4) {
                return Err(Errno::EACCES);
            }
            // struct shmid64_ds (112 bytes).
            let mut b = [0u8; 112];
            let mut perm: Perm = shm.perm;
            if shm.removed {
                perm.key = sysv::IPC_PRIVATE;
                perm.mode |= 0o1000; // SHM_DEST
            }
            b[..48].copy_from_slice(&perm.bytes());
            b[48..56].copy_from_slice(&shm.segment.size.to_le_bytes());
            b[56..64].copy_from_slice(&shm.atime.to_le_bytes());
            b[64..72].copy_from_slice(&shm.dtime.to_le_bytes());
            b[72..80].copy_from_slice(&shm.ctime.to_le_bytes());
            b[80..84].copy_from_slice(&shm.cpid.to_le_bytes());
            b[84..88].copy_from_slice(&shm.lpid.to_le_bytes());
            b[88..96].copy_from_slice(&nattch.to_le_bytes());
            drop(shms);
            p.memory.write(buf, &b)?;
            Ok(if cmd == IPC_STAT { 0 } else { id })
        }
        IPC_SET => {
            if !shm.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            drop(shms);
            let mut raw = [0u8; 48];
            p.memory.read(buf, &mut raw)?;
            let mut shms = sysv::SHMS.lock();
            let shm = shms.get(id as i32)?;
            shm.perm.set_from(&raw);
            shm.ctime = sysv::now_sec();
            Ok(0)
        }
        IPC_RMID => {
            if !shm.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            if nattch == 0 {
                shms.remove(id as i32);
            } else {
                shm.removed = true;
                shm.perm.key = sysv::IPC_PRIVATE;
            }
            Ok(0)
        }
        SHM_LOCK | SHM_UNLOCK => {
            if !creds.capable(crate::process::cap::IPC_LOCK) && !shm.perm.may_control(&creds) {
                return Err(Errno::EPERM);
            }
            // Nothing is ever swapped out; the mode shows the lock (SHM_LOCKED).
            if cmd == SHM_LOCK {
                shm.perm.mode |= SHM_LOCKED;
            } else {
                shm.perm.mode &= !SHM_LOCKED;
            }
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
