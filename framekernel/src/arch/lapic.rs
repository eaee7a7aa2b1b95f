//! The local APICs (xAPIC, memory-mapped): every processor sees its own
//! at the same physical address, so one mapping serves all of them. The
//! base maps the window once, when it starts the other processors, and
//! keeps it; it is not handed out as `IoMem` to anyone else.

use super::Bracketed;
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
        if wait_sent(lapic) { Ok(()) } else { Err("the IPI stayed pending") }
    })
}

/// Waits (at most [`SEND_NS`]) until the last IPI left this processor's
/// local APIC; false if it stayed pending.
fn wait_sent(lapic: &IoMem) -> bool {
    let deadline = crate::time::now_ns() + SEND_NS;
    while lapic.read::<u32>(ICR_LOW).is_ok_and(|v| v & SEND_PENDING != 0) {
        if crate::time::now_ns() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Sends an NMI to the processor with local APIC id `apic_id`.
pub(crate) fn send_nmi(apic_id: u32) -> Result<(), &'static str> {
    send_ipi(apic_id, 0x0000_4400) // NMI delivery, assert, physical destination
}

/// Vector of the local APIC timer.
pub(crate) const TIMER_VECTOR: u8 = 0xf0;
/// Vector of the "look at your run queue" IPI.
pub(crate) const KICK_VECTOR: u8 = 0xf1;
/// Vector of the local APIC's spurious interrupts (never acknowledged).
pub(crate) const SPURIOUS_VECTOR: u8 = 0xff;

const TPR: u64 = 0x80;
const EOI: u64 = 0xb0;
const LDR: u64 = 0xd0;
const DFR: u64 = 0xe0;
const SVR: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const LVT_LINT0: u64 = 0x350;
const TIMER_INITIAL: u64 = 0x380;
const TIMER_CURRENT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;

/// Enables this processor's local APIC (spurious vector, all priorities)
/// and starts its timer, periodic at `hz`, measured against the TSC
/// clock. Returns the timer's count per period.
pub(crate) fn start_local_timer(hz: u64) -> Result<u32, &'static str> {
    let lapic = window()?;
    let revoked = |_| "the local APIC window was revoked";
    lapic.write::<u32>(TPR, 0).map_err(revoked)?;
    lapic.write::<u32>(SVR, 0x100 | u32::from(SPURIOUS_VECTOR)).map_err(revoked)?;
    lapic.write::<u32>(TIMER_DIVIDE, 0b1011).map_err(revoked)?; // divide by 1
    // One shot, masked, from the top: how far it counts in 10 ms.
    lapic.write::<u32>(LVT_TIMER, 1 << 16 | u32::from(TIMER_VECTOR)).map_err(revoked)?;
    lapic.write::<u32>(TIMER_INITIAL, u32::MAX).map_err(revoked)?;
    // Each read of the count between two TSC readings, the tightest of
    // three (`Bracketed`: red team: one read after the wait was skewed
    // by a stall before it).
    let count = || Bracketed::tightest_of_three(|| lapic.read::<u32>(TIMER_CURRENT));
    let first = count();
    let started = crate::time::tsc_to_ns(first.mid());
    while crate::time::tsc_to_ns(super::rdtsc()).saturating_sub(started) < 10_000_000 {
        core::hint::spin_loop();
    }
    let last = count();
    let elapsed = crate::time::tsc_to_ns(last.mid().saturating_sub(first.mid())).max(1);
    let counted = first.value.map_err(revoked)?.saturating_sub(last.value.map_err(revoked)?);
    let per_10ms = u64::try_from(u128::from(counted) * 10_000_000 / u128::from(elapsed)).unwrap_or(u64::MAX);
    if per_10ms == 0 {
        return Err("the local APIC timer does not count");
    }
    let per_period = (per_10ms * 100 / hz.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
    lapic.write::<u32>(LVT_TIMER, 1 << 17 | u32::from(TIMER_VECTOR)).map_err(revoked)?; // periodic, unmasked
    lapic.write::<u32>(TIMER_INITIAL, per_period).map_err(revoked)?;
    // Flat logical model: this processor takes the watchdog NMIs.
    lapic.write::<u32>(DFR, u32::MAX).map_err(revoked)?;
    take_watchdog_nmi(lapic, true);
    Ok(per_period)
}

/// The flat logical id of processor `index`: one bit of eight, so only
/// the first eight processors have one (the boot processor forwards the
/// NMI to the others: [`forward_watchdog_nmi`]).
fn logical_bit(index: usize) -> u32 {
    if index < 8 { 1 << index } else { 0 }
}

/// Every processor a logical destination may name (the watchdog NMI's
/// destination; each processor opts in through its logical id).
pub(crate) const ALL_LOGICAL: u8 = 0xff;
/// Processors the PIT's NMI reaches through a flat logical id.
pub(crate) const LOGICAL_PROCESSORS: usize = 8;

/// Sets this processor's logical id (`on`) or clears it: the PIT's NMIs
/// go to every processor with a logical id (`ioapic::route_pit_as_nmi`).
fn take_watchdog_nmi(lapic: &IoMem, on: bool) {
    let cpu = crate::percpu::this_cpu();
    cpu.watchdog_nmi.store(on, core::sync::atomic::Ordering::SeqCst);
    let bit = if on { logical_bit(cpu.index()) } else { 0 };
    let _ = lapic.write::<u32>(LDR, bit << 24);
}

/// When the watchdog's NMI was last forwarded (ns since boot).
static FORWARDED_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Sends the watchdog's NMI, by IPI, at most every 10 ms, to every online
/// processor (never this one) that takes it now (busy) and that the PIT's
/// NMI cannot reach: past the eighth (no flat logical id) with the I/O
/// APIC, every one but the boot processor with the PICs. Called from the
/// boot processor's NMIs (which arrive with interrupts off too, so a
/// boot processor spinning for a lock held by a stuck cell's caller still
/// forwards) and from its tick (for machines whose PIT sends no NMI).
/// Safe inside an NMI that interrupted [`send_ipi`] on this processor
/// between its two register writes: it waits for the pending IPI and
/// puts the destination half back.
pub(crate) fn forward_watchdog_nmi() {
    use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};
    let now = crate::time::now_ns();
    let last = FORWARDED_NS.load(Relaxed);
    if now.saturating_sub(last) < 10_000_000 || FORWARDED_NS.compare_exchange(last, now, AcqRel, Relaxed).is_err() {
        return;
    }
    let first = match crate::irq::controller() {
        crate::irq::Controller::IoApic => LOGICAL_PROCESSORS,
        crate::irq::Controller::Pic => 1,
    };
    let here = crate::percpu::this_cpu().index();
    // The local APIC ids of the processors to send it to.
    let targets = || {
        (first.max(1)..crate::percpu::MAX_CPUS)
            .filter(move |&index| index != here)
            .filter_map(crate::percpu::block)
            .filter(|b| b.online.load(Acquire) && b.watchdog_nmi.load(SeqCst))
            .map(|b| b.apic_id.load(Relaxed))
            .filter(|&id| id <= 0xfe)
    };
    // Usually none (at most eight processors): the ICR is not touched.
    if targets().next().is_none() {
        return;
    }
    let Ok(lapic) = window() else { return };
    crate::arch::without_interrupts(|| {
        wait_sent(lapic);
        let saved = lapic.read::<u32>(ICR_HIGH).unwrap_or(0);
        for id in targets() {
            let _ = lapic.write::<u32>(ICR_HIGH, id << 24);
            let _ = lapic.write::<u32>(ICR_LOW, 0x0000_4400); // NMI, assert, physical
            wait_sent(lapic);
        }
        let _ = lapic.write::<u32>(ICR_HIGH, saved);
    });
}

/// Stops (`true`) or restarts this processor's periodic local timer by
/// its LVT mask bit; the count runs on meanwhile, so a restarted timer
/// keeps its period. A stopped processor also leaves the watchdog NMI's
/// destinations (it runs no cell code while it halts). Only on a
/// processor other than the boot processor (whose ticks keep the
/// kernel's time) whose timer runs ([`start_local_timer`]); a no-op
/// elsewhere.
pub(crate) fn mask_local_timer(masked: bool) {
    let cpu = crate::percpu::this_cpu();
    if cpu.index() == 0 || !cpu.local_timer.load(core::sync::atomic::Ordering::Acquire) {
        return;
    }
    if let Ok(lapic) = window() {
        let _ = lapic.write::<u32>(LVT_TIMER, u32::from(masked) << 16 | 1 << 17 | u32::from(TIMER_VECTOR));
        take_watchdog_nmi(lapic, !masked);
    }
}

/// Masks this processor's LINT0, where the 8259 PICs deliver in
/// virtual-wire mode (once the I/O APIC delivers the legacy lines).
pub(crate) fn mask_lint0() {
    if let Ok(lapic) = window()
        && let Ok(lint0) = lapic.read::<u32>(LVT_LINT0)
    {
        let _ = lapic.write::<u32>(LVT_LINT0, lint0 | 1 << 16);
    }
}

/// Whether the boot processor's local APIC takes the kick.
static BOOT_KICKABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Software-enables the boot processor's local APIC (spurious vector, all
/// priorities) without a timer yet (`time::start_timer` starts it, or,
/// without an I/O APIC, the PIT ticks through the PICs: LINT0 in
/// virtual-wire mode, as the firmware left it; enabling changes no LVT
/// entry), and it now takes the kick, so a task queued there by another
/// processor runs at once instead of at the next tick. Call once, on the
/// boot processor, after [`init`].
pub(crate) fn enable_boot_processor() -> Result<(), &'static str> {
    let lapic = window()?;
    let revoked = |_| "the local APIC window was revoked";
    lapic.write::<u32>(TPR, 0).map_err(revoked)?;
    lapic.write::<u32>(SVR, 0x100 | u32::from(SPURIOUS_VECTOR)).map_err(revoked)?;
    // Flat logical model: the boot processor takes the watchdog NMIs.
    lapic.write::<u32>(DFR, u32::MAX).map_err(revoked)?;
    take_watchdog_nmi(lapic, true);
    BOOT_KICKABLE.store(true, core::sync::atomic::Ordering::Release);
    Ok(())
}

/// True once [`enable_boot_processor`] has run.
pub(crate) fn boot_processor_kickable() -> bool {
    BOOT_KICKABLE.load(core::sync::atomic::Ordering::Acquire)
}

/// Acknowledges the interrupt this processor's local APIC delivered.
pub(crate) fn end_of_interrupt() {
    if let Ok(lapic) = window() {
        let _ = lapic.write::<u32>(EOI, 0);
    }
}

/// Sends processor `apic_id` the kick IPI (a fixed interrupt).
pub(crate) fn send_kick(apic_id: u32) -> Result<(), &'static str> {
    send_ipi(apic_id, 0x0000_4000 | u32::from(KICK_VECTOR)) // fixed, assert, physical
}
