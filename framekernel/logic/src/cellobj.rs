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

/// Why a cell object could not be linked at its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The object itself is malformed.
    Object(CellError),
    /// An undefined symbol the kernel does not define.
    Unresolved(alloc::string::String),
    /// No function made by `cell_entry!` (`__tessera_cell_entry`).
    NoEntry,
    /// More than one entry function.
    ManyEntries,
    /// The entry function is not one `cell_entry!` made (no ABI marker,
    /// or one of another version).
    NoAbiMarker,
    /// The loaded image would exceed the limit.
    TooLarge { bytes: u64 },
    /// No memory for the image.
    NoMemory { bytes: u64 },
    /// A symbol outside the cell import allowlist (`cellimports`): `path`
    /// is its demangled name, `name` the symbol.
    RefusedImport { name: alloc::string::String, path: alloc::string::String },
}

impl From<CellError> for LinkError {
    fn from(e: CellError) -> Self {
        LinkError::Object(e)
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::Object(e) => write!(f, "{e}"),
            LinkError::Unresolved(name) => write!(f, "undefined symbol {name} is not defined by the kernel"),
            LinkError::NoEntry => f.write_str("no entry function (a cell declares one with tessera_cell_api::cell_entry!)"),
            LinkError::ManyEntries => f.write_str("more than one entry function"),
            LinkError::NoAbiMarker => f.write_str(
                "the entry function was not made by tessera_cell_api::cell_entry! (no single __TESSERA_CELL_ABI marker of this ABI version)",
            ),
            LinkError::TooLarge { bytes } => write!(f, "a {bytes}-byte image exceeds the {MAX_IMAGE}-byte limit for a cell"),
            LinkError::NoMemory { bytes } => write!(f, "no memory for a {bytes}-byte cell image"),
            LinkError::RefusedImport { name, path } => write!(
                f,
                "imports {path} ({name}), which is not on the cell import allowlist (core, alloc, cell-api, the base's handle APIs): \
                 a cell may not leave pointers to its code where the registry cannot revoke them"
            ),
        }
    }
}

/// Largest image (all parts) a cell may need.
pub const MAX_IMAGE: u64 = 64 << 20;

/// The name part every cell's entry function has.
pub const ENTRY_NAME: &str = "__tessera_cell_entry";

/// True for the mangled name of a function called `__tessera_cell_entry`
/// at the root of a crate (legacy `_ZN5crate20__tessera_cell_entry17h..E`
/// or v0 `_RNv..20__tessera_cell_entry`).
pub fn is_entry_symbol(name: &str) -> bool {
    is_root_symbol(name, "20__tessera_cell_entry")
}

/// The first half of the marker `cell_entry!` puts in a static next to
/// the entry function: it says the entry has the signature the loader
/// calls it with (`fn() -> I::Export` for the interface `I` whose
/// fingerprint is the second half). A function that merely has the
/// entry's name, without the macro, lacks it and is refused.
pub const ENTRY_ABI: [u8; 32] = *b"tessera cell ABI 2: fn()->Export";

/// The marker static's contents: [`ENTRY_ABI`] and the interface's
/// fingerprint.
pub const fn marker(fingerprint: [u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let (abi, fp) = out.split_at_mut(32);
    abi.copy_from_slice(&ENTRY_ABI);
    fp.copy_from_slice(&fingerprint);
    out
}

/// True for the mangled name of the static `__TESSERA_CELL_ABI` at the root
/// of a crate.
pub fn is_abi_symbol(name: &str) -> bool {
    is_root_symbol(name, "18__TESSERA_CELL_ABI")
}

/// True for `crate::IDENT` mangled (legacy or v0), `tag` being the
/// length-prefixed identifier.
fn is_root_symbol(name: &str, tag: &str) -> bool {
    if let Some(rest) = name.strip_prefix("_ZN") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let len: usize = rest.get(..digits).and_then(|d| d.parse().ok()).unwrap_or(0);
        let after = rest.get(digits.saturating_add(len)..).unwrap_or("");
        return len > 0 && after.strip_prefix(tag).is_some_and(|h| h.len() == 20 && h.starts_with("17h") && h.ends_with('E'));
    }
    name.starts_with("_RNv") && name.ends_with(tag)
}

/// A cell linked for its load address: the bytes to map and where each
/// part goes. Offsets are from the cell's base address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Every byte of the cell, `size` long, relocations applied.
    pub bytes: Vec<u8>,
    /// Text (read, execute).
    pub text: (u64, u64),
    /// Read-only data.
    pub rodata: (u64, u64),
    /// Writable data and zero-fill.
    pub data: (u64, u64),
    /// Global offset table (read-only once filled).
    pub got: (u64, u64),
    /// Offset of the entry function.
    pub entry: u64,
    /// The interface fingerprint in the cell's marker.
    pub fingerprint: [u8; 32],
    /// Relocations applied.
    pub relocations: usize,
    /// Symbols resolved against the kernel.
    pub imports: usize,
}

/// Bytes of address space an object will need (`Image::bytes` length),
/// known before its address is chosen.
pub fn image_size(object: &CellObject<'_>) -> Result<u64, LinkError> {
    let layout = layout(object)?;
    let got = got_symbols(object)?.len() as u64 * 8;
    let size = layout.size().checked_add(got.next_multiple_of(PAGE)).ok_or(LinkError::TooLarge { bytes: u64::MAX })?;
    if size > MAX_IMAGE {
        return Err(LinkError::TooLarge { bytes: size });
    }
    Ok(size)
}

/// Symbol indices that need a GOT slot, sorted and unique.
fn got_symbols(object: &CellObject<'_>) -> Result<Vec<usize>, CellError> {
    let mut out = Vec::new();
    for (index, s) in object.sections.iter().enumerate() {
        if s.kind == SHT_RELA {
            out.extend(object.relocations(index)?.1.iter().filter(|r| r.kind.uses_got()).map(|r| r.symbol));
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The address symbol `index` of `object` links to, with the sections laid
/// out by `layout` at `base`: an import from `resolve` (refused unless the
/// allowlist has it), an absolute value, or a place in a section.
fn symbol_address(object: &CellObject<'_>, layout: &Layout, base: u64, resolve: &dyn Fn(&str) -> Option<u64>, index: usize) -> Result<u64, LinkError> {
    let sym = object.symbol(index)?;
    Ok(match sym.place {
        SymbolPlace::Undefined => {
            if let Err(path) = crate::cellimports::check(sym.name) {
                return Err(LinkError::RefusedImport { name: sym.name.into(), path });
            }
            resolve(sym.name).ok_or_else(|| LinkError::Unresolved(sym.name.into()))?
        }
        SymbolPlace::Absolute => sym.value,
        SymbolPlace::Section(i) => {
            let at = layout.placement.get(i).copied().flatten().ok_or(CellError::BadSymbol { index })?;
            base.wrapping_add(at).wrapping_add(sym.value)
        }
    })
}

/// Links `object` for address `base`: lays it out, copies its sections,
/// resolves undefined symbols with `resolve` (the kernel's symbols) and
/// applies every relocation of a loaded section.
pub fn link(object: &CellObject<'_>, base: u64, resolve: &dyn Fn(&str) -> Option<u64>) -> Result<Image, LinkError> {
    let size = image_size(object)?;
    let layout = layout(object)?;
    let got_syms = got_symbols(object)?;
    let got_start = layout.size();
    let got = (got_start, got_start + got_syms.len() as u64 * 8);
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(size as usize).map_err(|_| LinkError::NoMemory { bytes: size })?;
    bytes.resize(size as usize, 0u8);
    for (index, s) in object.sections.iter().enumerate() {
        if let (Some(at), true) = (layout.placement.get(index).copied().flatten(), s.kind != SHT_NOBITS) {
            let contents = object.contents(index);
            let end = (at as usize).checked_add(contents.len()).ok_or(CellError::BadSection { index })?;
            bytes.get_mut(at as usize..end).ok_or(CellError::BadSection { index })?.copy_from_slice(contents);
        }
    }
    // Each symbol's address, worked out once: an import is demangled and
    // checked against the allowlist, which is most of a link's time when
    // repeated for every relocation that names it.
    let mut addresses: Vec<Option<u64>> = Vec::new();
    addresses.try_reserve_exact(object.symbol_count()).map_err(|_| LinkError::NoMemory { bytes: object.symbol_count() as u64 * 16 })?;
    addresses.resize(object.symbol_count(), None);
    let mut address_of = |index: usize| -> Result<u64, LinkError> {
        if let Some(Some(known)) = addresses.get(index) {
            return Ok(*known);
        }
        let address = symbol_address(object, &layout, base, resolve, index)?;
        if let Some(slot) = addresses.get_mut(index) {
            *slot = Some(address);
        }
        Ok(address)
    };
    // Fill the GOT.
    for (slot, &index) in got_syms.iter().enumerate() {
        let value = address_of(index)?;
        let at = (got.0 as usize).saturating_add(slot * 8);
        bytes.get_mut(at..at + 8).ok_or(CellError::BadSymbol { index })?.copy_from_slice(&value.to_le_bytes());
    }
    let mut relocations = 0;
    for (index, s) in object.sections.iter().enumerate() {
        if s.kind != SHT_RELA {
            continue;
        }
        let (target, relas) = object.relocations(index)?;
        let Some(section_at) = layout.placement.get(target).copied().flatten() else {
            continue; // debug information and other unloaded sections
        };
        for (i, r) in relas.iter().enumerate() {
            let symbol = address_of(r.symbol)?;
            let got_slot = match got_syms.binary_search(&r.symbol) {
                Ok(slot) if r.kind.uses_got() => Some(base + got.0 + slot as u64 * 8),
                _ => None,
            };
            let at = section_at + r.offset;
            let patch = crate::reloc::compute(r.kind, base.wrapping_add(at), symbol, r.addend, got_slot)
                .map_err(|error| CellError::Relocation { section: index, index: i, error })?;
            let width = patch.as_slice().len();
            bytes.get_mut(at as usize..at as usize + width).ok_or(CellError::BadSection { index })?.copy_from_slice(patch.as_slice());
            relocations += 1;
        }
    }
    let mut entry = None;
    for index in 0..object.symbol_count() {
        let sym = object.symbol(index)?;
        if sym.global && is_entry_symbol(sym.name) {
            let SymbolPlace::Section(i) = sym.place else { return Err(LinkError::NoEntry) };
            let in_text = object.sections.get(i).is_some_and(|s| s.flags & SHF_EXECINSTR != 0);
            let at = layout.placement.get(i).copied().flatten().filter(|_| in_text).ok_or(LinkError::NoEntry)?;
            if entry.replace(at + sym.value).is_some() {
                return Err(LinkError::ManyEntries);
            }
        }
    }
    let entry = entry.ok_or(LinkError::NoEntry)?;
    let mut markers = (0..object.symbol_count()).filter_map(|i| object.symbol(i).ok()).filter_map(|sym| {
        let SymbolPlace::Section(i) = sym.place else { return None };
        let bytes = object.contents(i).get(sym.value as usize..).and_then(|b| b.get(..64))?;
        (sym.global && is_abi_symbol(sym.name) && bytes.get(..32) == Some(&ENTRY_ABI[..]))
            .then(|| bytes.get(32..).and_then(|f| <[u8; 32]>::try_from(f).ok()))
            .flatten()
    });
    let fingerprint = markers.next().ok_or(LinkError::NoAbiMarker)?;
    if markers.next().is_some() {
        return Err(LinkError::NoAbiMarker);
    }
    let imports = (0..object.symbol_count())
        .filter_map(|i| object.symbol(i).ok())
        .filter(|s| s.place == SymbolPlace::Undefined && !s.name.is_empty())
        .count();
    if entry >= layout.text.1 {
        return Err(LinkError::NoEntry);
    }
    Ok(Image { bytes, text: layout.text, rodata: layout.rodata, data: layout.data, got, entry, fingerprint, relocations, imports })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A real cell object: a small `no_std` crate compiled the way cells
    /// are (see docs/architecture.md, "Cells").
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

    const ENTRY_CELL: &str = "#![no_std]\nextern crate alloc;\nuse alloc::vec::Vec;\n\
        pub static TABLE: [u32; 4] = [1, 2, 3, 4];\n\
        pub static __TESSERA_CELL_ABI: [u8; 64] = *b\"tessera cell ABI 2: fn()->Export0123456789abcdef0123456789abcdef\";\n\
        pub fn __tessera_cell_entry(x: u64) -> u64 {\n\
        let v: Vec<u64> = (0..x).map(|i| i * 3).collect();\nlet s: u64 = v.iter().sum();\n\
        if s == 7 { panic!(\"bad {}\", s); }\ns + u64::from(TABLE[(x % 4) as usize])\n}\n";

    /// A resolver standing in for the kernel: every name gets an address
    /// in the kernel image, except those containing `missing`.
    fn kernel(name: &str) -> Option<u64> {
        (!name.contains("missing")).then(|| crate::layout::KERNEL_BASE + 0x1000 + (name.len() as u64) * 16)
    }

    #[test]
    fn links_a_real_cell_at_its_address() {
        for pic in [false, true] {
            let data = if pic { crate::testcell::compile_pic(ENTRY_CELL) } else { crate::testcell::compile(ENTRY_CELL) };
            let object = CellObject::parse(&data).unwrap();
            let base = crate::layout::CELLS_BASE + 0x10_0000;
            let image = link(&object, base, &kernel).unwrap();
            assert_eq!(image.bytes.len() as u64, image_size(&object).unwrap());
            assert!(image.entry < image.text.1 && image.relocations > 0 && image.imports >= 3, "{image:?}");
            assert_eq!(&image.fingerprint, b"0123456789abcdef0123456789abcdef", "the marker's second half");
            if pic {
                assert!(image.got.1 > image.got.0, "a PIC cell needs a GOT");
                // Each GOT slot holds a resolved address.
                for slot in image.bytes[image.got.0 as usize..image.got.1 as usize].chunks(8) {
                    let value = u64::from_le_bytes(slot.try_into().unwrap());
                    assert!(value >= crate::layout::KERNEL_BASE, "{value:#x}");
                }
            }
            // Every PLT32 call to an undefined symbol now reaches the resolver's address.
            for (index, s) in object.sections.iter().enumerate() {
                if s.kind != SHT_RELA {
                    continue;
                }
                let (target, relas) = object.relocations(index).unwrap();
                let Some(at) = layout(&object).unwrap().placement[target] else { continue };
                for r in relas.iter().filter(|r| r.kind == RelocKind::Plt32) {
                    let sym = object.symbol(r.symbol).unwrap();
                    if sym.place != SymbolPlace::Undefined {
                        continue;
                    }
                    let place = at + r.offset;
                    let field = i32::from_le_bytes(image.bytes[place as usize..place as usize + 4].try_into().unwrap());
                    let reached = (base + place).wrapping_add(field as i64 as u64).wrapping_sub(r.addend as u64);
                    assert_eq!(reached, kernel(sym.name).unwrap(), "{}", sym.name);
                }
            }
            // A different address gives different bytes only where relocations are.
            let other = link(&object, base + 0x20_0000, &kernel).unwrap();
            assert_ne!(image.bytes, other.bytes);
            assert_eq!(image.entry, other.entry);
        }
    }

    #[test]
    fn link_errors_name_the_problem() {
        let data = crate::testcell::compile(ENTRY_CELL);
        let object = CellObject::parse(&data).unwrap();
        let none = |_: &str| None;
        assert!(matches!(link(&object, crate::layout::CELLS_BASE, &none), Err(LinkError::Unresolved(name)) if !name.is_empty()));
        // Too far from the kernel for a 32-bit PC-relative call: an overflow, not a wrong address.
        let far = link(&object, 0x1000, &kernel).unwrap_err();
        assert!(far.to_string().contains("relocation"), "{far}");
        // Without an entry function.
        let no_entry = crate::testcell::compile("#![no_std]\npub fn helper(x: u64) -> u64 { x * 3 }\n");
        let object = CellObject::parse(&no_entry).unwrap();
        assert_eq!(link(&object, crate::layout::CELLS_BASE, &kernel), Err(LinkError::NoEntry));
        assert!(LinkError::NoEntry.to_string().contains("cell_entry!"));
        // An entry function without the marker, or with another version's.
        for marker in ["", "pub static __TESSERA_CELL_ABI: [u8; 64] = *b\"tessera cell ABI 1: fn()->Export0123456789abcdef0123456789abcdef\";\n"] {
            let source = std::format!("#![no_std]\n{marker}#[inline(never)]\npub fn __tessera_cell_entry() -> u64 {{ 7 }}\n");
            let data = crate::testcell::compile(&source);
            let object = CellObject::parse(&data).unwrap();
            assert_eq!(link(&object, crate::layout::CELLS_BASE, &kernel), Err(LinkError::NoAbiMarker), "{source}");
        }
    }

    #[test]
    fn imports_outside_the_allowlist_are_refused_by_name() {
        // A hand-made object: the entry and marker as `cell_entry!` makes
        // them, plus a call to the kernel's `add_disk` (which would keep
        // the cell's vtable in a kernel global).
        for (symbol, path) in [
            ("_ZN13tessera_linux5block8add_disk17h0123456789abcdefE", "tessera_linux::block::add_disk"),
            ("_ZN19tessera_live_update4slot8register17h0123456789abcdefE", "tessera_live_update::slot::register"),
        ] {
            let source = std::format!(
                "#![no_std]\nunsafe extern \"Rust\" {{ #[link_name = \"{symbol}\"] fn attack(x: u64); }}\n\
                 pub static __TESSERA_CELL_ABI: [u8; 64] = *b\"tessera cell ABI 2: fn()->Export0123456789abcdef0123456789abcdef\";\n\
                 #[inline(never)]\npub fn __tessera_cell_entry() -> u64 {{ unsafe {{ attack(7) }}; 7 }}\n"
            );
            let data = crate::testcell::compile(&source);
            let object = CellObject::parse(&data).unwrap();
            match link(&object, crate::layout::CELLS_BASE, &kernel) {
                Err(e @ LinkError::RefusedImport { .. }) => {
                    assert!(matches!(&e, LinkError::RefusedImport { name, path: p } if name == symbol && p == path), "{e:?}");
                    assert!(e.to_string().contains(path) && e.to_string().contains("allowlist"), "{e}");
                }
                other => panic!("expected a refused import, got {other:?}"),
            }
        }
    }

    #[test]
    fn entry_names() {
        assert!(is_entry_symbol("_ZN6mycell20__tessera_cell_entry17h9002f8aa3e4f22deE"));
        assert!(is_entry_symbol("_RNvCsfLfy6EI15iL_6mycell20__tessera_cell_entry"));
        assert!(!is_entry_symbol("_ZN6mycell3sub20__tessera_cell_entry17h9002f8aa3e4f22deE"));
        assert!(!is_entry_symbol("_ZN6mycell21x__tessera_cell_entry17h9002f8aa3e4f22deE"));
        assert!(!is_entry_symbol("__tessera_cell_entry"));
    }
}
