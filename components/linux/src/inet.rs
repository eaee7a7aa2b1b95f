//! `AF_INET` sockets over the TCP/IP stack cell (`netstack`).
//!
//! The kernel keeps what must outlive a stack instance: the interfaces'
//! addresses and the default gateway (replayed into every new instance
//! by the slot's start hook), and the socket files with their options.
//! The stack keeps the protocol state; a socket names its connection by
//! the handle the stack gave it, which carries the epoch of the instance
//! that made it. A swap or a restart after a fault starts a new epoch:
//! the old connections are gone (ECONNRESET), new sockets work at once.
//!
//! Blocking calls wait on [`WAIT`], which the network task wakes after
//! every round that moved frames (and every 50 ms regardless, for state
//! that changes by timer alone), as does every call that changes a
//! socket.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, NonBlocking, POLLERR, POLLHUP, POLLIN, POLLOUT};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use framekernel::sync::SpinLock;
use tessera_cell_api::netstack::{Endpoint, Export, LOOPBACK_INDEX, Protocol, SockError, SockOption, Status, TcpState};
use tessera_sched::WaitQueue;

/// The stack's slot.
pub type StackSlot = tessera_live_update::Slot<Export>;

/// `AF_INET`.
pub const AF_INET: u32 = 2;
/// `SOCK_STREAM`.
pub const SOCK_STREAM: u32 = 1;
/// `SOCK_DGRAM`.
pub const SOCK_DGRAM: u32 = 2;
/// `IPPROTO_ICMP`, `IPPROTO_TCP`, `IPPROTO_UDP`.
pub const IPPROTO_ICMP: u32 = 1;
pub const IPPROTO_TCP: u32 = 6;
pub const IPPROTO_UDP: u32 = 17;
/// Bytes of `struct sockaddr_in`.
pub const SOCKADDR_IN: usize = 16;

static SLOT: SpinLock<Option<Arc<StackSlot>>> = SpinLock::new(None);
/// The epoch of the running instance (0: none yet).
static EPOCH: AtomicU32 = AtomicU32::new(0);
static NEXT_EPOCH: AtomicU32 = AtomicU32::new(1);
/// The default gateway (`[0; 4]`: none).
static GATEWAY: SpinLock<[u8; 4]> = SpinLock::new([0; 4]);
/// Woken when sockets may have changed.
pub static WAIT: WaitQueue = WaitQueue::new();

/// Serves `AF_INET` through `slot` (started with [`start_hook`]).
pub fn set_stack(slot: Arc<StackSlot>) {
    *SLOT.lock() = Some(slot);
}

fn slot() -> Result<Arc<StackSlot>, Errno> {
    SLOT.lock().clone().ok_or(Errno::EAFNOSUPPORT)
}

/// True once a stack serves `AF_INET`.
pub fn available() -> bool {
    SLOT.lock().is_some()
}

/// The slot's start hook: gives a new instance its epoch and replays the
/// configuration into it.
pub fn start_hook(instance: &framekernel::cell::Instance<Export>) -> Result<(), framekernel::cell::Fault> {
    let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed).max(1);
    instance.call(epoch, |s, e| s.start(e))?;
    for interface in crate::net::interfaces() {
        let args = (interface.index, interface.mac, 1500u32, interface.is_up());
        instance.call(args, |s, (i, mac, mtu, up)| s.set_interface(i, mac, mtu, up))?.ok();
        let (addr, prefix) = interface.address();
        instance.call((interface.index, addr, prefix), |s, (i, a, p)| s.set_address(i, a, p))?.ok();
    }
    let gw = *GATEWAY.lock();
    if gw != [0; 4] {
        instance.call(Some(gw), |s, g| s.set_gateway(g))?.ok();
    }
    EPOCH.store(epoch, Ordering::Relaxed);
    WAIT.wake_all();
    Ok(())
}

fn errno(e: SockError) -> Errno {
    match e {
        SockError::WouldBlock => Errno::EAGAIN,
        SockError::BadHandle => Errno::ECONNRESET,
        SockError::InvalidState => Errno::EINVAL,
        SockError::AddrInUse => Errno::EADDRINUSE,
        SockError::AddrNotAvail => Errno::EADDRNOTAVAIL,
        SockError::Unreachable => Errno::ENETUNREACH,
        SockError::Refused => Errno::ECONNREFUSED,
        SockError::Reset => Errno::ECONNRESET,
        SockError::TimedOut => Errno::ETIMEDOUT,
        SockError::NotConnected => Errno::ENOTCONN,
        SockError::TooLong => Errno::EMSGSIZE,
        SockError::NoBuffers => Errno::ENOBUFS,
        SockError::Unsupported => Errno::EOPNOTSUPP,
    }
}

/// Calls the stack once (never retried: no stack call is idempotent); a
/// fault, or a stack that is not there, loses the connection: ECONNRESET.
fn call<A: framekernel::cell::Arg, R: framekernel::cell::Ret>(arg: A, f: fn(&Export, A) -> R) -> Result<R, Errno> {
    let slot = slot()?;
    let mut arg = Some(arg);
    slot.call(false, |cell| match arg.take() {
        Some(a) => cell.call(a, f),
        // The argument was handed over once (the instance was found
        // faulted before the call): not retried with nothing.
        None => Err(framekernel::cell::Fault {
            kind: framekernel::cell::FaultKind::Poisoned,
            message: alloc::string::String::from("not retried: the call's argument was handed over once"),
        }),
    })
    .map_err(|e| {
        log::debug!("netstack: {e}");
        Errno::ECONNRESET
    })
}

/// Changes the configuration of interface `index` and tells the stack.
pub fn configure(index: u32) {
    let Some(interface) = crate::net::interface(index) else { return };
    let (addr, prefix) = interface.address();
    let up = interface.is_up();
    let _ = call((index, interface.mac, 1500u32, up), |s, (i, mac, mtu, up)| s.set_interface(i, mac, mtu, up));
    let _ = call((index, addr, prefix), |s, (i, a, p)| s.set_address(i, a, p));
}

/// The default gateway (`[0; 4]`: none).
pub fn gateway() -> [u8; 4] {
    *GATEWAY.lock()
}

/// Sets (or with `[0; 4]` removes) the default gateway.
pub fn set_gateway(gw: [u8; 4]) -> Result<(), Errno> {
    *GATEWAY.lock() = gw;
    call((gw != [0; 4]).then_some(gw), |s, g| s.set_gateway(g))?.map_err(errno)
}

/// Hands a received frame to the stack.
pub fn input(index: u32, frame: &[u8]) {
    if let Ok(slot) = slot() {
        let _ = slot.call(false, |cell| cell.call((index, frame), |s, (i, f)| s.input(i, f)));
    }
}

/// When the stack next needs running for its timers (ms since boot).
static NEXT_RUN_MS: AtomicU64 = AtomicU64::new(0);
/// The longest the network task leaves the stack alone: system calls
/// change its timers without the task seeing the new deadline.
const MAX_IDLE_MS: u64 = 10;

/// Runs the stack's protocols and sends what they made, if frames came
/// in (`received`) or its timers are due. Returns the frames sent.
pub fn run(received: bool) -> usize {
    let Ok(slot) = slot() else { return 0 };
    let now_ms = framekernel::time::now_ns() / 1_000_000;
    if !received && now_ms < NEXT_RUN_MS.load(Ordering::Relaxed) {
        return 0;
    }
    let Ok(delay) = slot.call_with(false, now_ms, |s, now| s.poll(now)) else { return 0 };
    NEXT_RUN_MS.store(now_ms.saturating_add(delay.min(MAX_IDLE_MS)), Ordering::Relaxed);
    flush_with(&slot)
}

/// When the stack next wants to run (ns since boot): its nearest timer,
/// at most 10 ms after its last run.
pub fn next_run_ns() -> u64 {
    NEXT_RUN_MS.load(Ordering::Relaxed).saturating_mul(1_000_000)
}

/// Sends every frame the stack has ready.
fn flush_with(slot: &StackSlot) -> usize {
    let mut buf = alloc::vec![0u8; tessera_cell_api::net::MAX_FRAME];
    let mut sent = 0;
    // Bounded: a stack that makes frames forever cannot hold the caller.
    for _ in 0..1024 {
        let got = slot.call(false, |cell| cell.call(&mut buf[..], |s, b| s.output(b)));
        let Ok(Some((index, len))) = got else { break };
        let Some(frame) = buf.get(..len) else { break };
        if index == LOOPBACK_INDEX {
            continue;
        }
        if let Some(interface) = crate::net::interface(index) {
            let _ = interface.transmit(frame);
        }
        sent += 1;
    }
    sent
}

/// After a call that may have made frames or changed a socket: sends
/// them and wakes the waiters.
fn flush() {
    if let Ok(slot) = slot() {
        flush_with(&slot);
    }
    changed();
}

/// Wakes everything that waits on sockets.
pub fn changed() {
    WAIT.wake_all();
    crate::syscall::poll::notify();
}

/// Parses a `sockaddr_in` (family checked by the caller's rules).
pub fn parse_addr(bytes: &[u8]) -> Result<(u16, Endpoint), Errno> {
    let b = bytes.get(..SOCKADDR_IN).ok_or(Errno::EINVAL)?;
    let family = u16::from_le_bytes([b[0], b[1]]);
    let port = u16::from_be_bytes([b[2], b[3]]);
    Ok((family, Endpoint { addr: [b[4], b[5], b[6], b[7]], port }))
}

/// The `sockaddr_in` bytes of `e`.
pub fn addr_bytes(e: &Endpoint) -> [u8; SOCKADDR_IN] {
    let mut b = [0u8; SOCKADDR_IN];
    b[0..2].copy_from_slice(&(AF_INET as u16).to_le_bytes());
    b[2..4].copy_from_slice(&e.port.to_be_bytes());
    b[4..8].copy_from_slice(&e.addr);
    b
}

/// Options the kernel keeps for `getsockopt` (the stack applies those
/// that change what it does).
#[derive(Clone, Copy, Default)]
pub struct Options {
    pub reuse_addr: bool,
    pub reuse_port: bool,
    pub keep_alive: bool,
    pub broadcast: bool,
    pub no_delay: bool,
    pub rcvbuf: u32,
    pub sndbuf: u32,
    /// `SO_RCVTIMEO`/`SO_SNDTIMEO` in ns (0: none).
    pub rcv_timeout: u64,
    pub snd_timeout: u64,
    pub ttl: u8,
    /// `SO_LINGER`: on, seconds.
    pub linger: (bool, u32),
}

/// An `AF_INET` socket.
pub struct InetSocket {
    kind: u32,
    protocol: Protocol,
    epoch: u32,
    handle: u64,
    nonblocking: NonBlocking,
    listening: AtomicBool,
    /// `connect` started (a non-blocking one returned EINPROGRESS).
    connecting: AtomicBool,
    shut_read: AtomicBool,
    shut_write: AtomicBool,
    pub options: SpinLock<Options>,
    ino: u64,
}

/// A new `AF_INET` socket.
pub fn socket(kind: u32, protocol: Protocol, nonblocking: bool) -> Result<Arc<InetSocket>, Errno> {
    let epoch = EPOCH.load(Ordering::Relaxed);
    let handle = call(protocol, |s, p| s.open(p))?.map_err(errno)?;
    let options = Options { rcvbuf: 131072, sndbuf: 16384, ttl: 64, ..Options::default() };
    Ok(InetSocket::new(kind, protocol, epoch, handle, nonblocking, options))
}

impl InetSocket {
    /// The file for the stack's socket `handle` of instance `epoch`.
    fn new(kind: u32, protocol: Protocol, epoch: u32, handle: u64, nonblocking: bool, options: Options) -> Arc<InetSocket> {
        Arc::new(InetSocket {
            kind,
            protocol,
            epoch,
            handle,
            nonblocking: NonBlocking::new(nonblocking),
            listening: AtomicBool::new(false),
            connecting: AtomicBool::new(false),
            shut_read: AtomicBool::new(false),
            shut_write: AtomicBool::new(false),
            options: SpinLock::new(options),
            ino: crate::epoll::anon_ino(),
        })
    }

    /// `SOCK_STREAM` or `SOCK_DGRAM`.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// The protocol number (`SO_PROTOCOL`).
    pub fn protocol(&self) -> u32 {
        match self.protocol {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Icmp | Protocol::RawIcmp => IPPROTO_ICMP,
        }
    }

    fn stale(&self) -> bool {
        self.epoch != EPOCH.load(Ordering::Relaxed)
    }

    /// The stack's status of this socket (ECONNRESET once its instance
    /// is gone).
    pub fn status(&self) -> Result<Status, Errno> {
        if self.stale() {
            return Err(Errno::ECONNRESET);
        }
        call(self.handle, |s, h| s.status(h))?.map_err(errno)
    }

    /// Waits until `attempt` gives something other than EAGAIN (non-
    /// blocking: returns EAGAIN; a signal: EINTR; `timeout_ns` passed:
    /// EAGAIN, as Linux's `SO_RCVTIMEO`).
    fn block<R>(&self, dontwait: bool, timeout_ns: u64, interrupted: &dyn Fn() -> bool, mut attempt: impl FnMut() -> Result<R, Errno>) -> Result<R, Errno> {
        let nonblocking = dontwait || self.nonblocking.get();
        let deadline = if timeout_ns == 0 { u64::MAX } else { framekernel::time::now_ns().saturating_add(timeout_ns) };
        let _alarm = if nonblocking { None } else { crate::syscall::proc::Alarm::new(deadline) };
        WAIT.wait_until(|| match attempt() {
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

    /// `bind`.
    pub fn bind(&self, local: Endpoint, may_bind_low: bool) -> Result<(), Errno> {
        if local.port != 0 && local.port < 1024 && !may_bind_low && !matches!(self.protocol, Protocol::Icmp | Protocol::RawIcmp) {
            return Err(Errno::EACCES);
        }
        if self.stale() {
            return Err(Errno::EINVAL);
        }
        call((self.handle, local), |s, (h, l)| s.bind(h, l))?.map_err(errno)?;
        Ok(())
    }

    /// `listen`.
    pub fn listen(&self, backlog: u32) -> Result<(), Errno> {
        if self.protocol != Protocol::Tcp {
            return Err(Errno::EOPNOTSUPP);
        }
        if self.stale() {
            return Err(Errno::EINVAL);
        }
        call((self.handle, backlog), |s, (h, b)| s.listen(h, b))?.map_err(errno)?;
        self.listening.store(true, Ordering::Relaxed);
        changed();
        Ok(())
    }

    /// `accept`: the connection's socket and its peer.
    pub fn accept(&self, nonblocking: bool, interrupted: &dyn Fn() -> bool) -> Result<(Arc<InetSocket>, Endpoint), Errno> {
        if self.protocol != Protocol::Tcp {
            return Err(Errno::EOPNOTSUPP);
        }
        if !self.listening.load(Ordering::Relaxed) {
            return Err(Errno::EINVAL);
        }
        let timeout = self.options.lock().rcv_timeout;
        let (handle, peer) = self.block(false, timeout, interrupted, || {
            if self.stale() {
                return Err(Errno::ECONNABORTED);
            }
            call(self.handle, |s, h| s.accept(h))?.map_err(errno)
        })?;
        let options = *self.options.lock();
        let socket = InetSocket::new(self.kind, self.protocol, self.epoch, handle, nonblocking, options);
        flush();
        Ok((socket, peer))
    }

    /// `connect`.
    pub fn connect(&self, mut remote: Endpoint, interrupted: &dyn Fn() -> bool) -> Result<(), Errno> {
        if remote.addr == [0; 4] && remote.port != 0 {
            remote.addr = [127, 0, 0, 1];
        }
        if self.stale() {
            return Err(Errno::ECONNRESET);
        }
        if self.protocol != Protocol::Tcp {
            call((self.handle, remote), |s, (h, r)| s.connect(h, r))?.map_err(errno)?;
            return Ok(());
        }
        if self.listening.load(Ordering::Relaxed) {
            return Err(Errno::EISCONN);
        }
        let status = self.status()?;
        match status.state {
            TcpState::Closed if !self.connecting.load(Ordering::Relaxed) => {
                call((self.handle, remote), |s, (h, r)| s.connect(h, r))?.map_err(|e| match e {
                    SockError::InvalidState => Errno::EISCONN,
                    e => errno(e),
                })?;
                self.connecting.store(true, Ordering::Relaxed);
                flush();
                if self.nonblocking.get() {
                    return Err(Errno::EINPROGRESS);
                }
            }
            TcpState::SynSent | TcpState::SynReceived => {
                if self.nonblocking.get() {
                    return Err(Errno::EALREADY);
                }
            }
            TcpState::Closed => {}
            _ => {
                // A non-blocking connect that has finished: 0 once (as
                // Linux), EISCONN after.
                if self.connecting.swap(false, Ordering::Relaxed) && status.error.is_none() {
                    return Ok(());
                }
                return Err(Errno::EISCONN);
            }
        }
        let timeout = self.options.lock().snd_timeout;
        let result = self.block(false, timeout, interrupted, || {
            let status = self.status()?;
            match status.state {
                TcpState::SynSent | TcpState::SynReceived => Err(Errno::EAGAIN),
                TcpState::Closed => Err(status.error.map(errno).unwrap_or(Errno::ECONNREFUSED)),
                _ => Ok(()),
            }
        });
        match result {
            Err(Errno::EAGAIN) => Err(Errno::EINPROGRESS),
            Err(e) if e != Errno::EINTR => {
                self.connecting.store(false, Ordering::Relaxed);
                Err(e)
            }
            // A blocking connect that finished reports itself: the next
            // connect is EISCONN (only a non-blocking one's completion is
            // reported by a later connect returning 0).
            Ok(()) => {
                self.connecting.store(false, Ordering::Relaxed);
                Ok(())
            }
            other => other,
        }
    }

    /// Sends `data` (to `to` for datagrams): the bytes taken.
    pub fn send(&self, data: &[u8], to: Option<Endpoint>, dontwait: bool, interrupted: &dyn Fn() -> bool) -> SysResult {
        if self.shut_write.load(Ordering::Relaxed) {
            return Err(Errno::EPIPE);
        }
        if self.protocol == Protocol::Tcp {
            if self.listening.load(Ordering::Relaxed) {
                return Err(Errno::ENOTCONN);
            }
            let timeout = self.options.lock().snd_timeout;
            let mut done = 0usize;
            // A blocking stream send takes everything (or stops at an error
            // or a signal after some bytes went).
            loop {
                let rest = data.get(done..).unwrap_or(&[]);
                let step = self.block(dontwait || done > 0 && self.nonblocking.get(), timeout, interrupted, || {
                    if self.stale() {
                        return Err(Errno::EPIPE);
                    }
                    let chunk = rest.get(..rest.len().min(65536)).unwrap_or(rest);
                    let r = call((self.handle, chunk), |s, (h, d)| s.send(h, d, None))?;
                    r.map_err(|e| match e {
                        SockError::NotConnected | SockError::Reset => Errno::EPIPE,
                        e => errno(e),
                    })
                });
                match step {
                    Ok(n) => {
                        done += n;
                        flush();
                        if done >= data.len() || dontwait || self.nonblocking.get() {
                            break;
                        }
                    }
                    Err(e) if done > 0 && matches!(e, Errno::EAGAIN | Errno::EINTR) => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(done as u64);
        }
        if self.stale() {
            return Err(Errno::ECONNRESET);
        }
        let timeout = self.options.lock().snd_timeout;
        let n = self.block(dontwait, timeout, interrupted, || {
            call((self.handle, data, to), |s, (h, d, t)| s.send(h, d, t))?.map_err(|e| match e {
                SockError::NotConnected => Errno::EDESTADDRREQ,
                e => errno(e),
            })
        })?;
        flush();
        Ok(n as u64)
    }

    /// Receives into `buf`: the bytes, the datagram's full length (for
    /// `MSG_TRUNC`; the bytes for streams) and the sender.
    pub fn recv(&self, buf: &mut [u8], peek: bool, dontwait: bool, waitall: bool, interrupted: &dyn Fn() -> bool) -> Result<(usize, usize, Endpoint), Errno> {
        if self.listening.load(Ordering::Relaxed) {
            return Err(Errno::ENOTCONN);
        }
        if self.shut_read.load(Ordering::Relaxed) && self.protocol == Protocol::Tcp {
            return Ok((0, 0, Endpoint::default()));
        }
        let timeout = self.options.lock().rcv_timeout;
        if self.protocol != Protocol::Tcp {
            let (n, from) = self.block(dontwait, timeout, interrupted, || {
                if self.stale() {
                    return Err(Errno::ECONNRESET);
                }
                let full = self.status()?.pending as usize;
                let (n, from) = call((self.handle, &mut buf[..], peek), |s, (h, b, p)| s.recv(h, b, p))?.map_err(errno)?;
                Ok(((n, full.max(n)), from))
            })?;
            return Ok((n.0, n.1, from));
        }
        let mut done = 0usize;
        let mut peer = Endpoint::default();
        loop {
            let rest = buf.get_mut(done..).unwrap_or(&mut []);
            let step = self.block(dontwait || done > 0 && !waitall, timeout, interrupted, || {
                if self.stale() {
                    return Err(Errno::ECONNRESET);
                }
                call((self.handle, &mut rest[..], peek), |s, (h, b, p)| s.recv(h, b, p))?.map_err(|e| match e {
                    SockError::NotConnected if self.connecting.load(Ordering::Relaxed) => Errno::EAGAIN,
                    e => errno(e),
                })
            });
            match step {
                Ok((0, _)) => break,
                Ok((n, from)) => {
                    done += n;
                    peer = from;
                    flush();
                    if !waitall || peek || done >= buf.len() {
                        break;
                    }
                }
                Err(e) if done > 0 && matches!(e, Errno::EAGAIN | Errno::EINTR) => break,
                Err(e) => return Err(e),
            }
        }
        Ok((done, done, peer))
    }

    /// `shutdown(how)`: 0 reading, 1 writing, 2 both.
    pub fn shutdown(&self, how: u64) -> Result<(), Errno> {
        let (read, write) = match how {
            0 => (true, false),
            1 => (false, true),
            2 => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        if self.stale() {
            return Err(Errno::ENOTCONN);
        }
        if self.listening.load(Ordering::Relaxed) {
            // Shut for reading, a listener stops listening; a blocked
            // accept then fails with EINVAL.
            if read {
                call((self.handle, true, write), |s, (h, r, w)| s.shutdown(h, r, w))?.map_err(errno)?;
                self.listening.store(false, Ordering::Relaxed);
                flush();
            }
            return Ok(());
        }
        // An unconnected datagram socket is shut all the same (a blocked
        // receive returns 0), but the call says ENOTCONN, as Linux.
        let unconnected = self.protocol != Protocol::Tcp && self.status().is_ok_and(|s| s.remote.addr == [0; 4]);
        call((self.handle, read, write), |s, (h, r, w)| s.shutdown(h, r, w))?.map_err(errno)?;
        if read {
            self.shut_read.store(true, Ordering::Relaxed);
        }
        if write {
            self.shut_write.store(true, Ordering::Relaxed);
        }
        flush();
        if unconnected { Err(Errno::ENOTCONN) } else { Ok(()) }
    }

    /// `getsockname`.
    pub fn local(&self) -> Endpoint {
        self.status().map(|s| s.local).unwrap_or_default()
    }

    /// `getpeername` (ENOTCONN when there is none).
    pub fn peer(&self) -> Result<Endpoint, Errno> {
        let status = self.status().map_err(|_| Errno::ENOTCONN)?;
        let connected = match self.protocol {
            Protocol::Tcp => !matches!(status.state, TcpState::Closed | TcpState::Listen | TcpState::SynSent | TcpState::SynReceived),
            _ => status.remote.addr != [0; 4],
        };
        if connected { Ok(status.remote) } else { Err(Errno::ENOTCONN) }
    }

    /// `SO_ERROR`: the pending error, cleared.
    pub fn take_error(&self) -> i32 {
        match self.status() {
            Ok(s) if self.connecting.load(Ordering::Relaxed) && s.state == TcpState::Closed => {
                // Reported once, as Linux clears sk_err when it is read.
                self.connecting.store(false, Ordering::Relaxed);
                s.error.map(|e| errno(e) as i32).unwrap_or(Errno::ECONNREFUSED as i32)
            }
            Ok(_) => 0,
            Err(e) if self.protocol == Protocol::Tcp && self.connecting.load(Ordering::Relaxed) => e as i32,
            Err(_) => 0,
        }
    }

    /// Applies an option the stack acts on.
    pub fn set_option(&self, option: SockOption) -> Result<(), Errno> {
        if self.stale() {
            return Ok(());
        }
        match call((self.handle, option), |s, (h, o)| s.set_option(h, o))? {
            Ok(()) | Err(SockError::Unsupported) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// Bytes waiting to be read (`FIONREAD`).
    pub fn pending(&self) -> u32 {
        self.status().map(|s| s.pending).unwrap_or(0)
    }
}

impl Drop for InetSocket {
    fn drop(&mut self) {
        if !self.stale() {
            let abort = { self.options.lock().linger == (true, 0) };
            let _ = call((self.handle, abort), |s, (h, a)| s.close(h, a));
            flush();
        }
    }
}

impl File for InetSocket {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        self.recv(buf, false, false, false, interrupted).map(|(n, _, _)| n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.send(buf, None, false, &|| false)
    }

    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        self.send(buf, None, false, interrupted)
    }

    fn stat(&self) -> FileStat {
        crate::files::socket_stat(self.ino)
    }

    fn poll(&self) -> u16 {
        let Ok(status) = self.status() else { return POLLIN | POLLOUT | POLLHUP | POLLERR };
        let mut events = 0;
        if status.readable || self.shut_read.load(Ordering::Relaxed) {
            events |= POLLIN;
        }
        if self.protocol == Protocol::Tcp {
            let idle = status.state == TcpState::Closed && !self.connecting.load(Ordering::Relaxed) && !self.listening.load(Ordering::Relaxed);
            if status.writable && !matches!(status.state, TcpState::SynSent | TcpState::SynReceived | TcpState::Listen) || idle {
                events |= POLLOUT;
            }
            if (status.read_closed && status.write_closed) || idle || status.error.is_some() {
                events |= POLLHUP;
            }
            if status.error.is_some() {
                events |= POLLERR;
            }
            if status.read_closed {
                events |= 0x2000; // POLLRDHUP
            }
        } else if status.writable {
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

    fn as_inet_socket(&self) -> Option<&InetSocket> {
        Some(self)
    }
}

/// An `AF_INET` raw socket (`SOCK_RAW`): not served by the stack yet. It
/// exists so that the interface ioctls programs make on one work (busybox
/// `udhcpc` and `ifconfig` open `SOCK_RAW, IPPROTO_RAW` for them); sending
/// and receiving give EOPNOTSUPP.
pub struct RawSocket {
    ino: u64,
    nonblocking: NonBlocking,
}

/// A new raw socket.
pub fn raw_socket(nonblocking: bool) -> Arc<RawSocket> {
    Arc::new(RawSocket { ino: crate::epoll::anon_ino(), nonblocking: NonBlocking::new(nonblocking) })
}

impl File for RawSocket {
    fn read(&self, _buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        Err(Errno::EOPNOTSUPP)
    }

    fn write(&self, _buf: &[u8]) -> SysResult {
        Err(Errno::EOPNOTSUPP)
    }

    fn stat(&self) -> FileStat {
        crate::files::socket_stat(self.ino)
    }

    fn poll(&self) -> u16 {
        POLLOUT
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }
}
