//! Safe parser for the multiboot2 boot information (the GRUB path).
//!
//! Only the tags the kernel uses are decoded: command line (1), modules (3)
//! and the memory map (6). Every size and offset is checked against the
//! structure's own total size, so a truncated or odd structure is an error.

use crate::bootinfo::{
    c_string, fixed, push_module, push_region, BootInfo, BootInfoError, BootProtocol, Fields, MemoryRegion,
    PhysMemory, RegionKind,
};

/// Value of `eax` at entry when a multiboot2 loader started the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x36d7_6289;

/// Largest boot information structure accepted (GRUB's is a few KiB).
pub const MAX_TOTAL_SIZE: u32 = 1 << 20;

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_MODULE: u32 = 3;
const TAG_MMAP: u32 = 6;
/// Copies of the ACPI RSDP (1.0 and 2.0+).
const TAG_ACPI_OLD: u32 = 14;
const TAG_ACPI_NEW: u32 = 15;
const MMAP_ENTRY_MIN: u32 = 24;

/// Parses the multiboot2 information structure at physical address `addr`.
pub fn parse(mem: &impl PhysMemory, addr: u64) -> Result<BootInfo, BootInfoError> {
    const WHAT: &str = "multiboot2 information";
    if !addr.is_multiple_of(8) {
        return Err(BootInfoError::BadSize { what: "multiboot2 information address (alignment)", value: addr });
    }
    let header = mem.read(addr, 8).ok_or(BootInfoError::Unreadable { what: WHAT, addr, len: 8 })?;
    let total = Fields { bytes: header, what: WHAT }.u32(0)?;
    if !(16..=MAX_TOTAL_SIZE).contains(&total) {
        return Err(BootInfoError::BadSize { what: "multiboot2 information total_size", value: total.into() });
    }
    let bytes = mem
        .read(addr, total as usize)
        .ok_or(BootInfoError::Unreadable { what: WHAT, addr, len: total.into() })?;
    let mut info = BootInfo {
        protocol: BootProtocol::Multiboot2,
        info_range: (addr, addr + u64::from(total)),
        ..BootInfo::default()
    };
    let mut saw_mmap = false;
    let mut offset = 8usize;
    loop {
        let fields = Fields { bytes, what: "multiboot2 tag list (no end tag)" };
        let tag_type = fields.u32(offset)?;
        let tag_size = fields.u32(offset + 4)?;
        if tag_size < 8 {
            return Err(BootInfoError::BadSize { what: "multiboot2 tag size", value: tag_size.into() });
        }
        let end = offset + tag_size as usize;
        let tag = bytes.get(offset..end).ok_or(BootInfoError::Truncated {
            what: "multiboot2 tag",
            needed: end as u64,
            available: bytes.len() as u64,
        })?;
        match tag_type {
            TAG_END => break,
            TAG_CMDLINE => {
                let text = c_string(tag.get(8..).unwrap_or(&[]), "multiboot2 command line")?;
                info.cmdline = fixed(text, "bytes of kernel command line")?;
            }
            TAG_MODULE => {
                let f = Fields { bytes: tag, what: "multiboot2 module tag" };
                let start = u64::from(f.u32(8)?);
                let end = u64::from(f.u32(12)?);
                let name = c_string(tag.get(16..).unwrap_or(&[]), "multiboot2 module name")?;
                push_module(&mut info, start, end, name)?;
            }
            TAG_MMAP => {
                saw_mmap = true;
                parse_mmap(tag, &mut info)?;
            }
            // The newer copy wins; a damaged one is ignored (the base
            // then looks for the RSDP itself).
            TAG_ACPI_OLD | TAG_ACPI_NEW => {
                let copy = crate::acpi::parse_rsdp(tag.get(8..).unwrap_or(&[]), addr + offset as u64 + 8).ok();
                if tag_type == TAG_ACPI_NEW || info.rsdp.is_none() {
                    info.rsdp = copy.or(info.rsdp);
                }
            }
            _ => {}
        }
        // Tags are padded to 8 bytes.
        offset = end.checked_next_multiple_of(8).ok_or(BootInfoError::BadSize {
            what: "multiboot2 tag size",
            value: tag_size.into(),
        })?;
    }
    if !saw_mmap || info.memory.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(info)
}

fn parse_mmap(tag: &[u8], info: &mut BootInfo) -> Result<(), BootInfoError> {
    const WHAT: &str = "multiboot2 memory map";
    let f = Fields { bytes: tag, what: WHAT };
    let entry_size = f.u32(8)?;
    if entry_size < MMAP_ENTRY_MIN || !entry_size.is_multiple_of(8) {
        return Err(BootInfoError::BadSize { what: "multiboot2 memory map entry_size", value: entry_size.into() });
    }
    let body = tag.len().saturating_sub(16);
    if !body.is_multiple_of(entry_size as usize) {
        return Err(BootInfoError::Truncated {
            what: WHAT,
            needed: (body / entry_size as usize + 1) as u64 * u64::from(entry_size) + 16,
            available: tag.len() as u64,
        });
    }
    for index in 0..body / entry_size as usize {
        let at = 16 + index * entry_size as usize;
        let region = MemoryRegion {
            start: f.u64(at)?,
            len: f.u64(at + 8)?,
            kind: RegionKind::from_e820(f.u32(at + 16)?),
        };
        push_region(info, region, WHAT)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Physical memory made of one buffer placed at `base`.
    pub struct Buffer {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl PhysMemory for Buffer {
        fn read(&self, addr: u64, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
            self.bytes.get(start..start.checked_add(len)?)
        }
    }

    fn tag(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&((8 + body.len()) as u32).to_le_bytes());
        out.extend_from_slice(body);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        out
    }

    fn mmap_tag(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&24u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        for &(start, len, kind) in entries {
            body.extend_from_slice(&start.to_le_bytes());
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(TAG_MMAP, &body)
    }

    fn info(tags: &[Vec<u8>]) -> Buffer {
        let mut bytes = vec![0u8; 8];
        for t in tags {
            bytes.extend_from_slice(t);
        }
        bytes.extend_from_slice(&tag(TAG_END, &[]));
        let total = bytes.len() as u32;
        bytes[0..4].copy_from_slice(&total.to_le_bytes());
        Buffer { base: 0x10000, bytes }
    }

    fn module_tag(start: u32, end: u32, name: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&start.to_le_bytes());
        body.extend_from_slice(&end.to_le_bytes());
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        tag(TAG_MODULE, &body)
    }

    #[test]
    fn parses_cmdline_modules_and_map() {
        let mem = info(&[
            tag(TAG_CMDLINE, b"tessera.selftest console=ttyS0\0"),
            module_tag(0x200000, 0x280000, "symbols"),
            tag(4, &[0u8; 8]), // basic meminfo: ignored
            mmap_tag(&[(0, 0x9fc00, 1), (0x100000, 0x7ee0000, 1), (0xfffc0000, 0x40000, 2)]),
        ]);
        let parsed = parse(&mem, 0x10000).unwrap();
        assert_eq!(parsed.protocol, BootProtocol::Multiboot2);
        assert_eq!(parsed.cmdline.as_str(), "tessera.selftest console=ttyS0");
        assert_eq!(parsed.modules.len(), 1);
        let module = parsed.modules.as_slice()[0];
        assert_eq!((module.start, module.end, module.name.as_str()), (0x200000, 0x280000, "symbols"));
        assert_eq!(parsed.memory.len(), 3);
        assert_eq!(parsed.memory.as_slice()[1].kind, RegionKind::Usable);
        assert_eq!(parsed.memory.as_slice()[2].kind, RegionKind::Reserved);
        assert_eq!(parsed.info_range, (0x10000, 0x10000 + mem.bytes.len() as u64));
    }

    /// An RSDP copy as GRUB puts it in its tags (`new`: revision 2).
    fn rsdp_copy(new: bool, rsdt: u32) -> Vec<u8> {
        let mut r = vec![0u8; if new { 36 } else { 20 }];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = if new { 2 } else { 0 };
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        let first = r[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        r[8] = 0u8.wrapping_sub(first);
        if new {
            r[20..24].copy_from_slice(&36u32.to_le_bytes());
            r[24..32].copy_from_slice(&u64::from(rsdt).to_le_bytes());
            let all = r.iter().fold(0u8, |s, b| s.wrapping_add(*b));
            r[32] = 0u8.wrapping_sub(all);
        }
        r
    }

    #[test]
    fn acpi_tags_give_the_rsdp_and_damaged_ones_are_ignored() {
        let mmap = || mmap_tag(&[(0x100000, 0x100000, 1)]);
        let old = parse(&info(&[tag(TAG_ACPI_OLD, &rsdp_copy(false, 0x7000)), mmap()]), 0x10000).unwrap();
        assert_eq!(old.rsdp.map(|r| (r.revision, r.rsdt, r.xsdt)), Some((0, 0x7000, 0)));
        let both = parse(&info(&[tag(TAG_ACPI_NEW, &rsdp_copy(true, 0x8000)), tag(TAG_ACPI_OLD, &rsdp_copy(false, 0x7000)), mmap()]), 0x10000).unwrap();
        assert_eq!(both.rsdp.map(|r| (r.revision, r.xsdt)), Some((2, 0x8000)), "the newer copy wins");
        let mut damaged = rsdp_copy(true, 0x8000);
        damaged[17] ^= 1;
        let bad = parse(&info(&[tag(TAG_ACPI_NEW, &damaged), mmap()]), 0x10000).unwrap();
        assert_eq!(bad.rsdp, None);
        let short = parse(&info(&[tag(TAG_ACPI_NEW, &[b'R'; 5]), mmap()]), 0x10000).unwrap();
        assert_eq!(short.rsdp, None);
    }

    #[test]
    fn truncated_memory_map_is_named() {
        let mut mmap = mmap_tag(&[(0x100000, 0x100000, 1)]);
        // Claim 20 bytes less than a whole entry: a truncated map.
        let size = u32::from_le_bytes(mmap[4..8].try_into().unwrap()) - 20;
        mmap[4..8].copy_from_slice(&size.to_le_bytes());
        let err = parse(&info(&[mmap]), 0x10000).unwrap_err();
        assert!(matches!(err, BootInfoError::Truncated { what: "multiboot2 memory map", .. }), "{err:?}");
    }

    #[test]
    fn odd_entry_size_is_rejected() {
        let mut mmap = mmap_tag(&[(0x100000, 0x100000, 1)]);
        mmap[8..12].copy_from_slice(&12u32.to_le_bytes());
        let err = parse(&info(&[mmap]), 0x10000).unwrap_err();
        assert_eq!(err, BootInfoError::BadSize { what: "multiboot2 memory map entry_size", value: 12 });
    }

    #[test]
    fn missing_memory_map_is_an_error() {
        let err = parse(&info(&[tag(TAG_CMDLINE, b"x\0")]), 0x10000).unwrap_err();
        assert_eq!(err, BootInfoError::NoMemoryMap);
    }

    #[test]
    fn tag_running_past_the_end_is_truncated() {
        let mut mem = info(&[mmap_tag(&[(0x100000, 0x100000, 1)])]);
        // Grow the mmap tag's size past the structure's end.
        mem.bytes[12..16].copy_from_slice(&4096u32.to_le_bytes());
        let err = parse(&mem, 0x10000).unwrap_err();
        assert!(matches!(err, BootInfoError::Truncated { what: "multiboot2 tag", .. }), "{err:?}");
    }

    #[test]
    fn missing_end_tag_is_truncated() {
        let mut mem = info(&[mmap_tag(&[(0x100000, 0x100000, 1)])]);
        let len = mem.bytes.len() - 8; // drop the end tag
        mem.bytes.truncate(len);
        mem.bytes[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        let err = parse(&mem, 0x10000).unwrap_err();
        assert!(matches!(err, BootInfoError::Truncated { .. }), "{err:?}");
    }

    #[test]
    fn bad_sizes_and_addresses() {
        let mut mem = info(&[mmap_tag(&[(0x100000, 0x100000, 1)])]);
        assert!(matches!(parse(&mem, 0x10004), Err(BootInfoError::BadSize { .. })));
        assert!(matches!(parse(&mem, 0x20000), Err(BootInfoError::Unreadable { .. })));
        mem.bytes[0..4].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(parse(&mem, 0x10000), Err(BootInfoError::BadSize { .. })));
        mem.bytes[0..4].copy_from_slice(&(MAX_TOTAL_SIZE + 1).to_le_bytes());
        assert!(matches!(parse(&mem, 0x10000), Err(BootInfoError::BadSize { .. })));
        // A zero-sized tag would loop forever if accepted.
        let mut mem = info(&[mmap_tag(&[(0x100000, 0x100000, 1)])]);
        mem.bytes[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(parse(&mem, 0x10000), Err(BootInfoError::BadSize { .. })));
    }

    #[test]
    fn wrapping_region_and_bad_strings() {
        let err = parse(&info(&[mmap_tag(&[(u64::MAX - 10, 100, 1)])]), 0x10000).unwrap_err();
        assert!(matches!(err, BootInfoError::Overflow { index: 0, .. }));
        let err = parse(&info(&[tag(TAG_CMDLINE, b"no-nul"), mmap_tag(&[(0, 1, 1)])]), 0x10000).unwrap_err();
        assert_eq!(err, BootInfoError::BadString { what: "multiboot2 command line" });
        let err = parse(&info(&[module_tag(0x2000, 0x1000, "x"), mmap_tag(&[(0, 1, 1)])]), 0x10000).unwrap_err();
        assert!(matches!(err, BootInfoError::Overflow { what: "module", .. }));
    }

    #[test]
    fn too_many_entries_is_named() {
        let entries: Vec<_> = (0..200u64).map(|i| (i * 0x1000, 0x1000, 1)).collect();
        let err = parse(&info(&[mmap_tag(&entries)]), 0x10000).unwrap_err();
        assert_eq!(err, BootInfoError::TooMany { what: "memory map entries", limit: 128 });
    }
}
