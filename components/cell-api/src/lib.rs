//! The contract between the kernel and its cells.
//!
//! A cell is a crate built as an ELF relocatable object and loaded at run
//! time (see `docs/architecture.md`, "Cells"). It declares its entry with
//! [`cell_entry!`]; the entry returns the cell's one exported object, the
//! `Export` of one interface module here. Each module's `Interface` type
//! carries a fingerprint of the module's source text: the cell's marker
//! and its signed header carry it, and the kernel's slot refuses a cell
//! whose fingerprint is not its interface's, before calling anything in
//! it. The kernel never links against a cell's own symbols.
//!
//! Interfaces are traits defined here. Their methods take and return plain
//! data (integers, byte slices, owned `String`/`Vec`), never references into
//! the cell, trait objects or function pointers: anything a cell returns
//! must stay valid after the cell's code is unmapped. The kernel calls them
//! through `Instance::call`, whose argument and result types must be
//! `framekernel_boundary::{Arg, Ret}`; an interface's own structs and enums
//! are admitted with `framekernel_boundary::cell_data!`.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[doc(hidden)]
pub use alloc::boxed::Box;
#[doc(hidden)]
pub use framekernel_logic::cellobj::marker;
pub use framekernel_boundary::Interface;

/// Declares the cell's entry: `cell_entry!(block, make)` where `block` is
/// the interface module and `make` a function (or closure) returning that
/// interface's `Export` (here a `Box<dyn block::BlockDriver>`). Invoke it
/// once, at the crate root.
#[macro_export]
macro_rules! cell_entry {
    ($interface:ident, $make:expr) => {
        /// The cell's entry, found by the loader by this name (never
        /// inlined away: the object must define it).
        #[inline(never)]
        pub fn __tessera_cell_entry() -> <::framekernel_interfaces::$interface::Interface as $crate::Interface>::Export {
            ($make)()
        }

        /// Tells the loader that `__tessera_cell_entry` returns the
        /// `Export` of the interface with this fingerprint (this macro
        /// wrote both). The packer copies the fingerprint into the signed
        /// header; the kernel's slot compares it with its own.
        pub static __TESSERA_CELL_ABI: [u8; 64] =
            $crate::marker(<::framekernel_interfaces::$interface::Interface as $crate::Interface>::FINGERPRINT);
    };
}

pub mod probe;

pub mod block;

pub mod net;

pub mod netstack;

pub mod serial;

pub mod tty;

pub mod fs;

pub mod procfs;
