//! The boot information both boot paths (multiboot2 and PVH) are reduced to.

use crate::fixed::{FixedString, FixedVec};
use core::fmt;

/// Most memory-map entries the kernel accepts from a boot loader.
pub const MAX_MEMORY_REGIONS: usize = 128;
/// Most boot modules the kernel accepts.
pub const MAX_MODULES: usize = 16;
/// Longest kernel command line accepted, in bytes.
pub const MAX_CMDLINE: usize = 4096;
/// Longest module name (the module's command line) accepted, in bytes.
pub const MAX_MODULE_NAME: usize = 64;

/// Which boot protocol started the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootProtocol {
    /// GRUB or another multiboot2 loader.
    #[default]
    Multiboot2,
    /// The Xen/QEMU PVH direct boot (`qemu -kernel`).
    Pvh,
}

impl fmt::Display for BootProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootProtocol::Multiboot2 => "multiboot2",
            BootProtocol::Pvh => "PVH",
        })
    }
}

/// What a range of physical memory is, as the firmware reports it
/// (E820 numbering, used by both multiboot2 and PVH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegionKind {
    /// Free RAM.
    Usable,
    /// Reserved by firmware or hardware.
    #[default]
    Reserved,
    /// ACPI tables; RAM once they have been read.
    AcpiReclaimable,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Defective RAM.
    Bad,
    /// A type number this kernel does not know; treated as reserved.
    Unknown(u32),
}

impl RegionKind {
    /// Maps an E820 / multiboot2 type number.
    pub fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Usable,
            2 => RegionKind::Reserved,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Bad,
            other => RegionKind::Unknown(other),
        }
    }
}

impl fmt::Display for RegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionKind::Usable => f.write_str("usable"),
            RegionKind::Reserved => f.write_str("reserved"),
            RegionKind::AcpiReclaimable => f.write_str("ACPI reclaimable"),
            RegionKind::AcpiNvs => f.write_str("ACPI NVS"),
            RegionKind::Bad => f.write_str("bad memory"),
            RegionKind::Unknown(n) => write!(f, "unknown type {n}"),
        }
    }
}

/// One entry of the firmware memory map, exactly as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryRegion {
    /// First physical byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the range is.
    pub kind: RegionKind,
}

impl crate::fixed::ConstDefault for MemoryRegion {
    const DEFAULT: Self = MemoryRegion { start: 0, len: 0, kind: RegionKind::Reserved };
}

/// A boot module (a file the loader placed in memory).
#[derive(Debug, Clone, Copy, Default)]
pub struct Module {
    /// First physical byte.
    pub start: u64,
    /// One past the last physical byte.
    pub end: u64,
    /// The module's command line, which names it (e.g. `symbols`).
    pub name: FixedString<MAX_MODULE_NAME>,
}

/// Everything the kernel takes from the boot loader.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootInfo {
    /// The protocol that delivered it.
    pub protocol: BootProtocol,
    /// Kernel command line (empty when none was given).
    pub cmdline: FixedString<MAX_CMDLINE>,
    /// The firmware memory map, in the loader's order.
    pub memory: FixedVec<MemoryRegion, MAX_MEMORY_REGIONS>,
    /// Boot modules.
    pub modules: FixedVec<Module, MAX_MODULES>,
    /// Physical range of the boot information structures themselves, so the
    /// frame allocator keeps its hands off them while they are in use.
    pub info_range: (u64, u64),
    /// The ACPI RSDP the boot loader gave, when it gave a valid one (else
    /// the base looks for it in the BIOS area).
    pub rsdp: Option<crate::acpi::Rsdp>,
}

/// Read access to physical memory during boot. The trusted base implements
/// it over its direct map; host tests implement it over a byte buffer.
pub trait PhysMemory {
    /// Returns `len` bytes starting at physical address `addr`, or `None`
    /// when that range is not readable.
    fn read(&self, addr: u64, len: usize) -> Option<&[u8]>;
}

/// Why the boot information was rejected. Each variant names the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    /// The structure at `addr` could not be read (outside mapped memory).
    Unreadable { what: &'static str, addr: u64, len: u64 },
    /// A size field is impossible (`value`), e.g. smaller than its header.
    BadSize { what: &'static str, value: u64 },
    /// A structure ends before a field it claims to hold.
    Truncated { what: &'static str, needed: u64, available: u64 },
    /// A magic number is wrong.
    BadMagic { what: &'static str, found: u64 },
    /// More entries than this kernel has room for.
    TooMany { what: &'static str, limit: usize },
    /// A string is not valid UTF-8 or has no terminating NUL.
    BadString { what: &'static str },
    /// The memory map is missing.
    NoMemoryMap,
    /// An entry's range wraps around the end of the address space.
    Overflow { what: &'static str, index: usize },
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::Unreadable { what, addr, len } => {
                write!(f, "{what} at {addr:#x} ({len} bytes) is outside readable memory")
            }
            BootInfoError::BadSize { what, value } => write!(f, "{what} has an impossible size {value}"),
            BootInfoError::Truncated { what, needed, available } => {
                write!(f, "{what} is truncated: needs {needed} bytes, has {available}")
            }
            BootInfoError::BadMagic { what, found } => write!(f, "{what} has a bad magic number {found:#x}"),
            BootInfoError::TooMany { what, limit } => write!(f, "more than {limit} {what}"),
            BootInfoError::BadString { what } => write!(f, "{what} is not a NUL-terminated UTF-8 string"),
            BootInfoError::NoMemoryMap => f.write_str("the boot loader gave no memory map"),
            BootInfoError::Overflow { what, index } => {
                write!(f, "{what} entry {index} wraps around the end of the address space")
            }
        }
    }
}

/// Little-endian field reader over an untrusted byte slice.
pub(crate) struct Fields<'a> {
    pub bytes: &'a [u8],
    pub what: &'static str,
}

impl Fields<'_> {
    fn get<const N: usize>(&self, offset: usize) -> Result<[u8; N], BootInfoError> {
        let end = offset.checked_add(N).ok_or(BootInfoError::BadSize { what: self.what, value: offset as u64 })?;
        let slice = self.bytes.get(offset..end).ok_or(BootInfoError::Truncated {
            what: self.what,
            needed: end as u64,
            available: self.bytes.len() as u64,
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub fn u32(&self, offset: usize) -> Result<u32, BootInfoError> {
        self.get::<4>(offset).map(u32::from_le_bytes)
    }

    pub fn u64(&self, offset: usize) -> Result<u64, BootInfoError> {
        self.get::<8>(offset).map(u64::from_le_bytes)
    }
}

/// Decodes a NUL-terminated string from the front of `bytes`.
pub(crate) fn c_string<'a>(bytes: &'a [u8], what: &'static str) -> Result<&'a str, BootInfoError> {
    let end = bytes.iter().position(|&b| b == 0).ok_or(BootInfoError::BadString { what })?;
    let text = bytes.get(..end).ok_or(BootInfoError::BadString { what })?;
    core::str::from_utf8(text).map_err(|_| BootInfoError::BadString { what })
}

/// Copies `text` into a fixed string, failing with a named error when too long.
pub(crate) fn fixed<const N: usize>(text: &str, what: &'static str) -> Result<FixedString<N>, BootInfoError> {
    FixedString::copy_from(text).map_err(|_| BootInfoError::TooMany { what, limit: N })
}

/// Adds a memory region, checking it does not wrap.
pub(crate) fn push_region(info: &mut BootInfo, region: MemoryRegion, what: &'static str) -> Result<(), BootInfoError> {
    let index = info.memory.len();
    if region.start.checked_add(region.len).is_none() {
        return Err(BootInfoError::Overflow { what, index });
    }
    info.memory
        .push(region)
        .map_err(|e| BootInfoError::TooMany { what: "memory map entries", limit: e.capacity })
}

/// Adds a module, checking its range.
pub(crate) fn push_module(info: &mut BootInfo, start: u64, end: u64, name: &str) -> Result<(), BootInfoError> {
    let index = info.modules.len();
    if end < start {
        return Err(BootInfoError::Overflow { what: "module", index });
    }
    let module = Module { start, end, name: fixed(name, "bytes in a module name")? };
    info.modules
        .push(module)
        .map_err(|e| BootInfoError::TooMany { what: "boot modules", limit: e.capacity })
}
