//! Network interface cards: Ethernet frames, sent and received whole.
//!
//! A NIC driver moves frames between its device and the kernel; the
//! kernel hands them to the protocol stack and to packet sockets. A frame
//! lost in a fault or a swap is lost as on a wire (TCP sends it again), so
//! the slot never retries a call: a retried `transmit` would send twice.
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// The largest frame a driver sends or receives: 1,500 bytes of payload
/// and the 14-byte Ethernet header (no frame check sequence).
pub const MAX_FRAME: usize = 1514;
/// The smallest frame that has an Ethernet header.
pub const MIN_FRAME: usize = 14;

/// Why a NIC request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The driver found no device it can drive (why).
    NoDevice(String),
    /// A frame shorter than its header or longer than [`MAX_FRAME`].
    BadLength(usize),
    /// Every transmit buffer is in use: try again after the device
    /// catches up.
    Full,
    /// The device misbehaved (what it did).
    Device(String),
}
framekernel_boundary::cell_data!(enum NetError { NoDevice(why), BadLength(len), Full, Device(what) });

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoDevice(why) => write!(f, "no device: {why}"),
            NetError::BadLength(len) => write!(f, "a frame of {len} bytes (14..=1514 are sent)"),
            NetError::Full => f.write_str("the transmit queue is full"),
            NetError::Device(what) => write!(f, "device error: {what}"),
        }
    }
}

/// What a driver says about its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicInfo {
    /// A description (`virtio-net at 0000:00:03.0`).
    pub description: String,
    /// The hardware address.
    pub mac: [u8; 6],
    /// True while the link is up.
    pub link_up: bool,
    /// The interrupt line the card raises when frames arrive (0: none;
    /// the kernel then polls).
    pub irq: u8,
}
framekernel_boundary::cell_data!(struct NicInfo { description, mac, link_up, irq });

/// A NIC driver. A new instance drives nothing until `attach`.
pub trait NicDriver: Send + Sync {
    /// Takes the `nth` card this driver can drive (0: the first, in the
    /// order of the bus), or says why there is none.
    fn attach(&self, nth: u32) -> Result<NicInfo, NetError>;
    /// The card, or why there is none.
    fn info(&self) -> Result<NicInfo, NetError>;
    /// Queues one frame for sending (`MIN_FRAME..=MAX_FRAME` bytes).
    fn transmit(&self, frame: &[u8]) -> Result<(), NetError>;
    /// Moves the next received frame into `buf` (at least [`MAX_FRAME`]
    /// bytes) and returns its length; 0 when none is waiting. Also
    /// acknowledges the card's interrupt.
    fn receive(&self, buf: &mut [u8]) -> Result<usize, NetError>;
    /// Hands the card over to the instance that replaces this one (a
    /// swap): the state that instance's `take_over` needs, empty without
    /// a card. The card leaves this instance, running (frames it receives
    /// meanwhile wait in its ring), and the instance is not called again.
    fn hand_over(&self) -> Vec<u8>;
    /// What `hand_over` would give now, giving nothing (a rehearsal).
    fn handover_state(&self) -> Vec<u8>;
    /// Takes the card over from what `hand_over` gave (no reset: its
    /// rings and the frames in them stay), or says why not; the slot then
    /// attaches the instance afresh.
    fn take_over(&self, state: &[u8]) -> Result<(), NetError>;
    /// True once a card is attached or taken over.
    fn attached(&self) -> bool;
}

/// What a NIC driver cell exports.
pub type Export = Box<dyn NicDriver>;
