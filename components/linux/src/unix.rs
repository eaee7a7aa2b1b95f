//! `AF_UNIX` sockets: stream, datagram and sequenced-packet sockets
//! between processes of this machine, with `socketpair`, names in the file
//! system (a socket node that `bind` makes) and in the abstract namespace
//! (a name that starts with a NUL byte), descriptors passed with
//! `SCM_RIGHTS` and credentials with `SCM_CREDENTIALS`/`SO_PEERCRED`.
//!
//! They live in the kernel next to pipes rather than in a cell: what they
//! carry are the kernel's own open files, and a cell cannot hold those.
//!
//! Each socket is a [`Sock`] with a receive queue of messages. A sender
//! appends to the receiver's queue; a stream reads across messages, the
//! other kinds one message at a time. A receive queue holds at most
//! [`QUEUE_BYTES`] (each message also counts [`MSG_COST`], so empty
//! messages are not free) and a datagram queue [`MAX_DGRAM_QLEN`]
//! messages past the first; a sender waits on the receiver's wait queue
//! for room. Locks: a socket's state lock is never held while another
//! socket's is taken, except in `connect`, which holds the connecting
//! socket's and then the listener's (a listener never connects, so the
//! order cannot cross). Messages that carry files are dropped only after
//! every lock is released (dropping a file may close another socket).
//!
//! Descriptors in flight count against the sender's user, up to its
//! `RLIMIT_NOFILE` (ETOOMANYREFS past it), as on Linux. Sockets that are
//! reachable only from queues (a socket sent over itself, rings of them)
//! are found by [`collect`] when a socket with descriptors in flight
//! closes, and their queues emptied, as Linux's garbage collector does.
//!
//! Queued bytes are charged to the sending user: at most a quarter of
//! RAM in all and an eighth per user (ENOBUFS past it), so no user can
//! exhaust the kernel heap through socket queues; every queue allocation
//! is fallible. Dropping a queue that holds sockets that hold queues is
//! done by one loop ([`bury`]), never by recursion.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, NonBlocking, POLLERR, POLLHUP, POLLIN, POLLOUT};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use framekernel::sync::{Mutex, SpinLock};
use tessera_sched::WaitQueue;

/// `AF_UNIX`.
pub const AF_UNIX: u32 = 1;
/// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
pub const SOCK_STREAM: u32 = 1;
pub const SOCK_DGRAM: u32 = 2;
pub const SOCK_SEQPACKET: u32 = 5;
/// Bytes of `struct sockaddr_un`.
pub const SOCKADDR_UN: usize = 110;
/// Bytes of `sa_family_t` (an address of only these is "unnamed").
pub const FAMILY: usize = 2;
/// Bytes a receive queue holds (Linux's default socket buffer).
pub const QUEUE_BYTES: usize = 212_992;
/// What one queued message costs besides its bytes.
const MSG_COST: usize = 512;
/// Datagrams a queue holds past the first (`net.unix.max_dgram_qlen`).
const MAX_DGRAM_QLEN: usize = 10;
/// Descriptors in one message (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;
/// `POLLRDHUP`.
const POLLRDHUP: u16 = 0x2000;

/// Shutdown bits: this side receives no more / sends no more.
const RCV: u8 = 1;
const SEND: u8 = 2;

/// A socket's address.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Name {
    /// No name (an unbound socket).
    #[default]
    Unnamed,
    /// A file-system name, as the binder gave it (relative or not).
    Path(Vec<u8>),
    /// An abstract name: the bytes after the leading NUL.
    Abstract(Vec<u8>),
}

impl Name {
    /// Parses a `sockaddr_un` of `bytes.len()` bytes: EINVAL when shorter
    /// than the family, longer than `sockaddr_un` or of another family.
    /// Only the family is [`Name::Unnamed`] (autobind for `bind`).
    pub fn parse(bytes: &[u8]) -> Result<Name, Errno> {
        if bytes.len() < FAMILY || bytes.len() > SOCKADDR_UN {
            return Err(Errno::EINVAL);
        }
        if u16::from_le_bytes([bytes[0], bytes[1]]) != AF_UNIX as u16 {
            return Err(Errno::EINVAL);
        }
        let path = &bytes[FAMILY..];
        Ok(match path.first() {
            None => Name::Unnamed,
            Some(0) => Name::Abstract(path[1..].to_vec()),
            Some(_) => {
                let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                Name::Path(path[..end].to_vec())
            }
        })
    }

    /// The `sockaddr_un` bytes `getsockname` gives (its length is the
    /// address length: a path counts its NUL).
    pub fn to_sockaddr(&self) -> Vec<u8> {
        let mut b = (AF_UNIX as u16).to_le_bytes().to_vec();
        match self {
            Name::Unnamed => {}
            Name::Path(p) => {
                b.extend_from_slice(p);
                b.push(0);
            }
            Name::Abstract(a) => {
                b.push(0);
                b.extend_from_slice(a);
            }
        }
        b
    }
}

/// Credentials as `SO_PEERCRED` and `SCM_CREDENTIALS` give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ucred {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Ucred {
    /// `struct ucred`.
    pub fn bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..8].copy_from_slice(&self.uid.to_le_bytes());
        b[8..].copy_from_slice(&self.gid.to_le_bytes());
        b
    }
}

/// The credentials a message without any gives (pid 0, ids -1).
const NO_CRED: Ucred = Ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };

/// Descriptors in flight per sending user.
static IN_FLIGHT: SpinLock<BTreeMap<u32, usize>> = SpinLock::new(BTreeMap::new());

/// Files a message carries, counted against the sender's user while they
/// are in flight.
struct Carried {
    files: Vec<Arc<dyn File>>,
    uid: u32,
}

impl Carried {
    /// Counts `files` against `uid`: ETOOMANYREFS past `limit` (none for
    /// a privileged sender).
    fn new(files: Vec<Arc<dyn File>>, uid: u32, limit: Option<usize>) -> Result<Carried, Errno> {
        if !files.is_empty() {
            let over = |counts: &BTreeMap<u32, usize>| limit.is_some_and(|limit| counts.get(&uid).copied().unwrap_or(0) + files.len() > limit);
            // Past the limit: garbage may hold the count; collect it first.
            if over(&IN_FLIGHT.lock()) {
                collect();
            }
            let mut counts = IN_FLIGHT.lock();
            if over(&counts) {
                return Err(Errno::ETOOMANYREFS);
            }
            *counts.entry(uid).or_insert(0) += files.len();
        }
        count_in_flight(&files, true);
        Ok(Carried { files, uid })
    }

    /// The files, no longer in flight (`peek`: copies, still in flight).
    fn take(&mut self, peek: bool) -> Vec<Arc<dyn File>> {
        if peek {
            return self.files.clone();
        }
        let files = core::mem::take(&mut self.files);
        release(self.uid, files.len());
        count_in_flight(&files, false);
        files
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        release(self.uid, self.files.len());
        count_in_flight(&self.files, false);
    }
}

fn release(uid: u32, n: usize) {
    if n == 0 {
        return;
    }
    let mut counts = IN_FLIGHT.lock();
    if let Some(count) = counts.get_mut(&uid) {
        *count = count.saturating_sub(n);
        if *count == 0 {
            counts.remove(&uid);
        }
    }
}

/// Bytes queued on every socket, and per sending user.
static QUEUED: SpinLock<(usize, BTreeMap<u32, usize>)> = SpinLock::new((0, BTreeMap::new()));

/// Queued bytes charged to a user until the message is read or dropped.
struct Charge {
    uid: u32,
    bytes: usize,
}

impl Charge {
    /// Charges `bytes` to `uid`: ENOBUFS past a quarter of RAM in all or
    /// an eighth for one user.
    fn new(uid: u32, bytes: usize) -> Result<Charge, Errno> {
        Charge::take(uid, bytes).or_else(|_| {
            // Garbage may hold the bytes: collect it and try again.
            collect();
            Charge::take(uid, bytes)
        })
    }

    fn take(uid: u32, bytes: usize) -> Result<Charge, Errno> {
        let ram = (framekernel::mm::frame_stats().total as usize).saturating_mul(4096);
        let mut q = QUEUED.lock();
        let mine = q.1.get(&uid).copied().unwrap_or(0);
        if q.0 + bytes > ram / 4 || mine + bytes > ram / 8 {
            return Err(Errno::ENOBUFS);
        }
        q.0 += bytes;
        *q.1.entry(uid).or_insert(0) += bytes;
        Ok(Charge { uid, bytes })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        let mut q = QUEUED.lock();
        q.0 = q.0.saturating_sub(self.bytes);
        if let Some(mine) = q.1.get_mut(&self.uid) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                q.1.remove(&self.uid);
            }
        }
    }
}

/// Copies `data` into a new buffer, ENOBUFS when the heap has no room.
fn copy(data: &[u8]) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(data.len()).map_err(|_| Errno::ENOBUFS)?;
    v.extend_from_slice(data);
    Ok(v)
}

/// Queues waiting to be dropped, and whether a task is dropping them.
static GRAVE: SpinLock<(Vec<VecDeque<Msg>>, bool)> = SpinLock::new((Vec::new(), false));

/// Drops `queue` with no lock held. Messages may carry sockets whose
/// queues carry sockets, and so on: the first caller drops them all in a
/// loop, later (nested) ones only add theirs to its list, so a long chain
/// costs no stack.
fn bury(queue: VecDeque<Msg>) {
    if queue.is_empty() {
        return;
    }
    {
        let mut grave = GRAVE.lock();
        grave.0.push(queue);
        if grave.1 {
            return;
        }
        grave.1 = true;
    }
    loop {
        let next = {
            let mut grave = GRAVE.lock();
            let next = grave.0.pop();
            if next.is_none() {
                grave.1 = false;
            }
            next
        };
        match next {
            Some(queue) => drop(queue),
            None => return,
        }
    }
}

/// One queued message.
struct Msg {
    data: Vec<u8>,
    /// Bytes a stream reader has taken already.
    read: usize,
    from: Name,
    /// The sender's credentials (`None`: written by the kernel itself,
    /// outside any process).
    cred: Option<Ucred>,
    files: Carried,
    _charge: Charge,
}

impl Msg {
    fn cost(&self) -> usize {
        self.data.len() + MSG_COST
    }
}

/// A listening socket's connections not yet accepted.
struct Listen {
    backlog: usize,
    pending: VecDeque<Arc<Sock>>,
}

#[derive(Default)]
struct State {
    name: Name,
    /// The file-system node of a path name, as (device, inode).
    node: Option<(u64, u64)>,
    /// The connected peer (a datagram socket's default destination).
    peer: Option<Weak<Sock>>,
    /// The peer's name when it connected (`getpeername` after it closed).
    peer_name: Name,
    /// A connection-oriented socket that has been connected.
    connected: bool,
    queue: VecDeque<Msg>,
    /// Cost of the queued messages.
    queued: usize,
    listen: Option<Listen>,
    shut: u8,
    /// An error the next receive gives (ECONNRESET).
    error: Option<Errno>,
    /// Whose socket this is, for the peers that connect (set by `listen`).
    own_cred: Option<Ucred>,
    peer_cred: Option<Ucred>,
    closed: bool,
}

/// The protocol part of an `AF_UNIX` socket.
pub struct Sock {
    kind: u32,
    state: Mutex<State>,
    /// The socket file (for the collector: its reference count).
    file: Mutex<Option<Weak<UnixSocket>>>,
    /// Messages in queues that carry the socket file.
    in_flight: AtomicUsize,
    /// Woken when this socket's queue, connections or state change.
    changed: WaitQueue,
}

/// Bound path names by node, and abstract names.
static BOUND: SpinLock<BTreeMap<(u64, u64), Weak<Sock>>> = SpinLock::new(BTreeMap::new());
/// Abstract names are per kind: a stream and a datagram socket may hold the same one.
static ABSTRACT: SpinLock<BTreeMap<AbstractKey, Weak<Sock>>> = SpinLock::new(BTreeMap::new());
/// A socket kind and an abstract name.
type AbstractKey = (u32, Vec<u8>);
static AUTOBIND: AtomicU32 = AtomicU32::new(0);


/// The socket bound to the file-system node `(dev, ino)`, or to the
/// abstract `name` among sockets of `kind`: ECONNREFUSED when there is
/// none.
pub fn find(name: &Name, node: Option<(u64, u64)>, kind: u32) -> Result<Arc<Sock>, Errno> {
    let found = match (name, node) {
        (Name::Abstract(a), _) => ABSTRACT.lock().get(&(kind, a.clone())).and_then(Weak::upgrade),
        (Name::Path(_), Some(key)) => BOUND.lock().get(&key).and_then(Weak::upgrade),
        _ => None,
    };
    found.filter(|s| !s.state.lock().closed).ok_or(Errno::ECONNREFUSED)
}

impl Sock {
    fn new(kind: u32) -> Arc<Sock> {
        Arc::new(Sock { kind, state: Mutex::new(State::default()), file: Mutex::new(None), in_flight: AtomicUsize::new(0), changed: WaitQueue::new() })
    }

    /// The kind (`SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`).
    pub fn kind(&self) -> u32 {
        self.kind
    }

    fn wake(&self) {
        self.changed.wake_all();
        crate::syscall::poll::notify();
    }

    /// The last reference from user space went (`reset`: an embryo whose
    /// listener closed, which resets its client): the peer sees end of
    /// file (ECONNRESET first if it had sent what was never read), queued
    /// connections are closed, the name is free again.
    fn close(self: &Arc<Self>, reset: bool) {
        let (queue, pending, peer, unread, name) = {
            let mut st = self.state.lock();
            st.closed = true;
            st.shut = RCV | SEND;
            st.queued = 0;
            let unread = !st.queue.is_empty();
            (core::mem::take(&mut st.queue), st.listen.take(), st.peer.take().and_then(|w| w.upgrade()), unread, (st.name.clone(), st.node))
        };
        if let Some(peer) = peer {
            if self.kind != SOCK_DGRAM {
                let mut ps = peer.state.lock();
                ps.shut = RCV | SEND;
                if unread || reset {
                    ps.error = Some(Errno::ECONNRESET);
                }
            }
            peer.wake();
        }
        self.wake();
        match name {
            (Name::Abstract(a), _) => {
                let mut names = ABSTRACT.lock();
                let key = (self.kind, a);
                if names.get(&key).is_some_and(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(self))) {
                    names.remove(&key);
                }
            }
            (Name::Path(_), Some(key)) => {
                let mut nodes = BOUND.lock();
                if nodes.get(&key).is_some_and(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(self))) {
                    nodes.remove(&key);
                }
            }
            _ => {}
        }
        if let Some(listen) = pending {
            for embryo in listen.pending {
                embryo.close(true);
            }
        }
        bury(queue);
    }
}

/// True when a datagram of `len` bytes from `sender` does not fit in the
/// queue of `receiver` (its state): past [`MAX_DGRAM_QLEN`] messages, or
/// past [`QUEUE_BYTES`] once something is queued. A receiver connected
/// back to the sender (a socketpair) has only the byte limit, as Linux.
fn dgram_full(receiver: &State, sender: &Arc<Sock>, len: usize) -> bool {
    let paired = receiver.peer.as_ref().is_some_and(|p| core::ptr::eq(p.as_ptr(), Arc::as_ptr(sender)));
    (!paired && receiver.queue.len() > MAX_DGRAM_QLEN) || (!receiver.queue.is_empty() && receiver.queued + len + MSG_COST > QUEUE_BYTES)
}

/// Waits on `queue` until `attempt` gives something other than EAGAIN
/// (non-blocking: EAGAIN; a signal: EINTR; `timeout_ns` passed: EAGAIN,
/// as Linux's `SO_RCVTIMEO`/`SO_SNDTIMEO`).
fn block<R>(queue: &WaitQueue, nonblocking: bool, timeout_ns: u64, interrupted: &dyn Fn() -> bool, mut attempt: impl FnMut() -> Result<R, Errno>) -> Result<R, Errno> {
    let deadline = if timeout_ns == 0 { u64::MAX } else { framekernel::time::now_ns().saturating_add(timeout_ns) };
    let _alarm = if nonblocking { None } else { crate::syscall::proc::Alarm::new(deadline) };
    queue.wait_until(|| match attempt() {
        Err(Errno::EAGAIN) => {
            if nonblocking || framekernel::time::now_ns() >= deadline {
                Some(Err(Errno::EAGAIN))
            } else if interrupted() {
                Some(Err(Errno::EINTR))
            } else {
                None
            }
        }
        other => Some(other),
    })
}

/// Socket options the kernel keeps.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub pass_cred: bool,
    pub rcv_timeout: u64,
    pub snd_timeout: u64,
    pub sndbuf: u32,
    pub rcvbuf: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { pass_cred: false, rcv_timeout: 0, snd_timeout: 0, sndbuf: QUEUE_BYTES as u32, rcvbuf: QUEUE_BYTES as u32 }
    }
}

/// What a send carries besides its bytes.
pub struct Ancillary {
    pub files: Vec<Arc<dyn File>>,
    /// The sender's user (in-flight descriptors count against it) and its
    /// limit (`None`: privileged).
    pub uid: u32,
    pub fd_limit: Option<usize>,
    /// The credentials the receiver sees.
    pub cred: Option<Ucred>,
}

/// What a receive got.
#[derive(Default)]
pub struct Received {
    pub data: Vec<u8>,
    /// The whole message's length (a datagram cut short).
    pub full: usize,
    pub from: Name,
    pub files: Vec<Arc<dyn File>>,
    /// The sender's credentials, when `SO_PASSCRED` is on.
    pub cred: Option<Ucred>,
    /// The credentials the message came with and the user charged for
    /// it (to put it back with [`UnixSocket::unread`]).
    sent_cred: Option<Ucred>,
    sender_uid: u32,
}

/// An `AF_UNIX` socket as an open file.
pub struct UnixSocket {
    sock: Arc<Sock>,
    ino: u64,
    nonblocking: NonBlocking,
    /// Options the kernel keeps.
    pub options: Mutex<Options>,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.sock.close(false);
        maybe_collect();
    }
}

/// Sockets with references in flight, by address.
static IN_FLIGHT_SOCKS: SpinLock<BTreeMap<usize, Weak<Sock>>> = SpinLock::new(BTreeMap::new());
/// Socket files closed since the collector last ran.
static CLOSES: AtomicU32 = AtomicU32::new(0);

/// Counts references to socket files in flight (`delta` per file) on
/// their sockets; a socket with some is listed for the collector.
fn count_in_flight(files: &[Arc<dyn File>], up: bool) {
    for f in files {
        let Some(u) = f.as_unix_socket() else { continue };
        let sock = &u.sock;
        let key = Arc::as_ptr(sock) as usize;
        if up {
            if sock.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
                IN_FLIGHT_SOCKS.lock().insert(key, Arc::downgrade(sock));
            }
        } else if sock.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            IN_FLIGHT_SOCKS.lock().remove(&key);
        }
    }
}

/// A socket file closed: runs the collector once as many closes have
/// happened as a quarter of the sockets in flight (so a long chain of
/// them costs linear time, not quadratic).
fn maybe_collect() {
    let in_flight = IN_FLIGHT_SOCKS.lock().len();
    if in_flight == 0 {
        return;
    }
    let closes = CLOSES.fetch_add(1, Ordering::Relaxed) as usize + 1;
    if closes >= (in_flight / 4).max(1) {
        collect();
    }
}

/// Linux's unix garbage collector: sockets whose every file reference is
/// a message in some queue (none from a descriptor table or a system
/// call in progress), and that no such socket with an outside reference
/// reaches, are garbage: their queues are emptied, which drops the
/// references that kept them. It takes one socket's lock at a time, and
/// costs the sockets in flight and their queues.
fn collect() {
    use alloc::collections::BTreeSet;
    CLOSES.store(0, Ordering::Relaxed);
    let socks: Vec<(usize, Arc<Sock>)> = IN_FLIGHT_SOCKS.lock().iter().filter_map(|(&k, w)| w.upgrade().map(|s| (k, s))).collect();
    // Candidates: every reference to the file is in flight.
    let mut candidates: BTreeMap<usize, Arc<Sock>> = BTreeMap::new();
    for (key, sock) in socks {
        let files = sock.file.lock().as_ref().map_or(0, Weak::strong_count);
        if files > 0 && files <= sock.in_flight.load(Ordering::SeqCst) {
            candidates.insert(key, sock);
        }
    }
    if candidates.is_empty() {
        return;
    }
    // What each candidate's queues (and its embryos') carry.
    let carried = |sock: &Sock| -> Vec<usize> {
        let mut out = Vec::new();
        let embryos: Vec<Arc<Sock>> = {
            let st = sock.state.lock();
            for m in &st.queue {
                out.extend(m.files.files.iter().filter_map(|f| f.as_unix_socket()).map(|u| Arc::as_ptr(&u.sock) as usize));
            }
            st.listen.as_ref().map(|l| l.pending.iter().cloned().collect()).unwrap_or_default()
        };
        for embryo in embryos {
            let st = embryo.state.lock();
            for m in &st.queue {
                out.extend(m.files.files.iter().filter_map(|f| f.as_unix_socket()).map(|u| Arc::as_ptr(&u.sock) as usize));
            }
        }
        out
    };
    let mut edges: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut from_candidates: BTreeMap<usize, usize> = BTreeMap::new();
    for (&key, sock) in &candidates {
        let targets: Vec<usize> = carried(sock).into_iter().filter(|t| candidates.contains_key(t)).collect();
        for t in &targets {
            *from_candidates.entry(*t).or_insert(0) += 1;
        }
        edges.insert(key, targets);
    }
    // A candidate referenced from outside the candidates is alive, and so
    // is everything it reaches.
    let mut work: Vec<usize> = candidates
        .iter()
        .filter(|(k, s)| s.in_flight.load(Ordering::SeqCst) > from_candidates.get(k).copied().unwrap_or(0))
        .map(|(&k, _)| k)
        .collect();
    let mut alive: BTreeSet<usize> = BTreeSet::new();
    while let Some(k) = work.pop() {
        if alive.insert(k) {
            work.extend(edges.get(&k).into_iter().flatten().filter(|t| !alive.contains(t)));
        }
    }
    let mut queues = Vec::new();
    for (key, sock) in candidates {
        if alive.contains(&key) {
            continue;
        }
        let embryos: Vec<Arc<Sock>> = {
            let mut st = sock.state.lock();
            st.queued = 0;
            queues.push(core::mem::take(&mut st.queue));
            st.listen.as_ref().map(|l| l.pending.iter().cloned().collect()).unwrap_or_default()
        };
        for embryo in embryos {
            let mut es = embryo.state.lock();
            es.queued = 0;
            queues.push(core::mem::take(&mut es.queue));
        }
    }
    for queue in queues {
        bury(queue);
    }
}

fn wrap(sock: Arc<Sock>, nonblocking: bool) -> Arc<UnixSocket> {
    let file = Arc::new(UnixSocket { sock: sock.clone(), ino: crate::epoll::anon_ino(), nonblocking: NonBlocking::new(nonblocking), options: Mutex::new(Options::default()) });
    *sock.file.lock() = Some(Arc::downgrade(&file));
    file
}

/// A new socket of `kind`.
pub fn socket(kind: u32, nonblocking: bool) -> Arc<UnixSocket> {
    wrap(Sock::new(kind), nonblocking)
}

/// `socketpair`: two sockets of `kind` connected to each other, both with
/// the creator's credentials.
pub fn pair(kind: u32, nonblocking: bool, cred: Ucred) -> (Arc<UnixSocket>, Arc<UnixSocket>) {
    let (a, b) = (Sock::new(kind), Sock::new(kind));
    for (me, other) in [(&a, &b), (&b, &a)] {
        let mut st = me.state.lock();
        st.peer = Some(Arc::downgrade(other));
        st.connected = true;
        st.own_cred = Some(cred);
        st.peer_cred = Some(cred);
    }
    (wrap(a, nonblocking), wrap(b, nonblocking))
}

impl UnixSocket {
    /// The kind (`SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`).
    pub fn kind(&self) -> u32 {
        self.sock.kind
    }

    /// True once the socket has a name.
    pub fn is_bound(&self) -> bool {
        self.sock.state.lock().name != Name::Unnamed
    }

    /// `bind`: a path name whose node the caller made (`node`), an
    /// abstract name, or [`Name::Unnamed`] for a free abstract name of
    /// five hex digits (autobind). EINVAL when already bound, EADDRINUSE
    /// for an abstract name in use.
    pub fn bind(&self, name: Name, node: Option<(u64, u64)>) -> Result<(), Errno> {
        let mut st = self.sock.state.lock();
        if st.name != Name::Unnamed {
            // Linux: autobind of a bound socket changes nothing.
            return if name == Name::Unnamed { Ok(()) } else { Err(Errno::EINVAL) };
        }
        let kind = self.sock.kind;
        let me = Arc::downgrade(&self.sock);
        let name = match name {
            Name::Path(p) => {
                let key = node.ok_or(Errno::EINVAL)?;
                BOUND.lock().insert(key, me);
                st.node = Some(key);
                Name::Path(p)
            }
            Name::Abstract(a) => {
                let mut names = ABSTRACT.lock();
                if names.get(&(kind, a.clone())).is_some_and(|w| w.strong_count() > 0) {
                    return Err(Errno::EADDRINUSE);
                }
                names.insert((kind, a.clone()), me);
                Name::Abstract(a)
            }
            Name::Unnamed => {
                let mut names = ABSTRACT.lock();
                let mut found = None;
                for _ in 0..0x10_0000 {
                    let n = AUTOBIND.fetch_add(1, Ordering::Relaxed) & 0xf_ffff;
                    let a = alloc::format!("{n:05x}").into_bytes();
                    if names.get(&(kind, a.clone())).is_none_or(|w| w.strong_count() == 0) {
                        found = Some(a);
                        break;
                    }
                }
                let a = found.ok_or(Errno::ENOSPC)?;
                names.insert((kind, a.clone()), me);
                Name::Abstract(a)
            }
        };
        st.name = name;
        Ok(())
    }

    /// Empties the receive queue (a datagram socket that changes or drops
    /// its peer, as Linux): the messages, to drop once no lock is held.
    fn purge(&self, st: &mut State) -> VecDeque<Msg> {
        st.queued = 0;
        core::mem::take(&mut st.queue)
    }

    /// `SO_PASSCRED`.
    pub fn set_pass_cred(&self, on: bool) {
        self.options.lock().pass_cred = on;
    }

    /// The pending error, cleared (`SO_ERROR`).
    pub fn take_error(&self) -> Option<Errno> {
        self.sock.state.lock().error.take()
    }

    /// True when the socket passes credentials (`SO_PASSCRED`) and has no
    /// name yet: Linux then gives it one when it sends or connects.
    pub fn needs_autobind(&self) -> bool {
        self.options.lock().pass_cred && !self.is_bound()
    }

    /// Puts what a stream receive took back at the front of the queue
    /// (the caller could not copy it out: Linux leaves such data queued).
    /// Other kinds lose the message, as on Linux.
    pub fn unread(&self, got: Received) {
        if self.sock.kind != SOCK_STREAM || got.data.is_empty() {
            return;
        }
        let Ok(charge) = Charge::new(got.sender_uid, got.data.len() + MSG_COST) else { return };
        let files = Carried { files: got.files, uid: got.sender_uid };
        // The files were counted out when taken: count them in again.
        if !files.files.is_empty() {
            *IN_FLIGHT.lock().entry(files.uid).or_insert(0) += files.files.len();
        }
        let msg = Msg { data: got.data, read: 0, from: got.from, cred: got.sent_cred, files, _charge: charge };
        let mut st = self.sock.state.lock();
        st.queued += msg.cost();
        st.queue.push_front(msg);
        drop(st);
        self.sock.wake();
    }

    /// The socket's own name (`getsockname`).
    pub fn name(&self) -> Name {
        self.sock.state.lock().name.clone()
    }

    /// The peer's name (`getpeername`): ENOTCONN when not connected.
    pub fn peer_name(&self) -> Result<Name, Errno> {
        let (peer, kept) = {
            let st = self.sock.state.lock();
            let connected = st.connected || self.sock.kind == SOCK_DGRAM && st.peer.is_some();
            if !connected {
                return Err(Errno::ENOTCONN);
            }
            (st.peer.as_ref().and_then(Weak::upgrade), st.peer_name.clone())
        };
        // The peer's name now (it may have bound since), else the one it
        // had (a closed peer keeps its name for us, as Linux).
        Ok(match peer {
            Some(peer) if !Arc::ptr_eq(&peer, &self.sock) => peer.state.lock().name.clone(),
            Some(_) => self.name(),
            None => kept,
        })
    }

    /// The peer's credentials (`SO_PEERCRED`): none when not connected.
    pub fn peer_cred(&self) -> Option<Ucred> {
        let st = self.sock.state.lock();
        // A listener's are its own, as Linux.
        if st.listen.is_some() { st.own_cred } else { st.peer_cred }
    }

    /// True while listening (`SO_ACCEPTCONN`).
    pub fn listening(&self) -> bool {
        self.sock.state.lock().listen.is_some()
    }

    /// `listen`: EOPNOTSUPP for datagrams, EINVAL when unbound or connected.
    pub fn listen(&self, backlog: usize, cred: Ucred) -> Result<(), Errno> {
        if self.sock.kind == SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.sock.state.lock();
        if st.connected || st.name == Name::Unnamed {
            return Err(Errno::EINVAL);
        }
        st.listen.get_or_insert_with(|| Listen { backlog, pending: VecDeque::new() }).backlog = backlog;
        st.own_cred = Some(cred);
        drop(st);
        self.sock.wake();
        Ok(())
    }

    /// `accept`: the next queued connection (EINVAL when not listening,
    /// EOPNOTSUPP for datagrams).
    pub fn accept(&self, nonblocking: bool, interrupted: &dyn Fn() -> bool) -> Result<Arc<UnixSocket>, Errno> {
        if self.sock.kind == SOCK_DGRAM {
            return Err(Errno::EOPNOTSUPP);
        }
        let timeout = self.options.lock().rcv_timeout;
        let waits = !self.nonblocking.get();
        let conn = block(&self.sock.changed, !waits, timeout, interrupted, || {
            let mut st = self.sock.state.lock();
            let shut = st.shut & RCV != 0;
            let listen = st.listen.as_mut().ok_or(Errno::EINVAL)?;
            match listen.pending.pop_front() {
                Some(conn) => Ok(conn),
                // A listener shut down is waited on no more (Linux: EINVAL;
                // non-blocking, EAGAIN as before).
                None if shut && waits => Err(Errno::EINVAL),
                None => Err(Errno::EAGAIN),
            }
        })?;
        // Connectors waiting for room in the backlog.
        self.sock.wake();
        let conn = wrap(conn, nonblocking);
        // The new socket passes credentials if the listener does.
        conn.set_pass_cred(self.options.lock().pass_cred);
        Ok(conn)
    }

    /// `connect`: a stream or sequenced-packet socket joins `target`'s
    /// backlog (waiting while it is full) and is connected at once; a
    /// datagram socket takes `target` as its default destination (`None`:
    /// `AF_UNSPEC`, forgets it).
    pub fn connect(&self, target: Option<Arc<Sock>>, cred: Ucred, interrupted: &dyn Fn() -> bool) -> Result<(), Errno> {
        let me = &self.sock;
        if me.kind == SOCK_DGRAM {
            let Some(target) = target else {
                let old = {
                    let mut st = me.state.lock();
                    st.peer_cred = None;
                    st.peer.take().map(|_| self.purge(&mut st))
                };
                drop(old);
                return Ok(());
            };
            if target.kind != SOCK_DGRAM {
                return Err(Errno::EPROTOTYPE);
            }
            if !Arc::ptr_eq(&target, me) {
                let ts = target.state.lock();
                if ts.closed {
                    return Err(Errno::ECONNREFUSED);
                }
                if ts.peer.as_ref().is_some_and(|p| !core::ptr::eq(p.as_ptr(), Arc::as_ptr(me))) {
                    return Err(Errno::EPERM);
                }
            }
            let target_name = if Arc::ptr_eq(&target, me) { None } else { Some(target.state.lock().name.clone()) };
            let old = {
                let mut st = me.state.lock();
                let changed = st.peer.as_ref().is_some_and(|p| !core::ptr::eq(p.as_ptr(), Arc::as_ptr(&target)));
                st.peer = Some(Arc::downgrade(&target));
                st.peer_name = target_name.unwrap_or_else(|| st.name.clone());
                st.peer_cred = None;
                changed.then(|| self.purge(&mut st))
            };
            drop(old);
            return Ok(());
        }
        let target = target.ok_or(Errno::EINVAL)?;
        if target.kind != me.kind {
            return Err(Errno::EPROTOTYPE);
        }
        {
            let st = me.state.lock();
            if st.connected {
                return Err(Errno::EISCONN);
            }
            if st.listen.is_some() {
                return Err(Errno::EINVAL);
            }
        }
        if Arc::ptr_eq(&target, me) {
            return Err(Errno::ECONNREFUSED);
        }
        let timeout = self.options.lock().snd_timeout;
        let result = block(&target.changed, self.nonblocking.get(), timeout, interrupted, || {
            // The connector's lock, then the listener's (see the module
            // documentation for why this order is safe).
            let mut st = me.state.lock();
            if st.connected {
                return Err(Errno::EISCONN);
            }
            // Checked again under the lock: a listener never takes another
            // socket's lock while holding its own, which keeps the order.
            if st.listen.is_some() {
                return Err(Errno::EINVAL);
            }
            let mut ts = target.state.lock();
            let listener_name = ts.name.clone();
            let listener_cred = ts.own_cred;
            let closed = ts.closed;
            let Some(listen) = ts.listen.as_mut().filter(|_| !closed) else {
                return Err(Errno::ECONNREFUSED);
            };
            if listen.pending.len() > listen.backlog {
                return Err(Errno::EAGAIN);
            }
            let embryo = Sock::new(me.kind);
            {
                let mut es = embryo.state.lock();
                es.name = listener_name.clone();
                es.peer = Some(Arc::downgrade(me));
                es.connected = true;
                es.own_cred = listener_cred;
                es.peer_cred = Some(cred);
            }
            st.peer = Some(Arc::downgrade(&embryo));
            st.peer_name = listener_name.clone();
            st.connected = true;
            st.peer_cred = listener_cred;
            listen.pending.push_back(embryo);
            Ok(())
        });
        match result {
            // Linux: a non-blocking connect to a full backlog.
            Err(Errno::EAGAIN) if self.nonblocking.get() => return Err(Errno::EAGAIN),
            other => other?,
        }
        target.wake();
        Ok(())
    }

    /// `shutdown` (`how`: 0 reading, 1 writing, 2 both): the peer of a
    /// connection sees the other half.
    pub fn shutdown(&self, how: u64) -> Result<(), Errno> {
        let bits = match how {
            0 => RCV,
            1 => SEND,
            2 => RCV | SEND,
            _ => return Err(Errno::EINVAL),
        };
        let peer = {
            let mut st = self.sock.state.lock();
            st.shut |= bits;
            st.peer.as_ref().and_then(Weak::upgrade)
        };
        self.sock.wake();
        if let Some(peer) = peer.filter(|_| self.sock.kind != SOCK_DGRAM) {
            let mirrored = (if bits & RCV != 0 { SEND } else { 0 }) | (if bits & SEND != 0 { RCV } else { 0 });
            peer.state.lock().shut |= mirrored;
            peer.wake();
        }
        Ok(())
    }

    /// Bytes ready to read (`FIONREAD`): everything queued for a
    /// connection, the next datagram's size; EINVAL when listening.
    pub fn pending(&self) -> Result<usize, Errno> {
        let st = self.sock.state.lock();
        if st.listen.is_some() {
            return Err(Errno::EINVAL);
        }
        Ok(match self.sock.kind {
            SOCK_DGRAM => st.queue.front().map_or(0, |m| m.data.len()),
            _ => st.queue.iter().map(|m| m.data.len() - m.read).sum(),
        })
    }

    /// Sends `data` (to `to`, or the peer), with `extra`'s files and
    /// credentials. A stream sends what fits and waits for room for the
    /// rest (returning what was sent when a wait is cut short); the other
    /// kinds send the whole message or nothing.
    pub fn send(&self, data: &[u8], to: Option<Arc<Sock>>, extra: Ancillary, dontwait: bool, interrupted: &dyn Fn() -> bool) -> SysResult {
        let me = &self.sock;
        let nonblocking = dontwait || self.nonblocking.get();
        let timeout = self.options.lock().snd_timeout;
        let (from, peer) = {
            let st = me.state.lock();
            if me.kind != SOCK_DGRAM {
                if st.shut & SEND != 0 {
                    return Err(Errno::EPIPE);
                }
                if to.is_some() {
                    return Err(if st.connected { Errno::EISCONN } else { Errno::EOPNOTSUPP });
                }
                if !st.connected {
                    return Err(Errno::ENOTCONN);
                }
            } else if st.shut & SEND != 0 {
                return Err(Errno::EPIPE);
            }
            (st.name.clone(), st.peer.clone())
        };
        if me.kind == SOCK_STREAM && data.is_empty() {
            // Linux queues nothing for an empty stream send (files too).
            return Ok(0);
        }
        let extra_uid = extra.uid;
        // Under the limit now, or after collecting garbage (no lock may be
        // held while the collector runs, so not inside the waits below).
        drop(Charge::new(extra_uid, data.len().min(QUEUE_BYTES) + MSG_COST)?);
        let mut carried = Some(Carried::new(extra.files, extra.uid, extra.fd_limit)?);
        let cred = extra.cred;
        if me.kind == SOCK_DGRAM {
            let limit = QUEUE_BYTES - 32;
            if data.len() > limit {
                return Err(Errno::EMSGSIZE);
            }
            let target = match to {
                Some(t) => t,
                None => {
                    let weak = peer.ok_or(Errno::ENOTCONN)?;
                    match weak.upgrade() {
                        Some(t) => t,
                        None => {
                            me.state.lock().peer = None;
                            return Err(Errno::ECONNREFUSED);
                        }
                    }
                }
            };
            if target.kind != SOCK_DGRAM {
                return Err(Errno::EPROTOTYPE);
            }
            let result = block(&target.changed, nonblocking, timeout, interrupted, || {
                let mut ts = target.state.lock();
                if ts.closed {
                    return Err(Errno::ECONNREFUSED);
                }
                if !Arc::ptr_eq(&target, me) && ts.peer.as_ref().is_some_and(|p| !core::ptr::eq(p.as_ptr(), Arc::as_ptr(me))) {
                    return Err(Errno::EPERM);
                }
                if ts.shut & RCV != 0 {
                    return Err(Errno::EPIPE);
                }
                if dgram_full(&ts, me, data.len()) {
                    return Err(Errno::EAGAIN);
                }
                let charge = Charge::take(extra_uid, data.len() + MSG_COST)?;
                let bytes = copy(data)?;
                let files = carried.take().ok_or(Errno::EINVAL)?;
                let msg = Msg { data: bytes, read: 0, from: from.clone(), cred, files, _charge: charge };
                ts.queued += msg.cost();
                ts.queue.push_back(msg);
                Ok(())
            });
            if result == Err(Errno::ECONNREFUSED) {
                // Linux forgets a peer that is gone.
                let mut st = me.state.lock();
                if st.peer.as_ref().is_some_and(|p| core::ptr::eq(p.as_ptr(), Arc::as_ptr(&target))) {
                    st.peer = None;
                }
            }
            result?;
            target.wake();
            return Ok(data.len() as u64);
        }
        let peer = peer.and_then(|w| w.upgrade()).ok_or(Errno::EPIPE)?;
        let record = me.kind == SOCK_SEQPACKET;
        if record && data.len() + MSG_COST > QUEUE_BYTES {
            return Err(Errno::EMSGSIZE);
        }
        let mut sent = 0usize;
        loop {
            let step = block(&peer.changed, nonblocking, timeout, interrupted, || {
                if me.state.lock().shut & SEND != 0 {
                    return Err(Errno::EPIPE);
                }
                let mut ps = peer.state.lock();
                if ps.closed || ps.shut & RCV != 0 {
                    return Err(Errno::EPIPE);
                }
                let room = QUEUE_BYTES.saturating_sub(ps.queued + MSG_COST);
                let rest = data.len() - sent;
                let take = if record {
                    if room < rest && !ps.queue.is_empty() {
                        return Err(Errno::EAGAIN);
                    }
                    rest
                } else {
                    if room == 0 || (room < rest.min(4096) && !ps.queue.is_empty()) {
                        return Err(Errno::EAGAIN);
                    }
                    rest.min(room.max(1))
                };
                let charge = Charge::take(extra_uid, take + MSG_COST)?;
                let bytes = copy(&data[sent..sent + take])?;
                let files = carried.take().unwrap_or(Carried { files: Vec::new(), uid: 0 });
                let msg = Msg { data: bytes, read: 0, from: from.clone(), cred, files, _charge: charge };
                ps.queued += msg.cost();
                ps.queue.push_back(msg);
                Ok(take)
            });
            match step {
                Ok(n) => {
                    sent += n;
                    peer.wake();
                    if sent >= data.len() {
                        return Ok(sent as u64);
                    }
                }
                Err(_) if sent > 0 => return Ok(sent as u64),
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives up to `len` bytes: a stream reads across messages (not
    /// past one that carries files), the other kinds one message (the
    /// rest of it is lost unless `peek`).
    pub fn recv(&self, len: usize, peek: bool, dontwait: bool, waitall: bool, interrupted: &dyn Fn() -> bool) -> Result<Received, Errno> {
        let me = &self.sock;
        let nonblocking = dontwait || self.nonblocking.get();
        let (timeout, pass_cred) = {
            let o = self.options.lock();
            (o.rcv_timeout, o.pass_cred)
        };
        let mut out = Received::default();
        let mut started = false;
        if me.kind == SOCK_STREAM && len == 0 {
            // Linux returns at once: nothing was asked for.
            return if me.state.lock().connected { Ok(out) } else { Err(Errno::EINVAL) };
        }
        let result = block(&me.changed, nonblocking, timeout, interrupted, || {
            let mut st = me.state.lock();
            match me.kind {
                SOCK_STREAM if !st.connected => return Err(Errno::EINVAL),
                SOCK_SEQPACKET if !st.connected => return Err(Errno::ENOTCONN),
                _ => {}
            }
            if st.queue.is_empty() {
                if let Some(e) = st.error.take().filter(|_| !started) {
                    return Err(e);
                }
                if st.shut & RCV != 0 || started && !waitall {
                    return Ok(());
                }
                return Err(Errno::EAGAIN);
            }
            if me.kind != SOCK_STREAM {
                let Some(m) = st.queue.front_mut() else { return Err(Errno::EAGAIN) };
                out.full = m.data.len();
                out.data = copy(&m.data[..len.min(m.data.len())])?;
                out.from = m.from.clone();
                out.files = m.files.take(peek);
                out.cred = pass_cred.then(|| m.cred.unwrap_or(NO_CRED));
                out.sent_cred = m.cred;
                out.sender_uid = m._charge.uid;
                if !peek && let Some(m) = st.queue.pop_front() {
                    st.queued -= m.cost();
                }
                return Ok(());
            }
            let mut index = 0;
            // A boundary the read may not cross (descriptors, other
            // credentials) ends it even under MSG_WAITALL, as Linux.
            let mut boundary = false;
            while out.data.len() < len {
                let Some(m) = st.queue.get_mut(index) else { break };
                if started && (!m.files.files.is_empty() || pass_cred && out.cred != Some(m.cred.unwrap_or(NO_CRED))) {
                    boundary = true;
                    break;
                }
                let mut had_files = false;
                if !started {
                    had_files = !m.files.files.is_empty();
                    out.files = m.files.take(peek);
                    out.cred = pass_cred.then(|| m.cred.unwrap_or(NO_CRED));
                    out.from = m.from.clone();
                    out.sent_cred = m.cred;
                    out.sender_uid = m._charge.uid;
                    started = true;
                }
                let n = (len - out.data.len()).min(m.data.len() - m.read);
                if out.data.try_reserve(n).is_err() {
                    return Err(Errno::ENOBUFS);
                }
                out.data.extend_from_slice(&m.data[m.read..m.read + n]);
                if peek {
                    if m.read + n < m.data.len() {
                        break;
                    }
                    index += 1;
                } else {
                    m.read += n;
                    if m.read < m.data.len() {
                        break;
                    }
                    if let Some(m) = st.queue.pop_front() {
                        st.queued -= m.cost();
                    }
                }
                // A message with descriptors ends the read (Linux).
                if had_files {
                    boundary = true;
                    break;
                }
            }
            if waitall && !boundary && !peek && out.data.len() < len && st.shut & RCV == 0 {
                drop(st);
                me.wake();
                return Err(Errno::EAGAIN);
            }
            Ok(())
        });
        if !peek {
            // Senders waiting for room.
            me.wake();
        }
        match result {
            Ok(()) => {}
            Err(_) if started => {}
            Err(e) => return Err(e),
        }
        if me.kind == SOCK_STREAM {
            out.full = out.data.len();
        }
        Ok(out)
    }
}

impl File for UnixSocket {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let got = self.recv(buf.len(), false, false, false, interrupted)?;
        let n = got.data.len().min(buf.len());
        buf[..n].copy_from_slice(&got.data[..n]);
        Ok(n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.write_interruptible(buf, &|| false)
    }

    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        // The writer: its credentials go with the bytes, its user is
        // charged for them.
        let writer = crate::process::current().map(|info| {
            let c = info.credentials();
            Ucred { pid: info.pid, uid: c.ruid, gid: c.rgid }
        });
        let uid = writer.map_or(0, |w| w.uid);
        let extra = Ancillary { files: Vec::new(), uid, fd_limit: None, cred: writer };
        self.send(buf, None, extra, false, interrupted)
    }

    fn stat(&self) -> FileStat {
        crate::files::socket_stat(self.ino)
    }

    fn poll(&self) -> u16 {
        let me = &self.sock;
        let (mut events, peer) = {
            let st = me.state.lock();
            if let Some(listen) = &st.listen {
                let shut = if st.shut & RCV != 0 { POLLIN | POLLRDHUP } else { 0 } | if st.shut == RCV | SEND { POLLHUP } else { 0 };
                return shut | if listen.pending.is_empty() { 0 } else { POLLIN };
            }
            let mut events = 0;
            if !st.queue.is_empty() || st.shut & RCV != 0 {
                events |= POLLIN;
            }
            if st.shut & RCV != 0 {
                events |= POLLRDHUP;
            }
            if st.shut == RCV | SEND || (me.kind != SOCK_DGRAM && !st.connected) {
                events |= POLLHUP;
            }
            if st.error.is_some() {
                events |= POLLERR;
            }
            (events, st.peer.as_ref().and_then(Weak::upgrade).filter(|p| !Arc::ptr_eq(p, me)))
        };
        let writable = match peer {
            None => true,
            Some(peer) => {
                let ps = peer.state.lock();
                if ps.closed {
                    true
                } else if me.kind == SOCK_DGRAM {
                    !dgram_full(&ps, me, 0)
                } else {
                    // Writable while the queue is at most a quarter full
                    // (Linux's unix_writable, on the sender's buffer).
                    ps.queued * 4 <= QUEUE_BYTES
                }
            }
        };
        if writable {
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

    fn as_unix_socket(&self) -> Option<&UnixSocket> {
        Some(self)
    }
}

impl UnixSocket {
    /// The protocol part (what `connect` and `sendto` aim at).
    pub fn sock(&self) -> Arc<Sock> {
        self.sock.clone()
    }
}
