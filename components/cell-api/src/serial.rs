//! Serial ports (the console UART). Calls come from interrupt handlers
//! and console output, so they must not block or wait long.
use alloc::boxed::Box;
use alloc::string::String;

/// A serial port driver.
pub trait SerialPort: Send + Sync {
    /// What it drives (`16550 UART at 0x3f8`), or why it drives nothing.
    fn describe(&self) -> Result<String, String>;
    /// Sends `bytes` as they are; returns how many were sent.
    fn write(&self, bytes: &[u8]) -> usize;
    /// Moves received bytes into `out`; returns how many.
    fn receive(&self, out: &mut [u8]) -> usize;
}

/// What a serial driver cell exports.
pub type Export = Box<dyn SerialPort>;


