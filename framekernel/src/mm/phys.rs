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

/// How a range of firmware memory (not usable RAM) can be read.
enum FirmwareRange {
    /// Through the direct map: in the first 2 MiB, or inside an ACPI range.
    DirectMapped,
    /// Inside a reserved range the direct map does not cover: through a
    /// temporary uncached mapping ([`super::IoMem`]).
    Reserved,
}

/// Whether `[start, end)` is firmware memory the base may read, and how:
/// never when it touches usable RAM (frames that other owners hold and
/// write), else when it lies in the first 2 MiB (always direct-mapped) or
/// inside one ACPI or reserved range of the firmware map: through the
/// direct map where it covers the whole range, else (reserved ranges
/// only) through an uncached mapping.
fn firmware_range(start: u64, end: u64) -> Option<FirmwareRange> {
    use framekernel_logic::bootinfo::RegionKind;
    use framekernel_logic::memmap::Range;
    let range = Range::new(start, end);
    let map = super::FIRMWARE_MAP.lock();
    if start >= end || map.iter().any(|r| r.kind == RegionKind::Usable && Range::new(r.start, r.start.saturating_add(r.len)).overlaps(&range)) {
        return None;
    }
    if end <= 2 << 20 {
        return Some(FirmwareRange::DirectMapped);
    }
    let inside = |kinds: &[RegionKind]| map.iter().any(|r| kinds.contains(&r.kind) && r.start <= start && end <= r.start.saturating_add(r.len));
    let acpi = inside(&[RegionKind::AcpiReclaimable, RegionKind::AcpiNvs]);
    let reserved = inside(&[RegionKind::Reserved]);
    drop(map);
    if !acpi && !reserved {
        return None;
    }
    // The direct map rounds RAM out to 2 MiB, so it may cover a reserved
    // range too: then that mapping is the one to read through (a second,
    // uncached one would give the same page two memory types).
    let pages = (start & !0xfff..end).step_by(4096);
    let mapped = |page: u64| {
        framekernel_logic::layout::phys_to_direct(page).and_then(super::query).is_some_and(|info| info.phys == page)
    };
    let covered = pages.clone().filter(|&p| mapped(p)).count();
    match (covered, pages.count()) {
        (c, all) if c == all => Some(FirmwareRange::DirectMapped),
        (0, _) if reserved => Some(FirmwareRange::Reserved),
        _ => None,
    }
}

/// Copies firmware memory at `addr` into `buf`, where [`firmware_range`]
/// allows and as it says: through the direct map, or through a temporary
/// uncached mapping of a reserved range. False when the range may not be
/// read.
pub(crate) fn read_firmware(addr: u64, buf: &mut [u8]) -> bool {
    let Some(end) = addr.checked_add(buf.len() as u64) else { return false };
    if buf.is_empty() {
        return true;
    }
    match firmware_range(addr, end) {
        Some(FirmwareRange::DirectMapped) => {
            let Some(base) = framekernel_logic::layout::phys_to_direct(addr) else { return false };
            for (i, byte) in buf.iter_mut().enumerate() {
                // SAFETY: `addr..end` is not usable RAM, so no frame owner
                // holds or writes it (firmware may, so each byte is read
                // volatile, and no reference to it is made); the direct
                // map covers all of it at `DIRECT_MAP_BASE + phys`
                // (checked by `firmware_range`).
                *byte = unsafe { core::ptr::read_volatile((base + i as u64) as *const u8) };
            }
            true
        }
        Some(FirmwareRange::Reserved) => match super::IoMem::acquire(addr, buf.len() as u64) {
            Ok(window) => buf.iter_mut().enumerate().all(|(i, byte)| window.read::<u8>(i as u64).map(|b| *byte = b).is_ok()),
            Err(_) => false,
        },
        None => false,
    }
}
