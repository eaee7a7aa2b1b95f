//! Build-time checks for cells: every symbol a cell object leaves
//! undefined must be defined by the kernel it will be loaded into, or the
//! build fails naming the symbol. (Packing, and pulling missing `core` and
//! `alloc` code from the sysroot, come next: see docs/cells-plan.md.)
#![forbid(unsafe_code)]

use framekernel_logic::cellobj::{CellError, CellObject, SymbolPlace};
use std::collections::BTreeSet;
use std::fmt;

/// Why a cell does not fit the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The cell file is malformed.
    Cell(CellError),
    /// The kernel ELF could not be read.
    Kernel(String),
    /// These symbols are defined neither by the cell nor by the kernel.
    Unresolved(Vec<String>),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Cell(e) => write!(f, "cell: {e}"),
            CheckError::Kernel(e) => write!(f, "kernel ELF: {e}"),
            CheckError::Unresolved(names) => {
                write!(f, "{} undefined symbol(s) not in the kernel: {}", names.len(), names.join(", "))
            }
        }
    }
}

/// The names a cell leaves undefined (deduplicated, sorted).
pub fn undefined_symbols<'a>(cell: &CellObject<'a>) -> Result<Vec<&'a str>, CellError> {
    let mut names = BTreeSet::new();
    for index in 0..cell.symbol_count() {
        let symbol = cell.symbol(index)?;
        if symbol.place == SymbolPlace::Undefined && !symbol.name.is_empty() {
            names.insert(symbol.name);
        }
    }
    Ok(names.into_iter().collect())
}

/// The global and weak symbols an ELF file (the kernel) defines.
pub fn defined_symbols(elf: &[u8]) -> Result<BTreeSet<String>, String> {
    use xmas_elf::sections::{SectionData, ShType};
    use xmas_elf::symbol_table::{Binding, Entry};
    let file = xmas_elf::ElfFile::new(elf)?;
    let mut names = BTreeSet::new();
    for section in file.section_iter() {
        if section.get_type() != Ok(ShType::SymTab) {
            continue;
        }
        if let Ok(SectionData::SymbolTable64(entries)) = section.get_data(&file) {
            for entry in entries {
                let global = matches!(entry.get_binding(), Ok(Binding::Global | Binding::Weak));
                if global
                    && entry.shndx() != 0
                    && let Ok(name) = entry.get_name(&file)
                {
                    names.insert(name.to_string());
                }
            }
        }
    }
    if names.is_empty() {
        return Err("no symbol table with global symbols".into());
    }
    Ok(names)
}

/// Checks that every undefined symbol of `cell` is one `kernel_defines`.
/// Returns how many were resolved.
pub fn check(cell: &[u8], kernel_defines: &dyn Fn(&str) -> bool) -> Result<usize, CheckError> {
    let object = CellObject::parse(cell).map_err(CheckError::Cell)?;
    let undefined = undefined_symbols(&object).map_err(CheckError::Cell)?;
    let missing: Vec<String> = undefined.iter().filter(|n| !kernel_defines(n)).map(|n| n.to_string()).collect();
    if missing.is_empty() { Ok(undefined.len()) } else { Err(CheckError::Unresolved(missing)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell compiled the way cells are (see docs/cells-plan.md).
    fn real_cell() -> Vec<u8> {
        framekernel_logic::testcell::compile(
            "#![no_std]\nextern crate alloc;\n#[unsafe(no_mangle)]\npub extern \"Rust\" fn cell_entry(x: u64) -> u64 {\n\
             let v: alloc::vec::Vec<u64> = (0..x).collect();\nif v.len() == 7 { panic!(\"seven\"); }\nv.iter().sum()\n}\n",
        )
    }

    #[test]
    fn resolves_against_the_kernel_or_names_what_is_missing() {
        let cell = real_cell();
        let object = CellObject::parse(&cell).unwrap();
        let undefined: Vec<String> = undefined_symbols(&object).unwrap().iter().map(|s| s.to_string()).collect();
        assert!(undefined.iter().any(|n| n.contains("__rust_alloc")), "{undefined:?}");
        // A kernel that defines them all.
        assert_eq!(check(&cell, &|n| undefined.iter().any(|u| u == n)), Ok(undefined.len()));
        // One that lacks the allocator: named.
        let err = check(&cell, &|n| !n.contains("__rust_alloc")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("__rust_alloc") && text.contains("not in the kernel"), "{text}");
        // A broken cell file is a cell error, not a panic.
        assert!(matches!(check(&cell[..100], &|_| true), Err(CheckError::Cell(_))));
    }

    #[test]
    fn reads_global_symbols_of_an_elf_file() {
        // The cell object itself has a symbol table with one global definition.
        let cell = real_cell();
        let names = defined_symbols(&cell).unwrap();
        assert!(names.contains("cell_entry"), "{names:?}");
        assert!(defined_symbols(b"not an elf file at all, just some bytes here").is_err());
    }
}
