//! The ext2 file system, a cell (revision 0 and 1, block sizes 1, 2 and
//! 4 KiB, the `filetype`, `sparse_super` and `large_file` features; a
//! file system with other incompatible features is refused, one with
//! other read-only-compatible features is served read-only).
//!
//! The cell keeps nothing between calls (see `tessera_cell_api::fs`):
//! each request reads what it needs through the kernel's view of the
//! disk ([`Tx`]), asks for missing blocks, and hands back every block it
//! changed. A swap therefore transfers no state, and a fault loses no
//! more than the call that faulted. Every value read from the disk is
//! checked before it is used: a block number outside the file system,
//! a directory entry whose lengths do not add up, or a loop of indirect
//! blocks is `Corrupt` (EUCLEAN), never a panic or an access elsewhere.
//!
//! The same code builds for the host, where it is tested on images made
//! by `mkfs.ext2` and checked with `e2fsck` (`tests.rs`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

mod disk;
mod ops;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::string::String;
pub use ops::serve;
use tessera_cell_api::fs::{Export, FileSystem, Reply, Request};

/// The cell's object (it has no state).
pub struct Ext2;

impl FileSystem for Ext2 {
    fn name(&self) -> String {
        String::from("ext2")
    }

    fn serve(&self, request: Request, block_size: u32, index: &[[u64; 2]], data: &[u8]) -> Reply {
        ops::serve(request, block_size, index, data)
    }
}

fn make() -> Export {
    Box::new(Ext2)
}

tessera_cell_api::cell_entry!(fs, make);
