//! Block devices: sectors of 512 bytes, read and written whole. Reads
//! and writes by sector are idempotent, so the slot retries them after
//! a contained fault.
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// Bytes in a sector.
pub const SECTOR_SIZE: usize = 512;

/// Why a block request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// The driver found no device it can drive (why).
    NoDevice(String),
    /// The request reaches past the end of the device.
    OutOfRange { sector: u64, sectors: u64 },
    /// The buffer is not a whole number of sectors.
    BadLength(usize),
    /// The device reported an error (its status code).
    Device(u8),
    /// The device did not answer in time.
    Timeout,
    /// The device is read-only.
    ReadOnly,
}
framekernel_boundary::cell_data!(enum BlockError { NoDevice(why), OutOfRange { sector, sectors }, BadLength(len), Device(status), Timeout, ReadOnly });

impl core::fmt::Display for BlockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BlockError::NoDevice(why) => write!(f, "no device: {why}"),
            BlockError::OutOfRange { sector, sectors } => write!(f, "sector {sector} is past the end ({sectors} sectors)"),
            BlockError::BadLength(len) => write!(f, "{len} bytes is not a whole number of sectors"),
            BlockError::Device(status) => write!(f, "device error (status {status})"),
            BlockError::Timeout => f.write_str("the device did not answer"),
            BlockError::ReadOnly => f.write_str("the device is read-only"),
        }
    }
}

/// What a driver says about its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// A description (`virtio-blk at 0000:00:04.0`).
    pub description: String,
    /// Size in sectors.
    pub sectors: u64,
    /// True when writes are refused.
    pub read_only: bool,
}
framekernel_boundary::cell_data!(struct DeviceInfo { description, sectors, read_only });

/// A block device driver. A new instance drives nothing until `attach`.
pub trait BlockDriver: Send + Sync {
    /// Takes the `nth` device this driver can drive (0: the first, in
    /// the order of the bus), or says why there is none.
    fn attach(&self, nth: u32) -> Result<DeviceInfo, BlockError>;
    /// The device, or why there is none.
    fn info(&self) -> Result<DeviceInfo, BlockError>;
    /// Reads `buf.len() / 512` sectors from `sector`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / 512` sectors at `sector`.
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes written data durable.
    fn flush(&self) -> Result<(), BlockError>;
    /// Hands the device over to the instance that replaces this one (a
    /// swap, with no request in flight): the state that instance's
    /// `take_over` needs, empty without a device. The device leaves this
    /// instance, running, and the instance is not called again.
    fn hand_over(&self) -> Vec<u8>;
    /// What `hand_over` would give now, giving nothing (a rehearsal of
    /// the swap while this instance still serves).
    fn handover_state(&self) -> Vec<u8>;
    /// Takes the device over from what `hand_over` gave (the device keeps
    /// running: no reset, its rings stay where they are), or says why
    /// not; the slot then attaches the instance afresh.
    fn take_over(&self, state: &[u8]) -> Result<(), BlockError>;
    /// True once a device is attached or taken over.
    fn attached(&self) -> bool;
}

/// What a block driver cell exports.
pub type Export = Box<dyn BlockDriver>;


