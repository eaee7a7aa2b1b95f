//! virtio-net over PCI, legacy (virtio 0.9.5) interface: QEMU's default
//! `virtio-net-pci` is transitional and offers it in BAR 0 as I/O ports.
//!
//! Two virtqueues: 0 receives, 1 transmits. Every frame has one buffer
//! of [`BUFFER`] bytes in a DMA area per queue, holding the 10-byte
//! `virtio_net_hdr` (no offloads are negotiated, so it is all zero going
//! out and ignored coming in) and then the frame. Receive buffers are all
//! given to the device at attach and handed back as each frame is taken;
//! transmit buffers are reclaimed from the used ring as the device
//! finishes with them. Completion is polled; the card raises its
//! interrupt line for received frames, which `receive` acknowledges.
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
use framekernel::pci::PciDevice;
use framekernel::sync::Mutex;
use tessera_cell_api::net::{Export, MAX_FRAME, MIN_FRAME, NetError, NicDriver, NicInfo};
use tessera_virtio::{
    AVAIL_NO_INTERRUPT, CONFIG, DESC_WRITE, GUEST_FEATURES, ISR, QUEUE_NOTIFY, QUEUE_PFN, QUEUE_SELECT, QUEUE_SIZE, STATUS, STATUS_ACKNOWLEDGE,
    STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FAILED,
};

/// Transitional virtio-net (legacy interface available).
const DEVICE_LEGACY: u16 = 0x1000;
/// Modern-only virtio-net (not driven here).
const DEVICE_MODERN: u16 = 0x1041;

const CONFIG_MAC: u16 = CONFIG;
const CONFIG_STATUS: u16 = CONFIG + 6;

const FEATURE_MAC: u32 = 1 << 5;
const FEATURE_STATUS: u32 = 1 << 16;
const LINK_UP: u16 = 1;

const RX: u16 = 0;
const TX: u16 = 1;
/// `virtio_net_hdr` without `num_buffers` (no mergeable buffers).
const HEADER: usize = 10;
/// Bytes per frame buffer: header and the largest frame, rounded up.
const BUFFER: usize = 2048;
/// Buffers per queue (fewer if the device's queue is smaller).
const BUFFERS: u16 = 128;

/// The faulty build panics on every `FAULT_EVERY`th received frame.
const FAULT_EVERY: u64 = 200;

/// One legacy virtqueue: descriptor table, available ring, used ring
/// (in one DMA area laid out as virtio 0.9.5 says), and the frame
/// buffers its descriptors point at.
struct Queue {
    index: u16,
    ring: DmaBuffer,
    buffers: DmaBuffer,
    size: u16,
    count: u16,
    used_offset: usize,
    avail_idx: u16,
    used_idx: u16,
}

impl Queue {
    fn new(pci: &PciDevice, ports: &IoPorts, index: u16, no_interrupts: bool) -> Result<Queue, String> {
        let io = |e| format!("register access: {e:?}");
        ports.write::<u16>(QUEUE_SELECT, index).map_err(io)?;
        let size = ports.read::<u16>(QUEUE_SIZE).map_err(io)?;
        if size < 4 || !size.is_power_of_two() {
            return Err(format!("unusable size {size} of queue {index}"));
        }
        let q = usize::from(size);
        let (used_offset, bytes) = tessera_virtio::ring_layout(size);
        let ring = pci.dma_buffer(bytes).map_err(|e| format!("{e}"))?;
        let count = size.min(BUFFERS);
        let buffers = pci.dma_buffer(usize::from(count) * BUFFER).map_err(|e| format!("{e}"))?;
        let dma = |e| format!("{e}");
        for i in 0..usize::from(count) {
            let at = 16 * i;
            ring.write::<u64>(at, buffers.phys_addr() + (i * BUFFER) as u64).map_err(dma)?;
            ring.write::<u32>(at + 8, BUFFER as u32).map_err(dma)?;
            ring.write::<u16>(at + 12, if index == RX { DESC_WRITE } else { 0 }).map_err(dma)?;
        }
        if no_interrupts {
            ring.write::<u16>(16 * q, AVAIL_NO_INTERRUPT).map_err(dma)?;
        }
        let pfn = u32::try_from(ring.phys_addr() >> 12).map_err(|_| "queue above 16 TiB".to_string())?;
        ports.write::<u32>(QUEUE_PFN, pfn).map_err(io)?;
        Ok(Queue { index, ring, buffers, size, count, used_offset, avail_idx: 0, used_idx: 0 })
    }

    /// Makes descriptor `id` (of `len` bytes) available to the device.
    fn offer(&mut self, id: u16, len: usize) -> Result<(), NetError> {
        let dma = |e| NetError::Device(format!("{e}"));
        let at = 16 * usize::from(id);
        self.ring.write::<u32>(at + 8, len as u32).map_err(dma)?;
        let avail = 16 * usize::from(self.size);
        let slot = usize::from(self.avail_idx % self.size);
        self.ring.write::<u16>(avail + 4 + 2 * slot, id).map_err(dma)?;
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ring.write::<u16>(avail + 2, self.avail_idx).map_err(dma)?;
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// The next buffer the device finished with: its id and the bytes it
    /// wrote; `None` when there is none. A used entry naming a buffer
    /// this queue does not have is the device's error.
    fn take_used(&mut self) -> Result<Option<(u16, usize)>, NetError> {
        let dma = |e| NetError::Device(format!("{e}"));
        fence(Ordering::SeqCst);
        let used = self.ring.read::<u16>(self.used_offset + 2).map_err(dma)?;
        if used == self.used_idx {
            return Ok(None);
        }
        let slot = usize::from(self.used_idx % self.size);
        let at = self.used_offset + 4 + 8 * slot;
        let id = self.ring.read::<u32>(at).map_err(dma)?;
        let len = self.ring.read::<u32>(at + 4).map_err(dma)? as usize;
        self.used_idx = self.used_idx.wrapping_add(1);
        match u16::try_from(id) {
            Ok(id) if id < self.count => Ok(Some((id, len.min(BUFFER)))),
            _ => Err(NetError::Device(format!("queue {} returned buffer {id}, which it was not given", self.index))),
        }
    }
}

/// The card, once set up. Field order matters: the PCI handle drops first
/// and turns bus mastering off before the DMA areas are freed.
struct Device {
    pci: PciDevice,
    ports: IoPorts,
    rx: Queue,
    tx: Queue,
    /// Transmit buffers not given to the device.
    tx_free: Vec<u16>,
    mac: [u8; 6],
    status: bool,
    received: u64,
}

/// The driver: a card, or why there is none.
struct VirtioNet {
    device: Mutex<Result<Device, String>>,
}

fn setup(nth: u32) -> Result<Device, String> {
    let info = tessera_virtio::find("virtio-net", DEVICE_LEGACY, DEVICE_MODERN, nth)?;
    let (pci, ports, offered) = tessera_virtio::start(&info)?;
    let io = |e| format!("register access: {e:?}");
    if offered & FEATURE_MAC == 0 {
        let _ = ports.write::<u8>(STATUS, STATUS_FAILED);
        return Err("the card has no hardware address (VIRTIO_NET_F_MAC)".into());
    }
    let accepted = offered & (FEATURE_MAC | FEATURE_STATUS);
    ports.write::<u32>(GUEST_FEATURES, accepted).map_err(io)?;
    let queues = (|| {
        let mut rx = Queue::new(&pci, &ports, RX, false)?;
        let tx = Queue::new(&pci, &ports, TX, true)?;
        for id in 0..rx.count {
            rx.offer(id, BUFFER).map_err(|e| format!("{e}"))?;
        }
        Ok::<_, String>((rx, tx))
    })();
    let (rx, tx) = match queues {
        Ok(queues) => queues,
        Err(why) => {
            let _ = ports.write::<u8>(STATUS, STATUS_FAILED);
            return Err(why);
        }
    };
    ports.write::<u8>(STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK).map_err(io)?;
    ports.write::<u16>(QUEUE_NOTIFY, RX).map_err(io)?;
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = ports.read::<u8>(CONFIG_MAC + i as u16).map_err(io)?;
    }
    let tx_free = (0..tx.count).rev().collect();
    Ok(Device { pci, ports, rx, tx, tx_free, mac, status: accepted & FEATURE_STATUS != 0, received: 0 })
}

impl Device {
    fn describe(&self) -> NicInfo {
        let link_up = !self.status || self.ports.read::<u16>(CONFIG_STATUS).is_ok_and(|s| s & LINK_UP != 0);
        NicInfo {
            description: format!("virtio-net at {} (queues of {} and {})", self.pci.info().address, self.rx.size, self.tx.size),
            mac: self.mac,
            link_up,
            irq: self.pci.info().interrupt.0,
        }
    }

    fn transmit(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if !(MIN_FRAME..=MAX_FRAME).contains(&frame.len()) {
            return Err(NetError::BadLength(frame.len()));
        }
        while let Some((id, _)) = self.tx.take_used()? {
            self.tx_free.push(id);
        }
        let id = self.tx_free.pop().ok_or(NetError::Full)?;
        let at = usize::from(id) * BUFFER;
        let dma = |e| NetError::Device(format!("{e}"));
        self.tx.buffers.write_bytes(at, &[0; HEADER]).map_err(dma)?;
        self.tx.buffers.write_bytes(at + HEADER, frame).map_err(dma)?;
        self.tx.offer(id, HEADER + frame.len())?;
        self.ports.write::<u16>(QUEUE_NOTIFY, TX).map_err(|e| NetError::Device(format!("notify: {e:?}")))
    }

    fn receive(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let _ = self.ports.read::<u8>(ISR); // acknowledges the interrupt
        let Some((id, len)) = self.rx.take_used()? else { return Ok(0) };
        self.received += 1;
        if cfg!(feature = "faulty") && self.received.is_multiple_of(FAULT_EVERY) {
            panic!("virtio_net-faulty: an injected bug on received frame {}", self.received);
        }
        let frame = len.saturating_sub(HEADER).min(MAX_FRAME);
        let n = frame.min(buf.len());
        let at = usize::from(id) * BUFFER + HEADER;
        let copied = match buf.get_mut(..n) {
            Some(out) => self.rx.buffers.read_bytes(at, out).map_err(|e| NetError::Device(format!("{e}"))),
            None => Ok(()),
        };
        // The buffer goes back to the device whatever happened to the frame.
        self.rx.offer(id, BUFFER)?;
        self.ports.write::<u16>(QUEUE_NOTIFY, RX).map_err(|e| NetError::Device(format!("notify: {e:?}")))?;
        copied?;
        if frame < MIN_FRAME {
            return Err(NetError::BadLength(frame));
        }
        Ok(n)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Reset: the device forgets the queues before their memory is freed.
        let _ = self.ports.write::<u8>(STATUS, 0);
    }
}

impl VirtioNet {
    fn with<R>(&self, f: impl FnOnce(&mut Device) -> Result<R, NetError>) -> Result<R, NetError> {
        match &mut *self.device.lock() {
            Ok(device) => f(device),
            Err(why) => Err(NetError::NoDevice(why.clone())),
        }
    }
}

impl NicDriver for VirtioNet {
    fn attach(&self, nth: u32) -> Result<NicInfo, NetError> {
        let mut slot = self.device.lock();
        // A card this instance drove is let go first (its claim ends).
        *slot = Err("re-attaching".into());
        *slot = setup(nth);
        if let Err(why) = &*slot {
            log::info!("virtio_net: {why}");
        }
        match &*slot {
            Ok(device) => Ok(device.describe()),
            Err(why) => Err(NetError::NoDevice(why.clone())),
        }
    }

    fn info(&self) -> Result<NicInfo, NetError> {
        self.with(|d| Ok(d.describe()))
    }

    fn transmit(&self, frame: &[u8]) -> Result<(), NetError> {
        self.with(|d| d.transmit(frame))
    }

    fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError> {
        self.with(|d| d.receive(buf))
    }
}

fn make() -> Export {
    Box::new(VirtioNet { device: Mutex::new(Err("not attached to a device".into())) })
}

tessera_cell_api::cell_entry!(net, make);
