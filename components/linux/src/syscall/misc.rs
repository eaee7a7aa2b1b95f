//! Identity, time, limits and randomness.

use super::IO_CHUNK;
use crate::errno::{Errno, SysResult};
use crate::process::Process;
#[allow(unused_imports)]
use alloc::vec;
#[allow(unused_imports)]
use framekernel::arch::user::UserContext;
#[allow(unused_imports)]
use framekernel::logic::layout::is_user_half;

pub(super) fn uname(p: &mut Process, buf: u64) -> SysResult {
    let fields: [&[u8]; 6] = [b"Linux", b"tessera", b"6.1.0-tessera", b"#1 Tessera framekernel", b"x86_64", b"(none)"];
    let mut out = [0u8; 65 * 6];
    for (i, field) in fields.iter().enumerate() {
        if let Some(dst) = out.get_mut(i * 65..i * 65 + field.len()) {
            dst.copy_from_slice(field);
        }
    }
    p.memory.write(buf, &out)?;
    Ok(0)
}


const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

pub(super) fn arch_prctl(p: &mut Process, context: &mut UserContext, code: u64, addr: u64) -> SysResult {
    match code {
        ARCH_SET_FS | ARCH_SET_GS => {
            if !is_user_half(addr) {
                return Err(Errno::EPERM);
            }
            if code == ARCH_SET_FS {
                context.regs.fs_base = addr;
            } else {
                context.regs.gs_base = addr;
            }
            Ok(0)
        }
        ARCH_GET_FS => p.memory.write(addr, &context.regs.fs_base.to_le_bytes()).map(|()| 0),
        ARCH_GET_GS => p.memory.write(addr, &context.regs.gs_base.to_le_bytes()).map(|()| 0),
        _ => Err(Errno::EINVAL),
    }
}

pub(super) fn clock_gettime(p: &mut Process, clock: u64, out: u64) -> SysResult {
    let ns = match clock {
        // CLOCK_REALTIME, CLOCK_REALTIME_COARSE
        0 | 5 => framekernel::time::realtime_ns(),
        // CLOCK_MONOTONIC, _RAW, _COARSE, CLOCK_BOOTTIME
        1 | 4 | 6 | 7 => framekernel::time::now_ns(),
        // Process and thread CPU time: approximated by time since boot.
        2 | 3 => framekernel::time::now_ns(),
        _ => return Err(Errno::EINVAL),
    };
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    p.memory.write(out, &ts)?;
    Ok(0)
}

const RLIM_INFINITY: u64 = u64::MAX;

pub(super) fn prlimit64(p: &mut Process, pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    if pid != 0 && pid != u64::from(p.info.pid) {
        return Err(Errno::ESRCH);
    }
    let (cur, max) = match resource {
        3 => (crate::memory::STACK_SIZE, RLIM_INFINITY),       // RLIMIT_STACK
        7 => (crate::files::MAX_FILES as u64, crate::files::MAX_FILES as u64), // RLIMIT_NOFILE
        0..=15 => (RLIM_INFINITY, RLIM_INFINITY),
        _ => return Err(Errno::EINVAL),
    };
    if new != 0 {
        let mut limits = [0u8; 16];
        p.memory.read(new, &mut limits)?;
    }
    if old != 0 {
        let mut limits = [0u8; 16];
        limits[..8].copy_from_slice(&cur.to_le_bytes());
        limits[8..].copy_from_slice(&max.to_le_bytes());
        p.memory.write(old, &limits)?;
    }
    Ok(0)
}

pub(super) fn getrandom(p: &mut Process, buf: u64, len: u64, flags: u64) -> SysResult {
    if flags & !0x7 != 0 {
        return Err(Errno::EINVAL);
    }
    let len = (len as usize).min(IO_CHUNK);
    let mut bytes = vec![0u8; len];
    framekernel::random::fill(&mut bytes);
    p.memory.write(buf, &bytes)?;
    Ok(len as u64)
}


pub(super) fn gettimeofday(p: &mut Process, tv: u64, tz: u64) -> SysResult {
    if tv != 0 {
        let ns = framekernel::time::realtime_ns();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        out[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        p.memory.write(tv, &out)?;
    }
    if tz != 0 {
        p.memory.write(tz, &[0u8; 8])?;
    }
    Ok(0)
}

pub(super) fn getrlimit(p: &mut Process, resource: u64, out: u64) -> SysResult {
    prlimit64(p, 0, resource, 0, out)
}

const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;

pub(super) fn prctl(p: &mut Process, option: u64, arg: u64) -> SysResult {
    match option {
        PR_SET_NAME => {
            let mut name = [0u8; 16];
            p.memory.read(arg, &mut name)?;
            let len = name.iter().position(|&b| b == 0).unwrap_or(15).min(15);
            p.name = [0; 16];
            if let (Some(dst), Some(src)) = (p.name.get_mut(..len), name.get(..len)) {
                dst.copy_from_slice(src);
            }
            Ok(0)
        }
        PR_GET_NAME => {
            let name = p.name;
            p.memory.write(arg, &name)?;
            Ok(0)
        }
        _ => Err(Errno::EINVAL),
    }
}
