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
//! `RLIMIT_NOFILE` (ETOOMANYREFS past it), as on Linux. A socket sent
//! over itself stays alive until the machine stops (Linux collects such
//! cycles; here the in-flight limit bounds them).

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

/// Sockets with `SO_PASSCRED` on.
static PASS_CRED: AtomicUsize = AtomicUsize::new(0);

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
            let mut counts = IN_FLIGHT.lock();
            let count = counts.entry(uid).or_insert(0);
            if limit.is_some_and(|limit| *count + files.len() > limit) {
                return Err(Errno::ETOOMANYREFS);
            }
            *count += files.len();
        }
        Ok(Carried { files, uid })
    }

    /// The files, no longer in flight (`peek`: copies, still in flight).
    fn take(&mut self, peek: bool) -> Vec<Arc<dyn File>> {
        if peek {
            return self.files.clone();
        }
        let files = core::mem::take(&mut self.files);
        release(self.uid, files.len());
        files
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        release(self.uid, self.files.len());
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

/// One queued message.
struct Msg {
    data: Vec<u8>,
    /// Bytes a stream reader has taken already.
    read: usize,
    from: Name,
    /// The sender's credentials (`None`: written with `write(2)` while no
    /// socket asked for credentials).
    cred: Option<Ucred>,
    files: Carried,
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
        Arc::new(Sock { kind, state: Mutex::new(State::default()), changed: WaitQueue::new() })
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
        drop(queue);
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
        self.set_pass_cred(false);
        self.sock.close(false);
    }
}

fn wrap(sock: Arc<Sock>, nonblocking: bool) -> Arc<UnixSocket> {
    Arc::new(UnixSocket { sock, ino: crate::epoll::anon_ino(), nonblocking: NonBlocking::new(nonblocking), options: Mutex::new(Options::default()) })
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
        let mut o = self.options.lock();
        if o.pass_cred != on {
            if on {
                PASS_CRED.fetch_add(1, Ordering::Relaxed);
            } else {
                PASS_CRED.fetch_sub(1, Ordering::Relaxed);
            }
            o.pass_cred = on;
        }
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
        self.sock.state.lock().peer_cred
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
        let conn = block(&self.sock.changed, self.nonblocking.get(), timeout, interrupted, || {
            let mut st = self.sock.state.lock();
            let listen = st.listen.as_mut().ok_or(Errno::EINVAL)?;
            listen.pending.pop_front().ok_or(Errno::EAGAIN)
        })?;
        // Connectors waiting for room in the backlog.
        self.sock.wake();
        Ok(wrap(conn, nonblocking))
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
                let files = carried.take().ok_or(Errno::EINVAL)?;
                let msg = Msg { data: data.to_vec(), read: 0, from: from.clone(), cred, files };
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
                let files = carried.take().unwrap_or(Carried { files: Vec::new(), uid: 0 });
                let msg = Msg { data: data[sent..sent + take].to_vec(), read: 0, from: from.clone(), cred, files };
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
                out.data = m.data[..len.min(m.data.len())].to_vec();
                out.from = m.from.clone();
                out.files = m.files.take(peek);
                out.cred = pass_cred.then(|| m.cred.unwrap_or(NO_CRED));
                if !peek && let Some(m) = st.queue.pop_front() {
                    st.queued -= m.cost();
                }
                return Ok(());
            }
            let mut index = 0;
            while out.data.len() < len {
                let Some(m) = st.queue.get_mut(index) else { break };
                if started && (!m.files.files.is_empty() || pass_cred && out.cred != Some(m.cred.unwrap_or(NO_CRED))) {
                    break;
                }
                if !started {
                    out.files = m.files.take(peek);
                    out.cred = pass_cred.then(|| m.cred.unwrap_or(NO_CRED));
                    out.from = m.from.clone();
                    started = true;
                }
                let n = (len - out.data.len()).min(m.data.len() - m.read);
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
            }
            if waitall && !peek && out.data.len() < len && st.shut & RCV == 0 {
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
        // The writer's credentials, looked up only while some socket wants
        // them (finding the calling process is a search).
        let cred = (PASS_CRED.load(Ordering::Relaxed) > 0).then(crate::process::current).flatten().map(|info| {
            let c = info.credentials();
            Ucred { pid: info.pid, uid: c.ruid, gid: c.rgid }
        });
        let extra = Ancillary { files: Vec::new(), uid: 0, fd_limit: None, cred };
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
                return if listen.pending.is_empty() { 0 } else { POLLIN };
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
