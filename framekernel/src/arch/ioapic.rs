//! The I/O APIC (found through the ACPI MADT), for one thing only: the cell watchdog's NMI. The base
//! drives interrupts through the legacy PIC; here it also routes the PIT's
//! output (ISA IRQ 0, which PC chipsets wire to I/O APIC pin 2) to this CPU
//! as a non-maskable interrupt. A cell that spins with interrupts off
//! (so the timer interrupt cannot reach the watchdog) is still stopped.

use crate::mm::IoMem;

/// Where PC chipsets (and QEMU) put the first I/O APIC, when the firmware
/// tables do not say.
const IOAPIC_BASE: u64 = 0xfec0_0000;
/// The PIT's pin when the tables do not say (PC chipsets redirect ISA
/// IRQ 0 to GSI 2).
const PIT_PIN: u32 = 2;

/// The I/O APIC serving the PIT's interrupt and the pin it arrives on:
/// from the ACPI MADT (ISA IRQ 0's override, else GSI 0), else the PC
/// defaults.
fn pit_route() -> (u64, u32) {
    let topology = crate::cpu::topology();
    if topology.io_apics.is_empty() {
        return (IOAPIC_BASE, PIT_PIN);
    }
    let gsi = topology.overrides.iter().find(|o| o.source == 0).map_or(0, |o| o.gsi);
    // The I/O APIC with the highest base at or below the GSI serves it.
    let serving = topology.io_apics.iter().filter(|a| a.gsi_base <= gsi).max_by_key(|a| a.gsi_base);
    match serving {
        Some(a) => (u64::from(a.address), gsi - a.gsi_base),
        None => (IOAPIC_BASE, PIT_PIN),
    }
}

static WINDOW: spin::Once<Option<IoMem>> = spin::Once::new();

fn read(ioapic: &IoMem, index: u32) -> Option<u32> {
    ioapic.write::<u32>(0, index).ok()?;
    ioapic.read::<u32>(0x10).ok()
}

fn write(ioapic: &IoMem, index: u32, value: u32) -> Option<()> {
    ioapic.write::<u32>(0, index).ok()?;
    ioapic.write::<u32>(0x10, value).ok()
}

/// Routes the PIT's pin to this CPU as an NMI. Returns why not, if not.
pub(crate) fn route_pit_as_nmi() -> Result<(), &'static str> {
    let (base, pin) = pit_route();
    let ioapic = WINDOW.call_once(|| IoMem::acquire(base, 0x20).ok()).as_ref().ok_or("no I/O APIC window")?;
    let version = read(ioapic, 1).ok_or("I/O APIC not readable")?;
    let pins = ((version >> 16) & 0xff) + 1;
    // An I/O APIC answers with version 0x11 or 0x20 (not all ones, not 0).
    if version == u32::MAX || !(0x11..=0x2f).contains(&(version & 0xff)) || pins <= pin {
        return Err("no I/O APIC with the PIT's pin");
    }
    // This CPU's local APIC id (CPUID leaf 1, EBX bits 31..24).
    let apic_id = core::arch::x86_64::__cpuid(1).ebx >> 24;
    let entry = 0x10 + 2 * pin;
    // High half first (destination), then the low half, which unmasks:
    // delivery mode NMI (0b100), physical destination, edge, active high.
    write(ioapic, entry + 1, apic_id << 24).ok_or("I/O APIC write failed")?;
    write(ioapic, entry, (0b100 << 8) | 2).ok_or("I/O APIC write failed")?;
    Ok(())
}
