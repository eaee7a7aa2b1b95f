//! The kernel's own symbol table, from the `symbols` boot module (the
//! kernel ELF file itself), used to name code addresses in fault reports.

use alloc::boxed::Box;
use core::fmt;
use framekernel_logic::symbols::crate_of;
use xmas_elf::ElfFile;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::{Entry, Type};

static KERNEL_ELF: spin::Once<&'static [u8]> = spin::Once::new();

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

/// Checks `bytes` is this very kernel's ELF and keeps it for naming
/// addresses in fault reports. Returns the number of symbols. Only the first
/// successful call has an effect.
pub fn load(bytes: &'static [u8]) -> Result<usize, SymbolsError> {
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
    accept_copy(words, bytes.len())
}

/// Like [`accept`] for an aligned copy, which is kept (leaked) on success.
fn accept_copy(words: Box<[u64]>, len: usize) -> Result<usize, SymbolsError> {
    let words: &'static mut [u64] = Box::leak(words);
    // SAFETY: as in `load`: a byte view of a leaked, never-freed u64 buffer.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), len) };
    accept(bytes)
}

fn accept(bytes: &'static [u8]) -> Result<usize, SymbolsError> {
    let elf = ElfFile::new(bytes).map_err(SymbolsError::Malformed)?;
    let text = elf.find_section_by_name(".text").ok_or(SymbolsError::Malformed("no .text"))?;
    let (start, end) = crate::mm::image::text();
    let file_text = text.raw_data(&elf);
    if text.address() != start || text.address() + text.size() > end {
        return Err(SymbolsError::Mismatch);
    }
    // SAFETY: `start..start+len` is the running kernel's .text, mapped
    // readable for the kernel's lifetime and never written (W^X).
    let running = unsafe { core::slice::from_raw_parts(start as *const u8, file_text.len()) };
    if running != file_text {
        return Err(SymbolsError::Mismatch);
    }
    let count = symtab(&elf).ok_or(SymbolsError::NoSymbolTable)?.len();
    KERNEL_ELF.call_once(|| bytes);
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
    let bytes = *KERNEL_ELF.get()?;
    let elf = ElfFile::new(bytes).ok()?;
    let best = symtab(&elf)?
        .iter()
        .filter(|s| matches!(s.get_type(), Ok(Type::Func)) && s.value() <= addr && addr < s.value() + s.size().max(1))
        .min_by_key(|s| s.size())?;
    Some(Symbol { name: best.get_name(&elf).ok()?, start: best.value(), offset: addr - best.value() })
}

/// Finds a symbol's address by its mangled or demangled name.
pub fn address_of(name: &str) -> Option<u64> {
    let bytes = *KERNEL_ELF.get()?;
    let elf = ElfFile::new(bytes).ok()?;
    symtab(&elf)?.iter().find(|s| s.get_name(&elf).is_ok_and(|n| n == name)).map(|s| s.value())
}

/// True when the kernel's symbols are loaded.
pub fn available() -> bool {
    KERNEL_ELF.get().is_some()
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
