//! Memory system calls: mmap, munmap, mprotect.

use crate::errno::{Errno, SysResult};
use crate::process::Process;
#[allow(unused_imports)]
use alloc::vec;
#[allow(unused_imports)]
use framekernel::arch::user::UserContext;
#[allow(unused_imports)]
use framekernel::logic::layout::is_user_half;
use crate::memory::{PAGE, Prot};

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;

pub(super) fn mmap(p: &mut Process, addr: u64, len: u64, prot: u64, flags: u64, fd: u64) -> SysResult {
    let kind = flags & (MAP_SHARED | MAP_PRIVATE);
    if len == 0 || kind == 0 || kind == (MAP_SHARED | MAP_PRIVATE) {
        return Err(Errno::EINVAL);
    }
    if flags & MAP_ANONYMOUS == 0 {
        // File mappings come with the VFS.
        p.files.get(fd)?;
        return Err(Errno::ENODEV);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::ENOMEM)? & !(PAGE - 1);
    let prot = Prot::from_bits(prot);
    let start = if flags & MAP_FIXED != 0 {
        let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
        if !addr.is_multiple_of(PAGE) || !is_user_half(end - 1) || addr == 0 {
            return Err(Errno::EINVAL);
        }
        p.memory.lock().remove_range(addr, end);
        addr
    } else {
        p.memory.lock().find_free(len).ok_or(Errno::ENOMEM)?
    };
    p.memory.lock().add_area(start, start + len, prot, kind == MAP_SHARED)?;
    Ok(start)
}

pub(super) fn check_range(addr: u64, len: u64) -> Result<(u64, u64), Errno> {
    let len = len.checked_add(PAGE - 1).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    if !addr.is_multiple_of(PAGE) || len == 0 || !is_user_half(end - 1) {
        return Err(Errno::EINVAL);
    }
    Ok((addr, end))
}

pub(super) fn munmap(p: &mut Process, addr: u64, len: u64) -> SysResult {
    let (start, end) = check_range(addr, len)?;
    p.memory.lock().remove_range(start, end);
    Ok(0)
}

pub(super) fn mprotect(p: &mut Process, addr: u64, len: u64, prot: u64) -> SysResult {
    if prot & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let (start, end) = check_range(addr, len)?;
    p.memory.lock().protect(start, end, Prot::from_bits(prot)).map(|()| 0)
}


const MREMAP_MAYMOVE: u64 = 1;

pub(super) fn mremap(p: &mut Process, old: u64, old_len: u64, new_len: u64, flags: u64) -> SysResult {
    if flags & !MREMAP_MAYMOVE != 0 || !old.is_multiple_of(PAGE) || new_len == 0 {
        return Err(Errno::EINVAL);
    }
    let round = |n: u64| n.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1)).ok_or(Errno::EINVAL);
    let (old_len, new_len) = (round(old_len)?, round(new_len)?);
    if old_len == 0 {
        return Err(Errno::EINVAL);
    }
    p.memory.lock().remap(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0)
}
