//! Registration of handlers for the legacy IRQ lines (0..16).
//!
//! Handlers are plain functions, called with interrupts disabled; the base
//! acknowledges the interrupt controller after the handler returns. Lines
//! the base itself uses (0 timer, 2 cascade, 4 console) are refused.

use crate::arch::pic;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

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
}

impl core::fmt::Display for IrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IrqError::InvalidLine(l) => write!(f, "IRQ {l} does not exist (lines are 0..16)"),
            IrqError::Reserved(l) => write!(f, "IRQ {l} is used by the trusted base"),
            IrqError::Busy(l) => write!(f, "IRQ {l} already has a handler"),
            IrqError::NotRegistered(l) => write!(f, "IRQ {l} has no handler"),
        }
    }
}

type HandlerTable = [Option<fn()>; IRQ_LINES as usize];

static HANDLERS: crate::sync::BaseLock<HandlerTable> = crate::sync::BaseLock::new([None; IRQ_LINES as usize]);
/// Lines registered with [`register_oneshot`] (bit per line).
static ONESHOT: AtomicU16 = AtomicU16::new(0);
static COUNTS: [AtomicU64; IRQ_LINES as usize] = [const { AtomicU64::new(0) }; IRQ_LINES as usize];
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
    pic::unmask(line);
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
    pic::unmask(line);
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
    pic::mask(line);
    Ok(())
}

/// Registration for the base's own lines.
pub(crate) fn register_base(line: u8, handler: fn()) -> Result<(), IrqError> {
    install(line, handler, false)
}

/// Interrupts taken on `line` since boot.
pub fn count(line: u8) -> u64 {
    COUNTS.get(usize::from(line)).map_or(0, |c| c.load(Ordering::Relaxed))
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
pub(crate) fn depth() -> u64 {
    crate::percpu::this_cpu().irq_depth.load(Ordering::Relaxed)
}

/// Called for the local APIC's vectors (48..256): the local timer runs
/// the per-processor tick callbacks, a kick only wakes the processor.
/// Returns true for a timer tick. Anything else is counted as spurious.
pub(crate) fn dispatch_local(vector: u8) -> bool {
    use crate::arch::lapic;
    let depth = &crate::percpu::this_cpu().irq_depth;
    depth.fetch_add(1, Ordering::Relaxed);
    let tick = match vector {
        lapic::TIMER_VECTOR => {
            crate::percpu::this_cpu().local_ticks.fetch_add(1, Ordering::Relaxed);
            crate::time::local_tick();
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
    if pic::is_spurious(line) {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        if line == 15 {
            pic::end_of_interrupt(2); // the master still saw the cascade
        }
        return;
    }
    if let Some(counter) = COUNTS.get(usize::from(line)) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let handler = {
        let handlers = HANDLERS.lock();
        if ONESHOT.load(Ordering::SeqCst) & (1 << line) != 0 {
            pic::mask(line); // until its task calls `unmask`
        }
        handlers.get(usize::from(line)).copied().flatten()
    };
    if let Some(handler) = handler {
        handler();
    }
    pic::end_of_interrupt(line);
}
