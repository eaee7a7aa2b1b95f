//! virtio-blk over PCI, legacy (virtio 0.9.5) interface: QEMU's default
//! `virtio-blk-pci` is transitional and offers it in BAR 0 as I/O ports.
//!
//! One virtqueue, one request at a time: the header, the data and the
//! status byte live in one DMA buffer; a request is a chain of three
//! descriptors, and completion is polled on the used ring (interrupts are
//! suppressed), with a timeout. Requests larger than [`MAX_BYTES`] are
//! split.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use framekernel::io::IoPorts;
use framekernel::mm::DmaBuffer;
use framekernel::pci::{PciDevice, PciError};
use tessera_virtio::{Attachment, field, put};
use tessera_cell_api::block::{BlockDriver, BlockError, DeviceInfo, Export, SECTOR_SIZE};
use tessera_virtio::{
    AVAIL_NO_INTERRUPT, CONFIG, DESC_NEXT, DESC_WRITE, GUEST_FEATURES, ISR, QUEUE_NOTIFY, QUEUE_PFN, QUEUE_SELECT, QUEUE_SIZE, STATUS,
    STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED,
};

/// Transitional virtio-blk (legacy interface available).
const DEVICE_LEGACY: u16 = 0x1001;
/// Modern-only virtio-blk (not driven here).
const DEVICE_MODERN: u16 = 0x1042;

const CONFIG_CAPACITY: u16 = CONFIG;

const FEATURE_RO: u32 = 1 << 5;
const FEATURE_FLUSH: u32 = 1 << 9;

const REQUEST_IN: u32 = 0;
const REQUEST_OUT: u32 = 1;
const REQUEST_FLUSH: u32 = 4;


/// Largest transfer in one request.
pub const MAX_BYTES: usize = 64 * 1024;
/// Where the data starts in the request buffer (header at 0, status at 16).
const DATA: usize = 512;
/// How long a request may take.
const TIMEOUT_NS: u64 = 5_000_000_000;

/// Recent write sectors, kept for `info()`. The faulty build declares the
/// log one entry short of the index range it uses (`writes % 50`): an
/// off-by-one that panics with an out-of-bounds index on every 50th write.
#[cfg(not(feature = "faulty"))]
const WRITE_LOG: usize = 50;
#[cfg(feature = "faulty")]
const WRITE_LOG: usize = 49;
const WRITE_LOG_SPAN: u64 = 50;

/// The device, once set up. Field order matters: the PCI handle drops
/// first and turns bus mastering off before the DMA buffers are freed.
struct Device {
    pci: PciDevice,
    /// Which virtio-blk function of the bus (0: the first).
    nth: u32,
    /// Handed over to the next instance: left running when dropped.
    handed_over: bool,
    /// A request timed out and may still be in the device's hands: the
    /// ring indices are not to be trusted, so the device is not handed
    /// over (the next instance resets it).
    timed_out: bool,
    ports: IoPorts,
    queue: DmaBuffer,
    request: DmaBuffer,
    queue_size: u16,
    used_offset: usize,
    avail_idx: u16,
    used_idx: u16,
    sectors: u64,
    read_only: bool,
    flush: bool,
    writes: u64,
    write_log: [u64; WRITE_LOG],
}

/// The driver: a device, or why there is none.
struct VirtioBlk {
    device: Attachment<Device>,
}

fn setup(nth: u32) -> Result<Device, String> {
    let info = tessera_virtio::find("virtio-blk", DEVICE_LEGACY, DEVICE_MODERN, nth)?;
    let (pci, ports, offered) = tessera_virtio::start(&info)?;
    let io = |e| format!("register access: {e:?}");
    let accepted = offered & (FEATURE_RO | FEATURE_FLUSH);
    ports.write::<u32>(GUEST_FEATURES, accepted).map_err(io)?;
    ports.write::<u16>(QUEUE_SELECT, 0).map_err(io)?;
    let queue_size = ports.read::<u16>(QUEUE_SIZE).map_err(io)?;
    if queue_size < 4 || !queue_size.is_power_of_two() {
        let _ = ports.write::<u8>(STATUS, STATUS_FAILED);
        return Err(format!("unusable queue size {queue_size}"));
    }
    let q = usize::from(queue_size);
    let (used_offset, bytes) = tessera_virtio::ring_layout(queue_size);
    let queue = pci.dma_buffer(bytes).map_err(|e| format!("{e}"))?;
    let request = pci.dma_buffer(DATA + MAX_BYTES).map_err(|e| format!("{e}"))?;
    let pfn = u32::try_from(queue.phys_addr() >> 12).map_err(|_| "queue above 16 TiB".to_string())?;
    let dma = |e| format!("{e}");
    queue.write::<u16>(16 * q, AVAIL_NO_INTERRUPT).map_err(dma)?;
    ports.write::<u32>(QUEUE_PFN, pfn).map_err(io)?;
    ports.write::<u8>(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK).map_err(io)?;
    let low = ports.read::<u32>(CONFIG_CAPACITY).map_err(io)?;
    let high = ports.read::<u32>(CONFIG_CAPACITY + 4).map_err(io)?;
    Ok(Device {
        pci,
        nth,
        handed_over: false,
        timed_out: false,
        ports,
        queue,
        request,
        queue_size,
        used_offset,
        avail_idx: 0,
        used_idx: 0,
        sectors: u64::from(high) << 32 | u64::from(low),
        read_only: accepted & FEATURE_RO != 0,
        flush: accepted & FEATURE_FLUSH != 0,
        writes: 0,
        write_log: [0; WRITE_LOG],
    })
}


impl Device {
    fn describe(&self) -> DeviceInfo {
        DeviceInfo {
            description: format!("virtio-blk at {} (queue of {})", self.pci.info().address, self.queue_size),
            sectors: self.sectors,
            read_only: self.read_only,
        }
    }

    fn set_desc(&self, index: usize, addr: u64, len: u32, flags: u16, next: u16) -> Result<(), BlockError> {
        let at = index * 16;
        let q = &self.queue;
        let dma = |_| BlockError::Device(0xff);
        q.write::<u64>(at, addr).map_err(dma)?;
        q.write::<u32>(at + 8, len).map_err(dma)?;
        q.write::<u16>(at + 12, flags).map_err(dma)?;
        q.write::<u16>(at + 14, next).map_err(dma)
    }

    /// One request of `len` data bytes (already in the buffer for writes).
    fn request(&mut self, kind: u32, sector: u64, len: usize) -> Result<(), BlockError> {
        let dma = |_| BlockError::Device(0xff);
        let r = &self.request;
        r.write::<u32>(0, kind).map_err(dma)?;
        r.write::<u32>(4, 0).map_err(dma)?;
        r.write::<u64>(8, sector).map_err(dma)?;
        r.write::<u8>(16, 0xff).map_err(dma)?;
        let base = r.phys_addr();
        if len == 0 {
            self.set_desc(0, base, 16, DESC_NEXT, 2)?;
        } else {
            self.set_desc(0, base, 16, DESC_NEXT, 1)?;
            let flags = DESC_NEXT | if kind == REQUEST_IN { DESC_WRITE } else { 0 };
            self.set_desc(1, base + DATA as u64, len as u32, flags, 2)?;
        }
        self.set_desc(2, base + 16, 1, DESC_WRITE, 0)?;
        let q = usize::from(self.queue_size);
        let avail = 16 * q;
        let slot = usize::from(self.avail_idx % self.queue_size);
        self.queue.write::<u16>(avail + 4 + 2 * slot, 0).map_err(dma)?;
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.queue.write::<u16>(avail + 2, self.avail_idx).map_err(dma)?;
        fence(Ordering::SeqCst);
        self.ports.write::<u16>(QUEUE_NOTIFY, 0).map_err(|_| BlockError::Device(0xfe))?;
        let started = framekernel::time::now_ns();
        loop {
            fence(Ordering::SeqCst);
            let used = self.queue.read::<u16>(self.used_offset + 2).map_err(dma)?;
            if used != self.used_idx {
                self.used_idx = used;
                break;
            }
            if framekernel::time::now_ns().saturating_sub(started) > TIMEOUT_NS {
                self.timed_out = true;
                return Err(BlockError::Timeout);
            }
            core::hint::spin_loop();
        }
        let _ = self.ports.read::<u8>(ISR); // acknowledge any interrupt
        match self.request.read::<u8>(16).map_err(dma)? {
            0 => Ok(()),
            status => Err(BlockError::Device(status)),
        }
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlockError> {
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::BadLength(len));
        }
        let count = (len / SECTOR_SIZE) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(()),
            _ => Err(BlockError::OutOfRange { sector, sectors: self.sectors }),
        }
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len())?;
        for (i, chunk) in buf.chunks_mut(MAX_BYTES).enumerate() {
            let at = sector + (i * MAX_BYTES / SECTOR_SIZE) as u64;
            self.request(REQUEST_IN, at, chunk.len())?;
            self.request.read_bytes(DATA, chunk).map_err(|_| BlockError::Device(0xff))?;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.check(sector, buf.len())?;
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        for (i, chunk) in buf.chunks(MAX_BYTES).enumerate() {
            let at = sector + (i * MAX_BYTES / SECTOR_SIZE) as u64;
            // Log the write first (see WRITE_LOG).
            let index = (self.writes % WRITE_LOG_SPAN) as usize;
            #[allow(clippy::indexing_slicing)] // the faulty build's bug lives here
            {
                self.write_log[index] = at;
            }
            self.writes += 1;
            self.request.write_bytes(DATA, chunk).map_err(|_| BlockError::Device(0xff))?;
            self.request(REQUEST_OUT, at, chunk.len())?;
        }
        Ok(())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Reset: the device forgets the queue before its memory is freed
        // (unless the next instance goes on with it).
        if !self.handed_over {
            let _ = self.ports.write::<u8>(STATUS, 0);
        }
    }
}

/// What `hand_over` gives: a version, then the device and its queue, at
/// fixed places (little-endian): the function's number (8), the queue's
/// and the request buffer's address and size (12, 20, 28, 36), the queue
/// size and the two ring indices (44, 46, 48), the sectors (50), the
/// writes so far (58) and the read-only and flush flags (66).
const HANDOVER_MAGIC: &[u8; 8] = b"vblk-ho1";
const HANDOVER_LEN: usize = 67;

impl Device {
    /// Lets go of the device after `handover_state` gave `state`, without
    /// resetting it unless there was nothing to give (a timed-out request).
    fn let_go(&mut self, state: &[u8]) {
        self.handed_over = !state.is_empty();
    }

    /// What `hand_over` gives (nothing after a timed-out request).
    fn handover_state(&self) -> Vec<u8> {
        if self.timed_out {
            return Vec::new();
        }
        let mut out = [0u8; HANDOVER_LEN];
        put(&mut out, 0, HANDOVER_MAGIC);
        put(&mut out, 8, &self.nth.to_le_bytes());
        put(&mut out, 12, &self.queue.phys_addr().to_le_bytes());
        put(&mut out, 20, &(self.queue.len() as u64).to_le_bytes());
        put(&mut out, 28, &self.request.phys_addr().to_le_bytes());
        put(&mut out, 36, &(self.request.len() as u64).to_le_bytes());
        put(&mut out, 44, &self.queue_size.to_le_bytes());
        put(&mut out, 46, &self.avail_idx.to_le_bytes());
        put(&mut out, 48, &self.used_idx.to_le_bytes());
        put(&mut out, 50, &self.sectors.to_le_bytes());
        put(&mut out, 58, &self.writes.to_le_bytes());
        put(&mut out, 66, &[u8::from(self.read_only) | u8::from(self.flush) << 1]);
        Vec::from(out)
    }

    /// The device as a `hand_over` left it: claimed again, its rings
    /// taken back where the device has them, checked against what the
    /// device says (still driven, that queue).
    fn take_over(state: &[u8]) -> Result<Device, &'static str> {
        if state.len() != HANDOVER_LEN || field::<8>(state, 0) != *HANDOVER_MAGIC {
            return Err("no handover of this driver version");
        }
        let nth = u32::from_le_bytes(field(state, 8));
        let [queue_at, queue_len, request_at, request_len] = [12, 20, 28, 36].map(|at| u64::from_le_bytes(field(state, at)));
        let [queue_size, avail_idx, used_idx] = [44, 46, 48].map(|at| u16::from_le_bytes(field(state, at)));
        let [sectors, writes] = [50, 58].map(|at| u64::from_le_bytes(field(state, at)));
        let [flags] = field::<1>(state, 66);
        if queue_size < 4 || !queue_size.is_power_of_two() {
            return Err("handed an unusable queue size");
        }
        let (used_offset, bytes) = tessera_virtio::ring_layout(queue_size);
        let (queue_len, request_len) = (usize::try_from(queue_len).unwrap_or(0), usize::try_from(request_len).unwrap_or(0));
        if queue_len < bytes || request_len < DATA + MAX_BYTES {
            return Err("handed buffers too small for the queue");
        }
        let info = tessera_virtio::find("virtio-blk", DEVICE_LEGACY, DEVICE_MODERN, nth).map_err(|_| "the device is gone")?;
        // The claim, the rings and the ports in one call of the base (see
        // `PciDevice::take_over`): little code of this copy's own runs
        // with the swap's gate closed.
        let mut buffers = [None, None];
        let (pci, ports) = PciDevice::take_over(info.address, &[(queue_at, queue_len), (request_at, request_len)], &mut buffers, 0).map_err(|e| match e {
            PciError::Busy(_) => "the device is claimed",
            PciError::NoKeptBuffer { .. } => "the rings were not left",
            _ => "the device cannot be taken over",
        })?;
        let [Some(queue), Some(request)] = buffers else {
            return Err("the rings were not left");
        };
        let status = ports.read::<u8>(STATUS).map_err(|_| "register access")?;
        let pfn = ports.read::<u32>(QUEUE_PFN).map_err(|_| "register access")?;
        if status != STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK || u64::from(pfn) != queue_at >> 12 {
            // Someone reset it: the caller sets it up afresh. (Nothing to
            // reset here: the device has no queue of ours.)
            return Err("the device was not left running");
        }
        Ok(Device {
            pci,
            nth,
            handed_over: false,
            timed_out: false,
            ports,
            queue,
            request,
            queue_size,
            used_offset,
            avail_idx,
            used_idx,
            sectors,
            read_only: flags & 1 != 0,
            flush: flags & 2 != 0,
            writes,
            write_log: [0; WRITE_LOG],
        })
    }
}

impl BlockDriver for VirtioBlk {
    fn attach(&self, nth: u32) -> Result<DeviceInfo, BlockError> {
        let mut slot = self.device.lock();
        // A device this instance drove is let go first (its claim ends).
        *slot = Err("re-attaching".into());
        *slot = setup(nth);
        if let Err(why) = &*slot {
            log::info!("virtio_blk: {why}");
        }
        match &*slot {
            Ok(device) => Ok(device.describe()),
            Err(why) => Err(BlockError::NoDevice(why.clone())),
        }
    }

    fn info(&self) -> Result<DeviceInfo, BlockError> {
        match &*self.device.lock() {
            Ok(device) => Ok(device.describe()),
            Err(why) => Err(BlockError::NoDevice(why.clone())),
        }
    }

    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        match &mut *self.device.lock() {
            Ok(device) => device.read(sector, buf),
            Err(why) => Err(BlockError::NoDevice(why.clone())),
        }
    }

    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError> {
        match &mut *self.device.lock() {
            Ok(device) => device.write(sector, buf),
            Err(why) => Err(BlockError::NoDevice(why.clone())),
        }
    }

    fn flush(&self) -> Result<(), BlockError> {
        match &mut *self.device.lock() {
            Ok(device) if device.flush => device.request(REQUEST_FLUSH, 0, 0),
            Ok(_) => Ok(()),
            Err(why) => Err(BlockError::NoDevice(why.clone())),
        }
    }

    fn hand_over(&self) -> Vec<u8> {
        // The device leaves this instance now (its claim lingers for the
        // next one): dropping the instance later touches nothing.
        self.device.hand_over(true, Device::handover_state, Device::let_go)
    }

    fn handover_state(&self) -> Vec<u8> {
        self.device.hand_over(false, Device::handover_state, Device::let_go)
    }

    fn take_over(&self, state: &[u8]) -> Result<(), BlockError> {
        // A device this instance already holds (a rehearsal that found
        // the old claim revoked) is let go first, reset: its indices are
        // stale, and the take-over below then fails and the instance is
        // attached afresh.
        drop(self.device.take());
        self.device.set(Device::take_over(state).map_err(|why| BlockError::NoDevice(why.into()))?);
        Ok(())
    }

    fn attached(&self) -> bool {
        self.device.attached()
    }
}

fn make() -> Export {
    Box::new(VirtioBlk { device: Attachment::new() })
}

tessera_cell_api::cell_entry!(block, make);
