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
    /// The section names, symbol table or its string table are malformed.
    BadSymbols,
}

impl core::fmt::Display for ElfCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ElfCheckError::NotElf64 => f.write_str("not a little-endian ELF64 file"),
            ElfCheckError::SectionTableOutside => f.write_str("section header table lies outside the file"),
            ElfCheckError::SectionOutside { index } => write!(f, "section {index} lies outside the file"),
            ElfCheckError::BadSymbols => f.write_str("section names or symbol table malformed"),
        }
    }
}

fn read<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Checks everything a symbol lookup with xmas-elf will touch, so that it
/// cannot panic: [`check_sections`], plus section names inside the section
/// name table, an aligned `.symtab` of whole entries, and every symbol name
/// inside `.strtab`. `bytes` must start at an 8-byte aligned address.
pub fn check_symbol_file(bytes: &[u8]) -> Result<(), ElfCheckError> {
    const SHT_SYMTAB: u32 = 2;
    check_sections(bytes)?;
    let u64_at = |at: usize| read::<8>(bytes, at).map(u64::from_le_bytes);
    let u32_at = |at: usize| read::<4>(bytes, at).map(u32::from_le_bytes);
    let u16_at = |at: usize| read::<2>(bytes, at).map(u16::from_le_bytes);
    let bad = ElfCheckError::BadSymbols;
    let shoff = u64_at(0x28).ok_or(bad)? as usize;
    let shnum = usize::from(u16_at(0x3c).ok_or(bad)?);
    let shstrndx = usize::from(u16_at(0x3e).ok_or(bad)?);
    if !shoff.is_multiple_of(8) || u16_at(0x3a) != Some(64) || shstrndx >= shnum {
        return Err(bad);
    }
    let header = |i: usize| shoff + i * 64;
    let section = |i: usize| -> Option<(u32, u32, u64, u64, u64)> {
        let h = header(i);
        Some((u32_at(h)?, u32_at(h + 4)?, u64_at(h + 0x18)?, u64_at(h + 0x20)?, u64_at(h + 0x38)?))
    };
    let (_, _, names_offset, names_size, _) = section(shstrndx).ok_or(bad)?;
    let name_of = |name: u32| -> Option<&[u8]> {
        let start = names_offset.checked_add(u64::from(name))? as usize;
        let rest = bytes.get(start..(names_offset + names_size) as usize)?;
        rest.split(|&b| b == 0).next()
    };
    let mut strtab_size = None;
    let mut symtab = None;
    for i in 0..shnum {
        let (name, kind, offset, size, entsize) = section(i).ok_or(bad)?;
        if u64::from(name) >= names_size {
            return Err(bad);
        }
        match name_of(name) {
            Some(b".strtab") => strtab_size = Some(size),
            Some(b".symtab") if kind == SHT_SYMTAB => symtab = Some((offset, size, entsize)),
            _ => {}
        }
    }
    let (offset, size, entsize) = symtab.ok_or(bad)?;
    let strtab_size = strtab_size.ok_or(bad)?;
    if !offset.is_multiple_of(8) || entsize != 24 || !size.is_multiple_of(24) {
        return Err(bad);
    }
    for entry in 0..(size / 24) as usize {
        let name = u32_at(offset as usize + entry * 24).ok_or(bad)?;
        if u64::from(name) >= strtab_size {
            return Err(bad);
        }
    }
    Ok(())
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

    /// A file with sections: null, .shstrtab, .strtab, .symtab (2 symbols).
    fn symbol_file() -> Vec<u8> {
        let shstr = b"\0.shstrtab\0.strtab\0.symtab\0".to_vec();
        let strtab = b"\0main\0helper\0".to_vec();
        let mut symtab = vec![0u8; 48];
        symtab[0..4].copy_from_slice(&1u32.to_le_bytes());
        symtab[24..28].copy_from_slice(&6u32.to_le_bytes());
        let mut b = vec![0u8; 64];
        let shstr_off = b.len();
        b.extend_from_slice(&shstr);
        let strtab_off = b.len();
        b.extend_from_slice(&strtab);
        while !b.len().is_multiple_of(8) {
            b.push(0);
        }
        let symtab_off = b.len();
        b.extend_from_slice(&symtab);
        let shoff = b.len();
        let sections: [(u32, u32, usize, usize, u64); 4] = [
            (0, 0, 0, 0, 0),
            (1, 3, shstr_off, shstr.len(), 0),
            (11, 3, strtab_off, strtab.len(), 0),
            (19, 2, symtab_off, symtab.len(), 24),
        ];
        for (name, kind, offset, size, entsize) in sections {
            let mut h = vec![0u8; 64];
            h[0..4].copy_from_slice(&name.to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h[0x38..0x40].copy_from_slice(&entsize.to_le_bytes());
            b.extend_from_slice(&h);
        }
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        b[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        b[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        b[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        b
    }

    #[test]
    fn symbol_file_checks() {
        let good = symbol_file();
        assert_eq!(check_symbol_file(&good), Ok(()));
        let shoff = u64::from_le_bytes(good[0x28..0x30].try_into().unwrap()) as usize;
        // A symbol name beyond .strtab.
        let mut b = good.clone();
        let symtab_off = u64::from_le_bytes(b[shoff + 3 * 64 + 0x18..shoff + 3 * 64 + 0x20].try_into().unwrap()) as usize;
        b[symtab_off + 24..symtab_off + 28].copy_from_slice(&999u32.to_le_bytes());
        assert_eq!(check_symbol_file(&b), Err(ElfCheckError::BadSymbols));
        // A section name beyond .shstrtab.
        let mut b = good.clone();
        b[shoff + 64..shoff + 68].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(check_symbol_file(&b), Err(ElfCheckError::BadSymbols));
        // Misaligned symbol table.
        let mut b = good.clone();
        let at = shoff + 3 * 64 + 0x18;
        let off = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) + 1;
        b[at..at + 8].copy_from_slice(&off.to_le_bytes());
        assert!(check_symbol_file(&b).is_err());
        // Bad section-name index.
        let mut b = good.clone();
        b[0x3e..0x40].copy_from_slice(&9u16.to_le_bytes());
        assert_eq!(check_symbol_file(&b), Err(ElfCheckError::BadSymbols));
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            assert!(check_symbol_file(&good[..cut]).is_err(), "cut at {cut}");
        }
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
