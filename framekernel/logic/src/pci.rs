//! PCI configuration space: addresses, base address registers (BARs) and
//! the capability list, decoded from raw register values. Values come from
//! devices and are checked: a BAR that decodes to nothing sensible is
//! [`Bar::None`], a capability list that loops or leaves the header ends.

use alloc::vec::Vec;
use core::fmt;

/// Bus, device and function of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..32.
    pub device: u8,
    /// Function number, 0..8.
    pub function: u8,
}

impl PciAddress {
    /// The value for the `0xcf8` address port that selects `offset` of
    /// this function's configuration space (dword aligned).
    pub fn config_address(self, offset: u8) -> u32 {
        0x8000_0000
            | u32::from(self.bus) << 16
            | u32::from(self.device & 0x1f) << 11
            | u32::from(self.function & 7) << 8
            | u32::from(offset & 0xfc)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0000:{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// A decoded base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bar {
    /// Not implemented (or the upper half of a 64-bit BAR).
    #[default]
    None,
    /// I/O ports.
    Io {
        /// First port.
        port: u16,
        /// Number of ports.
        size: u16,
    },
    /// Memory-mapped registers.
    Memory {
        /// Physical address.
        address: u64,
        /// Size in bytes.
        size: u64,
        /// Prefetchable.
        prefetchable: bool,
        /// Uses the next BAR for its upper 32 bits.
        wide: bool,
    },
}

/// Decodes a BAR from its value and the value read back after writing all
/// ones (`mask`); `high`/`high_mask` are the next BAR's for 64-bit ones.
pub fn decode_bar(value: u32, mask: u32, high: u32, high_mask: u32) -> Bar {
    if value & 1 == 1 {
        let size_mask = mask & 0xffff_fffc & 0xffff;
        if size_mask == 0 {
            return Bar::None;
        }
        let size = (!size_mask).wrapping_add(1) & 0xffff;
        let port = value & 0xffff_fffc;
        return match (u16::try_from(port), u16::try_from(size)) {
            (Ok(port), Ok(size)) if size > 0 && u32::from(port) + u32::from(size) <= 0x1_0000 => Bar::Io { port, size },
            _ => Bar::None,
        };
    }
    let wide = (value >> 1) & 3 == 2;
    let prefetchable = value & 8 != 0;
    let low_mask = u64::from(mask & 0xffff_fff0);
    let full_mask = if wide { u64::from(high_mask) << 32 | low_mask } else { low_mask | 0xffff_ffff_0000_0000 };
    if low_mask == 0 && (!wide || high_mask == 0) {
        return Bar::None;
    }
    let size = (!full_mask).wrapping_add(1);
    let address = if wide { u64::from(high) << 32 } else { 0 } | u64::from(value & 0xffff_fff0);
    if size == 0 || address == 0 || address.checked_add(size).is_none() || !address.is_multiple_of(size) {
        return Bar::None;
    }
    Bar::Memory { address, size, prefetchable, wide }
}

/// The capability list of a configuration header (256 bytes): `(id,
/// offset)` pairs. Stops at a pointer into the header, a repeat, or 48
/// entries, so a broken or hostile list cannot loop.
pub fn capabilities(config: &[u8]) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    let status = config.get(6).copied().unwrap_or(0);
    if status & 0x10 == 0 {
        return out;
    }
    let mut at = config.get(0x34).copied().unwrap_or(0) & 0xfc;
    while at >= 0x40 && out.len() < 48 && !out.iter().any(|&(_, o)| o == at) {
        let (Some(&id), Some(&next)) = (config.get(usize::from(at)), config.get(usize::from(at) + 1)) else { break };
        out.push((id, at));
        at = next & 0xfc;
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = PciAddress { bus: 1, device: 3, function: 2 };
        assert_eq!(a.config_address(0x11), 0x8001_1a10);
        assert_eq!(a.to_string(), "0000:01:03.2");
    }

    #[test]
    fn bars() {
        // 64 ports at 0xc040 (QEMU's legacy virtio BAR 0).
        assert_eq!(decode_bar(0xc041, 0xffff_ffc1, 0, 0), Bar::Io { port: 0xc040, size: 64 });
        // 4 KiB of 32-bit memory.
        assert_eq!(
            decode_bar(0xfebd_1000, 0xffff_f000, 0, 0),
            Bar::Memory { address: 0xfebd_1000, size: 4096, prefetchable: false, wide: false }
        );
        // 16 KiB of 64-bit prefetchable memory above 4 GiB.
        assert_eq!(
            decode_bar(0x0000_400c, 0xffff_c00c, 0x1, 0xffff_ffff),
            Bar::Memory { address: 0x1_0000_4000, size: 0x4000, prefetchable: true, wide: true }
        );
        // Not implemented, and nonsense from a broken device.
        assert_eq!(decode_bar(0, 0, 0, 0), Bar::None);
        assert_eq!(decode_bar(0xffff_fff1, 0xffff_fff1, 0, 0), Bar::None);
        assert_eq!(decode_bar(0xfebd_1800, 0xffff_f000, 0, 0), Bar::None); // not aligned to its size
    }

    #[test]
    fn capability_lists_end() {
        let mut config = [0u8; 256];
        config[6] = 0x10;
        config[0x34] = 0x40;
        config[0x40] = 0x09;
        config[0x41] = 0x50;
        config[0x50] = 0x11;
        config[0x51] = 0x00;
        assert_eq!(capabilities(&config), [(0x09, 0x40), (0x11, 0x50)]);
        config[0x51] = 0x40; // a loop
        assert_eq!(capabilities(&config), [(0x09, 0x40), (0x11, 0x50)]);
        config[0x41] = 0x10; // into the header
        assert_eq!(capabilities(&config), [(0x09, 0x40)]);
        config[6] = 0;
        assert!(capabilities(&config).is_empty());
        assert!(capabilities(&config[..10]).is_empty());
    }
}
