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
        FileStat { kind: tessera_vfs::FileType::Socket, ..crate::files::device_stat(self.ino, 0, 0o777) }
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
pub const SIOCGIFNAME: u64 = 0x8910;
pub const SIOCGIFFLAGS: u64 = 0x8913;
pub const SIOCGIFADDR: u64 = 0x8915;
pub const SIOCGIFMTU: u64 = 0x8921;
pub const SIOCGIFHWADDR: u64 = 0x8927;
pub const SIOCGIFINDEX: u64 = 0x8933;
/// Bytes of `struct ifreq`.
pub const IFREQ: usize = 40;

const IFF_UP: u16 = 0x1;
const IFF_BROADCAST: u16 = 0x2;
const IFF_RUNNING: u16 = 0x40;
const IFF_MULTICAST: u16 = 0x1000;

/// True for the interface ioctls [`interface_ioctl`] answers.
pub fn is_interface_ioctl(request: u64) -> bool {
    matches!(request, SIOCGIFNAME | SIOCGIFFLAGS | SIOCGIFADDR | SIOCGIFMTU | SIOCGIFHWADDR | SIOCGIFINDEX)
}

/// Answers an interface ioctl on `ifreq` (read from and written back to
/// the caller): ENODEV for an interface that does not exist.
pub fn interface_ioctl(request: u64, ifreq: &mut [u8; IFREQ]) -> Result<(), Errno> {
    if request == SIOCGIFNAME {
        let index = u32::from_le_bytes([ifreq[16], ifreq[17], ifreq[18], ifreq[19]]);
        let interface = net::interface(index).ok_or(Errno::ENODEV)?;
        ifreq[..16].fill(0);
        let name = interface.name.as_bytes();
        let n = name.len().min(15);
        ifreq[..n].copy_from_slice(&name[..n]);
        return Ok(());
    }
    let len = ifreq[..16].iter().position(|&b| b == 0).unwrap_or(16);
    let name = core::str::from_utf8(&ifreq[..len]).map_err(|_| Errno::ENODEV)?;
    let interface = net::interfaces().into_iter().find(|i| i.name == name).ok_or(Errno::ENODEV)?;
    let out = &mut ifreq[16..];
    out.fill(0);
    match request {
        SIOCGIFINDEX => out[..4].copy_from_slice(&interface.index.to_le_bytes()),
        SIOCGIFFLAGS => {
            let running = if interface.link_up() { IFF_RUNNING } else { 0 };
            out[..2].copy_from_slice(&(IFF_UP | IFF_BROADCAST | IFF_MULTICAST | running).to_le_bytes());
        }
        SIOCGIFMTU => out[..4].copy_from_slice(&1500u32.to_le_bytes()),
        SIOCGIFHWADDR => {
            out[..2].copy_from_slice(&ARPHRD_ETHER.to_le_bytes());
            out[2..8].copy_from_slice(&interface.mac);
        }
        // No address is configured yet (the stack is not in).
        SIOCGIFADDR => return Err(Errno::EADDRNOTAVAIL),
        _ => return Err(Errno::EINVAL),
    }
    Ok(())
}
