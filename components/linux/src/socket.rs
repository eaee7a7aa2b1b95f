//! Sockets: the open-file kind behind `socket(2)`. Families so far:
//! `AF_PACKET`, raw Ethernet frames of a card (what busybox `arping` and
//! `udhcpc` use before an address exists). Every socket also answers the
//! interface ioctls (`SIOCGIFINDEX`, `SIOCGIFHWADDR`, ...), as on Linux.
//!
//! Frames reach packet sockets from the network task
//! ([`crate::net::pump`]), which drains the cards.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, NonBlocking, POLLIN, POLLOUT};
use crate::net::{self, Interface};
use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use framekernel::sync::SpinLock;
use tessera_sched::WaitQueue;

/// `AF_PACKET`.
pub const AF_PACKET: u32 = 17;
/// `SOCK_DGRAM`: the frame without its Ethernet header.
pub const SOCK_DGRAM: u32 = 2;
/// `SOCK_RAW`: the whole frame.
pub const SOCK_RAW: u32 = 3;
/// Every protocol (`ETH_P_ALL`).
const ETH_P_ALL: u16 = 0x0003;
/// Ethernet header bytes.
const ETH_HEADER: usize = 14;
/// `ARPHRD_ETHER`.
const ARPHRD_ETHER: u16 = 1;
/// Bytes of `struct sockaddr_ll`.
pub const SOCKADDR_LL: usize = 20;
/// Frames a socket holds before it drops new ones (Linux counts bytes of
/// `SO_RCVBUF`; 256 full frames is about its default).
const QUEUE_FRAMES: usize = 256;

/// `sll_pkttype`: to us, to all, to a group, to another host.
const PACKET_HOST: u8 = 0;
const PACKET_BROADCAST: u8 = 1;
const PACKET_MULTICAST: u8 = 2;
const PACKET_OTHERHOST: u8 = 3;

/// A frame waiting to be read.
struct Received {
    ifindex: u32,
    pkttype: u8,
    frame: Vec<u8>,
}

/// A link-level address (`struct sockaddr_ll`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkAddr {
    /// Ethernet type, host order.
    pub protocol: u16,
    pub ifindex: u32,
    pub pkttype: u8,
    pub halen: u8,
    pub addr: [u8; 8],
}

impl LinkAddr {
    /// Parses `sockaddr_ll` bytes (EINVAL if too short or of another family).
    pub fn parse(bytes: &[u8]) -> Result<LinkAddr, Errno> {
        let b = bytes.get(..SOCKADDR_LL).ok_or(Errno::EINVAL)?;
        if u16::from_le_bytes([b[0], b[1]]) != AF_PACKET as u16 {
            return Err(Errno::EINVAL);
        }
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&b[12..20]);
        Ok(LinkAddr {
            protocol: u16::from_be_bytes([b[2], b[3]]),
            ifindex: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            pkttype: b[10],
            halen: b[11],
            addr,
        })
    }

    /// The `sockaddr_ll` bytes.
    pub fn bytes(&self) -> [u8; SOCKADDR_LL] {
        let mut b = [0u8; SOCKADDR_LL];
        b[0..2].copy_from_slice(&(AF_PACKET as u16).to_le_bytes());
        b[2..4].copy_from_slice(&self.protocol.to_be_bytes());
        b[4..8].copy_from_slice(&self.ifindex.to_le_bytes());
        b[8..10].copy_from_slice(&ARPHRD_ETHER.to_le_bytes());
        b[10] = self.pkttype;
        b[11] = self.halen;
        b[12..20].copy_from_slice(&self.addr);
        b
    }
}

/// An `AF_PACKET` socket.
pub struct PacketSocket {
    raw: bool,
    /// The Ethernet type received (host order; 0: none yet).
    protocol: AtomicU16,
    /// The interface bound to (0: every interface).
    ifindex: AtomicU32,
    queue: SpinLock<VecDeque<Received>>,
    nonblocking: NonBlocking,
    changed: WaitQueue,
    ino: u64,
}

static SOCKETS: SpinLock<Vec<Weak<PacketSocket>>> = SpinLock::new(Vec::new());

/// A new packet socket of `kind` (`SOCK_DGRAM` or `SOCK_RAW`) receiving
/// Ethernet type `protocol` (host order; 0: none until bound).
pub fn packet_socket(kind: u32, protocol: u16, nonblocking: bool) -> Arc<PacketSocket> {
    let socket = Arc::new(PacketSocket {
        raw: kind == SOCK_RAW,
        protocol: AtomicU16::new(protocol),
        ifindex: AtomicU32::new(0),
        queue: SpinLock::new(VecDeque::new()),
        nonblocking: NonBlocking::new(nonblocking),
        changed: WaitQueue::new(),
        ino: crate::epoll::anon_ino(),
    });
    let mut all = SOCKETS.lock();
    all.retain(|s| s.strong_count() > 0);
    all.push(Arc::downgrade(&socket));
    socket
}

/// Hands a frame received on `interface` to every packet socket that
/// wants it.
pub fn deliver(interface: &Interface, frame: &[u8]) {
    let Some(header) = frame.get(..ETH_HEADER) else { return };
    let ethertype = u16::from_be_bytes([header[12], header[13]]);
    let dest = &header[..6];
    let pkttype = if dest == interface.mac {
        PACKET_HOST
    } else if dest.iter().all(|&b| b == 0xff) {
        PACKET_BROADCAST
    } else if dest[0] & 1 != 0 {
        PACKET_MULTICAST
    } else {
        PACKET_OTHERHOST
    };
    let sockets: Vec<Arc<PacketSocket>> = SOCKETS.lock().iter().filter_map(Weak::upgrade).collect();
    let mut woke = false;
    for socket in sockets {
        let protocol = socket.protocol.load(Ordering::Relaxed);
        let bound = socket.ifindex.load(Ordering::Relaxed);
        if protocol == 0 || (protocol != ETH_P_ALL && protocol != ethertype) || (bound != 0 && bound != interface.index) {
            continue;
        }
        let mut queue = socket.queue.lock();
        if queue.len() < QUEUE_FRAMES {
            queue.push_back(Received { ifindex: interface.index, pkttype, frame: frame.to_vec() });
            drop(queue);
            socket.changed.wake_all();
            woke = true;
        }
    }
    if woke {
        crate::syscall::poll::notify();
    }
}

impl PacketSocket {
    /// `bind`: the Ethernet type (0 keeps the current one) and interface
    /// (0: all) to receive from.
    pub fn bind(&self, addr: &LinkAddr) -> Result<(), Errno> {
        if addr.ifindex != 0 && net::interface(addr.ifindex).is_none() {
            return Err(Errno::ENODEV);
        }
        if addr.protocol != 0 {
            self.protocol.store(addr.protocol, Ordering::Relaxed);
        }
        self.ifindex.store(addr.ifindex, Ordering::Relaxed);
        Ok(())
    }

    /// `getsockname`: the bound interface and its hardware address.
    pub fn name(&self) -> LinkAddr {
        let ifindex = self.ifindex.load(Ordering::Relaxed);
        let mut name = LinkAddr { protocol: self.protocol.load(Ordering::Relaxed), ifindex, ..LinkAddr::default() };
        if let Some(interface) = net::interface(ifindex) {
            name.halen = 6;
            name.addr[..6].copy_from_slice(&interface.mac);
        }
        name
    }

    /// Sends `data` to `to` (or through the bound interface): a whole
    /// frame for `SOCK_RAW`, the payload for `SOCK_DGRAM`, which gets an
    /// Ethernet header to `to`'s address with `to`'s Ethernet type.
    pub fn send(&self, data: &[u8], to: Option<&LinkAddr>) -> SysResult {
        let ifindex = to.map_or(0, |a| a.ifindex);
        let ifindex = if ifindex == 0 { self.ifindex.load(Ordering::Relaxed) } else { ifindex };
        let interface = net::interface(ifindex).ok_or(Errno::ENXIO)?;
        if self.raw {
            if data.len() > tessera_cell_api::net::MAX_FRAME {
                return Err(Errno::EMSGSIZE);
            }
            if data.len() < ETH_HEADER {
                return Err(Errno::EINVAL);
            }
            interface.transmit(data)?;
            return Ok(data.len() as u64);
        }
        // A datagram needs the destination's hardware address.
        let to = to.ok_or(Errno::EDESTADDRREQ)?;
        if to.halen != 6 {
            return Err(Errno::EINVAL);
        }
        if data.len() > tessera_cell_api::net::MAX_FRAME - ETH_HEADER {
            return Err(Errno::EMSGSIZE);
        }
        let protocol = if to.protocol != 0 { to.protocol } else { self.protocol.load(Ordering::Relaxed) };
        let mut frame = Vec::with_capacity(ETH_HEADER + data.len());
        frame.extend_from_slice(&to.addr[..6]);
        frame.extend_from_slice(&interface.mac);
        frame.extend_from_slice(&protocol.to_be_bytes());
        frame.extend_from_slice(data);
        interface.transmit(&frame)?;
        Ok(data.len() as u64)
    }

    /// Receives the next frame into `buf`: the bytes copied, the frame's
    /// full length (for `MSG_TRUNC`) and where it came from. `peek`
    /// leaves it queued. Waits unless non-blocking or `dontwait`.
    pub fn receive(&self, buf: &mut [u8], peek: bool, dontwait: bool, interrupted: &dyn Fn() -> bool) -> Result<(usize, usize, LinkAddr), Errno> {
        let nonblocking = dontwait || self.nonblocking.get();
        let taken = self.changed.wait_until(|| {
            let mut queue = self.queue.lock();
            let next = if peek {
                queue.front().map(|r| Received { ifindex: r.ifindex, pkttype: r.pkttype, frame: r.frame.clone() })
            } else {
                queue.pop_front()
            };
            match next {
                Some(r) => Some(Ok(r)),
                None if nonblocking => Some(Err(Errno::EAGAIN)),
                None if interrupted() => Some(Err(Errno::EINTR)),
                None => None,
            }
        })?;
        let (header, payload) = taken.frame.split_at(ETH_HEADER.min(taken.frame.len()));
        let data = if self.raw { &taken.frame[..] } else { payload };
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        let mut from = LinkAddr { ifindex: taken.ifindex, pkttype: taken.pkttype, halen: 6, ..LinkAddr::default() };
        if let Some(src) = header.get(6..12) {
            from.addr[..6].copy_from_slice(src);
        }
        if let Some(t) = header.get(12..14) {
            from.protocol = u16::from_be_bytes([t[0], t[1]]);
        }
        Ok((n, data.len(), from))
    }

    /// `SOCK_RAW` or `SOCK_DGRAM`.
    pub fn kind(&self) -> u32 {
        if self.raw { SOCK_RAW } else { SOCK_DGRAM }
    }

    /// The protocol asked for at `socket` (network order, as `SO_PROTOCOL` gives it).
    pub fn protocol(&self) -> u16 {
        self.protocol.load(Ordering::Relaxed).to_be()
    }
}

impl File for PacketSocket {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        self.receive(buf, false, false, interrupted).map(|(n, _, _)| n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.send(buf, None)
    }

    fn stat(&self) -> FileStat {
        crate::files::socket_stat(self.ino)
    }

    fn poll(&self) -> u16 {
        if self.queue.lock().is_empty() { POLLOUT } else { POLLIN | POLLOUT }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_packet_socket(&self) -> Option<&PacketSocket> {
        Some(self)
    }
}

// Interface ioctls (`struct ifreq`: a 16-byte name, then a union).
pub const SIOCADDRT: u64 = 0x890b;
pub const SIOCDELRT: u64 = 0x890c;
pub const SIOCGIFNAME: u64 = 0x8910;
pub const SIOCGIFCONF: u64 = 0x8912;
pub const SIOCGIFFLAGS: u64 = 0x8913;
pub const SIOCSIFFLAGS: u64 = 0x8914;
pub const SIOCGIFADDR: u64 = 0x8915;
pub const SIOCSIFADDR: u64 = 0x8916;
pub const SIOCGIFBRDADDR: u64 = 0x8919;
pub const SIOCSIFBRDADDR: u64 = 0x891a;
pub const SIOCGIFNETMASK: u64 = 0x891b;
pub const SIOCSIFNETMASK: u64 = 0x891c;
pub const SIOCGIFMETRIC: u64 = 0x891d;
pub const SIOCGIFMTU: u64 = 0x8921;
pub const SIOCSIFMTU: u64 = 0x8922;
pub const SIOCGIFHWADDR: u64 = 0x8927;
pub const SIOCGIFINDEX: u64 = 0x8933;
pub const SIOCGIFTXQLEN: u64 = 0x8942;
/// Bytes of `struct ifreq`.
pub const IFREQ: usize = 40;
/// Bytes of `struct rtentry`.
pub const RTENTRY: usize = 120;

const IFF_UP: u16 = 0x1;
const IFF_BROADCAST: u16 = 0x2;
const IFF_LOOPBACK: u16 = 0x8;
const IFF_RUNNING: u16 = 0x40;
const IFF_MULTICAST: u16 = 0x1000;
const ARPHRD_LOOPBACK: u16 = 772;
const RTF_UP: u16 = 0x1;
const RTF_GATEWAY: u16 = 0x2;

/// True for the interface ioctls [`interface_ioctl`] answers.
pub fn is_interface_ioctl(request: u64) -> bool {
    matches!(
        request,
        SIOCGIFNAME
            | SIOCGIFFLAGS
            | SIOCSIFFLAGS
            | SIOCGIFADDR
            | SIOCSIFADDR
            | SIOCGIFBRDADDR
            | SIOCSIFBRDADDR
            | SIOCGIFNETMASK
            | SIOCSIFNETMASK
            | SIOCGIFMETRIC
            | SIOCGIFMTU
            | SIOCSIFMTU
            | SIOCGIFHWADDR
            | SIOCGIFINDEX
            | SIOCGIFTXQLEN
    )
}

/// The netmask of a prefix length.
pub fn mask(prefix: u8) -> [u8; 4] {
    let bits = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    bits.to_be_bytes()
}

/// The prefix length of a netmask (EINVAL if its ones are not contiguous).
fn prefix_of(mask: [u8; 4]) -> Result<u8, Errno> {
    let bits = u32::from_be_bytes(mask);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(ones as u8)
}

/// The classful prefix Linux gives an address set without a mask.
fn classful(addr: [u8; 4]) -> u8 {
    match addr[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

fn sockaddr_in(addr: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..2].copy_from_slice(&(crate::inet::AF_INET as u16).to_le_bytes());
    b[4..8].copy_from_slice(&addr);
    b
}

/// The IPv4 address in a `struct sockaddr` (EINVAL for another family).
fn in_addr(b: &[u8]) -> Result<[u8; 4], Errno> {
    let b = b.get(..8).ok_or(Errno::EINVAL)?;
    if u16::from_le_bytes([b[0], b[1]]) != crate::inet::AF_INET as u16 {
        return Err(Errno::EINVAL);
    }
    Ok([b[4], b[5], b[6], b[7]])
}

/// Interfaces as `ifconfig` lists them: `lo` (index 1), then the cards.
pub fn interface_names() -> Vec<(u32, alloc::string::String)> {
    let mut names = alloc::vec![(tessera_cell_api::netstack::LOOPBACK_INDEX, alloc::string::String::from("lo"))];
    names.extend(net::interfaces().iter().map(|i| (i.index, i.name.clone())));
    names
}

/// Answers an interface ioctl on `ifreq` (read from and written back to
/// the caller): ENODEV for an interface that does not exist, EPERM for a
/// change without `admin` (CAP_NET_ADMIN).
pub fn interface_ioctl(request: u64, ifreq: &mut [u8; IFREQ], admin: bool) -> Result<(), Errno> {
    let lo_present = crate::inet::available();
    if request == SIOCGIFNAME {
        let index = u32::from_le_bytes([ifreq[16], ifreq[17], ifreq[18], ifreq[19]]);
        let name = if index == tessera_cell_api::netstack::LOOPBACK_INDEX && lo_present {
            alloc::string::String::from("lo")
        } else {
            net::interface(index).ok_or(Errno::ENODEV)?.name.clone()
        };
        ifreq[..16].fill(0);
        let n = name.len().min(15);
        ifreq[..n].copy_from_slice(&name.as_bytes()[..n]);
        return Ok(());
    }
    let len = ifreq[..16].iter().position(|&b| b == 0).unwrap_or(16);
    let name = core::str::from_utf8(&ifreq[..len]).map_err(|_| Errno::ENODEV)?;
    let setting = matches!(request, SIOCSIFFLAGS | SIOCSIFADDR | SIOCSIFBRDADDR | SIOCSIFNETMASK | SIOCSIFMTU);
    if name == "lo" && lo_present {
        if setting && !admin {
            return Err(Errno::EPERM);
        }
        let out = &mut ifreq[16..];
        let input: [u8; 24] = out.try_into().unwrap_or([0; 24]);
        out.fill(0);
        match request {
            SIOCGIFINDEX => out[..4].copy_from_slice(&tessera_cell_api::netstack::LOOPBACK_INDEX.to_le_bytes()),
            SIOCGIFFLAGS => out[..2].copy_from_slice(&(IFF_UP | IFF_LOOPBACK | IFF_RUNNING).to_le_bytes()),
            SIOCGIFMTU => out[..4].copy_from_slice(&65536u32.to_le_bytes()),
            SIOCGIFHWADDR => out[..2].copy_from_slice(&ARPHRD_LOOPBACK.to_le_bytes()),
            SIOCGIFADDR => out[..16].copy_from_slice(&sockaddr_in([127, 0, 0, 1])),
            SIOCGIFNETMASK => out[..16].copy_from_slice(&sockaddr_in([255, 0, 0, 0])),
            SIOCGIFBRDADDR => out[..16].copy_from_slice(&sockaddr_in([0; 4])),
            SIOCGIFMETRIC => {}
            SIOCGIFTXQLEN => out[..4].copy_from_slice(&1000u32.to_le_bytes()),
            // lo stays 127.0.0.1/8 and up (the stack serves it).
            SIOCSIFFLAGS | SIOCSIFMTU | SIOCSIFBRDADDR => out.copy_from_slice(&input),
            SIOCSIFADDR if in_addr(&input)? == [127, 0, 0, 1] => out.copy_from_slice(&input),
            SIOCSIFNETMASK if in_addr(&input)? == [255, 0, 0, 0] => out.copy_from_slice(&input),
            _ => return Err(Errno::EOPNOTSUPP),
        }
        return Ok(());
    }
    let interface = net::interfaces().into_iter().find(|i| i.name == name).ok_or(Errno::ENODEV)?;
    if setting && !admin {
        return Err(Errno::EPERM);
    }
    let out = &mut ifreq[16..];
    let input: [u8; 24] = out.try_into().unwrap_or([0; 24]);
    let (addr, prefix) = interface.address();
    if setting {
        match request {
            SIOCSIFFLAGS => interface.set_up(u16::from_le_bytes([input[0], input[1]]) & IFF_UP != 0),
            SIOCSIFADDR => {
                let new = in_addr(&input)?;
                if new[0] == 127 || new[0] >= 224 {
                    return Err(Errno::EINVAL);
                }
                interface.set_address(new, if new == [0; 4] { 0 } else { classful(new) });
            }
            SIOCSIFNETMASK => {
                let p = prefix_of(in_addr(&input)?)?;
                if addr == [0; 4] {
                    return Err(Errno::EADDRNOTAVAIL);
                }
                interface.set_address(addr, p);
            }
            SIOCSIFBRDADDR => {}
            SIOCSIFMTU => {
                let mtu = u32::from_le_bytes([input[0], input[1], input[2], input[3]]);
                if mtu != 1500 {
                    return Err(Errno::EINVAL);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        return Ok(());
    }
    out.fill(0);
    match request {
        SIOCGIFINDEX => out[..4].copy_from_slice(&interface.index.to_le_bytes()),
        SIOCGIFFLAGS => {
            let up = if interface.is_up() { IFF_UP } else { 0 };
            let running = if interface.is_up() && interface.link_up() { IFF_RUNNING } else { 0 };
            out[..2].copy_from_slice(&(up | IFF_BROADCAST | IFF_MULTICAST | running).to_le_bytes());
        }
        SIOCGIFMTU => out[..4].copy_from_slice(&1500u32.to_le_bytes()),
        SIOCGIFHWADDR => {
            out[..2].copy_from_slice(&ARPHRD_ETHER.to_le_bytes());
            out[2..8].copy_from_slice(&interface.mac);
        }
        SIOCGIFMETRIC => {}
        SIOCGIFTXQLEN => out[..4].copy_from_slice(&1000u32.to_le_bytes()),
        _ if addr == [0; 4] => return Err(Errno::EADDRNOTAVAIL),
        SIOCGIFADDR => out[..16].copy_from_slice(&sockaddr_in(addr)),
        SIOCGIFNETMASK => out[..16].copy_from_slice(&sockaddr_in(mask(prefix))),
        SIOCGIFBRDADDR => {
            let m = u32::from_be_bytes(mask(prefix));
            let b = (u32::from_be_bytes(addr) | !m).to_be_bytes();
            out[..16].copy_from_slice(&sockaddr_in(b));
        }
        _ => return Err(Errno::EINVAL),
    }
    Ok(())
}

/// `SIOCADDRT`/`SIOCDELRT` on a `struct rtentry`: the default route
/// (destination and mask 0.0.0.0, through a gateway on a connected
/// network); a route to a connected network is there already.
pub fn route_ioctl(request: u64, rt: &[u8; RTENTRY], admin: bool) -> Result<(), Errno> {
    if !admin {
        return Err(Errno::EPERM);
    }
    let dst = in_addr(&rt[8..24])?;
    let flags = u16::from_le_bytes([rt[56], rt[57]]);
    let genmask = in_addr(&rt[40..56]).unwrap_or([0; 4]);
    let gateway = if flags & RTF_GATEWAY != 0 { in_addr(&rt[24..40])? } else { [0; 4] };
    let _ = RTF_UP;
    let connected = |gw: [u8; 4]| {
        net::interfaces().iter().any(|i| {
            let (a, p) = i.address();
            let m = u32::from_be_bytes(mask(p));
            a != [0; 4] && u32::from_be_bytes(a) & m == u32::from_be_bytes(gw) & m
        })
    };
    if dst == [0; 4] && genmask == [0; 4] {
        if request == SIOCDELRT {
            if crate::inet::gateway() == [0; 4] {
                return Err(Errno::ESRCH);
            }
            return crate::inet::set_gateway([0; 4]);
        }
        if gateway == [0; 4] {
            return Err(Errno::EINVAL);
        }
        if !connected(gateway) {
            return Err(Errno::ENETUNREACH);
        }
        if crate::inet::gateway() != [0; 4] {
            return Err(Errno::EEXIST);
        }
        return crate::inet::set_gateway(gateway);
    }
    // A route to a network an interface is on: the stack has it.
    if gateway == [0; 4] && connected(dst) {
        return if request == SIOCADDRT { Err(Errno::EEXIST) } else { Ok(()) };
    }
    Err(Errno::EOPNOTSUPP)
}
