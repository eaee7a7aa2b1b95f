//! The local APICs (xAPIC, memory-mapped): every processor sees its own
//! at the same physical address, so one mapping serves all of them. The
//! base maps the window once, when it starts the other processors, and
//! keeps it; it is not handed out as `IoMem` to anyone else.

use crate::mm::IoMem;

/// Interrupt command register, low and high halves.
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
/// Delivery status: the last IPI is still being sent.
const SEND_PENDING: u32 = 1 << 12;
/// How long an IPI may stay pending before it counts as lost.
const SEND_NS: u64 = 10_000_000;

static WINDOW: spin::Once<Option<IoMem>> = spin::Once::new();

/// Maps the local APIC window (once); false when it cannot be mapped.
pub(crate) fn init() -> Result<(), &'static str> {
    let base = crate::cpu::topology().local_apic;
    WINDOW.call_once(|| IoMem::acquire(base, 0x1000).ok()).as_ref().map(|_| ()).ok_or("the local APIC window cannot be mapped")
}

fn window() -> Result<&'static IoMem, &'static str> {
    WINDOW.get().and_then(Option::as_ref).ok_or("the local APIC window is not mapped")
}

/// Sends an inter-processor interrupt: `low` is the command (vector,
/// delivery mode, level), `apic_id` the destination (physical, 8 bits).
/// Waits until the APIC has sent it. Interrupts are off meanwhile, so an
/// interrupt handler sending one cannot come between the two halves.
pub(crate) fn send_ipi(apic_id: u32, low: u32) -> Result<(), &'static str> {
    let lapic = window()?;
    if apic_id > 0xfe {
        return Err("the destination needs x2APIC mode");
    }
    crate::arch::without_interrupts(|| {
        lapic.write::<u32>(ICR_HIGH, apic_id << 24).map_err(|_| "the local APIC window was revoked")?;
        lapic.write::<u32>(ICR_LOW, low).map_err(|_| "the local APIC window was revoked")?;
        let deadline = crate::time::now_ns() + SEND_NS;
        while lapic.read::<u32>(ICR_LOW).is_ok_and(|v| v & SEND_PENDING != 0) {
            if crate::time::now_ns() > deadline {
                return Err("the IPI stayed pending");
            }
            core::hint::spin_loop();
        }
        Ok(())
    })
}

/// Sends an NMI to the processor with local APIC id `apic_id`.
pub(crate) fn send_nmi(apic_id: u32) -> Result<(), &'static str> {
    send_ipi(apic_id, 0x0000_4400) // NMI delivery, assert, physical destination
}
