//! The I/O APICs (found through the ACPI MADT): they deliver the legacy
//! lines (vectors 32..48, as the PICs did) to a chosen processor, and the
//! PIT's output to the cell watchdog as an NMI.
//!
//! All windows are mapped and every pin masked at boot ([`init`]); after
//! that, entries change only through this module, one index/data pair at a
//! time under [`STATE`]'s lock, which also keeps what each legacy line is
//! programmed to (destination, mask) so that one change never undoes
//! another.

use crate::mm::IoMem;
use framekernel_logic::ioapic::{self as logic, Delivery, LineRoute};

/// Where PC chipsets (and QEMU) put the first I/O APIC, when the firmware
/// tables name none.
const IOAPIC_BASE: u64 = 0xfec0_0000;

struct Chip {
    window: IoMem,
    pins: u32,
}

/// A legacy line's pin and what it is programmed to.
#[derive(Clone, Copy)]
struct Line {
    chip: usize,
    pin: u32,
    route: LineRoute,
    apic_id: u8,
    masked: bool,
}

struct State {
    chips: alloc::vec::Vec<Chip>,
    lines: [Option<Line>; 16],
}

static STATE: spin::Once<crate::sync::BaseLock<State>> = spin::Once::new();

fn read(window: &IoMem, index: u32) -> Option<u32> {
    window.write::<u32>(0, index).ok()?;
    window.read::<u32>(0x10).ok()
}

fn write(window: &IoMem, index: u32, value: u32) -> Option<()> {
    window.write::<u32>(0, index).ok()?;
    window.write::<u32>(0x10, value).ok()
}

/// Writes redirection entry `pin` of `chip`: the high half (destination)
/// first, then the low half. A line's vector, trigger and delivery mode
/// never change once it is programmed (only its destination and mask do),
/// so an interrupt between the two writes goes to the new processor with
/// an entry that is otherwise the same; the pin is never masked in
/// passing (an edge arriving at a masked pin may be lost).
fn program(chip: &Chip, pin: u32, entry: u64) -> Option<()> {
    let index = 0x10 + 2 * pin;
    write(&chip.window, index + 1, (entry >> 32) as u32)?;
    write(&chip.window, index, entry as u32)
}

/// Maps every I/O APIC the MADT names (or the PC default when it names
/// none), masks all their pins and works out each legacy line's pin.
/// Returns how many I/O APICs answered; an error when none did. Call once,
/// on the boot processor, before the other processors start.
pub(crate) fn init() -> Result<usize, &'static str> {
    let topology = crate::cpu::topology();
    let listed: alloc::vec::Vec<framekernel_logic::acpi::IoApic> = if topology.io_apics.is_empty() {
        alloc::vec![framekernel_logic::acpi::IoApic { id: 0, address: IOAPIC_BASE as u32, gsi_base: 0 }]
    } else {
        topology.io_apics.clone()
    };
    let mut chips = alloc::vec::Vec::new();
    let mut answered = alloc::vec::Vec::new();
    for apic in &listed {
        let found = IoMem::acquire(u64::from(apic.address), 0x20).ok().and_then(|window| {
            let pins = logic::pins_from_version(read(&window, 1)?)?;
            Some(Chip { window, pins })
        });
        match found {
            Some(chip) => {
                for pin in 0..chip.pins {
                    let _ = program(&chip, pin, u64::from(logic::MASK_BIT));
                }
                answered.push(*apic);
                chips.push(chip);
            }
            None => log::warn!("I/O APIC at {:#x} does not answer; its lines stay off", apic.address),
        }
    }
    if chips.is_empty() {
        return Err("no I/O APIC answers");
    }
    let boot = u8::try_from(topology.boot_apic_id).unwrap_or(0);
    let mut lines = [None; 16];
    for (line, slot) in (0u8..).zip(lines.iter_mut()) {
        let Some(route) = logic::isa_route(&topology.overrides, line) else { continue };
        let Some((chip, pin)) = logic::serving(&answered, |i| chips.get(i).map_or(0, |c| c.pins), route.gsi) else { continue };
        *slot = Some(Line { chip, pin, route, apic_id: boot, masked: true });
    }
    let count = chips.len();
    STATE.call_once(|| crate::sync::BaseLock::new(State { chips, lines }));
    Ok(count)
}

/// Whether legacy `line` is level-triggered (as the MADT says); false
/// for an edge-triggered line and for a line without a pin.
pub(crate) fn level_triggered(line: u8) -> bool {
    STATE.get().is_some_and(|s| s.lock().lines.get(usize::from(line)).copied().flatten().is_some_and(|l| l.route.level))
}

/// Legacy `line`'s redirection entry as the I/O APIC holds it (for
/// reports: delivery status bit 12, remote IRR bit 14, mask bit 16).
pub(crate) fn entry(line: u8) -> Option<u64> {
    let state = STATE.get()?.lock();
    let l = state.lines.get(usize::from(line)).copied().flatten()?;
    let chip = state.chips.get(l.chip)?;
    let index = 0x10 + 2 * l.pin;
    Some(u64::from(read(&chip.window, index + 1)?) << 32 | u64::from(read(&chip.window, index)?))
}

/// Reprograms `line` with `change` applied to its state.
fn update(line: u8, change: impl FnOnce(&mut Line)) -> Result<(), &'static str> {
    let mut state = STATE.get().ok_or("no I/O APIC")?.lock();
    let state = &mut *state;
    let entry = state.lines.get_mut(usize::from(line)).and_then(Option::as_mut).ok_or("the line has no I/O APIC pin")?;
    change(entry);
    let chip = state.chips.get(entry.chip).ok_or("the line has no I/O APIC pin")?;
    let delivery = Delivery::Fixed { vector: super::pic::IRQ_BASE + line, apic_id: entry.apic_id };
    program(chip, entry.pin, logic::redirection_entry(delivery, entry.route, entry.masked)).ok_or("the I/O APIC window was revoked")
}

/// Masks (`true`) or unmasks legacy `line`.
pub(crate) fn set_masked(line: u8, masked: bool) {
    let _ = update(line, |l| l.masked = masked);
}

/// Sends legacy `line` to the processor with local APIC id `apic_id`
/// (physical; at most 254 in xAPIC mode).
pub(crate) fn set_destination(line: u8, apic_id: u32) -> Result<(), &'static str> {
    let id = u8::try_from(apic_id).ok().filter(|&id| id != 0xff).ok_or("the processor needs x2APIC mode")?;
    update(line, |l| l.apic_id = id)
}

/// Routes the PIT's pin (ISA line 0) as an NMI to every processor whose
/// flat logical APIC id has a bit of `logical_set` (processors opt in and
/// out through their logical destination register: `lapic`).
pub(crate) fn route_pit_as_nmi(logical_set: u8) -> Result<(), &'static str> {
    let mut state = STATE.get().ok_or("no I/O APIC")?.lock();
    let state = &mut *state;
    let timer = state.lines.first_mut().and_then(Option::take).ok_or("no I/O APIC pin carries the PIT")?;
    let chip = state.chips.get(timer.chip).ok_or("no I/O APIC pin carries the PIT")?;
    let entry = logic::redirection_entry(Delivery::NmiToSet { logical_set }, timer.route, false);
    program(chip, timer.pin, entry).ok_or("the I/O APIC window was revoked")
}
