//! `cell_data!` admits a type into `Arg`/`Ret` only if every field is
//! itself `Ret`. Each case below writes the macro's input a different way
//! to smuggle in a reference, a code pointer or shared ownership (the
//! red team's list); each must fail to compile, and the control case must
//! compile. Builds small crates with the same cargo, offline.

use std::path::{Path, PathBuf};
use std::process::Command;

fn build(dir: &Path, target: &Path, source: &str) -> bool {
    std::fs::write(dir.join("src/lib.rs"), format!("#![no_std]\nextern crate alloc;\nuse framekernel_boundary::cell_data;\n{source}\n")).unwrap();
    Command::new(env!("CARGO"))
        .args(["build", "--offline", "-q"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(dir)
        .output()
        .expect("run cargo")
        .status
        .success()
}

#[test]
fn every_way_to_smuggle_a_pointer_is_refused() {
    let boundary = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("tessera-cell-data-{}", std::process::id()));
    let target = dir.join("target");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"cell-data-case\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[workspace]\n[dependencies]\nframekernel-boundary = {{ path = {:?} }}\n",
            boundary
        ),
    )
    .unwrap();
    assert!(
        build(&dir, &target, "pub struct Ok1 { pub a: u64, pub s: alloc::string::String, pub v: alloc::vec::Vec<u8> } cell_data!(struct Ok1 { a, s, v });"),
        "the control case (plain fields) must compile"
    );
    let cases = [
        ("a reference field", "pub struct R { pub s: &'static str } cell_data!(struct R { s });"),
        ("a field left out", "pub struct M { pub a: u64, pub f: fn() } cell_data!(struct M { a });"),
        ("a tuple struct written as empty braces", "pub struct T1(pub &'static str); cell_data!(struct T1 {});"),
        ("a field name shadowed by a const", "pub struct S { pub s: &'static u8 } #[allow(non_upper_case_globals)] const s: &'static u8 = &0; cell_data!(struct S { s });"),
        ("a const pattern and a repeated variant", "pub enum E { V(&'static u8) } #[allow(non_upper_case_globals)] const a: &'static u8 = &0; cell_data!(enum E { V(a), V(b) });"),
        ("a type alias of a generic struct", "pub struct G<T> { pub x: T } pub type A = G<&'static str>; cell_data!(struct A { x });"),
        ("a lifetime-generic struct", "pub struct L<'a> { pub s: &'a str } cell_data!(struct L { s });"),
        ("a Box<dyn Fn> field", "pub struct F { pub f: alloc::boxed::Box<dyn Fn() + Send + Sync> } cell_data!(struct F { f });"),
        ("a fn pointer field", "pub struct P { pub f: fn() } cell_data!(struct P { f });"),
        ("an Arc field", "pub struct A2 { pub a: alloc::sync::Arc<u64> } cell_data!(struct A2 { a });"),
        ("an enum variant left out", "pub enum E2 { A(u64), B(&'static str) } cell_data!(enum E2 { A(x) });"),
    ];
    let admitted: Vec<&str> = cases.iter().filter(|(_, source)| build(&dir, &target, source)).map(|(what, _)| *what).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(admitted.is_empty(), "cell_data! admitted: {admitted:?}");
}
