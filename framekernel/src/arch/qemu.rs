//! Leaving QEMU with a status, through the `isa-debug-exit` device
//! (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`).
//!
//! QEMU exits with status `(value << 1) | 1`: [`ExitCode::Success`] gives 33,
//! [`ExitCode::Failure`] gives 35. Without the device the write does nothing
//! and the CPU halts instead.

use x86_64::instructions::port::Port;

/// The I/O port of QEMU's debug-exit device.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What the kernel reports to the host when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything asked for was done (QEMU exit status 33).
    Success = 0x10,
    /// A test failed or the kernel hit a fatal error (QEMU exit status 35).
    Failure = 0x11,
}

/// Exits QEMU with status `(value << 1) | 1` (for passing a program's exit
/// status to the host: `make exec` decodes it).
pub fn exit_with_value(value: u32) -> ! {
    crate::console::flush();
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: as in `exit`: the debug-exit port ends the virtual machine.
    unsafe { port.write(value) };
    super::halt_forever()
}

/// Exits QEMU with `code`; halts when not running under QEMU.
pub fn exit(code: ExitCode) -> ! {
    crate::console::flush();
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: port 0xf4 is reserved for the debug-exit device by the base
    // (io::IoPort refuses it to everyone else); writing it either ends the
    // virtual machine or, without the device, has no effect.
    unsafe { port.write(code as u32) };
    super::halt_forever()
}
