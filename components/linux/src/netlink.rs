//! `AF_NETLINK` sockets, `NETLINK_ROUTE` only: enough rtnetlink for
//! busybox `ip` (`ip link`, `ip addr`, `ip route`, and their `add`/`del`)
//! over the kernel's interface table (`crate::net`) and the stack's
//! configuration (`crate::inet`).
//!
//! A request is answered when it is sent: the replies go to the sender's
//! queue (a dump in datagrams of at most [`DATAGRAM`] bytes ending with
//! `NLMSG_DONE`), and `recv` takes them one datagram at a time. A queue
//! holds [`QUEUE_BYTES`]; a request whose replies do not fit is answered
//! with ENOBUFS (the next `recv` gives it), as a Linux socket overruns.
//! Multicast groups are accepted but nothing is announced on them.
//!
//! The state each interface has here is what the ioctls see: one IPv4
//! address per interface (`ip addr add` of a second one is EOPNOTSUPP),
//! `lo` fixed at 127.0.0.1/8, a default route through a gateway on a
//! connected network, and the connected networks themselves.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, NonBlocking, POLLIN, POLLOUT};
use crate::net;
use alloc::collections::{BTreeSet, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use framekernel::sync::{Mutex, SpinLock};
use tessera_cell_api::netstack::LOOPBACK_INDEX;
use tessera_sched::WaitQueue;

/// `AF_NETLINK`.
pub const AF_NETLINK: u32 = 16;
/// `NETLINK_ROUTE`.
pub const NETLINK_ROUTE: u64 = 0;
/// Bytes of `struct sockaddr_nl`.
pub const SOCKADDR_NL: usize = 12;
/// Most bytes of one reply datagram (Linux's `NLMSG_GOODSIZE` on 4 KiB pages).
const DATAGRAM: usize = 4096;
/// Bytes of replies a socket queues.
const QUEUE_BYTES: usize = 212_992;

const NLMSG_HDR: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_MULTI: u16 = 2;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_LOOPBACK: u32 = 0x8;
const IFF_RUNNING: u32 = 0x40;
const IFF_MULTICAST: u32 = 0x1000;
const IFF_LOWER_UP: u32 = 0x1_0000;

const IFLA_ADDRESS: u16 = 1;
const IFLA_BROADCAST: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_QDISC: u16 = 6;
const IFLA_STATS: u16 = 7;
const IFLA_TXQLEN: u16 = 13;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_LINKMODE: u16 = 17;
const IFLA_LINKINFO: u16 = 18;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_LABEL: u16 = 3;
const IFA_BROADCAST: u16 = 4;
const IFA_F_PERMANENT: u8 = 0x80;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_TABLE: u16 = 15;
const RT_TABLE_UNSPEC: u8 = 0;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_KERNEL: u8 = 2;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;

/// Port ids in use.
static PORTS: SpinLock<BTreeSet<u32>> = SpinLock::new(BTreeSet::new());
/// The next port id autobind tries after the process id (Linux counts
/// down from -4096).
static ROVER: AtomicU32 = AtomicU32::new(-4096i32 as u32);

/// An `AF_NETLINK` socket as an open file.
pub struct NetlinkSocket {
    kind: u32,
    /// The port id (0: not bound yet).
    port: AtomicU32,
    groups: AtomicU32,
    /// Reply datagrams and the bytes they hold; an overrun to report.
    queue: Mutex<(VecDeque<Vec<u8>>, usize, bool)>,
    nonblocking: NonBlocking,
    changed: WaitQueue,
    ino: u64,
}

/// A new socket of `kind` (`SOCK_RAW` or `SOCK_DGRAM`).
pub fn socket(kind: u32, nonblocking: bool) -> Arc<NetlinkSocket> {
    Arc::new(NetlinkSocket {
        kind,
        port: AtomicU32::new(0),
        groups: AtomicU32::new(0),
        queue: Mutex::new((VecDeque::new(), 0, false)),
        nonblocking: NonBlocking::new(nonblocking),
        changed: WaitQueue::new(),
        ino: crate::epoll::anon_ino(),
    })
}

impl Drop for NetlinkSocket {
    fn drop(&mut self) {
        let port = self.port.load(Ordering::Relaxed);
        if port != 0 {
            PORTS.lock().remove(&port);
        }
    }
}

/// Reads a `sockaddr_nl`: (port id, groups); EINVAL when short or of
/// another family.
pub fn parse_addr(bytes: &[u8]) -> Result<(u32, u32), Errno> {
    if bytes.len() < SOCKADDR_NL || u16::from_le_bytes([bytes[0], bytes[1]]) != AF_NETLINK as u16 {
        return Err(Errno::EINVAL);
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    Ok((word(4), word(8)))
}

/// A `sockaddr_nl` for (port id, groups).
pub fn addr_bytes(port: u32, groups: u32) -> [u8; SOCKADDR_NL] {
    let mut b = [0u8; SOCKADDR_NL];
    b[..2].copy_from_slice(&(AF_NETLINK as u16).to_le_bytes());
    b[4..8].copy_from_slice(&port.to_le_bytes());
    b[8..].copy_from_slice(&groups.to_le_bytes());
    b
}

impl NetlinkSocket {
    /// `SOCK_RAW` or `SOCK_DGRAM`.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// (port id, groups), as `getsockname` gives them.
    pub fn name(&self) -> (u32, u32) {
        (self.port.load(Ordering::Relaxed), self.groups.load(Ordering::Relaxed))
    }

    /// `bind`: port id `port` (0: the caller's process id if free, else
    /// one counted down from -4096), `groups` to listen to. EINVAL to
    /// change a bound port id, EADDRINUSE for one in use.
    pub fn bind(&self, port: u32, groups: u32, pid: u32) -> Result<(), Errno> {
        let bound = self.port.load(Ordering::Relaxed);
        if bound != 0 {
            if port != 0 && port != bound {
                return Err(Errno::EINVAL);
            }
        } else {
            self.claim(if port == 0 { None } else { Some(port) }, pid)?;
        }
        self.groups.store(groups, Ordering::Relaxed);
        Ok(())
    }

    /// Gives the socket a port id (`wanted`, or one chosen) unless it has one.
    fn claim(&self, wanted: Option<u32>, pid: u32) -> Result<(), Errno> {
        let mut ports = PORTS.lock();
        if self.port.load(Ordering::Relaxed) != 0 {
            return Ok(());
        }
        let free = |ports: &BTreeSet<u32>, p: u32| p != 0 && !ports.contains(&p);
        let port = match wanted {
            Some(p) if free(&ports, p) => p,
            Some(_) => return Err(Errno::EADDRINUSE),
            None if free(&ports, pid) => pid,
            None => {
                let mut found = None;
                for _ in 0..1_000_000 {
                    let p = ROVER.fetch_sub(1, Ordering::Relaxed);
                    if (p as i32) >= -4096 {
                        ROVER.store(-4097i32 as u32, Ordering::Relaxed);
                        continue;
                    }
                    if free(&ports, p) {
                        found = Some(p);
                        break;
                    }
                }
                found.ok_or(Errno::EADDRINUSE)?
            }
        };
        ports.insert(port);
        self.port.store(port, Ordering::Relaxed);
        Ok(())
    }

    /// Sends `data` (requests) to the kernel and queues the replies.
    /// `admin`: the sender has CAP_NET_ADMIN (changes need it).
    pub fn send(&self, data: &[u8], admin: bool, pid: u32) -> SysResult {
        self.claim(None, pid)?;
        let port = self.port.load(Ordering::Relaxed);
        let mut replies: Vec<Vec<u8>> = Vec::new();
        let mut at = 0usize;
        // Linux's netlink_rcv_skb: a message shorter than its header or
        // longer than what is left ends the batch, silently.
        while data.len() - at >= NLMSG_HDR {
            let h = Header::parse(&data[at..]);
            let len = h.len as usize;
            if len < NLMSG_HDR || len > data.len() - at {
                break;
            }
            let message = &data[at..at + len];
            if h.flags & NLM_F_REQUEST != 0 && h.ty != NLMSG_NOOP {
                handle(&h, message, port, admin, &mut replies);
            }
            at += (len + 3) & !3;
            if at > data.len() {
                break;
            }
        }
        if !replies.is_empty() {
            let mut q = self.queue.lock();
            let bytes: usize = replies.iter().map(Vec::len).sum();
            if q.1 + bytes > QUEUE_BYTES {
                q.2 = true;
            } else {
                q.1 += bytes;
                q.0.extend(replies);
            }
            drop(q);
            self.changed.wake_all();
            crate::syscall::poll::notify();
        }
        Ok(data.len() as u64)
    }

    /// Receives the next reply datagram into at most `len` bytes:
    /// (bytes, the datagram's full length). ENOBUFS once after an overrun.
    pub fn recv(&self, len: usize, peek: bool, dontwait: bool, interrupted: &dyn Fn() -> bool) -> Result<(Vec<u8>, usize), Errno> {
        let nonblocking = dontwait || self.nonblocking.get();
        self.changed.wait_until(|| {
            let mut q = self.queue.lock();
            if q.2 {
                q.2 = false;
                return Some(Err(Errno::ENOBUFS));
            }
            if let Some(front) = q.0.front() {
                let full = front.len();
                let data = front[..len.min(full)].to_vec();
                if !peek {
                    q.0.pop_front();
                    q.1 -= full;
                }
                return Some(Ok((data, full)));
            }
            crate::files::nothing_yet(nonblocking, interrupted)
        })
    }
}

impl File for NetlinkSocket {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let (data, _) = self.recv(buf.len(), false, false, interrupted)?;
        buf[..data.len()].copy_from_slice(&data);
        Ok(data.len() as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        // The writer's privileges decide what it may change (busybox `ip`
        // writes its dump requests).
        let info = crate::process::current().ok_or(Errno::EPERM)?;
        let admin = info.credentials().capable(crate::process::cap::NET_ADMIN);
        self.send(buf, admin, info.pid)
    }

    fn stat(&self) -> FileStat {
        crate::files::socket_stat(self.ino)
    }

    fn poll(&self) -> u16 {
        let q = self.queue.lock();
        if q.0.is_empty() && !q.2 { POLLOUT } else { POLLIN | POLLOUT }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_netlink_socket(&self) -> Option<&NetlinkSocket> {
        Some(self)
    }
}

/// A `struct nlmsghdr`.
#[derive(Clone, Copy)]
struct Header {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
}

impl Header {
    /// From at least 16 bytes.
    fn parse(b: &[u8]) -> Header {
        let word = |i: usize| b.get(i..i + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        let half = |i: usize| b.get(i..i + 2).map_or(0, |w| u16::from_le_bytes([w[0], w[1]]));
        Header { len: word(0), ty: half(4), flags: half(6), seq: word(8) }
    }
}

/// One reply message: header and body (padded to 4 bytes).
fn message(ty: u16, flags: u16, seq: u32, port: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR + body.len());
    m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&port.to_le_bytes());
    m.extend_from_slice(body);
    m.resize(m.len().next_multiple_of(4), 0);
    m
}

/// Appends a `struct rtattr`.
fn attr(body: &mut Vec<u8>, ty: u16, data: &[u8]) {
    body.extend_from_slice(&((4 + data.len()) as u16).to_le_bytes());
    body.extend_from_slice(&ty.to_le_bytes());
    body.extend_from_slice(data);
    body.resize(body.len().next_multiple_of(4), 0);
}

/// The attributes in `b` (type without the nested/byte-order bits).
fn attrs(b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while b.len().saturating_sub(at) >= 4 {
        let len = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
        let ty = u16::from_le_bytes([b[at + 2], b[at + 3]]) & 0x3fff;
        if len < 4 || len > b.len() - at {
            break;
        }
        out.push((ty, &b[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

fn find_attr<'a>(list: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    list.iter().find(|(t, _)| *t == ty).map(|(_, d)| *d)
}

fn ipv4(data: Option<&[u8]>) -> Option<[u8; 4]> {
    data.and_then(|d| d.get(..4)).map(|d| [d[0], d[1], d[2], d[3]])
}

/// `NLMSG_ERROR` for `request` with `errno` (0: an acknowledgement, with
/// only the request's header; an error echoes the whole request, as Linux).
fn error_reply(h: &Header, request: &[u8], port: u32, errno: i32) -> Vec<u8> {
    let mut body = (-errno).to_le_bytes().to_vec();
    let echoed = if errno == 0 { &request[..NLMSG_HDR] } else { request };
    body.extend_from_slice(echoed);
    message(NLMSG_ERROR, 0, h.seq, port, &body)
}

/// Answers one request into `replies`.
fn handle(h: &Header, request: &[u8], port: u32, admin: bool, replies: &mut Vec<Vec<u8>>) {
    let body = &request[NLMSG_HDR..];
    // Either bit of a GET asks for a dump (Linux tests NLM_F_DUMP as a
    // mask; for NEW requests the same bits mean REPLACE and EXCL).
    let dump = matches!(h.ty, RTM_GETLINK | RTM_GETADDR | RTM_GETROUTE) && h.flags & NLM_F_DUMP != 0;
    let result = match h.ty {
        RTM_GETLINK if dump => Ok(links().iter().map(Link::message).collect()),
        RTM_GETLINK => get_link(body).map(|l| alloc::vec![l.message()]),
        RTM_GETADDR if dump => Ok(addresses(body.first().copied().unwrap_or(AF_UNSPEC))),
        RTM_GETROUTE if dump => Ok(routes(body.first().copied().unwrap_or(AF_UNSPEC))),
        RTM_NEWLINK | RTM_SETLINK => set_link(body, admin).map(|()| Vec::new()),
        RTM_NEWADDR | RTM_DELADDR => change_address(h.ty, h.flags, body, admin).map(|()| Vec::new()),
        RTM_NEWROUTE | RTM_DELROUTE => change_route(h.ty, h.flags, body, admin).map(|()| Vec::new()),
        RTM_DELLINK => Err(if admin { Errno::EOPNOTSUPP } else { Errno::EPERM }),
        _ => Err(Errno::EOPNOTSUPP),
    };
    match result {
        Ok(bodies) if dump => {
            // The entries in datagrams of at most DATAGRAM bytes, then DONE.
            let mut datagram = Vec::new();
            for b in bodies {
                let (ty, payload) = b;
                let m = message(ty, NLM_F_MULTI, h.seq, port, &payload);
                if !datagram.is_empty() && datagram.len() + m.len() > DATAGRAM {
                    replies.push(core::mem::take(&mut datagram));
                }
                datagram.extend_from_slice(&m);
            }
            let done = message(NLMSG_DONE, NLM_F_MULTI, h.seq, port, &0i32.to_le_bytes());
            if !datagram.is_empty() && datagram.len() + done.len() > DATAGRAM {
                replies.push(core::mem::take(&mut datagram));
            }
            datagram.extend_from_slice(&done);
            replies.push(datagram);
        }
        Ok(bodies) => {
            for (ty, payload) in bodies {
                replies.push(message(ty, 0, h.seq, port, &payload));
            }
            if h.flags & NLM_F_ACK != 0 {
                replies.push(error_reply(h, request, port, 0));
            }
        }
        Err(e) => replies.push(error_reply(h, request, port, e as i32)),
    }
}

/// What `RTM_NEWLINK` says about an interface.
struct Link {
    index: u32,
    name: alloc::string::String,
    loopback: bool,
    flags: u32,
    mtu: u32,
    mac: [u8; 6],
    /// rx packets, tx packets, rx bytes, tx bytes, rx errors, tx errors,
    /// rx dropped, tx dropped.
    stats: [u32; 8],
}

impl Link {
    fn message(&self) -> (u16, Vec<u8>) {
        let mut b = Vec::new();
        b.push(AF_UNSPEC);
        b.push(0);
        b.extend_from_slice(&(if self.loopback { ARPHRD_LOOPBACK } else { ARPHRD_ETHER }).to_le_bytes());
        b.extend_from_slice(&self.index.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        let mut name = self.name.as_bytes().to_vec();
        name.push(0);
        attr(&mut b, IFLA_IFNAME, &name);
        attr(&mut b, IFLA_TXQLEN, &1000u32.to_le_bytes());
        // IF_OPER_UNKNOWN for lo (as Linux), UP or DOWN for a card.
        let oper: u8 = if self.loopback { 0 } else if self.flags & IFF_RUNNING != 0 { 6 } else { 2 };
        attr(&mut b, IFLA_OPERSTATE, &[oper]);
        attr(&mut b, IFLA_LINKMODE, &[0]);
        attr(&mut b, IFLA_MTU, &self.mtu.to_le_bytes());
        attr(&mut b, IFLA_QDISC, if self.loopback { b"noqueue\0" } else { b"pfifo_fast\0" });
        attr(&mut b, IFLA_ADDRESS, &self.mac);
        attr(&mut b, IFLA_BROADCAST, if self.loopback { &[0; 6] } else { &[0xff; 6] });
        // struct rtnl_link_stats: 23 counters, the first eight known.
        let mut stats = [0u8; 23 * 4];
        for (i, v) in self.stats.iter().enumerate() {
            stats[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        attr(&mut b, IFLA_STATS, &stats);
        (RTM_NEWLINK, b)
    }
}

/// `lo` (while a stack serves it) and the cards.
fn links() -> Vec<Link> {
    let mut out = Vec::new();
    if crate::inet::available() {
        out.push(Link {
            index: LOOPBACK_INDEX,
            name: "lo".into(),
            loopback: true,
            flags: IFF_UP | IFF_LOOPBACK | IFF_RUNNING | IFF_LOWER_UP,
            mtu: 65536,
            mac: [0; 6],
            stats: [0; 8],
        });
    }
    for i in net::interfaces() {
        let up = i.is_up();
        let running = up && i.link_up();
        let c = &i.counters;
        let get = |a: &core::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as u32;
        out.push(Link {
            index: i.index,
            name: i.name.clone(),
            loopback: false,
            flags: IFF_BROADCAST | IFF_MULTICAST | if up { IFF_UP } else { 0 } | if running { IFF_RUNNING | IFF_LOWER_UP } else { 0 },
            mtu: 1500,
            mac: i.mac,
            stats: [get(&c.rx_packets), get(&c.tx_packets), get(&c.rx_bytes), get(&c.tx_bytes), get(&c.rx_errors), get(&c.tx_errors), 0, get(&c.tx_dropped)],
        });
    }
    out
}

/// The interface an `ifinfomsg` names: by index, else by `IFLA_IFNAME`.
fn get_link(body: &[u8]) -> Result<Link, Errno> {
    let index = body.get(4..8).map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let list = attrs(body.get(16..).unwrap_or(&[]));
    let name = find_attr(&list, IFLA_IFNAME).map(|n| n.split(|&b| b == 0).next().unwrap_or(n));
    if index <= 0 && name.is_none() {
        return Err(Errno::EINVAL);
    }
    links()
        .into_iter()
        .find(|l| if index > 0 { l.index == index as u32 } else { Some(l.name.as_bytes()) == name })
        .ok_or(Errno::ENODEV)
}

/// `RTM_NEWLINK`/`RTM_SETLINK` of an existing interface: `IFF_UP` (a
/// card goes down and up; `lo` stays up). Creating an interface, or
/// changing its MTU or name, is EOPNOTSUPP.
fn set_link(body: &[u8], admin: bool) -> Result<(), Errno> {
    if !admin {
        return Err(Errno::EPERM);
    }
    let link = get_link(body)?;
    let word = |i: usize| body.get(i..i + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let (flags, change) = (word(8), word(12));
    let list = attrs(body.get(16..).unwrap_or(&[]));
    if find_attr(&list, IFLA_LINKINFO).is_some() {
        return Err(Errno::EOPNOTSUPP);
    }
    if let Some(mtu) = find_attr(&list, IFLA_MTU).and_then(|m| m.get(..4))
        && u32::from_le_bytes([mtu[0], mtu[1], mtu[2], mtu[3]]) != link.mtu
    {
        return Err(Errno::EOPNOTSUPP);
    }
    // ifi_change 0 means every flag, as Linux.
    let change = if change == 0 { u32::MAX } else { change };
    if change & IFF_UP != 0
        && !link.loopback
        && let Some(i) = net::interface(link.index)
    {
        i.set_up(flags & IFF_UP != 0);
    }
    Ok(())
}

/// `RTM_NEWADDR` entries for the `family` asked (AF_UNSPEC or AF_INET).
fn addresses(family: u8) -> Vec<(u16, Vec<u8>)> {
    if family != AF_UNSPEC && family != AF_INET {
        return Vec::new();
    }
    let mut list = Vec::new();
    if crate::inet::available() {
        list.push((LOOPBACK_INDEX, "lo".into(), [127, 0, 0, 1], 8u8, RT_SCOPE_HOST, None));
    }
    for i in net::interfaces() {
        let (addr, prefix) = i.address();
        if addr == [0; 4] {
            continue;
        }
        let m = u32::from_be_bytes(crate::socket::mask(prefix));
        let broadcast = (u32::from_be_bytes(addr) | !m).to_be_bytes();
        list.push((i.index, i.name.clone(), addr, prefix, RT_SCOPE_UNIVERSE, Some(broadcast)));
    }
    list.into_iter()
        .map(|(index, name, addr, prefix, scope, broadcast): (u32, alloc::string::String, [u8; 4], u8, u8, Option<[u8; 4]>)| {
            let mut b = alloc::vec![AF_INET, prefix, IFA_F_PERMANENT, scope];
            b.extend_from_slice(&index.to_le_bytes());
            attr(&mut b, IFA_ADDRESS, &addr);
            attr(&mut b, IFA_LOCAL, &addr);
            if let Some(bc) = broadcast {
                attr(&mut b, IFA_BROADCAST, &bc);
            }
            let mut label = name.into_bytes();
            label.push(0);
            attr(&mut b, IFA_LABEL, &label);
            (RTM_NEWADDR, b)
        })
        .collect()
}

/// `RTM_NEWADDR`/`RTM_DELADDR` (`struct ifaddrmsg` and `IFA_LOCAL` or
/// `IFA_ADDRESS`): one IPv4 address per card.
fn change_address(ty: u16, flags: u16, body: &[u8], admin: bool) -> Result<(), Errno> {
    if !admin {
        return Err(Errno::EPERM);
    }
    let header = body.get(..8).ok_or(Errno::EINVAL)?;
    if header[0] != AF_INET {
        return Err(Errno::EAFNOSUPPORT);
    }
    let prefix = header[1];
    let index = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let list = attrs(&body[8..]);
    let addr = ipv4(find_attr(&list, IFA_LOCAL)).or(ipv4(find_attr(&list, IFA_ADDRESS)));
    if index == LOOPBACK_INDEX && crate::inet::available() {
        // lo keeps 127.0.0.1/8.
        return match (ty, addr) {
            (RTM_NEWADDR, Some([127, 0, 0, 1])) if prefix == 8 => if flags & NLM_F_EXCL != 0 { Err(Errno::EEXIST) } else { Ok(()) },
            _ => Err(Errno::EOPNOTSUPP),
        };
    }
    let interface = net::interface(index).ok_or(Errno::ENODEV)?;
    let (current, current_prefix) = interface.address();
    if ty == RTM_DELADDR {
        if current == [0; 4] || addr.is_some_and(|a| a != current) {
            return Err(Errno::EADDRNOTAVAIL);
        }
        interface.set_address([0; 4], 0);
        return Ok(());
    }
    let addr = addr.ok_or(Errno::EINVAL)?;
    if prefix > 32 || addr == [0; 4] || addr[0] == 127 || addr[0] >= 224 {
        return Err(Errno::EINVAL);
    }
    if current == addr {
        if flags & NLM_F_EXCL != 0 {
            return Err(Errno::EEXIST);
        }
        interface.set_address(addr, prefix);
        return Ok(());
    }
    if current != [0; 4] && flags & NLM_F_REPLACE == 0 {
        // One address per interface here; Linux would add a second.
        let _ = current_prefix;
        return Err(Errno::EOPNOTSUPP);
    }
    interface.set_address(addr, prefix);
    Ok(())
}

/// The card whose network holds `addr`.
fn connected(addr: [u8; 4]) -> Option<Arc<net::Interface>> {
    net::interfaces().into_iter().find(|i| {
        let (a, p) = i.address();
        let m = u32::from_be_bytes(crate::socket::mask(p));
        a != [0; 4] && i.is_up() && u32::from_be_bytes(a) & m == u32::from_be_bytes(addr) & m
    })
}

/// `RTM_NEWROUTE` entries of the main table: the default route, then each
/// card's connected network.
fn routes(family: u8) -> Vec<(u16, Vec<u8>)> {
    if family != AF_UNSPEC && family != AF_INET {
        return Vec::new();
    }
    let mut out = Vec::new();
    let head = |dst_len: u8, protocol: u8, scope: u8| {
        let mut b = alloc::vec![AF_INET, dst_len, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST];
        b.extend_from_slice(&0u32.to_le_bytes());
        attr(&mut b, RTA_TABLE, &u32::from(RT_TABLE_MAIN).to_le_bytes());
        b
    };
    let gateway = crate::inet::gateway();
    if gateway != [0; 4]
        && let Some(i) = connected(gateway)
    {
        let mut b = head(0, RTPROT_BOOT, RT_SCOPE_UNIVERSE);
        attr(&mut b, RTA_GATEWAY, &gateway);
        attr(&mut b, RTA_OIF, &i.index.to_le_bytes());
        out.push((RTM_NEWROUTE, b));
    }
    for i in net::interfaces() {
        let (addr, prefix) = i.address();
        if addr == [0; 4] || !i.is_up() {
            continue;
        }
        let m = u32::from_be_bytes(crate::socket::mask(prefix));
        let net = (u32::from_be_bytes(addr) & m).to_be_bytes();
        let mut b = head(prefix, RTPROT_KERNEL, RT_SCOPE_LINK);
        attr(&mut b, RTA_DST, &net);
        attr(&mut b, RTA_PREFSRC, &addr);
        attr(&mut b, RTA_OIF, &i.index.to_le_bytes());
        out.push((RTM_NEWROUTE, b));
    }
    out
}

/// `RTM_NEWROUTE`/`RTM_DELROUTE` in the main table: the default route
/// through a gateway on a connected network; a connected network's route
/// exists already (EEXIST) and goes with its address.
fn change_route(ty: u16, flags: u16, body: &[u8], admin: bool) -> Result<(), Errno> {
    if !admin {
        return Err(Errno::EPERM);
    }
    let header = body.get(..12).ok_or(Errno::EINVAL)?;
    if header[0] != AF_INET {
        return Err(Errno::EAFNOSUPPORT);
    }
    let dst_len = header[1];
    let list = attrs(&body[12..]);
    let table = find_attr(&list, RTA_TABLE).and_then(|t| t.get(..4)).map_or(u32::from(header[4]), |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
    if table != u32::from(RT_TABLE_MAIN) && table != u32::from(RT_TABLE_UNSPEC) {
        return Err(Errno::EOPNOTSUPP);
    }
    let gateway = ipv4(find_attr(&list, RTA_GATEWAY));
    let dst = ipv4(find_attr(&list, RTA_DST)).unwrap_or([0; 4]);
    let current = crate::inet::gateway();
    if dst_len == 0 {
        if ty == RTM_DELROUTE {
            if current == [0; 4] || gateway.is_some_and(|g| g != current) {
                return Err(Errno::ESRCH);
            }
            return crate::inet::set_gateway([0; 4]);
        }
        let gateway = gateway.ok_or(Errno::EOPNOTSUPP)?;
        if connected(gateway).is_none() {
            return Err(Errno::ENETUNREACH);
        }
        if current != [0; 4] && (flags & NLM_F_EXCL != 0 || flags & NLM_F_REPLACE == 0) {
            return Err(Errno::EEXIST);
        }
        return crate::inet::set_gateway(gateway);
    }
    if gateway.is_none() && dst_len <= 32 && connected(dst).is_some_and(|i| i.address().1 == dst_len) {
        return if ty == RTM_NEWROUTE { Err(Errno::EEXIST) } else { Err(Errno::EOPNOTSUPP) };
    }
    Err(if ty == RTM_DELROUTE { Errno::ESRCH } else { Errno::EOPNOTSUPP })
}
