//! The cell interfaces the base will call a cell's entry as: for each
//! interface module of `tessera-cell-api`, the one implementation of the
//! base's unsafe trait `Interface`, pairing the module's `Export` with
//! the fingerprint of that module's source file.
//!
//! Part of the trusted base (it lives in `framekernel/` and holds the only
//! `unsafe impl Interface` there is): no other crate can pair a
//! fingerprint with another `Export` type, because implementing the trait
//! takes `unsafe`, which every crate outside `framekernel/` forbids, and
//! no macro writes it for them. `tessera_cell_api::cell_entry!(probe, ...)`
//! names `framekernel_interfaces::probe::Interface`; the kernel's slots
//! name the same types.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

use framekernel_boundary::{Interface as Contract, fingerprint};

/// Declares the interface module `$module` of `tessera-cell-api`.
macro_rules! interfaces {
    ($($module:ident: $file:literal),* $(,)?) => {$(
        pub mod $module {
            //! The interface of the same name in `tessera-cell-api`.

            /// The interface (what a cell offering it exports, its name
            /// and fingerprint).
            pub struct Interface;

            // SAFETY: `Export` is the `Export` of `tessera_cell_api::$module`,
            // defined in the file whose text the fingerprint hashes (the
            // path below is that module's file), so the fingerprint changes
            // with the definition and names no other type.
            unsafe impl super::Contract for Interface {
                type Export = tessera_cell_api::$module::Export;
                const NAME: &'static str = stringify!($module);
                const FINGERPRINT: [u8; 32] = super::fingerprint(stringify!($module), include_str!($file));
            }
        }
    )*};
}

interfaces!(
    block: "../../../components/cell-api/src/block.rs",
    fs: "../../../components/cell-api/src/fs.rs",
    net: "../../../components/cell-api/src/net.rs",
    netstack: "../../../components/cell-api/src/netstack.rs",
    probe: "../../../components/cell-api/src/probe.rs",
    procfs: "../../../components/cell-api/src/procfs.rs",
    serial: "../../../components/cell-api/src/serial.rs",
    tty: "../../../components/cell-api/src/tty.rs",
);
