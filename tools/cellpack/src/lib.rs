//! Packing cells at build time: every symbol a cell object leaves
//! undefined must be defined by the kernel it will be loaded into, or the
//! build fails naming the symbol; the object is then linked once against
//! the kernel's real addresses (so the entry, every relocation type and
//! every range is checked as the loader will) and written as a cell file
//! (`framekernel_logic::cellfile`) with the name, version and interface
//! from the cell crate's `Cargo.toml`.
#![forbid(unsafe_code)]

use framekernel_logic::cellfile::CellFile;
use framekernel_logic::cellobj::{self, CellError, CellObject, SymbolPlace};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

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

/// The symbols an ELF file (the kernel) defines, with their addresses:
/// every global or weak one, and local ones whose name is defined once
/// (`memcpy` and the other compiler built-ins are local and hidden in the
/// kernel). The kernel's loader resolves by the same rule.
pub fn defined_symbols(elf: &[u8]) -> Result<BTreeMap<String, u64>, String> {
    use xmas_elf::sections::{SectionData, ShType};
    use xmas_elf::symbol_table::{Entry, Type};
    let file = xmas_elf::ElfFile::new(elf)?;
    let mut names = BTreeMap::new();
    let mut repeated = BTreeSet::new();
    for section in file.section_iter() {
        if section.get_type() != Ok(ShType::SymTab) {
            continue;
        }
        if let Ok(SectionData::SymbolTable64(entries)) = section.get_data(&file) {
            for entry in entries {
                let kind = matches!(entry.get_type(), Ok(Type::Func | Type::Object | Type::NoType | Type::Tls));
                if kind
                    && entry.shndx() != 0
                    && let Ok(name) = entry.get_name(&file)
                    && !name.is_empty()
                    && names.insert(name.to_string(), entry.value()).is_some()
                {
                    repeated.insert(name.to_string());
                }
            }
        }
    }
    for name in repeated {
        names.remove(&name);
    }
    if names.is_empty() {
        return Err("no symbol table with defined symbols".into());
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

/// What a cell crate's manifest says about the cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `[package.metadata.tessera-cell] name`.
    pub name: String,
    /// The package version (inherited from the workspace if so written).
    pub version: String,
    /// `[package.metadata.tessera-cell] interface`.
    pub interface: String,
}

/// Reads `CRATE/Cargo.toml` (and the workspace's, for an inherited version).
pub fn read_manifest(crate_dir: &Path) -> Result<Manifest, String> {
    let read = |path: &Path| -> Result<toml::Table, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.parse::<toml::Table>().map_err(|e| format!("{}: {e}", path.display()))
    };
    let path = crate_dir.join("Cargo.toml");
    let manifest = read(&path)?;
    let package = manifest.get("package").and_then(|p| p.as_table()).ok_or(format!("{}: no [package]", path.display()))?;
    let meta = package
        .get("metadata")
        .and_then(|m| m.get("tessera-cell"))
        .ok_or(format!("{}: no [package.metadata.tessera-cell] (name, interface)", path.display()))?;
    let field = |key: &str| {
        meta.get(key).and_then(|v| v.as_str()).map(str::to_string).ok_or(format!(
            "{}: [package.metadata.tessera-cell] lacks {key}",
            path.display()
        ))
    };
    let version = match package.get("version") {
        Some(toml::Value::String(v)) => v.clone(),
        Some(toml::Value::Table(t)) if t.get("workspace").and_then(|w| w.as_bool()) == Some(true) => {
            // Walk up to the workspace root.
            let mut dir = crate_dir.canonicalize().map_err(|e| format!("{}: {e}", crate_dir.display()))?;
            loop {
                dir = dir.parent().ok_or("no workspace Cargo.toml above the cell crate")?.to_path_buf();
                let candidate = dir.join("Cargo.toml");
                if candidate.exists()
                    && let Some(v) = read(&candidate)?.get("workspace").and_then(|w| w.get("package")).and_then(|p| p.get("version"))
                {
                    break v.as_str().ok_or("workspace version is not a string")?.to_string();
                }
            }
        }
        _ => return Err(format!("{}: no package version", path.display())),
    };
    Ok(Manifest { name: field("name")?, version, interface: field("interface")? })
}

/// Why a cell could not be packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackError {
    /// Symbols or object defects (see [`CheckError`]).
    Check(CheckError),
    /// The object would not link at a cell address.
    Link(String),
    /// The manifest's fields do not fit a cell header.
    Header(String),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::Check(e) => write!(f, "{e}"),
            PackError::Link(e) => write!(f, "cannot link: {e}"),
            PackError::Header(e) => write!(f, "{e}"),
        }
    }
}

/// Checks `object` against the kernel's `symbols` (name → address), links
/// it at the start of the cell area as the loader would, and returns the
/// cell file.
pub fn pack(manifest: &Manifest, object: &[u8], symbols: &BTreeMap<String, u64>) -> Result<Vec<u8>, PackError> {
    check(object, &|name| symbols.contains_key(name)).map_err(PackError::Check)?;
    let parsed = CellObject::parse(object).map_err(|e| PackError::Check(CheckError::Cell(e)))?;
    let base = framekernel_logic::layout::CELLS_BASE;
    cellobj::link(&parsed, base, &|name| symbols.get(name).copied()).map_err(|e| PackError::Link(e.to_string()))?;
    CellFile::write(&manifest.name, &manifest.version, &manifest.interface, object)
        .map_err(|e| PackError::Header(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell compiled the way cells are (see docs/architecture.md, "Cells").
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
        assert!(names.contains_key("cell_entry"), "{names:?}");
        assert!(defined_symbols(b"not an elf file at all, just some bytes here").is_err());
    }

    #[test]
    fn packs_a_cell_that_loads_and_refuses_one_that_would_not() {
        let object = framekernel_logic::testcell::compile(
            "#![no_std]\nextern crate alloc;\npub fn __tessera_cell_entry() -> alloc::boxed::Box<u64> { alloc::boxed::Box::new(7) }\n\
             pub static __TESSERA_CELL_ABI: [u8; 32] = *b\"tessera cell ABI 1: fn()->Export\";\n",
        );
        let parsed = CellObject::parse(&object).unwrap();
        let base = framekernel_logic::layout::KERNEL_BASE + 0x10_0000;
        let symbols: BTreeMap<String, u64> =
            undefined_symbols(&parsed).unwrap().iter().enumerate().map(|(i, n)| (n.to_string(), base + i as u64 * 64)).collect();
        let manifest = Manifest { name: "seven".into(), version: "0.1.0".into(), interface: "probe".into() };
        let file = pack(&manifest, &object, &symbols).unwrap();
        let cell = CellFile::parse(&file).unwrap();
        assert_eq!((cell.name, cell.version, cell.interface, cell.object), ("seven", "0.1.0", "probe", &object[..]));
        // A kernel out of reach of 32-bit relocations: refused at build time.
        let far: BTreeMap<String, u64> = symbols.keys().map(|n| (n.clone(), 0x1000)).collect();
        assert!(matches!(pack(&manifest, &object, &far), Err(PackError::Link(e)) if e.contains("relocation")));
        // A missing symbol is named.
        let mut fewer = symbols.clone();
        let gone = fewer.keys().next().unwrap().clone();
        fewer.remove(&gone);
        assert!(pack(&manifest, &object, &fewer).unwrap_err().to_string().contains(&gone));
        // A bad name.
        let bad = Manifest { name: "Seven Up".into(), ..manifest.clone() };
        assert!(matches!(pack(&bad, &object, &symbols), Err(PackError::Header(_))));
        // No entry function.
        let helper = framekernel_logic::testcell::compile("#![no_std]\npub fn helper(x: u64) -> u64 { x + 1 }\n");
        assert!(pack(&manifest, &helper, &symbols).unwrap_err().to_string().contains("entry"));
    }

    #[test]
    fn reads_the_probe_cells_manifest() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../components/cells/probe");
        let m = read_manifest(&dir).unwrap();
        assert_eq!((m.name.as_str(), m.interface.as_str()), ("probe", "probe"));
        assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
        assert!(read_manifest(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_err().contains("tessera-cell"));
    }
}

/// Host tests on the real cells of the build (`make test-host` builds them
/// first and names the directory and kernel in `TESSERA_CELLS_DIR` and
/// `TESSERA_KERNEL`).
#[cfg(test)]
mod built_cells {
    use super::*;
    use framekernel_logic::cellobj::{LinkError, image_size, layout, link};
    use framekernel_logic::layout::{CELLS_BASE, CELLS_END, PAGE_SIZE};

    /// (path, bytes) of each cell file.
    type Cells = Vec<(String, Vec<u8>)>;

    fn inputs() -> Option<(Cells, BTreeMap<String, u64>)> {
        let dir = std::env::var_os("TESSERA_CELLS_DIR")?;
        let kernel = std::fs::read(std::env::var_os("TESSERA_KERNEL")?).expect("read TESSERA_KERNEL");
        let mut cells: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("read TESSERA_CELLS_DIR")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cell"))
            .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read cell")))
            .collect();
        cells.sort();
        Some((cells, defined_symbols(&kernel).expect("kernel symbols")))
    }

    #[test]
    fn every_built_cell_links_at_any_cell_address_and_damage_is_refused() {
        let Some((cells, symbols)) = inputs() else {
            eprintln!("TESSERA_CELLS_DIR/TESSERA_KERNEL not set: run through `make test-host`");
            return;
        };
        assert!(cells.len() >= 5, "expected the build's cells, found {}", cells.len());
        let resolve = |name: &str| symbols.get(name).copied();
        for (path, file) in &cells {
            let cell = CellFile::parse(file).unwrap_or_else(|e| panic!("{path}: {e}"));
            let object = CellObject::parse(cell.object).unwrap_or_else(|e| panic!("{path}: {e}"));
            let size = image_size(&object).unwrap();
            // At the start and at the very end of the cell area.
            for base in [CELLS_BASE, CELLS_END - size - PAGE_SIZE] {
                let image = link(&object, base, &resolve).unwrap_or_else(|e| panic!("{path} at {base:#x}: {e}"));
                assert!(image.relocations > 0 && image.imports > 0 && image.entry < image.text.1, "{path}");
                let l = layout(&object).unwrap();
                assert!(l.text.1 <= l.rodata.0 && l.rodata.1 <= l.data.0, "{path}: parts overlap");
            }
            // Damage: every truncation of the file, and byte flips inside
            // the object re-wrapped with a valid header, are errors or (for
            // bytes the loader does not interpret, such as code) a link;
            // never a panic, never a wrong entry.
            for cut in (0..file.len()).step_by(97) {
                assert!(CellFile::parse(&file[..cut]).is_err(), "{path} cut at {cut}");
            }
            let mut refused = 0;
            for at in (0..cell.object.len()).step_by(13) {
                let mut object = cell.object.to_vec();
                object[at] ^= 0xa5;
                let rewrapped = CellFile::write(cell.name, cell.version, cell.interface, &object).unwrap();
                let reparsed = CellFile::parse(&rewrapped).unwrap();
                match CellObject::parse(reparsed.object).map_err(LinkError::Object).and_then(|o| link(&o, CELLS_BASE, &resolve)) {
                    Ok(image) => assert!(image.entry < image.text.1),
                    Err(_) => refused += 1,
                }
            }
            assert!(refused > 0, "{path}: no damaged copy was refused");
        }
    }
}
