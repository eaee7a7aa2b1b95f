//! System V IPC: message queues, semaphore sets and shared memory
//! segments, as Linux keeps them: named by a key (or private), found by
//! an id, with an owner, a creator and mode bits checked like files', and
//! `IPC_STAT`/`IPC_SET`/`IPC_RMID`. The layouts of the `*id64_ds`
//! structures are x86_64 Linux's.
//!
//! Message queues and semaphores block on one wait queue that every
//! change wakes; a waiter re-checks (few waiters, simple). Shared memory
//! segments are pages (frames) shared by every process that attaches
//! them; see `memory.rs` for how an attachment maps them.

use crate::errno::Errno;
use crate::process::Credentials;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use framekernel::mm::Frame;
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

/// `IPC_PRIVATE`.
pub const IPC_PRIVATE: i32 = 0;
/// `IPC_CREAT`.
pub const IPC_CREAT: u32 = 0o1000;
/// `IPC_EXCL`.
pub const IPC_EXCL: u32 = 0o2000;
/// `IPC_NOWAIT`.
pub const IPC_NOWAIT: u32 = 0o4000;

/// Most objects of each kind (`MSGMNI`, `SEMMNI`, `SHMMNI`).
pub const MAX_IDS: usize = 32000;
/// Largest message (`MSGMAX`).
pub const MSGMAX: usize = 8192;
/// Default bytes a queue holds (`MSGMNB`).
pub const MSGMNB: usize = 16384;
/// Most semaphores in a set (`SEMMSL`).
pub const SEMMSL: usize = 32000;
/// Most operations in one `semop` (`SEMOPM`).
pub const SEMOPM: usize = 500;
/// Largest semaphore value (`SEMVMX`).
pub const SEMVMX: i32 = 32767;
/// Most semaphores in all sets together (`SEMMNS`; kernel memory).
pub const SEMMNS: usize = 256_000;
/// Most message bytes queued in all queues together (kernel memory).
pub const MSG_POOL_BYTES: usize = 16 << 20;
/// Most messages queued in all queues together (`MSGTQL`-like).
pub const MSG_POOL_COUNT: usize = 65_536;
/// Largest shared memory segment (`SHMMAX`, bounded here by memory).
pub const SHMMAX: u64 = 1 << 32;
/// `kernel.shmmax` as set (at most [`SHMMAX`]).
pub static SHM_MAX: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(SHMMAX);

/// The current largest segment size.
pub fn shm_max() -> u64 {
    SHM_MAX.load(core::sync::atomic::Ordering::Relaxed)
}

/// Owner, creator and mode of an IPC object.
#[derive(Debug, Clone, Copy)]
pub struct Perm {
    /// Its key.
    pub key: i32,
    /// Owner.
    pub uid: u32,
    /// Owner's group.
    pub gid: u32,
    /// Creator.
    pub cuid: u32,
    /// Creator's group.
    pub cgid: u32,
    /// Mode bits (the low 9 are rights).
    pub mode: u32,
    /// Slot use count (Linux's `seq`).
    pub seq: u16,
}

impl Perm {
    fn new(key: i32, mode: u32, creds: &Credentials) -> Self {
        Perm { key, uid: creds.euid, gid: creds.egid, cuid: creds.euid, cgid: creds.egid, mode: mode & 0o777, seq: 0 }
    }

    /// Linux's `ipcperms`: may `creds` access for `want` (4 read, 2 write)?
    pub fn allows(&self, creds: &Credentials, want: u32) -> bool {
        if creds.capable(crate::process::cap::IPC_OWNER) {
            return true;
        }
        let bits = if creds.euid == self.uid || creds.euid == self.cuid {
            self.mode >> 6
        } else if creds.egid == self.gid || creds.egid == self.cgid || creds.groups.contains(&self.gid) {
            self.mode >> 3
        } else {
            self.mode
        } & 7;
        bits & want == want
    }

    /// May `creds` change or remove the object (owner, creator or root)?
    pub fn may_control(&self, creds: &Credentials) -> bool {
        creds.capable(crate::process::cap::SYS_ADMIN) || creds.euid == self.uid || creds.euid == self.cuid
    }

    /// `struct ipc64_perm` (48 bytes).
    pub fn bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0..4].copy_from_slice(&self.key.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..12].copy_from_slice(&self.gid.to_le_bytes());
        b[12..16].copy_from_slice(&self.cuid.to_le_bytes());
        b[16..20].copy_from_slice(&self.cgid.to_le_bytes());
        b[20..24].copy_from_slice(&self.mode.to_le_bytes());
        b[24..26].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// `IPC_SET`: owner, group and the rights bits from an `ipc64_perm`.
    pub fn set_from(&mut self, raw: &[u8]) {
        let word = |at: usize| u32::from_le_bytes(raw.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]));
        self.uid = word(4);
        self.gid = word(8);
        self.mode = (self.mode & !0o777) | (word(20) & 0o777);
    }
}

/// Seconds since the epoch.
pub fn now_sec() -> i64 {
    (framekernel::time::realtime_ns() / 1_000_000_000) as i64
}

/// A table of objects of one kind: by id, with key lookup.
pub struct Table<T> {
    objects: BTreeMap<u32, T>,
    next: u32,
    /// `/proc/sys/kernel/{msg,sem,shm}_next_id`: the id the next object
    /// gets (then back to `None`, shown as -1).
    pub next_id: Option<u32>,
    /// Most objects (`kernel.msgmni`, `shmmni`; at most [`MAX_IDS`]).
    pub limit: usize,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Table<T> {
    /// Empty.
    pub const fn new() -> Self {
        Table { objects: BTreeMap::new(), next: 0, next_id: None, limit: MAX_IDS }
    }

    /// The object `id`.
    pub fn get(&mut self, id: i32) -> Result<&mut T, Errno> {
        u32::try_from(id).ok().and_then(|id| self.objects.get_mut(&id)).ok_or(Errno::EINVAL)
    }

    /// Removes `id`.
    pub fn remove(&mut self, id: i32) -> Option<T> {
        u32::try_from(id).ok().and_then(|id| self.objects.remove(&id))
    }

    /// All objects.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &T)> {
        self.objects.iter()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Highest id in use (for `*_INFO`).
    pub fn highest(&self) -> u32 {
        self.objects.keys().next_back().copied().unwrap_or(0)
    }
}

/// `*get(key, flags)`: the id of the object with `key`, or a new one made
/// by `make`. `perm_of` reads an object's permissions; `fits` checks an
/// existing object against the request (e.g. a segment's size).
pub fn get_or_create<T>(
    table: &mut Table<T>,
    key: i32,
    flags: u32,
    creds: &Credentials,
    perm_of: impl Fn(&T) -> &Perm,
    fits: impl Fn(&T) -> Result<(), Errno>,
    make: impl FnOnce(Perm) -> Result<T, Errno>,
) -> Result<u32, Errno> {
    if key != IPC_PRIVATE
        && let Some((&id, object)) = table.objects.iter().find(|(_, o)| perm_of(o).key == key)
    {
        if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
            return Err(Errno::EEXIST);
        }
        fits(object)?;
        // Rights asked for by the low mode bits of the flags.
        let want = ((flags >> 6) | (flags >> 3) | flags) & 7;
        if !perm_of(object).allows(creds, want) {
            return Err(Errno::EACCES);
        }
        return Ok(id);
    }
    if key != IPC_PRIVATE && flags & IPC_CREAT == 0 {
        return Err(Errno::ENOENT);
    }
    if table.objects.len() >= table.limit.min(MAX_IDS) {
        return Err(Errno::ENOSPC);
    }
    let id = match table.next_id.take() {
        // The id asked for through /proc/sys, or the first free one
        // after it (Linux's idr_alloc from that index).
        Some(mut id) => {
            while table.objects.contains_key(&id) {
                id = id.wrapping_add(1) % (i32::MAX as u32);
            }
            id
        }
        None => {
            // The next free id in turn (never one in use after wrapping).
            let mut id = table.next;
            while table.objects.contains_key(&id) {
                id = id.wrapping_add(1) % (i32::MAX as u32);
            }
            table.next = id.wrapping_add(1) % (i32::MAX as u32);
            id
        }
    };
    let object = make(Perm::new(key, flags, creds))?;
    table.objects.insert(id, object);
    Ok(id)
}

/// Every change to a queue or a set wakes the waiters, who re-check.
pub static CHANGED: WaitQueue = WaitQueue::new();

/// One message.
pub struct Message {
    /// `mtype` (> 0).
    pub kind: i64,
    /// `mtext`.
    pub text: Vec<u8>,
}

/// A message queue.
pub struct Queue {
    /// Owner and rights.
    pub perm: Perm,
    /// The messages, oldest first.
    pub messages: VecDeque<Message>,
    /// Bytes of text queued.
    pub bytes: usize,
    /// Most bytes it holds (`msg_qbytes`).
    pub max_bytes: usize,
    /// Last send / receive / change times and pids.
    pub stime: i64,
    /// Last receive.
    pub rtime: i64,
    /// Last change.
    pub ctime: i64,
    /// Last sender.
    pub lspid: u32,
    /// Last receiver.
    pub lrpid: u32,
}

impl Queue {
    /// An empty queue.
    pub fn new(perm: Perm) -> Self {
        Queue { perm, messages: VecDeque::new(), bytes: 0, max_bytes: MSGMNB, stime: 0, rtime: 0, ctime: now_sec(), lspid: 0, lrpid: 0 }
    }

    /// `struct msqid64_ds` (120 bytes).
    pub fn stat(&self) -> [u8; 120] {
        let mut b = [0u8; 120];
        b[..48].copy_from_slice(&self.perm.bytes());
        b[48..56].copy_from_slice(&self.stime.to_le_bytes());
        b[56..64].copy_from_slice(&self.rtime.to_le_bytes());
        b[64..72].copy_from_slice(&self.ctime.to_le_bytes());
        b[72..80].copy_from_slice(&(self.bytes as u64).to_le_bytes());
        b[80..88].copy_from_slice(&(self.messages.len() as u64).to_le_bytes());
        b[88..96].copy_from_slice(&(self.max_bytes as u64).to_le_bytes());
        b[96..100].copy_from_slice(&self.lspid.to_le_bytes());
        b[100..104].copy_from_slice(&self.lrpid.to_le_bytes());
        b
    }

    /// Which message `msgrcv(msgtyp, flags)` takes: 0 the first, > 0 the
    /// first of that type (or, with `MSG_EXCEPT`, of any other), < 0 the
    /// first of the lowest type not above |msgtyp|.
    pub fn pick(&self, msgtyp: i64, except: bool) -> Option<usize> {
        match msgtyp {
            0 => (!self.messages.is_empty()).then_some(0),
            t if t > 0 => self.messages.iter().position(|m| if except { m.kind != t } else { m.kind == t }),
            t => {
                let limit = t.checked_neg().unwrap_or(i64::MAX);
                let lowest = self.messages.iter().filter(|m| m.kind <= limit).map(|m| m.kind).min()?;
                self.messages.iter().position(|m| m.kind == lowest)
            }
        }
    }
}

/// The message queues.
pub static QUEUES: SpinLock<Table<Queue>> = SpinLock::new(Table::new());

/// One semaphore.
#[derive(Debug, Clone, Copy, Default)]
pub struct Semaphore {
    /// Value.
    pub value: i32,
    /// Last process that changed it.
    pub pid: u32,
    /// Processes waiting for it to grow (`GETNCNT`).
    pub ncnt: u32,
    /// Processes waiting for it to be zero (`GETZCNT`).
    pub zcnt: u32,
}

/// A semaphore set.
pub struct SemSet {
    /// Owner and rights.
    pub perm: Perm,
    /// The semaphores.
    pub sems: Vec<Semaphore>,
    /// Last `semop` time.
    pub otime: i64,
    /// Last change.
    pub ctime: i64,
    /// Bumped when the set is removed (waiters give up with EIDRM).
    pub removed: bool,
}

impl SemSet {
    /// `struct semid64_ds` (104 bytes).
    pub fn stat(&self) -> [u8; 104] {
        let mut b = [0u8; 104];
        b[..48].copy_from_slice(&self.perm.bytes());
        b[48..56].copy_from_slice(&self.otime.to_le_bytes());
        b[64..72].copy_from_slice(&self.ctime.to_le_bytes());
        b[80..88].copy_from_slice(&(self.sems.len() as u64).to_le_bytes());
        b
    }
}

/// The semaphore sets.
pub static SEMS: SpinLock<Table<SemSet>> = SpinLock::new(Table::new());

/// One `struct sembuf`: semaphore number, operation, flags.
#[derive(Debug, Clone, Copy)]
pub struct SemOp {
    /// `sem_num`.
    pub num: u16,
    /// `sem_op`.
    pub op: i16,
    /// `sem_flg` (`IPC_NOWAIT`, `SEM_UNDO`).
    pub flags: i16,
}

/// Outcome of trying a `semop` now.
pub enum Try {
    /// Done.
    Done,
    /// Would block: on semaphore `num`, waiting for zero (`zero`) or
    /// for an increase.
    Block { num: u16, zero: bool },
    /// Failed.
    Fail(Errno),
}

/// Applies `ops` to `set` all at once, or not at all (as Linux: each
/// operation sees the ones before it).
pub fn try_ops(set: &mut SemSet, ops: &[SemOp], pid: u32) -> Try {
    let mut values: Vec<i32> = set.sems.iter().map(|s| s.value).collect();
    for op in ops {
        let Some(value) = values.get_mut(usize::from(op.num)) else { return Try::Fail(Errno::EFBIG) };
        match op.op {
            0 => {
                if *value != 0 {
                    return if op.flags as u32 & IPC_NOWAIT != 0 { Try::Fail(Errno::EAGAIN) } else { Try::Block { num: op.num, zero: true } };
                }
            }
            n if n > 0 => {
                let new = *value + i32::from(n);
                if new > SEMVMX {
                    return Try::Fail(Errno::ERANGE);
                }
                *value = new;
            }
            n => {
                let new = *value + i32::from(n);
                if new < 0 {
                    return if op.flags as u32 & IPC_NOWAIT != 0 { Try::Fail(Errno::EAGAIN) } else { Try::Block { num: op.num, zero: false } };
                }
                *value = new;
            }
        }
    }
    for (sem, value) in set.sems.iter_mut().zip(values) {
        if sem.value != value {
            sem.value = value;
        }
    }
    for op in ops {
        if let Some(sem) = set.sems.get_mut(usize::from(op.num)) {
            sem.pid = pid;
        }
    }
    set.otime = now_sec();
    Try::Done
}

/// `SEM_UNDO`.
pub const SEM_UNDO: i16 = 0x1000;

/// Adjustments `SEM_UNDO` operations leave, by (pid, set, semaphore):
/// applied when the process ends, dropped when the value is set.
pub static UNDO: SpinLock<BTreeMap<(u32, u32, u16), i32>> = SpinLock::new(BTreeMap::new());

/// Records the undo of `ops` (those with `SEM_UNDO`) for `pid` on set `id`.
pub fn remember_undo(pid: u32, id: u32, ops: &[SemOp]) {
    let mut undo = UNDO.lock();
    for op in ops.iter().filter(|o| o.flags & SEM_UNDO != 0 && o.op != 0) {
        let adj = undo.entry((pid, id, op.num)).or_insert(0);
        *adj -= i32::from(op.op);
    }
    undo.retain(|_, adj| *adj != 0);
}

/// Forgets the adjustments on set `id` (all semaphores, or one).
pub fn forget_undo(id: u32, num: Option<u16>) {
    UNDO.lock().retain(|&(_, set, n), _| set != id || num.is_some_and(|m| m != n));
}

/// The process `pid` ends: its adjustments are applied (each value kept
/// within 0..=SEMVMX, as Linux).
pub fn exit_undo(pid: u32) {
    let mine: Vec<((u32, u32, u16), i32)> = {
        let mut undo = UNDO.lock();
        let mine = undo.range((pid, 0, 0)..=(pid, u32::MAX, u16::MAX)).map(|(&k, &v)| (k, v)).collect();
        undo.retain(|&(p, _, _), _| p != pid);
        mine
    };
    if mine.is_empty() {
        return;
    }
    {
        let mut sets = SEMS.lock();
        for ((_, id, num), adj) in mine {
            if let Ok(set) = sets.get(id as i32)
                && let Some(sem) = set.sems.get_mut(usize::from(num))
            {
                sem.value = (sem.value + adj).clamp(0, SEMVMX);
                sem.pid = pid;
            }
        }
    }
    CHANGED.wake_all();
}

/// A shared memory segment: its pages, made on first touch.
pub struct Segment {
    /// Size asked for.
    pub size: u64,
    frames: SpinLock<BTreeMap<u64, Arc<Frame>>>,
}

impl Segment {
    /// A segment of `size` bytes, all zero.
    pub fn new(size: u64) -> Arc<Segment> {
        Arc::new(Segment { size, frames: SpinLock::new(BTreeMap::new()) })
    }

    /// The frame of page `index` (allocated zeroed the first time).
    pub fn frame(&self, index: u64) -> Result<Arc<Frame>, Errno> {
        if let Some(frame) = self.frames.lock().get(&index) {
            return Ok(frame.clone());
        }
        let frame = Arc::new(Frame::alloc().map_err(|_| Errno::ENOMEM)?);
        Ok(self.frames.lock().entry(index).or_insert(frame).clone())
    }

    /// Pages in use.
    pub fn resident(&self) -> usize {
        self.frames.lock().len()
    }
}

/// A segment's record in the table.
pub struct Shm {
    /// Owner and rights.
    pub perm: Perm,
    /// The memory.
    pub segment: Arc<Segment>,
    /// Last attach, detach and change times.
    pub atime: i64,
    /// Last detach.
    pub dtime: i64,
    /// Last change.
    pub ctime: i64,
    /// Creator and last attacher or detacher.
    pub cpid: u32,
    /// Last attach or detach.
    pub lpid: u32,
    /// `IPC_RMID` was asked while attached: gone with the last detach.
    pub removed: bool,
}

/// The shared memory segments.
pub static SHMS: SpinLock<Table<Shm>> = SpinLock::new(Table::new());
