//! The socket system calls for `AF_UNIX` (see `crate::unix`): user memory
//! in and out, names resolved in the file system, control messages.

use super::net::{MsgHdr, int_value, read_addr, room, timeval_value, write_addr};
use crate::errno::{Errno, SysResult};
use crate::files::File;
use crate::process::{Process, cap};
use crate::unix::{self, Ancillary, Name, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM, Sock, Ucred, UnixSocket};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

const SOCK_RAW: u32 = 3;
const SOL_SOCKET: u64 = 1;
const SCM_RIGHTS: u32 = 1;
const SCM_CREDENTIALS: u32 = 2;
const MSG_PEEK: u64 = 2;
const MSG_CTRUNC: u32 = 8;
const MSG_TRUNC: u64 = 0x20;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_WAITALL: u64 = 0x100;
const MSG_NOSIGNAL: u64 = 0x4000;
const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
/// Most control bytes one `sendmsg` takes (`net.core.optmem_max`).
const MAX_CONTROL: u64 = 20480;
/// Most bytes one stream send or receive moves (the rest is a short count).
const MAX_IO: usize = 1 << 20;
/// Bytes of `struct cmsghdr`.
const CMSG_HDR: usize = 16;

const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_PASSCRED: u64 = 16;
const SO_PEERCRED: u64 = 17;
const SO_RCVTIMEO: u64 = 20;
const SO_SNDTIMEO: u64 = 21;
const SO_ACCEPTCONN: u64 = 30;
const SO_PROTOCOL: u64 = 38;
const SO_DOMAIN: u64 = 39;

/// The caller's credentials as a peer sees them (`SO_PEERCRED`: the
/// effective ids).
fn peer_cred(p: &Process) -> Ucred {
    let c = p.info.credentials();
    Ucred { pid: p.info.pid, uid: c.euid, gid: c.egid }
}

/// `socket(AF_UNIX, ...)`: SOCK_RAW is a datagram socket, as on Linux.
pub(super) fn socket(p: &mut Process, ty: u32, protocol: u64, nonblocking: bool, cloexec: bool) -> SysResult {
    let kind = kind(ty, protocol)?;
    p.files.insert(unix::socket(kind, nonblocking), 0, cloexec)
}

fn kind(ty: u32, protocol: u64) -> Result<u32, Errno> {
    // Linux takes protocol 0 or PF_UNIX.
    if protocol > 1 {
        return Err(Errno::EPROTONOSUPPORT);
    }
    match ty {
        SOCK_STREAM | SOCK_DGRAM | SOCK_SEQPACKET => Ok(ty),
        SOCK_RAW => Ok(SOCK_DGRAM),
        _ => Err(Errno::ESOCKTNOSUPPORT),
    }
}

/// `socketpair(AF_UNIX, ...)`: the two descriptors go to `sv`.
pub(super) fn socketpair(p: &mut Process, ty: u32, protocol: u64, nonblocking: bool, cloexec: bool, sv: u64) -> SysResult {
    let kind = kind(ty, protocol)?;
    // Fault before any descriptor exists.
    p.memory.write(sv, &[0u8; 8])?;
    let (a, b) = unix::pair(kind, nonblocking, peer_cred(p));
    let fa = p.files.insert(a, 0, cloexec)?;
    let fb = match p.files.insert(b, 0, cloexec) {
        Ok(fd) => fd,
        Err(e) => {
            p.files.close(fa).ok();
            return Err(e);
        }
    };
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(fa as u32).to_le_bytes());
    out[4..].copy_from_slice(&(fb as u32).to_le_bytes());
    if let Err(e) = p.memory.write(sv, &out) {
        p.files.close(fa).ok();
        p.files.close(fb).ok();
        return Err(e);
    }
    Ok(0)
}

/// Reads a `sockaddr_un` of `len` bytes.
fn read_name(p: &Process, addr: u64, len: u64) -> Result<Name, Errno> {
    if (len as i32) < 0 || len as usize > unix::SOCKADDR_UN {
        return Err(Errno::EINVAL);
    }
    Name::parse(&read_addr(p, addr, len)?)
}

fn path_str(path: &[u8]) -> Result<&str, Errno> {
    core::str::from_utf8(path).map_err(|_| Errno::EINVAL)
}

/// The socket a name given to `connect` or `sendto` reaches.
fn target(p: &Process, name: &Name, kind: u32) -> Result<Arc<Sock>, Errno> {
    match name {
        Name::Path(path) => {
            let node = super::fs::socket_node(p, path_str(path)?)?;
            unix::find(name, Some(node), kind)
        }
        Name::Abstract(_) => unix::find(name, None, kind),
        Name::Unnamed => Err(Errno::EINVAL),
    }
}

pub(super) fn bind(p: &mut Process, s: &UnixSocket, addr: u64, len: u64) -> SysResult {
    let name = read_name(p, addr, len)?;
    if s.is_bound() {
        // Autobind of a bound socket changes nothing, as Linux.
        return if name == Name::Unnamed { Ok(0) } else { Err(Errno::EINVAL) };
    }
    let node = match &name {
        Name::Path(path) => Some(super::fs::make_socket_node(p, path_str(path)?)?),
        _ => None,
    };
    s.bind(name, node)?;
    Ok(0)
}

pub(super) fn connect(p: &mut Process, s: &UnixSocket, addr: u64, len: u64) -> SysResult {
    if s.kind() == SOCK_DGRAM && len >= 2 && read_addr(p, addr, 2)? == [0, 0] {
        // AF_UNSPEC: a datagram socket forgets its peer.
        s.connect(None, peer_cred(p), &p.interrupt_check())?;
        return Ok(0);
    }
    let name = read_name(p, addr, len)?;
    if name == Name::Unnamed {
        return Err(Errno::EINVAL);
    }
    let target = target(p, &name, s.kind())?;
    if s.needs_autobind() {
        s.bind(Name::Unnamed, None)?;
    }
    let interrupted = p.interrupt_check();
    s.connect(Some(target), peer_cred(p), &interrupted)?;
    Ok(0)
}

pub(super) fn listen(p: &mut Process, s: &UnixSocket, backlog: usize) -> SysResult {
    s.listen(backlog, peer_cred(p))?;
    Ok(0)
}

pub(super) fn accept(p: &mut Process, s: &UnixSocket, addr: u64, len_ptr: u64, nonblocking: bool, cloexec: bool) -> SysResult {
    if addr != 0 && len_ptr != 0 {
        room(p, len_ptr)?;
    }
    let interrupted = p.interrupt_check();
    let conn = s.accept(nonblocking, &interrupted)?;
    let peer = conn.peer_name().unwrap_or_default().to_sockaddr();
    let fd = p.files.insert(conn, 0, cloexec)?;
    write_addr(p, addr, len_ptr, &peer, peer.len())?;
    Ok(fd)
}

pub(super) fn getsockname(p: &mut Process, s: &UnixSocket, addr: u64, len_ptr: u64) -> SysResult {
    let name = s.name().to_sockaddr();
    write_addr(p, addr, len_ptr, &name, name.len())?;
    Ok(0)
}

pub(super) fn getpeername(p: &mut Process, s: &UnixSocket, addr: u64, len_ptr: u64) -> SysResult {
    let name = s.peer_name()?.to_sockaddr();
    write_addr(p, addr, len_ptr, &name, name.len())?;
    Ok(0)
}

/// Reads the control messages of a `sendmsg`: descriptors to pass
/// (`SCM_RIGHTS`, at most 253, EBADF for one not open) and credentials
/// (`SCM_CREDENTIALS`, EPERM unless they are the sender's own or it is
/// privileged). Control messages of other levels are ignored, as Linux.
/// Files and credentials a `sendmsg` passes.
type Control = (Vec<Arc<dyn File>>, Option<Ucred>);

fn read_control(p: &Process, hdr: &MsgHdr) -> Result<Control, Errno> {
    if hdr.control_len == 0 {
        return Ok((Vec::new(), None));
    }
    if hdr.control_len > MAX_CONTROL {
        return Err(Errno::ENOBUFS);
    }
    let mut control = vec![0u8; hdr.control_len as usize];
    p.memory.read(hdr.control, &mut control)?;
    let mut files = Vec::new();
    let mut cred = None;
    let mut at = 0usize;
    while at + CMSG_HDR <= control.len() {
        let word = |i: usize| u64::from_le_bytes(control[i..i + 8].try_into().unwrap_or([0; 8]));
        let len = word(at) as usize;
        if len < CMSG_HDR || len > control.len() - at {
            return Err(Errno::EINVAL);
        }
        let level = u32::from_le_bytes(control[at + 8..at + 12].try_into().unwrap_or([0; 4]));
        let ty = u32::from_le_bytes(control[at + 12..at + 16].try_into().unwrap_or([0; 4]));
        let data = &control[at + CMSG_HDR..at + len];
        if u64::from(level) == SOL_SOCKET {
            match ty {
                SCM_RIGHTS => {
                    let n = data.len() / 4;
                    if files.len() + n > unix::MAX_FDS {
                        return Err(Errno::EINVAL);
                    }
                    for fd in data.chunks_exact(4) {
                        let fd = i32::from_le_bytes([fd[0], fd[1], fd[2], fd[3]]);
                        let fd = u64::try_from(fd).map_err(|_| Errno::EBADF)?;
                        files.push(p.files.get(fd)?);
                    }
                }
                SCM_CREDENTIALS => {
                    if data.len() != 12 {
                        return Err(Errno::EINVAL);
                    }
                    let field = |i: usize| u32::from_le_bytes(data[i..i + 4].try_into().unwrap_or([0; 4]));
                    let asked = Ucred { pid: field(0), uid: field(4), gid: field(8) };
                    let c = p.info.credentials();
                    let pid_ok = asked.pid == p.info.pid || c.capable(cap::SYS_ADMIN);
                    let uid_ok = [c.ruid, c.euid, c.suid].contains(&asked.uid) || c.capable(cap::SETUID);
                    let gid_ok = [c.rgid, c.egid, c.sgid].contains(&asked.gid) || c.capable(cap::SETGID);
                    if !(pid_ok && uid_ok && gid_ok) {
                        return Err(Errno::EPERM);
                    }
                    cred = Some(asked);
                }
                _ => return Err(Errno::EINVAL),
            }
        }
        at += (len + 7) & !7;
    }
    Ok((files, cred))
}

/// Sends `data` on `s` (to the name at `addr`, if any) with the control
/// messages of `hdr`; EPIPE raises SIGPIPE unless MSG_NOSIGNAL.
fn send(p: &Process, s: &UnixSocket, data: &[u8], addr: u64, addr_len: u64, hdr: Option<&MsgHdr>, flags: u64) -> SysResult {
    let to = if addr != 0 && addr_len != 0 {
        let name = read_name(p, addr, addr_len)?;
        if name == Name::Unnamed {
            return Err(Errno::EINVAL);
        }
        if s.kind() != SOCK_DGRAM {
            // Linux ignores the address of a connected socket's send only
            // for TCP; here it is refused (EISCONN or EOPNOTSUPP).
            Some(None)
        } else {
            Some(Some(target(p, &name, s.kind())?))
        }
    } else {
        None
    };
    if s.kind() == SOCK_DGRAM && s.needs_autobind() {
        s.bind(Name::Unnamed, None)?;
    }
    let (files, cred) = match hdr {
        Some(hdr) => read_control(p, hdr)?,
        None => (Vec::new(), None),
    };
    let c = p.info.credentials();
    let privileged = c.capable(cap::SYS_RESOURCE) || c.capable(cap::SYS_ADMIN);
    let fd_limit = (!privileged).then(|| p.files.limit());
    // SCM_CREDENTIALS defaults to the real ids, as Linux's scm_send.
    let cred = Some(cred.unwrap_or(Ucred { pid: p.info.pid, uid: c.ruid, gid: c.rgid }));
    let extra = Ancillary { files, uid: c.ruid, fd_limit, cred };
    let interrupted = p.interrupt_check();
    let result = match to {
        Some(None) => {
            // A connection-oriented socket given an address.
            let e = if s.peer_name().is_ok() { Errno::EISCONN } else { Errno::EOPNOTSUPP };
            Err(e)
        }
        Some(Some(target)) => s.send(data, Some(target), extra, flags & MSG_DONTWAIT != 0, &interrupted),
        None => s.send(data, None, extra, flags & MSG_DONTWAIT != 0, &interrupted),
    };
    if result == Err(Errno::EPIPE) && flags & MSG_NOSIGNAL == 0 {
        p.thread.send_signal(13, crate::signal::SigInfo::default());
    }
    result
}

/// A zeroed buffer of `len` bytes, ENOBUFS when the heap has no room.
fn buffer(len: usize) -> Result<Vec<u8>, Errno> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Errno::ENOBUFS)?;
    v.resize(len, 0);
    Ok(v)
}

pub(super) fn sendto(p: &mut Process, s: &UnixSocket, buf: u64, len: u64, flags: u64, addr: u64, addr_len: u64) -> SysResult {
    // A stream sends what fits of a long buffer (a short count); a
    // datagram is whole or EMSGSIZE.
    let len = if s.kind() == SOCK_STREAM { (len as usize).min(MAX_IO) } else { len as usize };
    if s.kind() != SOCK_STREAM && len > unix::QUEUE_BYTES {
        return Err(Errno::EMSGSIZE);
    }
    let mut data = buffer(len)?;
    p.memory.read(buf, &mut data)?;
    send(p, s, &data, addr, addr_len, None, flags)
}

pub(super) fn sendmsg(p: &mut Process, s: &UnixSocket, hdr: &MsgHdr, flags: u64) -> SysResult {
    let stream = s.kind() == SOCK_STREAM;
    let data = hdr.gather(p, if stream { MAX_IO } else { unix::QUEUE_BYTES }, !stream)?;
    send(p, s, &data, hdr.name, hdr.name_len, Some(hdr), flags)
}

/// Receives on `s`; writes the sender's address to `addr` (length 0 for
/// an unnamed sender, as Linux).
fn recv(p: &Process, s: &UnixSocket, room: usize, flags: u64) -> Result<unix::Received, Errno> {
    let interrupted = p.interrupt_check();
    let room = if s.kind() == SOCK_STREAM { room.min(MAX_IO) } else { room.min(unix::QUEUE_BYTES) };
    s.recv(room, flags & MSG_PEEK != 0, flags & MSG_DONTWAIT != 0, flags & MSG_WAITALL != 0, &interrupted)
}

fn sender_name(got: &unix::Received) -> Vec<u8> {
    if got.from == Name::Unnamed { Vec::new() } else { got.from.to_sockaddr() }
}

pub(super) fn recvfrom(p: &mut Process, s: &UnixSocket, buf: u64, len: u64, flags: u64, addr: u64, len_ptr: u64) -> SysResult {
    let got = recv(p, s, len as usize, flags)?;
    // Data that cannot be copied out stays queued (a stream's, as Linux).
    if let Err(e) = p.memory.write(buf, &got.data) {
        if flags & MSG_PEEK == 0 {
            s.unread(got);
        }
        return Err(e);
    }
    // Descriptors no one asked for are closed (dropped here).
    let name = sender_name(&got);
    write_addr(p, addr, len_ptr, &name, name.len())?;
    Ok(if flags & MSG_TRUNC != 0 && s.kind() != SOCK_STREAM { got.full } else { got.data.len() } as u64)
}

pub(super) fn recvmsg(p: &mut Process, s: &UnixSocket, msg: u64, hdr: &MsgHdr, flags: u64) -> SysResult {
    let room = hdr.room();
    // The control buffer must take what arrives: checked before anything
    // is taken from the queue.
    let control_room = if hdr.control == 0 { 0 } else { hdr.control_len.min(MAX_CONTROL) as usize };
    if control_room > 0 {
        p.memory.populate_range(hdr.control, control_room as u64, true)?;
    }
    let got = recv(p, s, room as usize, flags)?;
    if let Err(e) = hdr.scatter(p, &got.data) {
        if flags & MSG_PEEK == 0 {
            s.unread(got);
        }
        return Err(e);
    }
    let name = sender_name(&got);
    hdr.put_name(p, msg, &name, name.len())?;
    // Control messages: credentials first, then descriptors, as many as
    // fit (the rest are closed and MSG_CTRUNC says so).
    let mut control = Vec::new();
    let mut out_flags: u32 = 0;
    if let Some(cred) = got.cred {
        if control_room >= CMSG_HDR + 12 {
            push_cmsg(&mut control, SCM_CREDENTIALS, &cred.bytes());
        } else {
            out_flags |= MSG_CTRUNC;
        }
    }
    if !got.files.is_empty() {
        let fit = control_room.saturating_sub(control.len() + CMSG_HDR) / 4;
        if fit < got.files.len() {
            out_flags |= MSG_CTRUNC;
        }
        let mut fds = Vec::new();
        for file in got.files.into_iter().take(fit) {
            match p.files.insert(file, 0, flags & MSG_CMSG_CLOEXEC != 0) {
                Ok(fd) => fds.extend_from_slice(&(fd as i32).to_le_bytes()),
                Err(_) => {
                    out_flags |= MSG_CTRUNC;
                    break;
                }
            }
        }
        if !fds.is_empty() {
            push_cmsg(&mut control, SCM_RIGHTS, &fds);
        }
    }
    let used = control.len().min(control_room);
    if used > 0 {
        p.memory.write(hdr.control, &control[..used])?;
    }
    p.memory.write(msg.wrapping_add(40), &(used as u64).to_le_bytes())?;
    if got.full > got.data.len() {
        out_flags |= MSG_TRUNC as u32;
    }
    p.memory.write(msg.wrapping_add(48), &out_flags.to_le_bytes())?;
    Ok(if flags & MSG_TRUNC != 0 && s.kind() != SOCK_STREAM { got.full } else { got.data.len() } as u64)
}

/// Appends one `SOL_SOCKET` control message (padded to 8 bytes, except
/// that `cmsg_len` counts only the header and `data`).
fn push_cmsg(control: &mut Vec<u8>, ty: u32, data: &[u8]) {
    let len = CMSG_HDR + data.len();
    control.extend_from_slice(&(len as u64).to_le_bytes());
    control.extend_from_slice(&(SOL_SOCKET as u32).to_le_bytes());
    control.extend_from_slice(&ty.to_le_bytes());
    control.extend_from_slice(data);
    control.resize(control.len().next_multiple_of(8), 0);
}

pub(super) fn setsockopt(p: &mut Process, s: &UnixSocket, level: u64, name: u64, value: u64, len: u64) -> SysResult {
    if level != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    match name {
        SO_RCVTIMEO | SO_SNDTIMEO => {
            let ns = timeval_value(p, value, len)?;
            let mut o = s.options.lock();
            if name == SO_RCVTIMEO { o.rcv_timeout = ns } else { o.snd_timeout = ns }
        }
        SO_PASSCRED => {
            let on = int_value(p, value, len)? != 0;
            s.set_pass_cred(on);
        }
        SO_SNDBUF | SO_RCVBUF => {
            // Kept for getsockopt (doubled, as Linux); the queues keep
            // their fixed size.
            let v = (int_value(p, value, len)?.max(0) as u32).saturating_mul(2);
            let mut o = s.options.lock();
            if name == SO_SNDBUF { o.sndbuf = v.clamp(4608, 425_984) } else { o.rcvbuf = v.clamp(2304, 425_984) }
        }
        // Options that change nothing here.
        2 | 5 | 6 | 9 | 10 | 13 | 15 | 18 => {
            int_value(p, value, len)?;
        }
        _ => return Err(Errno::ENOPROTOOPT),
    }
    Ok(0)
}

pub(super) fn getsockopt(p: &mut Process, s: &UnixSocket, level: u64, name: u64, value: u64, len_ptr: u64) -> SysResult {
    if level != SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let o = *s.options.lock();
    let int = |v: i32| v.to_le_bytes().to_vec();
    let answer = match name {
        SO_TYPE => int(s.kind() as i32),
        SO_DOMAIN => int(unix::AF_UNIX as i32),
        SO_PROTOCOL => int(0),
        SO_ERROR => int(s.take_error().map_or(0, |e| e as i32)),
        SO_ACCEPTCONN => int(i32::from(s.listening())),
        SO_PASSCRED => int(i32::from(o.pass_cred)),
        SO_SNDBUF => int(o.sndbuf as i32),
        SO_RCVBUF => int(o.rcvbuf as i32),
        SO_PEERCRED => {
            // Not connected: pid 0 and ids -1, as Linux.
            s.peer_cred().unwrap_or(Ucred { pid: 0, uid: u32::MAX, gid: u32::MAX }).bytes().to_vec()
        }
        SO_RCVTIMEO | SO_SNDTIMEO => {
            let ns = if name == SO_RCVTIMEO { o.rcv_timeout } else { o.snd_timeout };
            let mut b = (ns / 1_000_000_000).to_le_bytes().to_vec();
            b.extend_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
            b
        }
        2 | 5 | 6 | 9 | 10 | 15 => int(0),
        18 => int(1),
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let n = room(p, len_ptr)?.min(answer.len());
    p.memory.write(value, &answer[..n])?;
    p.memory.write(len_ptr, &(n as u32).to_le_bytes())?;
    Ok(0)
}
