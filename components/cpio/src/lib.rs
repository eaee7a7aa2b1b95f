//! cpio `newc` archives: the format of Linux initramfs images, used for
//! Tessera's boot archive (kernel symbols, programs, later the root file
//! system).
//!
//! Reading never panics on malformed input: every entry is checked against
//! the archive's bounds and a bad one is an error naming its offset.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

pub mod gzip;

use alloc::vec::Vec;
use core::fmt;

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;

/// Why an archive was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpioError {
    /// The header at `offset` does not start with `070701`.
    BadMagic { offset: usize },
    /// A header field at `offset` is not 8 hex digits.
    BadField { offset: usize },
    /// The entry at `offset` runs past the end of the archive.
    Truncated { offset: usize },
    /// The entry name at `offset` is not NUL-terminated UTF-8.
    BadName { offset: usize },
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpioError::BadMagic { offset } => write!(f, "no cpio newc header at offset {offset}"),
            CpioError::BadField { offset } => write!(f, "bad header field in the entry at offset {offset}"),
            CpioError::Truncated { offset } => write!(f, "the entry at offset {offset} is truncated"),
            CpioError::BadName { offset } => write!(f, "the entry at offset {offset} has a bad name"),
        }
    }
}

/// One archive member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Path inside the archive, without a leading `./` or `/`.
    pub name: &'a str,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// File contents (the target, for a symbolic link).
    pub data: &'a [u8],
    /// Offset of the entry's header in the archive.
    pub offset: usize,
}

impl Entry<'_> {
    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
    /// True for a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

fn hex_field(bytes: &[u8], at: usize, offset: usize) -> Result<u32, CpioError> {
    let field = bytes.get(at..at + 8).ok_or(CpioError::Truncated { offset })?;
    let text = core::str::from_utf8(field).map_err(|_| CpioError::BadField { offset })?;
    u32::from_str_radix(text, 16).map_err(|_| CpioError::BadField { offset })
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|v| v & !3)
}

/// Iterates over the members of a newc archive, stopping at the trailer.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` as an archive.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0, done: false }
    }

    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, CpioError> {
        let offset = self.offset;
        let header = self.bytes.get(offset..offset + HEADER_LEN).ok_or(CpioError::Truncated { offset })?;
        if header.get(..6) != Some(MAGIC.as_slice()) {
            return Err(CpioError::BadMagic { offset });
        }
        let field = |i: usize| hex_field(header, 6 + i * 8, offset);
        let (mode, uid, gid, mtime) = (field(1)?, field(2)?, field(3)?, field(5)?);
        let file_size = field(6)? as usize;
        let name_size = field(11)? as usize;
        let name_start = offset + HEADER_LEN;
        let name_end = name_start.checked_add(name_size).ok_or(CpioError::Truncated { offset })?;
        let name_bytes = self.bytes.get(name_start..name_end).ok_or(CpioError::Truncated { offset })?;
        let (last, name) = name_bytes.split_last().ok_or(CpioError::BadName { offset })?;
        if *last != 0 {
            return Err(CpioError::BadName { offset });
        }
        let name = core::str::from_utf8(name).map_err(|_| CpioError::BadName { offset })?;
        let data_start = align4(name_end).ok_or(CpioError::Truncated { offset })?;
        let data_end = data_start.checked_add(file_size).ok_or(CpioError::Truncated { offset })?;
        let data = self.bytes.get(data_start..data_end).ok_or(CpioError::Truncated { offset })?;
        self.offset = align4(data_end).ok_or(CpioError::Truncated { offset })?;
        if name == TRAILER {
            return Ok(None);
        }
        let name = name.trim_start_matches("./").trim_start_matches('/');
        Ok(Some(Entry { name, mode, uid, gid, mtime, data, offset }))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// True when `bytes` starts like a newc archive.
pub fn is_cpio(bytes: &[u8]) -> bool {
    bytes.get(..6) == Some(MAGIC.as_slice())
}

/// Finds the member called `name` (leading `/` ignored).
pub fn find<'a>(bytes: &'a [u8], name: &str) -> Result<Option<Entry<'a>>, CpioError> {
    let name = name.trim_start_matches('/');
    for entry in Reader::new(bytes) {
        let entry = entry?;
        if entry.name == name {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Builds a newc archive in memory.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    inode: u32,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Appends a member.
    pub fn add(&mut self, name: &str, mode: u32, mtime: u32, data: &[u8]) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            if mode & S_IFMT == S_IFDIR { 2 } else { 1 },
            mtime,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(MAGIC);
        for field in fields {
            self.out.extend_from_slice(alloc::format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.add(TRAILER, 0, 0, &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new();
        w.add("bin", S_IFDIR | 0o755, 1, &[]);
        w.add("bin/hello", S_IFREG | 0o755, 2, b"\x7fELF...");
        w.add("bin/sh", S_IFLNK | 0o777, 3, b"busybox");
        w.add("./etc/odd", S_IFREG | 0o644, 4, b"abc");
        w.finish()
    }

    #[test]
    fn round_trip() {
        let archive = sample();
        assert!(is_cpio(&archive));
        let entries: Vec<_> = Reader::new(&archive).collect::<Result<_, _>>().unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries[0].is_dir());
        assert!(entries[1].is_file() && entries[1].data == b"\x7fELF...");
        assert!(entries[2].is_symlink() && entries[2].data == b"busybox");
        assert_eq!(entries[3].name, "etc/odd");
        assert_eq!(entries[3].mtime, 4);
        assert_eq!(find(&archive, "/bin/hello").unwrap().unwrap().mode, S_IFREG | 0o755);
        assert_eq!(find(&archive, "nope").unwrap(), None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let archive = sample();
        for cut in 0..archive.len() - 1 {
            let result: Result<Vec<_>, _> = Reader::new(&archive[..cut]).collect();
            // A cut inside the trailer still yields every member; any other
            // cut must be reported.
            if let Ok(entries) = result {
                assert_eq!(entries.len(), 4, "cut at {cut}");
                panic!("truncated archive (cut at {cut} of {}) accepted", archive.len());
            }
        }
    }

    #[test]
    fn corrupt_fields_are_named() {
        let mut archive = sample();
        archive[0] = b'1';
        assert_eq!(Reader::new(&archive).next(), Some(Err(CpioError::BadMagic { offset: 0 })));
        let mut archive = sample();
        archive[6 + 6 * 8] = b'z'; // file size field
        assert_eq!(Reader::new(&archive).next(), Some(Err(CpioError::BadField { offset: 0 })));
        let mut archive = sample();
        archive[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"ffffffff"); // huge file size
        assert_eq!(Reader::new(&archive).next(), Some(Err(CpioError::Truncated { offset: 0 })));
        let mut archive = sample();
        archive[HEADER_LEN + 3] = b'x'; // overwrite the name's NUL
        assert_eq!(Reader::new(&archive).next(), Some(Err(CpioError::BadName { offset: 0 })));
        assert!(!is_cpio(b"0707"));
    }
}
