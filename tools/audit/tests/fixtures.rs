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

/// Copies `tests/fixtures/workspace` (a small kernel build) to a scratch
/// directory, so cargo's lock file is not written into the source tree.
fn workspace_copy(tag: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("tessera-audit-ws-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy(&fixture("workspace"), &dir);
    dir
}

/// The fixture's policy: fixture-macros may hold unsafe code (like the
/// base), fixture-logic is safe but the base depends on it.
fn workspace_policy() -> Policy {
    let mut policy = Policy::default();
    policy.workspace.insert("fixture-macros".into(), "the fixture's base".into());
    policy.trusted_safe.insert("fixture-logic".into(), "the base writes what it computes".into());
    policy
}

/// (crate, kind, file, line) of each violation of a whole audit.
fn audit_violations(a: &tessera_audit::Audit) -> Vec<(String, Kind, String, usize)> {
    a.violations.iter().map(|(c, f)| (c.clone(), f.kind, f.file.clone(), f.line)).collect()
}

#[test]
fn build_scripts_proc_macros_and_other_crates_unsafe_macros_fail_until_reviewed() {
    let dir = workspace_copy("unreviewed");
    let a = tessera_audit::audit(&dir, &workspace_policy()).unwrap();
    let v = |c: &str, k: Kind, f: &str, l: usize| (c.to_string(), k, f.to_string(), l);
    assert_eq!(
        audit_violations(&a),
        [
            // #[unsafe(no_mangle)] written by another crate's macro.
            v("tessera-cell-demo", Kind::UnsafeMacro, "src/lib.rs", 5),
            // An unsafe block from another crate's macro, directly, through
            // a macro that invokes it, and nested in an expression.
            v("tessera-kernel", Kind::UnsafeMacro, "src/lib.rs", 11),
            v("tessera-kernel", Kind::UnsafeMacro, "src/lib.rs", 15),
            v("tessera-kernel", Kind::UnsafeMacro, "src/lib.rs", 23),
            // Renamed on import.
            v("tessera-kernel", Kind::UnsafeMacro, "src/lib.rs", 33),
            // The build script, and each line linking native code.
            v("tessera-kernel", Kind::UnreviewedBuildScript, "build.rs", 1),
            v("tessera-kernel", Kind::NativeLink, "build.rs", 3),
            v("tessera-kernel", Kind::NativeLink, "build.rs", 4),
            v("fixture-derive", Kind::UnreviewedProcMacro, "src/lib.rs", 1),
        ],
        "{:#?}",
        a.violations
    );
    let details: Vec<&str> = a.violations.iter().map(|(_, f)| f.detail.as_str()).collect();
    assert!(details[0].contains("fixture_macros::export_symbol") && details[0].contains("#[unsafe(no_mangle)]"), "{}", details[0]);
    assert!(details[2].contains("fixture_macros::peek_twice") && details[2].contains("via fixture_macros::peek!"), "{}", details[2]);
    assert!(details[7].contains("rustc-link-lib=static=evil"), "{}", details[7]);
    // Build-time code is listed, with what it links.
    let listed: Vec<(String, tessera_audit::buildtime::BuildKind)> = a.build_time.iter().map(|b| (b.package.clone(), b.kind)).collect();
    assert_eq!(
        listed,
        [
            ("tessera-kernel".to_string(), tessera_audit::buildtime::BuildKind::BuildScript),
            ("fixture-derive".to_string(), tessera_audit::buildtime::BuildKind::ProcMacro),
            // Its build-dependency: listed, not judged.
            ("fixture-buildhelper".to_string(), tessera_audit::buildtime::BuildKind::HostDependency),
        ]
    );
    assert_eq!(a.build_time[0].native.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reviewed_build_time_code_and_macros_pass_and_stay_listed() {
    let dir = workspace_copy("reviewed");
    let mut policy = workspace_policy();
    policy.build_scripts.insert("tessera-kernel".into(), "reviewed".into());
    policy.proc_macros.insert("fixture-derive".into(), "reviewed".into());
    for m in ["peek", "peek_twice", "export_symbol"] {
        policy.macros.insert(format!("fixture_macros::{m}"), "reviewed".into());
    }
    let a = tessera_audit::audit(&dir, &policy).unwrap();
    assert!(a.violations.is_empty(), "{:#?}", a.violations);
    let macros: Vec<(&str, usize)> = a.unsafe_macros.iter().map(|m| (m.key.as_str(), m.uses.len())).collect();
    assert_eq!(macros, [("fixture_macros::export_symbol", 1), ("fixture_macros::peek", 3), ("fixture_macros::peek_twice", 1)]);
    assert!(a.unsafe_macros.iter().all(|m| m.reviewed.is_some()));
    assert!(a.build_time.iter().all(|b| b.reviewed.is_some() || b.kind == tessera_audit::buildtime::BuildKind::HostDependency));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reviewed_macro_restricted_to_some_callers_fails_elsewhere() {
    let dir = workspace_copy("callers");
    let mut policy = workspace_policy();
    policy.build_scripts.insert("tessera-kernel".into(), "reviewed".into());
    policy.proc_macros.insert("fixture-derive".into(), "reviewed".into());
    for m in ["peek", "peek_twice", "export_symbol"] {
        policy.macros.insert(format!("fixture_macros::{m}"), "reviewed".into());
    }
    policy.macro_callers.insert("fixture_macros::export_symbol".into(), vec!["some-other-crate".into()]);
    let a = tessera_audit::audit(&dir, &policy).unwrap();
    let v = audit_violations(&a);
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].1, Kind::UnsafeMacro);
    assert!(a.violations.iter().any(|(_, f)| f.detail.contains("which only some-other-crate may invoke")), "{:#?}", a.violations);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trusted_safe_crate_counts_in_the_trusted_share_and_must_stay_safe() {
    let dir = workspace_copy("tcb");
    let a = tessera_audit::audit(&dir, &workspace_policy()).unwrap();
    let lines = |name: &str| a.crates.iter().find(|c| c.name == name).map(|c| c.scan.total.code_lines).unwrap();
    let logic = a.crates.iter().find(|c| c.name == "fixture-logic").unwrap();
    assert!(logic.trusted && logic.reason.as_deref().is_some_and(|r| r.starts_with("trusted-safe:")), "{logic:?}");
    assert_eq!(lines("fixture-logic"), 5);
    assert_eq!(a.totals.own_trusted_lines, lines("fixture-macros") + lines("fixture-logic"));
    assert_eq!(a.totals.trusted_crates, 2);
    let _ = std::fs::remove_dir_all(&dir);
    // Trusted for the TCB, but not allowed unsafe code.
    let mut policy = Policy::default();
    policy.trusted_safe.insert("logic".into(), "the base depends on it".into());
    let (v, _) = judge(&entry("logic", true, scan("safe_with_unsafe", &[])), &policy);
    assert_eq!(v.iter().filter(|f| f.kind == Kind::UnsafeInSafeCrate).count(), 4, "{v:?}");
}

#[test]
fn unsafe_attributes_written_in_a_safe_crate_are_named() {
    let s = scan("safe_with_attributes", &[]);
    assert_eq!(s.total.unsafe_attributes, 4, "{:?}", s.total);
    let lib = || String::from("src/lib.rs");
    assert_eq!(
        violations(&entry("safe_with_attributes", false, s)),
        [
            (Kind::UnsafeInSafeCrate, lib(), 4),
            (Kind::UnsafeInSafeCrate, lib(), 7),
            (Kind::UnsafeInSafeCrate, lib(), 10),
            (Kind::UnsafeInSafeCrate, lib(), 13),
            // A macro_rules! body writing #[no_mangle] (no `unsafe` token).
            (Kind::UnsafeInSafeCrate, lib(), 20),
        ]
    );
}

#[test]
fn a_cell_object_s_imports_are_demangled_and_grouped_by_crate() {
    let object = framekernel_logic::testcell::compile(
        "#![no_std]\n\
         unsafe extern \"C\" { fn outside_c(x: u64) -> u64; }\n\
         #[inline(never)]\n\
         pub fn pick(v: &[u8], i: usize) -> u64 { u64::from(v[i]) + unsafe { outside_c(1) } }\n\
         #[panic_handler]\nfn panic(_: &core::panic::PanicInfo) -> ! { loop {} }\n",
    );
    let imports = tessera_audit::cells::imports(&object).unwrap();
    assert_eq!(imports.get("core").map(Vec::as_slice), Some(&["core::panicking::panic_bounds_check".to_string()][..]), "{imports:?}");
    assert_eq!(imports.get("(not Rust)").map(Vec::as_slice), Some(&["outside_c".to_string()][..]), "{imports:?}");
}

#[test]
fn cell_files_that_cannot_be_read_are_reported_not_fatal() {
    let dir = std::env::temp_dir().join(format!("tessera-audit-cells-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("garbage.cell"), b"not a cell").unwrap();
    std::fs::write(dir.join("empty.cell"), b"").unwrap();
    std::fs::write(dir.join("readme.txt"), b"ignored").unwrap();
    let cells = tessera_audit::cells::read_dir(&dir).unwrap();
    let files: Vec<(&str, bool)> = cells.iter().map(|c| (c.file.as_str(), c.error.is_some())).collect();
    assert_eq!(files, [("empty.cell", true), ("garbage.cell", true)]);
    assert!(tessera_audit::cells::read_dir(&dir.join("missing")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
