//! `inotify`: watching files and directories for changes.
//!
//! The system calls that change or use files report what they did
//! ([`file_event`], [`dir_event`]); every inotify instance with a watch on
//! the node (or, for a directory entry, on its directory) queues an event
//! as Linux does: identical consecutive unread events merge, a full queue
//! ends with one `IN_Q_OVERFLOW`, `IN_ONESHOT` watches and watches on
//! deleted nodes go away with `IN_IGNORED`. With no watch anywhere a
//! report costs one atomic load.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, device_stat};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;
use tessera_vfs::{Node, NodeRef};

/// Event bits (`IN_*`).
#[allow(missing_docs)]
pub mod mask {
    pub const ACCESS: u32 = 0x1;
    pub const MODIFY: u32 = 0x2;
    pub const ATTRIB: u32 = 0x4;
    pub const CLOSE_WRITE: u32 = 0x8;
    pub const CLOSE_NOWRITE: u32 = 0x10;
    pub const OPEN: u32 = 0x20;
    pub const MOVED_FROM: u32 = 0x40;
    pub const MOVED_TO: u32 = 0x80;
    pub const CREATE: u32 = 0x100;
    pub const DELETE: u32 = 0x200;
    pub const DELETE_SELF: u32 = 0x400;
    pub const MOVE_SELF: u32 = 0x800;
    pub const Q_OVERFLOW: u32 = 0x4000;
    pub const IGNORED: u32 = 0x8000;
    pub const ONLYDIR: u32 = 0x0100_0000;
    pub const DONT_FOLLOW: u32 = 0x0200_0000;
    pub const EXCL_UNLINK: u32 = 0x0400_0000;
    pub const MASK_CREATE: u32 = 0x1000_0000;
    pub const MASK_ADD: u32 = 0x2000_0000;
    pub const ISDIR: u32 = 0x4000_0000;
    pub const ONESHOT: u32 = 0x8000_0000;
    /// Every event a watch can ask for.
    pub const ALL_EVENTS: u32 = 0xfff;
}

/// Most events queued per instance (`max_queued_events`).
pub const MAX_QUEUED_EVENTS: usize = 16384;
/// Most instances per user (`max_user_instances`).
pub const MAX_USER_INSTANCES: usize = 128;
/// Most watches per user (`max_user_watches`).
pub const MAX_USER_WATCHES: usize = 8192;

/// Events queued in all instances together: kernel memory, bounded below
/// what the per-instance limit times the instances would allow (a full
/// system overflows like a full queue).
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Most events queued in all instances together.
pub const MAX_QUEUED_TOTAL: usize = 65536;

/// Watches anywhere: reports are skipped while there are none.
static WATCHES: AtomicUsize = AtomicUsize::new(0);
/// The live instances.
static INSTANCES: SpinLock<Vec<Weak<Inotify>>> = SpinLock::new(Vec::new());
/// Move events of one rename share a cookie.
static COOKIE: AtomicU32 = AtomicU32::new(1);

/// A watch holds its node (as Linux's holds the inode): a node no one
/// else holds, such as a disk file system's file that is not open, stays
/// the same node while it is watched.
struct Watch {
    node: NodeRef,
    mask: u32,
}

#[derive(Clone, PartialEq, Eq)]
struct Event {
    wd: i32,
    mask: u32,
    cookie: u32,
    name: Option<String>,
}

impl Event {
    /// `struct inotify_event` with the name NUL-padded to 16 bytes.
    fn len(&self) -> usize {
        16 + self.name.as_ref().map_or(0, |n| (n.len() + 1).next_multiple_of(16))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let name_len = self.len() - 16;
        out.extend_from_slice(&self.wd.to_le_bytes());
        out.extend_from_slice(&self.mask.to_le_bytes());
        out.extend_from_slice(&self.cookie.to_le_bytes());
        out.extend_from_slice(&(name_len as u32).to_le_bytes());
        if let Some(name) = &self.name {
            out.extend_from_slice(name.as_bytes());
            out.resize(out.len() + name_len - name.len(), 0);
        }
    }
}

struct State {
    watches: BTreeMap<i32, Watch>,
    next_wd: i32,
    events: VecDeque<Event>,
}

/// An inotify instance.
pub struct Inotify {
    state: SpinLock<State>,
    changed: WaitQueue,
    nonblocking: crate::files::NonBlocking,
    /// The user it counts against.
    uid: u32,
    ino: u64,
}

fn same(watched: &NodeRef, node: &NodeRef) -> bool {
    core::ptr::addr_eq(Arc::as_ptr(watched), Arc::as_ptr(node))
}

fn live_instances() -> Vec<Arc<Inotify>> {
    let mut list = INSTANCES.lock();
    list.retain(|w| w.strong_count() > 0);
    list.iter().filter_map(Weak::upgrade).collect()
}

impl Inotify {
    /// A new instance for `uid` (EMFILE past `MAX_USER_INSTANCES`).
    pub fn open(uid: u32, nonblocking: bool) -> Result<Arc<dyn File>, Errno> {
        if live_instances().iter().filter(|i| i.uid == uid).count() >= MAX_USER_INSTANCES {
            return Err(Errno::EMFILE);
        }
        let instance = Arc::new(Inotify {
            state: SpinLock::new(State { watches: BTreeMap::new(), next_wd: 1, events: VecDeque::new() }),
            changed: WaitQueue::new(),
            nonblocking: crate::files::NonBlocking::new(nonblocking),
            uid,
            ino: crate::epoll::anon_ino(),
        });
        INSTANCES.lock().push(Arc::downgrade(&instance));
        Ok(instance)
    }

    /// `inotify_add_watch`: the watch descriptor for `node` (the same one
    /// again for a node already watched).
    pub fn add_watch(&self, node: &NodeRef, wanted: u32) -> Result<i32, Errno> {
        // The user's watches in their other instances (counted before this
        // instance's lock is taken).
        let elsewhere: usize = live_instances()
            .iter()
            .filter(|i| i.uid == self.uid && !core::ptr::eq(Arc::as_ptr(i), self))
            .map(|i| i.state.lock().watches.len())
            .sum();
        let mut state = self.state.lock();
        let existing = state.watches.iter_mut().find(|(_, w)| same(&w.node, node));
        if let Some((&wd, watch)) = existing {
            if wanted & mask::MASK_CREATE != 0 {
                return Err(Errno::EEXIST);
            }
            watch.mask = if wanted & mask::MASK_ADD != 0 { watch.mask | wanted } else { wanted };
            return Ok(wd);
        }
        if elsewhere + state.watches.len() >= MAX_USER_WATCHES {
            return Err(Errno::ENOSPC);
        }
        let wd = state.next_wd;
        state.next_wd = state.next_wd.checked_add(1).ok_or(Errno::ENOSPC)?;
        state.watches.insert(wd, Watch { node: node.clone(), mask: wanted });
        WATCHES.fetch_add(1, Ordering::SeqCst);
        Ok(wd)
    }

    /// `inotify_rm_watch`: EINVAL for an unknown descriptor; queues
    /// `IN_IGNORED`.
    pub fn remove_watch(&self, wd: i32) -> Result<(), Errno> {
        let mut state = self.state.lock();
        state.watches.remove(&wd).ok_or(Errno::EINVAL)?;
        WATCHES.fetch_sub(1, Ordering::SeqCst);
        Self::queue(&mut state, Event { wd, mask: mask::IGNORED, cookie: 0, name: None });
        drop(state);
        self.wake();
        Ok(())
    }

    fn queue(state: &mut State, event: Event) {
        if state.events.back() == Some(&event) {
            return; // merged with the identical unread event before it
        }
        if state.events.len() >= MAX_QUEUED_EVENTS || QUEUED.load(Ordering::Relaxed) >= MAX_QUEUED_TOTAL {
            let overflow = Event { wd: -1, mask: mask::Q_OVERFLOW, cookie: 0, name: None };
            if state.events.back() != Some(&overflow) {
                state.events.push_back(overflow);
            }
            return;
        }
        QUEUED.fetch_add(1, Ordering::Relaxed);
        state.events.push_back(event);
    }

    fn wake(&self) {
        self.changed.wake_all();
        crate::syscall::poll::notify();
    }

    /// Queues `bits` for every watch of this instance on `node` that asks
    /// for them; a watch that is one-shot, or whose node was deleted, ends.
    fn deliver(&self, node: &NodeRef, bits: u32, cookie: u32, name: Option<&str>, dir: bool) -> bool {
        let mut state = self.state.lock();
        let matching: Vec<(i32, u32)> = state.watches.iter().filter(|(_, w)| same(&w.node, node)).map(|(&wd, w)| (wd, w.mask)).collect();
        let mut any = false;
        for (wd, wanted) in matching {
            let selected = bits & (wanted | mask::IGNORED);
            if selected & (mask::ALL_EVENTS) == 0 {
                continue;
            }
            let flags = if dir { mask::ISDIR } else { 0 };
            Self::queue(&mut state, Event { wd, mask: selected | flags, cookie, name: name.map(String::from) });
            any = true;
            let ends = wanted & mask::ONESHOT != 0 || bits & mask::DELETE_SELF != 0;
            if ends && state.watches.remove(&wd).is_some() {
                WATCHES.fetch_sub(1, Ordering::SeqCst);
                Self::queue(&mut state, Event { wd, mask: mask::IGNORED, cookie: 0, name: None });
            }
        }
        any
    }

    /// The watches of a deleted node end (`IN_DELETE_SELF` was not asked for).
    fn forget(&self, node: &NodeRef) -> bool {
        let mut state = self.state.lock();
        let ended: Vec<i32> = state.watches.iter().filter(|(_, w)| same(&w.node, node)).map(|(&wd, _)| wd).collect();
        for wd in &ended {
            state.watches.remove(wd);
            WATCHES.fetch_sub(1, Ordering::SeqCst);
            Self::queue(&mut state, Event { wd: *wd, mask: mask::IGNORED, cookie: 0, name: None });
        }
        !ended.is_empty()
    }

    /// Bytes of the events queued (`FIONREAD`).
    pub fn pending_bytes(&self) -> usize {
        self.state.lock().events.iter().map(Event::len).sum()
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        let state = self.state.lock();
        WATCHES.fetch_sub(state.watches.len(), Ordering::SeqCst);
        let queued = state.events.iter().filter(|e| e.mask != mask::Q_OVERFLOW).count();
        QUEUED.fetch_sub(queued, Ordering::Relaxed);
    }
}

fn is_dir(node: &NodeRef) -> bool {
    node.metadata().kind == tessera_vfs::FileType::Directory
}

/// Something happened to the file at `location`: its own watches and its
/// directory's (with its name) hear of it.
pub fn file_event(location: &tessera_vfs::Location, bits: u32) {
    if WATCHES.load(Ordering::Relaxed) == 0 {
        return;
    }
    let node = location.node();
    let dir = is_dir(node);
    dnotify_deliver(node, bits);
    if let Some((parent, _)) = location.parent_and_name() {
        dnotify_deliver(parent, bits);
    }
    let mut woken = Vec::new();
    for instance in live_instances() {
        // The directory's watch hears first, then the file's own (Linux's
        // fsnotify order).
        let mut any = false;
        if let Some((parent, name)) = location.parent_and_name() {
            any |= instance.deliver(parent, bits, 0, Some(name), dir);
        }
        any |= instance.deliver(node, bits, 0, None, dir);
        if any {
            woken.push(instance);
        }
    }
    for instance in woken {
        instance.wake();
    }
}

/// Entry `name` of directory `parent` was created, deleted or moved
/// (`bits`: IN_CREATE, IN_DELETE, IN_MOVED_FROM/TO with `cookie`); `dir`
/// whether the entry is a directory.
pub fn dir_event(parent: &NodeRef, name: &str, bits: u32, cookie: u32, dir: bool) {
    if WATCHES.load(Ordering::Relaxed) == 0 {
        return;
    }
    dnotify_deliver(parent, bits);
    for instance in live_instances() {
        if instance.deliver(parent, bits, cookie, Some(name), dir) {
            instance.wake();
        }
    }
}

/// `node` itself was deleted (its last link went) or moved.
pub fn self_event(node: &NodeRef, bits: u32) {
    if WATCHES.load(Ordering::Relaxed) == 0 {
        return;
    }
    dnotify_deliver(node, bits);
    for instance in live_instances() {
        // IN_DELETE_SELF and IN_MOVE_SELF carry no IN_ISDIR (Linux).
        let mut any = instance.deliver(node, bits, 0, None, false);
        if bits & mask::DELETE_SELF != 0 {
            any |= instance.forget(node);
        }
        if any {
            instance.wake();
        }
    }
}

/// A directory watched with `fcntl(F_NOTIFY)` (dnotify): a signal to the
/// owner on changes in it.
struct Dnotify {
    dir: Weak<dyn Node>,
    /// The open directory; the watch ends with it.
    file: Weak<dyn File>,
    fd: u32,
    /// The process that asked (a record, never a reused pid).
    owner: Weak<crate::process::ProcessInfo>,
    /// `DN_*` bits.
    mask: u32,
    /// The signal (`F_SETSIG`; SIGIO when 0).
    signal: u8,
}

static DNOTIFY: SpinLock<Vec<Dnotify>> = SpinLock::new(Vec::new());

/// `DN_*` bits.
#[allow(missing_docs)]
pub mod dn {
    pub const ACCESS: u32 = 0x1;
    pub const MODIFY: u32 = 0x2;
    pub const CREATE: u32 = 0x4;
    pub const DELETE: u32 = 0x8;
    pub const RENAME: u32 = 0x10;
    pub const ATTRIB: u32 = 0x20;
    pub const MULTISHOT: u32 = 0x8000_0000;
}

/// The dnotify bits of inotify events.
/// Linux's `FS_RENAME`: an entry renamed within one directory. Not an
/// inotify event; dnotify's `DN_RENAME` hears only this.
const FS_RENAME: u32 = 0x1000_0000;

/// An entry of `dir` was renamed to another name in the same directory
/// (dnotify's `DN_RENAME`; a move between directories is a delete and
/// a create for dnotify).
pub fn renamed_within(dir: &NodeRef) {
    if WATCHES.load(Ordering::Relaxed) != 0 {
        dnotify_deliver(dir, FS_RENAME);
    }
}

fn dn_bits(bits: u32) -> u32 {
    let mut out = 0;
    for (from, to) in [
        (mask::ACCESS, dn::ACCESS),
        (mask::MODIFY, dn::MODIFY),
        (mask::CREATE | mask::MOVED_TO, dn::CREATE),
        (mask::DELETE | mask::MOVED_FROM, dn::DELETE),
        (FS_RENAME, dn::RENAME),
        (mask::ATTRIB, dn::ATTRIB),
    ] {
        if bits & from != 0 {
            out |= to;
        }
    }
    out
}

/// `fcntl(fd, F_NOTIFY, mask)`: watches the directory open as `file`
/// for `pid` (replacing that file's watch); mask 0 ends it.
pub fn dnotify(dir: &NodeRef, file: &Arc<dyn File>, fd: u32, owner: &Arc<crate::process::ProcessInfo>, wanted: u32, signal: u8) {
    let mut list = DNOTIFY.lock();
    let before = list.len();
    list.retain(|d| d.file.strong_count() > 0 && !core::ptr::addr_eq(d.file.as_ptr(), Arc::as_ptr(file)));
    WATCHES.fetch_sub(before - list.len(), Ordering::SeqCst);
    if wanted & !dn::MULTISHOT != 0 {
        list.push(Dnotify { dir: Arc::downgrade(dir), file: Arc::downgrade(file), fd, owner: Arc::downgrade(owner), mask: wanted, signal });
        WATCHES.fetch_add(1, Ordering::SeqCst);
    }
}

/// Signals the dnotify watchers of `node` about `bits`.
fn dnotify_deliver(node: &NodeRef, bits: u32) {
    let wanted = dn_bits(bits);
    if wanted == 0 {
        return;
    }
    let mut hits = Vec::new();
    {
        let mut list = DNOTIFY.lock();
        let before = list.len();
        list.retain(|d| {
            if d.file.strong_count() == 0 {
                return false;
            }
            if !core::ptr::addr_eq(d.dir.as_ptr(), Arc::as_ptr(node)) || d.mask & wanted == 0 {
                return true;
            }
            hits.push((d.owner.clone(), d.fd, d.signal));
            d.mask & dn::MULTISHOT != 0
        });
        WATCHES.fetch_sub(before - list.len(), Ordering::SeqCst);
    }
    for (owner, fd, signal) in hits {
        let Some(owner) = owner.upgrade() else { continue };
        let info = if signal == 0 {
            crate::signal::SigInfo { code: 0x80, ..Default::default() } // SI_KERNEL
        } else {
            // POLL_MSG, with si_band and si_fd.
            crate::signal::SigInfo { code: 3, addr: 0x441, value: u64::from(fd) }
        };
        owner.send_signal(if signal == 0 { 29 } else { signal }, info); // SIGIO
    }
}

/// A fresh cookie tying a rename's IN_MOVED_FROM and IN_MOVED_TO.
pub fn cookie() -> u32 {
    COOKIE.fetch_add(1, Ordering::Relaxed)
}

impl File for Inotify {
    fn fdinfo(&self) -> String {
        // The nodes are asked outside the lock (a cell file system's may
        // wait for its cell).
        let watches: Vec<(i32, NodeRef, u32)> = self.state.lock().watches.iter().map(|(&wd, w)| (wd, w.node.clone(), w.mask)).collect();
        let mut out = String::new();
        for (wd, node, mask) in watches {
            let meta = node.metadata();
            // The mask as the user set it: events, IN_EXCL_UNLINK, IN_ONESHOT.
            let shown = mask & (mask::ALL_EVENTS | mask::EXCL_UNLINK | mask::ONESHOT);
            out.push_str(&alloc::format!("inotify wd:{wd:x} ino:{:x} sdev:{:x} mask:{shown:x} ignored_mask:0\n", meta.ino, meta.dev));
        }
        out
    }

    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let nonblocking = self.nonblocking.get();
        let out = self.changed.wait_until(|| {
            let mut state = self.state.lock();
            if let Some(first) = state.events.front() {
                if first.len() > buf.len() {
                    return Some(Err(Errno::EINVAL));
                }
                let mut out = Vec::new();
                while let Some(event) = state.events.front() {
                    if out.len() + event.len() > buf.len() {
                        break;
                    }
                    event.encode(&mut out);
                    if state.events.pop_front().is_some_and(|e| e.mask != mask::Q_OVERFLOW) {
                        QUEUED.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                return Some(Ok(out));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })?;
        buf.get_mut(..out.len()).ok_or(Errno::EINVAL)?.copy_from_slice(&out);
        Ok(out.len() as u64)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> FileStat {
        device_stat(self.ino, 0, 0o600)
    }

    fn poll(&self) -> u16 {
        if self.state.lock().events.is_empty() { 0 } else { POLLIN }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_inotify(&self) -> Option<&Inotify> {
        Some(self)
    }
}
