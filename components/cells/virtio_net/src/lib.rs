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
use tessera_virtio::{Attachment, field, put};
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
    /// Which virtio-net function of the bus (0: the first).
    nth: u32,
    /// Handed over to the next instance: left running when dropped.
    handed_over: bool,
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
    device: Attachment<Device>,
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
    Ok(Device { pci, nth, handed_over: false, ports, rx, tx, tx_free, mac, status: accepted & FEATURE_STATUS != 0, received: 0 })
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
        // Reset: the device forgets the queues before their memory is
        // freed (unless the next instance goes on with them).
        if !self.handed_over {
            let _ = self.ports.write::<u8>(STATUS, 0);
        }
    }
}

/// What `hand_over` gives, at fixed places (little-endian): a version
/// (0), the function's number (8), the receive queue (12) and the
/// transmit queue (52) — each its ring's address and size and its
/// buffers' address and size (u64), then its size, buffer count,
/// available and used index (u16) — the hardware address (92), the
/// status feature (98), the frames received (99) and a bitmap of the
/// transmit buffers not in the device's hands (107).
const HANDOVER_MAGIC: &[u8; 8] = b"vnet-ho1";
const QUEUE_STATE: usize = 8 * 4 + 2 * 4;
const HANDOVER_LEN: usize = 12 + 2 * QUEUE_STATE + 6 + 1 + 8 + 16;

impl Queue {
    fn encode(&self, out: &mut [u8], at: usize) {
        put(out, at, &self.ring.phys_addr().to_le_bytes());
        put(out, at + 8, &(self.ring.len() as u64).to_le_bytes());
        put(out, at + 16, &self.buffers.phys_addr().to_le_bytes());
        put(out, at + 24, &(self.buffers.len() as u64).to_le_bytes());
        for (i, value) in [self.size, self.count, self.avail_idx, self.used_idx].into_iter().enumerate() {
            put(out, at + 32 + 2 * i, &value.to_le_bytes());
        }
    }
}

/// A queue as `encode` left it, read and checked before anything is
/// claimed (so that a rehearsal, which cannot claim the card, runs it).
#[derive(Clone, Copy)]
struct QueueState {
    ring: (u64, usize),
    buffers: (u64, usize),
    size: u16,
    count: u16,
    used_offset: usize,
    avail_idx: u16,
    used_idx: u16,
}

impl QueueState {
    fn decode(state: &[u8], at: usize) -> Result<QueueState, &'static str> {
        let [ring_at, ring_len, buffers_at, buffers_len] = [0, 8, 16, 24].map(|o| u64::from_le_bytes(field(state, at + o)));
        let [size, count, avail_idx, used_idx] = [32, 34, 36, 38].map(|o| u16::from_le_bytes(field(state, at + o)));
        if size < 4 || !size.is_power_of_two() || count == 0 || count > size.min(BUFFERS) {
            return Err("handed an unusable queue");
        }
        let (used_offset, bytes) = tessera_virtio::ring_layout(size);
        let (ring_len, buffers_len) = (usize::try_from(ring_len).unwrap_or(0), usize::try_from(buffers_len).unwrap_or(0));
        if ring_len < bytes || buffers_len < usize::from(count) * BUFFER {
            return Err("handed buffers too small for the queue");
        }
        Ok(QueueState { ring: (ring_at, ring_len), buffers: (buffers_at, buffers_len), size, count, used_offset, avail_idx, used_idx })
    }

    /// Queue `index` again: its ring and buffers taken back in place,
    /// checked against what the device says.
    fn take(self, pci: &PciDevice, ports: &IoPorts, index: u16) -> Result<Queue, &'static str> {
        ports.write::<u16>(QUEUE_SELECT, index).map_err(|_| "register access")?;
        let pfn = ports.read::<u32>(QUEUE_PFN).map_err(|_| "register access")?;
        if u64::from(pfn) != self.ring.0 >> 12 {
            return Err("the device has another queue");
        }
        let ring = pci.dma_buffer_kept(self.ring.0, self.ring.1).map_err(|_| "the ring was not left")?;
        let buffers = pci.dma_buffer_kept(self.buffers.0, self.buffers.1).map_err(|_| "the buffers were not left")?;
        let QueueState { size, count, used_offset, avail_idx, used_idx, .. } = self;
        Ok(Queue { index, ring, buffers, size, count, used_offset, avail_idx, used_idx })
    }
}

impl Device {
    /// Lets go of the card after `handover_state` gave what the next
    /// instance needs to go on driving it: without resetting it.
    fn let_go(&mut self, _state: &[u8]) {
        self.handed_over = true;
    }

    /// What `hand_over` gives.
    fn handover_state(&self) -> Vec<u8> {
        let mut out = [0u8; HANDOVER_LEN];
        put(&mut out, 0, HANDOVER_MAGIC);
        put(&mut out, 8, &self.nth.to_le_bytes());
        self.rx.encode(&mut out, 12);
        self.tx.encode(&mut out, 12 + QUEUE_STATE);
        let at = 12 + 2 * QUEUE_STATE;
        put(&mut out, at, &self.mac);
        put(&mut out, at + 6, &[u8::from(self.status)]);
        put(&mut out, at + 7, &self.received.to_le_bytes());
        let mut free = [0u8; 16];
        for &id in &self.tx_free {
            if let Some(byte) = free.get_mut(usize::from(id / 8)) {
                *byte |= 1 << (id % 8);
            }
        }
        put(&mut out, at + 15, &free);
        Vec::from(out)
    }

    /// The card as a `hand_over` left it: claimed again, both queues taken
    /// back where the device has them, checked against what the device
    /// says (still driven, those queues).
    fn take_over(state: &[u8]) -> Result<Device, &'static str> {
        if state.len() != HANDOVER_LEN || field::<8>(state, 0) != *HANDOVER_MAGIC {
            return Err("no handover of this driver version");
        }
        let nth = u32::from_le_bytes(field(state, 8));
        let rx = QueueState::decode(state, 12)?;
        let tx = QueueState::decode(state, 12 + QUEUE_STATE)?;
        let at = 12 + 2 * QUEUE_STATE;
        let free: [u8; 16] = field(state, at + 15);
        let tx_free: Vec<u16> = (0..tx.count).rev().filter(|&id| free.get(usize::from(id / 8)).is_some_and(|b| b & (1 << (id % 8)) != 0)).collect();
        let (mac, status, received) = (field(state, at), field::<1>(state, at + 6) != [0], u64::from_le_bytes(field(state, at + 7)));
        let info = tessera_virtio::find("virtio-net", DEVICE_LEGACY, DEVICE_MODERN, nth).map_err(|_| "the card is gone")?;
        let pci = PciDevice::claim(info.address).map_err(|_| "the card is claimed")?;
        let ports = pci.io_ports(0).map_err(|_| "BAR 0 is taken")?;
        let driven = ports.read::<u8>(STATUS).map_err(|_| "register access")?;
        if driven != STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK {
            return Err("the card was not left running");
        }
        let rx = rx.take(&pci, &ports, RX)?;
        let tx = tx.take(&pci, &ports, TX)?;
        Ok(Device { pci, nth, handed_over: false, ports, rx, tx, tx_free, mac, status, received })
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

    fn hand_over(&self) -> Vec<u8> {
        // The card leaves this instance now (its claim lingers for the
        // next one): dropping the instance later touches nothing.
        self.device.hand_over(true, Device::handover_state, Device::let_go)
    }

    fn handover_state(&self) -> Vec<u8> {
        self.device.hand_over(false, Device::handover_state, Device::let_go)
    }

    fn take_over(&self, state: &[u8]) -> Result<(), NetError> {
        // A card this instance already holds (a rehearsal that found the
        // old claim revoked) is let go first, reset: its indices are
        // stale, and the take-over below then fails and the instance is
        // attached afresh.
        drop(self.device.take());
        self.device.set(Device::take_over(state).map_err(|why| NetError::NoDevice(why.into()))?);
        Ok(())
    }

    fn attached(&self) -> bool {
        self.device.attached()
    }
}

fn make() -> Export {
    Box::new(VirtioNet { device: Attachment::new() })
}

tessera_cell_api::cell_entry!(net, make);
