//! The two cascaded 8259 PICs, remapped to vectors 32..48.
//!
//! They deliver the legacy lines only on machines without an I/O APIC
//! (or with `noapic`); otherwise `irq::init_controller` masks them whole
//! ([`disable`]) once remapped, so that their vectors never collide with
//! the exceptions.

use x86_64::instructions::port::Port;

/// Vector of IRQ 0.
pub const IRQ_BASE: u8 = 32;
const MASTER: u16 = 0x20;
const SLAVE: u16 = 0xa0;
const CASCADE_LINE: u8 = 2;

fn write(port: u16, value: u8) {
    // SAFETY: PIC command/data ports are owned by the base (io::IoPort
    // refuses them); programming them has no memory side effects.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn read(port: u16) -> u8 {
    // SAFETY: as in `write`.
    unsafe { Port::<u8>::new(port).read() }
}

/// Remaps both PICs to 32..48 and masks every line but the cascade.
pub fn init() {
    write(MASTER, 0x11); // ICW1: init, expect ICW4
    write(SLAVE, 0x11);
    write(MASTER + 1, IRQ_BASE); // ICW2: vector offsets
    write(SLAVE + 1, IRQ_BASE + 8);
    write(MASTER + 1, 1 << CASCADE_LINE); // ICW3: slave on line 2
    write(SLAVE + 1, CASCADE_LINE);
    write(MASTER + 1, 0x01); // ICW4: 8086 mode
    write(SLAVE + 1, 0x01);
    write(MASTER + 1, !(1 << CASCADE_LINE));
    write(SLAVE + 1, 0xff);
}

/// Masks every line of both PICs, the cascade too.
pub fn disable() {
    let _whole = MASKS.lock();
    write(MASTER + 1, 0xff);
    write(SLAVE + 1, 0xff);
}

/// Keeps each read-modify-write of a mask register whole: lines are
/// masked in interrupt handlers on the boot processor and unmasked by
/// tasks anywhere.
static MASKS: crate::sync::SpinLock<()> = crate::sync::SpinLock::new(());

/// Lets IRQ `line` (0..16) through.
pub fn unmask(line: u8) {
    let (port, bit) = if line < 8 { (MASTER + 1, line) } else { (SLAVE + 1, line - 8) };
    let _whole = MASKS.lock();
    write(port, read(port) & !(1 << bit));
}

/// Blocks IRQ `line` (0..16).
pub fn mask(line: u8) {
    let (port, bit) = if line < 8 { (MASTER + 1, line) } else { (SLAVE + 1, line - 8) };
    let _whole = MASKS.lock();
    write(port, read(port) | (1 << bit));
}

/// True when IRQ `line` is a spurious interrupt (7 or 15 with the in-service
/// bit clear), which must not be acknowledged to the PIC that raised it.
pub fn is_spurious(line: u8) -> bool {
    if line != 7 && line != 15 {
        return false;
    }
    let port = if line == 7 { MASTER } else { SLAVE };
    write(port, 0x0b); // OCW3: read in-service register
    read(port) & 0x80 == 0
}

/// Signals end of interrupt for IRQ `line`.
pub fn end_of_interrupt(line: u8) {
    if line >= 8 {
        write(SLAVE, 0x20);
    }
    write(MASTER, 0x20);
}
