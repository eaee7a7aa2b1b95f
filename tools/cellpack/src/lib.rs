//! Packing cells at build time: every symbol a cell object leaves
//! undefined must be defined by the kernel it will be loaded into, or the
//! build fails naming the symbol; the object is then linked once against
//! the kernel's real addresses (so the entry, every relocation type and
//! every range is checked as the loader will, imports on the cell allowlist
//! only) and written as a cell file (`framekernel_logic::cellfile`) with
//! the name, version and interface from the cell crate's `Cargo.toml`, the
//! interface fingerprint from the object's `cell_entry!` marker and the
//! kernel's GNU build id, signed with the build's cell signing key.
#![forbid(unsafe_code)]

use framekernel_logic::cellfile::{CellFile, Header};
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

/// The GNU build id of an ELF file (the kernel), from its
/// `.note.gnu.build-id` section.
pub fn build_id(elf: &[u8]) -> Result<Vec<u8>, String> {
    let file = xmas_elf::ElfFile::new(elf)?;
    let section = file
        .find_section_by_name(".note.gnu.build-id")
        .ok_or("no .note.gnu.build-id section (link the kernel with --build-id=sha1)")?;
    framekernel_logic::cellfile::gnu_build_id(section.raw_data(&file))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "no GNU build id note of 1-32 bytes in .note.gnu.build-id".to_string())
}

/// A new cell signing key: 32 random bytes from the operating system.
pub fn new_key() -> Result<[u8; 32], String> {
    use std::io::Read;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed)).map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(seed)
}

/// The key file's text: the 32-byte seed in hex, one line.
pub fn key_text(seed: &[u8; 32]) -> String {
    format!("{}\n", framekernel_logic::cellfile::hex(seed))
}

/// Reads a key file written by [`key_text`].
pub fn parse_key_file(text: &str) -> Result<[u8; 32], String> {
    framekernel_logic::cellfile::parse_key(text).ok_or_else(|| "not a cell signing key (64 hex digits)".to_string())
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
    /// `[package.metadata.tessera-cell] bundle`: crates (library names)
    /// whose code is linked into the cell's object, because nothing else
    /// in the kernel uses them (empty: none).
    pub bundle: Vec<String>,
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
    let bundle = match meta.get("bundle") {
        None => Vec::new(),
        Some(toml::Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_string).ok_or(format!("{}: bundle lists a non-string", path.display())))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{}: bundle is not a list of crate names", path.display())),
    };
    Ok(Manifest { name: field("name")?, version, interface: field("interface")?, bundle })
}

/// The rlibs of the `bundle` crates among the artifacts cargo reported
/// (`--message-format=json` lines): each `lib<crate>-<hash>.rlib` named
/// in a `compiler-artifact` message, in the order reported.
pub fn bundle_rlibs(messages: &str, bundle: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in messages.lines().filter(|l| l.contains("\"reason\":\"compiler-artifact\"")) {
        let Some(list) = line.split_once("\"filenames\":[").and_then(|(_, rest)| rest.split_once(']')).map(|(list, _)| list) else {
            continue;
        };
        for file in list.split(',').map(|f| f.trim().trim_matches('"')) {
            let name = file.rsplit('/').next().unwrap_or(file);
            let wanted = bundle.iter().any(|c| {
                name.strip_prefix("lib")
                    .and_then(|n| n.strip_prefix(c.as_str()))
                    .and_then(|n| n.strip_prefix('-'))
                    .is_some_and(|n| n.ends_with(".rlib") && !n.contains('-'))
            });
            if wanted && !out.iter().any(|o| o == file) {
                out.push(file.to_string());
            }
        }
    }
    out
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

/// Refuses a cell crate whose sources spell the entry's or the marker's
/// name themselves: only `cell_entry!` may write them (the loader calls
/// the entry as the marker's interface says, so a hand-made pair with
/// another signature would be signed and then called as the wrong type).
pub fn check_sources(crate_dir: &Path) -> Result<(), String> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), String> {
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(&crate_dir.join("src"), &mut files)?;
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for name in [cellobj::ENTRY_NAME, "__TESSERA_CELL_ABI"] {
            if text.contains(name) {
                return Err(format!("{}: spells {name}, which only tessera_cell_api::cell_entry! may define", file.display()));
            }
        }
    }
    Ok(())
}

/// What `pack` binds a cell to: the kernel's symbols (name → address) and
/// build id, and the signing key (32-byte seed).
pub struct Kernel<'a> {
    /// The kernel's symbols.
    pub symbols: &'a BTreeMap<String, u64>,
    /// Its GNU build id.
    pub build_id: &'a [u8],
    /// The cell signing key.
    pub key: &'a [u8; 32],
}

/// Checks `object` against the kernel's symbols, links it at the start of
/// the cell area as the loader would, and returns the signed cell file.
pub fn pack(manifest: &Manifest, object: &[u8], kernel: &Kernel<'_>) -> Result<Vec<u8>, PackError> {
    let symbols = kernel.symbols;
    check(object, &|name| symbols.contains_key(name)).map_err(PackError::Check)?;
    let parsed = CellObject::parse(object).map_err(|e| PackError::Check(CheckError::Cell(e)))?;
    let base = framekernel_logic::layout::CELLS_BASE;
    // Every symbol the link resolves goes into the signed file with its
    // address: the loader links from that table, never from a symbol
    // table it is handed at run time.
    let used = std::cell::RefCell::new(BTreeMap::new());
    let resolve = |name: &str| {
        let address = symbols.get(name).copied();
        if let Some(address) = address {
            used.borrow_mut().insert(name.to_string(), address);
        }
        address
    };
    let image = cellobj::link(&parsed, base, &resolve).map_err(|e| PackError::Link(e.to_string()))?;
    let used = used.into_inner();
    let imports: Vec<(&str, u64)> = used.iter().map(|(name, &address)| (name.as_str(), address)).collect();
    let header = Header {
        name: &manifest.name,
        version: &manifest.version,
        interface: &manifest.interface,
        fingerprint: image.fingerprint,
        build_id: kernel.build_id,
    };
    CellFile::write(&header, object, &imports, kernel.key).map_err(|e| PackError::Header(e.to_string()))
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
    fn bundle_rlibs_are_found_by_crate_name() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","filenames":["/t/deps/libsmoltcp-5c19.rlib","/t/deps/libsmoltcp-5c19.rmeta"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","filenames":["/t/deps/libsmoltcp_extra-11.rlib"]}"#,
            "\n",
            r#"{"reason":"build-script-executed","filenames":["/t/deps/libheapless-22.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","filenames":["/t/deps/libheapless-33.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","filenames":["/t/deps/libsmoltcp-5c19.rlib"]}"#,
        );
        let bundle = ["smoltcp".to_string(), "heapless".to_string()];
        assert_eq!(bundle_rlibs(messages, &bundle), ["/t/deps/libsmoltcp-5c19.rlib", "/t/deps/libheapless-33.rlib"]);
        assert!(bundle_rlibs(messages, &["managed".to_string()]).is_empty());
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
             pub static __TESSERA_CELL_ABI: [u8; 64] = *b\"tessera cell ABI 2: fn()->Export0123456789abcdef0123456789abcdef\";\n",
        );
        let parsed = CellObject::parse(&object).unwrap();
        let base = framekernel_logic::layout::KERNEL_BASE + 0x10_0000;
        let symbols: BTreeMap<String, u64> =
            undefined_symbols(&parsed).unwrap().iter().enumerate().map(|(i, n)| (n.to_string(), base + i as u64 * 64)).collect();
        let manifest = Manifest { name: "seven".into(), version: "0.1.0".into(), interface: "probe".into(), bundle: Vec::new() };
        let key = [9u8; 32];
        let kernel = |symbols| Kernel { symbols, build_id: &[0xbd; 20], key: &key };
        let file = pack(&manifest, &object, &kernel(&symbols)).unwrap();
        let cell = CellFile::verify(&file, &framekernel_logic::cellfile::public_key(&key)).unwrap();
        let h = cell.header;
        assert_eq!((h.name, h.version, h.interface, cell.object), ("seven", "0.1.0", "probe", &object[..]));
        assert_eq!((&h.fingerprint, h.build_id), (b"0123456789abcdef0123456789abcdef", &[0xbd; 20][..]));
        // Another key does not verify it.
        assert!(CellFile::verify(&file, &framekernel_logic::cellfile::public_key(&[1; 32])).is_err());
        // A kernel out of reach of 32-bit relocations: refused at build time.
        let far: BTreeMap<String, u64> = symbols.keys().map(|n| (n.clone(), 0x1000)).collect();
        assert!(matches!(pack(&manifest, &object, &kernel(&far)), Err(PackError::Link(e)) if e.contains("relocation")));
        // A missing symbol is named.
        let mut fewer = symbols.clone();
        let gone = fewer.keys().next().unwrap().clone();
        fewer.remove(&gone);
        assert!(pack(&manifest, &object, &kernel(&fewer)).unwrap_err().to_string().contains(&gone));
        // A bad name.
        let bad = Manifest { name: "Seven Up".into(), ..manifest.clone() };
        assert!(matches!(pack(&bad, &object, &kernel(&symbols)), Err(PackError::Header(_))));
        // No entry function.
        let helper = framekernel_logic::testcell::compile("#![no_std]\npub fn helper(x: u64) -> u64 { x + 1 }\n");
        assert!(pack(&manifest, &helper, &kernel(&symbols)).unwrap_err().to_string().contains("entry"));
        // An import outside the allowlist is refused at build time, by name.
        let add_disk = framekernel_logic::testcell::compile(
            "#![no_std]\nunsafe extern \"Rust\" { #[link_name = \"_ZN13tessera_linux5block8add_disk17h0123456789abcdefE\"] fn add_disk(); }\n\
             pub fn __tessera_cell_entry() -> u64 { unsafe { add_disk() }; 7 }\n\
             pub static __TESSERA_CELL_ABI: [u8; 64] = *b\"tessera cell ABI 2: fn()->Export0123456789abcdef0123456789abcdef\";\n",
        );
        let mut all = symbols.clone();
        all.insert("_ZN13tessera_linux5block8add_disk17h0123456789abcdefE".into(), base);
        let err = pack(&manifest, &add_disk, &kernel(&all)).unwrap_err().to_string();
        assert!(err.contains("tessera_linux::block::add_disk") && err.contains("allowlist"), "{err}");
    }

    #[test]
    fn keys_round_trip_and_bad_key_files_are_named() {
        let seed = new_key().unwrap();
        assert_ne!(seed, new_key().unwrap());
        assert_eq!(parse_key_file(&key_text(&seed)), Ok(seed));
        assert!(parse_key_file("hello").unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn a_crate_that_spells_the_entry_or_marker_itself_is_refused() {
        let dir = std::env::temp_dir().join(format!("tessera-cellpack-src-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/sub")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "tessera_cell_api::cell_entry!(probe, make);\n").unwrap();
        assert_eq!(check_sources(&dir), Ok(()));
        std::fs::write(dir.join("src/sub/forged.rs"), "pub static __TESSERA_CELL_ABI: [u8; 64] = [0; 64];\n").unwrap();
        let err = check_sources(&dir).unwrap_err();
        assert!(err.contains("forged.rs") && err.contains("__TESSERA_CELL_ABI"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        // The real cells pass.
        for cell in ["probe", "tty", "uart16550", "virtio_blk"] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../components/cells").join(cell);
            assert_eq!(check_sources(&dir), Ok(()), "{cell}");
        }
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

    /// The cells, the kernel's symbols, the signing key's public half and
    /// the kernel's build id.
    type Inputs = (Cells, BTreeMap<String, u64>, [u8; 32], Vec<u8>);

    fn inputs() -> Option<Inputs> {
        let dir = std::env::var_os("TESSERA_CELLS_DIR")?;
        let kernel = std::fs::read(std::env::var_os("TESSERA_KERNEL")?).expect("read TESSERA_KERNEL");
        let mut cells: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .expect("read TESSERA_CELLS_DIR")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cell"))
            .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read cell")))
            .collect();
        cells.sort();
        let key = std::fs::read_to_string(std::env::var_os("TESSERA_CELL_KEY")?).expect("read TESSERA_CELL_KEY");
        let key = framekernel_logic::cellfile::public_key(&parse_key_file(&key).expect("cell signing key"));
        Some((cells, defined_symbols(&kernel).expect("kernel symbols"), key, build_id(&kernel).expect("kernel build id")))
    }

    #[test]
    fn every_built_cell_links_at_any_cell_address_and_damage_is_refused() {
        let Some((cells, symbols, key, kernel_id)) = inputs() else {
            eprintln!("TESSERA_CELLS_DIR/TESSERA_KERNEL/TESSERA_CELL_KEY not set: run through `make test-host`");
            return;
        };
        assert!(cells.len() >= 5, "expected the build's cells, found {}", cells.len());
        let resolve = |name: &str| symbols.get(name).copied();
        for (path, file) in &cells {
            let cell = CellFile::verify(file, &key).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(cell.header.build_id, &kernel_id[..], "{path}: packed for another kernel");
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
                assert!(CellFile::verify(&file[..cut], &key).is_err(), "{path} cut at {cut}");
            }
            let mut refused = 0;
            // Every 13th byte of a small object; a big one (each try signs
            // and links it whole again) gets fewer tries, spread over it.
            let len = cell.object.len().max(1);
            let tries = (len / 13).min(100_000_000 / len).max(64);
            let step = (len / tries).max(13);
            for at in (0..cell.object.len()).step_by(step) {
                let mut object = cell.object.to_vec();
                object[at] ^= 0xa5;
                let test_key = [5u8; 32];
                let imports: Vec<(&str, u64)> = cell.imports.iter().collect();
                let rewrapped = CellFile::write(&cell.header, &object, &imports, &test_key).unwrap();
                let reparsed = CellFile::verify(&rewrapped, &framekernel_logic::cellfile::public_key(&test_key)).unwrap();
                match CellObject::parse(reparsed.object).map_err(LinkError::Object).and_then(|o| link(&o, CELLS_BASE, &resolve)) {
                    Ok(image) => assert!(image.entry < image.text.1),
                    Err(_) => refused += 1,
                }
            }
            assert!(refused > 0, "{path}: no damaged copy was refused");
            // One bit of a relocation flipped and the CRC fixed (what an
            // attacker would do): the signature refuses it.
            use framekernel_logic::cellfile::{FileError, HEADER_LEN};
            let rela = object.sections.iter().find(|s| s.kind == 4 && s.size >= 24).expect("a RELA section");
            let mut bad = file.clone();
            bad[HEADER_LEN + rela.offset as usize + 8] ^= 1;
            let crc = framekernel_logic::crc32::crc32(&bad[HEADER_LEN..HEADER_LEN + cell.object.len()]);
            bad[16..20].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(CellFile::verify(&bad, &key), Err(FileError::BadSignature), "{path}");
            // The signed imports are what the loader links with: one
            // address changed (the CRC does not cover them) is refused too.
            let mut bad = file.clone();
            let last = bad.len() - 1;
            bad[last - 3] ^= 1; // inside the last import's name or address
            assert_eq!(CellFile::verify(&bad, &key), Err(FileError::BadSignature), "{path}: imports");
            // And they are exactly the kernel's addresses for those names.
            for (name, address) in cell.imports.iter() {
                assert_eq!(symbols.get(name), Some(&address), "{path}: import {name}");
            }
            assert!(cell.imports.iter().count() > 0, "{path}: no imports listed");
        }
    }
}
