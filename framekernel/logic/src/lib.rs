//! Pure logic of the trusted base, free of `unsafe` and of hardware access.
//!
//! Everything here works on plain values and byte slices so that it builds
//! for the host and is covered by `cargo test`; `framekernel` feeds it the
//! machine's data (boot-loader tables, physical memory) and acts on the
//! results. Data that comes from the boot loader is untrusted: every parser
//! returns a typed error naming the problem and never panics on bad input.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;
#[cfg(feature = "test-support")]
extern crate std;

pub mod acpi;
pub mod bootinfo;
pub mod calendar;
pub mod cellfile;
pub mod cellimports;
pub mod cellobj;
pub mod cmdline;
pub mod crc32;
pub mod elf;
pub mod fixed;
pub mod ioapic;
pub mod frames;
pub mod layout;
pub mod memmap;
pub mod multiboot2;
pub mod pci;
pub mod pvh;
pub mod reloc;
pub mod ring;
pub mod symbols;
pub mod uart16550;
#[cfg(any(test, feature = "test-support"))]
pub mod testcell;
