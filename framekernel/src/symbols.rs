//! The kernel's own symbol table, from the `symbols` boot module (the
//! kernel ELF file itself), used to name code addresses in fault reports.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use framekernel_logic::symbols::crate_of;
use xmas_elf::ElfFile;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::{Entry, Type};


/// Why the symbols module was not used.
#[derive(Debug, Clone, Copy)]
pub enum SymbolsError {
    /// The module is not a well-formed ELF64 file.
    Malformed(&'static str),
    /// It has no `.symtab`.
    NoSymbolTable,
    /// Its code differs from the running kernel: a different build.
    Mismatch,
}

impl fmt::Display for SymbolsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymbolsError::Malformed(why) => write!(f, "malformed kernel ELF: {why}"),
            SymbolsError::NoSymbolTable => f.write_str("kernel ELF has no .symtab"),
            SymbolsError::Mismatch => f.write_str("symbols come from a different kernel build (.text differs)"),
        }
    }
}

fn symtab<'a>(elf: &ElfFile<'a>) -> Option<&'a [xmas_elf::symbol_table::Entry64]> {
    match elf.find_section_by_name(".symtab")?.get_data(elf).ok()? {
        SectionData::SymbolTable64(entries) => Some(entries),
        _ => None,
    }
}

/// The symbols kept after loading: an owned copy of the named symbols of
/// `.symtab` (the ELF file itself, in the boot archive, can be freed).
struct Table {
    /// (address, size, is a function, name start, name length), by address.
    entries: Vec<(u64, u64, bool, u32, u32)>,
    /// Every name, back to back.
    names: String,
    /// Indices into `entries`, sorted by name (resolving cells' symbols).
    by_name: Vec<u32>,
}

impl Table {
    fn name(&self, start: u32, len: u32) -> &str {
        self.names.get(start as usize..(start as usize).saturating_add(len as usize)).unwrap_or("")
    }
}

static TABLE: spin::Once<Table> = spin::Once::new();

/// Checks `bytes` is this very kernel's ELF and keeps a copy of its symbol
/// table for naming addresses in fault reports. Returns the number of
/// symbols. Only the first successful call has an effect.
pub fn load(bytes: &[u8]) -> Result<usize, SymbolsError> {
    // xmas-elf trusts offsets and alignment: check everything it will read.
    framekernel_logic::elf::check_symbol_file(bytes).map_err(|e| match e {
        framekernel_logic::elf::ElfCheckError::NotElf64 => SymbolsError::Malformed("not an ELF64 file"),
        framekernel_logic::elf::ElfCheckError::BadSymbols => SymbolsError::Malformed("bad symbol or section names"),
        _ => SymbolsError::Malformed("sections outside the file"),
    })?;
    if (bytes.as_ptr() as usize).is_multiple_of(8) {
        return accept(bytes);
    }
    // In a cpio archive the file is only 4-byte aligned; xmas-elf needs 8.
    let mut words: Box<[u64]> = alloc::vec![0u64; bytes.len().div_ceil(8)].into_boxed_slice();
    // SAFETY: the u64 buffer is viewed as bytes (no alignment or validity
    // requirement for u8) within its own length; the view ends before
    // `words` is used again.
    let view = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), bytes.len()) };
    view.copy_from_slice(bytes);
    // SAFETY: as above, a byte view of `words`, which outlives it.
    let aligned = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) };
    accept(aligned)
}

fn accept(bytes: &[u8]) -> Result<usize, SymbolsError> {
    let elf = ElfFile::new(bytes).map_err(SymbolsError::Malformed)?;
    let text = elf.find_section_by_name(".text").ok_or(SymbolsError::Malformed("no .text"))?;
    let (start, end) = crate::mm::image::text();
    let file_text = text.raw_data(&elf);
    // The file's .text must be the running .text, all of it: a section
    // that is shorter (or empty, or without contents in the file) proves
    // nothing about the symbols.
    let len = end - start;
    if text.address() != start || text.size() != len || file_text.len() as u64 != len {
        return Err(SymbolsError::Mismatch);
    }
    // SAFETY: `start..end` is the running kernel's .text (linker symbols),
    // mapped readable for the kernel's lifetime and never written (W^X).
    let running = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
    if running != file_text {
        return Err(SymbolsError::Mismatch);
    }
    let symbols = symtab(&elf).ok_or(SymbolsError::NoSymbolTable)?;
    let mut table = Table { entries: Vec::new(), names: String::new(), by_name: Vec::new() };
    for symbol in symbols {
        let Ok(name) = symbol.get_name(&elf) else { continue };
        if name.is_empty() || symbol.value() == 0 {
            continue;
        }
        let (Ok(at), Ok(len)) = (u32::try_from(table.names.len()), u32::try_from(name.len())) else { break };
        table.names.push_str(name);
        let is_func = matches!(symbol.get_type(), Ok(Type::Func));
        table.entries.push((symbol.value(), symbol.size(), is_func, at, len));
    }
    table.entries.sort_unstable_by_key(|e| e.0);
    table.entries.shrink_to_fit();
    let mut by_name: Vec<u32> = (0..table.entries.len() as u32).collect();
    by_name.sort_unstable_by(|&a, &b| {
        let name = |i: u32| table.entries.get(i as usize).map_or("", |e| table.name(e.3, e.4));
        name(a).cmp(name(b))
    });
    table.by_name = by_name;
    table.names.shrink_to_fit();
    let count = table.entries.len();
    TABLE.call_once(|| table);
    Ok(count)
}

/// A symbol an address falls in.
#[derive(Debug, Clone, Copy)]
pub struct Symbol {
    /// Mangled name.
    pub name: &'static str,
    /// Address of the symbol.
    pub start: u64,
    /// How far into the symbol the address is.
    pub offset: u64,
}

/// The function containing `addr`, if symbols are loaded and one does.
pub fn lookup(addr: u64) -> Option<Symbol> {
    let table = TABLE.get()?;
    // Functions starting at or below `addr` (sorted by address); the
    // smallest one that contains it.
    let upto = table.entries.partition_point(|e| e.0 <= addr);
    let best = table
        .entries
        .get(..upto)?
        .iter()
        .filter(|e| e.2 && addr < e.0.saturating_add(e.1.max(1)))
        .min_by_key(|e| e.1)?;
    Some(Symbol { name: table.name(best.3, best.4), start: best.0, offset: addr - best.0 })
}

/// Finds a symbol's address by its mangled name (binary search). A name
/// defined more than once (two local symbols) is ambiguous: `None`.
pub fn address_of(name: &str) -> Option<u64> {
    let table = TABLE.get()?;
    let entry = |i: &u32| table.entries.get(*i as usize);
    let name_at = |k: usize| table.by_name.get(k).and_then(entry).map(|e| table.name(e.3, e.4));
    let found = table.by_name.binary_search_by(|i| entry(i).map_or("", |e| table.name(e.3, e.4)).cmp(name)).ok()?;
    if found.checked_sub(1).and_then(name_at) == Some(name) || name_at(found + 1) == Some(name) {
        return None;
    }
    table.by_name.get(found).and_then(entry).map(|e| e.0)
}

/// True when the kernel's symbols are loaded.
pub fn available() -> bool {
    TABLE.get().is_some()
}

/// Formats an address as `name+0xoff [crate]`, without allocating.
pub struct Describe(pub u64);

/// Formats a return address: names the call site (`addr - 1`), since a call
/// to a function that never returns can be the last instruction of its caller.
pub struct DescribeReturn(pub u64);

impl fmt::Display for DescribeReturn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe(f, self.0.saturating_sub(1), 1)
    }
}

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe(f, self.0, 0)
    }
}

fn describe(f: &mut fmt::Formatter<'_>, addr: u64, bias: u64) -> fmt::Result {
    let Some(sym) = lookup(addr) else {
        return f.write_str(if available() { "(no symbol)" } else { "(symbols not loaded)" });
    };
    let demangled = rustc_demangle::demangle(sym.name);
    let mut text = crate::console::StackText::<512>::new();
    let _ = fmt::write(&mut text, format_args!("{demangled:#}"));
    write!(f, "{}+{:#x}", text.as_str(), sym.offset + bias)?;
    match crate_of(text.as_str()) {
        Some(krate) => write!(f, " [crate {krate}]"),
        None => f.write_str(" [assembly or unknown crate]"),
    }
}
