//! Memory system calls: mmap (anonymous and file), munmap, mprotect,
//! mremap, msync.

use crate::errno::{Errno, SysResult};
use crate::process::Process;
#[allow(unused_imports)]
use alloc::vec;
#[allow(unused_imports)]
use framekernel::arch::user::UserContext;
#[allow(unused_imports)]
use framekernel::logic::layout::is_user_half;
use crate::memory::{PAGE, Prot};
use tessera_vfs::{FileType, NodeRef};

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
const O_WRONLY: u32 = 1;
const O_RDWR: u32 = 2;

/// The file behind a file `mmap`, checked against the request, and
/// whether a shared mapping of it may ever be written (open `O_RDWR`).
fn mapped_file(p: &Process, fd: u64, offset: u64, shared: bool, prot: Prot) -> Result<((NodeRef, alloc::string::String), bool), Errno> {
    let file = p.files.get(fd)?;
    if !offset.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    // Only regular files can be mapped (not pipes, terminals or devices).
    let location = file.location().ok_or(Errno::ENODEV)?;
    let node = location.node().clone();
    if node.metadata().kind != FileType::Regular {
        return Err(Errno::ENODEV);
    }
    if file.status_flags() & crate::fs::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let access = file.status_flags() & 3;
    if access == O_WRONLY || (shared && prot.write && access != O_RDWR) {
        return Err(Errno::EACCES);
    }
    if shared && prot.write {
        crate::memfd::check_shared_write_map(&node)?;
    }
    // A write-sealed memfd is never writable through a shared mapping
    // (Linux clears VM_MAYWRITE: a later mprotect is EACCES).
    let sealed = crate::memfd::check_shared_write_map(&node).is_err();
    Ok(((node, location.path()), !shared || (access == O_RDWR && !sealed)))
}

pub(super) fn mmap(p: &mut Process, addr: u64, len: u64, prot: u64, flags: u64, fd: u64, offset: u64) -> SysResult {
    // As Linux: the descriptor first (EBADF), then the arguments.
    if flags & MAP_ANONYMOUS == 0 {
        p.files.get(fd)?;
    }
    let mut kind = flags & (MAP_SHARED | MAP_PRIVATE);
    if kind == MAP_SHARED_VALIDATE {
        // Every flag must be known (MAP_SYNC needs DAX storage: none here).
        if flags & !MAP_KNOWN != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        kind = MAP_SHARED;
    }
    if len == 0 || kind == 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::ENOMEM)? & !(PAGE - 1);
    let prot = Prot::from_bits(prot);
    let file = if flags & MAP_ANONYMOUS == 0 { Some(mapped_file(p, fd, offset, kind == MAP_SHARED, prot)?) } else { None };
    // One hold of the address space from choosing the range to mapping
    // it: another thread's mmap must not take the range in between.
    let mut memory = p.memory.lock();
    let start = if flags & MAP_FIXED_NOREPLACE != 0 && flags & MAP_FIXED == 0 {
        // Exactly there, or EEXIST if anything is mapped there.
        let end = fixed_range(addr, len)?;
        if !memory.is_free(addr, end) {
            return Err(Errno::EEXIST);
        }
        addr
    } else if flags & MAP_FIXED != 0 {
        let end = fixed_range(addr, len)?;
        memory.remove_range(addr, end);
        addr
    } else {
        memory.find_free(len).ok_or(Errno::ENOMEM)?
    };
    match file {
        Some((node, may_write)) => memory.add_file_area(start, start + len, prot, (kind == MAP_SHARED, may_write), node, offset)?,
        None => {
            memory.add_area(start, start + len, prot, kind == MAP_SHARED)?;
            if flags & MAP_GROWSDOWN != 0 && kind == MAP_PRIVATE {
                memory.set_grows_down(start);
            }
        }
    }
    drop(memory);
    // MAP_LOCKED: locked (and in memory) at once, within RLIMIT_MEMLOCK
    // (EAGAIN beyond it; EPERM if locking is not allowed at all).
    if flags & MAP_LOCKED != 0
        && let Err(errno) = mlock(p, start, len, true, false)
    {
        p.memory.lock().remove_range(start, start + len);
        return Err(if errno == Errno::ENOMEM { Errno::EAGAIN } else { errno });
    }
    Ok(start)
}

/// Lock the mapping in memory.
const MAP_LOCKED: u64 = 0x2000;
/// A stack that grows down into the gap below it.
const MAP_GROWSDOWN: u64 = 0x100;
/// `MAP_SHARED | MAP_PRIVATE`: a shared mapping whose flags are checked.
const MAP_SHARED_VALIDATE: u64 = 3;
/// The flags Linux's `MAP_SHARED_VALIDATE` accepts without MAP_SYNC:
/// SHARED, PRIVATE, FIXED, ANONYMOUS, GROWSDOWN, DENYWRITE, EXECUTABLE,
/// LOCKED, NORESERVE, POPULATE, NONBLOCK, STACK, HUGETLB, FIXED_NOREPLACE,
/// UNINITIALIZED.
const MAP_KNOWN: u64 = 0x3 | 0x10 | 0x20 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x100000 | 0x4000000 | (0x3f << 26);

/// The end of a fixed mapping of `len` (page-rounded) bytes at `addr`:
/// past the top of user space ENOMEM, then an unaligned or zero address
/// EINVAL (Linux's `get_unmapped_area` order).
fn fixed_range(addr: u64, len: u64) -> Result<u64, Errno> {
    let end = addr.checked_add(len).filter(|&end| end <= crate::memory::STACK_TOP).ok_or(Errno::ENOMEM)?;
    if !addr.is_multiple_of(PAGE) || addr == 0 {
        return Err(Errno::EINVAL);
    }
    Ok(end)
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
    // Linux's order: an unaligned start, an empty range (done), a range
    // that wraps (ENOMEM), the rights, then the mappings (ENOMEM where
    // there is none, the kernel half included).
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return Ok(0);
    }
    let end = len.checked_add(PAGE - 1).and_then(|len| addr.checked_add(len & !(PAGE - 1))).filter(|&end| end > addr).ok_or(Errno::ENOMEM)?;
    if prot & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    if !is_user_half(end - 1) {
        return Err(Errno::ENOMEM);
    }
    p.memory.lock().protect(addr, end, Prot::from_bits(prot)).map(|()| 0)
}


const MREMAP_MAYMOVE: u64 = 1;
const MREMAP_FIXED: u64 = 2;

pub(super) fn mremap(p: &mut Process, old: u64, old_len: u64, new_len: u64, flags: u64, new_addr: u64) -> SysResult {
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 || !old.is_multiple_of(PAGE) || new_len == 0 {
        return Err(Errno::EINVAL);
    }
    // MREMAP_FIXED needs MREMAP_MAYMOVE and an aligned target.
    let fixed = if flags & MREMAP_FIXED != 0 {
        if flags & MREMAP_MAYMOVE == 0 || !new_addr.is_multiple_of(PAGE) || !is_user_half(new_addr) {
            return Err(Errno::EINVAL);
        }
        Some(new_addr)
    } else {
        None
    };
    let round = |n: u64| n.checked_add(PAGE - 1).map(|v| v & !(PAGE - 1)).ok_or(Errno::EINVAL);
    let (old_len, new_len) = (round(old_len)?, round(new_len)?);
    if old_len == 0 {
        return Err(Errno::EINVAL);
    }
    p.memory.lock().remap_to(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0, fixed)
}

const MADV_DONTNEED: u64 = 4;
const MADV_FREE: u64 = 8;
const MADV_REMOVE: u64 = 9;
const MADV_MERGEABLE: u64 = 12;
const MADV_UNMERGEABLE: u64 = 13;
const MADV_DONTDUMP: u64 = 16;
const MADV_DODUMP: u64 = 17;
const MADV_WIPEONFORK: u64 = 18;
const MADV_KEEPONFORK: u64 = 19;

/// `remap_file_pages(start, size, prot, pgoff, flags)`: as Linux since
/// 4.0 emulates it, the pages `[start, start+size)` of a shared file
/// mapping are mapped again to show the file from page `pgoff` (prot must
/// be 0; the area's rights stay).
pub(super) fn remap_file_pages(p: &mut Process, start: u64, size: u64, prot: u64, pgoff: u64, flags: u64) -> SysResult {
    const MAP_NONBLOCK: u64 = 0x10000;
    if prot != 0 || flags & !MAP_NONBLOCK != 0 {
        return Err(Errno::EINVAL);
    }
    let start = start & !(PAGE - 1);
    let size = size.checked_add(PAGE - 1).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    let end = start.checked_add(size).ok_or(Errno::EINVAL)?;
    let offset = pgoff.checked_mul(PAGE).filter(|&o| (o as i64) >= 0).ok_or(Errno::EINVAL)?;
    if size == 0 {
        return Err(Errno::EINVAL);
    }
    let mut memory = p.memory.lock();
    let (_, area) = memory.area_at(start).ok_or(Errno::EINVAL)?;
    let Some(file) = area.file.clone().filter(|_| area.shared && end <= area.end) else { return Err(Errno::EINVAL) };
    let (prot, may_write) = (area.prot, area.may_write);
    memory.remove_range(start, end);
    memory.add_file_area(start, end, prot, (true, may_write), (file.node, alloc::string::String::from(&*file.path)), offset)?;
    Ok(0)
}

/// `madvise`: advice is accepted where Linux accepts it; `MADV_DONTNEED`
/// and `MADV_FREE` drop private pages (they read as zeros, or the file,
/// again), as glibc's allocator relies on.
pub(super) fn madvise(p: &mut Process, addr: u64, len: u64, advice: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    // NORMAL..DONTNEED, FREE..POPULATE_WRITE, COLLAPSE.
    if !matches!(advice, 0..=4 | 8..=23 | 25) {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    if len == 0 {
        return Ok(0);
    }
    let end = addr.checked_add(len).ok_or(Errno::EINVAL)?;
    let mut memory = p.memory.lock();
    if !memory.is_mapped(addr, end) {
        return Err(Errno::ENOMEM);
    }
    // Advice for some kinds of memory only, as Linux: MADV_FREE and the
    // fork advice for private anonymous memory, MADV_REMOVE for shared
    // memory; no KSM (MERGEABLE, UNMERGEABLE) here.
    let mut at = addr;
    while at < end {
        let Some((_, area)) = memory.area_at(at) else { return Err(Errno::ENOMEM) };
        let private_anonymous = !area.shared && area.file.is_none() && area.shm.is_none();
        // Locked memory cannot be dropped (Linux's VM_LOCKED checks).
        let refused = match advice {
            MADV_FREE | MADV_WIPEONFORK | MADV_KEEPONFORK => !private_anonymous || (advice == MADV_FREE && area.locked),
            MADV_DONTNEED => area.locked,
            MADV_REMOVE => !area.shared || area.locked,
            MADV_MERGEABLE | MADV_UNMERGEABLE => true,
            _ => false,
        };
        if refused {
            return Err(Errno::EINVAL);
        }
        at = area.end;
    }
    if matches!(advice, MADV_WIPEONFORK | MADV_DONTDUMP) && !memory.advice_room() {
        return Err(Errno::ENOMEM);
    }
    match advice {
        MADV_DONTNEED | MADV_FREE => memory.discard(addr, end),
        MADV_WIPEONFORK | MADV_KEEPONFORK => memory.set_wipe_on_fork(addr, end, advice == MADV_WIPEONFORK),
        MADV_DONTDUMP | MADV_DODUMP => memory.set_dont_dump(addr, end, advice == MADV_DONTDUMP),
        _ => {}
    }
    Ok(0)
}

/// `mincore(addr, len, vec)`: one byte per page, 1 where the page is in
/// memory. EINVAL for an unaligned start, ENOMEM for a range with a hole.
pub(super) fn mincore(p: &mut Process, addr: u64, len: u64, vec: u64) -> SysResult {
    if !addr.is_multiple_of(PAGE) {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_add(PAGE - 1).ok_or(Errno::ENOMEM)? & !(PAGE - 1);
    if len == 0 {
        return Ok(0);
    }
    let end = addr.checked_add(len).filter(|&e| framekernel::logic::layout::is_user_half(e - 1)).ok_or(Errno::ENOMEM)?;
    if !p.memory.lock().is_mapped(addr, end) {
        return Err(Errno::ENOMEM);
    }
    // A chunk of pages at a time: the kernel never holds more than that.
    const CHUNK: u64 = 4096 * PAGE;
    let mut at = addr;
    while at < end {
        let stop = end.min(at.saturating_add(CHUNK));
        let flags: alloc::vec::Vec<u8> = p.memory.lock().residency(at, stop).into_iter().map(u8::from).collect();
        p.memory.write(vec + (at - addr) / PAGE, &flags)?;
        at = stop;
    }
    Ok(0)
}


/// `mlockall(flags)`: MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT, at least
/// one of the first two; without root, RLIMIT_MEMLOCK 0 is EPERM and
/// locking more than it (MCL_CURRENT: all mapped memory) ENOMEM. The
/// areas are marked locked (`VmLck`); MCL_FUTURE locks areas made later.
pub(super) fn mlockall(p: &mut Process, flags: u64) -> SysResult {
    if flags == 0 || flags & !7 != 0 || flags & 3 == 0 {
        return Err(Errno::EINVAL);
    }
    let mut memory = p.memory.lock();
    if !p.info.credentials().capable(crate::process::cap::IPC_LOCK) {
        let limit = p.info.soft_limit(crate::process::rlimit::MEMLOCK);
        if limit == 0 {
            return Err(Errno::EPERM);
        }
        if flags & 1 != 0 && memory.virtual_size() > limit {
            return Err(Errno::ENOMEM);
        }
    }
    memory.lock_all(flags & 1 != 0, flags & 2 != 0);
    Ok(0)
}

/// `munlockall`: nothing locked, now or later.
pub(super) fn munlockall(p: &mut Process) -> SysResult {
    p.memory.lock().lock_all(false, false);
    Ok(0)
}

/// `mlock`, `mlock2`, `munlock`: the range must be mapped (ENOMEM); more
/// locked memory in all than `RLIMIT_MEMLOCK` needs root (ENOMEM).
/// Locking brings in the pages of the accessible parts (a `PROT_NONE` part
/// cannot be touched, as on Linux; with `on_fault` they come when first
/// touched) and marks the areas locked (`VmLck`); running out of memory
/// is ENOMEM. Pages are never swapped out here, so nothing else changes.
pub(super) fn mlock(p: &mut Process, addr: u64, len: u64, lock: bool, on_fault: bool) -> SysResult {
    let limit = p.info.soft_limit(crate::process::rlimit::MEMLOCK);
    // Linux's can_do_mlock: a zero RLIMIT_MEMLOCK forbids locking at all.
    if lock && limit == 0 && !p.info.credentials().capable(crate::process::cap::IPC_LOCK) {
        return Err(Errno::EPERM);
    }
    let start = addr & !(PAGE - 1);
    let end = addr.checked_add(len).and_then(|e| e.checked_add(PAGE - 1)).ok_or(Errno::EINVAL)? & !(PAGE - 1);
    if start == end {
        return Ok(0);
    }
    let mut memory = p.memory.lock();
    if lock && !p.info.credentials().capable(crate::process::cap::IPC_LOCK) {
        let after = memory.locked_size() - memory.locked_within(start, end) + (end - start);
        if after > limit {
            return Err(Errno::ENOMEM);
        }
    }
    if !memory.is_mapped(start, end) {
        return Err(Errno::ENOMEM);
    }
    if lock && !on_fault {
        let mut at = start;
        while at < end {
            let Some((_, area)) = memory.area_at(at) else { break };
            let area_end = area.end.min(end);
            if area.prot.read || area.prot.write || area.prot.exec {
                let mut page = at;
                while page < area_end {
                    match memory.populate(page, crate::memory::Access::Read) {
                        crate::memory::Populate::NoMemory => return Err(Errno::ENOMEM),
                        _ => page += PAGE,
                    }
                }
            }
            at = area_end;
        }
    }
    memory.set_locked(start, end, lock);
    Ok(0)
}

const MS_ASYNC: u64 = 1;
const MS_INVALIDATE: u64 = 2;
const MS_SYNC: u64 = 4;

/// `msync`: written pages of shared file mappings go to their files now.
pub(super) fn msync(p: &mut Process, addr: u64, len: u64, flags: u64) -> SysResult {
    if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 || flags & (MS_ASYNC | MS_SYNC) == (MS_ASYNC | MS_SYNC) {
        return Err(Errno::EINVAL);
    }
    if len == 0 {
        return if addr.is_multiple_of(PAGE) { Ok(0) } else { Err(Errno::EINVAL) };
    }
    let (start, end) = check_range(addr, len)?;
    let mut memory = p.memory.lock();
    // MS_INVALIDATE of locked memory: EBUSY (Linux).
    if flags & MS_INVALIDATE != 0 {
        let mut at = start;
        while at < end {
            let Some((_, area)) = memory.area_at(at) else { break };
            if area.locked {
                return Err(Errno::EBUSY);
            }
            at = area.end;
        }
    }
    memory.sync(start, end).map(|()| 0)
}
