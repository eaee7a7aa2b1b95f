//! Advisory file locks as Linux keeps them: POSIX record locks (`fcntl`
//! `F_SETLK`/`F_SETLKW`/`F_GETLK`, owned by the process, released when it
//! closes any descriptor of the file or exits, not inherited by `fork`),
//! open-file-description locks (`F_OFD_*`, owned by the open file,
//! released with its last descriptor) and `flock(2)` locks (whole file,
//! owned by the open file, a separate set).
//!
//! Locks are byte ranges on a file (the node; a file outside the tree,
//! such as a pipe, by its open file). A waiter sleeps on one queue that
//! every release wakes, and re-checks; a wait that would close a cycle of
//! processes waiting on each other fails with EDEADLK.

use crate::errno::Errno;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

/// Shared (read) or exclusive (write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `F_RDLCK` / `LOCK_SH`.
    Read,
    /// `F_WRLCK` / `LOCK_EX`.
    Write,
}

/// Who holds a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A process (POSIX record locks), by pid.
    Process(u32),
    /// An open file description (OFD locks), by address.
    OpenFile(usize),
    /// An open file description's `flock` lock, by address.
    Flock(usize),
}

impl Owner {
    fn is_flock(self) -> bool {
        matches!(self, Owner::Flock(_))
    }
}

/// One lock: `[start, end)` (`end` = `u64::MAX`: to the end of the file
/// and beyond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// Holder.
    pub owner: Owner,
    /// Shared or exclusive.
    pub kind: Kind,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// The process that took it (reported by `F_GETLK`).
    pub pid: u32,
}

impl Lock {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start < end && start < self.end
    }

    /// Would this lock stop `other` being taken?
    fn conflicts(&self, other: &Lock) -> bool {
        self.owner != other.owner
            && self.owner.is_flock() == other.owner.is_flock()
            && self.overlaps(other.start, other.end)
            && (self.kind == Kind::Write || other.kind == Kind::Write)
    }
}

/// A file's locks, keyed by the file's identity.
static LOCKS: SpinLock<BTreeMap<usize, Vec<Lock>>> = SpinLock::new(BTreeMap::new());
/// Which owner each blocked owner waits for (deadlock detection).
static WAITING: SpinLock<BTreeMap<Owner, Owner>> = SpinLock::new(BTreeMap::new());
static RELEASED: WaitQueue = WaitQueue::new();

/// The first lock on `file` that conflicts with `wanted`: the one that
/// starts lowest (Linux keeps an owner's locks in file order and reports
/// the first).
pub fn conflict(file: usize, wanted: &Lock) -> Option<Lock> {
    LOCKS.lock().get(&file).and_then(|locks| locks.iter().filter(|l| l.conflicts(wanted)).min_by_key(|l| l.start).copied())
}

/// Replaces `owner`'s locks in `[start, end)` with `new` (none: unlock),
/// splitting and trimming what overlaps; adjacent or overlapping locks
/// of the same kind merge, as Linux's POSIX locks do.
fn set_range(locks: &mut Vec<Lock>, owner: Owner, start: u64, end: u64, new: Option<Lock>) {
    let mut kept = Vec::with_capacity(locks.len() + 2);
    for lock in locks.drain(..) {
        if lock.owner != owner || !lock.overlaps(start, end) {
            kept.push(lock);
            continue;
        }
        if lock.start < start {
            kept.push(Lock { end: start, ..lock });
        }
        if lock.end > end {
            kept.push(Lock { start: end, ..lock });
        }
    }
    if let Some(mut new) = new {
        // Merge with touching locks of the same owner and kind.
        kept.retain(|l| {
            let touching = l.owner == owner && l.kind == new.kind && l.start <= new.end && new.start <= l.end;
            if touching {
                new.start = new.start.min(l.start);
                new.end = new.end.max(l.end);
            }
            !touching
        });
        kept.push(new);
    }
    *locks = kept;
}

/// Takes (or, with `kind` None, releases) a lock on `[start, end)` of
/// `file` for `owner`. Without `wait`, a conflict is EAGAIN; with it the
/// caller sleeps until the range is free, EINTR when `interrupted()`, or
/// EDEADLK when the owner of the conflicting lock waits for `owner`.
pub fn set(
    file: usize,
    owner: Owner,
    pid: u32,
    kind: Option<Kind>,
    (start, end): (u64, u64),
    wait: bool,
    interrupted: &dyn Fn() -> bool,
) -> Result<(), Errno> {
    let Some(kind) = kind else {
        let mut all = LOCKS.lock();
        if let Some(locks) = all.get_mut(&file) {
            set_range(locks, owner, start, end, None);
            if locks.is_empty() {
                all.remove(&file);
            }
        }
        drop(all);
        RELEASED.wake_all();
        return Ok(());
    };
    let wanted = Lock { owner, kind, start, end, pid };
    let result = RELEASED.wait_until(|| {
        let mut all = LOCKS.lock();
        let blocker = all.get(&file).and_then(|locks| locks.iter().find(|l| l.conflicts(&wanted)).copied());
        match blocker {
            None => {
                // The new lock replaces what the owner held in the range
                // (a flock lock is converted whole).
                set_range(all.entry(file).or_default(), owner, start, end, Some(wanted));
                Some(Ok(()))
            }
            Some(_) if !wait => Some(Err(Errno::EAGAIN)),
            Some(blocker) => {
                drop(all);
                if interrupted() {
                    return Some(Err(Errno::EINTR));
                }
                let mut waiting = WAITING.lock();
                // A cycle: the blocker (transitively) waits for us.
                let mut at = blocker.owner;
                for _ in 0..64 {
                    if at == owner {
                        return Some(Err(Errno::EDEADLK));
                    }
                    match waiting.get(&at) {
                        Some(&next) => at = next,
                        None => break,
                    }
                }
                waiting.insert(owner, blocker.owner);
                None
            }
        }
    });
    WAITING.lock().remove(&owner);
    if result.is_ok() {
        // A lock downgraded from write to read may free waiters.
        RELEASED.wake_all();
    }
    result
}

/// Drops every lock `owner` holds on `file` (a POSIX owner closing one of
/// the file's descriptors).
pub fn release(file: usize, owner: Owner) {
    set_range_all(Some(file), |l| l.owner == owner);
}

/// Drops every lock `owner` holds on any file (a process exits, an open
/// file description ends).
pub fn release_all(owner: Owner) {
    set_range_all(None, |l| l.owner == owner);
}

/// Drops the OFD and `flock` locks of the open file at `address` (its
/// last descriptor closed).
pub fn release_open_file(address: usize) {
    set_range_all(None, |l| l.owner == Owner::OpenFile(address) || l.owner == Owner::Flock(address));
}

fn set_range_all(file: Option<usize>, drop_it: impl Fn(&Lock) -> bool) {
    let mut changed = false;
    {
        let mut all = LOCKS.lock();
        all.retain(|&key, locks| {
            if file.is_none_or(|f| f == key) {
                let before = locks.len();
                locks.retain(|l| !drop_it(l));
                changed |= locks.len() != before;
            }
            !locks.is_empty()
        });
    }
    if changed {
        RELEASED.wake_all();
    }
}

/// The lock key of an open file: its node (locks are the file's, whichever
/// descriptor took them); none for files outside the tree.
pub fn key(file: &alloc::sync::Arc<dyn crate::files::File>) -> Option<usize> {
    file.location().map(|l| alloc::sync::Arc::as_ptr(l.node()) as *const () as usize)
}

/// The owner address of an open file description (OFD and flock locks).
pub fn open_file_id(file: &alloc::sync::Arc<dyn crate::files::File>) -> usize {
    alloc::sync::Arc::as_ptr(file) as *const () as usize
}

/// A descriptor of `file` was closed by the current process: its POSIX
/// locks on the file go, as on Linux (whichever descriptor took them).
pub fn descriptor_closed(file: &alloc::sync::Arc<dyn crate::files::File>) {
    if LOCKS.lock().is_empty() {
        return;
    }
    if let (Some(key), Some(process)) = (key(file), crate::process::current()) {
        release(key, Owner::Process(process.pid));
    }
}
