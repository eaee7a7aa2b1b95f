//! Registration of handlers for the legacy IRQ lines (0..16).
//!
//! Handlers are plain functions, called with interrupts disabled; the base
//! acknowledges the interrupt controller after the handler returns. Lines
//! the base itself uses (0 timer, 2 cascade, 4 console) are refused.
//!
//! The lines arrive through the I/O APIC ([`Controller::IoApic`]), each at
//! the processor it is sent to ([`set_affinity`]; the boot processor until
//! then), or, on machines without one and with `noapic` on the command
//! line, through the 8259 PICs to the boot processor.

use crate::arch::{ioapic, lapic, pic};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

/// What delivers the legacy lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// The two 8259 PICs, to the boot processor.
    Pic,
    /// The I/O APIC, to any processor.
    IoApic,
}

static IOAPIC_MODE: AtomicBool = AtomicBool::new(false);

/// What delivers the legacy lines on this machine.
pub fn controller() -> Controller {
    if IOAPIC_MODE.load(Ordering::Acquire) { Controller::IoApic } else { Controller::Pic }
}

/// Chooses the interrupt controller, once, at boot, before any line is
/// registered and before the other processors start: the I/O APIC when
/// it answers and the boot processor's local APIC is on (`lapic_on`),
/// unless `noapic`. The PICs are then masked whole and the local APIC's
/// LINT0 (where they deliver) too, so every line has one way in. With
/// `noapic` the I/O APIC (when it answers) still sends the cell
/// watchdog's NMI, and nothing else.
pub(crate) fn init_controller(noapic: bool, lapic_on: bool) -> Controller {
    let chips = ioapic::init();
    match chips {
        Ok(_) if noapic => log::info!("interrupts: through the 8259 PICs (noapic)"),
        Ok(_) if lapic_on => {
            pic::disable();
            lapic::mask_lint0();
            IOAPIC_MODE.store(true, Ordering::Release);
            return Controller::IoApic;
        }
        Ok(_) => log::warn!("interrupts: the local APIC is off; through the 8259 PICs"),
        Err(why) => log::warn!("interrupts: {why}; through the 8259 PICs"),
    }
    Controller::Pic
}

fn mask_line(line: u8) {
    if IOAPIC_MODE.load(Ordering::Acquire) { ioapic::set_masked(line, true) } else { pic::mask(line) }
}

fn unmask_line(line: u8) {
    if IOAPIC_MODE.load(Ordering::Acquire) { ioapic::set_masked(line, false) } else { pic::unmask(line) }
}

/// Number of legacy IRQ lines.
pub const IRQ_LINES: u8 = 16;
const BASE_LINES: [u8; 3] = [0, 2, 4];

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqError {
    /// The line number is not 0..16.
    InvalidLine(u8),
    /// The trusted base owns this line.
    Reserved(u8),
    /// Another handler is registered on this line.
    Busy(u8),
    /// No handler is registered on this line.
    NotRegistered(u8),
    /// The line cannot be sent to that processor (no I/O APIC, no pin for
    /// the line, or the processor is not online).
    NoRoute(u8),
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::InvalidLine(l) => write!(f, "IRQ {l} does not exist (lines are 0..16)"),
            IrqError::Reserved(l) => write!(f, "IRQ {l} is used by the trusted base"),
            IrqError::Busy(l) => write!(f, "IRQ {l} already has a handler"),
            IrqError::NotRegistered(l) => write!(f, "IRQ {l} has no handler"),
            IrqError::NoRoute(l) => write!(f, "IRQ {l} cannot be sent to that processor"),
        }
    }
}

type HandlerTable = [Option<fn()>; IRQ_LINES as usize];

static HANDLERS: crate::sync::BaseLock<HandlerTable> = crate::sync::BaseLock::new([None; IRQ_LINES as usize]);
/// Lines registered with [`register_oneshot`] (bit per line).
static ONESHOT: AtomicU16 = AtomicU16::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Installs `handler` on `line` (one-shot: masked at each firing until
/// [`unmask`]) and unmasks the line.
fn install(line: u8, handler: fn(), oneshot: bool) -> Result<(), IrqError> {
    let mut handlers = HANDLERS.lock();
    let slot = handlers.get_mut(usize::from(line)).ok_or(IrqError::InvalidLine(line))?;
    if slot.is_some() {
        return Err(IrqError::Busy(line));
    }
    *slot = Some(handler);
    if oneshot {
        ONESHOT.fetch_or(1 << line, Ordering::SeqCst);
    }
    unmask_line(line);
    Ok(())
}

/// Refuses lines that do not exist and the base's own.
fn open_line(line: u8) -> Result<(), IrqError> {
    if line >= IRQ_LINES {
        return Err(IrqError::InvalidLine(line));
    }
    if BASE_LINES.contains(&line) {
        return Err(IrqError::Reserved(line));
    }
    Ok(())
}

/// Calls `handler` whenever IRQ `line` fires, and unmasks the line.
pub fn register(line: u8, handler: fn()) -> Result<(), IrqError> {
    open_line(line)?;
    install(line, handler, false)
}

/// Like [`register`], for a level-triggered line (a PCI function's
/// interrupt, as the firmware routed it) whose device is quieted later,
/// by a task (reading its status register), not by `handler`: the line is
/// masked each time it fires, before `handler` runs, and stays masked
/// until [`unmask`]. `handler` typically wakes that task.
pub fn register_oneshot(line: u8, handler: fn()) -> Result<(), IrqError> {
    open_line(line)?;
    install(line, handler, true)
}

/// Lets a line registered with [`register_oneshot`] fire again (a no-op
/// while it is not masked).
pub fn unmask(line: u8) -> Result<(), IrqError> {
    if line >= IRQ_LINES {
        return Err(IrqError::InvalidLine(line));
    }
    let handlers = HANDLERS.lock();
    if handlers.get(usize::from(line)).copied().flatten().is_none() || ONESHOT.load(Ordering::SeqCst) & (1 << line) == 0 {
        return Err(IrqError::NotRegistered(line));
    }
    unmask_line(line);
    Ok(())
}

/// Masks IRQ `line` and removes its handler.
pub fn unregister(line: u8) -> Result<(), IrqError> {
    open_line(line)?;
    let mut handlers = HANDLERS.lock();
    let slot = handlers.get_mut(usize::from(line)).ok_or(IrqError::InvalidLine(line))?;
    if slot.take().is_none() {
        return Err(IrqError::NotRegistered(line));
    }
    ONESHOT.fetch_and(!(1 << line), Ordering::SeqCst);
    mask_line(line);
    // The next handler starts on the boot processor again.
    if IOAPIC_MODE.load(Ordering::Acquire) {
        let _ = ioapic::set_destination(line, boot_apic_id());
    }
    Ok(())
}

fn boot_apic_id() -> u32 {
    crate::cpu::topology().boot_apic_id
}

/// Sends `line` to processor `cpu` (an index, as `cpu::current_index`):
/// its handler runs there from the next interrupt on. Only with the I/O
/// APIC ([`controller`]) and for a line with a handler that is not the
/// base's; the processor must be online.
pub fn set_affinity(line: u8, cpu: usize) -> Result<(), IrqError> {
    open_line(line)?;
    let handlers = HANDLERS.lock();
    if handlers.get(usize::from(line)).copied().flatten().is_none() {
        return Err(IrqError::NotRegistered(line));
    }
    let block = crate::percpu::block(cpu).ok_or(IrqError::NoRoute(line))?;
    let online = cpu == 0 || block.online.load(Ordering::Acquire);
    if !IOAPIC_MODE.load(Ordering::Acquire) || !online {
        return Err(IrqError::NoRoute(line));
    }
    ioapic::set_destination(line, block.apic_id.load(Ordering::Relaxed)).map_err(|_| IrqError::NoRoute(line))
}

/// Registration for the base's own lines.
pub(crate) fn register_base(line: u8, handler: fn()) -> Result<(), IrqError> {
    install(line, handler, false)
}

/// Whether `line` is level-triggered: a PCI line as the firmware tables
/// describe it (with the I/O APIC; false through the PICs, where the
/// base does not read the trigger registers).
pub fn level_triggered(line: u8) -> bool {
    IOAPIC_MODE.load(Ordering::Acquire) && ioapic::level_triggered(line)
}

/// Interrupts taken on `line` since boot, on every processor.
pub fn count(line: u8) -> u64 {
    (0..crate::percpu::MAX_CPUS).map(|cpu| count_on(line, cpu)).sum()
}

/// Interrupts taken on `line` since boot by processor `cpu`.
pub fn count_on(line: u8, cpu: usize) -> u64 {
    crate::percpu::block(cpu).and_then(|b| b.lines.get(usize::from(line))).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Spurious interrupts seen since boot.
pub fn spurious_count() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

/// Called from the trap dispatcher for vectors 32..48.
pub(crate) fn dispatch(line: u8) {
    let depth = &crate::percpu::this_cpu().irq_depth;
    depth.fetch_add(1, Ordering::Relaxed);
    dispatch_line(line);
    depth.fetch_sub(1, Ordering::Relaxed);
}

/// True inside an interrupt handler (a tick callback, say), where tasks
/// cannot switch or block.
pub fn in_interrupt() -> bool {
    depth() > 0
}

/// How many interrupt handlers are running on this processor (0 outside
/// interrupts).
#[inline]
pub(crate) fn depth() -> u64 {
    crate::percpu::this_cpu().irq_depth.load(Ordering::Relaxed)
}

/// Called for the local APIC's vectors (48..256): the local timer runs
/// the per-processor tick callbacks, a kick only wakes the processor.
/// Returns true for a timer tick. Anything else is counted as spurious.
pub(crate) fn dispatch_local(vector: u8) -> bool {
    let depth = &crate::percpu::this_cpu().irq_depth;
    depth.fetch_add(1, Ordering::Relaxed);
    let tick = match vector {
        lapic::TIMER_VECTOR => {
            let cpu = crate::percpu::this_cpu();
            cpu.local_ticks.fetch_add(1, Ordering::Relaxed);
            if cpu.index() == 0 {
                crate::time::boot_tick(); // the kernel's clock and timers
            } else {
                crate::time::local_tick();
            }
            lapic::end_of_interrupt();
            true
        }
        lapic::KICK_VECTOR => {
            crate::percpu::this_cpu().kicks.fetch_add(1, Ordering::Relaxed);
            lapic::end_of_interrupt();
            false
        }
        // The APIC's spurious vector needs no acknowledgement; any other
        // vector has no source (nothing is routed there).
        _ => {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    depth.fetch_sub(1, Ordering::Relaxed);
    tick
}

fn dispatch_line(line: u8) {
    let ioapic_mode = IOAPIC_MODE.load(Ordering::Acquire);
    if !ioapic_mode && pic::is_spurious(line) {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        if line == 15 {
            pic::end_of_interrupt(2); // the master still saw the cascade
        }
        return;
    }
    if let Some(counter) = crate::percpu::this_cpu().lines.get(usize::from(line)) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let handler = {
        let handlers = HANDLERS.lock();
        if ONESHOT.load(Ordering::SeqCst) & (1 << line) != 0 {
            mask_line(line); // until its task calls `unmask`
        }
        handlers.get(usize::from(line)).copied().flatten()
    };
    if let Some(handler) = handler {
        handler();
    }
    if ioapic_mode {
        // A level-triggered line's pin waits for this (the local APIC
        // passes it on to the I/O APIC) before it sends again.
        lapic::end_of_interrupt();
    } else {
        pic::end_of_interrupt(line);
    }
}
