//! Register offsets and bits of the 16550 UART, shared by the base's own
//! console writer and the console driver cell.

/// Receive buffer / transmit holding register (divisor low with DLAB).
pub const DATA: u16 = 0;
/// Interrupt enable register (divisor high with DLAB).
pub const INTERRUPT_ENABLE: u16 = 1;
/// FIFO control register.
pub const FIFO_CONTROL: u16 = 2;
/// Line control register.
pub const LINE_CONTROL: u16 = 3;
/// Modem control register.
pub const MODEM_CONTROL: u16 = 4;
/// Line status register.
pub const LINE_STATUS: u16 = 5;
/// Scratch register (probing for a UART).
pub const SCRATCH: u16 = 7;
/// Line status: a received byte is waiting.
pub const LSR_DATA_READY: u8 = 1 << 0;
/// Line status: the transmitter can take a byte.
pub const LSR_TX_EMPTY: u8 = 1 << 5;
