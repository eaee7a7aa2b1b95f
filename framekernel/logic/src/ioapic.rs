//! I/O APIC routing, as plain values: where a legacy (ISA) line arrives
//! (the MADT's interrupt source overrides), which I/O APIC serves a global
//! system interrupt, and the 64-bit redirection entry that sends it.
//!
//! The MADT comes from firmware and is untrusted: a line whose route is
//! missing or contradictory gets `None`, never a guess that could land on
//! another device's pin.

use crate::acpi::{IoApic, Override};

/// How a legacy line reaches an I/O APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRoute {
    /// The global system interrupt the line arrives on.
    pub gsi: u32,
    /// Level-triggered (else edge).
    pub level: bool,
    /// Active low (else active high).
    pub active_low: bool,
}

/// The route of ISA line `line` (0..16): its override if the MADT has one
/// (MPS flags: polarity in bits 0-1, trigger in bits 2-3, `00` meaning
/// "as the bus says", which for ISA is edge and active high), else the
/// GSI of the same number, unless another line's override already claims
/// that GSI (as IRQ 0 claims GSI 2 on PCs): then the line has no route.
/// Reserved flag values (`10`) and several overrides for one line are
/// refused.
pub fn isa_route(overrides: &[Override], line: u8) -> Option<LineRoute> {
    if line >= 16 {
        return None;
    }
    let mut own = overrides.iter().filter(|o| o.source == line);
    match (own.next(), own.next()) {
        (Some(o), None) => {
            let active_low = match o.flags & 0b11 {
                0b00 | 0b01 => false,
                0b11 => true,
                _ => return None,
            };
            let level = match (o.flags >> 2) & 0b11 {
                0b00 | 0b01 => false,
                0b11 => true,
                _ => return None,
            };
            Some(LineRoute { gsi: o.gsi, level, active_low })
        }
        (None, _) => {
            let taken = overrides.iter().any(|o| o.source != line && o.gsi == u32::from(line));
            (!taken).then_some(LineRoute { gsi: u32::from(line), level: false, active_low: false })
        }
        (Some(_), Some(_)) => None,
    }
}

/// The I/O APIC (index into `io_apics`) that serves `gsi`, and the pin:
/// the one whose range `gsi_base .. gsi_base + pins` holds it. `pins(i)`
/// is I/O APIC `i`'s pin count (from its version register), 0 when it
/// cannot be read. Overlapping ranges are firmware nonsense: refused.
pub fn serving(io_apics: &[IoApic], pins: impl Fn(usize) -> u32, gsi: u32) -> Option<(usize, u32)> {
    let mut found = io_apics
        .iter()
        .enumerate()
        .filter(|&(i, a)| gsi >= a.gsi_base && u64::from(gsi) < u64::from(a.gsi_base) + u64::from(pins(i)));
    match (found.next(), found.next()) {
        (Some((i, a)), None) => Some((i, gsi - a.gsi_base)),
        _ => None,
    }
}

/// How a redirection entry delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A fixed interrupt on `vector` to the local APIC with physical id
    /// `apic_id`.
    Fixed { vector: u8, apic_id: u8 },
    /// A non-maskable interrupt to every local APIC whose logical
    /// (flat-model) id has a bit of `logical_set`.
    NmiToSet { logical_set: u8 },
}

/// The redirection entry (high half in bits 63..32) for `delivery` with
/// `route`'s trigger and polarity, masked or not. An NMI is always sent
/// edge-triggered (the I/O APIC requires it).
pub fn redirection_entry(delivery: Delivery, route: LineRoute, masked: bool) -> u64 {
    let (low, destination) = match delivery {
        Delivery::Fixed { vector, apic_id } => (u32::from(vector) | u32::from(route.level) << 15, apic_id),
        // Delivery mode NMI (0b100), logical destination (bit 11).
        Delivery::NmiToSet { logical_set } => (0b100 << 8 | 1 << 11, logical_set),
    };
    let low = low | u32::from(route.active_low) << 13 | u32::from(masked) << 16;
    u64::from(destination) << 56 | u64::from(low)
}

/// The mask bit of a redirection entry's low half.
pub const MASK_BIT: u32 = 1 << 16;

/// Pin count from an I/O APIC version register value, or `None` when the
/// value is not an I/O APIC's (all ones from an empty bus, a version
/// outside 0x11..=0x2f, which is every I/O APIC's).
pub fn pins_from_version(version: u32) -> Option<u32> {
    let pins = ((version >> 16) & 0xff) + 1;
    (version != u32::MAX && (0x11..=0x2f).contains(&(version & 0xff))).then_some(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(source: u8, gsi: u32, flags: u16) -> Override {
        Override { source, gsi, flags }
    }

    /// QEMU's q35 MADT: IRQ 0 on GSI 2; 5, 9, 10, 11 level, active high.
    fn qemu() -> Vec<Override> {
        let mut v = vec![ov(0, 2, 0)];
        v.extend([5, 9, 10, 11].map(|l| ov(l, u32::from(l), 0b1101)));
        v
    }

    #[test]
    fn qemu_lines_route_as_linux_reads_them() {
        let o = qemu();
        assert_eq!(isa_route(&o, 0), Some(LineRoute { gsi: 2, level: false, active_low: false }));
        assert_eq!(isa_route(&o, 2), None, "GSI 2 belongs to IRQ 0");
        assert_eq!(isa_route(&o, 4), Some(LineRoute { gsi: 4, level: false, active_low: false }));
        assert_eq!(isa_route(&o, 8), Some(LineRoute { gsi: 8, level: false, active_low: false }));
        assert_eq!(isa_route(&o, 11), Some(LineRoute { gsi: 11, level: true, active_low: false }));
        assert_eq!(isa_route(&o, 16), None);
    }

    #[test]
    fn active_low_and_bad_flags() {
        assert_eq!(isa_route(&[ov(9, 20, 0b1111)], 9), Some(LineRoute { gsi: 20, level: true, active_low: true }));
        assert_eq!(isa_route(&[ov(9, 9, 0b0010)], 9), None, "reserved polarity");
        assert_eq!(isa_route(&[ov(9, 9, 0b1000)], 9), None, "reserved trigger");
        assert_eq!(isa_route(&[ov(3, 3, 0), ov(3, 7, 0)], 3), None, "two overrides");
    }

    #[test]
    fn serving_io_apic_by_range() {
        let apics = [
            IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 },
            IoApic { id: 1, address: 0xfec1_0000, gsi_base: 24 },
        ];
        let pins = |_| 24;
        assert_eq!(serving(&apics, pins, 2), Some((0, 2)));
        assert_eq!(serving(&apics, pins, 30), Some((1, 6)));
        assert_eq!(serving(&apics, pins, 48), None);
        assert_eq!(serving(&apics, |i| if i == 0 { 0 } else { 24 }, 2), None, "unreadable I/O APIC");
        assert_eq!(serving(&apics, |_| 40, 30), None, "overlapping ranges");
        let high = [IoApic { id: 0, address: 0, gsi_base: u32::MAX - 1 }];
        assert_eq!(serving(&high, |_| 24, u32::MAX), Some((0, 1)));
    }

    #[test]
    fn entries_match_the_datasheet() {
        let edge = LineRoute { gsi: 4, level: false, active_low: false };
        let level_low = LineRoute { gsi: 11, level: true, active_low: true };
        assert_eq!(redirection_entry(Delivery::Fixed { vector: 36, apic_id: 3 }, edge, false), 0x0300_0000_0000_0024);
        assert_eq!(redirection_entry(Delivery::Fixed { vector: 43, apic_id: 0 }, level_low, true), 0x0001_a02b);
        assert_eq!(redirection_entry(Delivery::NmiToSet { logical_set: 0xff }, level_low, false), 0xff00_0000_0000_2c00);
    }

    #[test]
    fn version_register() {
        assert_eq!(pins_from_version(0x0017_0020), Some(24));
        assert_eq!(pins_from_version(u32::MAX), None);
        assert_eq!(pins_from_version(0), None);
    }
}
