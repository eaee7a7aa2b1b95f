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
use core::sync::atomic::{AtomicBool, Ordering};
use core::mem::size_of;
use x86_64::instructions::port::{PortRead, PortWrite};

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
type PortClaim = (u16, u16, u64, u64, Arc<AtomicBool>);

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
            // The handle (wherever it is) answers `Revoked` from now on.
            live.store(false, Ordering::Release);
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
    /// Cleared when the claim is revoked: every access then fails.
    live: Arc<AtomicBool>,
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
        let live = Arc::new(AtomicBool::new(true));
        let mut claimed = CLAIMED.lock();
        if let Some(&(first, ..)) = claimed.iter().find(|&&(first, end, ..)| base <= end && first <= last) {
            return Err(IoPortError::Busy { port: base.max(first) });
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
    pub fn read<T: PortRead>(&self, offset: u16) -> Result<T, IoPortError> {
        let port = self.port(offset, size_of::<T>() as u16)?;
        // Interrupts off: a revocation (from an interrupt handler's cell
        // call) cannot fall between the check and the access.
        crate::arch::without_interrupts(|| {
            if !self.live.load(Ordering::Acquire) {
                return Err(IoPortError::Revoked);
            }
            // SAFETY: the port lies in a range this handle holds exclusively
            // (the claim is live) and that the base does not use; port reads
            // do not touch memory.
            Ok(unsafe { T::read_from_port(port) })
        })
    }

    /// Writes a `u8`, `u16` or `u32` at `offset`.
    pub fn write<T: PortWrite>(&self, offset: u16, value: T) -> Result<(), IoPortError> {
        let port = self.port(offset, size_of::<T>() as u16)?;
        crate::arch::without_interrupts(|| {
            if !self.live.load(Ordering::Acquire) {
                return Err(IoPortError::Revoked);
            }
            // SAFETY: as in `read`. A device may start DMA on a port write;
            // without an IOMMU that is a trust assumption on device drivers,
            // documented in docs/soundness.md.
            unsafe { T::write_to_port(port, value) };
            Ok(())
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
