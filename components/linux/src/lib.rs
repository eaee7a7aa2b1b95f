//! Tessera's Linux personality: processes, their memory, `execve`, and the
//! x86_64 system-call dispatcher, built only on the framekernel's safe APIs.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod errno;
pub mod exec;
pub mod files;
pub mod memory;
pub mod process;
pub mod syscall;

pub use errno::Errno;
pub use process::{Outcome, Process};
