//! The kernel console on COM1: formatted output, the `log` backend, and a
//! receive buffer filled by the serial interrupt.

use crate::arch::serial;
use core::fmt::{self, Write};
use framekernel_logic::ring::ByteRing;

static OUTPUT: crate::sync::BaseLock<()> = crate::sync::BaseLock::new(());
/// The newest kernel log text, for `dmesg` (syslog(2)).
static LOG: crate::sync::BaseLock<framekernel_logic::ring::LogRing<32768>> = crate::sync::BaseLock::new(framekernel_logic::ring::LogRing::new());

/// Copies the kernel log (oldest first) into `out`; returns the bytes copied.
pub fn read_log(out: &mut [u8]) -> usize {
    LOG.lock().copy_to(out)
}

/// Bytes held in the kernel log.
pub fn log_len() -> usize {
    LOG.lock().len()
}

/// A `fmt::Write` that keeps what is written in the log ring.
struct LogSink;

impl Write for LogSink {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        LOG.lock().push(s.as_bytes());
        Ok(())
    }
}
static INPUT: crate::sync::BaseLock<ByteRing<4096>> = crate::sync::BaseLock::new(ByteRing::new());

struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                serial::write_byte(b'\r');
            }
            serial::write_byte(byte);
        }
        Ok(())
    }
}

/// Formatted text gathered on the stack and written out in pieces: the
/// caller's `Display` code (perhaps a cell's, which may fault) runs while
/// no lock is held; each piece is written under the output lock.
struct Pieces {
    buf: [u8; 256],
    len: usize,
}

impl Pieces {
    fn flush(&mut self) {
        let bytes = self.buf.get(..self.len).unwrap_or(&[]);
        let _guard = OUTPUT.lock();
        let _ = Serial.write_str(core::str::from_utf8(bytes).unwrap_or_else(|e| {
            core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
        }));
        self.len = 0;
    }
}

impl Write for Pieces {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut utf8 = [0u8; 4];
            let encoded = ch.encode_utf8(&mut utf8).as_bytes();
            if self.len + encoded.len() > self.buf.len() {
                self.flush();
            }
            if let Some(dst) = self.buf.get_mut(self.len..self.len + encoded.len()) {
                dst.copy_from_slice(encoded);
                self.len += encoded.len();
            }
        }
        Ok(())
    }
}

/// Writes formatted text to the console (used by `print!`/`println!`).
/// The text is formatted before the output lock is taken (in pieces of
/// 256 bytes), so a panic or fault in a `Display` implementation never
/// leaves the console locked.
pub fn print(args: fmt::Arguments<'_>) {
    let mut pieces = Pieces { buf: [0; 256], len: 0 };
    let _ = pieces.write_fmt(args);
    pieces.flush();
}

/// Writes raw bytes (program output) to the console, turning `\n` into
/// `\r\n` for the terminal.
pub fn write_bytes(bytes: &[u8]) {
    let _guard = OUTPUT.lock();
    for &byte in bytes {
        if byte == b'\n' {
            serial::write_byte(b'\r');
        }
        serial::write_byte(byte);
    }
}

/// Writes bytes exactly as given (terminal output already processed by a
/// line discipline). The console driver (a cell) is called with no lock
/// held: a fault there must not leave the console locked.
pub fn write_raw(bytes: &[u8]) {
    if driver_write(bytes) {
        return;
    }
    let _guard = OUTPUT.lock();
    for &byte in bytes {
        serial::write_byte(byte);
    }
}

/// Writes without taking the console lock: for panic and exception reports,
/// which may interrupt a holder of that lock.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    let _ = Serial.write_fmt(args);
}

/// Waits until output has left the kernel (the UART is written synchronously,
/// so there is nothing buffered).
pub fn flush() {}

/// Takes one byte typed on the console, if any.
pub fn read_byte() -> Option<u8> {
    INPUT.lock().pop()
}

/// True when typed bytes are waiting.
pub fn has_input() -> bool {
    !INPUT.lock().is_empty()
}

/// Bytes dropped because nobody read the console fast enough.
pub fn dropped_input() -> u64 {
    INPUT.lock().dropped()
}

static INPUT_HOOK: crate::sync::BaseLock<Option<fn()>> = crate::sync::BaseLock::new(None);

/// A console driver outside the base: `receiver` drains the UART when it
/// interrupts (and pushes with [`push_input`]); `sender` takes program
/// output and returns false when it cannot (the base then writes itself).
static DRIVER: crate::sync::BaseLock<Option<ConsoleDriver>> = crate::sync::BaseLock::new(None);

/// A console driver's two entry points: (receive, send).
pub type ConsoleDriver = (fn(), fn(&[u8]) -> bool);

/// Lends the console UART's ports (COM1) to a driver. Only one holder at
/// a time; the base keeps writing its own messages (and panic reports)
/// directly.
pub fn claim_uart() -> Result<crate::io::IoPorts, crate::io::IoPortError> {
    crate::io::IoPorts::acquire_lent(serial::COM1, 8)
}

/// The console UART's interrupt line.
pub const UART_IRQ: u8 = serial::COM1_IRQ;

/// Hands the console to a driver (see [`DRIVER`]); `None` gives it back.
pub fn set_driver(driver: Option<ConsoleDriver>) {
    *DRIVER.lock() = driver;
}

/// Tells the input hook that bytes are waiting (the UART interrupt does
/// after each drain; a driver that pushes input elsewhere calls it too).
pub fn notify_input() {
    let hook = *INPUT_HOOK.lock();
    if let Some(hook) = hook {
        hook();
    }
}

/// Adds bytes a console driver received.
pub fn push_input(bytes: &[u8]) {
    let mut ring = INPUT.lock();
    for &byte in bytes {
        ring.push(byte);
    }
}

/// Program output through the console driver, if one takes it.
fn driver_write(bytes: &[u8]) -> bool {
    let sender = DRIVER.try_lock().and_then(|d| d.map(|(_, send)| send));
    sender.is_some_and(|send| send(bytes))
}

/// Calls `hook` (in interrupt context, keep it short) whenever console
/// input arrives, so that blocked readers can be woken.
pub fn set_input_hook(hook: fn()) {
    *INPUT_HOOK.lock() = Some(hook);
}

/// COM1 interrupt: the driver (or the base) moves every received byte
/// into the input ring.
fn receive_interrupt() {
    let receiver = *DRIVER.lock();
    let receiver = receiver.map(|(receive, _)| receive);
    match receiver {
        Some(receive) => receive(),
        None => {
            let mut ring = INPUT.lock();
            while let Some(byte) = serial::read_byte() {
                ring.push(byte);
            }
        }
    }
    notify_input();
}

/// Prints like `std::print!` on the kernel console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line like `std::println!` on the kernel console.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = crate::time::now_ns() / 1000;
        let line = format_args!(
            "[{:>5}.{:06}] {:<5} {}: {}\n",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.target(),
            record.args()
        );
        // Formatted twice, each time with no lock held while the record's
        // arguments (perhaps a cell's `Display`) run.
        let _ = LogSink.write_fmt(line);
        print(line);
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Sets up the UART and the logger. Called first thing at boot.
pub(crate) fn init_early() {
    serial::init();
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Turns on the receive interrupt (needs the IDT and PIC).
pub(crate) fn init_input() {
    if crate::irq::register_base(serial::COM1_IRQ, receive_interrupt).is_ok() {
        serial::enable_receive_interrupt();
    }
}

/// A `fmt::Write` into a fixed stack buffer that silently truncates: for
/// formatting inside fault handlers, where the heap may be unusable.
pub struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// The text written so far (cut at a character boundary).
    pub fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
        }
    }
}

impl<const N: usize> Default for StackText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.bytes.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}
