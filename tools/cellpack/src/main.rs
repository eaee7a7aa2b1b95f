//! `tessera-cellpack check CELL.o KERNEL.elf`: fails, naming them, when the
//! cell needs symbols the kernel does not define.
//! `tessera-cellpack pack CRATE_DIR CELL.o KERNEL.elf OUT.cell [VARIANT] --key KEY`:
//! checks as above, links the cell once against the kernel's addresses,
//! and writes the cell file with the crate's name, version and interface
//! (a VARIANT build, made with that cargo feature, gets version
//! `X.Y.Z+VARIANT`), the kernel's build id, signed with KEY.
//! `tessera-cellpack bundle CRATE_DIR MESSAGES CELL.o OUT.o`: links the
//! rlibs of the crates the manifest's `bundle` lists (found in cargo's
//! JSON MESSAGES) into the cell object (`ld -r` with the toolchain's
//! rust-lld, or `$TESSERA_LD`), so that a cell can use a crate the kernel
//! does not link; without a bundle, copies CELL.o.
//! `tessera-cellpack keygen KEY`: writes a new signing key (refuses to
//! overwrite one). `tessera-cellpack pubkey KEY`: prints its public half,
//! which the kernel is built with (`TESSERA_CELL_PUBKEY`).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: tessera-cellpack check CELL.o KERNEL.elf\n       tessera-cellpack bundle CRATE_DIR MESSAGES CELL.o OUT.o\n       tessera-cellpack pack CRATE_DIR CELL.o KERNEL.elf OUT.cell [VARIANT] --key KEY\n       tessera-cellpack keygen KEY\n       tessera-cellpack pubkey KEY";

fn read_key(path: &str) -> Result<[u8; 32], String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    tessera_cellpack::parse_key_file(&text).map_err(|e| format!("{path}: {e}"))
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn run(args: &[String]) -> Result<String, String> {
    let mut args = args.to_vec();
    let key = match args.iter().position(|a| a == "--key") {
        Some(at) if at + 1 < args.len() => {
            let path = args.remove(at + 1);
            args.remove(at);
            Some(path)
        }
        Some(_) => return Err(USAGE.into()),
        None => None,
    };
    match args.as_slice() {
        [command, path] if command == "keygen" => {
            use std::io::Write;
            let seed = tessera_cellpack::new_key()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|e| format!("{path}: {e} (a key is never overwritten)"))?;
            file.write_all(tessera_cellpack::key_text(&seed).as_bytes()).map_err(|e| format!("{path}: {e}"))?;
            Ok(format!("{path}: new cell signing key, public key {}", framekernel_logic::cellfile::hex(&framekernel_logic::cellfile::public_key(&seed))))
        }
        [command, path] if command == "pubkey" => {
            Ok(framekernel_logic::cellfile::hex(&framekernel_logic::cellfile::public_key(&read_key(path)?)))
        }
        [command, crate_dir, messages, cell, out] if command == "bundle" => {
            let manifest = tessera_cellpack::read_manifest(Path::new(crate_dir))?;
            if manifest.bundle.is_empty() {
                std::fs::copy(cell, out).map_err(|e| format!("{cell} -> {out}: {e}"))?;
                return Ok(format!("{out}: {cell} (nothing bundled)"));
            }
            let text = std::fs::read_to_string(messages).map_err(|e| format!("{messages}: {e}"))?;
            let rlibs = tessera_cellpack::bundle_rlibs(&text, &manifest.bundle);
            if rlibs.is_empty() {
                return Err(format!("{messages}: cargo built none of the bundled crates {:?}", manifest.bundle));
            }
            let linker = linker()?;
            let status = std::process::Command::new(&linker)
                .args(["-flavor", "gnu", "-r", "-o", out, cell, "--start-group"])
                .args(&rlibs)
                .arg("--end-group")
                .status()
                .map_err(|e| format!("{linker}: {e}"))?;
            if !status.success() {
                return Err(format!("{linker} -r failed ({status}) linking {cell} with {}", rlibs.join(" ")));
            }
            Ok(format!("{out}: {cell} with {} bundled rlib(s)", rlibs.len()))
        }
        [command, cell, kernel] if command == "check" => {
            let (cell_bytes, kernel_bytes) = (read(cell)?, read(kernel)?);
            let defined = tessera_cellpack::defined_symbols(&kernel_bytes).map_err(|e| format!("{kernel}: {e}"))?;
            let count = tessera_cellpack::check(&cell_bytes, &|name| defined.contains_key(name)).map_err(|e| format!("{cell}: {e}"))?;
            Ok(format!("{cell}: {count} undefined symbol(s), all defined by {kernel}"))
        }
        [command, crate_dir, cell, kernel, out, variant @ ..] if command == "pack" && variant.len() <= 1 => {
            let mut manifest = tessera_cellpack::read_manifest(Path::new(crate_dir))?;
            if let Some(variant) = variant.first().filter(|v| !v.is_empty()) {
                manifest.version = format!("{}+{variant}", manifest.version);
            }
            let key_path = key.ok_or("pack needs --key KEY (tessera-cellpack keygen KEY makes one)")?;
            tessera_cellpack::check_sources(Path::new(crate_dir))?;
            let seed = read_key(&key_path)?;
            let (cell_bytes, kernel_bytes) = (read(cell)?, read(kernel)?);
            let defined = tessera_cellpack::defined_symbols(&kernel_bytes).map_err(|e| format!("{kernel}: {e}"))?;
            let build_id = tessera_cellpack::build_id(&kernel_bytes).map_err(|e| format!("{kernel}: {e}"))?;
            let target = tessera_cellpack::Kernel { symbols: &defined, build_id: &build_id, key: &seed };
            let file = tessera_cellpack::pack(&manifest, &cell_bytes, &target).map_err(|e| format!("{cell}: {e}"))?;
            std::fs::write(out, &file).map_err(|e| format!("{out}: {e}"))?;
            Ok(format!(
                "{out}: cell {} {} ({} interface), {} bytes",
                manifest.name,
                manifest.version,
                manifest.interface,
                file.len()
            ))
        }
        _ => Err(USAGE.into()),
    }
}

/// The linker for `bundle`: `$TESSERA_LD`, else the toolchain's rust-lld.
fn linker() -> Result<String, String> {
    if let Ok(ld) = std::env::var("TESSERA_LD") {
        return Ok(ld);
    }
    let rustc = |arg: &str| -> Result<String, String> {
        let out = std::process::Command::new("rustc").arg(arg).output().map_err(|e| format!("rustc {arg}: {e}"))?;
        String::from_utf8(out.stdout).map_err(|_| format!("rustc {arg}: output is not UTF-8"))
    };
    let sysroot = rustc("--print=sysroot")?;
    let version = rustc("-vV")?;
    let host = version.lines().find_map(|l| l.strip_prefix("host: ")).ok_or("rustc -vV names no host")?;
    let lld = format!("{}/lib/rustlib/{host}/bin/rust-lld", sysroot.trim());
    if Path::new(&lld).exists() { Ok(lld) } else { Err(format!("{lld} is missing (set TESSERA_LD to an ELF linker)")) }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-cellpack: {e}");
            ExitCode::FAILURE
        }
    }
}
