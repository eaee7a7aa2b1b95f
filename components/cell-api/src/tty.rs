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


