//! Tessera's trusted base: the only crate in the kernel with `unsafe` code.
//!
//! It turns the machine into safe APIs for the rest of the kernel:
//! [`mm::Frame`], [`mm::MappedArea`], [`mm::IoMem`], [`io::IoPorts`],
//! [`irq::register`], [`time`], [`sync::SpinLock`], and the console. Each
//! `unsafe` block carries a `// SAFETY:` comment stating why its invariant
//! holds; each `unsafe fn` documents its contract under `# Safety`.
//!
//! Boot flow: `arch::boot` (assembly) → [`boot`] (`framekernel_entry`) →
//! the kernel's main function registered with [`entry_point!`].
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

extern crate alloc;

pub mod arch;
pub mod boot;
pub mod cell;
pub mod console;
pub mod cpu;
pub mod debug;
pub mod io;
pub mod irq;
pub mod mm;
mod percpu;
mod panic;
pub mod pci;
pub mod random;
pub mod selftest;
pub mod symbols;
pub mod sync;
pub mod task;
pub mod time;

pub use arch::qemu::{ExitCode, exit, exit_with_value};
pub use framekernel_logic as logic;
