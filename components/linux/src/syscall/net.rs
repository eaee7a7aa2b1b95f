//! The socket system calls. Families so far: `AF_PACKET` (see
//! `crate::socket`); the others give EAFNOSUPPORT until their cells are in.

use crate::errno::{Errno, SysResult};
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
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_PROTOCOL: u64 = 38;
const SO_DOMAIN: u64 = 39;
/// Most iovecs in one message (`UIO_MAXIOV`).
const MAX_IOV: u64 = 1024;
/// Largest datagram a packet socket moves (a frame is 1514 bytes).
const MAX_DATAGRAM: usize = 65536;

/// Bytes of a socket address the kernel reads (`sockaddr_storage`).
const MAX_ADDR: u64 = 128;

pub(super) fn socket(p: &mut Process, family: u64, kind: u64, protocol: u64) -> SysResult {
    if kind & !(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
        return Err(Errno::EINVAL);
    }
    match family as u32 {
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
        _ => Err(Errno::EAFNOSUPPORT),
    }
}

/// The packet socket `fd` names: EBADF, or ENOTSOCK for another file.
fn packet(p: &Process, fd: u64) -> Result<Arc<dyn crate::files::File>, Errno> {
    let file = p.files.get(fd)?;
    if file.as_packet_socket().is_none() {
        return Err(Errno::ENOTSOCK);
    }
    Ok(file)
}

fn with_packet<R>(file: &Arc<dyn crate::files::File>, f: impl FnOnce(&PacketSocket) -> R) -> Result<R, Errno> {
    file.as_packet_socket().map(f).ok_or(Errno::ENOTSOCK)
}

/// Reads a socket address of `len` bytes (EINVAL past 128, EFAULT).
fn read_addr(p: &Process, addr: u64, len: u64) -> Result<Vec<u8>, Errno> {
    if len > MAX_ADDR {
        return Err(Errno::EINVAL);
    }
    let mut bytes = vec![0u8; len as usize];
    p.memory.read(addr, &mut bytes)?;
    Ok(bytes)
}

/// The bytes the caller has room for, from the `socklen_t` at `len_ptr`
/// (EINVAL when negative).
fn room(p: &Process, len_ptr: u64) -> Result<usize, Errno> {
    usize::try_from(super::io::read_u32(p, len_ptr)? as i32).map_err(|_| Errno::EINVAL)
}

/// Writes `name` (`full` bytes long) to `addr`, at most the `*len_ptr`
/// bytes the caller has room for, and the full length to `*len_ptr`.
fn write_addr(p: &Process, addr: u64, len_ptr: u64, name: &[u8], full: usize) -> Result<(), Errno> {
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
    let file = packet(p, fd)?;
    if len < SOCKADDR_LL as u64 {
        return Err(Errno::EINVAL);
    }
    let link = LinkAddr::parse(&read_addr(p, addr, len.min(MAX_ADDR))?)?;
    with_packet(&file, |s| s.bind(&link))??;
    Ok(0)
}

pub(super) fn getsockname(p: &mut Process, fd: u64, addr: u64, len_ptr: u64) -> SysResult {
    let file = packet(p, fd)?;
    let name = with_packet(&file, PacketSocket::name)?;
    write_addr(p, addr, len_ptr, &name.bytes(), link_len(&name))?;
    Ok(0)
}

pub(super) fn getpeername(p: &mut Process, fd: u64) -> SysResult {
    packet(p, fd)?;
    Err(Errno::EOPNOTSUPP)
}

/// `connect`, `listen`, `accept`, `shutdown`: packet sockets have none.
pub(super) fn unsupported(p: &mut Process, fd: u64) -> SysResult {
    packet(p, fd)?;
    Err(Errno::EOPNOTSUPP)
}

pub(super) fn socketpair(_p: &mut Process, family: u64) -> SysResult {
    if family as u32 == AF_PACKET { Err(Errno::EOPNOTSUPP) } else { Err(Errno::EAFNOSUPPORT) }
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

pub(super) fn sendto(p: &mut Process, fd: u64, buf: u64, len: u64, _flags: u64, addr: u64, addr_len: u64) -> SysResult {
    let file = packet(p, fd)?;
    let to = destination(p, addr, addr_len)?;
    if len as usize > MAX_DATAGRAM {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = vec![0u8; len as usize];
    p.memory.read(buf, &mut data)?;
    with_packet(&file, |s| s.send(&data, to.as_ref()))?
}

pub(super) fn recvfrom(p: &mut Process, fd: u64, buf: u64, len: u64, flags: u64, addr: u64, len_ptr: u64) -> SysResult {
    let file = packet(p, fd)?;
    let mut data = vec![0u8; (len as usize).min(MAX_DATAGRAM)];
    let interrupted = p.interrupt_check();
    let (n, full, from) = with_packet(&file, |s| s.receive(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, &interrupted))??;
    p.memory.write(buf, &data[..n])?;
    write_addr(p, addr, len_ptr, &from.bytes(), link_len(&from))?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { n } as u64)
}

/// A `struct msghdr`.
struct MsgHdr {
    name: u64,
    name_len: u64,
    iov: Vec<(u64, u64)>,
}

fn read_msghdr(p: &Process, msg: u64) -> Result<MsgHdr, Errno> {
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
    Ok(MsgHdr { name: word(0), name_len: u64::from(u32::from_le_bytes(raw[8..12].try_into().unwrap_or([0; 4]))), iov })
}

pub(super) fn sendmsg(p: &mut Process, fd: u64, msg: u64, _flags: u64) -> SysResult {
    let file = packet(p, fd)?;
    let hdr = read_msghdr(p, msg)?;
    let to = destination(p, hdr.name, hdr.name_len)?;
    let mut data = Vec::new();
    for (base, len) in hdr.iov {
        if data.len() + len as usize > MAX_DATAGRAM {
            return Err(Errno::EMSGSIZE);
        }
        let at = data.len();
        data.resize(at + len as usize, 0);
        p.memory.read(base, &mut data[at..])?;
    }
    with_packet(&file, |s| s.send(&data, to.as_ref()))?
}

pub(super) fn recvmsg(p: &mut Process, fd: u64, msg: u64, flags: u64) -> SysResult {
    let file = packet(p, fd)?;
    let hdr = read_msghdr(p, msg)?;
    let room: u64 = hdr.iov.iter().map(|&(_, len)| len).fold(0, u64::saturating_add);
    let mut data = vec![0u8; (room as usize).min(MAX_DATAGRAM)];
    let interrupted = p.interrupt_check();
    let (n, full, from) = with_packet(&file, |s| s.receive(&mut data, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, &interrupted))??;
    let mut done = 0;
    for (base, len) in hdr.iov {
        if done >= n {
            break;
        }
        let take = (len as usize).min(n - done);
        p.memory.write(base, &data[done..done + take])?;
        done += take;
    }
    if hdr.name != 0 {
        let name = from.bytes();
        let k = (hdr.name_len as usize).min(link_len(&from));
        p.memory.write(hdr.name, &name[..k])?;
        p.memory.write(msg.wrapping_add(8), &(link_len(&from) as u32).to_le_bytes())?;
    }
    // No control messages; MSG_TRUNC when the frame did not fit.
    // (`msg` was read whole above: these fields are inside it.)
    p.memory.write(msg.wrapping_add(40), &0u64.to_le_bytes())?;
    let out_flags: u32 = if full > n { MSG_TRUNC as u32 } else { 0 };
    p.memory.write(msg.wrapping_add(48), &out_flags.to_le_bytes())?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { n } as u64)
}

pub(super) fn setsockopt(p: &mut Process, fd: u64, _level: u64, _name: u64) -> SysResult {
    packet(p, fd)?;
    // No option changes anything a packet socket does yet.
    Err(Errno::ENOPROTOOPT)
}

pub(super) fn getsockopt(p: &mut Process, fd: u64, level: u64, name: u64, value: u64, len_ptr: u64) -> SysResult {
    let file = packet(p, fd)?;
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

/// An interface ioctl on a socket (`SIOCGIFINDEX`, ...).
pub(super) fn interface_ioctl(p: &mut Process, request: u64, arg: u64) -> SysResult {
    let mut ifreq = [0u8; socket::IFREQ];
    p.memory.read(arg, &mut ifreq)?;
    socket::interface_ioctl(request, &mut ifreq)?;
    p.memory.write(arg, &ifreq)?;
    Ok(0)
}
