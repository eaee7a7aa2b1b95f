//! Unsafe code that crosses crates inside macros. `forbid(unsafe_code)`
//! does not fire (rustc 1.95) for unsafe code expanded from another
//! crate's `macro_rules!`, nor for an unsafe attribute such a macro
//! writes (`#[unsafe(no_mangle)]`): a crate that must be safe can put
//! unsafe code into the kernel by invoking one. So every exported macro
//! whose body writes unsafe code (directly or through another macro it
//! invokes) is listed, and each invocation from a crate that must be safe
//! fails the audit unless the macro is reviewed (`[macros]` in
//! `trusted.toml`, `"crate::macro" = "reason"`).
//!
//! Invocations are resolved by path as written: `dep::m!` through the
//! crate's dependency names, `m!` through the crate's `use` items
//! (renames too) or else to a dependency's exported `m` (`#[macro_use]`,
//! glob imports) unless the crate defines its own `m`; re-exports
//! (`pub use other::m as n` in a dependency) are followed a few steps.
//! A path `dep::module::m` is matched by the name `m` in `dep`. Not
//! followed: macros invoked only through what another macro expands to
//! from a proc-macro (those crates must be reviewed as a whole).

use crate::Policy;
use crate::scan::{CrateScan, Finding, Kind};
use serde::Serialize;
use std::collections::BTreeMap;

/// One crate, for resolving macro paths.
pub struct CrateMacros<'a> {
    /// Package name.
    pub package: &'a str,
    /// Extern crate names of its normal dependencies → package names.
    pub externs: BTreeMap<String, String>,
    /// Its scan (definitions and invocations).
    pub scan: &'a CrateScan,
    /// Must be safe: its invocations of unsafe macros are checked.
    pub checked: bool,
}

/// An exported macro that writes unsafe code, and who invokes it.
#[derive(Debug, Clone, Serialize)]
pub struct UnsafeMacro {
    /// `crate::macro`, the key of `[macros]`.
    pub key: String,
    /// The package defining it.
    pub package: String,
    /// Where it is defined (relative to that package).
    pub file: String,
    /// Line.
    pub line: usize,
    /// What unsafe it writes.
    pub emits: Vec<String>,
    /// The policy's reason, when reviewed.
    pub reviewed: Option<String>,
    /// Invocations from crates that must be safe: (package, file, line).
    pub uses: Vec<(String, String, usize)>,
}

/// The crate name Rust code uses for `package`.
pub fn rust_name(package: &str) -> String {
    package.replace('-', "_")
}

/// Candidate definitions (package, macro) for `path` invoked in `from`,
/// following `use` renames and re-exports (a few steps deep).
fn resolve(crates: &[CrateMacros<'_>], from: &CrateMacros<'_>, path: &[String]) -> Vec<(String, String)> {
    resolve_in(crates, from, path, 0)
}

fn resolve_in(crates: &[CrateMacros<'_>], from: &CrateMacros<'_>, path: &[String], depth: usize) -> Vec<(String, String)> {
    let Some(name) = path.last() else { return Vec::new() };
    if depth > 4 {
        return Vec::new();
    }
    let defines = |c: &CrateMacros<'_>, exported_only: bool| {
        c.scan.macro_defs.iter().any(|d| &d.name == name && (d.exported || !exported_only))
    };
    // `name` brought in by a `use` of crate `c` (renamed or re-exported).
    let imported = |c: &CrateMacros<'_>| -> Vec<(String, String)> {
        c.scan
            .imports
            .iter()
            .filter(|(alias, full)| alias == name && full.as_slice() != path)
            .flat_map(|(_, full)| resolve_in(crates, c, full, depth + 1))
            .collect()
    };
    let in_crate = |c: &CrateMacros<'_>, exported_only: bool| {
        if defines(c, exported_only) { vec![(c.package.to_string(), name.clone())] } else { imported(c) }
    };
    match path.first().map(String::as_str) {
        Some("$crate" | "crate" | "self" | "super") if path.len() > 1 => in_crate(from, false),
        Some(first) if path.len() > 1 => match from.externs.get(first).and_then(|p| crates.iter().find(|c| c.package == p)) {
            Some(target) => in_crate(target, true),
            None => Vec::new(),
        },
        _ if defines(from, false) => vec![(from.package.to_string(), name.clone())],
        _ => {
            let mut found = imported(from);
            if found.is_empty() {
                // `#[macro_use] extern crate` or a glob import.
                found = from
                    .externs
                    .values()
                    .filter_map(|p| crates.iter().find(|c| c.package == p))
                    .filter(|c| defines(c, true))
                    .map(|c| (c.package.to_string(), name.clone()))
                    .collect();
            }
            found
        }
    }
}

/// The exported unsafe-writing macros and the invocations of them that
/// fail the audit (package of the invoking crate, finding).
pub fn check(crates: &[CrateMacros<'_>], policy: &Policy) -> (Vec<UnsafeMacro>, Vec<(String, Finding)>) {
    // What each definition writes, following the macros it invokes.
    let mut emits: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for c in crates {
        for d in c.scan.macro_defs.iter().filter(|d| !d.emits.is_empty()) {
            emits.insert((c.package.to_string(), d.name.clone()), d.emits.clone());
        }
    }
    loop {
        let mut added = Vec::new();
        for c in crates {
            for d in &c.scan.macro_defs {
                if emits.contains_key(&(c.package.to_string(), d.name.clone())) {
                    continue;
                }
                let via: Vec<String> = d
                    .calls
                    .iter()
                    .flat_map(|p| resolve(crates, c, p))
                    .filter(|k| emits.contains_key(k))
                    .map(|(p, m)| format!("via {}::{m}!", rust_name(&p)))
                    .collect();
                if !via.is_empty() {
                    added.push(((c.package.to_string(), d.name.clone()), via));
                }
            }
        }
        if added.is_empty() {
            break;
        }
        emits.extend(added);
    }
    let mut listed: BTreeMap<(String, String), UnsafeMacro> = BTreeMap::new();
    for c in crates {
        for d in c.scan.macro_defs.iter().filter(|d| d.exported) {
            let k = (c.package.to_string(), d.name.clone());
            if let Some(what) = emits.get(&k) {
                let key = format!("{}::{}", rust_name(c.package), d.name);
                listed.insert(
                    k,
                    UnsafeMacro {
                        reviewed: policy.macros.get(&key).cloned(),
                        key,
                        package: c.package.to_string(),
                        file: d.file.clone(),
                        line: d.line,
                        emits: what.clone(),
                        uses: Vec::new(),
                    },
                );
            }
        }
    }
    let mut violations = Vec::new();
    for c in crates.iter().filter(|c| c.checked) {
        for u in &c.scan.macro_uses {
            for k in resolve(crates, c, &u.path) {
                if k.0 == c.package {
                    continue; // its own macros: their unsafe counts where written
                }
                let Some(m) = listed.get_mut(&k) else { continue };
                m.uses.push((c.package.to_string(), u.file.clone(), u.line));
                let detail = match policy.macro_callers.get(&m.key) {
                    Some(callers) if !callers.iter().any(|p| p == c.package) => Some(format!(
                        "invokes {}!, which only {} may invoke ([macro-callers] in tools/audit/trusted.toml): its safety contract depends on where it is written",
                        m.key,
                        callers.join(", ")
                    )),
                    _ if m.reviewed.is_none() => Some(format!(
                        "invokes {}!, which writes {} ({}:{} in {}); forbid(unsafe_code) does not see unsafe code from another crate's macro: review it and add \"{}\" to [macros] in tools/audit/trusted.toml with a reason",
                        m.key,
                        m.emits.join(", "),
                        m.file,
                        m.line,
                        m.package,
                        m.key
                    )),
                    _ => None,
                };
                if let Some(detail) = detail {
                    violations.push((c.package.to_string(), Finding { kind: Kind::UnsafeMacro, file: u.file.clone(), line: u.line, detail }));
                }
            }
        }
    }
    for m in listed.values_mut() {
        m.uses.sort();
        m.uses.dedup();
    }
    violations.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    violations.dedup();
    (listed.into_values().collect(), violations)
}
