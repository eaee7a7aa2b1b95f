//! The audit on small crates with each kind of violation and each kind of
//! unsafe construct (`tests/fixtures/`), with exact expected findings.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tessera_audit::cfg::Cfg;
use tessera_audit::scan::{CrateScan, Kind, Stats, scan_crate};
use tessera_audit::{CrateEntry, Origin, Policy, judge};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn scan(name: &str, features: &[&str]) -> CrateScan {
    let dir = fixture(name);
    let cfg = Cfg { features: features.iter().map(|f| f.to_string()).collect::<BTreeSet<_>>(), host: false };
    scan_crate(&dir.join("src/lib.rs"), &dir, &cfg)
}

fn entry(name: &str, trusted: bool, scan: CrateScan) -> CrateEntry {
    CrateEntry { name: name.into(), version: "0.1.0".into(), origin: Origin::Workspace, in_kernel: true, trusted, reason: None, scan }
}

/// (kind, file, line) of each violation.
fn violations(e: &CrateEntry) -> Vec<(Kind, String, usize)> {
    let (v, _) = judge(e, &Policy::default());
    v.into_iter().map(|f| (f.kind, f.file, f.line)).collect()
}

#[test]
fn unsafe_in_comments_strings_and_test_code_does_not_count() {
    let s = scan("safe_ok", &[]);
    assert_eq!(s.total, Stats { code_lines: 6, ..Stats::default() }, "{:?}", s.total);
    assert!(s.forbids_unsafe && s.sites.is_empty() && s.findings.is_empty(), "{s:?}");
    assert!(violations(&entry("safe_ok", false, s)).is_empty());
}

#[test]
fn a_safe_crate_without_the_attribute_is_named() {
    let s = scan("safe_missing_forbid", &[]);
    assert!(!s.forbids_unsafe);
    assert_eq!(violations(&entry("safe_missing_forbid", false, s)), [(Kind::MissingForbidUnsafe, "src/lib.rs".into(), 1)]);
}

#[test]
fn unsafe_code_outside_the_trusted_list_is_named_line_by_line() {
    let s = scan("safe_with_unsafe", &[]);
    let lib = || String::from("src/lib.rs");
    assert_eq!(
        violations(&entry("safe_with_unsafe", false, s)),
        [
            (Kind::UnsafeInSafeCrate, lib(), 6),
            (Kind::UnsafeInSafeCrate, lib(), 9),
            (Kind::UnsafeInSafeCrate, lib(), 12),
            (Kind::UnsafeInSafeCrate, lib(), 14),
        ]
    );
}

#[test]
fn every_construct_is_counted_and_every_undocumented_one_named() {
    let s = scan("trusted_every_construct", &[]);
    let files: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, ["src/elsewhere.rs", "src/lib.rs", "src/sub.rs"]);
    let t = &s.total;
    assert_eq!((t.unsafe_blocks, t.blocks_with_safety), (8, 6), "blocks: {t:?}");
    assert_eq!((t.unsafe_fns, t.fns_with_safety_doc, t.unsafe_fns_in_trait_impls), (4, 1, 2), "fns: {t:?}");
    assert_eq!((t.unsafe_traits, t.traits_with_safety_doc), (2, 1), "traits: {t:?}");
    assert_eq!((t.unsafe_impls, t.impls_with_safety), (3, 1), "impls: {t:?}");
    assert_eq!((t.unsafe_externs, t.unsafe_attributes, t.asm_sites), (1, 1, 2), "extern/attr/asm: {t:?}");
    assert_eq!((t.unsafe_in_macro_definitions, t.unsafe_in_unparsed_macros), (1, 2), "macros: {t:?}");
    let lib = || String::from("src/lib.rs");
    assert_eq!(
        violations(&entry("trusted_every_construct", true, s.clone())),
        [
            (Kind::UndocumentedUnsafeBlock, "src/elsewhere.rs".into(), 2),
            (Kind::UndocumentedUnsafeBlock, lib(), 15),
            // The unsafe block written in the deref! macro_rules body.
            (Kind::UndocumentedUnsafeBlock, lib(), 72),
            (Kind::UndocumentedUnsafeImpl, lib(), 47),
            (Kind::UndocumentedUnsafeImpl, lib(), 49),
            (Kind::UnsafeFnWithoutSafetyDoc, lib(), 32),
            (Kind::UnsafeTraitWithoutSafetyDoc, lib(), 40),
        ]
    );
    let (_, notes) = judge(&entry("trusted_every_construct", true, s), &Policy::default());
    assert_eq!(notes.iter().map(|f| (f.kind, f.line)).collect::<Vec<_>>(), [(Kind::UnparsedMacro, 95)]);
}

#[test]
fn features_decide_what_is_compiled() {
    let without = scan("trusted_every_construct", &[]).total;
    let with = scan("trusted_every_construct", &["extra"]).total;
    assert_eq!(with.unsafe_blocks, without.unsafe_blocks + 1);
    assert_eq!(with.code_lines, without.code_lines + 4);
}

#[test]
fn the_same_crate_outside_the_trusted_list_fails_on_every_site() {
    let s = scan("trusted_every_construct", &[]);
    let sites = s.sites.len();
    let v = violations(&entry("every", false, s));
    // Every site, plus the missing #![forbid(unsafe_code)].
    assert_eq!(v.len(), sites + 1);
    assert!(v.contains(&(Kind::MissingForbidUnsafe, "src/lib.rs".into(), 1)));
}

#[test]
fn an_unreviewed_dependency_with_unsafe_fails_and_a_reviewed_one_passes() {
    let mut dep = entry("somedep", true, scan("safe_with_unsafe", &[]));
    dep.origin = Origin::Dependency;
    let (v, _) = judge(&dep, &Policy::default());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, Kind::UnreviewedDependency);
    assert!(v[0].detail.contains("somedep 0.1.0") && v[0].detail.contains("trusted.toml"), "{}", v[0].detail);
    let mut policy = Policy::default();
    policy.dependencies.insert("somedep".into(), "reviewed".into());
    assert!(judge(&dep, &policy).0.is_empty());
}

#[test]
fn modules_are_found_where_rustc_finds_them_and_comments_count_where_clippy_says() {
    let s = scan("trusted_layout", &[]);
    let files: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
    // Inline module dirs, #[path] files with children next to them,
    // cfg_attr(path); the decoy src/chosen.rs is not read.
    assert_eq!(files, ["src/lib.rs", "src/outer/inner.rs", "src/paths/child.rs", "src/paths/moved.rs", "src/real.rs"]);
    let t = &s.total;
    assert_eq!((t.unsafe_blocks, t.blocks_with_safety), (6, 3), "{t:?}");
    assert_eq!((t.unsafe_fns, t.fns_with_safety_doc), (1, 0), "an unsafe fn from a macro in impl position: {t:?}");
    assert_eq!(
        violations(&entry("trusted_layout", true, s.clone())),
        [
            (Kind::UndocumentedUnsafeBlock, "src/lib.rs".into(), 20),
            (Kind::UndocumentedUnsafeBlock, "src/outer/inner.rs".into(), 2),
            (Kind::UndocumentedUnsafeBlock, "src/paths/child.rs".into(), 2),
            (Kind::UnsafeFnWithoutSafetyDoc, "src/lib.rs".into(), 34),
        ]
    );
    // `r#match` is an identifier, not a raw string: the lines after it
    // are counted as they are (31 code lines in lib.rs, cfg(false) out).
    let lib = s.files.iter().find(|f| f.path == "src/lib.rs").unwrap();
    assert_eq!(lib.stats.code_lines, 31, "{:?}", lib.stats);
}

#[test]
fn unreadable_code_fails_the_audit() {
    let dir = std::env::temp_dir().join(format!("tessera-audit-unreadable-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "#![forbid(unsafe_code)]\nmod missing;\nmod broken;\n").unwrap();
    std::fs::write(dir.join("src/broken.rs"), "pub fn f( {\n").unwrap();
    let s = scan_crate(&dir.join("src/lib.rs"), &dir, &Cfg::default());
    let v = violations(&entry("unreadable", false, s));
    assert!(v.iter().any(|(k, f, _)| *k == Kind::Unfollowed && f == "src/lib.rs"), "{v:?}");
    assert!(v.iter().any(|(k, f, line)| *k == Kind::Unfollowed && f == "src/broken.rs" && *line == 1), "{v:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
