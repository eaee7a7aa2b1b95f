//! Memory: physical frames, the kernel page tables, the kernel heap, and
//! safe handles over mapped memory ([`MappedArea`], [`IoMem`]).
//!
//! Invariants the rest of the base relies on:
//! - all RAM the firmware reports is visible in the direct map at
//!   `DIRECT_MAP_BASE + phys`, read-write and never executable;
//! - a physical frame belongs to exactly one owner: the frame allocator, a
//!   [`Frame`] handle, the heap, the page tables, or a boot-time reservation;
//! - the kernel image is mapped W^X (text R+X, rodata R, data RW+NX) and the
//!   page below the boot stack is left unmapped as a guard.

pub(crate) mod frames;
mod heap;
pub(crate) mod kmap;
mod paging;
pub(crate) mod cellmap;
pub(crate) mod dma;
mod vm;
pub(crate) mod tlb;
pub use tlb::shootdown_count;
pub(crate) mod phys;

pub use dma::{DmaBuffer, DmaOutOfRange, leaked_pages as dma_leaked_pages};
pub use frames::{Frame, FrameStats, OutOfMemory, frame_stats};
pub use heap::{HeapStats, heap_stats};
pub use kmap::{IoMem, IoMemError, MapError, MappedArea, Register};
pub use paging::PageInfo;
pub(crate) use paging::query;
pub(crate) use phys::read_firmware;
pub use vm::{Perms, SpaceId, VmError, VmSpace, leave_user_space};

use framekernel_logic::bootinfo::{BootInfo, MemoryRegion};
use framekernel_logic::fixed::FixedVec;
use framekernel_logic::memmap::{self, MemoryMapError, Range, Reservation, UsableMemory};

/// Kernel image bounds from the linker script.
pub(crate) mod image {
    unsafe extern "C" {
        static __kernel_phys_start: u8;
        static __kernel_phys_end: u8;
        static __text_start: u8;
        static __text_end: u8;
        static __rodata_start: u8;
        static __rodata_end: u8;
        static __data_start: u8;
        static __data_end: u8;
        static __stack_guard: u8;
        static __boot_stack_bottom: u8;
        static __boot_stack_top: u8;
        static __build_id_note_start: u8;
        static __build_id_note_end: u8;
    }

    macro_rules! addr {
        ($sym:ident) => {
            // Only the address of the linker symbol is taken, never its value.
            core::ptr::addr_of!($sym) as u64
        };
    }

    /// Physical range of the whole kernel image, boot code included.
    pub fn phys() -> (u64, u64) {
        (addr!(__kernel_phys_start), addr!(__kernel_phys_end))
    }
    /// The bytes of the kernel's `.note.gnu.build-id` section (empty when
    /// it was linked without a build id).
    pub fn build_id_note() -> &'static [u8] {
        let (start, end) = (addr!(__build_id_note_start), addr!(__build_id_note_end));
        // SAFETY: the linker script puts these two symbols around the note
        // section, inside the kernel's read-only data, which is mapped for
        // the kernel's whole life and never written; `end >= start` there
        // (saturating keeps a broken script to an empty slice).
        unsafe { core::slice::from_raw_parts(start as *const u8, end.saturating_sub(start) as usize) }
    }
    /// Virtual range of the code.
    pub fn text() -> (u64, u64) {
        (addr!(__text_start), addr!(__text_end))
    }
    /// Virtual range of read-only data.
    pub fn rodata() -> (u64, u64) {
        (addr!(__rodata_start), addr!(__rodata_end))
    }
    /// Virtual range of data and bss (boot stack and its guard included).
    pub fn data() -> (u64, u64) {
        (addr!(__data_start), addr!(__data_end))
    }
    /// The unmapped page below the boot stack.
    pub fn stack_guard() -> u64 {
        addr!(__stack_guard)
    }
    /// The boot stack (the stack the kernel runs on).
    pub fn boot_stack() -> (u64, u64) {
        (addr!(__boot_stack_bottom), addr!(__boot_stack_top))
    }
}

/// The firmware memory map, kept for [`IoMem`] checks and reports.
static FIRMWARE_MAP: crate::sync::BaseLock<FixedVec<MemoryRegion, 128>> = crate::sync::BaseLock::new(FixedVec::new_const());

/// What memory initialisation found.
#[derive(Debug, Clone, Copy)]
pub struct MemoryReport {
    /// RAM available to the frame allocator after reservations.
    pub usable: UsableMemory,
    /// Bytes of the frame bitmap.
    pub bitmap_bytes: u64,
    /// Physical range of the kernel image.
    pub kernel: Range,
}

/// Why memory could not be set up. Each names the problem.
#[derive(Debug, Clone, Copy)]
pub enum MemoryInitError {
    /// The memory map is unusable.
    Map(MemoryMapError),
    /// No place below 1 GiB for the frame bitmap.
    NoRoomForBitmap { bytes: u64 },
    /// Page tables could not be built.
    PageTables(&'static str),
    /// The initial kernel heap could not be allocated.
    Heap { bytes: u64 },
}

impl core::fmt::Display for MemoryInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemoryInitError::Map(e) => write!(f, "{e}"),
            MemoryInitError::NoRoomForBitmap { bytes } => {
                write!(f, "no usable memory below 1 GiB for the {bytes}-byte frame bitmap")
            }
            MemoryInitError::PageTables(why) => write!(f, "cannot build kernel page tables: {why}"),
            MemoryInitError::Heap { bytes } => write!(f, "cannot allocate the initial {bytes}-byte kernel heap"),
        }
    }
}

/// Sets up frames, page tables and heap from the boot information.
pub(crate) fn init(info: &BootInfo) -> Result<MemoryReport, MemoryInitError> {
    let (kstart, kend) = image::phys();
    let kernel = Range::new(kstart, kend);
    memmap::check_modules(info.memory.as_slice(), kernel, info.modules.as_slice()).map_err(MemoryInitError::Map)?;
    let mut reservations = FixedVec::<Reservation, 20>::new();
    let _ = reservations.push(Reservation { range: kernel, what: "kernel image" });
    for module in info.modules.iter() {
        let _ = reservations.push(Reservation { range: Range::new(module.start, module.end), what: "boot module" });
    }
    let mut usable = memmap::usable_memory(info.memory.as_slice(), reservations.as_slice()).map_err(MemoryInitError::Map)?;
    *FIRMWARE_MAP.lock() = info.memory;
    let modules_end = info.modules.iter().map(|m| m.end).max().unwrap_or(0);
    let bitmap_bytes = frames::init(&mut usable, modules_end)?;
    paging::init(info.memory.as_slice())?;
    heap::init()?;
    Ok(MemoryReport { usable, bitmap_bytes, kernel })
}

/// A copy of the firmware's memory map.
pub(crate) fn firmware_map() -> FixedVec<MemoryRegion, 128> {
    *FIRMWARE_MAP.lock()
}

/// True when `range` overlaps RAM in the firmware map (any kind but
/// reserved/bad/unknown).
pub(crate) fn overlaps_ram(range: Range) -> bool {
    use framekernel_logic::bootinfo::RegionKind;
    FIRMWARE_MAP.lock().iter().any(|r| {
        matches!(r.kind, RegionKind::Usable | RegionKind::AcpiReclaimable | RegionKind::AcpiNvs)
            && Range::new(r.start, r.start.saturating_add(r.len)).overlaps(&range)
    })
}
