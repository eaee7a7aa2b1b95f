//! The socket system calls. Families so far: `AF_PACKET` (see
//! `crate::socket`) and `AF_INET` (TCP, UDP and ping sockets over the
//! stack cell, see `crate::inet`), `AF_UNIX` (`crate::unix`, with the
//! system calls in `super::unix`); the others give EAFNOSUPPORT.

use crate::errno::{Errno, SysResult};
use crate::inet::{self, AF_INET, InetSocket, SOCK_STREAM};
use crate::process::Process;
use crate::socket::{self, AF_PACKET, LinkAddr, PacketSocket, SOCK_DGRAM, SOCK_RAW, SOCKADDR_LL};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const SOCK_TYPE_MASK: u64 = 0xf;
const MSG_PEEK: u64 = 2;
const MSG_TRUNC: u64 = 0x20;
const MSG_DONTWAIT: u64 = 0x40;
const SOL_SOCKET: u64 = 1;
const SO_REUSEADDR: u64 = 2;
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_DONTROUTE: u64 = 5;
const SO_BROADCAST: u64 = 6;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_KEEPALIVE: u64 = 9;
const SO_OOBINLINE: u64 = 10;
const SO_LINGER: u64 = 13;
const SO_REUSEPORT: u64 = 15;
const SO_BINDTODEVICE: u64 = 25;
const SO_RCVLOWAT: u64 = 18;
const SO_RCVTIMEO: u64 = 20;
const SO_SNDTIMEO: u64 = 21;
const SO_ACCEPTCONN: u64 = 30;
const SO_SNDBUFFORCE: u64 = 32;
const SO_RCVBUFFORCE: u64 = 33;
const SOL_IP: u64 = 0;
const IP_TOS: u64 = 1;
const IP_TTL: u64 = 2;
const SOL_TCP: u64 = 6;
const TCP_NODELAY: u64 = 1;
const TCP_MAXSEG: u64 = 2;
const TCP_KEEPIDLE: u64 = 4;
const TCP_KEEPINTVL: u64 = 5;
const TCP_KEEPCNT: u64 = 6;
const MSG_WAITALL: u64 = 0x100;
const MSG_NOSIGNAL: u64 = 0x4000;
const SO_PROTOCOL: u64 = 38;
const SO_DOMAIN: u64 = 39;
/// Most iovecs in one message (`UIO_MAXIOV`).
const MAX_IOV: u64 = 1024;
/// Largest datagram a packet socket moves (a frame is 1514 bytes).
const MAX_DATAGRAM: usize = 65536;

/// Bytes of a socket address the kernel reads (`sockaddr_storage`).
const MAX_ADDR: u64 = 128;

pub(super) fn socket(p: &mut Process, family: u64, kind: u64, protocol: u64) -> SysResult {
    // Linux: flags other than NONBLOCK/CLOEXEC, or a type past SOCK_PACKET
    // (10), are EINVAL whatever the family.
    if kind & !(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 || kind & SOCK_TYPE_MASK > 10 {
        return Err(Errno::EINVAL);
    }
    match family as u32 {
        crate::netlink::AF_NETLINK => super::netlink::socket(p, (kind & SOCK_TYPE_MASK) as u32, protocol, kind & SOCK_NONBLOCK != 0, kind & SOCK_CLOEXEC != 0),
        crate::unix::AF_UNIX => super::unix::socket(p, (kind & SOCK_TYPE_MASK) as u32, protocol, kind & SOCK_NONBLOCK != 0, kind & SOCK_CLOEXEC != 0),
        AF_PACKET => {
            let ty = (kind & SOCK_TYPE_MASK) as u32;
            if ty != SOCK_DGRAM && ty != SOCK_RAW {
                return Err(Errno::ESOCKTNOSUPPORT);
            }
            if !p.info.credentials().capable(crate::process::cap::NET_RAW) {
                return Err(Errno::EPERM);
            }
            // The protocol comes in network order.
            let protocol = u16::from_be(protocol as u16);
            let socket = socket::packet_socket(ty, protocol, kind & SOCK_NONBLOCK != 0);
            p.files.insert(socket, 0, kind & SOCK_CLOEXEC != 0)
        }
        AF_INET => {
            use tessera_cell_api::netstack::Protocol;
            let ty = (kind & SOCK_TYPE_MASK) as u32;
            let proto = match (ty, protocol as u32) {
                (SOCK_STREAM, 0 | inet::IPPROTO_TCP) => Protocol::Tcp,
                (SOCK_DGRAM, 0 | inet::IPPROTO_UDP) => Protocol::Udp,
                // A ping socket (every group may, as Debian's
                // net.ipv4.ping_group_range is set).
                (SOCK_DGRAM, inet::IPPROTO_ICMP) => Protocol::Icmp,
                (SOCK_RAW, _) if !p.info.credentials().capable(crate::process::cap::NET_RAW) => return Err(Errno::EPERM),
                (SOCK_RAW, inet::IPPROTO_ICMP) => Protocol::RawIcmp,
                // Other raw sockets serve the interface ioctls only.
                (SOCK_RAW, _) => return p.files.insert(inet::raw_socket(kind & SOCK_NONBLOCK != 0), 0, kind & SOCK_CLOEXEC != 0),
                (SOCK_STREAM | SOCK_DGRAM, _) => return Err(Errno::EPROTONOSUPPORT),
                _ => return Err(Errno::ESOCKTNOSUPPORT),
            };
            if !inet::available() {
                return Err(Errno::EAFNOSUPPORT);
            }
            let socket = inet::socket(ty, proto, kind & SOCK_NONBLOCK != 0)?;
            p.files.insert(socket, 0, kind & SOCK_CLOEXEC != 0)
        }
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// The socket `fd` names: EBADF, or ENOTSOCK for another file.
fn any_socket(p: &Process, fd: u64) -> Result<Arc<dyn crate::files::File>, Errno> {
    let file = p.files.get(fd)?;
    if file.as_packet_socket().is_none() && file.as_inet_socket().is_none() && file.as_unix_socket().is_none() && file.as_netlink_socket().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(file)
}

/// Reads an `AF_INET` address for `bind`/`connect`/`sendto`: EINVAL when
/// shorter than `sockaddr_in`, EAFNOSUPPORT for another family (`unspec`
/// says whether `AF_UNSPEC` is taken, returned as None).
fn inet_addr(p: &Process, addr: u64, len: u64, unspec: bool) -> Result<Option<tessera_cell_api::netstack::Endpoint>, Errno> {
    if len > MAX_ADDR {
        return Err(Errno::EINVAL);
    }
    if unspec && len >= 2 {
        let family = read_addr(p, addr, 2)?;
        if family == [0, 0] {
            return Ok(None);
        }
    }
    if (len as i32) < inet::SOCKADDR_IN as i32 {
        return Err(Errno::EINVAL);
    }
    let (family, endpoint) = inet::parse_addr(&read_addr(p, addr, len)?)?;
    // AF_UNSPEC with INADDR_ANY is taken as AF_INET (Linux's inet_bind
    // does so for old programs).
    if u32::from(family) != AF_INET && !(family == 0 && endpoint.addr == [0; 4]) {
        return Err(Errno::EAFNOSUPPORT);
    }
    Ok(Some(endpoint))
}

fn with_packet<R>(file: &Arc<dyn crate::files::File>, f: impl FnOnce(&PacketSocket) -> R) -> Result<R, Errno> {
    file.as_packet_socket().map(f).ok_or(Errno::ENOTSOCK)
}

/// Reads a socket address of `len` bytes (EINVAL past 128, EFAULT).
pub(super) fn read_addr(p: &Process, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len > MAX_ADDR {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; len as usize];
    p.memory.read(addr, &mut bytes)?;
    Ok(bytes)
}

/// The bytes the caller has room for, from the `socklen_t` at `len_ptr`
/// (EINVAL when negative).
pub(super) fn room(p: &Process, len_ptr: u64) -> Result<usize, Errno> {
    usize::try_from(super::io::read_u32(p, len_ptr)? as i32).map_err(|_| Errno::EINVAL)
}

/// Writes `name` (`full` bytes long) to `addr`, at most the `*len_ptr`
/// bytes the caller has room for, and the full length to `*len_ptr`.
pub(super) fn write_addr(p: &Process, addr: u64, len_ptr: u64, name: &[u8], full: usize) -> Result<(), Errno> {
    if addr == 0 || len_ptr == 0 {
        return Ok(());
    }
    let n = room(p, len_ptr)?.min(full).min(name.len());
    p.memory.write(addr, &name[..n])?;
    p.memory.write(len_ptr, &(full as u32).to_le_bytes())
}

/// `sockaddr_ll`'s length as Linux reports it: up to the address bytes used.
fn link_len(addr: &LinkAddr) -> usize {
    12 + usize::from(addr.halen).min(8)
}

pub(super) fn bind(p: &mut Process, fd: u64, addr: u64, len: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::bind(p, s, addr, len);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::bind(p, s, addr, len);
    }
    if let Some(s) = file.as_inet_socket() {
        let local = inet_addr(p, addr, len, false)?.ok_or(Errno::EAFNOSUPPORT)?;
        s.bind(local, p.info.credentials().capable(crate::process::cap::NET_BIND_SERVICE))?;
        return Ok(0);
    }
    if len < SOCKADDR_LL as u64 {
        return Err(Errno::EINVAL);
    }
    let link = LinkAddr::parse(&read_addr(p, addr, len.min(MAX_ADDR))?)?;
    with_packet(&file, |s| s.bind(&link))??;
    Ok(0)
}

pub(super) fn getsockname(p: &mut Process, fd: u64, addr: u64, len_ptr: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::getsockname(p, s, addr, len_ptr);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::getsockname(p, s, addr, len_ptr);
    }
    if let Some(s) = file.as_inet_socket() {
        write_addr(p, addr, len_ptr, &inet::addr_bytes(&s.local()), inet::SOCKADDR_IN)?;
        return Ok(0);
    }
    let name = with_packet(&file, PacketSocket::name)?;
    write_addr(p, addr, len_ptr, &name.bytes(), link_len(&name))?;
    Ok(0)
}

pub(super) fn getpeername(p: &mut Process, fd: u64, addr: u64, len_ptr: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::getpeername(p, s, addr, len_ptr);
    }
    if file.as_netlink_socket().is_some() {
        return super::netlink::getpeername(p, addr, len_ptr);
    }
    let s = file.as_inet_socket().ok_or(Errno::EOPNOTSUPP)?;
    let peer = s.peer()?;
    write_addr(p, addr, len_ptr, &inet::addr_bytes(&peer), inet::SOCKADDR_IN)?;
    Ok(0)
}

pub(super) fn connect(p: &mut Process, fd: u64, addr: u64, len: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::connect(p, s, addr, len);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::connect(p, s, addr, len);
    }
    let s = file.as_inet_socket().ok_or(Errno::EOPNOTSUPP)?;
    let unspec = s.kind() != SOCK_STREAM;
    let remote = inet_addr(p, addr, len, unspec)?.unwrap_or_default();
    let interrupted = p.interrupt_check();
    s.connect(remote, &interrupted)?;
    Ok(0)
}

pub(super) fn listen(p: &mut Process, fd: u64, backlog: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    // Linux caps the backlog at net.core.somaxconn (4096); negative is 0.
    let backlog = (backlog as i32).clamp(0, 4096) as u32;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::listen(p, s, backlog as usize);
    }
    let s = file.as_inet_socket().ok_or(Errno::EOPNOTSUPP)?;
    s.listen(backlog)?;
    Ok(0)
}

pub(super) fn accept(p: &mut Process, fd: u64, addr: u64, len_ptr: u64, flags: u64) -> SysResult {
    if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    let file = any_socket(p, fd)?;
    p.files.check_room()?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::accept(p, s, addr, len_ptr, flags & SOCK_NONBLOCK != 0, flags & SOCK_CLOEXEC != 0);
    }
    let s = file.as_inet_socket().ok_or(Errno::EOPNOTSUPP)?;
    if addr != 0 && len_ptr != 0 {
        room(p, len_ptr)?;
    }
    let interrupted = p.interrupt_check();
    let (conn, peer) = s.accept(flags & SOCK_NONBLOCK != 0, &interrupted)?;
    let fd = p.files.insert(conn, 0, flags & SOCK_CLOEXEC != 0)?;
    write_addr(p, addr, len_ptr, &inet::addr_bytes(&peer), inet::SOCKADDR_IN)?;
    Ok(fd)
}

pub(super) fn shutdown(p: &mut Process, fd: u64, how: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        s.shutdown(how)?;
        return Ok(0);
    }
    let s = file.as_inet_socket().ok_or(Errno::EOPNOTSUPP)?;
    s.shutdown(how)?;
    Ok(0)
}

pub(super) fn socketpair(p: &mut Process, family: u64, kind: u64, protocol: u64, sv: u64) -> SysResult {
    if kind & !(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 || kind & SOCK_TYPE_MASK > 10 {
        return Err(Errno::EINVAL);
    }
    match family as u32 {
        crate::unix::AF_UNIX => super::unix::socketpair(p, (kind & SOCK_TYPE_MASK) as u32, protocol, kind & SOCK_NONBLOCK != 0, kind & SOCK_CLOEXEC != 0, sv),
        AF_PACKET | AF_INET | crate::netlink::AF_NETLINK => Err(Errno::EOPNOTSUPP),
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

fn destination(p: &Process, addr: u64, len: u64) -> Result<Option<LinkAddr>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    if len < SOCKADDR_LL as u64 {
        return Err(Errno::EINVAL);
    }
    LinkAddr::parse(&read_addr(p, addr, len.min(MAX_ADDR))?).map(Some)
}

/// Sends on an `AF_INET` socket; EPIPE raises SIGPIPE unless MSG_NOSIGNAL.
fn inet_send(p: &Process, s: &InetSocket, data: &[u8], to: Option<tessera_cell_api::netstack::Endpoint>, flags: u64) -> SysResult {
    let interrupted = p.interrupt_check();
    let result = s.send(data, to, flags & MSG_DONTWAIT != 0, &interrupted);
    if result == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        p.thread.send_signal(13, crate::signal::SigInfo::default());
    }
    result
}

/// Where a datagram goes: None for a stream (the address is ignored, as
/// Linux does for a connected TCP socket).
fn inet_destination(p: &Process, s: &InetSocket, addr: u64, len: u64) -> Result<Option<tessera_cell_api::netstack::Endpoint>, Errno> {
    if addr == 0 || s.kind() == SOCK_STREAM {
        return Ok(None);
    }
    inet_addr(p, addr, len, false)
}

pub(super) fn sendto(p: &mut Process, fd: u64, buf: u64, len: u64, flags: u64, addr: u64, addr_len: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::sendto(p, s, buf, len, flags, addr, addr_len);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::sendto(p, s, buf, len, addr, addr_len);
    }
    if let Some(s) = file.as_inet_socket() {
        let to = inet_destination(p, s, addr, addr_len)?;
        let len = if s.kind() == SOCK_STREAM { len.min(1 << 20) } else { len };
        if len as usize > MAX_DATAGRAM {
            return Err(Errno::EMSGSIZE);
        }
        let mut data = vec![0u8; len as usize];
        p.memory.read(buf, &mut data)?;
        return inet_send(p, s, &data, to, flags);
    }
    let to = destination(p, addr, addr_len)?;
    if len as usize > MAX_DATAGRAM {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = vec![0u8; len as usize];
    p.memory.read(buf, &mut data)?;
    with_packet(&file, |s| s.send(&data, to.as_ref()))?
}

pub(super) fn recvfrom(p: &mut Process, fd: u64, buf: u64, len: u64, flags: u64, addr: u64, len_ptr: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::recvfrom(p, s, buf, len, flags, addr, len_ptr);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::recvfrom(p, s, buf, len, flags, addr, len_ptr);
    }
    if let Some(s) = file.as_inet_socket() {
        let mut data = vec![0u8; (len as usize).min(1 << 20)];
        let interrupted = p.interrupt_check();
        let (n, full, from) = s.recv(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, flags & MSG_WAITALL != 0, &interrupted)?;
        p.memory.write(buf, &data[..n])?;
        if s.kind() != SOCK_STREAM {
            write_addr(p, addr, len_ptr, &inet::addr_bytes(&from), inet::SOCKADDR_IN)?;
        } else if addr != 0 && len_ptr != 0 {
            // Linux leaves a stream's address untouched and says 0 bytes.
            p.memory.write(len_ptr, &0u32.to_le_bytes())?;
        }
        return Ok(if flags & MSG_TRUNC != 0 { full } else { n } as u64);
    }
    let mut data = vec![0u8; (len as usize).min(MAX_DATAGRAM)];
    let interrupted = p.interrupt_check();
    let (n, full, from) = with_packet(&file, |s| s.receive(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, &interrupted))??;
    p.memory.write(buf, &data[..n])?;
    write_addr(p, addr, len_ptr, &from.bytes(), link_len(&from))?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { n } as u64)
}

/// A `struct msghdr`.
pub(super) struct MsgHdr {
    pub name: u64,
    pub name_len: u64,
    pub iov: Vec<(u64, u64)>,
    /// The control buffer and its length.
    pub control: u64,
    pub control_len: u64,
}

impl MsgHdr {
    /// The bytes the iovecs name, read from user memory, at most `limit`:
    /// past it, EMSGSIZE when the message must go `whole`, else the rest
    /// is left out (a stream's short send). ENOBUFS when the heap has no
    /// room.
    pub fn gather(&self, p: &Process, limit: usize, whole: bool) -> Result<Vec<u8>, Errno> {
        let mut data = Vec::new();
        for &(base, len) in &self.iov {
            let take = (len as usize).min(limit.saturating_sub(data.len()));
            if whole && take < len as usize {
                return Err(Errno::EMSGSIZE);
            }
            let at = data.len();
            data.try_reserve_exact(take).map_err(|_| Errno::ENOBUFS)?;
            data.resize(at + take, 0);
            p.memory.read(base, &mut data[at..])?;
        }
        Ok(data)
    }

    /// Bytes the iovecs have room for.
    pub fn room(&self) -> u64 {
        self.iov.iter().map(|&(_, len)| len).fold(0, u64::saturating_add)
    }

    /// Copies received `data` into the iovecs, in order.
    pub fn scatter(&self, p: &Process, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        for &(base, len) in &self.iov {
            if done >= data.len() {
                break;
            }
            let take = (len as usize).min(data.len() - done);
            p.memory.write(base, &data[done..done + take])?;
            done += take;
        }
        Ok(())
    }

    /// The sender's address for `recvmsg`: as much of `name` as
    /// `msg_namelen` has room for, and its `full` length into
    /// `msg_namelen` (of the header at `msg`); nothing without `msg_name`.
    pub fn put_name(&self, p: &Process, msg: u64, name: &[u8], full: usize) -> Result<(), Errno> {
        if self.name == 0 {
            return Ok(());
        }
        let k = (self.name_len as usize).min(full).min(name.len());
        p.memory.write(self.name, &name[..k])?;
        p.memory.write(msg.wrapping_add(8), &(full as u32).to_le_bytes())
    }
}

pub(super) fn read_msghdr(p: &Process, msg: u64) -> Result<MsgHdr, Errno> {
    let mut raw = [0u8; 56];
    p.memory.read(msg, &mut raw)?;
    let word = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
    let (iov_addr, iov_len) = (word(16), word(24));
    if iov_len > MAX_IOV {
        return Err(Errno::EMSGSIZE);
    }
    let mut iov = Vec::new();
    for i in 0..iov_len {
        let mut entry = [0u8; 16];
        p.memory.read(iov_addr.checked_add(i * 16).ok_or(Errno::EFAULT)?, &mut entry)?;
        let base = u64::from_le_bytes(entry[..8].try_into().unwrap_or([0; 8]));
        let len = u64::from_le_bytes(entry[8..].try_into().unwrap_or([0; 8]));
        if len > isize::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        iov.push((base, len));
    }
    Ok(MsgHdr { name: word(0), name_len: u64::from(u32::from_le_bytes(raw[8..12].try_into().unwrap_or([0; 4]))), iov, control: word(32), control_len: word(40) })
}

pub(super) fn sendmsg(p: &mut Process, fd: u64, msg: u64, flags: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    let hdr = read_msghdr(p, msg)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::sendmsg(p, s, &hdr, flags);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::sendmsg(p, s, &hdr);
    }
    if let Some(s) = file.as_inet_socket() {
        let to = inet_destination(p, s, hdr.name, hdr.name_len)?;
        let stream = s.kind() == SOCK_STREAM;
        let data = hdr.gather(p, if stream { 1 << 20 } else { MAX_DATAGRAM }, !stream)?;
        return inet_send(p, s, &data, to, flags);
    }
    let to = destination(p, hdr.name, hdr.name_len)?;
    let data = hdr.gather(p, MAX_DATAGRAM, true)?;
    with_packet(&file, |s| s.send(&data, to.as_ref()))?
}

pub(super) fn recvmsg(p: &mut Process, fd: u64, msg: u64, flags: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    let hdr = read_msghdr(p, msg)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::recvmsg(p, s, msg, &hdr, flags);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::recvmsg(p, s, msg, &hdr, flags);
    }
    let room = hdr.room();
    let interrupted = p.interrupt_check();
    let (data, n, full, name, name_len) = if let Some(s) = file.as_inet_socket() {
        let mut data = vec![0u8; (room as usize).min(1 << 20)];
        let (n, full, from) = s.recv(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, flags & MSG_WAITALL != 0, &interrupted)?;
        let (name, name_len) = if s.kind() == SOCK_STREAM { (None, 0) } else { (Some(inet::addr_bytes(&from).to_vec()), inet::SOCKADDR_IN) };
        (data, n, full, name, name_len)
    } else {
        let mut data = vec![0u8; (room as usize).min(MAX_DATAGRAM)];
        let (n, full, from) = with_packet(&file, |s| s.receive(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, &interrupted))??;
        (data, n, full, Some(from.bytes().to_vec()), link_len(&from))
    };
    hdr.scatter(p, &data[..n])?;
    hdr.put_name(p, msg, &name.unwrap_or_default(), name_len)?;
    // No control messages; MSG_TRUNC when the frame did not fit.
    // (`msg` was read whole above: these fields are inside it.)
    p.memory.write(msg.wrapping_add(40), &0u64.to_le_bytes())?;
    let out_flags: u32 = if full > n { MSG_TRUNC as u32 } else { 0 };
    p.memory.write(msg.wrapping_add(48), &out_flags.to_le_bytes())?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { n } as u64)
}

/// Reads an option value: an `int` (at least 4 bytes, EINVAL).
pub(super) fn int_value(p: &Process, value: u64, len: u64) -> Result<i32, Errno> {
    if (len as i32) < 4 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 4];
    p.memory.read(value, &mut b)?;
    Ok(i32::from_le_bytes(b))
}

/// Reads a `struct timeval` option as nanoseconds (0: none).
pub(super) fn timeval_value(p: &Process, value: u64, len: u64) -> Result<u64, Errno> {
    if (len as i32) < 16 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 16];
    p.memory.read(value, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let usec = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EDOM);
    }
    if sec < 0 {
        return Ok(0);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(usec as u64 * 1000))
}

/// `SO_BINDTODEVICE`: an interface name (up to 15 bytes, NUL-ended or
/// not; empty unbinds), root only (CAP_NET_RAW), ENODEV for a name that
/// is no interface. A packet socket then receives from that interface
/// only; an `AF_INET` socket has one interface besides `lo` to use.
fn bind_to_device(p: &Process, file: &Arc<dyn crate::files::File>, value: u64, len: u64) -> SysResult {
    if !p.info.credentials().capable(crate::process::cap::NET_RAW) {
        return Err(Errno::EPERM);
    }
    let n = (len as usize).min(16);
    let mut name = vec![0u8; n];
    p.memory.read(value, &mut name)?;
    let end = name.iter().position(|&b| b == 0).unwrap_or(n);
    let name = core::str::from_utf8(&name[..end]).map_err(|_| Errno::ENODEV)?;
    let index = if name.is_empty() {
        0
    } else {
        socket::interface_names().into_iter().find(|(_, n)| n == name).map(|(i, _)| i).ok_or(Errno::ENODEV)?
    };
    if let Some(packet) = file.as_packet_socket() {
        packet.bind(&LinkAddr { ifindex: index, ..LinkAddr::default() })?;
    }
    Ok(0)
}

pub(super) fn setsockopt(p: &mut Process, fd: u64, level: u64, name: u64, value: u64, len: u64) -> SysResult {
    use tessera_cell_api::netstack::SockOption;
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::setsockopt(p, s, level, name, value, len);
    }
    if file.as_netlink_socket().is_some() {
        return super::netlink::setsockopt(p, level, value, len);
    }
    if level == SOL_SOCKET && name == SO_BINDTODEVICE {
        return bind_to_device(p, &file, value, len);
    }
    let Some(s) = file.as_inet_socket() else {
        // No other option changes anything a packet socket does yet.
        return Err(Errno::ENOPROTOOPT);
    };
    let privileged = p.info.credentials().capable(crate::process::cap::NET_ADMIN);
    match (level, name) {
        (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => {
            let ns = timeval_value(p, value, len)?;
            let mut o = s.options.lock();
            if name == SO_RCVTIMEO { o.rcv_timeout = ns } else { o.snd_timeout = ns }
        }
        (SOL_SOCKET, SO_LINGER) => {
            if (len as i32) < 8 {
                return Err(Errno::EINVAL);
            }
            let mut b = [0u8; 8];
            p.memory.read(value, &mut b)?;
            let on = i32::from_le_bytes([b[0], b[1], b[2], b[3]]) != 0;
            let secs = i32::from_le_bytes([b[4], b[5], b[6], b[7]]).max(0) as u32;
            s.options.lock().linger = (on, secs);
        }
        (SOL_SOCKET, _) => {
            let v = int_value(p, value, len)?;
            let on = v != 0;
            match name {
                SO_REUSEADDR => {
                    s.options.lock().reuse_addr = on;
                    s.set_option(SockOption::ReuseAddr(on))?;
                }
                SO_REUSEPORT => s.options.lock().reuse_port = on,
                SO_BROADCAST => s.options.lock().broadcast = on,
                SO_KEEPALIVE => {
                    s.options.lock().keep_alive = on;
                    if s.kind() == SOCK_STREAM {
                        // Linux's default: probes after 2 hours idle.
                        s.set_option(SockOption::KeepAlive(on.then_some(7_200_000)))?;
                    }
                }
                // Linux doubles the value and keeps it within its limits.
                SO_RCVBUF | SO_RCVBUFFORCE | SO_SNDBUF | SO_SNDBUFFORCE => {
                    if matches!(name, SO_RCVBUFFORCE | SO_SNDBUFFORCE) && !privileged {
                        return Err(Errno::EPERM);
                    }
                    let doubled = (v.max(0) as u32).saturating_mul(2);
                    let mut o = s.options.lock();
                    if matches!(name, SO_RCVBUF | SO_RCVBUFFORCE) { o.rcvbuf = doubled.clamp(2304, 425_984) } else { o.sndbuf = doubled.clamp(4608, 425_984) }
                }
                SO_DONTROUTE | SO_OOBINLINE | SO_RCVLOWAT => {}
                _ => return Err(Errno::ENOPROTOOPT),
            }
        }
        (SOL_IP, IP_TTL) => {
            let v = int_value(p, value, len)?;
            let ttl = match v {
                -1 => 64,
                1..=255 => v as u8,
                _ => return Err(Errno::EINVAL),
            };
            s.options.lock().ttl = ttl;
            s.set_option(SockOption::Ttl(ttl))?;
        }
        (SOL_IP, IP_TOS) => {
            int_value(p, value, len)?;
        }
        (SOL_TCP, _) if s.kind() == SOCK_STREAM => {
            let v = int_value(p, value, len)?;
            match name {
                TCP_NODELAY => {
                    s.options.lock().no_delay = v != 0;
                    s.set_option(SockOption::NoDelay(v != 0))?;
                }
                TCP_KEEPIDLE | TCP_KEEPINTVL | TCP_KEEPCNT | TCP_MAXSEG => {
                    if v < 1 {
                        return Err(Errno::EINVAL);
                    }
                }
                _ => return Err(Errno::ENOPROTOOPT),
            }
        }
        (SOL_TCP, _) => return Err(Errno::EOPNOTSUPP),
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}

pub(super) fn getsockopt(p: &mut Process, fd: u64, level: u64, name: u64, value: u64, len_ptr: u64) -> SysResult {
    let file = any_socket(p, fd)?;
    if let Some(s) = file.as_unix_socket() {
        return super::unix::getsockopt(p, s, level, name, value, len_ptr);
    }
    if let Some(s) = file.as_netlink_socket() {
        return super::netlink::getsockopt(p, s, level, name, value, len_ptr);
    }
    if let Some(s) = file.as_inet_socket() {
        let o = *s.options.lock();
        let answer: Vec<u8> = match (level, name) {
            (SOL_SOCKET, SO_RCVTIMEO | SO_SNDTIMEO) => {
                let ns = if name == SO_RCVTIMEO { o.rcv_timeout } else { o.snd_timeout };
                let mut b = (ns / 1_000_000_000).to_le_bytes().to_vec();
                b.extend_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
                b
            }
            (SOL_SOCKET, SO_LINGER) => {
                let mut b = i32::from(o.linger.0).to_le_bytes().to_vec();
                b.extend_from_slice(&o.linger.1.to_le_bytes());
                b
            }
            (SOL_SOCKET, _) => {
                let v: i32 = match name {
                    SO_TYPE => s.kind() as i32,
                    SO_ERROR => s.take_error(),
                    SO_DOMAIN => AF_INET as i32,
                    SO_PROTOCOL => s.protocol() as i32,
                    SO_REUSEADDR => o.reuse_addr.into(),
                    SO_REUSEPORT => o.reuse_port.into(),
                    SO_BROADCAST => o.broadcast.into(),
                    SO_KEEPALIVE => o.keep_alive.into(),
                    SO_RCVBUF => o.rcvbuf as i32,
                    SO_SNDBUF => o.sndbuf as i32,
                    SO_ACCEPTCONN => i32::from(s.status().is_ok_and(|st| st.state == tessera_cell_api::netstack::TcpState::Listen)),
                    SO_DONTROUTE | SO_OOBINLINE => 0,
                    SO_RCVLOWAT => 1,
                    _ => return Err(Errno::ENOPROTOOPT),
                };
                v.to_le_bytes().to_vec()
            }
            (SOL_IP, IP_TTL) => i32::from(o.ttl).to_le_bytes().to_vec(),
            (SOL_IP, IP_TOS) => 0i32.to_le_bytes().to_vec(),
            (SOL_TCP, _) if s.kind() == SOCK_STREAM => {
                let v: i32 = match name {
                    TCP_NODELAY => o.no_delay.into(),
                    TCP_MAXSEG => 536,
                    TCP_KEEPIDLE => 7200,
                    TCP_KEEPINTVL => 75,
                    TCP_KEEPCNT => 9,
                    _ => return Err(Errno::ENOPROTOOPT),
                };
                v.to_le_bytes().to_vec()
            }
            (SOL_TCP, _) => return Err(Errno::EOPNOTSUPP),
            _ => return Err(Errno::ENOPROTOOPT),
        };
        let n = room(p, len_ptr)?.min(answer.len());
        p.memory.write(value, &answer[..n])?;
        p.memory.write(len_ptr, &(n as u32).to_le_bytes())?;
        return Ok(0);
    }
    if level != SOL_SOCKET {
        return Err(Errno::ENOPROTOOPT);
    }
    let answer: i32 = match name {
        SO_TYPE => with_packet(&file, |s| s.kind() as i32)?,
        SO_ERROR => 0,
        SO_DOMAIN => AF_PACKET as i32,
        SO_PROTOCOL => with_packet(&file, |s| i32::from(s.protocol()))?,
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let bytes = answer.to_le_bytes();
    let n = room(p, len_ptr)?.min(4);
    p.memory.write(value, &bytes[..n])?;
    p.memory.write(len_ptr, &(n as u32).to_le_bytes())?;
    Ok(0)
}

/// An interface ioctl on a socket (`SIOCGIFINDEX`, `SIOCSIFADDR`,
/// `SIOCADDRT`, `SIOCGIFCONF`, ...).
pub(super) fn interface_ioctl(p: &mut Process, request: u64, arg: u64) -> SysResult {
    let admin = p.info.credentials().capable(crate::process::cap::NET_ADMIN);
    match request {
        socket::SIOCADDRT | socket::SIOCDELRT => {
            let mut rt = [0u8; socket::RTENTRY];
            p.memory.read(arg, &mut rt)?;
            socket::route_ioctl(request, &rt, admin)?;
            Ok(0)
        }
        socket::SIOCGIFCONF => {
            // struct ifconf { int len; char *buf; }: one ifreq (name and
            // address) per interface with an address; a null buffer asks
            // for the length needed.
            let mut conf = [0u8; 16];
            p.memory.read(arg, &mut conf)?;
            let room = i32::from_le_bytes([conf[0], conf[1], conf[2], conf[3]]).max(0) as usize;
            let buf = u64::from_le_bytes(conf[8..16].try_into().unwrap_or([0; 8]));
            let mut records = Vec::new();
            for (_, name) in socket::interface_names() {
                let mut ifreq = [0u8; socket::IFREQ];
                let n = name.len().min(15);
                ifreq[..n].copy_from_slice(&name.as_bytes()[..n]);
                if socket::interface_ioctl(socket::SIOCGIFADDR, &mut ifreq, false).is_ok() {
                    records.push(ifreq);
                }
            }
            let mut used = 0usize;
            if buf == 0 {
                used = records.len() * socket::IFREQ;
            } else {
                for r in records {
                    if used + socket::IFREQ > room {
                        break;
                    }
                    p.memory.write(buf + used as u64, &r)?;
                    used += socket::IFREQ;
                }
            }
            p.memory.write(arg, &(used as i32).to_le_bytes())?;
            Ok(0)
        }
        _ => {
            let mut ifreq = [0u8; socket::IFREQ];
            p.memory.read(arg, &mut ifreq)?;
            socket::interface_ioctl(request, &mut ifreq, admin)?;
            p.memory.write(arg, &ifreq)?;
            Ok(0)
        }
    }
}
