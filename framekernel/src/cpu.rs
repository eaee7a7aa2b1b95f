//! The machine's processors and interrupt controllers, as the firmware's
//! ACPI MADT lists them, read once at boot.
//!
//! This is what SMP bring-up starts from (the local APIC ids to wake) and
//! where the I/O APIC is. Tessera runs on the boot processor only so far:
//! [`online`] is 1 whatever [`present`] says.

use alloc::vec::Vec;
use framekernel_logic::acpi::{self, AcpiError, FirmwareMemory, IoApic, Override, Processor};

/// What the firmware said, or why it could not be read.
pub struct Topology {
    /// Physical address of the local APICs' registers.
    pub local_apic: u64,
    /// The processors (enabled or not), in the firmware's order.
    pub processors: Vec<Processor>,
    pub io_apics: Vec<IoApic>,
    pub overrides: Vec<Override>,
    /// MADT entries past the kernel's limits.
    pub ignored: usize,
    /// The local APIC id of the processor that booted.
    pub boot_apic_id: u32,
    /// The local APICs run in x2APIC mode (registers in MSRs, not memory).
    pub x2apic: bool,
    /// Why the tables were not read, when they were not (then only the
    /// boot processor is known).
    pub error: Option<AcpiError>,
}

impl Topology {
    /// The boot processor alone, known only by its own registers, and why
    /// the tables said nothing more.
    const fn boot_processor_only(local_apic: u64, boot_apic_id: u32, x2apic: bool, error: AcpiError) -> Self {
        Topology {
            local_apic,
            processors: Vec::new(),
            io_apics: Vec::new(),
            overrides: Vec::new(),
            ignored: 0,
            boot_apic_id,
            x2apic,
            error: Some(error),
        }
    }
}

static TOPOLOGY: spin::Once<Topology> = spin::Once::new();
/// Before boot read the tables: the boot processor alone.
static UNKNOWN: Topology = Topology::boot_processor_only(0xfee0_0000, 0, false, AcpiError::NoRsdp);

/// The topology read at boot.
pub fn topology() -> &'static Topology {
    TOPOLOGY.get().unwrap_or(&UNKNOWN)
}

/// Processors the firmware lists as usable (at least the boot one).
pub fn present() -> usize {
    topology().processors.iter().filter(|p| p.enabled).count().max(1)
}

/// Processors running the kernel's work: the boot processor and those
/// [`start_others`] started.
pub fn online() -> usize {
    1 + (1..crate::percpu::MAX_CPUS).filter(|&i| is_online(i)).count()
}

/// True when processor `index` runs the kernel's work (0 always).
pub fn is_online(index: usize) -> bool {
    index == 0 || crate::percpu::block(index).is_some_and(|b| b.online.load(core::sync::atomic::Ordering::Acquire))
}

/// Starts the parked processors, once: each starts its 1 kHz local timer
/// (its ticks go to `time::on_local_tick` callbacks), turns interrupts on
/// and runs `entry(index)` for good on the task it runs then. Returns how
/// many came online (0 when called again).
pub fn start_others(entry: fn(usize) -> !) -> usize {
    crate::arch::smp::start_others(entry)
}

/// Halts this processor until an interrupt, as
/// [`arch::wait_for_interrupt`](crate::arch::wait_for_interrupt) does, with
/// its own periodic timer stopped meanwhile: an idle processor sleeps
/// until something [`kick`]s it (or an NMI or a device interrupt reaches
/// it) instead of waking a thousand times a second. Interrupts are on when
/// it returns, and the timer runs again. The boot processor's ticks go on
/// (the kernel's clock and timers run on them).
/// Inside an interrupt handler it returns at once (as `wait_for_interrupt`).
pub fn idle_wait() {
    if crate::irq::in_interrupt() {
        return;
    }
    // Interrupts off from stopping the timer to the halt: a kick in
    // between is taken by the halt (`sti; hlt`), not lost.
    x86_64::instructions::interrupts::disable();
    crate::arch::lapic::mask_local_timer(true);
    crate::arch::wait_for_interrupt();
    // Interrupts are on again: restart the timer with them off, so that
    // no interrupt handler runs in between with it stopped.
    x86_64::instructions::interrupts::disable();
    crate::arch::lapic::mask_local_timer(false);
    x86_64::instructions::interrupts::enable();
}

/// What interrupted processor `index` since it started; `None` for an
/// index past the last processor the kernel set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterruptCounts {
    /// Ticks of its local APIC timer (Linux's `LOC`); 0 on the boot
    /// processor when its ticks are the PIT's (IRQ 0, without an I/O APIC).
    pub local_timer: u64,
    /// Kicks from other processors (Linux's `RES`, rescheduling).
    pub kicks: u64,
    /// NMIs: TLB shootdowns, barriers, the cell watchdog.
    pub nmis: u64,
    /// TLB shootdowns (and barriers) it carried out (Linux's `TLB`).
    pub tlb_shootdowns: u64,
}

/// How often processor `index` was interrupted, by kind.
pub fn interrupt_counts(index: usize) -> Option<InterruptCounts> {
    use core::sync::atomic::Ordering::Relaxed;
    let block = crate::percpu::block(index).filter(|b| index == 0 || b.ready.load(core::sync::atomic::Ordering::Acquire))?;
    Some(InterruptCounts {
        local_timer: block.local_ticks.load(Relaxed),
        kicks: block.kicks.load(Relaxed),
        nmis: block.nmis.load(Relaxed),
        tlb_shootdowns: block.shootdowns.load(Relaxed),
    })
}

/// Interrupts processor `index` so that it looks at its work again (it
/// leaves `wait_for_interrupt` or [`idle_wait`]); false when it is not online.
pub fn kick(index: usize) -> bool {
    let reachable = |b: &crate::percpu::PerCpu| {
        if index == 0 { crate::arch::lapic::boot_processor_kickable() } else { b.online.load(core::sync::atomic::Ordering::Acquire) }
    };
    match crate::percpu::block(index).filter(|b| reachable(b)) {
        Some(block) => crate::arch::lapic::send_kick(block.apic_id.load(core::sync::atomic::Ordering::Relaxed)).is_ok(),
        None => false,
    }
}


/// Returns once every other set-up processor has taken an interrupt (an
/// NMI, which serializes it and orders its memory accesses):
/// `membarrier(MEMBARRIER_CMD_GLOBAL)`.
pub fn barrier_others() {
    crate::mm::tlb::shootdown(crate::mm::tlb::other_processors(), 0, 0, 0);
}

/// The index of the processor running the caller (0: the boot processor;
/// the others in the order they were started).
pub fn current_index() -> usize {
    crate::percpu::this_cpu().index()
}

/// Most processors the base uses.
pub const MAX_CPUS: usize = crate::percpu::MAX_CPUS;

/// Other processors that were started, set themselves up (per-CPU
/// block, descriptor tables, system-call registers) and are parked
/// (halted, waiting for work).
pub fn parked() -> usize {
    crate::arch::smp::ready()
}

/// This processor's local APIC id (CPUID leaf 1).
fn boot_apic_id() -> u32 {
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// True when the local APIC runs in x2APIC mode (IA32_APIC_BASE bit 10).
fn x2apic_mode() -> bool {
    apic_base_msr() & (1 << 10) != 0
}

/// IA32_APIC_BASE, or 0 without a local APIC.
fn apic_base_msr() -> u64 {
    // CPUID.1:EDX bit 9: the processor has a local APIC (and the MSR).
    if core::arch::x86_64::__cpuid(1).edx & (1 << 9) == 0 {
        return 0;
    }
    // SAFETY: IA32_APIC_BASE (0x1b) exists on every processor with a local
    // APIC (checked above); reading it has no side effects.
    unsafe { x86_64::registers::model_specific::Msr::new(0x1b).read() }
}

/// The physical address of this processor's local APIC registers
/// (IA32_APIC_BASE), or the architectural default without an APIC MSR.
fn local_apic_base() -> u64 {
    match apic_base_msr() & 0x000f_ffff_ffff_f000 {
        0 => 0xfee0_0000,
        base => base,
    }
}

/// Reads the MADT (once; later calls do nothing). `hint`: the RSDP the
/// boot loader gave.
pub(crate) fn init(hint: Option<acpi::Rsdp>) {
    TOPOLOGY.call_once(|| {
        let boot_apic_id = boot_apic_id();
        let memory = Firmware;
        let found = hint.or_else(|| {
            let mut area = Vec::new();
            area.try_reserve_exact(BIOS_AREA.end - BIOS_AREA.start).ok()?;
            area.resize(BIOS_AREA.end - BIOS_AREA.start, 0);
            if !memory.read(BIOS_AREA.start as u64, &mut area) {
                return None;
            }
            acpi::find_rsdp(&area, BIOS_AREA.start as u64).map(|(_, rsdp)| rsdp)
        });
        let madt = found.ok_or(AcpiError::NoRsdp).and_then(|rsdp| acpi::read_madt(&memory, &rsdp));
        match madt {
            Ok(mut m) => {
                // The processor running this is there, whatever the table
                // says.
                if !m.processors.iter().any(|p| p.enabled && p.apic_id == boot_apic_id) {
                    log::warn!("acpi: the MADT does not list the boot processor (local APIC id {boot_apic_id}); counted anyway");
                    m.processors.retain(|p| p.apic_id != boot_apic_id);
                    m.processors.insert(0, Processor { apic_id: boot_apic_id, uid: 0, enabled: true, online_capable: false });
                }
                // The local APIC's address is the processor's own register
                // (IA32_APIC_BASE), not the table's.
                let own = local_apic_base();
                if own != m.local_apic {
                    log::warn!("acpi: the MADT puts the local APIC at {:#x}, the processor at {own:#x}; using the processor's", m.local_apic);
                    m.local_apic = own;
                }
                // An I/O APIC window in the local APICs' range (MSI writes
                // there interrupt processors) is refused.
                m.io_apics.retain(|a| {
                    let bad = (0xfee0_0000..0xff00_0000).contains(&u64::from(a.address)) || a.address % 1024 != 0;
                    if bad {
                        log::warn!("acpi: I/O APIC {} at {:#x} refused (not an I/O APIC window)", a.id, a.address);
                    }
                    !bad
                });
                let enabled = m.processors.iter().filter(|p| p.enabled).count();
                let ids: Vec<u32> = m.processors.iter().filter(|p| p.enabled).map(|p| p.apic_id).collect();
                log::debug!(
                    "acpi: {enabled} processor(s) (local APIC ids {ids:?}, boot {boot_apic_id}), {} I/O APIC(s), {} interrupt override(s); running on 1",
                    m.io_apics.len(),
                    m.overrides.len()
                );
                if m.ignored > 0 {
                    log::warn!("acpi: {} MADT entries past the kernel's limits were ignored", m.ignored);
                }
                Topology {
                    local_apic: m.local_apic,
                    processors: m.processors,
                    io_apics: m.io_apics,
                    overrides: m.overrides,
                    ignored: m.ignored,
                    boot_apic_id,
                    x2apic: x2apic_mode(),
                    error: None,
                }
            }
            Err(e) => {
                log::warn!("acpi: {e}; running on the boot processor only");
                Topology::boot_processor_only(local_apic_base(), boot_apic_id, x2apic_mode(), e)
            }
        }
    });
}

/// Where the RSDP may be, when the boot loader did not say.
const BIOS_AREA: core::ops::Range<usize> = 0xe_0000..0x10_0000;

/// Firmware memory as the tables may be read (see `mm::read_firmware`:
/// never usable RAM).
struct Firmware;

impl FirmwareMemory for Firmware {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        crate::mm::read_firmware(addr, buf)
    }
}
