//! The terminal line discipline, as pure logic: bytes typed on a terminal
//! go in through [`LineDiscipline::input`], which applies the termios
//! settings (input mapping, echo, erase/kill, signal characters, canonical
//! lines) and says what to echo and which signal to raise; programs take
//! input with [`LineDiscipline::read`]; output goes through
//! [`LineDiscipline::output`] (`\n` → `\r\n` under OPOST|ONLCR).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

use alloc::collections::VecDeque;
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

    fn has(&self, flag: u32) -> bool {
        self.lflag & flag != 0
    }

    fn char(&self, index: usize) -> Option<u8> {
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

/// Most bytes waiting in the line discipline.
pub const MAX_INPUT: usize = 4096;

/// The state of one terminal's input and output processing.
#[derive(Debug, Default)]
pub struct LineDiscipline {
    /// The settings.
    pub termios: Termios,
    /// The line being edited (canonical mode).
    line: Vec<u8>,
    /// Bytes ready for `read`; `None` entries are end-of-file marks (^D on
    /// an empty line).
    ready: VecDeque<Option<u8>>,
}

impl LineDiscipline {
    /// A terminal with default settings.
    pub fn new() -> Self {
        Self::default()
    }

    fn echo_char(&self, byte: u8, out: &mut Vec<u8>) {
        if !self.termios.has(lflag::ECHO) {
            return;
        }
        if byte < 0x20 && byte != b'\n' && byte != b'\t' && self.termios.has(lflag::ECHOCTL) {
            out.push(b'^');
            out.push(byte + 0x40);
        } else if byte == 0x7f && self.termios.has(lflag::ECHOCTL) {
            out.extend_from_slice(b"^?");
        } else {
            out.extend_from_slice(&self.output(&[byte]));
        }
    }

    fn erase_one(&mut self, out: &mut Vec<u8>) -> bool {
        match self.line.pop() {
            Some(byte) => {
                if self.termios.has(lflag::ECHO) && self.termios.has(lflag::ECHOE) {
                    let width = if byte < 0x20 && self.termios.has(lflag::ECHOCTL) { 2 } else { 1 };
                    for _ in 0..width {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                true
            }
            None => false,
        }
    }

    /// Processes one typed byte.
    pub fn input(&mut self, mut byte: u8) -> InputEffect {
        let mut effect = InputEffect::default();
        let t = self.termios;
        if byte == b'\r' {
            if t.iflag & iflag::IGNCR != 0 {
                return effect;
            }
            if t.iflag & iflag::ICRNL != 0 {
                byte = b'\n';
            }
        } else if byte == b'\n' && t.iflag & iflag::INLCR != 0 {
            byte = b'\r';
        }
        if t.has(lflag::ISIG) {
            let signal = match Some(byte) {
                b if b == t.char(cc::VINTR) => Some(TtySignal::Interrupt),
                b if b == t.char(cc::VQUIT) => Some(TtySignal::Quit),
                b if b == t.char(cc::VSUSP) => Some(TtySignal::Suspend),
                _ => None,
            };
            if let Some(signal) = signal {
                if !t.has(lflag::NOFLSH) {
                    self.line.clear();
                    self.ready.clear();
                }
                self.echo_char(byte, &mut effect.echo);
                effect.signal = Some(signal);
                return effect;
            }
        }
        if !t.has(lflag::ICANON) {
            if self.ready.len() < MAX_INPUT {
                self.ready.push_back(Some(byte));
                self.echo_char(byte, &mut effect.echo);
                effect.readable = true;
            }
            return effect;
        }
        if Some(byte) == t.char(cc::VERASE) || byte == 0x08 {
            self.erase_one(&mut effect.echo);
            return effect;
        }
        if Some(byte) == t.char(cc::VWERASE) && t.has(lflag::IEXTEN) {
            while self.line.last() == Some(&b' ') {
                self.erase_one(&mut effect.echo);
            }
            while self.line.last().is_some_and(|&b| b != b' ') {
                self.erase_one(&mut effect.echo);
            }
            return effect;
        }
        if Some(byte) == t.char(cc::VKILL) {
            while self.erase_one(&mut effect.echo) {}
            return effect;
        }
        if Some(byte) == t.char(cc::VEOF) {
            // End of file: hand over the line without the ^D; an empty
            // line makes the next read return 0.
            if self.line.is_empty() {
                self.ready.push_back(None);
            } else {
                self.ready.extend(self.line.drain(..).map(Some));
            }
            effect.readable = true;
            return effect;
        }
        if self.line.len() + self.ready.len() >= MAX_INPUT && byte != b'\n' {
            return effect; // full: drop, like Linux's input queue
        }
        self.line.push(byte);
        if byte == b'\n' || Some(byte) == t.char(cc::VEOL) {
            if t.has(lflag::ECHO) || t.has(lflag::ECHONL) {
                effect.echo.extend_from_slice(&self.output(b"\n"));
            }
            self.ready.extend(self.line.drain(..).map(Some));
            effect.readable = true;
        } else {
            self.echo_char(byte, &mut effect.echo);
        }
        effect
    }

    /// Takes input for a program: up to `buf.len()` bytes, at most one line
    /// in canonical mode. `None` when nothing is ready (the reader waits);
    /// `Some(0)` at end of file.
    pub fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut count = 0;
        while count < buf.len() {
            match self.ready.front() {
                None => break,
                Some(None) => {
                    if count == 0 {
                        self.ready.pop_front();
                        return Some(0);
                    }
                    break;
                }
                Some(Some(byte)) => {
                    let byte = *byte;
                    if let Some(slot) = buf.get_mut(count) {
                        *slot = byte;
                    }
                    count += 1;
                    self.ready.pop_front();
                    if byte == b'\n' && self.termios.has(lflag::ICANON) {
                        break;
                    }
                }
            }
        }
        (count > 0 || buf.is_empty()).then_some(count)
    }

    /// Bytes a read would get now (`FIONREAD`).
    pub fn available(&self) -> usize {
        self.ready.iter().filter(|b| b.is_some()).count()
    }

    /// True when a read would not wait.
    pub fn readable(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Drops pending input (`TCSETSF`, `TCFLSH`).
    pub fn flush_input(&mut self) {
        self.line.clear();
        self.ready.clear();
    }

    /// New settings; leaving canonical mode hands over the partial line.
    pub fn set_termios(&mut self, termios: Termios) {
        let was_canonical = self.termios.has(lflag::ICANON);
        self.termios = termios;
        if was_canonical && !termios.has(lflag::ICANON) {
            self.ready.extend(self.line.drain(..).map(Some));
        }
    }

    /// Output processing for program output.
    pub fn output(&self, data: &[u8]) -> Vec<u8> {
        let t = self.termios;
        if t.oflag & oflag::OPOST == 0 || t.oflag & oflag::ONLCR == 0 {
            return data.to_vec();
        }
        let mut out = Vec::with_capacity(data.len() + 8);
        for &b in data {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_all(ld: &mut LineDiscipline, text: &[u8]) -> (Vec<u8>, Vec<TtySignal>) {
        let mut echo = Vec::new();
        let mut signals = Vec::new();
        for &b in text {
            let e = ld.input(b);
            echo.extend(e.echo);
            signals.extend(e.signal);
        }
        (echo, signals)
    }

    fn read_all(ld: &mut LineDiscipline) -> Option<Vec<u8>> {
        let mut buf = [0u8; 256];
        ld.read(&mut buf).map(|n| buf[..n].to_vec())
    }

    #[test]
    fn canonical_lines_with_echo_and_cr_mapping() {
        let mut ld = LineDiscipline::new();
        let (echo, _) = type_all(&mut ld, b"ls -l");
        assert_eq!(echo, b"ls -l");
        assert_eq!(read_all(&mut ld), None, "no complete line yet");
        let (echo, _) = type_all(&mut ld, b"\r");
        assert_eq!(echo, b"\r\n");
        assert_eq!(read_all(&mut ld), Some(b"ls -l\n".to_vec()));
        type_all(&mut ld, b"a\rb\r");
        assert_eq!(read_all(&mut ld), Some(b"a\n".to_vec()), "one line per read");
        assert_eq!(read_all(&mut ld), Some(b"b\n".to_vec()));
    }

    #[test]
    fn erase_kill_and_word_erase() {
        let mut ld = LineDiscipline::new();
        let (echo, _) = type_all(&mut ld, b"abc\x7f\x7fz\n");
        assert_eq!(read_all(&mut ld), Some(b"az\n".to_vec()));
        assert!(echo.windows(3).any(|w| w == b"\x08 \x08"));
        type_all(&mut ld, b"junk words\x15ok\n");
        assert_eq!(read_all(&mut ld), Some(b"ok\n".to_vec()));
        type_all(&mut ld, b"one two\x17three\n");
        assert_eq!(read_all(&mut ld), Some(b"one three\n".to_vec()));
        type_all(&mut ld, b"\x7f\x7fx\n"); // erase on an empty line does nothing
        assert_eq!(read_all(&mut ld), Some(b"x\n".to_vec()));
    }

    #[test]
    fn eof_and_signals() {
        let mut ld = LineDiscipline::new();
        type_all(&mut ld, b"partial\x04");
        assert_eq!(read_all(&mut ld), Some(b"partial".to_vec()));
        type_all(&mut ld, b"\x04");
        assert_eq!(read_all(&mut ld), Some(Vec::new()), "^D on an empty line is end of file");
        let (echo, signals) = type_all(&mut ld, b"abc\x03");
        assert_eq!(signals, vec![TtySignal::Interrupt]);
        assert!(echo.ends_with(b"^C"));
        assert_eq!(read_all(&mut ld), None, "^C dropped the line");
        let (_, signals) = type_all(&mut ld, b"\x1c\x1a");
        assert_eq!(signals, vec![TtySignal::Quit, TtySignal::Suspend]);
    }

    #[test]
    fn raw_mode_passes_bytes_through() {
        let mut ld = LineDiscipline::new();
        type_all(&mut ld, b"half");
        let mut raw = ld.termios;
        raw.lflag &= !(lflag::ICANON | lflag::ECHO | lflag::ISIG);
        raw.iflag &= !iflag::ICRNL;
        ld.set_termios(raw);
        assert_eq!(read_all(&mut ld), Some(b"half".to_vec()), "leaving canonical mode releases the line");
        let (echo, signals) = type_all(&mut ld, b"\x1b[A\x03\r");
        assert!(echo.is_empty() && signals.is_empty());
        assert_eq!(read_all(&mut ld), Some(b"\x1b[A\x03\r".to_vec()));
        assert_eq!(ld.available(), 0);
    }

    #[test]
    fn output_processing_and_termios_bytes() {
        let mut ld = LineDiscipline::new();
        assert_eq!(ld.output(b"a\nb"), b"a\r\nb");
        let mut t = ld.termios;
        t.oflag &= !oflag::OPOST;
        ld.set_termios(t);
        assert_eq!(ld.output(b"a\nb"), b"a\nb");
        let bytes = Termios::default().to_bytes();
        assert_eq!(Termios::from_bytes(&bytes), Termios::default());
        assert_eq!(bytes[17], 3, "VINTR is ^C");
    }

    #[test]
    fn input_is_bounded() {
        let mut ld = LineDiscipline::new();
        for _ in 0..MAX_INPUT * 2 {
            ld.input(b'x');
        }
        ld.input(b'\n');
        let mut total = 0;
        let mut buf = [0u8; 8192];
        while let Some(n) = ld.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert!(total <= MAX_INPUT + 1, "kept {total} bytes");
    }
}
