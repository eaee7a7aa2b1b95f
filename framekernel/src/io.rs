//! Port I/O handles for safe components.
//!
//! An [`IoPorts`] is an exclusive claim on a range of I/O ports, reached
//! only through a device: a claimed PCI function's I/O BAR
//! (`pci::PciDevice::io_ports`), the console UART the base lends its
//! driver (`console::claim_uart`), or a legacy device the base hands out
//! by name ([`claim_legacy`]). No port number is taken from a caller, so no
//! component reaches fw_cfg's DMA, ISA DMA, CMOS/NMI, the reset port or
//! PCI configuration. Accesses are bounds-checked.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::size_of;
use x86_64::instructions::port::{PortRead, PortWrite};

mod sealed {
    pub trait Sealed {}
}

/// Widths of a port access: `u8`, `u16`, `u32`.
pub trait PortValue: sealed::Sealed + Copy {
    /// Widened (zero-extended).
    fn to_u32(self) -> u32;
    /// Narrowed (the low bytes).
    fn from_u32(value: u32) -> Self;
}

macro_rules! port_value {
    ($($t:ty),*) => { $(
        impl sealed::Sealed for $t {}
        impl PortValue for $t {
            #[inline(always)]
            fn to_u32(self) -> u32 {
                self as u32
            }
            #[inline(always)]
            fn from_u32(value: u32) -> Self {
                value as $t
            }
        }
    )* };
}
port_value!(u8, u16, u32);

/// Port ranges the base owns: `(first, last)` inclusive, and why.
const BASE_PORTS: [(u16, u16, &str); 7] = [
    (0x20, 0x21, "master PIC"),
    (0xa0, 0xa1, "slave PIC"),
    (0x40, 0x43, "PIT"),
    (0x61, 0x61, "PIT gate / speaker"),
    (0x3f8, 0x3ff, "COM1 console"),
    (0xf4, 0xf7, "QEMU debug exit"),
    (0xcf8, 0xcff, "PCI configuration"),
];

/// Why a port range was refused or an access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoPortError {
    /// Zero length, or the range runs past port 0xffff.
    BadRange { base: u16, len: u16 },
    /// The base uses (part of) the range.
    Reserved { port: u16, owner: &'static str },
    /// Another holder has (part of) the range.
    Busy { port: u16 },
    /// An access outside the acquired range.
    OutOfRange { offset: u16, width: u16, len: u16 },
    /// No memory to record the claim.
    NoMemory,
    /// The claim was revoked (the cell call that took it faulted).
    Revoked,
}

impl core::fmt::Display for IoPortError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IoPortError::BadRange { base, len } => write!(f, "bad port range {base:#x}+{len}"),
            IoPortError::Reserved { port, owner } => write!(f, "port {port:#x} belongs to the base ({owner})"),
            IoPortError::Busy { port } => write!(f, "port {port:#x} is already acquired"),
            IoPortError::OutOfRange { offset, width, len } => {
                write!(f, "{width}-byte access at offset {offset} outside a {len}-port range")
            }
            IoPortError::NoMemory => f.write_str("no memory to record the port claim"),
            IoPortError::Revoked => f.write_str("the port claim was revoked (the cell call that took it faulted)"),
        }
    }
}

/// Claimed ranges: (first, last, claim token, fault domain, live flag
/// shared with the handle).
static CLAIMED: crate::sync::BaseLock<Vec<PortClaim>> = crate::sync::BaseLock::new(Vec::new());

/// One claimed range (see [`CLAIMED`]).
type PortClaim = (u16, u16, u64, u64, Arc<crate::sync::Claim>);

/// Legacy devices the base hands out by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// The second serial port (COM2, 8 ports at 0x2f8).
    Com2,
}

/// Claims the ports of legacy device `device`.
pub fn claim_legacy(device: Legacy) -> Result<IoPorts, IoPortError> {
    match device {
        Legacy::Com2 => IoPorts::acquire(0x2f8, 8),
    }
}

/// Gives back every port claim taken in calls of the faulted cell `domain`
/// (their handles were abandoned with it and are never used).
pub(crate) fn revoke_domain(domain: u64) {
    CLAIMED.lock().retain(|(.., d, live)| {
        if *d == domain {
            // The handle (wherever it is) answers `Revoked` from now on,
            // and an access another processor began has ended.
            live.revoke();
        }
        *d != domain
    });
}

/// Exclusive access to the ports `base..base+len`. Released on drop.
#[derive(Debug)]
pub struct IoPorts {
    base: u16,
    len: u16,
    token: u64,
    /// Revoked with the claim: every access then fails.
    live: Arc<crate::sync::Claim>,
}

impl IoPorts {
    /// Claims `len` ports starting at `base` (the base's own use: device
    /// handles and named legacy devices).
    pub(crate) fn acquire(base: u16, len: u16) -> Result<Self, IoPortError> {
        let last = base.checked_add(len.checked_sub(1).ok_or(IoPortError::BadRange { base, len })?);
        let last = last.ok_or(IoPortError::BadRange { base, len })?;
        for (first, end, owner) in BASE_PORTS {
            if base <= end && first <= last {
                return Err(IoPortError::Reserved { port: base.max(first), owner });
            }
        }
        Self::claim(base, len, last)
    }

    /// Claims a range the base reserves, which the base lends on purpose
    /// (the console UART to its driver cell).
    pub(crate) fn acquire_lent(base: u16, len: u16) -> Result<Self, IoPortError> {
        let last = base.checked_add(len.saturating_sub(1)).ok_or(IoPortError::BadRange { base, len })?;
        Self::claim(base, len, last)
    }

    fn claim(base: u16, len: u16, last: u16) -> Result<Self, IoPortError> {
        // Allocated before the claim lock is taken (an allocation failure
        // must not happen under a base lock).
        let live = Arc::new(crate::sync::Claim::new());
        let mut claimed = CLAIMED.lock();
        if let Some(&(first, ..)) = claimed.iter().find(|&&(first, end, ..)| base <= end && first <= last) {
            return Err(IoPortError::Busy { port: base.max(first) });
        }
        // A call of a copy whose claims were already revoked (another call
        // of it faulted) gets none: nothing would revoke it.
        if crate::cell::current_call_tainted() {
            return Err(IoPortError::Revoked);
        }
        claimed.try_reserve(1).map_err(|_| IoPortError::NoMemory)?;
        let token = crate::cell::claim_token();
        // Taken inside a cell call: revoked if a call of that cell faults.
        claimed.push((base, last, token, crate::cell::current_domain(), live.clone()));
        Ok(Self { base, len, token, live })
    }

    /// First port of the range.
    pub fn base(&self) -> u16 {
        self.base
    }

    /// Number of ports.
    pub fn len(&self) -> u16 {
        self.len
    }

    /// Always false: an acquired range has at least one port.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn port(&self, offset: u16, width: u16) -> Result<u16, IoPortError> {
        match offset.checked_add(width) {
            Some(end) if end <= self.len => Ok(self.base + offset),
            _ => Err(IoPortError::OutOfRange { offset, width, len: self.len }),
        }
    }

    /// Reads a `u8`, `u16` or `u32` at `offset`.
    pub fn read<T: PortValue>(&self, offset: u16) -> Result<T, IoPortError> {
        let port = self.port(offset, size_of::<T>() as u16)?;
        self.access(port, size_of::<T>(), None).map(T::from_u32).ok_or(IoPortError::Revoked)
    }

    /// Writes a `u8`, `u16` or `u32` at `offset`.
    pub fn write<T: PortValue>(&self, offset: u16, value: T) -> Result<(), IoPortError> {
        let port = self.port(offset, size_of::<T>() as u16)?;
        self.access(port, size_of::<T>(), Some(value.to_u32())).map(|_| ()).ok_or(IoPortError::Revoked)
    }

    /// One access of `width` bytes at `port` (checked by `port`): a write
    /// of `value` if given, else a read. Not generic and never inlined, so
    /// it runs as the base's code even when a cell reads or writes
    /// (`read`/`write` are compiled into the cell): the watchdog never
    /// stops a cell inside it, so the in-flight count of its claim always
    /// comes down. `None` once the claim is revoked.
    #[inline(never)]
    fn access(&self, port: u16, width: usize, value: Option<u32>) -> Option<u32> {
        self.live.access(|| {
            // SAFETY: the port lies in a range this handle holds exclusively
            // (the claim is live for the whole access: `Claim`) and that the
            // base does not use; port I/O does not touch memory. A device
            // may start DMA on a port write; without an IOMMU that is a
            // trust assumption on device drivers, documented in
            // docs/soundness.md.
            unsafe {
                match (width, value) {
                    (1, Some(v)) => u8::write_to_port(port, v as u8),
                    (2, Some(v)) => u16::write_to_port(port, v as u16),
                    (_, Some(v)) => u32::write_to_port(port, v),
                    (1, None) => return u32::from(u8::read_from_port(port)),
                    (2, None) => return u32::from(u16::read_from_port(port)),
                    (_, None) => return u32::read_from_port(port),
                }
            }
            0
        })
    }
}

/// Gives back the claim `token` (a handle's drop; a no-op once revoked).
fn release(token: u64) {
    CLAIMED.lock().retain(|(_, _, t, ..)| *t != token);
}

impl Drop for IoPorts {
    fn drop(&mut self) {
        release(self.token);
    }
}
