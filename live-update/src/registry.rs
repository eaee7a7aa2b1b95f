//! The registry of loaded cells: what `/proc/cells` lists and `cellctl`
//! names. An entry outlives its code: once a cell is retired and nothing
//! runs in it any more, its code is unmapped and the entry says so.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use framekernel::cell::{self, LoadError, LoadedCell};
use framekernel::sync::SpinLock;

/// Where a cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CellState {
    /// Loaded, serving no slot.
    Loaded = 0,
    /// Serving a slot.
    Active = 1,
    /// Stopped after failing too often; `cellctl restart` retries it.
    Held = 2,
    /// Swapped out or unloaded; its code goes once nothing runs in it.
    Retired = 3,
}

impl CellState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => CellState::Loaded,
            1 => CellState::Active,
            2 => CellState::Held,
            _ => CellState::Retired,
        }
    }

    /// The word `/proc/cells` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Loaded => "loaded",
            CellState::Active => "active",
            CellState::Held => "held",
            CellState::Retired => "retired",
        }
    }
}

/// One loaded cell.
pub struct CellEntry {
    /// Registry number, shown in `/proc/cells`.
    pub id: u64,
    name: String,
    version: String,
    interface: String,
    fingerprint: [u8; 32],
    base: AtomicU64,
    size: AtomicU64,
    /// Nanoseconds the load (check, link, map) took.
    pub load_ns: u64,
    code: SpinLock<Weak<LoadedCell>>,
    /// Keeps the code while the cell serves no slot (after `cellctl load`).
    pinned: SpinLock<Option<Arc<LoadedCell>>>,
    state: AtomicU8,
    slot: SpinLock<Option<String>>,
    /// Faults contained in this cell's calls.
    pub faults: AtomicU64,
    /// Times a slot started a fresh instance after a fault.
    pub restarts: AtomicU64,
    /// Times this cell was swapped into a slot.
    pub swaps: AtomicU64,
}

impl CellEntry {
    /// The cell's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The interface it offers.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Its interface's fingerprint (from its signed header).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// Current state.
    pub fn state(&self) -> CellState {
        CellState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub(crate) fn set_state(&self, state: CellState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The slot it serves (or last served).
    pub fn slot(&self) -> Option<String> {
        self.slot.lock().clone()
    }

    pub(crate) fn set_slot(&self, slot: &str) {
        *self.slot.lock() = Some(slot.to_string());
    }

    /// The code, while it is mapped.
    pub fn code(&self) -> Option<Arc<LoadedCell>> {
        self.code.lock().upgrade()
    }

    /// True while its code is mapped.
    pub fn is_mapped(&self) -> bool {
        self.code.lock().strong_count() > 0
    }

    /// The cell now runs from `code`, a fresh copy linked after a fault.
    pub(crate) fn replace_code(&self, code: &Arc<LoadedCell>) {
        *self.code.lock() = Arc::downgrade(code);
        // A loaded (not yet serving) entry keeps its code mapped: now this.
        let mut pinned = self.pinned.lock();
        if pinned.is_some() {
            *pinned = Some(code.clone());
        }
        drop(pinned);
        self.base.store(code.base(), Ordering::Relaxed);
        self.size.store(code.size(), Ordering::Relaxed);
    }

    pub(crate) fn unpin(&self) {
        self.pinned.lock().take();
    }
}

static CELLS: SpinLock<Vec<Arc<CellEntry>>> = SpinLock::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Loads the cell file `file` and registers it (state `loaded`).
pub fn load(file: &[u8]) -> Result<Arc<CellEntry>, LoadError> {
    let started = framekernel::time::now_ns();
    let code = cell::load(file)?;
    let load_ns = framekernel::time::now_ns().saturating_sub(started);
    let entry = Arc::new(CellEntry {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: code.name().into(),
        version: code.version().into(),
        interface: code.interface().into(),
        fingerprint: *code.fingerprint(),
        base: AtomicU64::new(code.base()),
        size: AtomicU64::new(code.size()),
        load_ns,
        code: SpinLock::new(Arc::downgrade(&code)),
        pinned: SpinLock::new(Some(code)),
        state: AtomicU8::new(CellState::Loaded as u8),
        slot: SpinLock::new(None),
        faults: AtomicU64::new(0),
        restarts: AtomicU64::new(0),
        swaps: AtomicU64::new(0),
    });
    CELLS.lock().push(entry.clone());
    Ok(entry)
}

/// Every registered cell, oldest first. Retired cells whose code is gone
/// are listed once more and then forgotten.
pub fn list() -> Vec<Arc<CellEntry>> {
    let mut cells = CELLS.lock();
    let all = cells.clone();
    cells.retain(|e| e.state() != CellState::Retired || e.is_mapped());
    all
}

/// The newest cell called `name` that is not retired.
pub fn find(name: &str) -> Option<Arc<CellEntry>> {
    CELLS.lock().iter().rev().find(|e| e.name == name && e.state() != CellState::Retired).cloned()
}

/// Why `unload` refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnloadError {
    /// No such cell.
    NotFound,
    /// A slot uses it.
    InUse { slot: String },
}

/// Unloads a cell that serves no slot: its code is unmapped.
pub fn unload(name: &str) -> Result<(), UnloadError> {
    unload_entry(&find(name).ok_or(UnloadError::NotFound)?)
}

/// Unloads this cell if no slot uses it.
pub fn unload_entry(entry: &Arc<CellEntry>) -> Result<(), UnloadError> {
    if matches!(entry.state(), CellState::Active | CellState::Held) {
        return Err(UnloadError::InUse { slot: entry.slot().unwrap_or_default() });
    }
    entry.set_state(CellState::Retired);
    entry.unpin();
    Ok(())
}

/// The text of `/proc/cells`: a header and one line per cell.
pub fn proc_cells() -> String {
    let mut out = String::from("id name            version      interface  state    slot         address            size faults restarts swaps\n");
    for e in list() {
        let address = if e.is_mapped() { format!("{:#x}", e.base.load(Ordering::Relaxed)) } else { "-".into() };
        let _ = writeln!(
            out,
            "{:<2} {:<15} {:<12} {:<10} {:<8} {:<12} {:<18} {:>4}K {:>6} {:>8} {:>5}",
            e.id,
            e.name,
            e.version,
            e.interface,
            e.state().as_str(),
            e.slot().unwrap_or_else(|| "-".into()),
            address,
            e.size.load(Ordering::Relaxed) / 1024,
            e.faults.load(Ordering::Relaxed),
            e.restarts.load(Ordering::Relaxed),
            e.swaps.load(Ordering::Relaxed),
        );
    }
    out
}
