//! The 8254 programmable interval timer: the periodic tick (channel 0) and a
//! reference for calibrating the TSC (channel 2, gated through port 0x61).

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

/// Busy-waits about `ms` milliseconds (at most 50) on channel 2 and returns
/// the TSC ticks that elapsed, for calibration. Interrupts are not needed.
pub fn measure_tsc(ms: u64) -> u64 {
    let count = (FREQUENCY * ms.min(50) / 1000) as u16;
    // Gate on, speaker off.
    write(GATE, (read(GATE) & !0x02) | 0x01);
    write(COMMAND, 0xb0); // channel 2, lobyte/hibyte, mode 0 (one-shot)
    write(CHANNEL2, count as u8);
    write(CHANNEL2, (count >> 8) as u8);
    // Restart the count: drop and raise the gate.
    let gate = read(GATE);
    write(GATE, gate & !0x01);
    write(GATE, gate | 0x01);
    let start = super::rdtsc();
    // OUT2 (bit 5) goes high when the count reaches zero. Bounded so that a
    // broken PIT cannot hang the boot.
    let limit = start.wrapping_add(20_000_000_000);
    while read(GATE) & 0x20 == 0 {
        if super::rdtsc() > limit {
            break;
        }
        core::hint::spin_loop();
    }
    super::rdtsc().wrapping_sub(start)
}
