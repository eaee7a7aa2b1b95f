//! `tessera-audit [--json] [--markdown FILE] [--svg FILE] [--record] [--policy FILE] [--cells DIR] [WORKSPACE]`
//!
//! Prints what must be trusted in the kernel and its cells (see the
//! library's documentation); exits 1 when the policy is violated (each
//! violation named by file and line), 2 when it cannot run. With `--cells
//! DIR` (default: `WORKSPACE/build/cells` when it exists) it also lists
//! each cell file's imports from the kernel (its capability surface).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use tessera_audit::{Totals, audit, render_markdown, render_svg, render_text};

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let mut args = std::env::args().skip(1);
    let (mut json, mut markdown, mut record, mut policy_path, mut workspace) = (false, None, false, None, None);
    let mut svg: Option<PathBuf> = None;
    let mut cells: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--markdown" => markdown = args.next().map(PathBuf::from),
            "--record" => record = true,
            "--svg" => svg = args.next().map(PathBuf::from),
            "--policy" => policy_path = args.next().map(PathBuf::from),
            "--cells" => cells = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: tessera-audit [--json] [--markdown FILE] [--svg FILE] [--record] [--policy FILE] [--cells DIR] [WORKSPACE]");
                return ExitCode::SUCCESS;
            }
            other if !other.starts_with('-') => workspace = Some(PathBuf::from(other)),
            other => {
                eprintln!("tessera-audit: unknown option {other}");
                return ExitCode::from(2);
            }
        }
    }
    let workspace = workspace.unwrap_or_else(|| PathBuf::from("."));
    let policy_path = policy_path.unwrap_or_else(|| workspace.join("tools/audit/trusted.toml"));
    let recorded = workspace.join("tools/audit/recorded.json");
    let policy = match tessera_audit::Policy::read(&policy_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tessera-audit: {e}");
            return ExitCode::from(2);
        }
    };
    let mut report = match audit(&workspace, &policy) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tessera-audit: {e}");
            return ExitCode::from(2);
        }
    };
    let built_cells = workspace.join("build/cells");
    if let Some(dir) = cells.or_else(|| built_cells.is_dir().then_some(built_cells))
        && let Err(e) = report.read_cells(&dir)
    {
        eprintln!("tessera-audit: {e}");
        return ExitCode::from(2);
    }
    let previous: Option<Totals> = std::fs::read_to_string(&recorded).ok().and_then(|t| serde_json::from_str(&t).ok());
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("tessera-audit: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", render_text(&report, previous.as_ref()));
        println!("audit took {} ms", started.elapsed().as_millis());
    }
    if let Some(path) = markdown
        && let Err(e) = std::fs::write(&path, render_markdown(&report, previous.as_ref()))
    {
        eprintln!("tessera-audit: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Some(path) = svg
        && let Err(e) = std::fs::write(&path, render_svg(&report))
    {
        eprintln!("tessera-audit: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    if record {
        let text = serde_json::to_string_pretty(&report.totals).unwrap_or_default();
        if let Err(e) = std::fs::write(&recorded, text + "\n") {
            eprintln!("tessera-audit: {}: {e}", recorded.display());
            return ExitCode::from(2);
        }
        eprintln!("tessera-audit: recorded these totals in {}", recorded.display());
    }
    if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
