//! Host tests: the stack driven as the kernel's network task and system
//! calls drive it (`input`, `poll` on a fake clock, `output` drained until
//! empty, the socket calls), with a deterministic fuzzer on eth0's packet
//! path. TESSERA_FUZZ_SEED and TESSERA_FUZZ_ITERS (rounds) change the run.

use crate::{Inner, Kind, MAX_SOCKETS, MAX_STACK_SOCKETS, RX_QUEUE, Stack, TX_QUEUE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tessera_cell_api::net::{MAX_FRAME, MIN_FRAME};
use tessera_cell_api::netstack::{Endpoint, LOOPBACK_INDEX, NetStack, Protocol, SockError, SockOption, TcpState};

/// The kernel's lock, on the host: the kernel's is a spin lock with the
/// same `lock`. Poisoning is ignored: a test that panicked holding it has
/// failed already.
pub(crate) struct Mutex<T>(StdMutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(StdMutex::new(value))
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The kernel's clock, which seeds smoltcp and the first ephemeral port:
/// always boot time here, so that a run can be repeated exactly.
pub(crate) fn now_ns() -> u64 {
    0
}

const EPOCH: u32 = 7;
const ETH0: u32 = 2;
const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Every host on eth0's side answers with this hardware address.
const PEER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ADDR: [u8; 4] = [10, 0, 2, 15];
/// The gateway (QEMU's user network).
const PEER: [u8; 4] = [10, 0, 2, 2];
const LOCALHOST: [u8; 4] = [127, 0, 0, 1];
/// Where the fuzzed application listens (TCP, backlog 8) and receives (UDP).
const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5000;
const BACKLOG: u32 = 8;

const ARP: u16 = 0x0806;
const IPV4: u16 = 0x0800;
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// A new stack configured as the kernel configures it at boot.
fn configured() -> Stack {
    let stack = Stack { inner: Mutex::new(Inner::new()) };
    stack.start(EPOCH);
    stack.set_interface(ETH0, MAC, 1500, true).expect("eth0");
    stack.set_address(ETH0, ADDR, 24).expect("eth0's address");
    stack.set_gateway(Some(PEER)).expect("gateway");
    stack
}

/// xorshift64: small, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Any seed, 0 included, gives a nonzero state.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// 0..n (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value}: not a number")))
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Internet checksum of the concatenated `parts` (only the last may
/// have an odd length): 0 over data that holds a right checksum.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: [u8; 4], dst: [u8; 4], protocol: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0, protocol]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Writes `bytes` at `at` if the frame is that long (mutations of
/// truncated frames write nothing).
fn put(frame: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = frame.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_frame(op: u16, sender: ([u8; 6], [u8; 4]), target: ([u8; 6], [u8; 4]), dst: [u8; 6]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sender.0);
    a.extend_from_slice(&sender.1);
    a.extend_from_slice(&target.0);
    a.extend_from_slice(&target.1);
    ethernet(dst, sender.0, ARP, &a)
}

/// An IPv4 packet (`options` padded to a multiple of 4 bytes, at most 40).
fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let header = 20 + options.len();
    let mut p = vec![0x40 | (header / 4) as u8, 0];
    p.extend_from_slice(&((header + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(options);
    let sum = checksum(&[&p]);
    put(&mut p, 10, &sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A TCP segment from `src` to `dst` (`options` padded as IPv4's).
struct Segment<'a> {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &'a [u8],
    payload: &'a [u8],
}

impl Segment<'_> {
    fn bytes(&self) -> Vec<u8> {
        let header = 20 + self.options.len();
        let mut s = Vec::with_capacity(header + self.payload.len());
        s.extend_from_slice(&self.src.1.to_be_bytes());
        s.extend_from_slice(&self.dst.1.to_be_bytes());
        s.extend_from_slice(&self.seq.to_be_bytes());
        s.extend_from_slice(&self.ack.to_be_bytes());
        s.extend_from_slice(&[((header / 4) as u8) << 4, self.flags]);
        s.extend_from_slice(&self.window.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 0]);
        s.extend_from_slice(self.options);
        s.extend_from_slice(self.payload);
        let sum = checksum(&[&pseudo_header(self.src.0, self.dst.0, TCP, s.len()), &s]);
        put(&mut s, 16, &sum.to_be_bytes());
        s
    }

    fn frame(&self) -> Vec<u8> {
        ethernet(MAC, PEER_MAC, IPV4, &ipv4(self.src.0, self.dst.0, TCP, &[], &self.bytes()))
    }
}

/// A peer's SYN to our `port` from `from`.
fn syn(from: ([u8; 4], u16), port: u16, isn: u32) -> Vec<u8> {
    Segment { src: from, dst: (ADDR, port), seq: isn, ack: 0, flags: SYN, window: 65535, options: &[], payload: &[] }.frame()
}

fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.1.to_be_bytes());
    u.extend_from_slice(&dst.1.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let sum = checksum(&[&pseudo_header(src.0, dst.0, UDP, u.len()), &u]);
    put(&mut u, 6, &sum.to_be_bytes());
    u
}

/// An ICMP message: type, code, the 4 bytes after the checksum, data.
fn icmp(kind: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(data);
    let sum = checksum(&[&m]);
    put(&mut m, 2, &sum.to_be_bytes());
    m
}

fn echo_request(src: [u8; 4], dst: [u8; 4], id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let [i0, i1] = id.to_be_bytes();
    let [s0, s1] = seq.to_be_bytes();
    ethernet(MAC, PEER_MAC, IPV4, &ipv4(src, dst, ICMP, &[], &icmp(8, 0, [i0, i1, s0, s1], data)))
}

/// IPv4 header length a (possibly mutated) frame claims.
fn header_len(frame: &[u8]) -> usize {
    frame.get(14).map_or(20, |b| usize::from(b & 15) * 4)
}

/// Recomputes the IPv4 header checksum and the TCP, UDP or ICMP checksum
/// of a mutated frame as far as its fields and length allow, so that the
/// mutation gets past the checksum checks to the code behind them.
fn fix_checksums(frame: &mut [u8]) {
    let ihl = header_len(frame);
    if ihl < 20 || frame.len() < 14 + ihl {
        return;
    }
    put(frame, 24, &[0, 0]);
    let sum = checksum(&[&frame[14..14 + ihl]]);
    put(frame, 24, &sum.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let end = (14 + total).min(frame.len());
    let (protocol, src, dst) = (frame[23], [frame[26], frame[27], frame[28], frame[29]], [frame[30], frame[31], frame[32], frame[33]]);
    let at = match protocol {
        TCP => 16,
        UDP => 6,
        ICMP => 2,
        _ => return,
    };
    let Some(segment) = frame.get_mut(14 + ihl..end) else { return };
    if segment.len() < at + 2 {
        return;
    }
    put(segment, at, &[0, 0]);
    let sum = match protocol {
        ICMP => checksum(&[segment]),
        _ => checksum(&[&pseudo_header(src, dst, protocol, segment.len()), segment]),
    };
    put(segment, at, &sum.to_be_bytes());
}

/// What a frame the stack sent is, as far as the tests care.
#[derive(Debug)]
enum Sent {
    ArpRequest { target: [u8; 4] },
    ArpReply { to: ([u8; 6], [u8; 4]) },
    Tcp(Seen),
    EchoReply { mac: [u8; 6], to: [u8; 4], rest: [u8; 4], data: Vec<u8> },
    Other,
}

/// A TCP segment the stack sent: the fuzzing peer follows the connection.
#[derive(Debug, Clone, Copy)]
struct Seen {
    stack: ([u8; 4], u16),
    peer: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    len: u32,
}

/// Checks that a frame `output` gave is one eth0 may send: 14..=1514
/// bytes, from eth0's hardware and IPv4 address (nothing from or to
/// 127.0.0.0/8 leaves), headers and checksums right.
fn check_frame(index: u32, frame: &[u8]) -> Sent {
    let show = || hex(frame);
    assert_eq!(index, ETH0, "a frame for interface {index}: {}", show());
    assert!((MIN_FRAME..=MAX_FRAME).contains(&frame.len()), "a frame of {} bytes: {}", frame.len(), show());
    assert_eq!(frame[6..12], MAC, "source hardware address: {}", show());
    let ip4 = |at: usize| -> [u8; 4] { [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]] };
    match u16::from_be_bytes([frame[12], frame[13]]) {
        ARP => {
            assert!(frame.len() >= 42, "short ARP: {}", show());
            assert_eq!(frame[14..20], [0, 1, 0x08, 0x00, 6, 4], "ARP header: {}", show());
            assert_eq!(frame[22..28], MAC, "ARP sender hardware address: {}", show());
            assert_eq!(ip4(28), ADDR, "ARP sender address: {}", show());
            match u16::from_be_bytes([frame[20], frame[21]]) {
                1 => Sent::ArpRequest { target: ip4(38) },
                2 => Sent::ArpReply { to: ([frame[32], frame[33], frame[34], frame[35], frame[36], frame[37]], ip4(38)) },
                op => panic!("ARP operation {op}: {}", show()),
            }
        }
        IPV4 => {
            assert!(frame.len() >= 34, "short IPv4: {}", show());
            assert_eq!(frame[14], 0x45, "IPv4 version and header length: {}", show());
            let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            assert!((20..=frame.len() - 14).contains(&total), "IPv4 total length {total}: {}", show());
            assert_eq!(checksum(&[&frame[14..34]]), 0, "IPv4 header checksum: {}", show());
            assert_eq!(u16::from_be_bytes([frame[20], frame[21]]) & 0x3fff, 0, "a fragment: {}", show());
            let (src, dst) = (ip4(26), ip4(30));
            assert_eq!(src, ADDR, "IPv4 source: {}", show());
            assert!(dst[0] != 127 && dst != [0; 4] && dst != ADDR, "IPv4 destination: {}", show());
            let l4 = &frame[34..14 + total];
            let pseudo = pseudo_header(src, dst, frame[23], l4.len());
            match frame[23] {
                TCP => {
                    let offset = l4.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
                    assert!((20..=l4.len()).contains(&offset), "TCP header: {}", show());
                    assert_eq!(checksum(&[&pseudo, l4]), 0, "TCP checksum: {}", show());
                    let word = |at: usize| u32::from_be_bytes([l4[at], l4[at + 1], l4[at + 2], l4[at + 3]]);
                    Sent::Tcp(Seen {
                        stack: (src, u16::from_be_bytes([l4[0], l4[1]])),
                        peer: (dst, u16::from_be_bytes([l4[2], l4[3]])),
                        seq: word(4),
                        ack: word(8),
                        flags: l4[13],
                        len: (l4.len() - offset) as u32,
                    })
                }
                UDP => {
                    assert!(l4.len() >= 8, "UDP header: {}", show());
                    assert_eq!(usize::from(u16::from_be_bytes([l4[4], l4[5]])), l4.len(), "UDP length: {}", show());
                    assert!(l4[6..8] == [0, 0] || checksum(&[&pseudo, l4]) == 0, "UDP checksum: {}", show());
                    Sent::Other
                }
                ICMP => {
                    assert!(l4.len() >= 8, "ICMP header: {}", show());
                    assert_eq!(checksum(&[l4]), 0, "ICMP checksum: {}", show());
                    if l4[0] == 0 {
                        let mac = [frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]];
                        Sent::EchoReply { mac, to: dst, rest: [l4[4], l4[5], l4[6], l4[7]], data: l4[8..].to_vec() }
                    } else {
                        Sent::Other
                    }
                }
                protocol => panic!("IPv4 protocol {protocol}: {}", show()),
            }
        }
        ethertype => panic!("ethertype {ethertype:#06x}: {}", show()),
    }
}

/// Everything `output` has, checked, as the kernel's network task takes it.
fn drain(stack: &Stack) -> Vec<Sent> {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut sent = Vec::new();
    while let Some((index, len)) = stack.output(&mut buf) {
        sent.push(check_frame(index, buf.get(..len).expect("a length within the buffer")));
        // Nothing makes frames while they are taken: the queue's bound holds.
        assert!(sent.len() <= TX_QUEUE, "more frames than the send queue holds");
    }
    sent
}

/// The stack stays within its bounds whatever came in.
fn check_limits(stack: &Stack) {
    let s = stack.inner.lock();
    let smoltcp = s.sockets.iter().count();
    assert!(smoltcp <= MAX_STACK_SOCKETS, "{smoltcp} smoltcp sockets");
    assert!(s.table.len() <= MAX_SOCKETS, "{} handles", s.table.len());
    assert!(s.wire.rx.len() <= RX_QUEUE && s.wire.tx.len() <= TX_QUEUE, "queues: {} in, {} out", s.wire.rx.len(), s.wire.tx.len());
    for sock in s.table.values() {
        if let Kind::Listener { pool, backlog } = &sock.kind {
            assert!(pool.len() <= backlog + 1, "a listening pool of {} for backlog {backlog}", pool.len());
        }
    }
}

/// smoltcp sockets the stack holds for sockets (open, waiting for
/// accept, closing): all but its own ICMP listener.
fn stack_sockets(stack: &Stack) -> usize {
    let s = stack.inner.lock();
    s.sockets.iter().filter(|(h, _)| *h != s.icmp_errors).count()
}

/// Ten milliseconds on (smoltcp's delayed ACK), runs the stack and takes
/// what it sent.
fn pump(stack: &Stack, now: &mut u64) -> Vec<Sent> {
    *now += 10;
    stack.poll(*now);
    drain(stack)
}

/// Receives what a stream has now into `got`; false at its end.
fn recv_into(stack: &Stack, socket: u64, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 1500];
    loop {
        match stack.recv(socket, &mut buf, false) {
            Ok((0, _)) => return false,
            Ok((n, _)) => got.extend_from_slice(&buf[..n]),
            Err(SockError::WouldBlock) => return true,
            Err(e) => panic!("recv: {e:?}"),
        }
    }
}

/// A TCP connection to one of the stack's own addresses (127.0.0.1 or
/// eth0's: the stack turns such frames around itself) moves some KB each
/// way unchanged and ends cleanly; a UDP datagram to it arrives. Both come
/// from the address they went to, as on Linux.
fn check_local(stack: &Stack, now: &mut u64, addr: [u8; 4]) {
    let server = stack.open(Protocol::Tcp).expect("open");
    stack.bind(server, Endpoint { addr, port: 9000 }).expect("bind port 9000");
    stack.listen(server, 4).expect("listen");
    let client = stack.open(Protocol::Tcp).expect("open");
    stack.connect(client, Endpoint { addr, port: 9000 }).expect("connect");
    let mut conn = None;
    for _ in 0..100 {
        pump(stack, now);
        if let Ok((h, peer)) = stack.accept(server) {
            assert_eq!(peer.addr, addr, "the client's address");
            conn = Some(h);
            break;
        }
    }
    let conn = conn.expect("the local connection was accepted");
    let status = stack.status(client).expect("status");
    assert_eq!((status.state, status.local.addr), (TcpState::Established, addr));

    let up: Vec<u8> = (0..7000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let down: Vec<u8> = (0..5000u32).map(|i| (i * 13 + 5) as u8).collect();
    let (mut sent_up, mut sent_down, mut got_up, mut got_down) = (0, 0, Vec::new(), Vec::new());
    for _ in 0..1000 {
        if sent_up < up.len()
            && let Ok(n) = stack.send(client, &up[sent_up..], None)
        {
            sent_up += n;
        }
        if sent_down < down.len()
            && let Ok(n) = stack.send(conn, &down[sent_down..], None)
        {
            sent_down += n;
        }
        pump(stack, now);
        recv_into(stack, conn, &mut got_up);
        recv_into(stack, client, &mut got_down);
        if got_up.len() >= up.len() && got_down.len() >= down.len() {
            break;
        }
    }
    assert!(got_up == up, "client to server: {} of {} bytes, or different", got_up.len(), up.len());
    assert!(got_down == down, "server to client: {} of {} bytes, or different", got_down.len(), down.len());

    // Each end reads the other's FIN as the end of the stream.
    stack.shutdown(client, false, true).expect("shutdown");
    stack.shutdown(conn, false, true).expect("shutdown");
    let (mut client_open, mut conn_open) = (true, true);
    for _ in 0..100 {
        pump(stack, now);
        client_open &= recv_into(stack, client, &mut got_down);
        conn_open &= recv_into(stack, conn, &mut got_up);
        if !client_open && !conn_open {
            break;
        }
    }
    assert!(!client_open && !conn_open, "an end saw no FIN");
    for h in [client, conn, server] {
        stack.close(h, false);
    }

    let rx = stack.open(Protocol::Udp).expect("open");
    stack.bind(rx, Endpoint { addr, port: 9001 }).expect("bind port 9001");
    let tx = stack.open(Protocol::Udp).expect("open");
    let datagram = b"a datagram to ourselves";
    assert_eq!(stack.send(tx, datagram, Some(Endpoint { addr, port: 9001 })), Ok(datagram.len()));
    pump(stack, now);
    let mut buf = [0u8; 64];
    let (n, from) = stack.recv(rx, &mut buf, false).expect("the datagram arrived");
    assert_eq!(&buf[..n], datagram);
    assert_eq!(from, Endpoint { addr, port: stack.status(tx).expect("status").local.port });
    stack.close(rx, false);
    stack.close(tx, false);
    pump(stack, now);
}

#[test]
fn loopback_tcp_and_udp() {
    let stack = configured();
    let mut now = 0;
    check_local(&stack, &mut now, LOCALHOST);
    check_local(&stack, &mut now, ADDR);
    // Again: the first connections' sockets were closed cleanly.
    check_local(&stack, &mut now, LOCALHOST);
}

/// The gateway asks for our address (the stack learns the gateway's).
fn arp_exchange(stack: &Stack, now: &mut u64) {
    stack.input(ETH0, &arp_frame(1, (PEER_MAC, PEER), ([0; 6], ADDR), BROADCAST_MAC));
    let sent = pump(stack, now);
    assert!(sent.iter().any(|s| matches!(s, Sent::ArpReply { to } if *to == (PEER_MAC, PEER))), "no ARP reply: {sent:?}");
}

fn echo_replies(sent: &[Sent]) -> usize {
    sent.iter().filter(|s| matches!(s, Sent::EchoReply { .. })).count()
}

#[test]
fn connections_out_come_from_eth0s_address() {
    let stack = configured();
    let mut now = 0;
    arp_exchange(&stack, &mut now);
    let conn = stack.open(Protocol::Tcp).expect("open");
    stack.connect(conn, Endpoint { addr: PEER, port: 80 }).expect("connect");
    let sent = pump(&stack, &mut now);
    let syn = sent.iter().find(|s| matches!(s, Sent::Tcp(seen) if seen.peer == (PEER, 80) && seen.flags == SYN));
    assert!(syn.is_some(), "no SYN: {sent:?}");
    assert_eq!(stack.status(conn).expect("status").local.addr, ADDR);
    // A datagram to a host the stack must ask for first: ARP and UDP (drain
    // checks both come from eth0's address).
    let udp = stack.open(Protocol::Udp).expect("open");
    assert_eq!(stack.send(udp, b"query", Some(Endpoint { addr: [10, 0, 2, 3], port: 53 })), Ok(5));
    let sent = pump(&stack, &mut now);
    assert!(sent.iter().any(|s| matches!(s, Sent::ArpRequest { target: [10, 0, 2, 3] })), "no ARP request: {sent:?}");
}

/// What Linux drops as martians never gets an answer.
#[test]
fn martians_from_eth0_are_dropped() {
    let stack = configured();
    let mut now = 0;
    arp_exchange(&stack, &mut now);
    let local_only = stack.open(Protocol::Tcp).expect("open");
    stack.bind(local_only, Endpoint { addr: LOCALHOST, port: 9100 }).expect("bind");
    stack.listen(local_only, 4).expect("listen");
    const EVIL: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x66];
    let frames = [
        // Who has 127.0.0.1? (Linux never answers on eth0.)
        arp_frame(1, (EVIL, PEER), ([0; 6], LOCALHOST), BROADCAST_MAC),
        // Our own addresses are at EVIL, says EVIL.
        arp_frame(1, (EVIL, LOCALHOST), ([0; 6], LOCALHOST), BROADCAST_MAC),
        arp_frame(2, (EVIL, ADDR), (MAC, ADDR), MAC),
        // A connection to and a ping of 127.0.0.1 over eth0.
        Segment { src: (PEER, 40000), dst: (LOCALHOST, 9100), seq: 1, ack: 0, flags: SYN, window: 65535, options: &[], payload: &[] }.frame(),
        echo_request(PEER, LOCALHOST, 1, 1, b"hello"),
        // TCP to broadcast and multicast addresses (smoltcp answered with
        // a reset from that address).
        Segment { src: (PEER, 40000), dst: ([10, 0, 2, 255], 7), seq: 1, ack: 0, flags: SYN, window: 65535, options: &[], payload: &[] }.frame(),
        Segment { src: (PEER, 40000), dst: ([224, 0, 0, 1], 7), seq: 1, ack: 0, flags: SYN, window: 65535, options: &[], payload: &[] }.frame(),
        // And from 127.0.0.1 or our own address.
        echo_request(LOCALHOST, ADDR, 1, 2, b"hello"),
        echo_request(ADDR, ADDR, 1, 3, b"hello"),
    ];
    for frame in frames {
        stack.input(ETH0, &frame);
        let sent = pump(&stack, &mut now);
        assert!(sent.iter().all(|s| matches!(s, Sent::ArpRequest { .. })), "an answer to {}: {sent:?}", hex(&frame));
    }
    assert_eq!(stack.accept(local_only), Err(SockError::WouldBlock));
    stack.close(local_only, true);
    // Loopback and connections to eth0's own address still work.
    check_local(&stack, &mut now, LOCALHOST);
    check_local(&stack, &mut now, ADDR);
}

#[test]
fn a_syn_from_0_0_0_0_is_dropped() {
    let stack = configured();
    let mut now = 0;
    let listener = stack.open(Protocol::Tcp).expect("open");
    stack.bind(listener, Endpoint { addr: [0; 4], port: TCP_PORT }).expect("bind");
    stack.listen(listener, BACKLOG).expect("listen");
    // smoltcp 0.12 takes it, and its SYN-ACK to 0.0.0.0 fails the
    // assertion `!ip_repr.dst_addr().is_unspecified()` (iface/interface/mod.rs:1134).
    stack.input(ETH0, &syn(([0; 4], 11204), TCP_PORT, 1));
    assert!(pump(&stack, &mut now).is_empty());
    assert_eq!(stack.accept(listener), Err(SockError::WouldBlock));
}

#[test]
fn ipv4_fragments_are_not_read_as_whole_packets() {
    let stack = configured();
    let mut now = 0;
    arp_exchange(&stack, &mut now);
    // smoltcp is built without reassembly: a fragment must not pass for
    // the packet (here an echo request whose checksum is right).
    for field in [0x2000u16, 0x2000 | 100, 100] {
        let mut frame = echo_request(PEER, ADDR, 1, 1, b"not a whole packet");
        put(&mut frame, 20, &field.to_be_bytes());
        fix_checksums(&mut frame);
        stack.input(ETH0, &frame);
        assert_eq!(echo_replies(&pump(&stack, &mut now)), 0, "a reply to fragment {field:#06x}");
    }
    stack.input(ETH0, &echo_request(PEER, ADDR, 1, 2, b"a whole packet"));
    assert_eq!(echo_replies(&pump(&stack, &mut now)), 1);
}

#[test]
fn icmp_echo_request_gets_a_reply() {
    let stack = configured();
    let mut now = 0;
    arp_exchange(&stack, &mut now);

    let data = b"tessera echo 0123456789";
    stack.input(ETH0, &echo_request(PEER, ADDR, 0x1234, 9, data));
    let sent = pump(&stack, &mut now);
    let reply = sent.iter().find_map(|s| match s {
        Sent::EchoReply { mac, to, rest, data } => Some((*mac, *to, *rest, data.clone())),
        _ => None,
    });
    assert_eq!(reply, Some((PEER_MAC, PEER, [0x12, 0x34, 0, 9], data.to_vec())), "sent: {sent:?}");
}

#[test]
fn syn_flood_leaves_the_listener_serving() {
    let stack = configured();
    let mut now = 0;
    let listener = stack.open(Protocol::Tcp).expect("open");
    stack.bind(listener, Endpoint { addr: [0; 4], port: TCP_PORT }).expect("bind");
    stack.listen(listener, BACKLOG).expect("listen");
    let mut rng = Rng::new(1);
    // 5000 SYNs from spoofed addresses that never complete the handshake;
    // ARP for them is answered, so the SYN-ACKs go out.
    for batch in 0..20u32 {
        let mut arp = Vec::new();
        for i in 0..250u32 {
            let n = batch * 250 + i;
            let src = if n % 2 == 0 { [10, 0, 2, 3 + (n % 250) as u8] } else { [100, 64, (n >> 8) as u8, n as u8] };
            stack.input(ETH0, &syn((src, 1024 + (n % 60000) as u16), TCP_PORT, rng.next() as u32));
        }
        for sent in pump(&stack, &mut now) {
            if let Sent::ArpRequest { target } = sent {
                arp.push(arp_frame(2, (PEER_MAC, target), (MAC, ADDR), MAC));
            }
        }
        for frame in arp {
            stack.input(ETH0, &frame);
        }
        pump(&stack, &mut now);
        check_limits(&stack);
    }
    assert!(stack_sockets(&stack) <= BACKLOG as usize + 1, "{} sockets after the flood", stack_sockets(&stack));

    // A real client still gets in at once: over eth0 ...
    let client = (PEER, 40000);
    stack.input(ETH0, &syn(client, TCP_PORT, 1000));
    let synack = pump(&stack, &mut now).into_iter().find_map(|s| match s {
        Sent::Tcp(seen) if seen.peer == client && seen.flags == SYN | ACK => Some(seen),
        _ => None,
    });
    let synack = synack.expect("a SYN-ACK for a client after the flood");
    let payload = b"still serving";
    let ack = Segment { src: client, dst: (ADDR, TCP_PORT), seq: 1001, ack: synack.seq.wrapping_add(1), flags: ACK | PSH, window: 65535, options: &[], payload };
    stack.input(ETH0, &ack.frame());
    pump(&stack, &mut now);
    let (conn, peer) = stack.accept(listener).expect("the client's connection");
    assert_eq!(peer, Endpoint { addr: client.0, port: client.1 });
    let mut got = Vec::new();
    recv_into(&stack, conn, &mut got);
    assert_eq!(got, payload);
    stack.close(conn, true);
    // ... and over lo.
    check_local(&stack, &mut now, LOCALHOST);
}

/// The round the fuzzer is in and the frames it gave the stack, for the
/// report when the stack panics or stops answering.
#[derive(Default)]
struct Progress {
    round: AtomicU64,
    batch: StdMutex<Vec<Vec<u8>>>,
}

/// Counts that show the fuzzed stack was alive, not dropping everything.
#[derive(Debug, Default)]
struct Stats {
    frames_in: u64,
    frames_out: u64,
    echo_replies: u64,
    syn_acks: u64,
    accepted: u64,
    bytes_received: u64,
    datagrams: u64,
}

/// A TCP connection the fuzzing peer follows: its next sequence number
/// and the stack's.
#[derive(Clone, Copy)]
struct Conn {
    peer: ([u8; 4], u16),
    stack: ([u8; 4], u16),
    seq: u32,
    ack: u32,
}

/// What the program on the machine holds.
struct App {
    listener: u64,
    udp: u64,
    ping: u64,
    raw: u64,
    /// Accepted connections and connections it opened.
    conns: Vec<u64>,
    up: bool,
}

/// The fuzzer: the stack, the hosts on eth0's side and a program on the
/// machine, all driven by one seeded generator.
struct Fuzz {
    rng: Rng,
    stack: Stack,
    now: u64,
    conns: Vec<Conn>,
    /// Frames the peer sends next round (ARP answers).
    replies: Vec<Vec<u8>>,
    app: App,
    stats: Stats,
}

impl Fuzz {
    fn new(seed: u64) -> Fuzz {
        let stack = configured();
        let listener = stack.open(Protocol::Tcp).expect("open");
        stack.bind(listener, Endpoint { addr: [0; 4], port: TCP_PORT }).expect("bind");
        stack.listen(listener, BACKLOG).expect("listen");
        let udp = stack.open(Protocol::Udp).expect("open");
        stack.bind(udp, Endpoint { addr: [0; 4], port: UDP_PORT }).expect("bind");
        let ping = stack.open(Protocol::Icmp).expect("open");
        stack.bind(ping, Endpoint { addr: [0; 4], port: 77 }).expect("bind");
        let raw = stack.open(Protocol::RawIcmp).expect("open");
        let app = App { listener, udp, ping, raw, conns: Vec::new(), up: true };
        Fuzz { rng: Rng::new(seed), stack, now: 0, conns: Vec::new(), replies: Vec::new(), app, stats: Stats::default() }
    }

    /// A source address: mostly the gateway, also hosts on and off the
    /// subnet.
    fn source(&mut self) -> [u8; 4] {
        match self.rng.below(8) {
            0..=3 => PEER,
            4 => [10, 0, 2, 3 + self.rng.below(250) as u8],
            5 => [93, 184, 216, 34],
            _ => [self.rng.byte(), self.rng.byte(), self.rng.byte(), self.rng.byte()],
        }
    }

    /// A port: mostly the listening (or receiving) one.
    fn port(&mut self, open: u16) -> u16 {
        match self.rng.below(4) {
            0 => self.rng.next() as u16,
            1 => self.rng.pick(&[0, 7, 9000, 9001, 32768, 65535]),
            _ => open,
        }
    }

    fn ip_options(&mut self) -> Vec<u8> {
        if !self.rng.one_in(6) {
            return Vec::new();
        }
        let mut o = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            match self.rng.below(7) {
                0 => o.push(1),
                1 => o.push(0),
                // Record route, timestamp, router alert, any with an odd length.
                2 => o.extend_from_slice(&[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
                3 => o.extend_from_slice(&[68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                4 => o.extend_from_slice(&[148, 4, 0, 0]),
                5 => o.extend_from_slice(&[self.rng.byte(), self.rng.pick(&[0, 1, 2, 40, 255])]),
                _ => {
                    let n = self.rng.below(9);
                    o.extend(self.rng.bytes(n));
                }
            }
        }
        o.truncate(40);
        o.resize(o.len().div_ceil(4) * 4, 0);
        o
    }

    fn tcp_options(&mut self) -> Vec<u8> {
        let mut o = Vec::new();
        for _ in 0..self.rng.below(5) {
            match self.rng.below(9) {
                0 => o.extend_from_slice(&[2, 4, self.rng.pick(&[0, 1, 5, 0xff]), self.rng.byte()]),
                1 => o.extend_from_slice(&[3, 3, self.rng.below(20) as u8]),
                2 => o.extend_from_slice(&[4, 2]),
                3 => {
                    let blocks = 1 + self.rng.below(4);
                    o.extend_from_slice(&[5, (2 + 8 * blocks) as u8]);
                    o.extend(self.rng.bytes(8 * blocks));
                }
                4 => {
                    o.extend_from_slice(&[8, 10]);
                    o.extend(self.rng.bytes(8));
                }
                5 => o.push(1),
                6 => o.push(0),
                7 => o.extend_from_slice(&[self.rng.byte(), self.rng.pick(&[0, 1, 2, 255])]),
                _ => {
                    let n = self.rng.below(9);
                    o.extend(self.rng.bytes(n));
                }
            }
        }
        o.truncate(40);
        o.resize(o.len().div_ceil(4) * 4, 0);
        o
    }

    /// A well-formed frame of some kind for eth0.
    fn template(&mut self) -> Vec<u8> {
        let src = self.source();
        let options = self.ip_options();
        let mut frame = match self.rng.below(11) {
            0 => {
                let len = self.rng.below(1601);
                let mut f = self.rng.bytes(len);
                // Half get past the Ethernet layer.
                if self.rng.one_in(2) {
                    put(&mut f, 0, &MAC);
                    let ethertype = self.rng.pick(&[ARP, IPV4]);
                    put(&mut f, 12, &ethertype.to_be_bytes());
                }
                return f;
            }
            1 | 2 => {
                let odd = [ADDR, LOCALHOST, [0; 4], [255; 4], [10, 0, 2, 255], [224, 0, 0, 1]];
                let sender = if self.rng.one_in(4) { self.rng.pick(&odd) } else { src };
                let target = if self.rng.one_in(4) { self.rng.pick(&odd) } else { ADDR };
                let op = self.rng.pick(&[1, 1, 2, 3, 0]);
                let dst = if op == 1 { BROADCAST_MAC } else { MAC };
                return arp_frame(op, (PEER_MAC, sender), (if op == 1 { [0; 6] } else { MAC }, target), dst);
            }
            3 => {
                let (id, seq) = (self.rng.next() as u16, self.rng.next() as u16);
                let len = self.rng.below(1472 - options.len());
                let data = self.rng.bytes(len);
                let [i0, i1] = id.to_be_bytes();
                let [s0, s1] = seq.to_be_bytes();
                ipv4(src, ADDR, ICMP, &options, &icmp(8, 0, [i0, i1, s0, s1], &data))
            }
            4 => {
                // Errors and other messages, quoting one of our packets.
                let any = self.rng.byte();
                let kind = self.rng.pick(&[0, 3, 4, 5, 11, 12, 13, 17, any]);
                let code = self.rng.below(16) as u8;
                let sport = self.rng.pick(&[UDP_PORT, TCP_PORT, 77]);
                let quoted = ipv4(ADDR, src, self.rng.pick(&[TCP, UDP, ICMP]), &[], &sport.to_be_bytes());
                let rest = [self.rng.byte(), self.rng.byte(), 0, self.rng.byte()];
                ipv4(src, ADDR, ICMP, &options, &icmp(kind, code, rest, &quoted))
            }
            5 | 6 => {
                let len = self.rng.below(1472 - options.len());
                let data = self.rng.bytes(len);
                let (sport, dport) = (self.rng.next() as u16, self.port(UDP_PORT));
                ipv4(src, ADDR, UDP, &options, &udp((src, sport), (ADDR, dport), &data))
            }
            7..=9 => {
                let any = self.rng.byte();
                let flags = self.rng.pick(&[SYN, SYN, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, SYN | ACK, SYN | FIN, 0x3f, 0, any]);
                let len = if flags & PSH != 0 || self.rng.one_in(4) { self.rng.below(1380 - options.len()) } else { 0 };
                let payload = self.rng.bytes(len);
                let tcp_options = self.tcp_options();
                let any = self.rng.next() as u16;
                let window = self.rng.pick(&[0, 1, 65535, any]);
                let segment = Segment {
                    src: (src, self.rng.next() as u16),
                    dst: (ADDR, self.port(TCP_PORT)),
                    seq: self.rng.next() as u32,
                    ack: self.rng.next() as u32,
                    flags,
                    window,
                    options: &tcp_options,
                    payload: &payload,
                };
                ipv4(src, ADDR, TCP, &options, &segment.bytes())
            }
            _ => return self.answer().unwrap_or_else(|| syn((src, self.rng.next() as u16), TCP_PORT, self.rng.next() as u32)),
        };
        // Fragments: first, middle and last.
        if self.rng.one_in(12) {
            let field: u16 = self.rng.pick(&[0x2000, 0x2000 | 185, 185, 0x1fff]);
            put(&mut frame, 6, &field.to_be_bytes());
            put(&mut frame, 10, &[0, 0]);
            let ihl = usize::from(frame[0] & 15) * 4;
            let sum = checksum(&[&frame[..ihl]]);
            put(&mut frame, 10, &sum.to_be_bytes());
        }
        ethernet(MAC, PEER_MAC, IPV4, &frame)
    }

    /// The peer's next segment on a connection it saw the stack use:
    /// sequence numbers right (mostly), so connections get established,
    /// carry data, and end in every way.
    fn answer(&mut self) -> Option<Vec<u8>> {
        if self.conns.is_empty() {
            return None;
        }
        let at = self.rng.below(self.conns.len());
        let c = self.conns[at];
        let (flags, len) = match self.rng.below(10) {
            0..=3 => (ACK | PSH, 1 + self.rng.below(1400)),
            4 | 5 => (ACK, 0),
            6 => (FIN | ACK, self.rng.below(2) * self.rng.below(100)),
            7 => (self.rng.pick(&[RST, RST | ACK]), 0),
            8 => (SYN | ACK, 0),
            _ => (self.rng.byte(), self.rng.below(100)),
        };
        let payload = self.rng.bytes(len);
        // Now and then ahead: out of order within the window, or beyond it.
        let mut seq = c.seq;
        if self.rng.one_in(8) {
            let span = self.rng.pick(&[40_000, 200_000]);
            seq = seq.wrapping_add(self.rng.below(span) as u32);
        }
        let ack = if self.rng.one_in(8) { self.rng.next() as u32 } else { c.ack };
        let window = if self.rng.one_in(10) { 0 } else { 65535 };
        let options = if self.rng.one_in(4) { self.tcp_options() } else { Vec::new() };
        let segment = Segment { src: c.peer, dst: c.stack, seq, ack, flags, window, options: &options, payload: &payload };
        let frame = segment.frame();
        let used = len as u32 + u32::from(flags & (SYN | FIN) != 0);
        if flags & RST != 0 {
            self.conns.swap_remove(at);
        } else if let Some(c) = self.conns.get_mut(at) {
            c.seq = c.seq.wrapping_add(used);
        }
        Some(frame)
    }

    /// Learns from what the stack sent: answers ARP, follows connections.
    fn learn(&mut self, sent: Vec<Sent>) {
        self.stats.frames_out += sent.len() as u64;
        for s in sent {
            match s {
                Sent::ArpRequest { target } if !self.rng.one_in(10) => {
                    self.replies.push(arp_frame(2, (PEER_MAC, target), (MAC, ADDR), MAC));
                }
                Sent::EchoReply { .. } => self.stats.echo_replies += 1,
                Sent::Tcp(seen) => {
                    if seen.flags & (SYN | ACK) == SYN | ACK {
                        self.stats.syn_acks += 1;
                    }
                    let next = seen.seq.wrapping_add(seen.len + u32::from(seen.flags & SYN != 0) + u32::from(seen.flags & FIN != 0));
                    let known = self.conns.iter().position(|c| c.peer == seen.peer && c.stack == seen.stack);
                    match known {
                        Some(at) if seen.flags & RST != 0 => {
                            self.conns.swap_remove(at);
                        }
                        Some(at) => {
                            let c = &mut self.conns[at];
                            c.ack = next;
                            if seen.flags & ACK != 0 {
                                c.seq = seen.ack;
                            }
                        }
                        None if seen.flags & RST == 0 => {
                            let seq = if seen.flags & ACK != 0 { seen.ack } else { self.rng.next() as u32 };
                            if self.conns.len() >= 64 {
                                self.conns.remove(0);
                            }
                            self.conns.push(Conn { peer: seen.peer, stack: seen.stack, seq, ack: next });
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Breaks a frame the way the network might: flipped bits, cuts at
    /// header boundaries, length and offset fields out of range, odd
    /// addresses and TTLs.
    fn mutate(&mut self, frame: &mut Vec<u8>) {
        let ihl = header_len(frame);
        let l4 = 14 + ihl;
        let len = frame.len();
        let rest = len.saturating_sub(14);
        let protocol = frame.get(23).copied().unwrap_or(0);
        match self.rng.below(16) {
            0 => {
                for _ in 0..=self.rng.below(8) {
                    if !frame.is_empty() {
                        let at = self.rng.below(frame.len());
                        frame[at] ^= 1 << self.rng.below(8);
                    }
                }
            }
            1 => {
                let tcp_end = l4 + frame.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4);
                let cuts = [0, 1, 13, 14, 15, 33, 34, 41, 42, l4 - 1, l4, l4 + 1, l4 + 4, l4 + 7, l4 + 8, l4 + 13, l4 + 19, l4 + 20, tcp_end - 1, tcp_end, len.saturating_sub(1)];
                let cut = self.rng.pick(&cuts);
                frame.truncate(cut);
            }
            2 => {
                let any = self.rng.below(0x10000);
                let total = self.rng.pick(&[0, 1, 19, 20, 21, ihl, ihl + 7, rest.saturating_sub(1), rest + 1, 0xffff, any]);
                put(frame, 16, &(total as u16).to_be_bytes());
            }
            3 => {
                let byte = if self.rng.one_in(4) { self.rng.byte() } else { 0x40 | self.rng.below(16) as u8 };
                put(frame, 14, &[byte]);
            }
            4 if protocol == TCP => {
                let offset = self.rng.below(16) as u8;
                put(frame, l4 + 12, &[offset << 4]);
            }
            5 if protocol == UDP => {
                let length = self.rng.pick(&[0, 1, 7, 8, 9, len.saturating_sub(l4), len.saturating_sub(l4) + 1, 0xffff]);
                put(frame, l4 + 4, &(length as u16).to_be_bytes());
            }
            6 => {
                let ttl = self.rng.pick(&[0, 1, 255]);
                put(frame, 22, &[ttl]);
            }
            7 => {
                let other = [PEER_MAC[0], self.rng.byte(), self.rng.byte(), self.rng.byte(), self.rng.byte(), self.rng.byte()];
                let dst = self.rng.pick(&[BROADCAST_MAC, [0x01, 0x00, 0x5e, 0, 0, 1], [0x33, 0x33, 0, 0, 0, 1], [0; 6], other]);
                put(frame, 0, &dst);
            }
            8 => {
                let any = [self.rng.byte(); 4];
                let dst = self.rng.pick(&[[255; 4], [10, 0, 2, 255], [10, 0, 2, 0], [224, 0, 0, 1], [0; 4], LOCALHOST, [127, 1, 2, 3], PEER, any]);
                put(frame, 30, &dst);
            }
            9 => {
                let src = self.rng.pick(&[ADDR, [0; 4], LOCALHOST, [127, 9, 9, 9], [255; 4], [224, 0, 0, 5], [10, 0, 2, 255], [10, 0, 2, 0]]);
                put(frame, 26, &src);
            }
            10 => {
                let any = self.rng.byte();
                let protocol = self.rng.pick(&[0, 2, 4, 41, 47, 50, 255, any, TCP, UDP, ICMP]);
                put(frame, 23, &[protocol]);
            }
            11 => {
                let any = self.rng.next() as u16;
                let field = self.rng.pick(&[0x2000, 0x2001, 0x0001, 0x1fff, 0x8000, 0x4000, 0xffff, any]);
                put(frame, 20, &field.to_be_bytes());
            }
            12 => {
                let n = 1 + self.rng.below(64);
                frame.extend(self.rng.bytes(n));
            }
            13 => {
                let at = self.rng.below(len);
                let n = self.rng.below(32).min(len - at);
                let bytes = self.rng.bytes(n);
                put(frame, at, &bytes);
            }
            14 if protocol == TCP => {
                let flags = self.rng.byte();
                put(frame, l4 + 13, &[flags]);
            }
            _ => {
                let any = self.rng.next() as u16;
                let ethertype = self.rng.pick(&[ARP, IPV4, 0x86dd, 0x8100, any]);
                put(frame, 12, &ethertype.to_be_bytes());
            }
        }
    }

    /// A frame for eth0: a template, unchanged or broken in a few ways,
    /// its checksums then right or wrong.
    fn frame(&mut self) -> Vec<u8> {
        let mut frame = self.template();
        if self.rng.one_in(3) {
            return frame;
        }
        for _ in 0..1 + self.rng.below(3) {
            self.mutate(&mut frame);
        }
        if self.rng.one_in(2) {
            fix_checksums(&mut frame);
        }
        frame
    }

    /// Thousands of SYNs to the listener from distinct ports and addresses.
    fn flood(&mut self) -> Vec<Vec<u8>> {
        let n = 1000 + self.rng.below(3000);
        (0..n)
            .map(|_| {
                let src = [self.rng.pick(&[10, 100, 172, 203]), self.rng.byte(), self.rng.byte(), 1 + self.rng.below(254) as u8];
                syn((src, self.rng.next() as u16), TCP_PORT, self.rng.next() as u32)
            })
            .collect()
    }

    /// The clock moves on (mostly by milliseconds, now and then by
    /// seconds, minutes or an hour) and the stack runs.
    fn tick(&mut self) {
        self.now += match self.rng.below(2000) {
            0 => 3_600_000,
            1..=8 => 60_000 + self.rng.below(240_000) as u64,
            9..=60 => 1000 + self.rng.below(5000) as u64,
            _ => self.rng.below(20) as u64,
        };
        self.stack.poll(self.now);
        let sent = drain(&self.stack);
        self.learn(sent);
    }

    /// A batch of frames (or a flood), the clock, the application, and
    /// the checks of what came out.
    fn round(&mut self, progress: &Progress) {
        let mut batch = std::mem::take(&mut self.replies);
        if self.rng.one_in(300) {
            batch.extend(self.flood());
        } else {
            for _ in 0..1 + self.rng.below(24) {
                let frame = self.frame();
                batch.push(frame);
            }
        }
        *progress.batch.lock().expect("progress") = batch.clone();
        for (i, frame) in batch.iter().enumerate() {
            // The kernel gives only its cards' frames; the stack ignores others.
            let index = if self.rng.one_in(200) { self.rng.pick(&[0, LOOPBACK_INDEX, 3, u32::MAX]) } else { ETH0 };
            self.stack.input(index, frame);
            if i % 500 == 499 {
                self.tick();
            }
        }
        self.stats.frames_in += batch.len() as u64;
        self.tick();
        self.serve();
        let sent = drain(&self.stack);
        self.learn(sent);
        check_limits(&self.stack);
    }

    /// What a program on the machine does meanwhile: accepts, reads,
    /// echoes, closes, connects out, sends datagrams and pings, and now
    /// and then the administrator takes eth0 down and up.
    fn serve(&mut self) {
        let stack = &self.stack;
        let rng = &mut self.rng;
        let app = &mut self.app;
        let mut buf = [0u8; 2048];
        while let Ok((conn, _)) = stack.accept(app.listener) {
            self.stats.accepted += 1;
            app.conns.push(conn);
        }
        let mut open = Vec::with_capacity(app.conns.len());
        for &conn in &app.conns {
            let alive = match stack.recv(conn, &mut buf, rng.one_in(8)) {
                Ok((0, _)) => false,
                Ok((n, _)) => {
                    self.stats.bytes_received += n as u64;
                    if rng.one_in(2) {
                        let _ = stack.send(conn, &buf[..n], None);
                    }
                    true
                }
                Err(e) => e == SockError::WouldBlock,
            };
            if rng.one_in(40) {
                let _ = stack.shutdown(conn, rng.one_in(2), rng.one_in(2));
            }
            if rng.one_in(40) {
                let option = rng.pick(&[SockOption::NoDelay(true), SockOption::KeepAlive(Some(1000)), SockOption::Ttl(1)]);
                let _ = stack.set_option(conn, option);
            }
            let _ = stack.status(conn);
            if alive && !rng.one_in(30) {
                open.push(conn);
            } else {
                stack.close(conn, rng.one_in(2));
            }
        }
        while open.len() > 24 {
            stack.close(open.remove(0), rng.one_in(2));
        }
        app.conns = open;

        for _ in 0..64 {
            match stack.recv(app.udp, &mut buf, false) {
                Ok((n, from)) => {
                    self.stats.datagrams += 1;
                    if rng.one_in(4) {
                        let _ = stack.send(app.udp, &buf[..n], Some(from));
                    }
                }
                Err(_) => break,
            }
        }
        for socket in [app.ping, app.raw] {
            for _ in 0..64 {
                if stack.recv(socket, &mut buf, false).is_err() {
                    break;
                }
            }
        }

        let anywhere = [
            Endpoint { addr: PEER, port: 80 },
            Endpoint { addr: [10, 0, 2, 77], port: 22 },
            Endpoint { addr: [93, 184, 216, 34], port: 443 },
            Endpoint { addr: LOCALHOST, port: TCP_PORT },
            Endpoint { addr: ADDR, port: TCP_PORT },
            Endpoint { addr: [10, 0, 2, 255], port: 9 },
            Endpoint { addr: [255; 4], port: 67 },
            Endpoint { addr: [224, 0, 0, 251], port: 5353 },
        ];
        if rng.one_in(40)
            && let Ok(conn) = stack.open(Protocol::Tcp)
        {
            if stack.connect(conn, rng.pick(&anywhere)).is_ok() {
                app.conns.push(conn);
            } else {
                stack.close(conn, false);
            }
        }
        if rng.one_in(60) {
            let len = rng.below(1600);
            let _ = stack.send(app.udp, &rng.bytes(len), Some(rng.pick(&anywhere)));
        }
        if rng.one_in(60) {
            let to = Some(rng.pick(&anywhere));
            let len = rng.below(64);
            let data = rng.bytes(len);
            // A ping socket takes any bytes (the stack makes a message of
            // them or refuses); a raw one sends them as they are, so the
            // program gives a whole message, checksum included (Linux sends
            // a wrong one unchanged too).
            if rng.one_in(2) {
                let message = if rng.one_in(3) { data } else { icmp(8, 0, [0, 77, 0, rng.byte()], &data) };
                let _ = stack.send(app.ping, &message, to);
            } else {
                let kind = rng.pick(&[8, 0, 3, 13, 40]);
                let _ = stack.send(app.raw, &icmp(kind, 0, [0, 77, 0, rng.byte()], &data), to);
            }
        }
        if rng.one_in(300) {
            app.up = !app.up;
            stack.set_interface(ETH0, MAC, 1500, app.up).expect("eth0 up or down");
            stack.set_address(ETH0, ADDR, 24).expect("eth0's address");
            stack.set_gateway(if app.up { Some(PEER) } else { None }).expect("gateway");
        }
    }

    /// Closes everything the application holds; once the connections
    /// have had time to end, the stack holds no socket at all.
    fn close_all(&mut self) {
        let app = &mut self.app;
        if !app.up {
            app.up = true;
            self.stack.set_interface(ETH0, MAC, 1500, true).expect("eth0 up");
            self.stack.set_gateway(Some(PEER)).expect("gateway");
        }
        for conn in app.conns.drain(..) {
            self.stack.close(conn, false);
        }
        for socket in [app.listener, app.udp, app.ping, app.raw] {
            self.stack.close(socket, false);
        }
        // Nobody answers any more: retransmissions give up (2 minutes),
        // TIME-WAIT ends.
        for _ in 0..30 {
            self.now += 60_000;
            self.stack.poll(self.now);
            drain(&self.stack);
        }
        let s = self.stack.inner.lock();
        assert!(s.table.is_empty(), "{} handles left", s.table.len());
        let left: Vec<_> = s.sockets.iter().filter(|(h, _)| *h != s.icmp_errors).map(|(_, socket)| format!("{socket:?}")).collect();
        assert!(left.is_empty(), "sockets left after closing all and waiting: {left:?}");
    }
}

/// Runs `work` on a thread of its own; if it panics or stops making
/// progress (a loop in the stack), reports the round and its frames (the
/// reproducer: the same seed fails in the same round).
fn watched<T: Send + 'static>(seed: u64, work: impl FnOnce(&Progress) -> T + Send + 'static) -> T {
    const STALL: Duration = Duration::from_secs(60);
    let progress = Arc::new(Progress::default());
    let worker = std::thread::spawn({
        let progress = Arc::clone(&progress);
        move || work(&progress)
    });
    let report = |what: &str| {
        let batch = progress.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let frames: Vec<String> = batch.iter().map(|f| hex(f)).collect();
        format!(
            "{what} in round {} of TESSERA_FUZZ_SEED={seed:#x}; that round's frames for eth0:\n{}",
            progress.round.load(Ordering::Relaxed),
            frames.join("\n")
        )
    };
    let (mut round, mut since) = (0, Instant::now());
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        let now = progress.round.load(Ordering::Relaxed);
        if now != round {
            (round, since) = (now, Instant::now());
        } else if since.elapsed() > STALL {
            panic!("{}", report("the stack stopped making progress"));
        }
    }
    match worker.join() {
        Ok(value) => value,
        Err(panic) => {
            eprintln!("{}", report("the panic above came"));
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn fuzz_eth0_then_loopback_still_works() {
    let seed = env_u64("TESSERA_FUZZ_SEED").unwrap_or(0x07e5_5e7a);
    let rounds = env_u64("TESSERA_FUZZ_ITERS").unwrap_or(30_000);
    eprintln!("fuzzing eth0: TESSERA_FUZZ_SEED={seed:#x} TESSERA_FUZZ_ITERS={rounds}");
    let started = Instant::now();
    let stats = watched(seed, move |progress| {
        let mut fuzz = Fuzz::new(seed);
        for round in 0..rounds {
            progress.round.store(round, Ordering::Relaxed);
            fuzz.round(progress);
        }
        progress.batch.lock().expect("progress").clear();
        fuzz.close_all();
        check_local(&fuzz.stack, &mut fuzz.now, LOCALHOST);
        check_local(&fuzz.stack, &mut fuzz.now, ADDR);
        fuzz.stats
    });
    eprintln!("{rounds} rounds in {:.1?}: {stats:?}", started.elapsed());
    // The stack was alive throughout, not dropping everything.
    assert!(stats.echo_replies > 0 && stats.syn_acks > 0 && stats.accepted > 0, "{stats:?}");
    assert!(stats.bytes_received > 0 && stats.datagrams > 0, "{stats:?}");
}

/// A connection over lo to a listener on `port`: (client, accepted, listener).
fn local_pair(stack: &Stack, now: &mut u64, port: u16, reuse: bool) -> (u64, u64, u64) {
    let server = stack.open(Protocol::Tcp).expect("open");
    stack.set_option(server, SockOption::ReuseAddr(reuse)).expect("SO_REUSEADDR");
    stack.bind(server, Endpoint { addr: LOCALHOST, port }).expect("bind");
    stack.listen(server, 4).expect("listen");
    let client = stack.open(Protocol::Tcp).expect("open");
    stack.connect(client, Endpoint { addr: LOCALHOST, port }).expect("connect");
    for _ in 0..100 {
        pump(stack, now);
        if let Ok((conn, _)) = stack.accept(server) {
            return (client, conn, server);
        }
    }
    panic!("no connection to port {port}");
}

/// Data for a connection whose socket was closed resets it, as on Linux:
/// the sender's next sends fail (the kernel's EPIPE).
#[test]
fn data_after_the_peer_closed_resets() {
    let stack = configured();
    let mut now = 0;
    let (client, conn, server) = local_pair(&stack, &mut now, 9100, false);
    stack.close(conn, false);
    let mut got = Vec::new();
    let mut open = true;
    for _ in 0..20 {
        pump(&stack, &mut now);
        open = recv_into(&stack, client, &mut got);
        if !open {
            break;
        }
    }
    assert!(!open, "the client saw no FIN");
    assert_eq!(stack.send(client, b"x", None), Ok(1), "the first send after the FIN is taken");
    let mut result = Ok(0);
    for _ in 0..20 {
        pump(&stack, &mut now);
        result = stack.send(client, b"x", None);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SockError::Reset), "sends after the reset");
    assert_eq!(stack.send(client, b"x", None), Err(SockError::Reset), "and stay failed");
    stack.close(client, false);
    stack.close(server, false);
}

/// Closing with unread data resets the connection instead of a FIN.
#[test]
fn close_with_unread_data_resets() {
    let stack = configured();
    let mut now = 0;
    let (client, conn, server) = local_pair(&stack, &mut now, 9101, false);
    assert_eq!(stack.send(client, b"unread", None), Ok(6));
    pump(&stack, &mut now);
    assert_eq!(stack.status(conn).expect("status").pending, 6);
    stack.close(conn, false);
    pump(&stack, &mut now);
    let mut buf = [0u8; 8];
    assert_eq!(stack.recv(client, &mut buf, false), Err(SockError::Reset), "the client reads a reset, not an end");
    stack.close(client, false);
    stack.close(server, false);
}

/// A port a closed connection holds (TIME-WAIT) binds only for a socket
/// with SO_REUSEADDR whose predecessor had it too.
#[test]
fn time_wait_holds_the_port_without_reuse() {
    let stack = configured();
    let mut now = 0;
    let (client, conn, server) = local_pair(&stack, &mut now, 9102, true);
    // The server's end closes first: it waits in TIME-WAIT.
    stack.close(conn, false);
    let mut got = Vec::new();
    for _ in 0..20 {
        pump(&stack, &mut now);
        if !recv_into(&stack, client, &mut got) {
            break;
        }
    }
    stack.close(client, false);
    stack.close(server, false);
    pump(&stack, &mut now);
    let plain = stack.open(Protocol::Tcp).expect("open");
    assert_eq!(stack.bind(plain, Endpoint { addr: LOCALHOST, port: 9102 }), Err(SockError::AddrInUse));
    stack.close(plain, false);
    let reusing = stack.open(Protocol::Tcp).expect("open");
    stack.set_option(reusing, SockOption::ReuseAddr(true)).expect("SO_REUSEADDR");
    assert!(stack.bind(reusing, Endpoint { addr: LOCALHOST, port: 9102 }).is_ok(), "SO_REUSEADDR binds over TIME-WAIT");
    stack.close(reusing, false);
    // Once TIME-WAIT is over the port is free for anyone.
    for _ in 0..10 {
        now += 60_000;
        stack.poll(now);
        drain(&stack);
    }
    let later = stack.open(Protocol::Tcp).expect("open");
    assert!(stack.bind(later, Endpoint { addr: LOCALHOST, port: 9102 }).is_ok());
    stack.close(later, false);
}

/// ICMP port unreachable reaches the connected UDP socket that caused it
/// (once), not others.
#[test]
fn port_unreachable_refuses_a_connected_udp_socket() {
    let stack = configured();
    let mut now = 0;
    let closed = Endpoint { addr: LOCALHOST, port: 9103 };
    let connected = stack.open(Protocol::Udp).expect("open");
    stack.connect(connected, closed).expect("connect");
    let other = stack.open(Protocol::Udp).expect("open");
    stack.connect(other, Endpoint { addr: LOCALHOST, port: 9104 }).expect("connect");
    assert_eq!(stack.send(other, b"?", None), Ok(1));
    let unconnected = stack.open(Protocol::Udp).expect("open");
    assert_eq!(stack.send(unconnected, b"?", Some(closed)), Ok(1));
    assert_eq!(stack.send(connected, b"anyone?", None), Ok(7));
    pump(&stack, &mut now);
    assert!(stack.status(connected).expect("status").readable, "the error makes it readable");
    let mut buf = [0u8; 16];
    assert_eq!(stack.recv(connected, &mut buf, false), Err(SockError::Refused));
    assert_eq!(stack.recv(connected, &mut buf, false), Err(SockError::WouldBlock), "reported once");
    // `other` got its own error; the unconnected one none.
    assert_eq!(stack.recv(other, &mut buf, false), Err(SockError::Refused));
    assert_eq!(stack.recv(unconnected, &mut buf, false), Err(SockError::WouldBlock));
    for h in [connected, other, unconnected] {
        stack.close(h, false);
    }
}

/// A ping socket sends echo requests with its identifier and a right
/// checksum whatever the program put there, refuses anything else, and
/// receives the replies only.
#[test]
fn ping_socket_fills_in_ident_and_checksum() {
    let stack = configured();
    let mut now = 0;
    let ping = stack.open(Protocol::Icmp).expect("open");
    let to = Some(Endpoint { addr: LOCALHOST, port: 0 });
    assert_eq!(stack.send(ping, &[0, 0, 0, 0, 0, 0, 0, 0], to), Err(SockError::InvalidState), "an echo reply");
    assert_eq!(stack.send(ping, &[8, 0, 0], to), Err(SockError::InvalidState), "shorter than a header");
    let request = [8, 0, 0xde, 0xad, 0xbe, 0xef, 0, 7, b'h', b'i'];
    assert_eq!(stack.send(ping, &request, to), Ok(request.len()));
    pump(&stack, &mut now);
    let ident = stack.status(ping).expect("status").local.port.to_be_bytes();
    let mut buf = [0u8; 64];
    let (n, from) = stack.recv(ping, &mut buf, false).expect("an echo reply");
    assert_eq!(from.addr, LOCALHOST);
    let reply = &buf[..n];
    assert_eq!((reply[0], reply[1]), (0, 0), "an echo reply");
    assert_eq!(&reply[4..6], &ident, "the socket's identifier");
    assert_eq!(&reply[6..], &request[6..], "sequence and data");
    assert_eq!(checksum(&[reply]), 0);
    assert_eq!(stack.recv(ping, &mut buf, false), Err(SockError::WouldBlock), "its own request is not received");
    stack.close(ping, false);
}

/// A datagram fits one frame or is refused: the stack does not fragment.
#[test]
fn datagrams_larger_than_a_frame_are_refused() {
    let stack = configured();
    let mut now = 0;
    let rx = stack.open(Protocol::Udp).expect("open");
    let at = stack.bind(rx, Endpoint { addr: LOCALHOST, port: 0 }).expect("bind");
    let tx = stack.open(Protocol::Udp).expect("open");
    assert_eq!(stack.send(tx, &[7; 1473], Some(at)), Err(SockError::TooLong));
    assert_eq!(stack.send(tx, &[7; 1472], Some(at)), Ok(1472));
    pump(&stack, &mut now);
    let mut buf = [0u8; 2048];
    assert_eq!(stack.recv(rx, &mut buf, false).map(|(n, _)| n), Ok(1472), "the largest datagram arrived whole");
    stack.close(rx, false);
    stack.close(tx, false);
}
