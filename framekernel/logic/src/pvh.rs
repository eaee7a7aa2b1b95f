//! Safe parser for the PVH start info (`qemu -kernel`, the fast boot path).
//!
//! Layout from Xen's `hvm_start_info` (public/arch-x86/hvm/start_info.h),
//! version 1, which adds the memory map that QEMU always provides.

use crate::bootinfo::{
    c_string, fixed, push_module, push_region, BootInfo, BootInfoError, BootProtocol, Fields, MemoryRegion,
    PhysMemory, RegionKind, MAX_CMDLINE, MAX_MEMORY_REGIONS, MAX_MODULES,
};

/// Magic value in the first word of `hvm_start_info` ("xEn3" with the
/// high bit of each byte cleared). The boot code also passes it in `edi`
/// to tell the PVH entry from the multiboot2 one.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;

const START_INFO_SIZE: usize = 56;
const MODULE_ENTRY_SIZE: usize = 32;
const MEMMAP_ENTRY_SIZE: usize = 24;

/// Parses the start info at physical address `addr`.
pub fn parse(mem: &impl PhysMemory, addr: u64) -> Result<BootInfo, BootInfoError> {
    const WHAT: &str = "PVH start info";
    let bytes = mem
        .read(addr, START_INFO_SIZE)
        .ok_or(BootInfoError::Unreadable { what: WHAT, addr, len: START_INFO_SIZE as u64 })?;
    let f = Fields { bytes, what: WHAT };
    let magic = f.u32(0)?;
    if magic != START_INFO_MAGIC {
        return Err(BootInfoError::BadMagic { what: WHAT, found: magic.into() });
    }
    let version = f.u32(4)?;
    let nr_modules = f.u32(12)? as usize;
    let modlist = f.u64(16)?;
    let cmdline = f.u64(24)?;
    let mut info =
        BootInfo { protocol: BootProtocol::Pvh, info_range: (addr, addr + START_INFO_SIZE as u64), ..BootInfo::default() };
    if cmdline != 0 {
        let text = read_c_string(mem, cmdline, MAX_CMDLINE, "PVH command line")?;
        info.cmdline = fixed(text, "bytes of kernel command line")?;
    }
    if nr_modules > MAX_MODULES {
        return Err(BootInfoError::TooMany { what: "boot modules", limit: MAX_MODULES });
    }
    if nr_modules > 0 {
        let len = nr_modules * MODULE_ENTRY_SIZE;
        let list = mem
            .read(modlist, len)
            .ok_or(BootInfoError::Unreadable { what: "PVH module list", addr: modlist, len: len as u64 })?;
        let f = Fields { bytes: list, what: "PVH module list" };
        for index in 0..nr_modules {
            let at = index * MODULE_ENTRY_SIZE;
            let start = f.u64(at)?;
            let size = f.u64(at + 8)?;
            let name_addr = f.u64(at + 16)?;
            let end = start.checked_add(size).ok_or(BootInfoError::Overflow { what: "PVH module", index })?;
            let name = if name_addr == 0 { "" } else { read_c_string(mem, name_addr, 63, "PVH module name")? };
            push_module(&mut info, start, end, name)?;
        }
    }
    if version < 1 {
        return Err(BootInfoError::NoMemoryMap);
    }
    // The RSDP's address (0: none given); a bad one is ignored (the base
    // then looks for it itself).
    let rsdp = f.u64(32)?;
    if rsdp != 0 {
        let bytes = mem.read(rsdp, 36).or_else(|| mem.read(rsdp, 20));
        info.rsdp = bytes.and_then(|b| crate::acpi::parse_rsdp(b, rsdp).ok());
    }
    let memmap = f.u64(40)?;
    let entries = f.u32(48)? as usize;
    if entries == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }
    if entries > MAX_MEMORY_REGIONS {
        return Err(BootInfoError::TooMany { what: "memory map entries", limit: MAX_MEMORY_REGIONS });
    }
    let len = entries * MEMMAP_ENTRY_SIZE;
    let map = mem
        .read(memmap, len)
        .ok_or(BootInfoError::Unreadable { what: "PVH memory map", addr: memmap, len: len as u64 })?;
    let f = Fields { bytes: map, what: "PVH memory map" };
    for index in 0..entries {
        let at = index * MEMMAP_ENTRY_SIZE;
        let region = MemoryRegion { start: f.u64(at)?, len: f.u64(at + 8)?, kind: RegionKind::from_e820(f.u32(at + 16)?) };
        push_region(&mut info, region, "PVH memory map")?;
    }
    Ok(info)
}

/// Reads a NUL-terminated string of at most `max` bytes at `addr`, taking
/// care not to read past the end of readable memory.
fn read_c_string<'m>(
    mem: &'m impl PhysMemory,
    addr: u64,
    max: usize,
    what: &'static str,
) -> Result<&'m str, BootInfoError> {
    let mut len = 0usize;
    loop {
        let at = addr.checked_add(len as u64).ok_or(BootInfoError::BadString { what })?;
        let byte = mem.read(at, 1).ok_or(BootInfoError::Unreadable { what, addr: at, len: 1 })?;
        if byte.first() == Some(&0) {
            break;
        }
        len += 1;
        if len > max {
            return Err(BootInfoError::TooMany { what: "bytes in a PVH string", limit: max });
        }
    }
    let bytes = mem.read(addr, len + 1).ok_or(BootInfoError::Unreadable { what, addr, len: len as u64 + 1 })?;
    c_string(bytes, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiboot2::tests::Buffer;

    /// Builds a start info at 0x1000 with its parts at fixed places.
    fn image(cmdline: &[u8], modules: &[(u64, u64)], map: &[(u64, u64, u32)], version: u32) -> Buffer {
        let mut bytes = vec![0u8; 0x4000];
        let put32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 = |b: &mut Vec<u8>, at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let si = 0; // the start info sits at the buffer's base (0x1000)
        put32(&mut bytes, si, START_INFO_MAGIC);
        put32(&mut bytes, si + 4, version);
        put32(&mut bytes, si + 12, modules.len() as u32);
        put64(&mut bytes, si + 16, 0x1100);
        if !cmdline.is_empty() {
            put64(&mut bytes, si + 24, 0x1800);
            bytes[0x800..0x800 + cmdline.len()].copy_from_slice(cmdline);
        }
        put64(&mut bytes, si + 40, 0x2000);
        put32(&mut bytes, si + 48, map.len() as u32);
        for (i, &(start, size)) in modules.iter().enumerate() {
            put64(&mut bytes, 0x100 + i * 32, start);
            put64(&mut bytes, 0x100 + i * 32 + 8, size);
        }
        for (i, &(start, len, kind)) in map.iter().enumerate() {
            put64(&mut bytes, 0x1000 + i * 24, start);
            put64(&mut bytes, 0x1000 + i * 24 + 8, len);
            put32(&mut bytes, 0x1000 + i * 24 + 16, kind);
        }
        Buffer { base: 0x1000, bytes }
    }

    #[test]
    fn parses_qemu_style_start_info() {
        let mem = image(b"tessera.selftest\0", &[(0x7f00000, 0x1234)], &[(0, 0x9fc00, 1), (0x100000, 0x7ee0000, 1)], 1);
        let info = parse(&mem, 0x1000).unwrap();
        assert_eq!(info.protocol, BootProtocol::Pvh);
        assert_eq!(info.cmdline.as_str(), "tessera.selftest");
        assert_eq!(info.modules.len(), 1);
        assert_eq!(info.modules.as_slice()[0].end, 0x7f01234);
        assert_eq!(info.memory.len(), 2);
    }

    #[test]
    fn rejects_bad_magic_and_old_version() {
        let mut mem = image(b"", &[], &[(0x100000, 0x100000, 1)], 1);
        mem.bytes[0] ^= 1;
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::BadMagic { .. })));
        let mem = image(b"", &[], &[(0x100000, 0x100000, 1)], 0);
        assert_eq!(parse(&mem, 0x1000).unwrap_err(), BootInfoError::NoMemoryMap);
        let mem = image(b"", &[], &[], 1);
        assert_eq!(parse(&mem, 0x1000).unwrap_err(), BootInfoError::NoMemoryMap);
    }

    #[test]
    fn unterminated_cmdline_at_end_of_memory() {
        let mut mem = image(b"x\0", &[], &[(0x100000, 0x100000, 1)], 1);
        // Point the command line at the last bytes of memory, without a NUL.
        let end = 0x1000 + mem.bytes.len() as u64 - 4;
        mem.bytes[24..32].copy_from_slice(&end.to_le_bytes());
        let n = mem.bytes.len();
        mem.bytes[n - 4..].copy_from_slice(b"abcd");
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::Unreadable { .. })));
    }

    #[test]
    fn hostile_counts_are_refused() {
        let mut mem = image(b"", &[], &[(0x100000, 0x100000, 1)], 1);
        mem.bytes[48..52].copy_from_slice(&100_000u32.to_le_bytes());
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::TooMany { .. })));
        let mut mem = image(b"", &[], &[(0x100000, 0x100000, 1)], 1);
        mem.bytes[12..16].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::TooMany { .. })));
        let mem = image(b"", &[(u64::MAX, 2)], &[(0x100000, 0x100000, 1)], 1);
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::Overflow { .. })));
        let mut mem = image(b"", &[], &[(0x100000, 0x100000, 1)], 1);
        mem.bytes[40..48].copy_from_slice(&0x9999_0000u64.to_le_bytes());
        assert!(matches!(parse(&mem, 0x1000), Err(BootInfoError::Unreadable { what: "PVH memory map", .. })));
    }
}
