//! `tessera-cellpack check CELL.o KERNEL.elf`: fails, naming them, when the
//! cell needs symbols the kernel does not define.
//! `tessera-cellpack pack CRATE_DIR CELL.o KERNEL.elf OUT.cell`: checks as
//! above, links the cell once against the kernel's addresses, and writes
//! the cell file with the crate's name, version and interface (a VARIANT
//! build, made with that cargo feature, gets version `X.Y.Z+VARIANT`).
#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: tessera-cellpack check CELL.o KERNEL.elf\n       tessera-cellpack pack CRATE_DIR CELL.o KERNEL.elf OUT.cell [VARIANT]";

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{path}: {e}"))
}

fn run(args: &[String]) -> Result<String, String> {
    match args {
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
            let (cell_bytes, kernel_bytes) = (read(cell)?, read(kernel)?);
            let defined = tessera_cellpack::defined_symbols(&kernel_bytes).map_err(|e| format!("{kernel}: {e}"))?;
            let file = tessera_cellpack::pack(&manifest, &cell_bytes, &defined).map_err(|e| format!("{cell}: {e}"))?;
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
