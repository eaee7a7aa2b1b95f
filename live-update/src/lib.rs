//! Live update: the registry of loaded cells, the slots through which the
//! kernel calls them, the swap protocol and the supervisor that contains,
//! restarts and, when a cell keeps failing, holds them. See
//! `docs/architecture.md` ("Cells") for the whole picture; the loader and
//! the fault boundary are in `framekernel::cell`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod control;
pub mod registry;
pub mod slot;

pub use registry::{CellEntry, CellState, UnloadError};
pub use slot::{AnySlot, Restored, Slot, SlotError, SlotStats, SwapReport};
