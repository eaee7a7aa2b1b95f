//! PCI: the bus scan and exclusive device handles.
//!
//! Configuration space is reached through ports `0xcf8`/`0xcfc`, which the
//! base keeps for itself. [`devices`] lists every function found (bus 0 and
//! the buses behind bridges), with BARs sized at scan time. A driver
//! [`PciDevice::claim`]s one function; the handle lets it enable decoding
//! and bus mastering, take its I/O or memory BARs as [`IoPorts`]/[`IoMem`],
//! allocate DMA memory for it ([`PciDevice::dma_buffer`]) and read
//! configuration space. It may not write configuration space at all (no
//! BARs, no MSI address that could aim a device write anywhere): the
//! command register changes only through [`PciDevice::enable`]. Dropping
//! the handle, or the fault of the cell that claimed it, ends the claim;
//! the frames of its DMA buffers go back to the frame allocator only once
//! bus mastering is off, which stops the device's DMA. A claim ends with
//! bus mastering turned off at once, unless it ends (by a drop or a
//! revocation) while a [`HandoverWindow`] is open: then it *lingers* (bus
//! mastering on, its frames out of use) until the next claim of the
//! function takes it over, reusing those frames, or [`settle`] ends it.
//!
//! A driver that lets its device go without a reset leaves it set up to
//! use those frames; once they are freed, the function's next driver must
//! reset it before it turns bus mastering on (the virtio drivers do:
//! `tessera_virtio::start`), as it must not aim the device elsewhere
//! (docs/soundness.md, what is assumed).

use crate::io::{IoPortError, IoPorts};
use crate::mm::{IoMem, IoMemError};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::fmt;
use framekernel_logic::pci::{Bar, decode_bar};
use x86_64::instructions::port::Port;

pub use framekernel_logic::pci::{Bar as PciBar, PciAddress, capabilities};

/// Serialises the address/data port pair.
static CONFIG: crate::sync::BaseLock<()> = crate::sync::BaseLock::new(());

fn read32(address: PciAddress, offset: u8) -> u32 {
    let _guard = CONFIG.lock();
    // SAFETY: 0xcf8/0xcfc are the PCI configuration mechanism #1 ports,
    // owned by the base (refused to `IoPorts`); the lock keeps the
    // address/data pair together. Reading configuration space has no side
    // effects on memory.
    unsafe {
        Port::<u32>::new(0xcf8).write(address.config_address(offset));
        Port::<u32>::new(0xcfc).read()
    }
}

/// Configuration writes made since boot (`config_writes`).
static CONFIG_WRITES: AtomicU64 = AtomicU64::new(0);

/// Configuration-space writes since boot (each is slow under emulation:
/// a device's command register change rebuilds the memory map). For
/// tests and figures.
pub fn config_writes() -> u64 {
    CONFIG_WRITES.load(Ordering::Relaxed)
}

fn write32(address: PciAddress, offset: u8, value: u32) {
    CONFIG_WRITES.fetch_add(1, Ordering::Relaxed);
    let _guard = CONFIG.lock();
    // The other processors wait, touching no device memory, while the
    // write may move device memory (see `with_others_held`).
    crate::mm::tlb::with_others_held(|| {
        // SAFETY: as in `read32`. Callers write only the command register
        // and BARs during sizing (restored at once), or the device-specific
        // area of a function they have claimed.
        unsafe {
            Port::<u32>::new(0xcf8).write(address.config_address(offset));
            Port::<u32>::new(0xcfc).write(value);
        }
    })
}

/// What the scan found about one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciInfo {
    /// Where it is.
    pub address: PciAddress,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class, subclass, programming interface.
    pub class: (u8, u8, u8),
    /// Revision.
    pub revision: u8,
    /// Subsystem vendor and ID.
    pub subsystem: (u16, u16),
    /// Legacy interrupt line (as firmware routed it) and pin (1 = INTA).
    pub interrupt: (u8, u8),
    /// The six BARs (bridges use only two).
    pub bars: [Bar; 6],
}

fn probe(address: PciAddress) -> Option<(PciInfo, u8)> {
    let id = read32(address, 0);
    let vendor = id as u16;
    if vendor == 0xffff {
        return None;
    }
    let class = read32(address, 8);
    let header = (read32(address, 0x0c) >> 16) as u8;
    let bar_count = match header & 0x7f {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let mut raw = [(0u32, 0u32); 6];
    if bar_count > 0 {
        // Size the BARs with decoding off, then restore everything.
        let command = read32(address, 4);
        write32(address, 4, command & !0x3);
        for (i, slot) in raw.iter_mut().enumerate().take(bar_count) {
            let offset = 0x10 + 4 * i as u8;
            let value = read32(address, offset);
            write32(address, offset, 0xffff_ffff);
            let mask = read32(address, offset);
            write32(address, offset, value);
            *slot = (value, mask);
        }
        write32(address, 4, command);
    }
    let mut bars = [Bar::None; 6];
    let mut i = 0;
    while i < bar_count {
        let (value, mask) = raw.get(i).copied().unwrap_or_default();
        let (high, high_mask) = raw.get(i + 1).copied().unwrap_or_default();
        let bar = decode_bar(value, mask, high, high_mask);
        if let Some(slot) = bars.get_mut(i) {
            *slot = bar;
        }
        i += if matches!(bar, Bar::Memory { wide: true, .. }) { 2 } else { 1 };
    }
    let subsystem = if header & 0x7f == 0 { read32(address, 0x2c) } else { 0 };
    let interrupt = read32(address, 0x3c);
    let info = PciInfo {
        address,
        vendor,
        device: (id >> 16) as u16,
        class: ((class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8),
        revision: class as u8,
        subsystem: (subsystem as u16, (subsystem >> 16) as u16),
        interrupt: (interrupt as u8, (interrupt >> 8) as u8),
        bars,
    };
    Some((info, header))
}

fn scan_bus(bus: u8, out: &mut Vec<PciInfo>, seen: &mut [bool; 256]) {
    if core::mem::replace(&mut seen[usize::from(bus)], true) {
        return; // a bridge loop, or a bus reached twice
    }
    for device in 0..32u8 {
        for function in 0..8u8 {
            let address = PciAddress { bus, device, function };
            let Some((info, header)) = probe(address) else {
                if function == 0 {
                    break;
                }
                continue;
            };
            out.push(info);
            if header & 0x7f == 1 {
                let secondary = (read32(address, 0x18) >> 8) as u8;
                if secondary != 0 {
                    scan_bus(secondary, out, seen);
                }
            }
            if function == 0 && header & 0x80 == 0 {
                break; // single-function device
            }
        }
    }
}

static DEVICES: spin::Once<Vec<PciInfo>> = spin::Once::new();

/// Every PCI function, scanned once on first use.
pub fn devices() -> &'static [PciInfo] {
    DEVICES.call_once(|| {
        let mut out = Vec::new();
        let mut seen = [false; 256];
        scan_bus(0, &mut out, &mut seen);
        out
    })
}

/// Why a device could not be claimed or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// No function at that address.
    NotFound(PciAddress),
    /// Someone else holds it.
    Busy(PciAddress),
    /// BAR `index` is not of the asked kind (or absent).
    NoSuchBar { index: usize },
    /// A configuration access outside what a driver may touch.
    Forbidden { offset: u16 },
    /// No memory to record the claim.
    NoMemory,
    /// No memory for a DMA buffer.
    OutOfMemory(crate::mm::OutOfMemory),
    /// The claim was revoked (the cell call that took it faulted).
    Revoked(PciAddress),
    /// Taking the BAR's ports failed.
    Ports(IoPortError),
    /// Mapping the BAR's memory failed.
    Memory(IoMemError),
    /// No dropped DMA buffer of exactly that place and size waits for
    /// this claim ([`PciDevice::dma_buffer_kept`]).
    NoKeptBuffer { phys: u64, bytes: usize },
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NotFound(a) => write!(f, "no PCI function at {a}"),
            PciError::Busy(a) => write!(f, "PCI function {a} is claimed by another driver"),
            PciError::NoSuchBar { index } => write!(f, "BAR {index} is absent or of another kind"),
            PciError::Forbidden { offset } => write!(f, "configuration offset {offset:#x} is not a driver's to write"),
            PciError::NoMemory => f.write_str("no memory to record the claim"),
            PciError::OutOfMemory(e) => write!(f, "{e}"),
            PciError::Revoked(a) => write!(f, "the claim on PCI function {a} was revoked (the cell call that took it faulted)"),
            PciError::Ports(e) => write!(f, "{e:?}"),
            PciError::Memory(e) => write!(f, "{e}"),
            PciError::NoKeptBuffer { phys, bytes } => write!(f, "no DMA buffer of {bytes:#x} bytes at {phys:#x} was left for this device"),
        }
    }
}

/// A claimed function: its address, claim token, the fault domain that
/// claimed it, and the DMA frames (first frame, pages) its driver dropped
/// while the device could still write them.
struct Claimed {
    address: PciAddress,
    /// Names the function's DMA frames: kept by a claim that takes over a
    /// lingering one (below), so buffers of the earlier claim still find
    /// it when they are dropped.
    token: u64,
    domain: u64,
    deferred: Vec<Deferred>,
    /// Shared with the handle, which it identifies (a token can outlive a
    /// handle): cleared when the claim ends.
    live: Arc<AtomicBool>,
    /// This claim's epoch (every claim gets a newer one, also one that
    /// takes a lingering claim over and keeps its token); its buffers
    /// carry it.
    epoch: u64,
    /// Buffers of this token made under an epoch up to this one were made
    /// under a claim that a fault ended (inherited by takeovers).
    revoked_upto: u64,
}

/// Epochs of claims (`Claimed::epoch`), newest last.
static EPOCHS: AtomicU64 = AtomicU64::new(1);

/// DMA frames a driver dropped while its device could still write them:
/// (first frame, pages, may be handed on unzeroed). A buffer a faulted
/// driver made (dropped before its claim was revoked, or after, from
/// anywhere: told by the epoch it carries), one made in a call of
/// another fault domain than the claim's (which nothing revokes here if
/// it faults), or one dropped by a call of a faulted copy still running
/// is reused zeroed only, never kept: a faulted driver's data is not
/// handed on. Buffers made by a healthy driver that took such a claim
/// over may be kept.
type Deferred = (u64, u64, bool);

/// A claim that ended (dropped or revoked) while a handover window was
/// open, with its function's bus mastering left on: the function's DMA frames stay
/// out of use. The next claim of the function takes it over (no
/// configuration write, its frames reusable by the new driver); else
/// [`settle`] ends it as a release would have.
struct Lingering {
    address: PciAddress,
    token: u64,
    /// The fault domain of the claim that ended.
    domain: u64,
    deferred: Vec<Deferred>,
    /// See `Claimed::revoked_upto`.
    revoked_upto: u64,
}

struct Claims {
    live: Vec<Claimed>,
    lingering: Vec<Lingering>,
}

static CLAIMED: crate::sync::BaseLock<Claims> = crate::sync::BaseLock::new(Claims { live: Vec::new(), lingering: Vec::new() });

/// Open [`HandoverWindow`]s.
static WINDOWS: AtomicUsize = AtomicUsize::new(0);
/// `Claims::lingering.len()`, written under the claim table's lock: a
/// window that closes with nothing lingering takes no lock. Both counters
/// use `SeqCst`: a claim that begins to linger just as the last window
/// closes is settled by one side or the other (`linger_checked`).
static LINGERING: AtomicUsize = AtomicUsize::new(0);

/// Turns bus mastering of `address` off, read back so that the write has
/// reached the device before anything it could write is freed. Under the
/// claim table's lock (see `enable`).
fn bus_mastering_off(address: PciAddress) {
    let command = read32(address, 4);
    write32(address, 4, (command & 0xffff) & !0x4);
    let _ = read32(address, 4);
}

/// Ends `claim` (taken out of the table, whose lock is held): its handle
/// can do nothing more. It lingers if `linger` (and there is room to
/// say so); else bus mastering goes off and its DMA frames are returned
/// for the caller to free once the lock is let go.
fn end_claim(claims: &mut Claims, mut claim: Claimed, linger: bool, revoked: bool) -> Vec<Deferred> {
    claim.live.store(false, Ordering::Release);
    if linger && claims.lingering.try_reserve(1).is_ok() {
        let revoked_upto = if revoked {
            for (_, _, keep) in &mut claim.deferred {
                *keep = false;
            }
            claim.epoch
        } else {
            claim.revoked_upto
        };
        claims.lingering.push(Lingering { address: claim.address, token: claim.token, domain: claim.domain, deferred: claim.deferred, revoked_upto });
        LINGERING.store(claims.lingering.len(), Ordering::SeqCst);
        return Vec::new();
    }
    bus_mastering_off(claim.address);
    claim.deferred
}

fn free_all(frames: Vec<Deferred>) {
    for (phys, pages, _) in frames {
        crate::mm::dma::free_frames(phys, pages);
    }
}

/// Ends the claim of the handle whose flag is `live`: bus mastering off
/// (read back, so the write has reached the device before anything is
/// freed), then the DMA frames the device could still have written go
/// back; or, while a [`HandoverWindow`] is open, the claim lingers. A
/// no-op once done (revocation came first).
fn release(live: &Arc<AtomicBool>) {
    let mut claims = CLAIMED.lock();
    let Some(at) = claims.live.iter().position(|c| Arc::ptr_eq(&c.live, live)) else { return };
    let claim = claims.live.swap_remove(at);
    // Still under the claim table's lock: an `enable` on another processor
    // that saw the claim live has finished its write, and one that comes
    // later sees it dead; bus mastering goes off after either.
    let linger = WINDOWS.load(Ordering::SeqCst) > 0;
    let frames = end_claim(&mut claims, claim, linger, false);
    drop(claims);
    free_all(frames);
    linger_checked(linger);
}

/// After a claim began to linger (`lingered`) and the table's lock was
/// let go: if the last window closed meanwhile, its closer may have seen
/// nothing lingering (`LINGERING` was stored after its load), so this
/// side settles. (Each side stores, then loads the other's counter, all
/// `SeqCst`: at least one of them sees the other's store.)
fn linger_checked(lingered: bool) {
    if lingered && WINDOWS.load(Ordering::SeqCst) == 0 {
        settle();
    }
}

/// Ends every claim taken in calls of the faulted cell `domain`: bus
/// mastering off, or, while a [`HandoverWindow`] is open, lingering (for
/// the instance that replaces the faulted one; the buffers the faulted
/// driver dropped are reused zeroed only).
pub(crate) fn revoke_domain(domain: u64) {
    let mut claims = CLAIMED.lock();
    let linger = WINDOWS.load(Ordering::SeqCst) > 0;
    let mut frames = Vec::new();
    while let Some(at) = claims.live.iter().position(|c| c.domain == domain) {
        let claim = claims.live.swap_remove(at);
        frames.extend(end_claim(&mut claims, claim, linger, true));
    }
    drop(claims);
    free_all(frames);
    linger_checked(linger);
}

/// Ends every lingering claim (bus mastering off, their DMA frames back
/// to the pool), unless a [`HandoverWindow`] is open. Safe at any time:
/// a lingering function has no driver.
pub fn settle() {
    let mut claims = CLAIMED.lock();
    if WINDOWS.load(Ordering::SeqCst) > 0 {
        return;
    }
    let lingering = core::mem::take(&mut claims.lingering);
    LINGERING.store(0, Ordering::SeqCst);
    for ended in &lingering {
        bus_mastering_off(ended.address);
    }
    drop(claims);
    for ended in lingering {
        free_all(ended.deferred);
    }
}

/// Pages of dropped DMA buffers waiting under `function`'s live or
/// lingering claim for its device to stop (for tests and figures).
pub fn waiting_pages(function: PciAddress) -> u64 {
    let claims = CLAIMED.lock();
    let live = claims.live.iter().filter(|c| c.address == function).flat_map(|c| &c.deferred);
    let lingering = claims.lingering.iter().filter(|l| l.address == function).flat_map(|l| &l.deferred);
    live.chain(lingering).map(|&(_, pages, _)| pages).sum()
}

/// Functions lingering after their claims ended (for tests and
/// `/proc`): bus mastering on, no driver.
pub fn lingering() -> usize {
    CLAIMED.lock().lingering.len()
}

/// While one is open, a claim that ends leaves its function's bus
/// mastering on ("lingers"), so that the driver replacing the one that
/// let go claims the function without a configuration write (each one is a
/// change of the memory map, slow under emulation) and may reuse its DMA
/// frames, even in place ([`PciDevice::dma_buffer_kept`]). When the last
/// window closes, functions nobody claimed again are [`settle`]d. A slot
/// opens one around a swap, restart or recovery.
///
/// Sound in any use: a lingering function's frames stay out of use until
/// bus mastering is off, whether or not a window ever closes.
#[derive(Debug)]
pub struct HandoverWindow(());

impl HandoverWindow {
    /// Opens a window.
    pub fn open() -> Self {
        WINDOWS.fetch_add(1, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for HandoverWindow {
    fn drop(&mut self) {
        // Nothing lingering: no lock (a slot opens a window around every
        // call of a device driver). See `linger_checked` for the race
        // with a claim that begins to linger now.
        if WINDOWS.fetch_sub(1, Ordering::SeqCst) == 1 && LINGERING.load(Ordering::SeqCst) > 0 {
            settle();
        }
    }
}

/// A DMA buffer of `function`, made under claim `token` in `epoch`, was
/// dropped: its frames wait for the device to stop (the end of the
/// function's claim, whichever it is now) if the function is claimed or
/// lingers, else they go back now. False if they could not be recorded
/// (no memory): the caller then keeps them out of use.
pub(crate) fn dma_dropped(function: PciAddress, (token, epoch, maker): (u64, u64, u64), phys: u64, pages: u64) -> bool {
    let mut claims = CLAIMED.lock();
    let Claims { live, lingering } = &mut *claims;
    // Found by the function, not the token: a buffer that outlived its
    // claim waits under the function's next one (which may have turned
    // bus mastering on again, with a device still aimed at it). With no
    // claim live or lingering, bus mastering is off (every end of a claim
    // turns it off, or lingers, and `settle` turns it off).
    let deferred = match live.iter_mut().find(|c| c.address == function) {
        Some(claim) => Some((&mut claim.deferred, claim.token, claim.domain, claim.revoked_upto)),
        None => lingering.iter_mut().find(|l| l.address == function).map(|l| (&mut l.deferred, l.token, l.domain, l.revoked_upto)),
    };
    match deferred {
        Some((deferred, waits_under, domain, revoked_upto)) => {
            if deferred.try_reserve(1).is_err() {
                return false;
            }
            // Kept only when made by the claim's own driver (in a call of
            // the claim's fault domain, or both outside any cell) under
            // this very lineage, in an epoch no fault ended, and not
            // dropped by a call of a copy that has faulted meanwhile. A
            // buffer made in a call of another domain (which may have
            // faulted with nothing of this claim revoked) is not.
            let keep = waits_under == token && maker == domain && epoch > revoked_upto && !crate::cell::current_call_tainted();
            deferred.push((phys, pages, keep));
            true
        }
        None => {
            drop(claims);
            crate::mm::dma::free_frames(phys, pages);
            true
        }
    }
}

/// An exclusive claim on one PCI function.
#[derive(Debug)]
pub struct PciDevice {
    info: PciInfo,
    token: u64,
    /// Cleared when the claim ends (revocation): the handle is inert then.
    live: Arc<AtomicBool>,
    /// Its claim's epoch, stamped on the buffers it makes.
    epoch: u64,
}

impl PciDevice {
    /// Claims the function at `address`. If its last claim lingers (see
    /// [`HandoverWindow`]), this one takes it over: bus mastering is as
    /// the last driver left it, and that driver's dropped DMA frames are
    /// this claim's to reuse.
    pub fn claim(address: PciAddress) -> Result<Self, PciError> {
        let info = devices().iter().find(|d| d.address == address).copied().ok_or(PciError::NotFound(address))?;
        let live = Arc::new(AtomicBool::new(true));
        let mut claims = CLAIMED.lock();
        if claims.live.iter().any(|c| c.address == address) {
            return Err(PciError::Busy(address));
        }
        // A call of a copy whose claims were already revoked (another call
        // of it faulted) gets none: nothing would revoke it.
        if crate::cell::current_call_tainted() {
            return Err(PciError::Revoked(address));
        }
        claims.live.try_reserve(1).map_err(|_| PciError::NoMemory)?;
        let (token, deferred, revoked_upto) = match claims.lingering.iter().position(|l| l.address == address) {
            Some(at) => {
                let ended = claims.lingering.swap_remove(at);
                LINGERING.store(claims.lingering.len(), Ordering::SeqCst);
                (ended.token, ended.deferred, ended.revoked_upto)
            }
            None => (crate::cell::claim_token(), Vec::new(), 0),
        };
        let epoch = EPOCHS.fetch_add(1, Ordering::Relaxed);
        // Claimed inside a cell call: revoked if a call of that cell faults.
        claims.live.push(Claimed { address, token, domain: crate::cell::current_domain(), deferred, live: live.clone(), epoch, revoked_upto });
        Ok(Self { info, token, live, epoch })
    }

    /// What the scan found.
    pub fn info(&self) -> &PciInfo {
        &self.info
    }

    /// Turns on I/O and memory decoding, and bus mastering if asked.
    pub fn enable(&self, bus_master: bool) -> Result<(), PciError> {
        // The claim table's lock from the check to the write: a revocation
        // (on any processor: `release` turns bus mastering off under the
        // same lock) cannot fall in between, so a revoked handle never
        // turns bus mastering back on after its DMA frames were freed.
        crate::arch::without_interrupts(|| {
            let _claims = CLAIMED.lock();
            self.check_live()?;
            let command = read32(self.info.address, 4);
            let bits = 0x3 | if bus_master { 0x4 } else { 0 };
            // Already on (a claim that took a lingering one over): no
            // write, which would be a change of the memory map for nothing.
            if command & bits == bits {
                return Ok(());
            }
            // Keep the status half (write-one-to-clear bits) untouched.
            write32(self.info.address, 4, (command & 0xffff) | bits);
            Ok(())
        })
    }

    fn check_live(&self) -> Result<(), PciError> {
        if self.live.load(Ordering::Acquire) { Ok(()) } else { Err(PciError::Revoked(self.info.address)) }
    }

    /// BAR `index` as I/O ports.
    pub fn io_ports(&self, index: usize) -> Result<IoPorts, PciError> {
        self.check_live()?;
        match self.info.bars.get(index) {
            Some(&Bar::Io { port, size }) => IoPorts::acquire(port, size).map_err(PciError::Ports),
            _ => Err(PciError::NoSuchBar { index }),
        }
    }

    /// BAR `index` as device memory.
    pub fn iomem(&self, index: usize) -> Result<IoMem, PciError> {
        self.check_live()?;
        match self.info.bars.get(index) {
            Some(&Bar::Memory { address, size, .. }) => IoMem::acquire(address, size).map_err(PciError::Memory),
            _ => Err(PciError::NoSuchBar { index }),
        }
    }

    /// Reads the configuration dword at `offset` (rounded down to 4).
    /// A revoked handle reads nothing: the function may belong to another
    /// cell by now.
    pub fn read_config(&self, offset: u8) -> Result<u32, PciError> {
        self.check_live()?;
        Ok(read32(self.info.address, offset))
    }

    /// The whole 256-byte configuration header (for [`capabilities`]).
    pub fn config_space(&self) -> Result<[u8; 256], PciError> {
        self.check_live()?;
        let mut out = [0u8; 256];
        for (i, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&read32(self.info.address, (i * 4) as u8).to_le_bytes());
        }
        Ok(out)
    }

    /// `bytes` of zeroed memory this device may read and write by DMA
    /// (physically contiguous). Its frames are reused only once the device
    /// cannot write them any more: after this handle is dropped or revoked
    /// (bus mastering off).
    ///
    /// Frames this function's drivers dropped while it could still write
    /// them are reused first (zeroed again): they are out of use for
    /// anything but this function until its claim ends.
    pub fn dma_buffer(&self, bytes: usize) -> Result<crate::mm::DmaBuffer, PciError> {
        self.check_live()?;
        let pages = crate::mm::dma::pages_for(bytes);
        match self.take_deferred(|_, p| p == pages, false)? {
            Some(phys) => crate::mm::DmaBuffer::reuse(self.info.address, self.token, self.epoch, phys, pages, true).ok_or(PciError::NoMemory),
            None => crate::mm::DmaBuffer::new_for(self.info.address, self.token, self.epoch, bytes).map_err(PciError::OutOfMemory),
        }
    }

    /// The DMA buffer of `bytes` at `phys` that a driver of this function
    /// dropped while the function could still write it (a driver handing
    /// the device over to its successor, which finds the same rings where
    /// the device has them), *not* zeroed: what the last driver and the
    /// device left in it. `NoKeptBuffer` unless exactly such a buffer waits
    /// under this claim (or the claim it took over), and never one a
    /// faulted driver left (see `Deferred`: a faulted driver's data is not
    /// handed on).
    pub fn dma_buffer_kept(&self, phys: u64, bytes: usize) -> Result<crate::mm::DmaBuffer, PciError> {
        self.check_live()?;
        let pages = crate::mm::dma::pages_for(bytes);
        match self.take_deferred(|at, p| at == phys && p == pages, true)? {
            Some(phys) => crate::mm::DmaBuffer::reuse(self.info.address, self.token, self.epoch, phys, pages, false).ok_or(PciError::NoMemory),
            None => Err(PciError::NoKeptBuffer { phys, bytes }),
        }
    }

    /// Claims the function at `address` as its last driver handed it over
    /// (see [`HandoverWindow`]), with what that driver left for this one:
    /// into `buffers`, in order, the DMA buffer at each place and length
    /// of `kept`, as [`dma_buffer_kept`](Self::dma_buffer_kept) gives them,
    /// and the I/O ports of BAR `bar`. All or nothing: on an error what
    /// the call took is let go again (the buffers first, kept under the
    /// claim as before; then the claim, which lingers if a window is
    /// open) and the slots it filled are `None` again; a buffer a slot it
    /// fills held before is dropped (as by any assignment), other slots
    /// are not touched. `NoKeptBuffer` (taking nothing) if `buffers` has
    /// fewer slots than `kept` places.
    ///
    /// Nothing a driver could not do with [`claim`](Self::claim),
    /// `dma_buffer_kept` and [`io_ports`](Self::io_ports): one call, so
    /// that a driver taking a device over in a swap runs little code of
    /// its own once the claim is made. (That code is new to the processor
    /// when the swap's gate closes; an emulator translates code on first
    /// use, which made most of a driver swap's downtime under QEMU's TCG.)
    pub fn take_over(address: PciAddress, kept: &[(u64, usize)], buffers: &mut [Option<crate::mm::DmaBuffer>], bar: usize) -> Result<(PciDevice, IoPorts), PciError> {
        if let Some(&(phys, bytes)) = kept.get(buffers.len()) {
            return Err(PciError::NoKeptBuffer { phys, bytes });
        }
        let device = Self::claim(address)?;
        let mut filled = 0;
        let ports = buffers
            .iter_mut()
            .zip(kept)
            .try_for_each(|(slot, &(phys, bytes))| {
                *slot = Some(device.dma_buffer_kept(phys, bytes)?);
                filled += 1;
                Ok(())
            })
            .and_then(|()| device.io_ports(bar));
        match ports {
            Ok(ports) => Ok((device, ports)),
            Err(e) => {
                // The buffers go back while the claim still holds, kept
                // under it for the next driver as before; then the claim.
                buffers.iter_mut().take(filled).for_each(|slot| drop(slot.take()));
                drop(device);
                Err(e)
            }
        }
    }

    /// Takes the first dropped buffer of this claim that `fits` (and, if
    /// it is to be `keep`t unzeroed, may be: see `Deferred`).
    fn take_deferred(&self, fits: impl Fn(u64, u64) -> bool, keep: bool) -> Result<Option<u64>, PciError> {
        let mut claims = CLAIMED.lock();
        let claim = claims.live.iter_mut().find(|c| Arc::ptr_eq(&c.live, &self.live)).ok_or(PciError::Revoked(self.info.address))?;
        let found = claim.deferred.iter().position(|&(phys, pages, may_keep)| fits(phys, pages) && (may_keep || !keep));
        Ok(found.map(|at| claim.deferred.swap_remove(at).0))
    }
}

impl Drop for PciDevice {
    fn drop(&mut self) {
        release(&self.live);
    }
}
