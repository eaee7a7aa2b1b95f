//! Builds the vDSO (`userspace/vdso`: user-mode C, linked as a small
//! shared object) that this crate embeds and maps into every process.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("../../userspace/vdso");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("vdso.so");
    for file in ["vdso.c", "vdso.lds", "vdso.map"] {
        println!("cargo:rerun-if-changed={}", dir.join(file).display());
    }
    let cc = std::env::var("VDSO_CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-O2",
            "-fPIC",
            "-ffreestanding",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-fno-builtin",
            "-fcf-protection=none",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-nostdlib",
            "-shared",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--hash-style=both",
            "-Wl,--build-id=none",
            "-Wl,-z,max-page-size=4096",
            "-Wl,--no-undefined",
            "-s",
        ])
        .arg(format!("-Wl,--version-script={}", dir.join("vdso.map").display()))
        .arg(format!("-Wl,-T,{}", dir.join("vdso.lds").display()))
        .arg("-o")
        .arg(&out)
        .arg(dir.join("vdso.c"))
        .status()
        .unwrap_or_else(|e| panic!("building the vDSO: cannot run {cc}: {e} (install gcc: make deps)"));
    assert!(status.success(), "building the vDSO ({}) failed", dir.join("vdso.c").display());
}
