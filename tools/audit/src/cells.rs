//! The capability surface of each cell: the kernel symbols its object
//! imports (undefined symbols, resolved against the kernel when the cell is
//! loaded), demangled and grouped by crate. A cell can reach the base only
//! through these. Cell files are read with the base's own parsers
//! (`framekernel_logic::cellfile`, `cellobj`).

use framekernel_logic::cellfile::CellFile;
use framekernel_logic::cellobj::{CellObject, SymbolPlace};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One cell file's imports.
#[derive(Debug, Clone, Serialize)]
pub struct CellSurface {
    /// The file name (`virtio_blk.cell`).
    pub file: String,
    /// Imported symbols, demangled, by crate (`framekernel`, `core`, ...;
    /// symbols that are not Rust under `(not Rust)`).
    pub imports: BTreeMap<String, Vec<String>>,
    /// Why the file could not be read, if it could not.
    pub error: Option<String>,
}

/// The crate a demangled path belongs to: `a::b::f` → `a`; for a trait
/// method `<T as c::Tr>::f`, the crate of `T`, or of the trait when `T` is
/// a primitive (`<u64 as core::fmt::Display>::fmt` → `core`).
fn crate_of(path: &str) -> String {
    let first = |p: &str| {
        let p = p.trim_start_matches(['<', '&', '*', '[', '(']).trim_start_matches("mut ").trim_start_matches("const ").trim_start_matches("dyn ");
        let end = p.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(p.len());
        let name = p.get(..end).unwrap_or_default();
        let is_path = p.get(end..).is_some_and(|rest| rest.starts_with("::"));
        (name.to_string(), is_path)
    };
    let (name, is_path) = first(path);
    if path.starts_with('<') && !is_path
        && let Some((_, tr)) = path.split_once(" as ")
    {
        return first(tr).0;
    }
    if name.is_empty() { "(other)".to_string() } else { name }
}

/// The imports of a cell's ELF relocatable object, by crate.
pub fn imports(object: &[u8]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let object = CellObject::parse(object).map_err(|e| e.to_string())?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..object.symbol_count() {
        let symbol = object.symbol(i).map_err(|e| e.to_string())?;
        if symbol.place != SymbolPlace::Undefined || symbol.name.is_empty() {
            continue;
        }
        let (group, name) = match rustc_demangle::try_demangle(symbol.name) {
            Ok(d) => {
                let name = format!("{d:#}");
                (crate_of(&name), name)
            }
            Err(_) => ("(not Rust)".to_string(), symbol.name.to_string()),
        };
        out.entry(group).or_default().push(name);
    }
    for names in out.values_mut() {
        names.sort();
        names.dedup();
    }
    Ok(out)
}

/// The imports of a cell file's bytes.
pub fn surface(bytes: &[u8]) -> Result<BTreeMap<String, Vec<String>>, String> {
    // A report, not a load: the signature is the loader's business.
    imports(CellFile::unverified_object(bytes).map_err(|e| e.to_string())?)
}

/// Every `*.cell` file in `dir`, by name; a file that cannot be read is
/// reported with its error.
pub fn read_dir(dir: &Path) -> Result<Vec<CellSurface>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cell")).collect();
    paths.sort();
    Ok(paths
        .iter()
        .map(|path| {
            let file = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            match std::fs::read(path).map_err(|e| e.to_string()).and_then(|bytes| surface(&bytes)) {
                Ok(imports) => CellSurface { file, imports, error: None },
                Err(e) => CellSurface { file, imports: BTreeMap::new(), error: Some(e) },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn crates_of_demangled_paths() {
        let cases = [
            ("framekernel::io::claim_legacy", "framekernel"),
            ("<framekernel::io::IoPorts as core::ops::drop::Drop>::drop", "framekernel"),
            ("<u16 as core::fmt::LowerHex>::fmt", "core"),
            ("<str as core::fmt::Debug>::fmt", "core"),
            ("<alloc::raw_vec::RawVec<u8>>::grow_one", "alloc"),
            ("<core::fmt::Formatter>::write_str", "core"),
        ];
        for (path, krate) in cases {
            assert_eq!(super::crate_of(path), krate, "{path}");
        }
    }
}
