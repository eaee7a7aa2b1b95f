//! Network interfaces: each card is served by a NIC driver cell through
//! a slot (`virtio_net` drives `eth0`), which the kernel calls to send
//! and receive Ethernet frames. A frame lost while the driver faults or
//! is swapped is lost as on a wire: the slot never retries a call.
use crate::errno::Errno;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel::sync::SpinLock;
use tessera_cell_api::net::{Export, NetError};

/// A NIC driver's slot.
pub type NicSlot = tessera_live_update::Slot<Export>;

/// One network interface.
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Its index (`if_nametoindex`; 1 is `lo`).
    pub index: u32,
    /// Its hardware address.
    pub mac: [u8; 6],
    slot: Arc<NicSlot>,
    /// Frames and bytes sent and received, and frames that failed.
    pub counters: Counters,
}

/// What `/proc/net/dev` counts.
#[derive(Default)]
pub struct Counters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_errors: AtomicU64,
    pub tx_dropped: AtomicU64,
}

static INTERFACES: SpinLock<Vec<Arc<Interface>>> = SpinLock::new(Vec::new());

/// Adds the card `slot` drives as interface `name`.
pub fn add_interface(name: &str, slot: Arc<NicSlot>, mac: [u8; 6]) -> Arc<Interface> {
    let mut all = INTERFACES.lock();
    // Index 1 is the loopback interface.
    let index = all.len() as u32 + 2;
    let interface = Arc::new(Interface { name: name.into(), index, mac, slot, counters: Counters::default() });
    all.push(interface.clone());
    interface
}

/// Every card's interface.
pub fn interfaces() -> Vec<Arc<Interface>> {
    INTERFACES.lock().clone()
}

/// The interface numbered `index`.
pub fn interface(index: u32) -> Option<Arc<Interface>> {
    INTERFACES.lock().iter().find(|i| i.index == index).cloned()
}

/// Frames taken from one card in one round, so that a flood cannot keep
/// the network task from sleeping.
const ROUND_FRAMES: usize = 64;

/// Drains every card of the frames it received and hands each to the
/// packet sockets. Returns the frames moved.
pub fn pump() -> usize {
    let mut moved = 0;
    let mut buf = alloc::vec![0u8; tessera_cell_api::net::MAX_FRAME];
    for interface in interfaces() {
        for _ in 0..ROUND_FRAMES {
            match interface.receive(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Some(frame) = buf.get(..n) {
                        crate::socket::deliver(&interface, frame);
                    }
                    moved += 1;
                }
            }
        }
    }
    moved
}

/// Starts the network task: the cards raise PCI interrupts the base does
/// not route yet, so it drains them every millisecond (every timer tick).
pub fn start_task() {
    let spawned = tessera_sched::spawn("net", || {
        loop {
            pump();
            crate::syscall::proc::kernel_sleep(1_000_000);
        }
    });
    if let Err(e) = spawned {
        log::warn!("net: no network task ({e:?}): frames are not received");
    }
}

fn errno(e: NetError) -> Errno {
    match e {
        NetError::BadLength(_) => Errno::EMSGSIZE,
        NetError::Full => Errno::ENOBUFS,
        NetError::NoDevice(_) => Errno::ENETDOWN,
        NetError::Device(_) => Errno::EIO,
    }
}

impl Interface {
    /// True while the card says its link is up.
    pub fn link_up(&self) -> bool {
        matches!(self.slot.call_with(false, (), |d, ()| d.info()), Ok(Ok(info)) if info.link_up)
    }

    /// Sends one Ethernet frame.
    pub fn transmit(&self, frame: &[u8]) -> Result<(), Errno> {
        let sent = self.slot.call_with(false, frame, |d, frame| d.transmit(frame)).map_err(|e| {
            log::debug!("{}: {e}", self.name);
            Errno::ENETDOWN
        });
        let c = &self.counters;
        match sent.and_then(|r| r.map_err(errno)) {
            Ok(()) => {
                c.tx_packets.fetch_add(1, Ordering::Relaxed);
                c.tx_bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let counter = if e == Errno::ENOBUFS { &c.tx_dropped } else { &c.tx_errors };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The next received frame into `buf` (at least 1514 bytes): its
    /// length, 0 when none is waiting.
    pub fn receive(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let got = self
            .slot
            .call(false, |cell| cell.call(&mut *buf, |d, buf| d.receive(buf)))
            .map_err(|e| {
                log::debug!("{}: {e}", self.name);
                Errno::ENETDOWN
            })
            .and_then(|r| r.map_err(errno));
        let c = &self.counters;
        match got {
            Ok(0) => Ok(0),
            Ok(n) => {
                c.rx_packets.fetch_add(1, Ordering::Relaxed);
                c.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                Ok(n)
            }
            Err(e) => {
                c.rx_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
