//! The 8254 programmable interval timer: the periodic tick (channel 0) and a
//! reference for calibrating the TSC (channel 2, gated through port 0x61).

use super::Bracketed;
use x86_64::instructions::port::Port;

/// Input clock of the PIT in Hz.
pub const FREQUENCY: u64 = 1_193_182;
const CHANNEL0: u16 = 0x40;
const CHANNEL2: u16 = 0x42;
const COMMAND: u16 = 0x43;
const GATE: u16 = 0x61;

fn write(port: u16, value: u8) {
    // SAFETY: PIT and gate ports are owned by the base (io::IoPort refuses
    // them); they have no memory side effects.
    unsafe { Port::<u8>::new(port).write(value) }
}

fn read(port: u16) -> u8 {
    // SAFETY: as in `write`.
    unsafe { Port::<u8>::new(port).read() }
}

/// Starts channel 0 as a periodic rate generator at about `hz` interrupts
/// per second (IRQ 0).
pub fn start_periodic(hz: u32) {
    let divisor = (FREQUENCY / u64::from(hz.max(19))).clamp(1, 0xffff) as u16;
    write(COMMAND, 0x34); // channel 0, lobyte/hibyte, mode 2
    write(CHANNEL0, divisor as u8);
    write(CHANNEL0, (divisor >> 8) as u8);
}

/// What a read-back of channel 2 gives.
#[derive(Clone, Copy)]
struct Reading {
    count: u16,
    /// The output is high: the count has reached zero.
    out: bool,
    /// The count written has not been loaded yet (`count` is stale).
    null: bool,
}

/// A read-back of channel 2's count and status (latched together),
/// between two TSC readings, the tightest of three.
fn sample() -> Bracketed<Reading> {
    Bracketed::tightest_of_three(|| {
        write(COMMAND, 0xc8); // read-back: latch count and status of channel 2
        let status = read(CHANNEL2);
        let low = read(CHANNEL2);
        let high = read(CHANNEL2);
        Reading { count: u16::from(low) | u16::from(high) << 8, out: status & 0x80 != 0, null: status & 0x40 != 0 }
    })
}

/// Measures the TSC's frequency against channel 2 (1.19 MHz), in Hz, 0
/// if the PIT does not count. Each end of the window is a count read
/// between two TSC readings, so a stall of the processor (a busy host
/// deschedules an emulated processor for milliseconds) widens that
/// bracket instead of skewing the result: the window grows from 10 ms
/// until both brackets together are under 0.2% of it, or ends at about
/// 50 ms with the best estimate seen. A stall that outlasts the whole
/// count (55 ms) before any estimate starts the count again (red team:
/// one 45 ms stall gave no estimate). Interrupts are not needed; bounded
/// in TSC ticks, so a PIT that never counts cannot hang the boot.
pub fn measure_tsc_hz() -> u64 {
    let limit = super::rdtsc().wrapping_add(20_000_000_000);
    while super::rdtsc() < limit {
        if let Some(hz) = one_window(limit) {
            return hz;
        }
    }
    0
}

/// One count of channel 2 from 0xffff: the best estimate it gave, none
/// if the count ended (or never began) before one was made.
fn one_window(limit: u64) -> Option<u64> {
    // Gate low, speaker off; channel 2 one-shot from the full count; the
    // gate's rise starts it.
    let gate = read(GATE) & !0x03;
    write(GATE, gate);
    write(COMMAND, 0xb0); // channel 2, lobyte/hibyte, mode 0
    write(CHANNEL2, 0xff);
    write(CHANNEL2, 0xff);
    write(GATE, gate | 0x01);
    let mut start = sample();
    while start.value.null && super::rdtsc() < limit {
        start = sample();
    }
    let (min_window, max_window) = (FREQUENCY / 100, FREQUENCY / 20);
    // (estimate, its brackets' share of the window in 1/2^20)
    let mut best: Option<(u64, u64)> = None;
    loop {
        let end = sample();
        if start.value.null || start.value.out || end.value.out || end.before > limit {
            break; // the count reached zero (or never started): past the window
        }
        let elapsed = u64::from(start.value.count.wrapping_sub(end.value.count));
        let tsc = end.mid().saturating_sub(start.mid());
        let slop = start.width() + end.width();
        if elapsed >= min_window && tsc > 0 {
            let hz = u64::try_from(u128::from(tsc) * u128::from(FREQUENCY) / u128::from(elapsed)).unwrap_or(u64::MAX);
            let share = u64::try_from((u128::from(slop) << 20) / u128::from(tsc)).unwrap_or(u64::MAX);
            if best.is_none_or(|(_, s)| share < s) {
                best = Some((hz, share));
            }
            if slop.saturating_mul(500) <= tsc || elapsed >= max_window {
                break;
            }
        }
        core::hint::spin_loop();
    }
    best.map(|(hz, _)| hz)
}
