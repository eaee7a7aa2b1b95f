//! Links the kernel binary with the framekernel's linker script.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = format!("{dir}/../framekernel/linker.ld");
    println!("cargo:rerun-if-changed={script}");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{script}");
        // Keep every symbol (cells will resolve against them) and keep
        // unreferenced sections: cells may call code the kernel never does.
        println!("cargo:rustc-link-arg-bins=--no-gc-sections");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        // A build id the cell loader checks cells against (their header
        // names the kernel build they were packed for).
        println!("cargo:rustc-link-arg-bins=--build-id=sha1");
    }
}
