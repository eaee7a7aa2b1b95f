//! The TCP/IP stack as a cell: smoltcp's IPv4, ARP, ICMP, UDP and TCP
//! behind the `netstack` interface.
//!
//! One smoltcp interface serves both `eth0` and `lo`: it holds the
//! loopback address 127.0.0.1/8 next to eth0's, and the [`Wire`] under it
//! turns around, instead of sending, every frame addressed to one of the
//! stack's own addresses (answering the ARP request for it itself). So a
//! socket listening on any address is reached over both, and no frame for
//! 127.0.0.0/8 ever leaves the machine.
//!
//! A listening TCP socket is a pool of smoltcp sockets (smoltcp turns a
//! listening socket into the connection): one always listens while fewer
//! than `backlog` connections wait for `accept`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec;
use alloc::vec::Vec;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{icmp, raw, tcp, udp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpEndpoint, IpListenEndpoint, IpProtocol, IpVersion, Ipv4Address};
use tessera_cell_api::netstack::{Endpoint, Export, LOOPBACK_INDEX, NetStack, Protocol, SockError, SockOption, Status, TcpState};
// The kernel's lock and clock; the host tests link no kernel and bring
// their own.
#[cfg(not(test))]
use framekernel::{sync::Mutex, time::now_ns};
#[cfg(test)]
use tests::{Mutex, now_ns};

#[cfg(test)]
mod tests;

tessera_cell_api::cell_entry!(netstack, || -> Export { Box::new(Stack { inner: Mutex::new(Inner::new()) }) });

/// Bytes of each TCP socket's receive and send buffers.
const TCP_BUFFER: usize = 32 * 1024;
/// smoltcp sockets of every kind and state (open, queued for accept,
/// closing): each TCP one holds 64 KiB, so this bounds the stack's
/// memory (64 MiB) whatever programs do.
const MAX_STACK_SOCKETS: usize = 1024;
/// Datagrams and bytes of each UDP or ICMP socket's queues.
const DGRAM_PACKETS: usize = 64;
const DGRAM_BYTES: usize = 64 * 1024;
/// The most an IPv4 packet carries (one frame: the stack does not
/// fragment, on lo either, where Linux's MTU is 64 KiB): larger
/// datagrams are refused (EMSGSIZE) rather than lost.
const MAX_IP_PAYLOAD: usize = tessera_cell_api::net::MAX_FRAME - 14 - 20;
/// Frames waiting to go out (more are dropped, as a full device queue).
const TX_QUEUE: usize = 512;
/// Frames waiting to be processed.
const RX_QUEUE: usize = 1024;
/// Sockets the stack keeps (handles and smoltcp sockets).
const MAX_SOCKETS: usize = 4096;
/// The ephemeral port range (Linux's `ip_local_port_range`).
const EPHEMERAL: core::ops::RangeInclusive<u16> = 32768..=60999;
/// The hardware address used until the kernel names eth0's.
const NO_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
fn loopback() -> IpCidr {
    IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8)
}
/// The faulty build panics on every `FAULT_EVERY`th frame it is given.
const FAULT_EVERY: u64 = 500;

struct Stack {
    inner: Mutex<Inner>,
}

/// The device under smoltcp: queues of frames in and out.
struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<(u32, Vec<u8>)>,
    /// eth0's index once the kernel named it, and whether it is up.
    eth: Option<(u32, bool)>,
    mac: [u8; 6],
    /// eth0's IPv4 address, if any.
    eth_addr: Option<[u8; 4]>,
}

impl Wire {
    fn own(&self, ip: [u8; 4]) -> bool {
        ip[0] == 127 || Some(ip) == self.eth_addr
    }

    /// Sends `frame`, or turns it around when it is for this machine.
    fn send(&mut self, frame: Vec<u8>) {
        let ethertype = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
        match ethertype {
            Some(0x0806) => {
                // An ARP request for one of our own addresses: answer it.
                let target = frame.get(38..42).and_then(|t| <[u8; 4]>::try_from(t).ok());
                let op = frame.get(20..22);
                if let (Some(target), Some([0, 1])) = (target, op)
                    && self.own(target)
                {
                    if let Some(reply) = arp_reply(&frame, self.mac) {
                        self.loop_back(reply);
                    }
                    return;
                }
            }
            Some(0x0800) => {
                if let Some(dst) = frame.get(30..34).and_then(|t| <[u8; 4]>::try_from(t).ok())
                    && self.own(dst)
                {
                    return self.loop_back(frame);
                }
            }
            _ => {}
        }
        if let Some((index, true)) = self.eth
            && self.tx.len() < TX_QUEUE
        {
            self.tx.push_back((index, frame));
        }
    }

    /// True for a frame eth0 must not deliver, as Linux drops such
    /// "martians": IPv4 from or to 127.0.0.0/8, from one of our own
    /// addresses, or from 0.0.0.0 unless to 255.255.255.255 (DHCP); ARP
    /// from one of our addresses or asking for 127.0.0.0/8; TCP to
    /// anything but eth0's address. smoltcp would let the network reach
    /// sockets bound to 127.0.0.1, answer ARP for it, take a neighbour
    /// entry for our own addresses from it (turned-around frames then
    /// carry that MAC and are dropped), answer TCP to a broadcast or
    /// multicast address from that address, and a listening socket that
    /// takes a SYN from 0.0.0.0 panics smoltcp 0.12 when it answers
    /// (`assert!(!ip_repr.dst_addr().is_unspecified())` in dispatch_ip).
    fn martian(&self, frame: &[u8]) -> bool {
        let addr = |at: usize| frame.get(at..at + 4).and_then(|a| <[u8; 4]>::try_from(a).ok());
        match frame.get(12..14) {
            Some([0x08, 0x06]) => addr(28).is_some_and(|a| self.own(a)) || addr(38).is_some_and(|a| a[0] == 127),
            Some([0x08, 0x00]) => {
                let (src, dst) = (addr(26), addr(30));
                src.is_some_and(|a| self.own(a))
                    || (src == Some([0; 4]) && dst != Some([255; 4]))
                    || dst.is_some_and(|a| a[0] == 127)
                    || (frame.get(23) == Some(&6) && dst != self.eth_addr)
            }
            _ => false,
        }
    }

    fn loop_back(&mut self, frame: Vec<u8>) {
        if self.rx.len() < RX_QUEUE {
            self.rx.push_back(frame);
        }
    }
}

/// The reply to ARP request `request` from the owner of `mac`.
fn arp_reply(request: &[u8], mac: [u8; 6]) -> Option<Vec<u8>> {
    let asker_mac = request.get(22..28)?;
    let asker_ip = request.get(28..32)?;
    let target_ip = request.get(38..42)?;
    let mut reply = Vec::with_capacity(42);
    reply.extend_from_slice(asker_mac);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    reply.extend_from_slice(&mac);
    reply.extend_from_slice(target_ip);
    reply.extend_from_slice(asker_mac);
    reply.extend_from_slice(asker_ip);
    Some(reply)
}

/// The ARP reply that tells the stack its own `addr` is at `mac`.
fn own_arp(addr: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut reply = Vec::with_capacity(42);
    for part in [&mac[..], &mac, &[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2], &mac, &addr, &mac, &addr] {
        reply.extend_from_slice(part);
    }
    reply
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Wire);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        self.0.send(frame);
        result
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((Rx(frame), Tx(self)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(self))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = tessera_cell_api::net::MAX_FRAME;
        caps
    }
}

/// What a handle names.
enum Kind {
    /// A TCP socket: one smoltcp socket.
    Tcp(SocketHandle),
    /// A listening TCP socket: a pool of smoltcp sockets, listening or
    /// connected and waiting for `accept` (at most `backlog`).
    Listener { pool: Vec<SocketHandle>, backlog: usize },
    Udp(SocketHandle),
    Icmp(SocketHandle),
    /// Raw ICMP: IPv4 packets of protocol ICMP.
    Raw(SocketHandle),
}

struct Sock {
    kind: Kind,
    /// The address `bind` gave (TCP binds in smoltcp only on listen or
    /// connect; UDP and ICMP bind at once).
    bound: Option<Endpoint>,
    /// The default destination (UDP, ICMP) or the peer (TCP).
    remote: Option<Endpoint>,
    /// The state seen after the last poll, to tell a reset from a close.
    last: tcp::State,
    /// The error a failed connection left.
    error: Option<SockError>,
    /// Shut down for reading.
    read_shut: bool,
    /// Hop limit of raw packets sent.
    ttl: u8,
    /// The connection was established at some time.
    connected: bool,
    /// `SO_REUSEADDR`.
    reuse: bool,
    /// `bind` named the port (else the stack chose it, and a listener
    /// that stops listening gives it back, as Linux).
    named_port: bool,
}

/// The TCP socket of a closed handle, finishing its connection.
struct Lingering {
    socket: SocketHandle,
    /// Its handle had `SO_REUSEADDR`: a socket that has it too may bind
    /// its port.
    reuse: bool,
}

struct Inner {
    epoch: u32,
    wire: Wire,
    iface: Interface,
    sockets: SocketSet<'static>,
    table: BTreeMap<u32, Sock>,
    next_handle: u32,
    next_port: u16,
    now: Instant,
    frames: u64,
    /// TCP sockets of closed handles, finishing their connections.
    lingering: Vec<Lingering>,
    /// Sees every ICMP message that arrives, for the errors that concern
    /// UDP sockets (smoltcp hands them to no socket).
    icmp_errors: SocketHandle,
}

fn endpoint(ep: IpEndpoint) -> Endpoint {
    let IpAddress::Ipv4(a) = ep.addr;
    Endpoint { addr: a.octets(), port: ep.port }
}

fn ip(addr: [u8; 4]) -> IpAddress {
    IpAddress::Ipv4(Ipv4Address::from(addr))
}

fn state(s: tcp::State) -> TcpState {
    match s {
        tcp::State::Closed => TcpState::Closed,
        tcp::State::Listen => TcpState::Listen,
        tcp::State::SynSent => TcpState::SynSent,
        tcp::State::SynReceived => TcpState::SynReceived,
        tcp::State::Established => TcpState::Established,
        tcp::State::FinWait1 => TcpState::FinWait1,
        tcp::State::FinWait2 => TcpState::FinWait2,
        tcp::State::CloseWait => TcpState::CloseWait,
        tcp::State::Closing => TcpState::Closing,
        tcp::State::LastAck => TcpState::LastAck,
        tcp::State::TimeWait => TcpState::TimeWait,
    }
}

fn new_tcp() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(vec![0; TCP_BUFFER]), tcp::SocketBuffer::new(vec![0; TCP_BUFFER]));
    // Linux gives up on an unanswered connection after about two minutes.
    socket.set_timeout(Some(Duration::from_secs(120)));
    socket.set_nagle_enabled(true);
    socket
}

fn established(s: tcp::State) -> bool {
    matches!(s, tcp::State::Established | tcp::State::CloseWait)
}

impl Inner {
    fn new() -> Inner {
        let mut wire = Wire { rx: VecDeque::new(), tx: VecDeque::new(), eth: None, mac: NO_MAC, eth_addr: None };
        let now = Instant::from_millis(0);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(NO_MAC)));
        config.random_seed = now_ns();
        let mut iface = Interface::new(config, &mut wire, now);
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(loopback());
        });
        let mut sockets = SocketSet::new(Vec::new());
        let buffer = || raw::PacketBuffer::new(vec![raw::PacketMetadata::EMPTY; 16], vec![0; 4096]);
        let icmp_errors = sockets.add(raw::Socket::new(IpVersion::Ipv4, IpProtocol::Icmp, buffer(), buffer()));
        Inner {
            epoch: 0,
            wire,
            iface,
            sockets,
            table: BTreeMap::new(),
            next_handle: 1,
            next_port: *EPHEMERAL.start() + (now_ns() % 16384) as u16,
            now,
            frames: 0,
            lingering: Vec::new(),
            icmp_errors,
        }
    }

    fn handle(&self, index: u32) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(index)
    }

    fn index(&self, handle: u64) -> Result<u32, SockError> {
        if (handle >> 32) as u32 != self.epoch || self.epoch == 0 {
            return Err(SockError::BadHandle);
        }
        Ok(handle as u32)
    }

    fn sock(&mut self, handle: u64) -> Result<&mut Sock, SockError> {
        let index = self.index(handle)?;
        self.table.get_mut(&index).ok_or(SockError::BadHandle)
    }

    /// True when another smoltcp socket would pass the cap.
    fn full(&self) -> bool {
        self.sockets.iter().count() >= MAX_STACK_SOCKETS
    }

    fn insert(&mut self, kind: Kind) -> Result<u64, SockError> {
        if self.table.len() >= MAX_SOCKETS {
            return Err(SockError::NoBuffers);
        }
        let mut index = self.next_handle;
        while index == 0 || self.table.contains_key(&index) {
            index = index.wrapping_add(1);
        }
        self.next_handle = index.wrapping_add(1);
        let sock =
            Sock { kind, bound: None, remote: None, last: tcp::State::Closed, error: None, read_shut: false, ttl: 64, connected: false, reuse: false, named_port: false };
        self.table.insert(index, sock);
        Ok(self.handle(index))
    }

    /// True when some socket of `protocol` has local port `port`, or (for
    /// TCP) a closed one still does, unless both it and the binding
    /// socket have `SO_REUSEADDR` (`reuse`).
    fn port_used(&self, tcp_kind: bool, port: u16, reuse: bool) -> bool {
        let lingering = tcp_kind
            && self.lingering.iter().any(|l| {
                let t = self.sockets.get::<tcp::Socket>(l.socket);
                !(reuse && l.reuse) && t.state() != tcp::State::Closed && t.local_endpoint().is_some_and(|e| e.port == port)
            });
        lingering
            || self.table.values().any(|s| {
            let same = matches!((&s.kind, tcp_kind), (Kind::Tcp(_) | Kind::Listener { .. }, true) | (Kind::Udp(_), false));
            let local = match &s.kind {
                Kind::Tcp(socket) => self.sockets.get::<tcp::Socket>(*socket).local_endpoint().map(|e| e.port),
                _ => None,
            };
            same && (s.bound.is_some_and(|b| b.port == port) || local == Some(port))
        })
    }

    fn ephemeral(&mut self, tcp_kind: bool) -> Result<u16, SockError> {
        let span = (*EPHEMERAL.end() - *EPHEMERAL.start()) as u32 + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= *EPHEMERAL.end() { *EPHEMERAL.start() } else { port + 1 };
            if !self.port_used(tcp_kind, port, false) {
                return Ok(port);
            }
        }
        Err(SockError::AddrInUse)
    }

    fn local_ok(&self, addr: [u8; 4]) -> bool {
        addr == [0; 4] || self.wire.own(addr)
    }

    /// Keeps a closed handle's TCP socket until its connection is over.
    fn lingering_push(&mut self, socket: SocketHandle, reuse: bool) {
        self.lingering.push(Lingering { socket, reuse });
    }

    /// Resets the connections of a listening pool that were not accepted
    /// (as Linux does when a listener closes or stops listening); each
    /// lingers until its reset went out.
    fn reset_pool(&mut self, pool: Vec<SocketHandle>, reuse: bool) {
        for h in pool {
            self.sockets.get_mut::<tcp::Socket>(h).abort();
            self.lingering_push(h, reuse);
        }
    }

    /// Hands the ICMP errors that arrived to the connected UDP sockets
    /// they concern, as Linux does: port unreachable is ECONNREFUSED
    /// (host and network unreachable: ENETUNREACH).
    fn icmp_errors(&mut self) {
        let mut packet = [0u8; 576];
        while let Ok(n) = self.sockets.get_mut::<raw::Socket>(self.icmp_errors).recv_slice(&mut packet) {
            let Some((error, local_port, remote)) = packet.get(..n).and_then(udp_error) else { continue };
            for sock in self.table.values_mut() {
                if matches!(sock.kind, Kind::Udp(_)) && sock.bound.is_some_and(|b| b.port == local_port) && sock.remote == Some(remote) {
                    sock.error = Some(error);
                }
            }
        }
    }

    fn run(&mut self) {
        // smoltcp sends one ARP request a second, for the first socket
        // that wants one: behind connections to hosts that never answer
        // (a SYN flood's), one to our own address waited for minutes. So
        // the entries for our own addresses are renewed every round.
        for addr in core::iter::once([127, 0, 0, 1]).chain(self.wire.eth_addr) {
            let mac = self.wire.mac;
            self.wire.loop_back(own_arp(addr, mac));
        }
        self.iface.poll(self.now, &mut self.wire, &mut self.sockets);
        // Turned-around frames are processed in the same round.
        for _ in 0..8 {
            if self.wire.rx.is_empty() {
                break;
            }
            self.iface.poll(self.now, &mut self.wire, &mut self.sockets);
        }
        self.icmp_errors();
        self.observe();
    }

    /// Notes what the last round did to each connection, and keeps one
    /// socket of every listening pool listening.
    fn observe(&mut self) {
        let sockets = &mut self.sockets;
        self.lingering.retain(|l| {
            let t = sockets.get_mut::<tcp::Socket>(l.socket);
            // A closed socket's close must end (its idle time was not
            // counted while it was open: see below).
            t.set_timeout(Some(Duration::from_secs(120)));
            let over = t.state() == tcp::State::Closed;
            if over {
                sockets.remove(l.socket);
            } else if t.recv_queue() > 0 {
                // Data for a socket nobody can read any more: reset the
                // connection, as Linux does (the RST goes out next round),
                // so that the sender learns of it (EPIPE).
                t.abort();
            }
            !over
        });
        let mut refill = Vec::new();
        for (&index, sock) in self.table.iter_mut() {
            if let Kind::Listener { pool, backlog } = &mut sock.kind {
                let listening = pool.iter().filter(|&&h| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen).count();
                // Connections that died before accept leave the pool.
                pool.retain(|&h| {
                    let gone = self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Closed;
                    if gone {
                        self.sockets.remove(h);
                    }
                    !gone
                });
                // A pool full of half-open connections (a SYN flood) would
                // leave the port deaf until they time out (2 minutes): the
                // oldest makes room for a listening socket.
                if listening == 0
                    && pool.len() > *backlog
                    && let Some(at) = pool.iter().position(|&h| self.sockets.get::<tcp::Socket>(h).state() == tcp::State::SynReceived)
                {
                    self.sockets.remove(pool.remove(at));
                }
                if listening == 0 && pool.len() <= *backlog {
                    refill.push(index);
                }
                continue;
            }
            let Kind::Tcp(socket) = sock.kind else { continue };
            let t = self.sockets.get_mut::<tcp::Socket>(socket);
            let now = t.state();
            // smoltcp's timeout counts from the last packet received even
            // when nothing waits for an answer: an idle connection would
            // be reset after two minutes. It applies only while something
            // does (smoltcp restarts the count when an idle socket sends).
            let waiting = !matches!(now, tcp::State::Established | tcp::State::CloseWait) || t.send_queue() > 0;
            t.set_timeout(waiting.then_some(Duration::from_secs(120)));
            if established(now) {
                sock.connected = true;
            }
            if now == tcp::State::Closed && sock.error.is_none() {
                match sock.last {
                    tcp::State::SynSent | tcp::State::SynReceived => sock.error = Some(SockError::Refused),
                    tcp::State::Established | tcp::State::CloseWait | tcp::State::FinWait1 | tcp::State::FinWait2 => {
                        sock.error = Some(SockError::Reset)
                    }
                    _ => {}
                }
            }
            sock.last = now;
        }
        for index in refill {
            if self.full() {
                break;
            }
            let Some(bound) = self.table.get(&index).and_then(|s| s.bound) else { continue };
            let mut socket = new_tcp();
            if socket.listen(listen_endpoint(bound)).is_ok() {
                let h = self.sockets.add(socket);
                if let Some(Sock { kind: Kind::Listener { pool, .. }, .. }) = self.table.get_mut(&index) {
                    pool.push(h);
                }
            }
        }
    }
}

/// The Internet checksum of `data` (0 when it carries a right one).
fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What an IPv4 packet carrying an ICMP "port unreachable" says about
/// the UDP datagram that caused it: the error, its source port and its
/// destination. None for anything else, or a damaged message.
fn udp_error(packet: &[u8]) -> Option<(SockError, u16, Endpoint)> {
    let ihl = usize::from(packet.first()? & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    let icmp = packet.get(ihl.max(20)..total.min(packet.len()))?;
    if icmp.len() < 8 + 20 + 8 || checksum(icmp) != 0 || icmp.first() != Some(&3) || icmp.get(1) != Some(&3) {
        return None;
    }
    let inner = icmp.get(8..)?;
    let inner_ihl = usize::from(inner.first()? & 0xf) * 4;
    if inner.first()? >> 4 != 4 || inner_ihl < 20 || inner.get(9) != Some(&17) {
        return None;
    }
    let dst: [u8; 4] = inner.get(16..20)?.try_into().ok()?;
    let udp = inner.get(inner_ihl..inner_ihl + 4)?;
    let src_port = u16::from_be_bytes([udp[0], udp[1]]);
    let dst_port = u16::from_be_bytes([udp[2], udp[3]]);
    Some((SockError::Refused, src_port, Endpoint { addr: dst, port: dst_port }))
}

fn listen_endpoint(e: Endpoint) -> IpListenEndpoint {
    IpListenEndpoint { addr: (e.addr != [0; 4]).then(|| ip(e.addr)), port: e.port }
}

fn sending(e: tcp::SendError) -> SockError {
    match e {
        tcp::SendError::InvalidState => SockError::NotConnected,
    }
}

impl NetStack for Stack {
    fn start(&self, epoch: u32) {
        self.inner.lock().epoch = epoch;
    }

    fn set_interface(&self, index: u32, mac: [u8; 6], _mtu: u32, up: bool) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        match s.wire.eth {
            Some((other, _)) if other != index => return Err(SockError::Unsupported),
            _ => {}
        }
        if index == LOOPBACK_INDEX || mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(SockError::InvalidState);
        }
        s.wire.eth = Some((index, up));
        s.wire.mac = mac;
        s.iface.set_hardware_addr(HardwareAddress::Ethernet(EthernetAddress(mac)));
        Ok(())
    }

    fn set_address(&self, index: u32, addr: [u8; 4], prefix: u8) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        if index == LOOPBACK_INDEX {
            return if addr == [127, 0, 0, 1] && prefix == 8 { Ok(()) } else { Err(SockError::Unsupported) };
        }
        if s.wire.eth.map(|(i, _)| i) != Some(index) {
            return Err(SockError::AddrNotAvail);
        }
        if prefix > 32 || addr[0] == 127 || (addr != [0; 4] && Ipv4Address::from(addr).is_multicast()) {
            return Err(SockError::InvalidState);
        }
        let cidr = (addr != [0; 4]).then(|| IpCidr::new(ip(addr), prefix));
        s.wire.eth_addr = cidr.map(|_| addr);
        s.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            // eth0's first: smoltcp sends ARP requests, and unbound
            // sockets' packets, from the first address, and 127.0.0.1
            // must never leave on eth0 (to lo, connect and send pick it).
            if let Some(cidr) = cidr {
                let _ = addrs.push(cidr);
            }
            let _ = addrs.push(loopback());
        });
        Ok(())
    }

    fn set_gateway(&self, gateway: Option<[u8; 4]>) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        match gateway {
            Some(gw) => {
                s.iface.routes_mut().add_default_ipv4_route(Ipv4Address::from(gw)).map_err(|_| SockError::NoBuffers)?;
            }
            None => {
                s.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        Ok(())
    }

    fn input(&self, index: u32, frame: &[u8]) {
        let mut s = self.inner.lock();
        s.frames += 1;
        if cfg!(feature = "faulty") && s.frames.is_multiple_of(FAULT_EVERY) {
            panic!("netstack-faulty: fault injected at frame {}", s.frames);
        }
        if s.wire.eth.is_some_and(|(i, up)| i == index && up) && s.wire.rx.len() < RX_QUEUE && !s.wire.martian(frame) {
            s.wire.rx.push_back(frame.to_vec());
        }
    }

    fn poll(&self, now_ms: u64) -> u64 {
        let mut s = self.inner.lock();
        s.now = Instant::from_millis(now_ms as i64);
        s.run();
        let now = s.now;
        let Inner { iface, sockets, .. } = &mut *s;
        match iface.poll_delay(now, sockets) {
            Some(d) => d.total_millis(),
            None => u64::MAX,
        }
    }

    fn output(&self, buf: &mut [u8]) -> Option<(u32, usize)> {
        let mut s = self.inner.lock();
        let (index, frame) = s.wire.tx.pop_front()?;
        let n = frame.len().min(buf.len());
        buf.get_mut(..n)?.copy_from_slice(frame.get(..n)?);
        Some((index, n))
    }

    fn open(&self, protocol: Protocol) -> Result<u64, SockError> {
        let mut s = self.inner.lock();
        if s.table.len() >= MAX_SOCKETS || s.full() {
            return Err(SockError::NoBuffers);
        }
        let kind = match protocol {
            Protocol::Tcp => Kind::Tcp(s.sockets.add(new_tcp())),
            Protocol::Udp => {
                let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; DGRAM_PACKETS], vec![0; DGRAM_BYTES]);
                Kind::Udp(s.sockets.add(udp::Socket::new(buffer(), buffer())))
            }
            Protocol::Icmp => {
                let buffer = || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; DGRAM_PACKETS], vec![0; DGRAM_BYTES]);
                Kind::Icmp(s.sockets.add(icmp::Socket::new(buffer(), buffer())))
            }
            Protocol::RawIcmp => {
                let buffer = || raw::PacketBuffer::new(vec![raw::PacketMetadata::EMPTY; DGRAM_PACKETS], vec![0; DGRAM_BYTES]);
                Kind::Raw(s.sockets.add(raw::Socket::new(IpVersion::Ipv4, IpProtocol::Icmp, buffer(), buffer())))
            }
        };
        s.insert(kind)
    }

    fn bind(&self, handle: u64, local: Endpoint) -> Result<Endpoint, SockError> {
        let mut s = self.inner.lock();
        if !s.local_ok(local.addr) {
            return Err(SockError::AddrNotAvail);
        }
        let tcp_kind = match s.sock(handle)?.kind {
            Kind::Tcp(_) | Kind::Listener { .. } => true,
            Kind::Udp(_) | Kind::Icmp(_) | Kind::Raw(_) => false,
        };
        let sock = s.sock(handle)?;
        if sock.bound.is_some() || sock.connected {
            return Err(SockError::InvalidState);
        }
        let is_icmp = matches!(sock.kind, Kind::Icmp(_) | Kind::Raw(_));
        let reuse = sock.reuse;
        let port = if local.port != 0 {
            if !is_icmp && s.port_used(tcp_kind, local.port, reuse) {
                return Err(SockError::AddrInUse);
            }
            local.port
        } else {
            s.ephemeral(tcp_kind)?
        };
        let bound = Endpoint { addr: local.addr, port };
        let Inner { table, sockets, epoch, .. } = &mut *s;
        let index = if (handle >> 32) as u32 == *epoch { handle as u32 } else { return Err(SockError::BadHandle) };
        let sock = table.get_mut(&index).ok_or(SockError::BadHandle)?;
        match sock.kind {
            Kind::Tcp(_) | Kind::Listener { .. } => {}
            Kind::Udp(h) => sockets.get_mut::<udp::Socket>(h).bind(listen_endpoint(bound)).map_err(|_| SockError::InvalidState)?,
            Kind::Icmp(h) => sockets.get_mut::<icmp::Socket>(h).bind(icmp::Endpoint::Ident(port)).map_err(|_| SockError::InvalidState)?,
            Kind::Raw(_) => {}
        }
        sock.bound = Some(bound);
        sock.named_port = local.port != 0;
        Ok(bound)
    }

    fn listen(&self, handle: u64, backlog: u32) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        let backlog = (backlog as usize).clamp(1, 128);
        if !matches!(s.sock(handle)?.kind, Kind::Tcp(_) | Kind::Listener { .. }) {
            return Err(SockError::Unsupported);
        }
        if s.sock(handle)?.bound.is_none() {
            let port = s.ephemeral(true)?;
            s.sock(handle)?.bound = Some(Endpoint { addr: [0; 4], port });
        }
        let Inner { table, sockets, epoch, .. } = &mut *s;
        let index = if (handle >> 32) as u32 == *epoch { handle as u32 } else { return Err(SockError::BadHandle) };
        let sock = table.get_mut(&index).ok_or(SockError::BadHandle)?;
        let bound = sock.bound.ok_or(SockError::InvalidState)?;
        let socket = match &mut sock.kind {
            Kind::Listener { backlog: b, .. } => {
                *b = backlog;
                return Ok(());
            }
            Kind::Tcp(socket) => *socket,
            _ => return Err(SockError::Unsupported),
        };
        let first = sockets.get_mut::<tcp::Socket>(socket);
        if first.state() != tcp::State::Closed || sock.connected {
            return Err(SockError::InvalidState);
        }
        first.listen(listen_endpoint(bound)).map_err(|_| SockError::InvalidState)?;
        sock.kind = Kind::Listener { pool: vec![socket], backlog };
        Ok(())
    }

    fn accept(&self, handle: u64) -> Result<(u64, Endpoint), SockError> {
        let mut s = self.inner.lock();
        let index = s.index(handle)?;
        let Inner { table, sockets, .. } = &mut *s;
        let sock = table.get_mut(&index).ok_or(SockError::BadHandle)?;
        let Kind::Listener { pool, .. } = &mut sock.kind else { return Err(SockError::InvalidState) };
        let at = pool.iter().position(|&h| established(sockets.get::<tcp::Socket>(h).state())).ok_or(SockError::WouldBlock)?;
        let conn = pool.remove(at);
        let socket = sockets.get::<tcp::Socket>(conn);
        let remote = socket.remote_endpoint().map(endpoint).unwrap_or_default();
        let local = socket.local_endpoint().map(endpoint);
        let new = match s.insert(Kind::Tcp(conn)) {
            Ok(new) => new,
            Err(e) => {
                if let Some(Sock { kind: Kind::Listener { pool, .. }, .. }) = s.table.get_mut(&index) {
                    pool.push(conn);
                }
                return Err(e);
            }
        };
        let reuse = s.table.get(&index).is_some_and(|l| l.reuse);
        let sock = s.sock(new)?;
        sock.reuse = reuse;
        sock.connected = true;
        sock.last = tcp::State::Established;
        sock.remote = Some(remote);
        sock.bound = local;
        s.observe();
        Ok((new, remote))
    }

    fn connect(&self, handle: u64, remote: Endpoint) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        let sock = s.sock(handle)?;
        match sock.kind {
            Kind::Listener { .. } => return Err(SockError::InvalidState),
            Kind::Tcp(_) => {}
            _ => {
                sock.remote = (remote.addr != [0; 4]).then_some(remote);
                return Ok(());
            }
        }
        if remote.addr == [0; 4] || remote.port == 0 {
            return Err(SockError::Refused);
        }
        let bound = sock.bound;
        let port = match bound {
            Some(b) => b.port,
            None => s.ephemeral(true)?,
        };
        // Unbound, a connection to lo comes from 127.0.0.1, as on Linux
        // (smoltcp would take its first address, eth0's).
        let source = bound.map(|b| b.addr).filter(|a| *a != [0; 4]).or((remote.addr[0] == 127).then_some([127, 0, 0, 1]));
        let local = IpListenEndpoint { addr: source.map(ip), port };
        let Inner { table, sockets, iface, epoch, .. } = &mut *s;
        let index = if (handle >> 32) as u32 == *epoch { handle as u32 } else { return Err(SockError::BadHandle) };
        let sock = table.get_mut(&index).ok_or(SockError::BadHandle)?;
        let Kind::Tcp(socket) = sock.kind else { return Err(SockError::Unsupported) };
        let tcp_socket = sockets.get_mut::<tcp::Socket>(socket);
        if tcp_socket.state() != tcp::State::Closed || sock.connected {
            return Err(SockError::InvalidState);
        }
        tcp_socket
            .connect(iface.context(), IpEndpoint::new(ip(remote.addr), remote.port), local)
            .map_err(|e| match e {
                tcp::ConnectError::InvalidState => SockError::InvalidState,
                tcp::ConnectError::Unaddressable => SockError::Unreachable,
            })?;
        sock.remote = Some(remote);
        sock.last = tcp::State::SynSent;
        sock.error = None;
        drop(s);
        // Send the SYN now rather than at the next tick.
        let mut s = self.inner.lock();
        s.run();
        Ok(())
    }

    fn send(&self, handle: u64, data: &[u8], to: Option<Endpoint>) -> Result<usize, SockError> {
        let mut s = self.inner.lock();
        // UDP and ping sockets bind a port of their own on first send.
        let sock = s.sock(handle)?;
        let needs_port = matches!(sock.kind, Kind::Udp(_) | Kind::Icmp(_)) && sock.bound.is_none();
        if needs_port {
            let port = s.ephemeral(false)?;
            drop(s);
            self.bind(handle, Endpoint { addr: [0; 4], port })?;
            s = self.inner.lock();
        }
        s.index(handle)?;
        let eth_addr = s.wire.eth_addr;
        let Inner { table, sockets, .. } = &mut *s;
        let sock_ttl = table.get(&(handle as u32)).map_or(64, |t| t.ttl);
        let sock = table.get_mut(&(handle as u32)).ok_or(SockError::BadHandle)?;
        let sent = match sock.kind {
            Kind::Listener { .. } => return Err(SockError::NotConnected),
            Kind::Tcp(socket) => {
                if let Some(e) = sock.error {
                    return Err(e);
                }
                let t = sockets.get_mut::<tcp::Socket>(socket);
                match t.state() {
                    tcp::State::SynSent | tcp::State::SynReceived => return Err(SockError::WouldBlock),
                    tcp::State::Established | tcp::State::CloseWait => {}
                    _ if sock.connected => return Err(SockError::NotConnected),
                    _ => return Err(SockError::NotConnected),
                }
                let n = t.send_slice(data).map_err(sending)?;
                if n == 0 && !data.is_empty() {
                    return Err(SockError::WouldBlock);
                }
                n
            }
            Kind::Udp(h) => {
                let dest = to.or(sock.remote).ok_or(SockError::NotConnected)?;
                if dest.port == 0 {
                    return Err(SockError::InvalidState);
                }
                let u = sockets.get_mut::<udp::Socket>(h);
                if data.len() > MAX_IP_PAYLOAD - 8 {
                    return Err(SockError::TooLong);
                }
                let mut meta = udp::UdpMetadata::from(IpEndpoint::new(ip(dest.addr), dest.port));
                // Unbound, a datagram to lo comes from 127.0.0.1 (as connect).
                if dest.addr[0] == 127 && sock.bound.is_none_or(|b| b.addr == [0; 4]) {
                    meta.local_address = Some(ip([127, 0, 0, 1]));
                }
                u.send_slice(data, meta).map_err(|e| match e {
                    udp::SendError::BufferFull => SockError::WouldBlock,
                    udp::SendError::Unaddressable => SockError::Unreachable,
                })?;
                data.len()
            }
            Kind::Raw(h) => {
                let mut dest = to.or(sock.remote).ok_or(SockError::NotConnected)?;
                if dest.addr == [0; 4] {
                    dest.addr = [127, 0, 0, 1];
                }
                if dest.addr == [255; 4] || (224..=239).contains(&dest.addr[0]) {
                    return Err(SockError::Unsupported);
                }
                let source = if dest.addr[0] == 127 { [127, 0, 0, 1] } else { eth_addr.ok_or(SockError::Unreachable)? };
                if data.len() > MAX_IP_PAYLOAD {
                    return Err(SockError::TooLong);
                }
                let total = (data.len() + 20) as u16;
                let mut packet = Vec::with_capacity(data.len() + 20);
                packet.extend_from_slice(&[0x45, 0]);
                packet.extend_from_slice(&total.to_be_bytes());
                packet.extend_from_slice(&[0, 0, 0x40, 0, sock_ttl, 1, 0, 0]);
                packet.extend_from_slice(&source);
                packet.extend_from_slice(&dest.addr);
                packet.extend_from_slice(data);
                sockets.get_mut::<raw::Socket>(h).send_slice(&packet).map_err(|_| SockError::WouldBlock)?;
                data.len()
            }
            Kind::Icmp(h) => {
                let dest = to.or(sock.remote).ok_or(SockError::NotConnected)?;
                // A ping socket sends echo requests only; the identifier
                // is its port and the checksum is the stack's, as Linux.
                if data.len() < 8 || data.first() != Some(&8) || data.get(1) != Some(&0) {
                    return Err(SockError::InvalidState);
                }
                if data.len() > MAX_IP_PAYLOAD {
                    return Err(SockError::TooLong);
                }
                let ident = sock.bound.map_or(0, |b| b.port).to_be_bytes();
                let mut message = data.to_vec();
                message.splice(2..6, [0, 0, ident[0], ident[1]]);
                let sum = checksum(&message).to_be_bytes();
                message.splice(2..4, sum);
                let i = sockets.get_mut::<icmp::Socket>(h);
                i.send_slice(&message, ip(dest.addr)).map_err(|e| match e {
                    icmp::SendError::BufferFull => SockError::WouldBlock,
                    icmp::SendError::Unaddressable => SockError::Unreachable,
                })?;
                data.len()
            }
        };
        // Send at once rather than at the next tick.
        s.run();
        Ok(sent)
    }

    fn recv(&self, handle: u64, buf: &mut [u8], peek: bool) -> Result<(usize, Endpoint), SockError> {
        let mut s = self.inner.lock();
        s.index(handle)?;
        let Inner { table, sockets, .. } = &mut *s;
        let sock = table.get_mut(&(handle as u32)).ok_or(SockError::BadHandle)?;
        let got = match sock.kind {
            Kind::Listener { .. } => return Err(SockError::NotConnected),
            Kind::Tcp(socket) => {
                let remote = sock.remote.unwrap_or_default();
                let t = sockets.get_mut::<tcp::Socket>(socket);
                if t.can_recv() && !sock.read_shut {
                    let n = if peek { t.peek_slice(buf) } else { t.recv_slice(buf) };
                    (n.map_err(|_| SockError::Reset)?, remote)
                } else if let Some(e) = sock.error.take() {
                    sock.read_shut = true;
                    return Err(e);
                } else if sock.read_shut || (sock.connected && !t.may_recv()) {
                    (0, remote)
                } else if matches!(t.state(), tcp::State::SynSent | tcp::State::SynReceived) || sock.connected {
                    return Err(SockError::WouldBlock);
                } else {
                    return Err(SockError::NotConnected);
                }
            }
            Kind::Udp(h) => {
                // An ICMP error for a datagram sent is reported once.
                if let Some(e) = sock.error.take() {
                    return Err(e);
                }
                let u = sockets.get_mut::<udp::Socket>(h);
                let remote = sock.remote;
                loop {
                    // Shut for reading, an empty queue is the end (0).
                    if !u.can_recv() && sock.read_shut {
                        break (0, Endpoint::default());
                    }
                    let (data, meta) = if peek {
                        let (d, m) = u.peek().map_err(|_| SockError::WouldBlock)?;
                        (d, *m)
                    } else {
                        u.recv().map_err(|_| SockError::WouldBlock)?
                    };
                    let from = endpoint(meta.endpoint);
                    // A connected socket takes datagrams of its peer only.
                    if remote.is_some_and(|r| r != from) {
                        if peek {
                            let _ = u.recv();
                        }
                        continue;
                    }
                    let n = data.len().min(buf.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    break (n, from);
                }
            }
            Kind::Raw(h) => {
                let r = sockets.get_mut::<raw::Socket>(h);
                let mut whole = vec![0u8; DGRAM_BYTES];
                let n = if peek { r.peek_slice(&mut whole) } else { r.recv_slice(&mut whole) }.map_err(|_| SockError::WouldBlock)?;
                let from = whole.get(12..16).and_then(|a| <[u8; 4]>::try_from(a).ok()).unwrap_or([0; 4]);
                let n = n.min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), whole.get(..n)) {
                    dst.copy_from_slice(src);
                }
                (n, Endpoint { addr: from, port: 0 })
            }
            Kind::Icmp(h) => {
                let i = sockets.get_mut::<icmp::Socket>(h);
                if peek {
                    return Err(SockError::Unsupported);
                }
                let mut whole = vec![0u8; DGRAM_BYTES];
                // Echo replies only: the socket also sees the requests it
                // sent to this machine.
                let (n, from) = loop {
                    let (n, from) = i.recv_slice(&mut whole).map_err(|_| SockError::WouldBlock)?;
                    if whole.first() == Some(&0) {
                        break (n, from);
                    }
                };
                let n = n.min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), whole.get(..n)) {
                    dst.copy_from_slice(src);
                }
                let IpAddress::Ipv4(a) = from;
                (n, Endpoint { addr: a.octets(), port: 0 })
            }
        };
        // A window update, if reading made room.
        s.run();
        Ok(got)
    }

    fn shutdown(&self, handle: u64, read: bool, write: bool) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        s.index(handle)?;
        let Inner { table, sockets, .. } = &mut *s;
        let sock = table.get_mut(&(handle as u32)).ok_or(SockError::BadHandle)?;
        let socket = match &mut sock.kind {
            Kind::Tcp(socket) => *socket,
            // A listener shut for reading stops listening, as on Linux:
            // the connections not accepted yet are reset, and a port the
            // stack chose is given back.
            Kind::Listener { pool, .. } => {
                if !read {
                    return Ok(());
                }
                let pool = core::mem::take(pool);
                let reuse = sock.reuse;
                sock.kind = Kind::Tcp(sockets.add(new_tcp()));
                if !sock.named_port {
                    sock.bound = None;
                }
                s.reset_pool(pool, reuse);
                s.run();
                return Ok(());
            }
            _ => {
                sock.read_shut |= read;
                return Ok(());
            }
        };
        if !sock.connected && sock.last != tcp::State::SynSent {
            return Err(SockError::NotConnected);
        }
        sock.read_shut |= read;
        if write {
            let t = sockets.get_mut::<tcp::Socket>(socket);
            t.close();
            // LAST-ACK or FIN-WAIT-1 from here: over lo the close can end
            // in this very run, and CLOSE-WAIT then CLOSED would read as a
            // reset.
            sock.last = t.state();
        }
        s.run();
        Ok(())
    }

    fn status(&self, handle: u64) -> Result<Status, SockError> {
        let mut s = self.inner.lock();
        s.index(handle)?;
        let Inner { table, sockets, .. } = &mut *s;
        let sock = table.get(&(handle as u32)).ok_or(SockError::BadHandle)?;
        let local = sock.bound.unwrap_or_default();
        let remote = sock.remote.unwrap_or_default();
        let mut status = Status {
            state: TcpState::Closed,
            readable: false,
            writable: false,
            read_closed: sock.read_shut,
            write_closed: false,
            error: sock.error,
            local,
            remote,
            pending: 0,
        };
        match &sock.kind {
            Kind::Listener { pool, .. } => {
                status.state = TcpState::Listen;
                status.readable = pool.iter().any(|&h| established(sockets.get::<tcp::Socket>(h).state()));
            }
            Kind::Tcp(socket) => {
                let t = sockets.get::<tcp::Socket>(*socket);
                status.state = state(t.state());
                if let Some(l) = t.local_endpoint() {
                    status.local = endpoint(l);
                }
                status.pending = t.recv_queue() as u32;
                let eof = sock.connected && !t.may_recv();
                status.read_closed |= eof || sock.error.is_some();
                status.readable = t.can_recv() || status.read_closed;
                status.write_closed = sock.connected && !t.may_send() || sock.error.is_some();
                status.writable = (t.can_send() && t.may_send()) || status.write_closed;
            }
            Kind::Udp(h) => {
                let u = sockets.get::<udp::Socket>(*h);
                status.readable = u.can_recv() || sock.read_shut || sock.error.is_some();
                status.writable = u.can_send();
                status.pending = u.recv_queue() as u32;
            }
            Kind::Icmp(h) => {
                let i = sockets.get::<icmp::Socket>(*h);
                status.readable = i.can_recv() || sock.read_shut;
                status.writable = i.can_send();
                status.pending = i.recv_queue() as u32;
            }
            Kind::Raw(h) => {
                let r = sockets.get::<raw::Socket>(*h);
                status.readable = r.can_recv() || sock.read_shut;
                status.writable = r.can_send();
                status.pending = r.recv_queue() as u32;
            }
        }
        Ok(status)
    }

    fn set_option(&self, handle: u64, option: SockOption) -> Result<(), SockError> {
        let mut s = self.inner.lock();
        s.index(handle)?;
        let Inner { table, sockets, .. } = &mut *s;
        let sock = table.get_mut(&(handle as u32)).ok_or(SockError::BadHandle)?;
        if let SockOption::ReuseAddr(on) = option {
            sock.reuse = on;
            return Ok(());
        }
        if let (Kind::Raw(_), SockOption::Ttl(hops)) = (&sock.kind, option) {
            sock.ttl = hops;
            return Ok(());
        }
        match (&sock.kind, option) {
            (Kind::Tcp(socket), SockOption::NoDelay(on)) => sockets.get_mut::<tcp::Socket>(*socket).set_nagle_enabled(!on),
            (Kind::Tcp(socket), SockOption::KeepAlive(ms)) => {
                sockets.get_mut::<tcp::Socket>(*socket).set_keep_alive(ms.map(Duration::from_millis))
            }
            (Kind::Tcp(socket), SockOption::Ttl(hops)) => sockets.get_mut::<tcp::Socket>(*socket).set_hop_limit(Some(hops)),
            (Kind::Udp(h), SockOption::Ttl(hops)) => sockets.get_mut::<udp::Socket>(*h).set_hop_limit(Some(hops)),
            (Kind::Icmp(h), SockOption::Ttl(hops)) => sockets.get_mut::<icmp::Socket>(*h).set_hop_limit(Some(hops)),
            _ => return Err(SockError::Unsupported),
        }
        Ok(())
    }

    fn close(&self, handle: u64, abort: bool) {
        let mut s = self.inner.lock();
        let Ok(index) = s.index(handle) else { return };
        let Some(sock) = s.table.remove(&index) else { return };
        match sock.kind {
            Kind::Listener { pool, .. } => s.reset_pool(pool, sock.reuse),
            Kind::Tcp(socket) => {
                let t = s.sockets.get_mut::<tcp::Socket>(socket);
                // Unread data makes the close a reset, as on Linux.
                if abort || t.recv_queue() > 0 || t.state() == tcp::State::Closed || t.state() == tcp::State::Listen {
                    t.abort();
                } else {
                    t.close();
                }
                // It lingers, finishing in the background, until a sweep
                // finds it closed.
                s.lingering_push(socket, sock.reuse);
            }
            Kind::Udp(h) | Kind::Icmp(h) | Kind::Raw(h) => {
                s.sockets.remove(h);
            }
        }
        s.run();
    }
}
