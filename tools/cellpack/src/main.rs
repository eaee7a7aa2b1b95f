//! `tessera-cellpack check CELL.o KERNEL.elf`: fails, naming them, when the
//! cell needs symbols the kernel does not define.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, command, cell, kernel] = args.as_slice() else {
        eprintln!("usage: tessera-cellpack check CELL.o KERNEL.elf");
        return ExitCode::from(2);
    };
    if command != "check" {
        eprintln!("tessera-cellpack: unknown command {command}");
        return ExitCode::from(2);
    }
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let (cell_bytes, kernel_bytes) = match (read(cell), read(kernel)) {
        (Ok(c), Ok(k)) => (c, k),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("tessera-cellpack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let defined = match tessera_cellpack::defined_symbols(&kernel_bytes) {
        Ok(names) => names,
        Err(e) => {
            eprintln!("tessera-cellpack: {kernel}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match tessera_cellpack::check(&cell_bytes, &|name| defined.contains(name)) {
        Ok(count) => {
            println!("{cell}: {count} undefined symbol(s), all defined by {kernel}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tessera-cellpack: {cell}: {e}");
            ExitCode::FAILURE
        }
    }
}
