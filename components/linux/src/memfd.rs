//! `memfd_create`: anonymous memory files, and their seals.
//!
//! A memfd is a regular file of a private tmpfs that no directory names
//! (created, opened, then unlinked): it lives while a descriptor or a
//! mapping holds it. `/proc/PID/fd` shows it as `/memfd:NAME (deleted)`.
//!
//! Seals (`F_ADD_SEALS`, `F_GET_SEALS`) are kept per file, as Linux keeps
//! them per inode, and checked where the sealed operation happens: writes
//! and truncation (`F_SEAL_WRITE`, `F_SEAL_FUTURE_WRITE`, `F_SEAL_GROW`,
//! `F_SEAL_SHRINK`) and shared writable mappings.

use crate::errno::Errno;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use framekernel::sync::SpinLock;
use tessera_vfs::{Node, NodeRef, Vfs};

/// No more seals may be added.
pub const F_SEAL_SEAL: u32 = 1;
/// The file may not shrink.
pub const F_SEAL_SHRINK: u32 = 2;
/// The file may not grow.
pub const F_SEAL_GROW: u32 = 4;
/// The contents may not change.
pub const F_SEAL_WRITE: u32 = 8;
/// No new writable mappings or writes; existing mappings keep writing.
pub const F_SEAL_FUTURE_WRITE: u32 = 0x10;
const ALL_SEALS: u32 = 0x1f;

/// The memfds and their seals (dead entries pruned on insert).
static SEALS: SpinLock<Vec<(Weak<dyn Node>, u32)>> = SpinLock::new(Vec::new());
static FILES: spin::Once<Vfs> = spin::Once::new();
static CREATING: SpinLock<()> = SpinLock::new(());

fn same(weak: &Weak<dyn Node>, node: &NodeRef) -> bool {
    core::ptr::addr_eq(weak.as_ptr(), Arc::as_ptr(node))
}

/// A new memfd's node and location: `name` as the user gave it;
/// `sealing` whether seals may be added (else the file starts with
/// `F_SEAL_SEAL`, as Linux).
pub fn create(name: &str, sealing: bool) -> Result<tessera_vfs::Location, Errno> {
    let vfs = FILES.call_once(|| {
        // Half the memory at most, like a tmpfs mount's default.
        let ram = framekernel::mm::frame_stats().total * 4096;
        Vfs::new(tessera_vfs::tmpfs::TmpFs::new_root(ram / 2, Some(crate::fs::now)))
    });
    let root = vfs.root();
    // The entry exists only under this lock, between create and unlink.
    let entry = alloc::format!("memfd:{name}");
    let location = {
        let _creating = CREATING.lock();
        root.node().create(&entry, tessera_vfs::FileType::Regular, 0o777, 0)?;
        let location = vfs.resolve(&root, &entry, false);
        vfs.unlink(&root, &entry)?;
        location?
    };
    let mut seals = SEALS.lock();
    seals.retain(|(weak, _)| weak.strong_count() > 0);
    seals.push((Arc::downgrade(location.node()), if sealing { 0 } else { F_SEAL_SEAL }));
    Ok(location)
}

/// The seals of `node`; `None` for a file that is not a memfd.
pub fn seals(node: &NodeRef) -> Option<u32> {
    SEALS.lock().iter().find(|(weak, _)| same(weak, node)).map(|&(_, seals)| seals)
}

/// `F_ADD_SEALS`: EPERM once `F_SEAL_SEAL` is set, EINVAL for unknown
/// seals or a file that is not a memfd; EBUSY for a write seal while a
/// shared writable mapping exists (`mapped_writable`).
pub fn add_seals(node: &NodeRef, add: u32, mapped_writable: impl FnOnce() -> bool) -> Result<(), Errno> {
    if add & !ALL_SEALS != 0 {
        return Err(Errno::EINVAL);
    }
    let mut table = SEALS.lock();
    let (_, seals) = table.iter_mut().find(|(weak, _)| same(weak, node)).ok_or(Errno::EINVAL)?;
    if *seals & F_SEAL_SEAL != 0 {
        return Err(Errno::EPERM);
    }
    if add & F_SEAL_WRITE != 0 && *seals & F_SEAL_WRITE == 0 && mapped_writable() {
        return Err(Errno::EBUSY);
    }
    *seals |= add;
    Ok(())
}

/// May `len` bytes be written at `offset` of a file `size` bytes long?
pub fn check_write(node: &NodeRef, offset: u64, len: usize) -> Result<(), Errno> {
    let Some(seals) = seals(node) else { return Ok(()) };
    if seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0 {
        return Err(Errno::EPERM);
    }
    if seals & F_SEAL_GROW != 0 && offset.saturating_add(len as u64) > node.metadata().size {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// May the file's size become `len`?
pub fn check_resize(node: &NodeRef, len: u64) -> Result<(), Errno> {
    let Some(seals) = seals(node) else { return Ok(()) };
    let size = node.metadata().size;
    if (len < size && seals & F_SEAL_SHRINK != 0) || (len > size && seals & F_SEAL_GROW != 0) {
        return Err(Errno::EPERM);
    }
    Ok(())
}

/// May the file be mapped shared and writable?
pub fn check_shared_write_map(node: &NodeRef) -> Result<(), Errno> {
    match seals(node) {
        Some(seals) if seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE) != 0 => Err(Errno::EPERM),
        _ => Ok(()),
    }
}
