//! The 16550 UART on COM1: the kernel console.

use x86_64::instructions::port::Port;

/// COM1's I/O base; ports `COM1..COM1+8` are reserved by the base.
pub const COM1: u16 = 0x3f8;
/// The legacy IRQ line of COM1.
pub const COM1_IRQ: u8 = 4;

use framekernel_logic::uart16550::{
    DATA, FIFO_CONTROL, INTERRUPT_ENABLE, LINE_CONTROL, LINE_STATUS, LSR_DATA_READY, LSR_TX_EMPTY, MODEM_CONTROL, SCRATCH,
};

fn out(offset: u16, value: u8) {
    // SAFETY: the COM1 register block is owned by the base and has no
    // memory side effects; only this module accesses it.
    unsafe { Port::<u8>::new(COM1 + offset).write(value) }
}

fn inb(offset: u16) -> u8 {
    // SAFETY: as in `out`: a read of a COM1 register has no memory effects.
    unsafe { Port::<u8>::new(COM1 + offset).read() }
}

/// Programs 115200 baud, 8N1, FIFOs on. Returns false when no UART answers
/// (the scratch register does not hold a value).
pub fn init() -> bool {
    out(SCRATCH, 0x5a);
    if inb(SCRATCH) != 0x5a {
        return false;
    }
    out(INTERRUPT_ENABLE, 0x00);
    out(LINE_CONTROL, 0x80); // DLAB: divisor follows
    out(DATA, 0x01); // divisor 1 = 115200 baud
    out(INTERRUPT_ENABLE, 0x00);
    out(LINE_CONTROL, 0x03); // 8 bits, no parity, one stop bit
    out(FIFO_CONTROL, 0xc7); // enable and clear FIFOs, 14-byte threshold
    out(MODEM_CONTROL, 0x0b); // DTR, RTS, OUT2 (routes the IRQ)
    true
}

/// Asks the UART to interrupt when a byte arrives.
pub fn enable_receive_interrupt() {
    out(INTERRUPT_ENABLE, 0x01);
}

/// Sends one byte, waiting while the transmitter is full.
pub fn write_byte(byte: u8) {
    // Bounded wait: a missing or stuck UART must not hang the kernel.
    for _ in 0..100_000 {
        if inb(LINE_STATUS) & LSR_TX_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    out(DATA, byte);
}

/// Takes one received byte, if any.
pub fn read_byte() -> Option<u8> {
    (inb(LINE_STATUS) & LSR_DATA_READY != 0).then(|| inb(DATA))
}
