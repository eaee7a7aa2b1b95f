//! The socket system calls for `AF_NETLINK` (see `crate::netlink`).

use super::net::{MsgHdr, int_value, read_addr, room, write_addr};
use crate::errno::{Errno, SysResult};
use crate::netlink::{self, NetlinkSocket, SOCKADDR_NL};
use crate::process::{Process, cap};
use alloc::vec;
use alloc::vec::Vec;

const SOCK_DGRAM: u32 = 2;
const SOCK_RAW: u32 = 3;
const SOL_SOCKET: u64 = 1;
const SOL_NETLINK: u64 = 270;
const MSG_PEEK: u64 = 2;
const MSG_TRUNC: u64 = 0x20;
const MSG_DONTWAIT: u64 = 0x40;
/// Most bytes of requests one send takes.
const MAX_SEND: usize = 65536;

/// `socket(AF_NETLINK, ...)`: `SOCK_RAW` or `SOCK_DGRAM`, `NETLINK_ROUTE`.
pub(super) fn socket(p: &mut Process, ty: u32, protocol: u64, nonblocking: bool, cloexec: bool) -> SysResult {
    if ty != SOCK_RAW && ty != SOCK_DGRAM {
        return Err(Errno::ESOCKTNOSUPPORT);
    }
    if protocol != netlink::NETLINK_ROUTE {
        return Err(Errno::EPROTONOSUPPORT);
    }
    p.files.insert(netlink::socket(ty, nonblocking), 0, cloexec)
}

fn read_nl(p: &Process, addr: u64, len: u64) -> Result<(u32, u32), Errno> {
    if (len as i32) < SOCKADDR_NL as i32 {
        return Err(Errno::EINVAL);
    }
    netlink::parse_addr(&read_addr(p, addr, len)?)
}

pub(super) fn bind(p: &mut Process, s: &NetlinkSocket, addr: u64, len: u64) -> SysResult {
    let (port, groups) = read_nl(p, addr, len)?;
    s.bind(port, groups, p.info.pid)?;
    Ok(0)
}

pub(super) fn connect(p: &mut Process, s: &NetlinkSocket, addr: u64, len: u64) -> SysResult {
    let (port, _) = read_nl(p, addr, len)?;
    if port != 0 {
        // Only the kernel answers here.
        return Err(Errno::ECONNREFUSED);
    }
    s.bind(0, s.name().1, p.info.pid)?;
    Ok(0)
}

pub(super) fn getsockname(p: &mut Process, s: &NetlinkSocket, addr: u64, len_ptr: u64) -> SysResult {
    let (port, groups) = s.name();
    write_addr(p, addr, len_ptr, &netlink::addr_bytes(port, groups), SOCKADDR_NL)?;
    Ok(0)
}

pub(super) fn getpeername(p: &mut Process, addr: u64, len_ptr: u64) -> SysResult {
    write_addr(p, addr, len_ptr, &netlink::addr_bytes(0, 0), SOCKADDR_NL)?;
    Ok(0)
}

fn send(p: &Process, s: &NetlinkSocket, data: &[u8], addr: u64, addr_len: u64) -> SysResult {
    if addr != 0 {
        let (port, _) = read_nl(p, addr, addr_len)?;
        if port != 0 {
            return Err(Errno::ECONNREFUSED);
        }
    }
    s.send(data, p.info.credentials().capable(cap::NET_ADMIN), p.info.pid)
}

pub(super) fn sendto(p: &mut Process, s: &NetlinkSocket, buf: u64, len: u64, addr: u64, addr_len: u64) -> SysResult {
    if len as usize > MAX_SEND {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = vec![0u8; len as usize];
    p.memory.read(buf, &mut data)?;
    send(p, s, &data, addr, addr_len)
}

pub(super) fn sendmsg(p: &mut Process, s: &NetlinkSocket, hdr: &MsgHdr) -> SysResult {
    let data = hdr.gather(p, MAX_SEND, true)?;
    send(p, s, &data, hdr.name, hdr.name_len)
}

fn recv(p: &Process, s: &NetlinkSocket, room: usize, flags: u64) -> Result<(Vec<u8>, usize), Errno> {
    let interrupted = p.interrupt_check();
    s.recv(room.min(MAX_SEND), flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, &interrupted)
}

pub(super) fn recvfrom(p: &mut Process, s: &NetlinkSocket, buf: u64, len: u64, flags: u64, addr: u64, len_ptr: u64) -> SysResult {
    let (data, full) = recv(p, s, len as usize, flags)?;
    p.memory.write(buf, &data)?;
    write_addr(p, addr, len_ptr, &netlink::addr_bytes(0, 0), SOCKADDR_NL)?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { data.len() } as u64)
}

pub(super) fn recvmsg(p: &mut Process, s: &NetlinkSocket, msg: u64, hdr: &MsgHdr, flags: u64) -> SysResult {
    let (data, full) = recv(p, s, hdr.room() as usize, flags)?;
    hdr.scatter(p, &data)?;
    hdr.put_name(p, msg, &netlink::addr_bytes(0, 0), SOCKADDR_NL)?;
    p.memory.write(msg.wrapping_add(40), &0u64.to_le_bytes())?;
    let out_flags: u32 = if full > data.len() { MSG_TRUNC as u32 } else { 0 };
    p.memory.write(msg.wrapping_add(48), &out_flags.to_le_bytes())?;
    Ok(if flags & MSG_TRUNC != 0 { full } else { data.len() } as u64)
}

/// Options are taken and change nothing (memberships, buffer sizes,
/// `NETLINK_EXT_ACK`, ...).
pub(super) fn setsockopt(p: &mut Process, level: u64, value: u64, len: u64) -> SysResult {
    if level != SOL_SOCKET && level != SOL_NETLINK {
        return Err(Errno::ENOPROTOOPT);
    }
    int_value(p, value, len)?;
    Ok(0)
}

pub(super) fn getsockopt(p: &mut Process, s: &NetlinkSocket, level: u64, name: u64, value: u64, len_ptr: u64) -> SysResult {
    let v: i32 = match (level, name) {
        (SOL_SOCKET, 3) => s.kind() as i32,
        (SOL_SOCKET, 39) => netlink::AF_NETLINK as i32,
        (SOL_SOCKET, 38 | 4) => 0,
        (SOL_SOCKET, 7 | 8) => 212_992,
        (SOL_NETLINK, _) => 0,
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let n = room(p, len_ptr)?.min(4);
    p.memory.write(value, &v.to_le_bytes()[..n])?;
    p.memory.write(len_ptr, &(n as u32).to_le_bytes())?;
    Ok(0)
}
