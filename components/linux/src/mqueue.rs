//! POSIX message queues (`mq_open` and friends): named queues of
//! prioritized messages, opened as files.
//!
//! Queues live in one table by name until `mq_unlink` and the last
//! descriptor let go. Kernel memory is bounded as on Linux: each user's
//! queues together reserve at most their `RLIMIT_MSGQUEUE` (their full
//! capacity, counted when created: EMFILE beyond), and there are at most
//! `queues_max` queues (ENOSPC for those without root).

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, POLLIN, POLLOUT, device_stat};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

/// Default and unprivileged largest queue length (`msg_max`, `msg_default`).
pub const MSG_MAX: usize = 10;
/// Default and unprivileged largest message (`msgsize_max`).
pub const MSGSIZE_MAX: usize = 8192;
/// Root's largest queue length and message (Linux's hard limits).
pub const HARD_MSG_MAX: usize = 65536;
/// Root's largest message.
pub const HARD_MSGSIZE_MAX: usize = 16 << 20;
/// Highest priority plus one.
pub const PRIO_MAX: u32 = 32768;
/// Most queues (`/proc/sys/fs/mqueue/queues_max`).
pub static QUEUES_MAX: AtomicUsize = AtomicUsize::new(256);

/// How a queue tells a process that a message arrived in it while empty.
#[derive(Clone, Copy)]
pub struct Notify {
    /// The registered process.
    pub pid: u32,
    /// `SIGEV_SIGNAL`: the signal and its `sigev_value`; `None` for
    /// `SIGEV_NONE` (registered, nothing sent).
    pub signal: Option<(u8, u64)>,
}

/// A message queue.
pub struct Queue {
    /// Largest number of messages.
    pub max_messages: usize,
    /// Largest message.
    pub message_size: usize,
    /// Owner, group and mode bits.
    pub owner: (u32, u32, u32),
    /// Messages by (priority descending, arrival).
    state: SpinLock<State>,
    /// Woken when a message comes or goes.
    pub changed: WaitQueue,
    /// Receivers blocked in `mq_timedreceive` now (a message for them
    /// notifies nobody).
    pub receivers: AtomicUsize,
    /// Bytes reserved against the creator's `RLIMIT_MSGQUEUE`.
    reserved: (u32, usize),
}

struct State {
    messages: BTreeMap<(core::cmp::Reverse<u32>, u64), alloc::vec::Vec<u8>>,
    next: u64,
    bytes: usize,
    notify: Option<Notify>,
}

static QUEUES: SpinLock<BTreeMap<String, Arc<Queue>>> = SpinLock::new(BTreeMap::new());
/// Bytes each user has reserved for queues (`RLIMIT_MSGQUEUE`).
static RESERVED: SpinLock<BTreeMap<u32, usize>> = SpinLock::new(BTreeMap::new());

impl Drop for Queue {
    fn drop(&mut self) {
        let (uid, bytes) = self.reserved;
        if let Some(used) = RESERVED.lock().get_mut(&uid) {
            *used = used.saturating_sub(bytes);
        }
    }
}

/// What a queue reserves: Linux's estimate (messages plus their headers).
fn footprint(max_messages: usize, message_size: usize) -> usize {
    max_messages.saturating_mul(message_size.saturating_add(48))
}

/// The queue called `name`.
pub fn lookup(name: &str) -> Option<Arc<Queue>> {
    QUEUES.lock().get(name).cloned()
}

/// Creates queue `name` (EEXIST if it exists); `limit` is the creator's
/// `RLIMIT_MSGQUEUE`, `privileged` whether the queue count may be passed.
pub fn create(name: &str, max_messages: usize, message_size: usize, owner: (u32, u32, u32), limit: u64, privileged: bool) -> Result<Arc<Queue>, Errno> {
    let mut queues = QUEUES.lock();
    if queues.contains_key(name) {
        return Err(Errno::EEXIST);
    }
    if queues.len() >= QUEUES_MAX.load(Ordering::Relaxed) && !privileged {
        return Err(Errno::ENOSPC);
    }
    let bytes = footprint(max_messages, message_size);
    {
        let mut reserved = RESERVED.lock();
        let used = reserved.entry(owner.0).or_insert(0);
        if (used.saturating_add(bytes)) as u64 > limit {
            return Err(Errno::EMFILE);
        }
        *used += bytes;
    }
    let queue = Arc::new(Queue {
        max_messages,
        message_size,
        owner,
        state: SpinLock::new(State { messages: BTreeMap::new(), next: 0, bytes: 0, notify: None }),
        changed: WaitQueue::new(),
        receivers: AtomicUsize::new(0),
        reserved: (owner.0, bytes),
    });
    queues.insert(String::from(name), queue.clone());
    Ok(queue)
}

/// Removes `name` from the table (open descriptors keep the queue).
pub fn unlink(name: &str) -> Option<Arc<Queue>> {
    QUEUES.lock().remove(name)
}

impl Queue {
    /// Messages queued now.
    pub fn len(&self) -> usize {
        self.state.lock().messages.len()
    }

    /// Whether no message is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a message if there is room; EAGAIN when full. Returns
    /// the notification to deliver (a message came to an empty queue
    /// nobody was waiting on).
    pub fn try_send(&self, data: &[u8], priority: u32, receivers_waiting: bool) -> Result<Option<Notify>, Errno> {
        let mut state = self.state.lock();
        if state.messages.len() >= self.max_messages {
            return Err(Errno::EAGAIN);
        }
        let was_empty = state.messages.is_empty();
        let seq = state.next;
        state.next += 1;
        state.bytes += data.len();
        state.messages.insert((core::cmp::Reverse(priority), seq), alloc::vec::Vec::from(data));
        let notify = if was_empty && !receivers_waiting { state.notify.take() } else { None };
        Ok(notify)
    }

    /// Takes the oldest message of the highest priority.
    pub fn try_receive(&self) -> Option<(alloc::vec::Vec<u8>, u32)> {
        let mut state = self.state.lock();
        let (key, data) = state.messages.pop_first()?;
        state.bytes -= data.len();
        Some((data, key.0 .0))
    }

    /// Registers (Some) or removes (None, only by the registered process)
    /// a notification; EBUSY when another process is registered.
    pub fn set_notify(&self, pid: u32, notify: Option<Notify>) -> Result<(), Errno> {
        let mut state = self.state.lock();
        match (&state.notify, notify) {
            (Some(current), Some(_)) if current.pid != pid => Err(Errno::EBUSY),
            (_, Some(new)) => {
                state.notify = Some(new);
                Ok(())
            }
            (Some(current), None) if current.pid == pid => {
                state.notify = None;
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }

    /// A registration of a process that ended goes.
    pub fn forget_process(&self, pid: u32) {
        let mut state = self.state.lock();
        if state.notify.is_some_and(|n| n.pid == pid) {
            state.notify = None;
        }
    }

    /// The text a `read` of the descriptor gives (Linux's format).
    pub fn describe(&self) -> String {
        let state = self.state.lock();
        let (pid, signo) = match state.notify {
            Some(n) => (n.pid, n.signal.map_or(0, |(sig, _)| sig)),
            None => (0, 0),
        };
        alloc::format!("QSIZE:{:<10} NOTIFY:{:<5} SIGNO:{:<5} NOTIFY_PID:{:<6}\n", state.bytes, u8::from(state.notify.is_some() && signo == 0), signo, pid)
    }
}

/// Every queue with a registration by `pid` forgets it (the process ended).
pub fn process_ended(pid: u32) {
    let queues: alloc::vec::Vec<_> = QUEUES.lock().values().cloned().collect();
    for queue in queues {
        queue.forget_process(pid);
    }
}

/// An open message-queue descriptor.
pub struct MqFile {
    /// The queue.
    pub queue: Arc<Queue>,
    /// `O_RDONLY`, `O_WRONLY` or `O_RDWR`.
    pub access: u32,
    nonblocking: AtomicBool,
    ino: u64,
}

impl MqFile {
    /// A descriptor for `queue`.
    pub fn open(queue: Arc<Queue>, access: u32, nonblocking: bool) -> Arc<dyn File> {
        Arc::new(MqFile { queue, access, nonblocking: AtomicBool::new(nonblocking), ino: crate::epoll::anon_ino() })
    }

    /// Whether `mq_timedsend`/`mq_timedreceive` fail with EAGAIN instead of waiting.
    pub fn nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    /// Sets `O_NONBLOCK` (`mq_setattr`).
    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }
}

impl File for MqFile {
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        let text = self.queue.describe();
        let n = buf.len().min(text.len());
        buf.get_mut(..n).unwrap_or(&mut []).copy_from_slice(text.as_bytes().get(..n).unwrap_or(&[]));
        Ok(n as u64)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EINVAL)
    }

    fn stat(&self) -> FileStat {
        let mut stat = device_stat(self.ino, 0, self.queue.owner.2);
        stat.kind = tessera_vfs::FileType::Regular;
        stat.uid = self.queue.owner.0;
        stat.gid = self.queue.owner.1;
        stat
    }

    fn poll(&self) -> u16 {
        let len = self.queue.len();
        let mut events = 0;
        if len > 0 {
            events |= POLLIN;
        }
        if len < self.queue.max_messages {
            events |= POLLOUT;
        }
        events
    }

    fn status_flags(&self) -> u32 {
        self.access | if self.nonblocking() { crate::fs::O_NONBLOCK } else { 0 }
    }

    fn set_status_flags(&self, flags: u32) {
        self.set_nonblocking(flags & crate::fs::O_NONBLOCK != 0);
    }

    fn as_mqueue(&self) -> Option<&MqFile> {
        Some(self)
    }
}
