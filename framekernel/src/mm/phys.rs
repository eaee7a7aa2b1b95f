//! Reading physical memory during boot, through the boot page tables'
//! direct map of the first GiB.

use framekernel_logic::bootinfo::PhysMemory;
use framekernel_logic::layout::{DIRECT_MAP_BASE, EARLY_MAPPED};

/// Physical memory below 1 GiB, before the kernel's own page tables exist.
pub(crate) struct EarlyPhys;

impl PhysMemory for EarlyPhys {
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = addr.checked_add(len as u64)?;
        if end > EARLY_MAPPED {
            return None;
        }
        // SAFETY: the boot page tables map physical [0, 1 GiB) read-write at
        // DIRECT_MAP_BASE; `addr..end` lies inside it. During boot nothing
        // writes the boot-loader structures read through this, and the slice
        // is only used to parse them into an owned `BootInfo`.
        Some(unsafe { core::slice::from_raw_parts((DIRECT_MAP_BASE + addr) as *const u8, len) })
    }
}

/// A reserved physical range (a boot module) as a byte slice.
///
/// Only called for ranges that `mm::init` reserved, which nobody writes;
/// the direct map covers them. The one caller keeps the slice inside a
/// `boot::BootModule`, which lends it out only while the handle lives and
/// frees the frames when it drops.
pub(crate) fn reserved_module(start: u64, end: u64) -> Option<&'static [u8]> {
    let len = usize::try_from(end.checked_sub(start)?).ok()?;
    let virt = framekernel_logic::layout::phys_to_direct(end).and(framekernel_logic::layout::phys_to_direct(start))?;
    // SAFETY: boot modules are reserved in `mm::init` (not handed to the
    // frame allocator) and never written, and the direct map covers all RAM,
    // so the bytes stay valid and unchanged until the frames are released,
    // which only `BootModule::drop` does, after its last borrow ended.
    Some(unsafe { core::slice::from_raw_parts(virt as *const u8, len) })
}
