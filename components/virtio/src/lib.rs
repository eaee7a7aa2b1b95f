//! What the virtio drivers share: the legacy (virtio 0.9.5) interface
//! that QEMU's transitional `virtio-*-pci` functions offer in BAR 0 as
//! I/O ports, finding such a function, the first steps of setting one up,
//! and the layout of a legacy virtqueue in memory.
//!
//! Every function is `#[inline]`: a cell is linked from its own object
//! only (against the kernel's symbols), so what it uses from this crate
//! must be compiled into it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use framekernel::io::IoPorts;
use framekernel::pci::{PciDevice, PciInfo};
use framekernel::sync::{Mutex, MutexGuard};

/// Vendor of every virtio PCI function.
pub const VENDOR: u16 = 0x1af4;

// Legacy register block (BAR 0), without MSI-X.
pub const DEVICE_FEATURES: u16 = 0x00;
pub const GUEST_FEATURES: u16 = 0x04;
pub const QUEUE_PFN: u16 = 0x08;
pub const QUEUE_SIZE: u16 = 0x0c;
pub const QUEUE_SELECT: u16 = 0x0e;
pub const QUEUE_NOTIFY: u16 = 0x10;
pub const STATUS: u16 = 0x12;
pub const ISR: u16 = 0x13;
/// Where the device-specific configuration starts (no MSI-X).
pub const CONFIG: u16 = 0x14;

pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FAILED: u8 = 0x80;

/// Descriptor flags: another descriptor follows; the device writes.
pub const DESC_NEXT: u16 = 1;
pub const DESC_WRITE: u16 = 2;
/// Available-ring flag: no interrupt when buffers are used.
pub const AVAIL_NO_INTERRUPT: u16 = 1;

/// The `nth` transitional function of a kind (`what`, say "virtio-net"),
/// by its legacy and modern device ids: its PCI details, or why there is
/// none.
#[inline]
pub fn find(what: &str, legacy: u16, modern: u16, nth: u32) -> Result<PciInfo, String> {
    let devices = framekernel::pci::devices();
    if let Some(info) = devices.iter().filter(|d| d.vendor == VENDOR && d.device == legacy).nth(nth as usize) {
        return Ok(*info);
    }
    if devices.iter().any(|d| d.vendor == VENDOR && d.device == modern) {
        return Err(format!("only a modern-only {what} ({VENDOR:04x}:{modern:04x}) is present; this driver needs the legacy interface"));
    }
    if nth > 0 {
        return Err(format!("no {what} PCI device number {nth}"));
    }
    Err(format!("no {what} PCI device"))
}

/// Claims the function, resets it, turns bus mastering on and says a
/// driver is here: the claim, its registers and the features it offers.
/// The reset comes before bus mastering: a device an earlier driver let go
/// without a reset still holds that driver's rings, whose memory may be
/// another's by now.
#[inline]
pub fn start(info: &PciInfo) -> Result<(PciDevice, IoPorts, u32), String> {
    let pci = PciDevice::claim(info.address).map_err(|e| format!("{e}"))?;
    pci.enable(false).map_err(|e| format!("{e}"))?;
    let ports = pci.io_ports(0).map_err(|e| format!("BAR 0: {e}"))?;
    let io = |e| format!("register access: {e:?}");
    ports.write::<u8>(STATUS, 0).map_err(io)?; // reset
    pci.enable(true).map_err(|e| format!("{e}"))?;
    ports.write::<u8>(STATUS, STATUS_ACKNOWLEDGE).map_err(io)?;
    ports.write::<u8>(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER).map_err(io)?;
    let offered = ports.read::<u32>(DEVICE_FEATURES).map_err(io)?;
    Ok((pci, ports, offered))
}

/// Where a legacy queue of `size` entries keeps its used ring (after the
/// descriptors and the available ring, page aligned), and the bytes the
/// whole queue takes.
#[inline]
pub fn ring_layout(size: u16) -> (usize, usize) {
    let q = usize::from(size);
    let used_offset = (16 * q + 6 + 2 * q).next_multiple_of(4096);
    (used_offset, used_offset + 6 + 8 * q)
}

/// A driver's device, or why it has none: the state of a virtio driver
/// cell, with what a swap's handover does to it.
pub struct Attachment<D>(Mutex<Result<D, String>>);

impl<D> Attachment<D> {
    /// No device yet.
    #[inline]
    pub fn new() -> Self {
        Self(Mutex::new(Err("not attached to a device".into())))
    }

    /// The device, or why there is none.
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> MutexGuard<'_, Result<D, String>> {
        self.0.lock()
    }

    /// Takes the device out (to hand it over, or to let go of it): the
    /// instance has none afterwards.
    #[inline]
    pub fn take(&self) -> Option<D> {
        core::mem::replace(&mut *self.0.lock(), Err(String::new())).ok()
    }

    /// What a swap's handover gives: `state` of the device (empty with
    /// none); then, if `release`, the device leaves the instance,
    /// `let_go` told what was given before it is dropped. A rehearsal's
    /// look (`release` false) and the real handover run this one path,
    /// so that the code the handover runs with the slot's gate closed
    /// has mostly run already (an emulator translates code on first use:
    /// that was most of a driver swap's downtime under QEMU's TCG).
    #[inline(never)]
    pub fn hand_over(&self, release: bool, state: fn(&D) -> Vec<u8>, let_go: fn(&mut D, &[u8])) -> Vec<u8> {
        let mut slot = self.0.lock();
        let given = slot.as_ref().map(state).unwrap_or_default();
        if release && let Ok(mut device) = core::mem::replace(&mut *slot, Err(String::new())) {
            drop(slot);
            let_go(&mut device, &given);
            drop(device);
        }
        given
    }

    /// Drives `device` from now on.
    #[inline]
    pub fn set(&self, device: D) {
        *self.0.lock() = Ok(device);
    }

    /// True once a device is attached or taken over.
    #[inline]
    pub fn attached(&self) -> bool {
        self.0.lock().is_ok()
    }
}

impl<D> Default for Attachment<D> {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

/// The `N` bytes at `at` of a handover's state (zeros where it is short:
/// its length is checked first).
#[inline]
pub fn field<const N: usize>(state: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(bytes) = state.get(at..at + N) {
        out.copy_from_slice(bytes);
    }
    out
}

/// Writes `bytes` at `at` of a handover's state (nothing past its end).
#[inline]
pub fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(to) = out.get_mut(at..at + bytes.len()) {
        to.copy_from_slice(bytes);
    }
}
