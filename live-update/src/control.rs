//! The `cellctl` commands, as text: what user space writes to
//! `/dev/cellctl` and the reply it reads back.
//!
//! ```text
//! list                 cells (as /proc/cells) and slots
//! info NAME            one slot or cell in detail
//! load FILE            load and link a cell file (state loaded)
//! unload NAME          unload a cell no slot uses
//! swap SLOT FILE       load FILE and swap it into SLOT
//! restart SLOT         start a fresh instance (clears a hold)
//! ```
//!
//! Paths are absolute (`cellctl` resolves relative ones).

use crate::registry::{self, CellState, UnloadError};
use crate::slot::{self, SlotError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::Ordering;
use framekernel::cell::LoadError;

/// What kind of failure, for the errno user space sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Unknown command or wrong arguments (`EINVAL`).
    Usage,
    /// No such slot, cell or file (`ENOENT`).
    NotFound,
    /// The cell file is malformed or does not link (`ENOEXEC`).
    BadCell,
    /// The cell offers another interface than the slot takes (`EINVAL`).
    WrongInterface,
    /// A swap is running, or the cell is in use (`EBUSY`).
    Busy,
    /// The new cell faulted when starting (`EIO`).
    StartFailed,
    /// Out of memory or address space (`ENOMEM`).
    NoMemory,
}

/// A refused command: its kind and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlError {
    /// For the errno.
    pub failure: Failure,
    /// For the user.
    pub message: String,
}

fn fail(failure: Failure, message: String) -> ControlError {
    ControlError { failure, message }
}

fn load_error(path: &str, e: LoadError) -> ControlError {
    let failure = match e {
        LoadError::Map(_) => Failure::NoMemory,
        _ => Failure::BadCell,
    };
    fail(failure, format!("{path}: {e}"))
}

fn slot_error(name: &str, e: SlotError) -> ControlError {
    let failure = match e {
        SlotError::Busy => Failure::Busy,
        SlotError::Interface { .. } | SlotError::WrongCell { .. } => Failure::WrongInterface,
        SlotError::Gone => Failure::NotFound,
        _ => Failure::StartFailed,
    };
    fail(failure, format!("{name}: {e}"))
}

fn find_slot(name: &str) -> Result<alloc::sync::Arc<dyn slot::AnySlot>, ControlError> {
    slot::find(name).ok_or_else(|| {
        let names: Vec<String> = slot::all().iter().map(|s| String::from(s.name())).collect();
        fail(Failure::NotFound, format!("no slot {name} (slots: {})", names.join(", ")))
    })
}

fn list() -> String {
    let mut out = registry::proc_cells();
    out.push('\n');
    out.push_str(&slot::describe_all());
    out
}

fn info(name: &str) -> Result<String, ControlError> {
    let mut out = String::new();
    if let Some(slot) = slot::find(name) {
        let stats = slot.stats();
        let _ = writeln!(out, "slot {} (interface {}){}", slot.name(), slot.interface(), if slot.is_held() { ", held" } else { "" });
        let _ = writeln!(
            out,
            "  faults {}, restarts {}, retried calls {}, swaps {}",
            stats.faults, stats.restarts, stats.retries, stats.swaps
        );
        let _ = writeln!(
            out,
            "  last swap downtime {} us, last fault recovery {} us",
            stats.last_swap_downtime_ns / 1000,
            stats.last_recovery_ns / 1000
        );
        let (median, longest, count) = stats.recent_recoveries;
        if count > 0 {
            let _ = writeln!(out, "  fault recovery: median {} us, longest {} us, of the last {count}", median / 1000, longest / 1000);
        }
        if let Some(cell) = slot.cell() {
            let _ = writeln!(out, "  cell {} {} ({})", cell.name(), cell.version(), cell.state().as_str());
        }
        return Ok(out);
    }
    let cell = registry::find(name).ok_or_else(|| fail(Failure::NotFound, format!("no slot or cell {name}")))?;
    let _ = writeln!(out, "cell {} {} (interface {}), {}", cell.name(), cell.version(), cell.interface(), cell.state().as_str());
    if let Some(code) = cell.code() {
        let (imports, relocations) = code.link_figures();
        let _ = writeln!(
            out,
            "  at {:#x}, {} KiB; {imports} kernel symbols, {relocations} relocations; loaded in {} us",
            code.base(),
            code.size() / 1024,
            cell.load_ns / 1000
        );
    }
    let _ = writeln!(
        out,
        "  slot {}; faults {}, restarts {}, swaps {}",
        cell.slot().unwrap_or_else(|| "-".into()),
        cell.faults.load(Ordering::Relaxed),
        cell.restarts.load(Ordering::Relaxed),
        cell.swaps.load(Ordering::Relaxed)
    );
    Ok(out)
}

fn read(path: &str, read_file: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Result<Vec<u8>, ControlError> {
    if !path.starts_with('/') {
        return Err(fail(Failure::Usage, format!("{path}: the kernel takes absolute paths")));
    }
    read_file(path).map_err(|e| fail(Failure::NotFound, format!("{path}: {e}")))
}

/// Runs one command line; `read_file` reads an absolute path.
pub fn command(line: &str, read_file: &dyn Fn(&str) -> Result<Vec<u8>, String>) -> Result<String, ControlError> {
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["list"] => Ok(list()),
        ["info", name] => info(name),
        ["load", path] => {
            let bytes = read(path, read_file)?;
            let cell = registry::load(&bytes).map_err(|e| load_error(path, e))?;
            let size = cell.code().map_or(0, |c| c.size() / 1024);
            Ok(format!(
                "loaded {} {} ({}) as cell {}: {size} KiB in {} us\n",
                cell.name(),
                cell.version(),
                cell.interface(),
                cell.id,
                cell.load_ns / 1000
            ))
        }
        ["unload", name] => match registry::unload(name) {
            Ok(()) => Ok(format!("unloaded {name}\n")),
            Err(UnloadError::NotFound) => Err(fail(Failure::NotFound, format!("no loaded cell {name}"))),
            Err(UnloadError::InUse { slot }) => {
                Err(fail(Failure::Busy, format!("{name} is in use by slot {slot}; swap another cell in first")))
            }
        },
        ["swap", name, path] => {
            let slot = find_slot(name)?;
            let bytes = read(path, read_file)?;
            let cell = registry::load(&bytes).map_err(|e| load_error(path, e))?;
            if let Err(e) = slot.check(&cell) {
                let message = match &e {
                    SlotError::Interface { .. } => {
                        format!("{path}: cell {} offers interface {}, slot {name} takes {}", cell.name(), cell.interface(), slot.interface())
                    }
                    other => format!("{path}: slot {name}: {other}"),
                };
                let _ = registry::unload_entry(&cell);
                return Err(fail(Failure::WrongInterface, message));
            }
            match slot.swap(cell.clone()) {
                Ok(report) => Ok(format!(
                    "swapped {} for {} in slot {name}: gate closed for {} us\n",
                    report.old,
                    report.new,
                    report.downtime_ns / 1000
                )),
                Err(e) => {
                    if cell.state() == CellState::Loaded {
                        let _ = registry::unload_entry(&cell);
                    }
                    Err(slot_error(name, e))
                }
            }
        }
        ["restart", name] => {
            let slot = find_slot(name)?;
            slot.restart().map_err(|e| slot_error(name, e))?;
            Ok(format!("restarted slot {name}\n"))
        }
        [] => Err(fail(Failure::Usage, "empty command".into())),
        [other, ..] => Err(fail(
            Failure::Usage,
            format!("{other}: unknown command or wrong arguments (list, info NAME, load FILE, unload NAME, swap SLOT FILE, restart SLOT)"),
        )),
    }
}
