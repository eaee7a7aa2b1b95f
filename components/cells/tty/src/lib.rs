//! The terminal line discipline, a cell: bytes typed on a terminal
//! go in through [`LineDiscipline::input`], which applies the termios
//! settings (input mapping, echo, erase/kill, signal characters, canonical
//! lines) and says what to echo and which signal to raise; programs take
//! input with [`LineDiscipline::read`]; output goes through
//! [`LineDiscipline::output`] (`\n` → `\r\n` under OPOST|ONLCR).
//!
//! The cell ([`Ttys`]) keeps one line discipline per terminal number and
//! hands all of them to its successor on a swap ([`Ttys::save`],
//! [`Ttys::restore`]): settings, the line being typed and unread input
//! survive. The same code builds for the host, where it is unit-tested.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tessera_cell_api::tty::{Export, LineDisciplines};
pub use tessera_cell_api::tty::{InputEffect, MAX_INPUT, Termios, TtySignal, cc, iflag, lflag, oflag};


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
                // Bounded as every input: a writer of ^D after ^D (a pty
                // master) must not grow the queue without end.
                if self.ready.len() < MAX_INPUT {
                    self.ready.push_back(None);
                }
            } else {
                self.ready.extend(self.line.drain(..).map(Some));
            }
            effect.readable = true;
            return effect;
        }
        // Full: drop, like Linux's input queue. A newline still ends the
        // line being typed, but only up to twice the limit: lines of
        // nothing but newlines (a pty master writing them) must not grow
        // the queue without end.
        if self.line.len() + self.ready.len() >= MAX_INPUT && (byte != b'\n' || self.line.len() + self.ready.len() >= 2 * MAX_INPUT) {
            return effect;
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

/// The state format `save` writes: this tag, then per terminal its
/// number, termios, the line being edited and the unread input.
const STATE_TAG: &[u8; 4] = b"TTY1";

impl LineDiscipline {
    fn save(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.termios.to_bytes());
        out.extend_from_slice(&(self.line.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.line);
        out.extend_from_slice(&(self.ready.len() as u32).to_le_bytes());
        for entry in &self.ready {
            out.extend_from_slice(&entry.map_or(0x100u16, u16::from).to_le_bytes());
        }
    }

    fn restore(input: &mut Reader<'_>) -> Result<Self, String> {
        let termios = Termios::from_bytes(&input.array::<36>()?);
        let line_len = input.u32()? as usize;
        if line_len > MAX_INPUT {
            return Err(format!("a line of {line_len} bytes exceeds {MAX_INPUT}"));
        }
        let line = input.bytes(line_len)?.to_vec();
        let ready_len = input.u32()? as usize;
        // What `input` admits: twice the limit (newlines past it).
        if ready_len > 2 * MAX_INPUT + 1 {
            return Err(format!("{ready_len} unread bytes exceed {}", 2 * MAX_INPUT));
        }
        let mut ready = VecDeque::with_capacity(ready_len);
        for _ in 0..ready_len {
            ready.push_back(match u16::from_le_bytes(input.array::<2>()?) {
                0x100 => None,
                b if b < 0x100 => Some(b as u8),
                other => return Err(format!("bad input entry {other:#x}")),
            });
        }
        Ok(Self { termios, line, ready })
    }
}

/// Reads a saved state, naming what is missing.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err(format!("state ends early ({n} bytes wanted, {} left)", self.data.len()));
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.bytes(N).map(|b| b.try_into().unwrap_or([0; N]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array::<4>().map(u32::from_le_bytes)
    }
}

/// The cell: every terminal's line discipline, by terminal number.
#[derive(Default)]
pub struct Ttys {
    ttys: spin::Mutex<BTreeMap<u32, LineDiscipline>>,
}

impl Ttys {
    fn with<R>(&self, tty: u32, f: impl FnOnce(&mut LineDiscipline) -> R) -> R {
        f(self.ttys.lock().entry(tty).or_default())
    }
}

impl LineDisciplines for Ttys {
    fn input(&self, tty: u32, byte: u8) -> InputEffect {
        self.with(tty, |ld| ld.input(byte))
    }

    fn read(&self, tty: u32, max: usize) -> Option<Vec<u8>> {
        self.with(tty, |ld| {
            let mut buf = vec![0u8; max.min(MAX_INPUT)];
            let n = ld.read(&mut buf)?;
            buf.truncate(n);
            Some(buf)
        })
    }

    fn available(&self, tty: u32) -> usize {
        self.with(tty, |ld| ld.available())
    }

    fn readable(&self, tty: u32) -> bool {
        self.with(tty, |ld| ld.readable())
    }

    fn flush_input(&self, tty: u32) {
        self.with(tty, LineDiscipline::flush_input);
    }

    fn termios(&self, tty: u32) -> Termios {
        self.with(tty, |ld| ld.termios)
    }

    fn set_termios(&self, tty: u32, termios: Termios) {
        self.with(tty, |ld| ld.set_termios(termios));
    }

    fn output(&self, tty: u32, data: &[u8]) -> Vec<u8> {
        self.with(tty, |ld| ld.output(data))
    }

    fn save(&self) -> Vec<u8> {
        let ttys = self.ttys.lock();
        let mut out = STATE_TAG.to_vec();
        out.extend_from_slice(&(ttys.len() as u32).to_le_bytes());
        for (&tty, ld) in ttys.iter() {
            out.extend_from_slice(&tty.to_le_bytes());
            ld.save(&mut out);
        }
        out
    }

    fn restore(&self, state: &[u8]) -> Result<(), String> {
        let mut input = Reader { data: state };
        if input.bytes(4)? != STATE_TAG {
            return Err("not a tty state this version knows (tag TTY1)".into());
        }
        let count = input.u32()?;
        let mut restored = BTreeMap::new();
        for _ in 0..count {
            let tty = input.u32()?;
            restored.insert(tty, LineDiscipline::restore(&mut input)?);
        }
        if !input.data.is_empty() {
            return Err(format!("{} bytes after the last terminal", input.data.len()));
        }
        *self.ttys.lock() = restored;
        Ok(())
    }
}

fn make() -> Export {
    Box::new(Ttys::default())
}

tessera_cell_api::cell_entry!(tty, make);

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

    #[test]
    fn state_survives_a_swap_and_bad_state_is_refused() {
        let old = Ttys::default();
        for &b in b"echo hel" {
            old.input(0, b);
        }
        for &b in b"ready\r" {
            old.input(1, b);
        }
        let mut raw = Termios::default();
        raw.lflag &= !lflag::ICANON;
        old.set_termios(2, raw);
        let state = old.save();
        let new = Ttys::default();
        new.restore(&state).unwrap();
        // The half-typed line continues; the finished one is still readable.
        for &b in b"lo\r" {
            new.input(0, b);
        }
        assert_eq!(new.read(0, 100).unwrap(), b"echo hello\n");
        assert_eq!(new.read(1, 100).unwrap(), b"ready\n");
        assert_eq!(new.termios(2), raw);
        assert_eq!(new.save(), {
            let again = Ttys::default();
            again.restore(&new.save()).unwrap();
            again.save()
        });
        // Every truncation and a foreign tag are refused, leaving the state as it was.
        for cut in 0..state.len() {
            assert!(new.restore(&state[..cut]).is_err(), "cut at {cut}");
        }
        assert!(new.restore(b"TTY9\0\0\0\0").is_err());
        let mut longer = state.clone();
        longer.push(0);
        assert!(new.restore(&longer).is_err());
        assert_eq!(new.termios(2), raw);
    }
}
