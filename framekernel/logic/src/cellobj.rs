//! Reading a cell: an x86_64 ELF64 relocatable object (`ET_REL`), checked
//! before anything is mapped, and laid out into text, read-only and
//! writable parts. Every offset, index and name comes from the file, so
//! each is bounds-checked and a defect is an error naming it.

use crate::reloc::{RelocError, RelocKind};
use alloc::vec::Vec;
use core::fmt;

const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_RELA: u32 = 4;
const SHT_NOBITS: u32 = 8;
const SHT_REL: u32 = 9;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const SHN_UNDEF: u16 = 0;
const SHN_ABS: u16 = 0xfff1;
const SHN_COMMON: u16 = 0xfff2;
const PAGE: u64 = 4096;

/// Why a cell file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellError {
    /// Not a 64-bit little-endian ELF file.
    NotElf64,
    /// An ELF file of another kind than relocatable (`e_type`).
    NotRelocatable { e_type: u16 },
    /// Built for another machine (`e_machine`).
    WrongMachine { machine: u16 },
    /// A structure lies outside the file.
    Truncated(&'static str),
    /// Section `index` is malformed (bad link, alignment or entry size).
    BadSection { index: usize },
    /// Symbol `index` is malformed (bad name or section).
    BadSymbol { index: usize },
    /// `SHT_REL` (without addends) is not used on x86_64.
    RelWithoutAddends { section: usize },
    /// A relocation cannot be applied.
    Relocation { section: usize, index: usize, error: RelocError },
}

impl fmt::Display for CellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellError::NotElf64 => f.write_str("not a 64-bit little-endian ELF file"),
            CellError::NotRelocatable { e_type } => write!(f, "ELF type {e_type}, not a relocatable object (ET_REL)"),
            CellError::WrongMachine { machine } => write!(f, "built for machine {machine}, not x86_64 (62)"),
            CellError::Truncated(what) => write!(f, "{what} lies outside the file"),
            CellError::BadSection { index } => write!(f, "section {index} is malformed"),
            CellError::BadSymbol { index } => write!(f, "symbol {index} is malformed"),
            CellError::RelWithoutAddends { section } => write!(f, "section {section}: SHT_REL relocations are not used on x86_64"),
            CellError::Relocation { section, index, error } => write!(f, "section {section}, relocation {index}: {error}"),
        }
    }
}

fn bytes<const N: usize>(data: &[u8], at: u64, what: &'static str) -> Result<[u8; N], CellError> {
    let at = usize::try_from(at).map_err(|_| CellError::Truncated(what))?;
    data.get(at..at.checked_add(N).ok_or(CellError::Truncated(what))?)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(CellError::Truncated(what))
}

fn u16_at(data: &[u8], at: u64, what: &'static str) -> Result<u16, CellError> {
    bytes::<2>(data, at, what).map(u16::from_le_bytes)
}

fn u32_at(data: &[u8], at: u64, what: &'static str) -> Result<u32, CellError> {
    bytes::<4>(data, at, what).map(u32::from_le_bytes)
}

fn u64_at(data: &[u8], at: u64, what: &'static str) -> Result<u64, CellError> {
    bytes::<8>(data, at, what).map(u64::from_le_bytes)
}

/// One section header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Offset of the name in the section-name table.
    pub name: u32,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// File offset of the contents.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// `sh_link`.
    pub link: u32,
    /// `sh_info`.
    pub info: u32,
    /// Alignment (0 or a power of two).
    pub align: u64,
    /// Entry size for tables.
    pub entsize: u64,
}

impl Section {
    /// True when the section occupies memory in the loaded cell.
    pub fn is_alloc(&self) -> bool {
        self.flags & SHF_ALLOC != 0 && self.size > 0
    }
}

/// Where a symbol is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolPlace {
    /// Undefined here: resolved against the kernel's symbols.
    Undefined,
    /// An absolute value.
    Absolute,
    /// At `value` bytes into section `index`.
    Section(usize),
}

/// One symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Name (empty for section symbols).
    pub name: &'a str,
    /// Where it is defined.
    pub place: SymbolPlace,
    /// Value (offset in its section, or absolute).
    pub value: u64,
    /// True for global or weak binding.
    pub global: bool,
}

/// One relocation with addend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rela {
    /// Offset of the field in the target section.
    pub offset: u64,
    /// Index of the symbol.
    pub symbol: usize,
    /// The relocation type, checked.
    pub kind: RelocKind,
    /// Addend.
    pub addend: i64,
}

/// A checked cell object.
pub struct CellObject<'a> {
    data: &'a [u8],
    /// The section headers.
    pub sections: Vec<Section>,
    symtab: usize,
}

impl<'a> CellObject<'a> {
    /// Checks the header and every section header of `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, CellError> {
        if data.get(..4) != Some(b"\x7fELF".as_slice()) || data.get(4) != Some(&2) || data.get(5) != Some(&1) {
            return Err(CellError::NotElf64);
        }
        let e_type = u16_at(data, 16, "ELF header")?;
        if e_type != 1 {
            return Err(CellError::NotRelocatable { e_type });
        }
        let machine = u16_at(data, 18, "ELF header")?;
        if machine != 62 {
            return Err(CellError::WrongMachine { machine });
        }
        let shoff = u64_at(data, 40, "ELF header")?;
        let shentsize = u16_at(data, 58, "ELF header")?;
        let shnum = u16_at(data, 60, "ELF header")?;
        if shentsize != 64 || shnum == 0 {
            return Err(CellError::Truncated("section header table"));
        }
        let mut sections = Vec::with_capacity(usize::from(shnum));
        for i in 0..u64::from(shnum) {
            let at = shoff.checked_add(i * 64).ok_or(CellError::Truncated("section header table"))?;
            let what = "section header table";
            let s = Section {
                name: u32_at(data, at, what)?,
                kind: u32_at(data, at + 4, what)?,
                flags: u64_at(data, at + 8, what)?,
                offset: u64_at(data, at + 24, what)?,
                size: u64_at(data, at + 32, what)?,
                link: u32_at(data, at + 40, what)?,
                info: u32_at(data, at + 44, what)?,
                align: u64_at(data, at + 48, what)?,
                entsize: u64_at(data, at + 56, what)?,
            };
            let index = i as usize;
            if s.align > PAGE || (s.align > 1 && !s.align.is_power_of_two()) {
                return Err(CellError::BadSection { index });
            }
            if s.kind != SHT_NOBITS && s.offset.checked_add(s.size).is_none_or(|end| end > data.len() as u64) {
                return Err(CellError::Truncated("section contents"));
            }
            sections.push(s);
        }
        let symtab = sections.iter().position(|s| s.kind == SHT_SYMTAB).ok_or(CellError::Truncated("symbol table"))?;
        let object = Self { data, sections, symtab };
        object.check_tables()?;
        Ok(object)
    }

    fn check_tables(&self) -> Result<(), CellError> {
        for (index, s) in self.sections.iter().enumerate() {
            match s.kind {
                SHT_SYMTAB => {
                    let strtab = self.sections.get(s.link as usize).ok_or(CellError::BadSection { index })?;
                    if s.entsize != 24 || strtab.kind != SHT_STRTAB {
                        return Err(CellError::BadSection { index });
                    }
                }
                SHT_RELA => {
                    let target = self.sections.get(s.info as usize).ok_or(CellError::BadSection { index })?;
                    if s.entsize != 24 || s.link as usize != self.symtab || target.kind == SHT_NOBITS {
                        return Err(CellError::BadSection { index });
                    }
                }
                SHT_REL => return Err(CellError::RelWithoutAddends { section: index }),
                _ => {}
            }
        }
        Ok(())
    }

    /// The contents of section `index` (empty for `NOBITS`).
    pub fn contents(&self, index: usize) -> &'a [u8] {
        match self.sections.get(index) {
            Some(s) if s.kind != SHT_NOBITS => {
                self.data.get(s.offset as usize..(s.offset + s.size) as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    fn string(&self, table: usize, offset: u32) -> Option<&'a str> {
        let bytes = self.contents(table).get(offset as usize..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        core::str::from_utf8(bytes.get(..end)?).ok()
    }

    /// Number of symbols.
    pub fn symbol_count(&self) -> usize {
        self.sections.get(self.symtab).map_or(0, |s| (s.size / 24) as usize)
    }

    /// Symbol `index`, checked.
    pub fn symbol(&self, index: usize) -> Result<Symbol<'a>, CellError> {
        let table = self.sections.get(self.symtab).ok_or(CellError::BadSymbol { index })?;
        if index >= self.symbol_count() {
            return Err(CellError::BadSymbol { index });
        }
        let at = table.offset + index as u64 * 24;
        let what = "symbol table";
        let name = u32_at(self.data, at, what)?;
        let info = bytes::<1>(self.data, at + 4, what)?[0];
        let shndx = u16_at(self.data, at + 6, what)?;
        let value = u64_at(self.data, at + 8, what)?;
        let name = self.string(table.link as usize, name).ok_or(CellError::BadSymbol { index })?;
        let place = match shndx {
            SHN_UNDEF => SymbolPlace::Undefined,
            SHN_ABS => SymbolPlace::Absolute,
            SHN_COMMON => return Err(CellError::BadSymbol { index }), // rustc never emits COMMON
            i if usize::from(i) < self.sections.len() => SymbolPlace::Section(usize::from(i)),
            _ => return Err(CellError::BadSymbol { index }),
        };
        Ok(Symbol { name, place, value, global: info >> 4 != 0 })
    }

    /// Name of section `index`.
    pub fn section_name(&self, index: usize) -> Option<&'a str> {
        let names = u16_at(self.data, 62, "ELF header").ok()?;
        self.string(usize::from(names), self.sections.get(index)?.name)
    }

    /// The relocations of `SHT_RELA` section `index`, each checked, with the
    /// section they apply to.
    pub fn relocations(&self, index: usize) -> Result<(usize, Vec<Rela>), CellError> {
        let s = self.sections.get(index).filter(|s| s.kind == SHT_RELA).ok_or(CellError::BadSection { index })?;
        let target = s.info as usize;
        let target_size = self.sections.get(target).map_or(0, |t| t.size);
        let mut out = Vec::with_capacity((s.size / 24) as usize);
        for i in 0..s.size / 24 {
            let at = s.offset + i * 24;
            let what = "relocation table";
            let offset = u64_at(self.data, at, what)?;
            let info = u64_at(self.data, at + 8, what)?;
            let addend = u64_at(self.data, at + 16, what)? as i64;
            let error = |error| CellError::Relocation { section: index, index: i as usize, error };
            let kind = RelocKind::from_type(info as u32).map_err(error)?;
            let symbol = (info >> 32) as usize;
            if symbol >= self.symbol_count() || offset.checked_add(kind.width() as u64).is_none_or(|end| end > target_size) {
                return Err(CellError::BadSection { index });
            }
            out.push(Rela { offset, symbol, kind, addend });
        }
        Ok((target, out))
    }
}

/// Where the loaded parts go, as offsets from the cell's base address:
/// text (read, execute), then read-only data, then writable data, each
/// starting on a page so each gets its own page rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Offset of each section (None for sections that are not loaded).
    pub placement: Vec<Option<u64>>,
    /// `[start, end)` of the text part.
    pub text: (u64, u64),
    /// `[start, end)` of the read-only part.
    pub rodata: (u64, u64),
    /// `[start, end)` of the writable part.
    pub data: (u64, u64),
}

impl Layout {
    /// Bytes of address space the cell needs (page multiple).
    pub fn size(&self) -> u64 {
        self.data.1.next_multiple_of(PAGE)
    }
}

/// Lays out the loaded sections of `object`.
pub fn layout(object: &CellObject<'_>) -> Result<Layout, CellError> {
    let mut placement = alloc::vec![None; object.sections.len()];
    let mut at = 0u64;
    let mut parts = [(0u64, 0u64); 3];
    let kinds: [fn(&Section) -> bool; 3] = [
        |s| s.flags & SHF_EXECINSTR != 0,
        |s| s.flags & (SHF_EXECINSTR | SHF_WRITE) == 0,
        |s| s.flags & SHF_WRITE != 0 && s.flags & SHF_EXECINSTR == 0,
    ];
    for (part, belongs) in parts.iter_mut().zip(kinds) {
        at = at.next_multiple_of(PAGE);
        let start = at;
        // Writable: contents first, zero-filled (`NOBITS`) after.
        for nobits in [false, true] {
            for (index, s) in object.sections.iter().enumerate() {
                if !s.is_alloc() || !belongs(s) || (s.kind == SHT_NOBITS) != nobits {
                    continue;
                }
                at = at.next_multiple_of(s.align.max(1));
                if let Some(slot) = placement.get_mut(index) {
                    *slot = Some(at);
                }
                at = at.checked_add(s.size).ok_or(CellError::BadSection { index })?;
            }
        }
        *part = (start, at);
    }
    let [text, rodata, data] = parts;
    Ok(Layout { placement, text, rodata, data })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A real cell object: a small `no_std` crate compiled the way cells
    /// are (see docs/cells-plan.md).
    fn real_cell() -> Vec<u8> {
        crate::testcell::compile(
            "#![no_std]\nextern crate alloc;\nuse alloc::vec::Vec;\n\
             pub static TABLE: [u32; 4] = [1, 2, 3, 4];\npub static mut HITS: u64 = 0;\n\
             #[unsafe(no_mangle)]\npub extern \"Rust\" fn cell_entry(x: u64) -> u64 {\n\
             let v: Vec<u64> = (0..x).map(|i| i * 3).collect();\nlet s: u64 = v.iter().sum();\n\
             if s == 7 { panic!(\"bad {}\", s); }\ns + u64::from(TABLE[(x % 4) as usize])\n}\n",
        )
    }

    #[test]
    fn a_real_cell_parses_and_lays_out() {
        let data = real_cell();
        let object = CellObject::parse(&data).unwrap();
        let entry = (0..object.symbol_count()).map(|i| object.symbol(i).unwrap()).find(|s| s.name == "cell_entry").unwrap();
        assert!(entry.global && matches!(entry.place, SymbolPlace::Section(_)));
        let undefined: Vec<&str> = (0..object.symbol_count())
            .map(|i| object.symbol(i).unwrap())
            .filter(|s| s.place == SymbolPlace::Undefined && !s.name.is_empty())
            .map(|s| s.name)
            .collect();
        assert!(undefined.iter().any(|n| n.contains("panic_fmt")), "{undefined:?}");
        assert!(undefined.iter().any(|n| n.contains("__rust_alloc")), "{undefined:?}");
        let mut relocations = 0;
        for (index, s) in object.sections.iter().enumerate() {
            if s.kind == SHT_RELA {
                let (target, relas) = object.relocations(index).unwrap();
                assert!(object.sections[target].is_alloc());
                relocations += relas.len();
            }
        }
        assert!(relocations > 0);
        let layout = layout(&object).unwrap();
        let text = object.section_name(match entry.place {
            SymbolPlace::Section(i) => i,
            _ => unreachable!(),
        });
        assert!(text.unwrap().starts_with(".text"));
        assert!(layout.text.0 == 0 && layout.text.1 > 0);
        assert!(layout.rodata.0.is_multiple_of(PAGE) && layout.data.0.is_multiple_of(PAGE));
        assert!(layout.rodata.0 >= layout.text.1 && layout.data.0 >= layout.rodata.1);
        for (index, s) in object.sections.iter().enumerate() {
            match layout.placement[index] {
                Some(at) => assert!(s.is_alloc() && at.is_multiple_of(s.align.max(1))),
                None => assert!(!s.is_alloc()),
            }
        }
        assert!(layout.size().is_multiple_of(PAGE));
    }

    #[test]
    fn every_truncation_and_header_defect_is_an_error() {
        let data = real_cell();
        for len in (0..data.len()).step_by(53) {
            // Cut anywhere: an error (some cuts may leave a valid prefix
            // only if the tail was padding, which ELF section tables are not).
            assert!(CellObject::parse(&data[..len]).is_err(), "truncated to {len}");
        }
        let mut exec = data.clone();
        exec[16] = 2;
        assert_eq!(CellObject::parse(&exec).err(), Some(CellError::NotRelocatable { e_type: 2 }));
        let mut arm = data.clone();
        arm[18] = 183;
        assert_eq!(CellObject::parse(&arm).err(), Some(CellError::WrongMachine { machine: 183 }));
        assert!(CellError::WrongMachine { machine: 183 }.to_string().contains("183"));
        let mut class = data.clone();
        class[4] = 1;
        assert_eq!(CellObject::parse(&class).err(), Some(CellError::NotElf64));
        // Corrupt bytes anywhere: never a panic.
        for at in (0..data.len()).step_by(37) {
            let mut bad = data.clone();
            bad[at] ^= 0xa5;
            if let Ok(object) = CellObject::parse(&bad) {
                for i in 0..object.symbol_count() {
                    let _ = object.symbol(i);
                }
                for index in 0..object.sections.len() {
                    let _ = object.relocations(index);
                }
                let _ = layout(&object);
            }
        }
    }

    #[test]
    fn unknown_relocation_types_are_named() {
        let data = real_cell();
        let object = CellObject::parse(&data).unwrap();
        let (index, s) = object.sections.iter().enumerate().find(|(_, s)| s.kind == SHT_RELA).unwrap();
        let mut bad = data.clone();
        let info_at = (s.offset + 8) as usize;
        bad[info_at..info_at + 4].copy_from_slice(&19u32.to_le_bytes()); // R_X86_64_TLSGD
        let object = CellObject::parse(&bad).unwrap();
        let err = object.relocations(index).unwrap_err();
        assert!(err.to_string().contains("R_X86_64_TLSGD"), "{err}");
    }
}
