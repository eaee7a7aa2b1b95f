//! The TCP/IP protocol stack: IPv4, ARP, ICMP echo, UDP and TCP over the
//! kernel's Ethernet interfaces and the loopback interface `lo`.
//!
//! The kernel owns the configuration (interfaces, addresses, the default
//! gateway: it replays them into every new instance) and the socket
//! files; the stack owns the protocol state. Frames cross both ways as
//! byte slices: the network task hands each received frame to
//! [`NetStack::input`], runs [`NetStack::poll`] and sends what
//! [`NetStack::output`] gives it. Sockets are named by handles the stack
//! makes; each handle carries the epoch the kernel gave the instance in
//! [`NetStack::start`], so a handle of an instance that was replaced (a
//! swap or a restart after a fault, which lose the connections) names
//! nothing in its successor. No call is idempotent: the slot never retries.
use alloc::boxed::Box;

/// Interface index of `lo` (Linux numbers it 1, too).
pub const LOOPBACK_INDEX: u32 = 1;

/// An IPv4 address and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// The address (`[0; 4]`: any).
    pub addr: [u8; 4],
    /// The port (0: any, or one the stack picks).
    pub port: u16,
}
framekernel_boundary::cell_data!(struct Endpoint { addr, port });

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TCP stream.
    Tcp,
    /// UDP datagrams.
    Udp,
    /// ICMP echo (a ping socket): datagrams are ICMP messages; the
    /// identifier is the bound port.
    Icmp,
    /// Raw ICMP (`SOCK_RAW, IPPROTO_ICMP`): what is sent is an ICMP
    /// message, which the stack puts in an IPv4 header; what is received
    /// is every ICMP packet for this machine, IPv4 header included.
    RawIcmp,
}
framekernel_boundary::cell_data!(enum Protocol { Tcp, Udp, Icmp, RawIcmp });

/// Why a stack request failed (the kernel maps each to a Linux errno).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockError {
    /// Nothing to do now (no data, no room, no connection yet): EAGAIN.
    WouldBlock,
    /// The handle names no socket of this instance: EBADF (the kernel
    /// reports a connection of a replaced instance as reset).
    BadHandle,
    /// Not in a state that allows this (listen on a connected socket,
    /// connect twice): EINVAL or EISCONN as the call says.
    InvalidState,
    /// The local address is in use: EADDRINUSE.
    AddrInUse,
    /// The local address is not one of the interfaces': EADDRNOTAVAIL.
    AddrNotAvail,
    /// No route to the destination: ENETUNREACH.
    Unreachable,
    /// The peer refused: ECONNREFUSED.
    Refused,
    /// The peer reset the connection: ECONNRESET.
    Reset,
    /// The connection timed out: ETIMEDOUT.
    TimedOut,
    /// Not connected: ENOTCONN.
    NotConnected,
    /// The datagram does not fit: EMSGSIZE.
    TooLong,
    /// No memory or socket left in the stack: ENOBUFS.
    NoBuffers,
    /// The protocol does not do this: EOPNOTSUPP.
    Unsupported,
}
framekernel_boundary::cell_data!(enum SockError {
    WouldBlock, BadHandle, InvalidState, AddrInUse, AddrNotAvail, Unreachable, Refused, Reset, TimedOut,
    NotConnected, TooLong, NoBuffers, Unsupported,
});

/// Where a TCP connection is (RFC 793 states; `Closed` for other
/// protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}
framekernel_boundary::cell_data!(enum TcpState {
    Closed, Listen, SynSent, SynReceived, Established, FinWait1, FinWait2, CloseWait, Closing, LastAck, TimeWait,
});

/// What `poll`, `getsockname` and the blocking calls need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The TCP state.
    pub state: TcpState,
    /// `recv` (or `accept`) would not block: data, a datagram, a
    /// connection waiting, the end of the stream or an error.
    pub readable: bool,
    /// `send` would not block.
    pub writable: bool,
    /// The peer will send nothing more (FIN received, or reset).
    pub read_closed: bool,
    /// Nothing more can be sent.
    pub write_closed: bool,
    /// The error a failed connection left (taken by `SO_ERROR`).
    pub error: Option<SockError>,
    /// The local address and port.
    pub local: Endpoint,
    /// The peer (TCP) or the default destination (`[0; 4]`, port 0: none).
    pub remote: Endpoint,
    /// Bytes waiting to be read (TCP) or the size of the next datagram.
    pub pending: u32,
}
framekernel_boundary::cell_data!(struct Status {
    state, readable, writable, read_closed, write_closed, error, local, remote, pending,
});

/// Socket options the stack keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOption {
    /// `TCP_NODELAY`.
    NoDelay(bool),
    /// `SO_KEEPALIVE`: the interval in milliseconds (None: off).
    KeepAlive(Option<u64>),
    /// `IP_TTL` (hop limit of what is sent).
    Ttl(u8),
    /// `SO_REUSEADDR`: `bind` may take a port that a closed connection
    /// of a socket that had it too still holds (TIME-WAIT).
    ReuseAddr(bool),
}
framekernel_boundary::cell_data!(enum SockOption { NoDelay(on), KeepAlive(interval), Ttl(hops), ReuseAddr(on) });

/// A TCP/IP stack. A new instance has only `lo` (127.0.0.1/8) until the
/// kernel configures it.
pub trait NetStack: Send + Sync {
    /// Tells the instance its epoch (nonzero, different for every
    /// instance the kernel starts): every handle it returns carries it.
    fn start(&self, epoch: u32);
    /// Adds or changes the Ethernet interface `index` (MAC, MTU, up).
    fn set_interface(&self, index: u32, mac: [u8; 6], mtu: u32, up: bool) -> Result<(), SockError>;
    /// Sets the IPv4 address of interface `index` (prefix 0 and address
    /// `[0; 4]`: none).
    fn set_address(&self, index: u32, addr: [u8; 4], prefix: u8) -> Result<(), SockError>;
    /// Sets the default gateway (None: no default route).
    fn set_gateway(&self, gateway: Option<[u8; 4]>) -> Result<(), SockError>;
    /// Hands the stack a frame interface `index` received.
    fn input(&self, index: u32, frame: &[u8]);
    /// Runs the protocols at time `now_ms` (milliseconds since boot):
    /// processes what came in, sends what is due. Returns the
    /// milliseconds until the stack needs polling again (`u64::MAX`: not
    /// before the next frame or call).
    fn poll(&self, now_ms: u64) -> u64;
    /// Moves the next frame to send into `buf` (at least 1514 bytes):
    /// the interface index and its length, None when nothing is waiting.
    fn output(&self, buf: &mut [u8]) -> Option<(u32, usize)>;

    /// Opens a socket.
    fn open(&self, protocol: Protocol) -> Result<u64, SockError>;
    /// Binds to a local address (a port of 0: one the stack picks);
    /// returns the address bound.
    fn bind(&self, socket: u64, local: Endpoint) -> Result<Endpoint, SockError>;
    /// Starts accepting connections (TCP), queueing up to `backlog`.
    fn listen(&self, socket: u64, backlog: u32) -> Result<(), SockError>;
    /// Takes an established connection off a listening socket: its handle
    /// and its peer.
    fn accept(&self, socket: u64) -> Result<(u64, Endpoint), SockError>;
    /// TCP: starts connecting to `remote` (the kernel waits for the
    /// state to change). UDP and ICMP: sets the default destination.
    fn connect(&self, socket: u64, remote: Endpoint) -> Result<(), SockError>;
    /// Queues `data` (to `to`, or the default destination): the bytes
    /// taken.
    fn send(&self, socket: u64, data: &[u8], to: Option<Endpoint>) -> Result<usize, SockError>;
    /// Takes (or with `peek` copies) what arrived into `buf`: the bytes
    /// and who sent them. A datagram longer than `buf` is cut (its rest
    /// is lost, as Linux's MSG_TRUNC). 0 bytes from a stream: the peer
    /// finished sending.
    fn recv(&self, socket: u64, buf: &mut [u8], peek: bool) -> Result<(usize, Endpoint), SockError>;
    /// Stops sending (TCP FIN after what is queued) and/or receiving.
    fn shutdown(&self, socket: u64, read: bool, write: bool) -> Result<(), SockError>;
    /// The socket's state.
    fn status(&self, socket: u64) -> Result<Status, SockError>;
    /// Sets an option.
    fn set_option(&self, socket: u64, option: SockOption) -> Result<(), SockError>;
    /// Releases the handle: a TCP connection finishes sending and closes
    /// in the background (or is reset if `abort`).
    fn close(&self, socket: u64, abort: bool);
}

/// What a protocol stack cell exports.
pub type Export = Box<dyn NetStack>;
