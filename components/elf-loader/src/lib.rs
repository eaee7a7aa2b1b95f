//! Loading Linux x86_64 executables, as pure functions.
//!
//! [`parse`] checks an ELF file from an untrusted source (every offset,
//! size and address) and returns what to map where, including the program
//! interpreter a dynamically linked program names (`PT_INTERP`), which
//! [`parse_interpreter`] places; [`script_interpreter`] reads a `#!` line
//! the way Linux does; [`build_stack`] lays out `argc`, `argv`, `envp` and
//! the auxiliary vector. The process component turns them into mappings of
//! a `VmSpace`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

mod stack;

pub use stack::{ARG_LIMIT, AuxEntry, StackError, StackImage, aux, build_stack};

use alloc::vec::Vec;
use core::fmt;

/// Page size of the target.
pub const PAGE_SIZE: u64 = 4096;
/// Programs are loaded below this address (the stack lives above).
pub const USER_LOAD_LIMIT: u64 = 0x7000_0000_0000;
/// Where a position-independent (static-pie) program is placed.
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// Most memory the segments of one program may span.
pub const MAX_IMAGE_SIZE: u64 = 1 << 32;
/// Where a program interpreter (`ld-linux-x86-64.so.2`) is placed: the
/// top [`MAX_IMAGE_SIZE`] below [`USER_LOAD_LIMIT`].
pub const INTERP_BASE: u64 = USER_LOAD_LIMIT - MAX_IMAGE_SIZE;
/// Longest interpreter path (`PT_INTERP`), as Linux's `PATH_MAX`.
pub const MAX_INTERP_PATH: usize = 4096;
/// Bytes of a `#!` line that count (Linux's `BINPRM_BUF_SIZE`).
pub const SCRIPT_LINE_MAX: usize = 256;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

/// Why a file cannot be executed. `ENOEXEC` for all but [`ElfError::TooBig`]
/// (`ENOMEM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElfError {
    /// Not a little-endian ELF64 file.
    NotElf64,
    /// Not built for x86_64 (the `e_machine` found).
    WrongMachine(u16),
    /// Neither an executable nor a position-independent executable.
    NotExecutable(u16),
    /// The `PT_INTERP` path is malformed (outside the file, not
    /// NUL-terminated, empty or too long), or an interpreter names one.
    BadInterpreter,
    /// A header or table lies outside the file.
    Truncated(&'static str),
    /// A segment is inconsistent (sizes, alignment, address), by index.
    BadSegment(usize),
    /// Two segments claim the same bytes.
    Overlap(usize, usize),
    /// No loadable segment.
    NoSegments,
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    /// The image would span more than [`MAX_IMAGE_SIZE`].
    TooBig(u64),
    /// The headers the plan needs (the program header table, the
    /// interpreter path) lie outside the bytes given, at `[from, to)`
    /// inside the file (at most [`MAX_PHDR_TABLE`] or
    /// [`MAX_INTERP_PATH`] bytes): read them and ask again
    /// ([`parse_parts`]).
    Beyond(u64, u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf64 => f.write_str("not a little-endian ELF64 file"),
            ElfError::WrongMachine(m) => write!(f, "built for machine {m}, not x86_64"),
            ElfError::NotExecutable(t) => write!(f, "ELF type {t} is not an executable"),
            ElfError::BadInterpreter => f.write_str("the program interpreter (PT_INTERP) is malformed"),
            ElfError::Truncated(what) => write!(f, "{what} lies outside the file"),
            ElfError::BadSegment(i) => write!(f, "program header {i} is inconsistent"),
            ElfError::Overlap(a, b) => write!(f, "segments {a} and {b} overlap"),
            ElfError::NoSegments => f.write_str("no loadable segment"),
            ElfError::BadEntry(e) => write!(f, "entry point {e:#x} is not in an executable segment"),
            ElfError::TooBig(n) => write!(f, "image spans {n:#x} bytes"),
            ElfError::Beyond(from, to) => write!(f, "the headers at [{from:#x}, {to:#x}) were not read"),
        }
    }
}

/// One loadable segment, relocated by the load bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First virtual address (not page aligned in general).
    pub vaddr: u64,
    /// Bytes in memory; beyond `file_size` they are zero (`.bss`).
    pub mem_size: u64,
    /// Where the initialised bytes start in the file.
    pub file_offset: u64,
    /// Initialised bytes.
    pub file_size: u64,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Segment {
    /// The page-aligned range `[start, end)` the segment touches.
    pub fn pages(&self) -> (u64, u64) {
        (self.vaddr & !(PAGE_SIZE - 1), (self.vaddr + self.mem_size).next_multiple_of(PAGE_SIZE))
    }
}

/// What [`parse`] found: everything needed to map the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecImage {
    /// Entry point (relocated).
    pub entry: u64,
    /// Loadable segments, in file order.
    pub segments: Vec<Segment>,
    /// Address of the program headers in memory (`AT_PHDR`), 0 if unmapped.
    pub phdr: u64,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u16,
    /// Size of one program header (`AT_PHENT`).
    pub phent: u16,
    /// Added to every address (0 for `ET_EXEC`).
    pub load_bias: u64,
    /// First page after the image: where `brk` starts.
    pub brk_start: u64,
    /// The program interpreter's path (`PT_INTERP`, without its NUL), for
    /// a dynamically linked program.
    pub interpreter: Option<Vec<u8>>,
}

/// Largest program header table taken (Linux's limit: a larger one is
/// ENOEXEC there too).
pub const MAX_PHDR_TABLE: u64 = 65536;

/// The bytes of a file that were read: its first bytes (`head`) and
/// pieces at other offsets.
struct Fields<'a> {
    head: &'a [u8],
    parts: &'a [(u64, &'a [u8])],
}

impl Fields<'_> {
    /// Bytes `[at, at + len)` of the file, if one piece holds them all.
    fn bytes(&self, at: u64, len: u64) -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        let from = |base: u64, piece: &[u8]| -> Option<usize> {
            (at >= base && end <= base.checked_add(piece.len() as u64)?).then(|| (at - base) as usize)
        };
        if let Some(i) = from(0, self.head) {
            return self.head.get(i..i + len as usize);
        }
        self.parts.iter().find_map(|&(base, piece)| from(base, piece).and_then(|i| piece.get(i..i + len as usize)))
    }
    fn get<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes(at as u64, N as u64)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.get::<2>(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.get::<4>(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.get::<8>(at).map(u64::from_le_bytes)
    }
}

/// Checks `file` and plans its loading. `ET_DYN` programs are placed at
/// [`PIE_BASE`].
pub fn parse(file: &[u8]) -> Result<ExecImage, ElfError> {
    parse_at(file, &[], file.len() as u64, PIE_BASE)
}

/// [`parse`] for a file of `file_len` bytes of which `head` holds the
/// first ones (a loader need not read the whole program): the result is
/// the same as for the whole file, except `ElfError::Beyond(end)` when the
/// program header table or the interpreter path reaches past `head`.
pub fn parse_head(head: &[u8], file_len: u64) -> Result<ExecImage, ElfError> {
    parse_at(head, &[], file_len, PIE_BASE)
}

/// [`parse_head`] with more pieces of the file read: `(offset, bytes)`
/// (what earlier `ElfError::Beyond` answers asked for).
pub fn parse_parts(head: &[u8], parts: &[(u64, &[u8])], file_len: u64) -> Result<ExecImage, ElfError> {
    parse_at(head, parts, file_len, PIE_BASE)
}

/// [`parse_interpreter`] for pieces of a file (see [`parse_parts`]).
pub fn parse_interpreter_parts(head: &[u8], parts: &[(u64, &[u8])], file_len: u64) -> Result<ExecImage, ElfError> {
    check_interpreter(parse_at(head, parts, file_len, INTERP_BASE)?)
}

/// Checks a program interpreter and plans its loading at [`INTERP_BASE`]
/// (it must be `ET_DYN` and must not name an interpreter itself).
pub fn parse_interpreter(file: &[u8]) -> Result<ExecImage, ElfError> {
    check_interpreter(parse_at(file, &[], file.len() as u64, INTERP_BASE)?)
}

fn check_interpreter(image: ExecImage) -> Result<ExecImage, ElfError> {
    if image.load_bias != INTERP_BASE || image.interpreter.is_some() {
        return Err(ElfError::BadInterpreter);
    }
    Ok(image)
}

/// `file`: the file's first bytes (all of it, or at least the first 64
/// when it has them); `file_len`: its size.
fn parse_at(file: &[u8], parts: &[(u64, &[u8])], file_len: u64, dyn_base: u64) -> Result<ExecImage, ElfError> {
    let f = Fields { head: file, parts };
    let file_len = file_len.max(file.len() as u64);
    if file.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) || file.len() < 64 {
        return Err(ElfError::NotElf64);
    }
    let kind = f.u16(16).ok_or(ElfError::NotElf64)?;
    let machine = f.u16(18).ok_or(ElfError::NotElf64)?;
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(machine));
    }
    let load_bias = match kind {
        ET_EXEC => 0,
        ET_DYN => dyn_base,
        other => return Err(ElfError::NotExecutable(other)),
    };
    let entry = f.u64(24).ok_or(ElfError::NotElf64)?;
    let phoff = f.u64(32).ok_or(ElfError::NotElf64)?;
    let phent = f.u16(54).ok_or(ElfError::NotElf64)?;
    let phnum = f.u16(56).ok_or(ElfError::NotElf64)?;
    if phent < 56 {
        return Err(ElfError::Truncated("program header table"));
    }
    let table_end = u64::from(phent).checked_mul(u64::from(phnum)).and_then(|n| n.checked_add(phoff));
    match table_end {
        Some(end) if end > file_len || end - phoff > MAX_PHDR_TABLE => return Err(ElfError::Truncated("program header table")),
        Some(end) if f.bytes(phoff, end - phoff).is_none() => return Err(ElfError::Beyond(phoff, end)),
        Some(_) => {}
        None => return Err(ElfError::Truncated("program header table")),
    }
    let mut segments = Vec::new();
    let mut phdr = 0;
    let mut interpreter = None;
    for index in 0..usize::from(phnum) {
        let at = phoff as usize + index * usize::from(phent);
        let bad = ElfError::BadSegment(index);
        let p_type = f.u32(at).ok_or(bad)?;
        let flags = f.u32(at + 4).ok_or(bad)?;
        let offset = f.u64(at + 8).ok_or(bad)?;
        let vaddr = f.u64(at + 16).ok_or(bad)?;
        let file_size = f.u64(at + 32).ok_or(bad)?;
        let mem_size = f.u64(at + 40).ok_or(bad)?;
        match p_type {
            PT_INTERP => {
                let end = offset.checked_add(file_size).ok_or(ElfError::BadInterpreter)?;
                if end > file_len || file_size > MAX_INTERP_PATH as u64 {
                    return Err(ElfError::BadInterpreter);
                }
                let path = f.bytes(offset, file_size).ok_or(ElfError::Beyond(offset, end))?;
                // NUL-terminated (the last byte, as Linux checks); the path
                // is the C string up to the first NUL.
                let name = path.split(|&b| b == 0).next().unwrap_or(&[]);
                if path.last() != Some(&0) || name.is_empty() || name.len() >= MAX_INTERP_PATH {
                    return Err(ElfError::BadInterpreter);
                }
                interpreter = Some(name.to_vec());
            }
            PT_PHDR => phdr = vaddr.checked_add(load_bias).ok_or(bad)?,
            PT_LOAD if mem_size > 0 => {
                let vaddr = vaddr.checked_add(load_bias).ok_or(bad)?;
                let end = vaddr.checked_add(mem_size).ok_or(bad)?;
                let in_file = offset.checked_add(file_size).is_some_and(|e| e <= file_len);
                if file_size > mem_size || !in_file || end > USER_LOAD_LIMIT || vaddr < PAGE_SIZE {
                    return Err(bad);
                }
                if vaddr % PAGE_SIZE != offset % PAGE_SIZE {
                    return Err(bad);
                }
                segments.push(Segment {
                    vaddr,
                    mem_size,
                    file_offset: offset,
                    file_size,
                    write: flags & 2 != 0,
                    exec: flags & 1 != 0,
                });
            }
            _ => {}
        }
    }
    if segments.is_empty() {
        return Err(ElfError::NoSegments);
    }
    for (i, a) in segments.iter().enumerate() {
        for (j, b) in segments.iter().enumerate().skip(i + 1) {
            if a.vaddr < b.vaddr + b.mem_size && b.vaddr < a.vaddr + a.mem_size {
                return Err(ElfError::Overlap(i, j));
            }
        }
    }
    let low = segments.iter().map(|s| s.pages().0).min().unwrap_or(0);
    let high = segments.iter().map(|s| s.pages().1).max().unwrap_or(0);
    if high - low > MAX_IMAGE_SIZE {
        return Err(ElfError::TooBig(high - low));
    }
    let entry = entry.checked_add(load_bias).ok_or(ElfError::BadEntry(entry))?;
    if !segments.iter().any(|s| s.exec && s.vaddr <= entry && entry < s.vaddr + s.mem_size) {
        return Err(ElfError::BadEntry(entry));
    }
    if phdr == 0 {
        // No PT_PHDR: find the headers inside a loaded segment.
        phdr = segments
            .iter()
            .find(|s| s.file_offset <= phoff && phoff + u64::from(phent) * u64::from(phnum) <= s.file_offset + s.file_size)
            .map_or(0, |s| s.vaddr + (phoff - s.file_offset));
    }
    Ok(ExecImage { entry, segments, phdr, phnum, phent, load_bias, brk_start: high, interpreter })
}

/// What a `#!` line asks for: the interpreter and its one optional
/// argument (the rest of the line, inner blanks kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptLine {
    /// Interpreter path.
    pub interpreter: Vec<u8>,
    /// Optional argument.
    pub argument: Option<Vec<u8>>,
}

/// Reads the `#!` line at the start of `head` (the file's first bytes), as
/// Linux's `binfmt_script` does: it looks at a [`SCRIPT_LINE_MAX`]-byte
/// buffer (NUL-padded when the file is shorter; its last byte never
/// counts), blanks (space, tab) around the interpreter are skipped, and
/// everything after the interpreter up to the end of the line (newline or
/// NUL), trailing blanks removed, is one argument. `None`: not a script.
/// `Some(Err(()))`: a script Linux refuses with ENOEXEC (no interpreter,
/// or an interpreter name that the buffer's end may have cut off).
pub fn script_interpreter(head: &[u8]) -> Option<Result<ScriptLine, ()>> {
    if !head.starts_with(b"#!") {
        return None;
    }
    let mut buf = [0u8; SCRIPT_LINE_MAX];
    for (slot, byte) in buf.iter_mut().zip(head) {
        *slot = *byte;
    }
    let blank = |b: u8| b == b' ' || b == b'\t';
    let usable = buf.get(2..SCRIPT_LINE_MAX - 1).unwrap_or(&[]);
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => buf.get(2..end.max(2)).unwrap_or(&[]),
        None => {
            // No newline: the name must be followed by a blank or NUL
            // inside the buffer, else it may be cut off.
            let Some(start) = usable.iter().position(|&b| !blank(b)) else { return Some(Err(())) };
            let rest = usable.get(start..).unwrap_or(&[]);
            if !rest.iter().any(|&b| blank(b) || b == 0) {
                return Some(Err(()));
            }
            usable
        }
    };
    // The C strings end at a NUL.
    let line = line.get(..line.iter().position(|&b| b == 0).unwrap_or(line.len())).unwrap_or(&[]);
    let line = line.get(..line.iter().rposition(|&b| !blank(b)).map_or(0, |i| i + 1)).unwrap_or(&[]);
    let line = line.get(line.iter().position(|&b| !blank(b)).unwrap_or(line.len())..).unwrap_or(&[]);
    let name_len = line.iter().position(|&b| blank(b)).unwrap_or(line.len());
    if name_len == 0 {
        return Some(Err(()));
    }
    let interpreter = line.get(..name_len).unwrap_or(&[]).to_vec();
    let after = line.get(name_len..).unwrap_or(&[]);
    let argument = after.get(after.iter().position(|&b| !blank(b)).unwrap_or(after.len())..).filter(|a| !a.is_empty()).map(<[u8]>::to_vec);
    Some(Ok(ScriptLine { interpreter, argument }))
}

#[cfg(test)]
mod tests;
