//! The contract between the kernel and its cells.
//!
//! A cell is a crate built as an ELF relocatable object and loaded at run
//! time (see `docs/architecture.md`, "Cells"). It declares its entry with
//! [`cell_entry!`]; the entry returns the cell's one exported object, boxed
//! as [`Export`]. The kernel checks that object's type against the
//! interface the slot expects (a `TypeId` comparison), so the kernel never
//! links against a cell's own symbols and a cell offering the wrong
//! interface is refused.
//!
//! Interfaces are traits defined here. Their methods take and return plain
//! data (integers, byte slices, owned `String`/`Vec`), never references into
//! the cell, trait objects or function pointers: anything a cell returns
//! must stay valid after the cell's code is unmapped.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[doc(hidden)]
pub use alloc::boxed::Box;

/// What a cell's entry function returns.
pub type Export = Box<dyn core::any::Any + Send + Sync>;

/// Declares the cell's entry: `cell_entry!(make)` where `make` is a
/// function (or closure) returning the exported object, for example a
/// `Box<dyn probe::Probe>`. Invoke it once, at the crate root.
#[macro_export]
macro_rules! cell_entry {
    ($make:expr) => {
        /// The cell's entry, found by the loader by this name.
        pub fn __tessera_cell_entry() -> $crate::Export {
            $crate::Box::new(($make)())
        }
    };
}

pub mod probe {
    //! A cell that exercises the boundary: the kernel's self-test loads it,
    //! calls it and makes it fail in each way a cell can.
    use alloc::boxed::Box;
    use alloc::string::String;

    /// How [`Probe::fail`] fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Failure {
        /// `panic!` with a message.
        Panic,
        /// A slice index out of bounds (a panic from `core`).
        OutOfBounds,
        /// A page fault in kernel code the cell called.
        PageFault,
        /// An invalid instruction in kernel code the cell called.
        InvalidOpcode,
    }

    /// The probe interface.
    pub trait Probe: Send + Sync {
        /// Sum of `0..n` computed through a heap vector.
        fn sum_to(&self, n: u64) -> u64;
        /// A formatted description of `n` (uses `core::fmt`).
        fn describe(&self, n: u64) -> String;
        /// Calls answered by this instance so far.
        fn calls(&self) -> u64;
        /// Fails as asked; returns only if the failure did not happen.
        fn fail(&self, how: Failure) -> u64;
    }

    /// What a probe cell exports.
    pub type Export = Box<dyn Probe>;
}

pub mod block {
    //! Block devices: sectors of 512 bytes, read and written whole. Reads
    //! and writes by sector are idempotent, so the slot retries them after
    //! a contained fault.
    use alloc::boxed::Box;
    use alloc::string::String;

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

    /// A block device driver.
    pub trait BlockDriver: Send + Sync {
        /// The device, or why there is none.
        fn info(&self) -> Result<DeviceInfo, BlockError>;
        /// Reads `buf.len() / 512` sectors from `sector`.
        fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError>;
        /// Writes `buf.len() / 512` sectors at `sector`.
        fn write(&self, sector: u64, buf: &[u8]) -> Result<(), BlockError>;
        /// Makes written data durable.
        fn flush(&self) -> Result<(), BlockError>;
    }

    /// What a block driver cell exports.
    pub type Export = Box<dyn BlockDriver>;
}

pub mod serial {
    //! Serial ports (the console UART). Calls come from interrupt handlers
    //! and console output, so they must not block or wait long.
    use alloc::boxed::Box;
    use alloc::string::String;

    /// A serial port driver.
    pub trait SerialPort: Send + Sync {
        /// What it drives (`16550 UART at 0x3f8`), or why it drives nothing.
        fn describe(&self) -> Result<String, String>;
        /// Sends `bytes` as they are; returns how many were sent.
        fn write(&self, bytes: &[u8]) -> usize;
        /// Moves received bytes into `out`; returns how many.
        fn receive(&self, out: &mut [u8]) -> usize;
    }

    /// What a serial driver cell exports.
    pub type Export = Box<dyn SerialPort>;
}
