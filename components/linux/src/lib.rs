//! Tessera's Linux personality: processes, their memory, `execve`, and the
//! x86_64 system-call dispatcher, built only on the framekernel's safe APIs.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acct;
pub mod bcache;
pub mod block;
pub mod cellfs;
pub mod cellctl;
pub mod coredump;
pub mod epoll;
pub mod errno;
pub mod exec;
pub mod files;
pub mod locks;
pub mod memfd;
pub mod memory;
pub mod memstore;
pub mod mqueue;
pub mod net;
pub mod netlink;
pub mod pagecache;
pub mod pidfd;
pub mod pipe;
pub mod process;
pub mod procfs;
pub mod pty;
pub mod seccomp;
pub mod fs;
pub mod inet;
pub mod inotify;
pub mod signal;
pub mod signalfd;
pub mod socket;
pub mod syscall;
pub mod sysv;
pub mod timerfd;
pub mod timers;
pub mod unix;
pub mod vdso;

pub use errno::Errno;
pub use process::{Outcome, Process, ProcessInfo};

/// Starts the parts of the Linux personality that need the timer and the
/// console: sleeping and blocking console reads.
pub fn init() {
    let _ = framekernel::time::on_tick(syscall::proc::sleep_tick);
    if let Err(e) = timers::start_task() {
        log::error!("timers: no timer task ({e}); alarm and timers do not fire");
    }
    if let Err(e) = files::start_input_task() {
        log::error!("console: no input task ({e}); typed input is not processed");
    }
    framekernel::console::set_input_hook(files::console_input_arrived);
    // Bytes typed before the hook existed wait in the base's buffer.
    files::console_input_arrived();
}
