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
#[doc(hidden)]
pub use framekernel_logic::cellobj::ENTRY_ABI;

/// What a cell's entry function returns.
pub type Export = Box<dyn core::any::Any + Send + Sync>;

/// Declares the cell's entry: `cell_entry!(make)` where `make` is a
/// function (or closure) returning the exported object, for example a
/// `Box<dyn probe::Probe>`. Invoke it once, at the crate root.
#[macro_export]
macro_rules! cell_entry {
    ($make:expr) => {
        /// The cell's entry, found by the loader by this name (never
        /// inlined away: the object must define it).
        #[inline(never)]
        pub fn __tessera_cell_entry() -> $crate::Export {
            $crate::Box::new(($make)())
        }

        /// Tells the loader that `__tessera_cell_entry` has the signature
        /// it calls it with (this macro wrote both).
        pub static __TESSERA_CELL_ABI: [u8; 32] = $crate::ENTRY_ABI;
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
        /// A loop without end (the watchdog must stop it).
        Hang,
        /// A loop without end with interrupts off: the timer cannot reach
        /// the watchdog, its NMI must.
        HangInterruptsOff,
        /// A panic in the middle of dropping the cell's own state: a frame
        /// is freed, then a destructor panics, so the state still names the
        /// freed frame (dropping it again would free the frame twice). The
        /// panic message names the frame (`frame 0x...`).
        DropBomb,
    }
    framekernel_boundary::cell_data!(enum Failure { Panic, OutOfBounds, PageFault, InvalidOpcode, Hang, HangInterruptsOff, DropBomb });

    /// The probe interface.
    pub trait Probe: Send + Sync {
        /// Sum of `0..n` computed through a heap vector.
        fn sum_to(&self, n: u64) -> u64;
        /// A formatted description of `n` (uses `core::fmt`), with the calls
        /// this instance answered and the calls since this copy of the
        /// cell was linked (a static: `since linking N`).
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

pub mod tty {
    //! Terminal line disciplines: the types the kernel's terminals and the
    //! tty cell share, and the interface of the cell, which keeps the state
    //! of every terminal (`tty` numbers) and hands it over on a swap.
    use alloc::boxed::Box;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// `c_iflag` bits.
    pub mod iflag {
        #![allow(missing_docs)]
        pub const IGNCR: u32 = 0o200;
        pub const ICRNL: u32 = 0o400;
        pub const INLCR: u32 = 0o100;
        pub const IXON: u32 = 0o2000;
    }
    /// `c_oflag` bits.
    pub mod oflag {
        #![allow(missing_docs)]
        pub const OPOST: u32 = 0o1;
        pub const ONLCR: u32 = 0o4;
    }
    /// `c_lflag` bits.
    pub mod lflag {
        #![allow(missing_docs)]
        pub const ISIG: u32 = 0o1;
        pub const ICANON: u32 = 0o2;
        pub const ECHO: u32 = 0o10;
        pub const ECHOE: u32 = 0o20;
        pub const ECHOK: u32 = 0o40;
        pub const ECHONL: u32 = 0o100;
        pub const NOFLSH: u32 = 0o200;
        pub const ECHOCTL: u32 = 0o1000;
        pub const ECHOKE: u32 = 0o4000;
        pub const IEXTEN: u32 = 0o100000;
    }
    /// Indexes into `c_cc`.
    pub mod cc {
        #![allow(missing_docs)]
        pub const VINTR: usize = 0;
        pub const VQUIT: usize = 1;
        pub const VERASE: usize = 2;
        pub const VKILL: usize = 3;
        pub const VEOF: usize = 4;
        pub const VTIME: usize = 5;
        pub const VMIN: usize = 6;
        pub const VSUSP: usize = 10;
        pub const VEOL: usize = 11;
        pub const VWERASE: usize = 14;
    }

    /// The kernel's `struct termios` (36 bytes on x86_64).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Termios {
        /// Input modes.
        pub iflag: u32,
        /// Output modes.
        pub oflag: u32,
        /// Control modes.
        pub cflag: u32,
        /// Local modes.
        pub lflag: u32,
        /// Line discipline number.
        pub line: u8,
        /// Control characters.
        pub cc: [u8; 19],
    }
    framekernel_boundary::cell_data!(struct Termios { iflag, oflag, cflag, lflag, line, cc });

    impl Default for Termios {
        /// A terminal as it starts: cooked, echoing, signals on (`stty sane`).
        fn default() -> Self {
            let mut cc = [0u8; 19];
            for (i, v) in [(0, 3u8), (1, 28), (2, 127), (3, 21), (4, 4), (5, 0), (6, 1), (8, 17), (9, 19), (10, 26), (12, 18), (13, 15), (14, 23), (15, 22)] {
                if let Some(slot) = cc.get_mut(i) {
                    *slot = v;
                }
            }
            Self {
                iflag: iflag::ICRNL | iflag::IXON,
                oflag: oflag::OPOST | oflag::ONLCR,
                cflag: 0o277, // B38400 | CS8 | CREAD
                lflag: lflag::ISIG | lflag::ICANON | lflag::ECHO | lflag::ECHOE | lflag::ECHOK | lflag::ECHOCTL | lflag::ECHOKE | lflag::IEXTEN,
                line: 0,
                cc,
            }
        }
    }

    impl Termios {
        /// Decodes the 36-byte structure.
        pub fn from_bytes(b: &[u8; 36]) -> Self {
            let word = |i: usize| u32::from_le_bytes(b.get(i..i + 4).and_then(|w| w.try_into().ok()).unwrap_or([0; 4]));
            let cc: [u8; 19] = b.get(17..36).and_then(|c| c.try_into().ok()).unwrap_or([0; 19]);
            Self { iflag: word(0), oflag: word(4), cflag: word(8), lflag: word(12), line: b.get(16).copied().unwrap_or(0), cc }
        }

        /// Encodes the 36-byte structure.
        pub fn to_bytes(&self) -> [u8; 36] {
            let mut b = [0u8; 36];
            let fields: [(usize, &[u8]); 6] = [
                (0, &self.iflag.to_le_bytes()),
                (4, &self.oflag.to_le_bytes()),
                (8, &self.cflag.to_le_bytes()),
                (12, &self.lflag.to_le_bytes()),
                (16, &[self.line]),
                (17, &self.cc),
            ];
            for (at, bytes) in fields {
                if let Some(dst) = b.get_mut(at..at + bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
            }
            b
        }

        /// True when local mode `flag` is set.
        pub fn has(&self, flag: u32) -> bool {
            self.lflag & flag != 0
        }

        /// Control character `index`, unless disabled (0).
        pub fn char(&self, index: usize) -> Option<u8> {
            self.cc.get(index).copied().filter(|&c| c != 0)
        }
    }

    /// A signal a typed character raises for the foreground process group.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TtySignal {
        /// ^C: SIGINT.
        Interrupt,
        /// ^\: SIGQUIT.
        Quit,
        /// ^Z: SIGTSTP.
        Suspend,
    }
    framekernel_boundary::cell_data!(enum TtySignal { Interrupt, Quit, Suspend });

    /// What one typed byte caused.
    #[derive(Debug, Default, Clone, PartialEq, Eq)]
    pub struct InputEffect {
        /// Bytes to show on the terminal (already output-processed).
        pub echo: Vec<u8>,
        /// A signal for the foreground process group.
        pub signal: Option<TtySignal>,
        /// Readers may now have something to read.
        pub readable: bool,
    }
    framekernel_boundary::cell_data!(struct InputEffect { echo, signal, readable });

    /// Most bytes waiting in a terminal's input.
    pub const MAX_INPUT: usize = 4096;

    /// The line disciplines of all terminals.
    pub trait LineDisciplines: Send + Sync {
        /// Processes one byte typed on terminal `tty`.
        fn input(&self, tty: u32, byte: u8) -> InputEffect;
        /// Takes up to `max` bytes for a reader; `None` when it must wait.
        fn read(&self, tty: u32, max: usize) -> Option<Vec<u8>>;
        /// Bytes a reader could take now.
        fn available(&self, tty: u32) -> usize;
        /// True when a read would not wait.
        fn readable(&self, tty: u32) -> bool;
        /// Drops pending input.
        fn flush_input(&self, tty: u32);
        /// The settings.
        fn termios(&self, tty: u32) -> Termios;
        /// New settings.
        fn set_termios(&self, tty: u32, termios: Termios);
        /// Output processing of `data` written to the terminal.
        fn output(&self, tty: u32, data: &[u8]) -> Vec<u8>;
        /// Every terminal's state, for the next version of the cell.
        fn save(&self) -> Vec<u8>;
        /// Takes over state `save` produced (by this or an older version).
        fn restore(&self, state: &[u8]) -> Result<(), String>;
    }

    /// What a tty cell exports.
    pub type Export = Box<dyn LineDisciplines>;
}
