//! `eventfd` and `epoll` files.
//!
//! An eventfd is a 64-bit counter: writes add, reads take it (or one, in
//! semaphore mode), blocking at zero and at the top as Linux does.
//!
//! An epoll instance keeps its interest list as weak references to open
//! files (closing the last descriptor of a file drops it from the list, as
//! Linux does, without epoll keeping pipes open). Waiting re-checks every
//! entry's `poll()` whenever a file may have changed (the same wake-ups
//! `poll(2)` uses), so events are level-triggered; `EPOLLET` is served
//! level-triggered too (a legal superset: edge-triggered programs read
//! until EAGAIN), and `EPOLLONESHOT` disarms an entry once it reported.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, POLLOUT, device_stat};
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

static NEXT_INO: AtomicU64 = AtomicU64::new(1);

/// A fresh inode number for an anonymous file (eventfd, epoll, timerfd, signalfd).
pub fn anon_ino() -> u64 {
    0x4000_0000 + NEXT_INO.fetch_add(1, Ordering::Relaxed)
}

/// Largest value an eventfd counter holds.
const EVENTFD_MAX: u64 = u64::MAX - 1;

/// An eventfd.
pub struct EventFd {
    count: SpinLock<u64>,
    semaphore: bool,
    nonblocking: crate::files::NonBlocking,
    changed: WaitQueue,
    ino: u64,
}

impl EventFd {
    /// A counter starting at `initial`, as an open file.
    pub fn open(initial: u64, semaphore: bool, nonblocking: bool) -> Arc<dyn File> {
        Arc::new(EventFd { count: SpinLock::new(initial), semaphore, nonblocking: crate::files::NonBlocking::new(nonblocking), changed: WaitQueue::new(), ino: anon_ino() })
    }

    fn notify(&self) {
        self.changed.wake_all();
        crate::syscall::poll::notify();
    }
}

impl File for EventFd {
    fn is_eventfd(&self) -> bool {
        true
    }

    fn fdinfo(&self) -> alloc::string::String {
        alloc::format!("eventfd-count: {:16x}\neventfd-id: {}\n", *self.count.lock(), self.ino)
    }

    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let nonblocking = self.nonblocking.get();
        let value = self.changed.wait_until(|| {
            let mut count = self.count.lock();
            if *count > 0 {
                let taken = if self.semaphore { 1 } else { *count };
                *count -= taken;
                return Some(Ok(taken));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })?;
        if let Some(out) = buf.get_mut(..8) {
            out.copy_from_slice(&value.to_le_bytes());
        }
        self.notify();
        Ok(8)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.write_interruptible(buf, &|| false)
    }

    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let bytes: [u8; 8] = buf.get(..8).and_then(|b| b.try_into().ok()).ok_or(Errno::EINVAL)?;
        let add = u64::from_le_bytes(bytes);
        if add == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let nonblocking = self.nonblocking.get();
        self.changed.wait_until(|| {
            let mut count = self.count.lock();
            if EVENTFD_MAX - *count >= add {
                *count += add;
                return Some(Ok(()));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })?;
        self.notify();
        Ok(8)
    }

    fn stat(&self) -> FileStat {
        device_stat(self.ino, 0, 0o600)
    }

    fn poll(&self) -> u16 {
        let count = *self.count.lock();
        let mut events = 0;
        if count > 0 {
            events |= POLLIN;
        }
        if count < EVENTFD_MAX {
            events |= POLLOUT;
        }
        events
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }
}

/// `EPOLLONESHOT`.
pub const EPOLLONESHOT: u32 = 1 << 30;
/// `EPOLLET`.
pub const EPOLLET: u32 = 1 << 31;
/// `EPOLLERR | EPOLLHUP`: always reported.
const ALWAYS: u32 = 0x08 | 0x10;

struct Interest {
    file: Weak<dyn File>,
    events: u32,
    data: u64,
    /// A one-shot entry that has reported (until `EPOLL_CTL_MOD`).
    disabled: bool,
}

/// An epoll instance.
pub struct Epoll {
    interest: SpinLock<BTreeMap<(i32, usize), Interest>>,
    ino: u64,
}

/// How deep a `poll()` of nested epolls goes (loops are refused when
/// added, this bounds long chains).
static NESTING: AtomicUsize = AtomicUsize::new(0);
const MAX_NESTING: usize = 5;

fn identity(file: &Arc<dyn File>) -> usize {
    Arc::as_ptr(file) as *const () as usize
}

impl Epoll {
    /// An empty instance.
    pub fn new() -> Arc<Epoll> {
        Arc::new(Epoll { interest: SpinLock::new(BTreeMap::new()), ino: anon_ino() })
    }

    /// `EPOLL_CTL_ADD` / `MOD` / `DEL` of `file` (descriptor `fd`).
    pub fn control(&self, op: u32, fd: i32, file: &Arc<dyn File>, events: u32, data: u64) -> Result<(), Errno> {
        let key = (fd, identity(file));
        let mut interest = self.interest.lock();
        interest.retain(|_, i| i.file.strong_count() > 0);
        match op {
            1 => {
                if interest.contains_key(&key) {
                    return Err(Errno::EEXIST);
                }
                interest.insert(key, Interest { file: Arc::downgrade(file), events, data, disabled: false });
            }
            2 => {
                interest.remove(&key).ok_or(Errno::ENOENT)?;
            }
            3 => {
                let entry = interest.get_mut(&key).ok_or(Errno::ENOENT)?;
                entry.events = events;
                entry.data = data;
                entry.disabled = false;
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }

    /// True when `other` is this instance or is watched by it (directly
    /// or through nested instances): adding it would make a loop.
    pub fn reaches(&self, other: &Arc<dyn File>, depth: usize) -> bool {
        if core::ptr::eq(self as *const Epoll as *const (), Arc::as_ptr(other) as *const ()) {
            return true;
        }
        if depth > MAX_NESTING {
            return true;
        }
        let files: Vec<Arc<dyn File>> = self.interest.lock().values().filter_map(|i| i.file.upgrade()).collect();
        files.iter().any(|f| f.as_epoll().is_some_and(|e| e.reaches(other, depth + 1)))
    }

    /// The epoll instances reachable from this one, itself included and
    /// counted once per path, if that stays within `budget` and the
    /// chains within [`MAX_NESTING`] levels; `None` otherwise.
    pub fn nested_instances(&self, depth: usize, budget: usize) -> Option<usize> {
        if depth > MAX_NESTING || budget == 0 {
            return None;
        }
        let files: Vec<Arc<dyn File>> = self.interest.lock().values().filter_map(|i| i.file.upgrade()).collect();
        let mut count = 1;
        for file in &files {
            if let Some(inner) = file.as_epoll() {
                count += inner.nested_instances(depth + 1, budget.checked_sub(count)?)?;
                if count > budget {
                    return None;
                }
            }
        }
        Some(count)
    }

    /// The ready entries now: (events, data), at most `max`; one-shot
    /// entries that report are disarmed.
    pub fn ready(&self, max: usize) -> Vec<(u32, u64)> {
        if NESTING.fetch_add(1, Ordering::SeqCst) >= MAX_NESTING {
            NESTING.fetch_sub(1, Ordering::SeqCst);
            return Vec::new();
        }
        type Entry = ((i32, usize), Arc<dyn File>, u32);
        let entries: Vec<Entry> = self
            .interest
            .lock()
            .iter()
            .filter(|(_, i)| !i.disabled)
            .filter_map(|(k, i)| i.file.upgrade().map(|f| (*k, f, i.events)))
            .collect();
        let mut out = Vec::new();
        for (key, file, events) in entries {
            if out.len() >= max {
                break;
            }
            let revents = u32::from(file.poll()) & (events | ALWAYS);
            if revents == 0 {
                continue;
            }
            let mut interest = self.interest.lock();
            if let Some(entry) = interest.get_mut(&key).filter(|e| !e.disabled) {
                out.push((revents, entry.data));
                if entry.events & EPOLLONESHOT != 0 {
                    entry.disabled = true;
                }
            }
        }
        NESTING.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl File for Epoll {
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
        // Readable when some entry is ready (without disarming one-shots).
        if NESTING.load(Ordering::SeqCst) >= MAX_NESTING {
            return 0;
        }
        NESTING.fetch_add(1, Ordering::SeqCst);
        let files: Vec<(Arc<dyn File>, u32)> =
            self.interest.lock().values().filter(|i| !i.disabled).filter_map(|i| i.file.upgrade().map(|f| (f, i.events))).collect();
        let ready = files.iter().any(|(f, events)| u32::from(f.poll()) & (events | ALWAYS) != 0);
        NESTING.fetch_sub(1, Ordering::SeqCst);
        if ready { POLLIN } else { 0 }
    }

    fn as_epoll(&self) -> Option<&Epoll> {
        Some(self)
    }
}
