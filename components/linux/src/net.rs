//! Network interfaces: each card is served by a NIC driver cell through
//! a slot (`virtio_net` drives `eth0`), which the kernel calls to send
//! and receive Ethernet frames. A frame lost while the driver faults or
//! is swapped is lost as on a wire: the slot never retries a call.
use crate::errno::Errno;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
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
    /// Up (`IFF_UP`), as `ifconfig eth0 up/down` sets it.
    up: AtomicBool,
    /// The IPv4 address and prefix length (`[0; 4]`, 0: none).
    address: SpinLock<([u8; 4], u8)>,
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
    let interface = Arc::new(Interface {
        name: name.into(),
        index,
        mac,
        slot,
        counters: Counters::default(),
        up: AtomicBool::new(true),
        address: SpinLock::new(([0; 4], 0)),
    });
    all.push(interface.clone());
    drop(all);
    // The network task starts serving it (polling it until it has an
    // interrupt line).
    TASK_WAIT.wake_all();
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
/// packet sockets and the protocol stack, then runs the stack (when
/// frames came or its timers are due, at least every 10 ms) and sends
/// what it made. Returns the frames moved.
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
                        if interface.is_up() {
                            crate::inet::input(interface.index, frame);
                        }
                    }
                    moved += 1;
                }
            }
        }
    }
    moved + crate::inet::run(moved > 0)
}

/// Legacy IRQ lines of the cards whose interrupts wake the network task
/// (bit per line).
static LINES: AtomicU16 = AtomicU16::new(0);
/// Set by a card's interrupt; the network task clears it.
static RAISED: AtomicBool = AtomicBool::new(false);
/// Where the network task waits.
static TASK_WAIT: tessera_sched::WaitQueue = tessera_sched::WaitQueue::new();

fn card_interrupt() {
    RAISED.store(true, Ordering::SeqCst);
    TASK_WAIT.wake_all();
}

/// Wakes the network task when a card raises its interrupt on `line` (a
/// legacy IRQ line, as the firmware routed the PCI function), instead of
/// polling the cards every millisecond. The base masks the line when it
/// fires; the task unmasks it once it has drained the cards (the driver
/// reads the card's interrupt status, which lowers the line).
pub fn use_interrupt(line: u8) -> Result<(), framekernel::irq::IrqError> {
    // Another card on the same line: already registered.
    let bit = 1u16.checked_shl(u32::from(line)).unwrap_or(0);
    if LINES.load(Ordering::SeqCst) & bit != 0 {
        return Ok(());
    }
    // Refuses lines past 15 (`bit` 0 above) and the base's own.
    framekernel::irq::register_oneshot(line, card_interrupt)?;
    LINES.fetch_or(bit, Ordering::SeqCst);
    TASK_WAIT.wake_all();
    Ok(())
}

/// How long the network task sleeps at most between rounds when the
/// cards' interrupts wake it (the stack's timers usually wake it sooner).
const IDLE_NS: u64 = 50_000_000;
/// Sockets are woken at least this often, for what changes by timer alone.
const CHANGED_NS: u64 = 50_000_000;

/// Starts the network task: it drains the cards, runs the stack when its
/// timers are due and wakes the sockets after every round that moved
/// frames (and every 50 ms regardless). Between rounds it sleeps until a
/// card's interrupt ([`use_interrupt`]), a new card or the stack's next
/// timer; a card without an interrupt line is polled every millisecond
/// (every timer tick).
pub fn start_task() {
    let spawned = tessera_sched::spawn("net", || {
        let mut changed_at = 0u64;
        loop {
            let moved = pump();
            let now = framekernel::time::now_ns();
            if moved > 0 || now.saturating_sub(changed_at) >= CHANGED_NS {
                crate::inet::changed();
                changed_at = now;
            }
            let lines = LINES.load(Ordering::SeqCst);
            // Cards without an interrupt line are polled every tick; with
            // no card at all there is nothing to poll (the stack's timers
            // and a card's arrival wake the task).
            if lines == 0 && !INTERFACES.lock().is_empty() {
                crate::syscall::proc::kernel_sleep(1_000_000);
                continue;
            }
            // Raised but nothing came: a line another device holds up,
            // or a driver that cannot take frames (being swapped): no
            // faster than the polling it replaces.
            if RAISED.swap(false, Ordering::SeqCst) && moved == 0 {
                crate::syscall::proc::kernel_sleep(1_000_000);
            }
            for line in (0..framekernel::irq::IRQ_LINES).filter(|l| lines & (1 << l) != 0) {
                let _ = framekernel::irq::unmask(line);
            }
            // At least a millisecond (no stack: no timer at all).
            let deadline = crate::inet::next_run_ns().min(now.saturating_add(IDLE_NS)).max(now.saturating_add(1_000_000));
            let _alarm = crate::syscall::proc::Alarm::new(deadline);
            TASK_WAIT.wait_until(|| (RAISED.load(Ordering::SeqCst) || framekernel::time::now_ns() >= deadline).then_some(()));
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
    /// True while up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Sets `IFF_UP` and tells the stack.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        crate::inet::configure(self.index);
    }

    /// The IPv4 address and prefix length (`[0; 4]`, 0: none).
    pub fn address(&self) -> ([u8; 4], u8) {
        *self.address.lock()
    }

    /// Sets the IPv4 address and prefix length and tells the stack.
    pub fn set_address(&self, addr: [u8; 4], prefix: u8) {
        *self.address.lock() = (addr, prefix);
        crate::inet::configure(self.index);
    }

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

/// `/proc/net/dev`: `lo` (its traffic stays in the stack: zeros) and
/// every card's counters, in Linux's layout.
pub fn proc_dev() -> String {
    use core::fmt::Write;
    let mut out = String::from(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    let line = |out: &mut String, name: &str, c: [u64; 7]| {
        let [rb, rp, re, tb, tp, te, td] = c;
        let _ = writeln!(out, "{name:>6}: {rb:>7} {rp:>7} {re:>4} {:>4} {:>4} {:>5} {:>10} {:>9} {tb:>8} {tp:>7} {te:>4} {td:>4} {:>4} {:>5} {:>7} {:>10}", 0, 0, 0, 0, 0, 0, 0, 0, 0);
    };
    if crate::inet::available() {
        line(&mut out, "lo", [0; 7]);
    }
    for i in interfaces() {
        let c = &i.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        line(&mut out, &i.name, [get(&c.rx_bytes), get(&c.rx_packets), get(&c.rx_errors), get(&c.tx_bytes), get(&c.tx_packets), get(&c.tx_errors), get(&c.tx_dropped)]);
    }
    out
}

/// `/proc/net/route`: each card's connected network and the default
/// route, in Linux's layout (addresses as the little-endian hex of the
/// network-order word).
pub fn proc_route() -> String {
    use core::fmt::Write;
    let hex = |a: [u8; 4]| u32::from_le_bytes(a);
    let mut out = String::new();
    let _ = writeln!(out, "{:<127}", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT");
    let gateway = crate::inet::gateway();
    for i in interfaces() {
        let (addr, prefix) = i.address();
        if addr == [0; 4] || !i.is_up() {
            continue;
        }
        let mask = crate::socket::mask(prefix);
        let m = u32::from_be_bytes(mask);
        if gateway != [0; 4] && u32::from_be_bytes(gateway) & m == u32::from_be_bytes(addr) & m {
            let text = alloc::format!("{}\t{:08X}\t{:08X}\t{:04X}\t0\t0\t0\t{:08X}\t0\t0\t0", i.name, 0, hex(gateway), 3, 0);
            let _ = writeln!(out, "{text:<127}");
        }
        let net = (u32::from_be_bytes(addr) & m).to_be_bytes();
        let text = alloc::format!("{}\t{:08X}\t{:08X}\t{:04X}\t0\t0\t0\t{:08X}\t0\t0\t0", i.name, hex(net), 0, 1, hex(mask));
        let _ = writeln!(out, "{text:<127}");
    }
    out
}
