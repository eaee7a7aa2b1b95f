//! Host-test support: compiles a small `no_std` crate the way cells are
//! built (docs/architecture.md, "Cells") and returns the object file's bytes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::vec::Vec;

/// The object file of `source` compiled as a cell with the toolchain's
/// `rustc` for `x86_64-unknown-none`. Panics (failing the test) when rustc
/// cannot build it.
pub fn compile(source: &str) -> Vec<u8> {
    compile_with(source, "static")
}

/// As [`compile`], with `-C relocation-model=pic` (GOT relocations).
pub fn compile_pic(source: &str) -> Vec<u8> {
    compile_with(source, "pic")
}

fn compile_with(source: &str, relocation_model: &str) -> Vec<u8> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir: PathBuf = std::env::temp_dir().join(std::format!("tessera-testcell-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let src = dir.join("cell.rs");
    std::fs::write(&src, source).expect("write the cell source");
    let out = dir.join("cell.o");
    let status = std::process::Command::new("rustc")
        .args(["--edition", "2024", "--crate-type", "lib", "--crate-name", "cell", "--target", "x86_64-unknown-none"])
        .args(["--emit=obj", "-O", "-C", "panic=abort", "-C", "code-model=kernel"])
        .arg(std::format!("-Crelocation-model={relocation_model}"))
        .args(["-C", "codegen-units=1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc could not build the test cell");
    let bytes = std::fs::read(&out).expect("read the cell object");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}
