//! Bounds checks on an ELF64 file before a parser that trusts offsets
//! (xmas-elf indexes slices directly) looks at it.

/// Why an ELF image was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfCheckError {
    /// Too short, or not `\x7fELF`, 64-bit, little-endian.
    NotElf64,
    /// The section header table lies outside the file.
    SectionTableOutside,
    /// Section `index` claims bytes outside the file.
    SectionOutside { index: u16 },
}

impl core::fmt::Display for ElfCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfCheckError::NotElf64 => f.write_str("not a little-endian ELF64 file"),
            ElfCheckError::SectionTableOutside => f.write_str("section header table lies outside the file"),
            ElfCheckError::SectionOutside { index } => write!(f, "section {index} lies outside the file"),
        }
    }
}

fn read<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Checks that the header, the section header table and every section
/// with file contents lie inside `bytes`.
pub fn check_sections(bytes: &[u8]) -> Result<(), ElfCheckError> {
    const SHT_NOBITS: u32 = 8;
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) || bytes.len() < 64 {
        return Err(ElfCheckError::NotElf64);
    }
    let u64_at = |at| read::<8>(bytes, at).map(u64::from_le_bytes);
    let u16_at = |at| read::<2>(bytes, at).map(u16::from_le_bytes);
    let shoff = u64_at(0x28).ok_or(ElfCheckError::NotElf64)?;
    let shentsize = u16_at(0x3a).ok_or(ElfCheckError::NotElf64)?;
    let shnum = u16_at(0x3c).ok_or(ElfCheckError::NotElf64)?;
    if shnum > 0 && shentsize < 64 {
        return Err(ElfCheckError::SectionTableOutside);
    }
    let table_end = u64::from(shentsize).checked_mul(u64::from(shnum)).and_then(|n| n.checked_add(shoff));
    if table_end.is_none_or(|end| end > bytes.len() as u64) {
        return Err(ElfCheckError::SectionTableOutside);
    }
    for index in 0..shnum {
        let header = shoff as usize + usize::from(index) * usize::from(shentsize);
        let kind = read::<4>(bytes, header + 4).map(u32::from_le_bytes).ok_or(ElfCheckError::SectionTableOutside)?;
        let offset = u64_at(header + 0x18).ok_or(ElfCheckError::SectionTableOutside)?;
        let size = u64_at(header + 0x20).ok_or(ElfCheckError::SectionTableOutside)?;
        if kind != SHT_NOBITS && offset.checked_add(size).is_none_or(|end| end > bytes.len() as u64) {
            return Err(ElfCheckError::SectionOutside { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one section of `size` bytes at `offset`.
    fn elf(offset: u64, size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 64 + 16];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
        b[64 + 4..64 + 8].copy_from_slice(&1u32.to_le_bytes());
        b[64 + 0x18..64 + 0x20].copy_from_slice(&offset.to_le_bytes());
        b[64 + 0x20..64 + 0x28].copy_from_slice(&size.to_le_bytes());
        b
    }

    #[test]
    fn accepts_sections_inside() {
        assert_eq!(check_sections(&elf(128, 16)), Ok(()));
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(check_sections(b"\x7fELF"), Err(ElfCheckError::NotElf64));
        assert_eq!(check_sections(&elf(128, 17)), Err(ElfCheckError::SectionOutside { index: 0 }));
        assert_eq!(check_sections(&elf(u64::MAX, 2)), Err(ElfCheckError::SectionOutside { index: 0 }));
        let mut b = elf(128, 16);
        b[0x3c..0x3e].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(check_sections(&b), Err(ElfCheckError::SectionTableOutside));
        let mut b = elf(128, 16);
        b[0x3a..0x3c].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(check_sections(&b), Err(ElfCheckError::SectionTableOutside));
    }
}
