//! Time: a monotonic clock from the TSC (calibrated against the PIT), the
//! boot processor's periodic timer tick and tick callbacks. The tick is
//! its local APIC timer's when the I/O APIC delivers interrupts (the PIT
//! then only sends the cell watchdog's NMIs, at [`WATCHDOG_NMI_HZ`]), else
//! the PIT's (IRQ 0 through the PICs).

use crate::arch::{self, pit};
use crate::mm::Frame;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 1000;
/// NMIs per second from the PIT for the cell watchdog, when the local
/// APIC timer ticks.
pub const WATCHDOG_NMI_HZ: u32 = 100;
/// Most tick callbacks registered at once.
pub const MAX_TICK_CALLBACKS: usize = 16;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TICKS: AtomicU64 = AtomicU64::new(0);
type CallbackTable = [Option<fn(u64)>; MAX_TICK_CALLBACKS];

static CALLBACKS: crate::sync::BaseLock<CallbackTable> = crate::sync::BaseLock::new([None; MAX_TICK_CALLBACKS]);

/// Errors from the timer API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerError {
    /// All callback slots are taken.
    NoFreeSlot,
    /// The callback is not registered.
    NotRegistered,
}

/// Records the TSC at kernel entry: the zero of [`now`].
pub(crate) fn mark_boot() {
    BOOT_TSC.store(arch::rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency against the PIT. Takes 10 ms on a quiet
/// host, about 50 ms on a busy one ([`pit::measure_tsc_hz`]). Without a
/// PIT that counts, the processor's own word (CPUID leaf 0x15 or 0x16),
/// else 1 GHz, with a warning: the clock's rate is then a guess.
pub(crate) fn calibrate() {
    let measured = pit::measure_tsc_hz();
    let hz = if measured >= 1_000_000 {
        measured
    } else {
        let guess = cpuid_tsc_hz().unwrap_or(1_000_000_000);
        log::warn!("time: the PIT does not count; the TSC is taken to run at {guess} Hz");
        guess
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    // hz >= 10^6, so the multiplier is below 2^43.
    MULT.store(((1_000_000_000u128 << SHIFT) / u128::from(hz)) as u64, Ordering::Relaxed);
    publish_clock();
}

/// The TSC's rate as the processor states it: leaf 0x15 (crystal and
/// ratio), else leaf 0x16's base frequency (MHz).
fn cpuid_tsc_hz() -> Option<u64> {
    use core::arch::x86_64::__cpuid;
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let l = __cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax)).filter(|&hz| hz >= 1_000_000);
        }
    }
    if max >= 0x16 {
        let mhz = u64::from(__cpuid(0x16).eax & 0xffff);
        if mhz != 0 {
            return Some(mhz * 1_000_000);
        }
    }
    None
}

/// TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds per TSC tick, as a fraction `MULT / 2^SHIFT` (0 before
/// calibration): the one conversion both the kernel and the vDSO use
/// (through the clock page), so their clocks agree to the nanosecond.
static MULT: AtomicU64 = AtomicU64::new(0);
const SHIFT: u32 = 32;

/// Converts a TSC delta to nanoseconds (0 before calibration).
pub fn tsc_to_ns(delta: u64) -> u64 {
    ns_from_tsc(delta)
}

#[inline]
fn ns_from_tsc(delta: u64) -> u64 {
    let ns = (u128::from(delta) * u128::from(MULT.load(Ordering::Relaxed))) >> SHIFT;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Nanoseconds since kernel entry (0 before calibration).
pub fn now_ns() -> u64 {
    now_ns_here()
}

/// [`now_ns`], inlined into the base's own hot paths. The public one
/// stays a call: inlined into a cell, it would read the base's statics
/// directly, and a cell may import only the base's functions.
#[inline]
pub(crate) fn now_ns_here() -> u64 {
    ns_from_tsc(arch::rdtsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Time since kernel entry.
pub fn now() -> Duration {
    Duration::from_nanos(now_ns())
}

/// The TSC value at kernel entry (the TSC counts from machine reset, so this
/// is the time firmware and boot loader took, in TSC ticks).
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// Timer interrupts since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Spins for `duration` (works with interrupts off).
pub fn busy_wait(duration: Duration) {
    let end = now().saturating_add(duration);
    while now() < end {
        core::hint::spin_loop();
    }
}

/// Sleeps for `duration`, halting between timer interrupts.
/// Interrupts must be enabled, or this degrades to [`busy_wait`].
pub fn sleep(duration: Duration) {
    if !arch::interrupts_enabled() {
        return busy_wait(duration);
    }
    let end = now().saturating_add(duration);
    while now() < end {
        arch::wait_for_interrupt();
    }
}

/// Calls `callback(tick)` from the timer interrupt on every tick, with
/// interrupts disabled. Keep it short. Registering the same function twice
/// is allowed; each registration is called.
pub fn on_tick(callback: fn(u64)) -> Result<(), TimerError> {
    let mut slots = CALLBACKS.lock();
    let slot = slots.iter_mut().find(|s| s.is_none()).ok_or(TimerError::NoFreeSlot)?;
    *slot = Some(callback);
    Ok(())
}

/// Removes one registration of `callback`.
pub fn remove_tick_callback(callback: fn(u64)) -> Result<(), TimerError> {
    let mut slots = CALLBACKS.lock();
    let slot = slots
        .iter_mut()
        .find(|s| s.is_some_and(|f| core::ptr::fn_addr_eq(f, callback)))
        .ok_or(TimerError::NotRegistered)?;
    *slot = None;
    Ok(())
}

/// Callbacks of the other processors' local ticks.
type LocalCallbacks = [Option<fn(usize)>; 4];
static LOCAL_CALLBACKS: crate::sync::BaseLock<LocalCallbacks> = crate::sync::BaseLock::new([None; 4]);

/// Calls `callback(cpu)` on every local timer tick of the other
/// processors (`cpu::start_others`; 1 kHz each), in interrupt context.
/// The boot processor's ticks are [`on_tick`]'s.
pub fn on_local_tick(callback: fn(usize)) -> Result<(), TimerError> {
    let mut slots = LOCAL_CALLBACKS.lock();
    let slot = slots.iter_mut().find(|s| s.is_none()).ok_or(TimerError::NoFreeSlot)?;
    *slot = Some(callback);
    Ok(())
}

/// A local timer tick on this processor.
pub(crate) fn local_tick() {
    let index = crate::percpu::this_cpu().index();
    let callbacks = *LOCAL_CALLBACKS.lock();
    for callback in callbacks.iter().flatten() {
        callback(index);
    }
}

/// A tick of the boot processor's local APIC timer.
pub(crate) fn boot_tick() {
    timer_interrupt();
}

fn timer_interrupt() {
    let tick = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    // The watchdog's NMI for the busy processors the PIT's cannot reach
    // (also forwarded from the boot processor's NMIs, where there are).
    if tick.is_multiple_of(u64::from(TICK_HZ / WATCHDOG_NMI_HZ)) {
        arch::lapic::forward_watchdog_nmi();
    }
    // Copy the table so that a callback may (un)register without deadlock.
    let callbacks = *CALLBACKS.lock();
    for callback in callbacks.iter().flatten() {
        callback(tick);
    }
}

/// Starts the boot processor's periodic tick, and the PIT's watchdog
/// NMIs where the I/O APIC can send them.
pub(crate) fn start_timer(controller: crate::irq::Controller) {
    use crate::arch::{ioapic, lapic};
    if controller == crate::irq::Controller::IoApic {
        match lapic::start_local_timer(u64::from(TICK_HZ)) {
            Ok(_) => {
                crate::percpu::this_cpu().local_timer.store(true, Ordering::Release);
                pit::start_periodic(WATCHDOG_NMI_HZ);
                if let Err(why) = ioapic::route_pit_as_nmi(lapic::ALL_LOGICAL) {
                    log::warn!("cell watchdog: no NMI ({why}); a cell spinning with interrupts off cannot be stopped");
                }
                return;
            }
            Err(why) => log::warn!("local APIC timer: {why}; the PIT ticks instead, and the cell watchdog has no NMI"),
        }
    }
    pit::start_periodic(TICK_HZ);
    let _ = crate::irq::register_base(0, timer_interrupt);
    // The same ticks as NMIs to the boot processor alone (logical id 1),
    // where an I/O APIC answers.
    if controller == crate::irq::Controller::Pic
        && let Err(why) = ioapic::route_pit_as_nmi(1)
    {
        log::warn!("cell watchdog: no NMI ({why}); a cell spinning with interrupts off cannot be stopped");
    }
}

/// Unix time (ns) at kernel entry, from the CMOS real-time clock.
static REALTIME_AT_BOOT_NS: AtomicU64 = AtomicU64::new(0);

fn read_rtc(cmos: &crate::io::IoPorts) -> Option<framekernel_logic::calendar::RtcTime> {
    // Bit 7 of the index keeps NMIs masked while selecting a register.
    let reg = |index: u8| -> Option<u8> {
        cmos.write::<u8>(0, 0x80 | index).ok()?;
        cmos.read::<u8>(1).ok()
    };
    // Wait (bounded) until no update is in progress, then read twice until
    // two readings agree, so no field is taken mid-update.
    let snapshot = || -> Option<[u8; 6]> {
        for _ in 0..100_000 {
            if reg(0x0a)? & 0x80 == 0 {
                break;
            }
        }
        Some([reg(0x00)?, reg(0x02)?, reg(0x04)?, reg(0x07)?, reg(0x08)?, reg(0x09)?])
    };
    let mut raw = snapshot()?;
    for _ in 0..5 {
        let again = snapshot()?;
        if again == raw {
            break;
        }
        raw = again;
    }
    let status_b = reg(0x0b)?;
    let binary = status_b & 0x04 != 0;
    let h24 = status_b & 0x02 != 0;
    let decode = |v: u8| if binary { u32::from(v) } else { framekernel_logic::calendar::from_bcd(v) };
    let [second, minute, hour_raw, day, month, year] = raw;
    let pm = hour_raw & 0x80 != 0;
    let mut hour = decode(hour_raw & 0x7f);
    if !h24 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    Some(framekernel_logic::calendar::RtcTime {
        year: 2000 + decode(year),
        month: decode(month),
        day: decode(day),
        hour,
        minute: decode(minute),
        second: decode(second),
    })
}

/// Reads the real-time clock once at boot. Needs the heap (port claims).
pub(crate) fn read_wall_clock() {
    let Ok(cmos) = crate::io::IoPorts::acquire(0x70, 2) else {
        log::warn!("CMOS clock ports busy: wall-clock time starts at 1970");
        return;
    };
    let reading = arch::without_interrupts(|| read_rtc(&cmos));
    match reading.and_then(framekernel_logic::calendar::unix_seconds) {
        Some(seconds) => {
            let base = seconds.saturating_mul(1_000_000_000).saturating_sub(now_ns());
            REALTIME_AT_BOOT_NS.store(base, Ordering::Relaxed);
            publish_clock();
        }
        None => log::warn!("CMOS clock reads an impossible date ({reading:?}): wall-clock time starts at 1970"),
    }
}

/// Nanoseconds since the Unix epoch (wall-clock time).
pub fn realtime_ns() -> u64 {
    REALTIME_AT_BOOT_NS.load(Ordering::Relaxed).saturating_add(now_ns())
}

/// Sets the wall clock to `ns` since the Unix epoch (`clock_settime`,
/// `settimeofday`): only the offset from the boot clock moves, so
/// monotonic time and every timer deadline are unaffected.
pub fn set_realtime_ns(ns: u64) {
    REALTIME_AT_BOOT_NS.store(ns.saturating_sub(now_ns()), Ordering::Relaxed);
    publish_clock();
}

/// The clock page (see [`clock_page`]), once made.
static CLOCK_PAGE: crate::sync::BaseLock<Option<Arc<Frame>>> = crate::sync::BaseLock::new(None);
/// The page's sequence number: odd while it is being written.
static CLOCK_SEQ: AtomicU32 = AtomicU32::new(0);
/// Set when every processor's `IA32_TSC_AUX` holds its number (`rdtscp`
/// tells user code where it runs).
static CPU_IN_TSC_AUX: AtomicBool = AtomicBool::new(false);

/// Records that each processor's `IA32_TSC_AUX` holds its index.
pub(crate) fn set_cpu_in_tsc_aux(on: bool) {
    CPU_IN_TSC_AUX.store(on, Ordering::Relaxed);
    publish_clock();
}

/// The clock page: one frame of clock data for user mode (the vDSO's
/// `[vvar]` page), which the base rewrites whenever the clock changes
/// (calibration, `set_realtime_ns`). Made on first use; every call
/// returns the same frame. Its layout (little endian):
///
/// | offset | field |
/// |---|---|
/// | 0 | `u32` sequence: odd while being written; read again after the fields, a changed value means read again |
/// | 4 | `u32` flags: 1 the clock is calibrated, 2 `rdtscp` gives the processor number (`IA32_TSC_AUX`) |
/// | 8 | `u64` TSC at the zero of the monotonic clock |
/// | 16 | `u64` multiplier and 24 `u64` shift: ns since the zero = `((tsc - zero) * mult) >> shift` (128-bit product) |
/// | 32 | `u64` Unix time in ns at the zero (the realtime clock adds it) |
///
/// The kernel never reads the page: whatever a holder of the frame writes
/// into it changes only what user programs that map it compute.
pub fn clock_page() -> Result<Arc<Frame>, crate::mm::OutOfMemory> {
    let mut page = CLOCK_PAGE.lock();
    if let Some(frame) = page.as_ref() {
        return Ok(frame.clone());
    }
    let frame = Arc::new(Frame::alloc()?);
    write_clock_page(&frame);
    *page = Some(frame.clone());
    Ok(frame)
}

/// Rewrites the clock page, if there is one, with the current clock.
fn publish_clock() {
    if let Some(frame) = CLOCK_PAGE.lock().as_ref() {
        write_clock_page(frame);
    }
}

/// Writes the clock into `frame` (the caller holds `CLOCK_PAGE`'s lock:
/// one writer at a time). Each `write_shared` is one string store, and
/// x86 keeps the stores of consecutive string operations in order, so a
/// reader that sees the final even sequence number sees every field.
fn write_clock_page(frame: &Frame) {
    let odd = CLOCK_SEQ.load(Ordering::Relaxed).wrapping_add(1) | 1;
    let mult = MULT.load(Ordering::Relaxed);
    let flags = u32::from(mult != 0) | u32::from(CPU_IN_TSC_AUX.load(Ordering::Relaxed)) << 1;
    let mut fields = [0u8; 36];
    let values = [BOOT_TSC.load(Ordering::Relaxed), mult, u64::from(SHIFT), REALTIME_AT_BOOT_NS.load(Ordering::Relaxed)];
    fields[..4].copy_from_slice(&flags.to_le_bytes());
    for (chunk, value) in fields[4..].chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    let _ = frame.write_shared(0, &odd.to_le_bytes());
    let _ = frame.write_shared(4, &fields);
    let even = odd.wrapping_add(1);
    let _ = frame.write_shared(0, &even.to_le_bytes());
    CLOCK_SEQ.store(even, Ordering::Relaxed);
}
