//! The cell file (`*.cell`): a 128-byte header naming the cell, its
//! version and the interface it offers, followed by the cell's ELF
//! relocatable object. `tools/cellpack` writes it; the loader reads it.
//! The header carries the object's length and CRC-32, so a truncated or
//! damaged file is refused before its ELF structures are looked at.
//!
//! ```text
//!   0  magic      b"TSRCELL1"
//!   8  header     u32 = 128
//!  12  length     u32, bytes of the object after the header
//!  16  crc32      u32, of those bytes
//!  20  reserved   u32 = 0
//!  24  name       32 bytes, [a-z0-9_-], NUL-padded
//!  56  version    16 bytes, printable ASCII, NUL-padded
//!  72  interface  24 bytes, [a-z0-9_], NUL-padded
//!  96  reserved   32 bytes = 0
//! ```

use crate::crc32::crc32;
use alloc::vec::Vec;
use core::fmt;

/// The first eight bytes of every cell file.
pub const MAGIC: [u8; 8] = *b"TSRCELL1";
/// Length of the header.
pub const HEADER_LEN: usize = 128;
/// Largest object a cell file may carry.
pub const MAX_OBJECT: usize = 16 << 20;

const NAME: (usize, usize) = (24, 32);
const VERSION: (usize, usize) = (56, 16);
const INTERFACE: (usize, usize) = (72, 24);

/// Why a cell file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// Shorter than the header.
    TooShort { len: usize },
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// A header field other than the ones this version knows.
    BadHeader(&'static str),
    /// The object is larger than [`MAX_OBJECT`].
    TooLarge { len: usize },
    /// The file ends before the object does.
    Truncated { expected: usize, actual: usize },
    /// The object's CRC-32 differs from the header's.
    Checksum { expected: u32, actual: u32 },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::TooShort { len } => write!(f, "{len} bytes is too short for a cell file ({HEADER_LEN}-byte header)"),
            FileError::BadMagic => f.write_str("not a Tessera cell file (no TSRCELL1 magic)"),
            FileError::BadHeader(what) => write!(f, "bad cell header: {what}"),
            FileError::TooLarge { len } => write!(f, "cell object of {len} bytes exceeds the {MAX_OBJECT}-byte limit"),
            FileError::Truncated { expected, actual } => {
                write!(f, "cell file truncated: object of {expected} bytes, {actual} present")
            }
            FileError::Checksum { expected, actual } => {
                write!(f, "cell file damaged: CRC-32 {actual:#010x}, header says {expected:#010x}")
            }
        }
    }
}

/// A checked cell file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellFile<'a> {
    /// The cell's name (`virtio_blk`).
    pub name: &'a str,
    /// Its version (`0.1.0`).
    pub version: &'a str,
    /// The interface it offers (`block`, `console`, ...).
    pub interface: &'a str,
    /// The ELF relocatable object.
    pub object: &'a [u8],
}

fn field<'a>(header: &'a [u8], (at, len): (usize, usize), what: &'static str, ok: fn(u8) -> bool) -> Result<&'a str, FileError> {
    let raw = header.get(at..at + len).ok_or(FileError::BadHeader(what))?;
    let used = raw.iter().position(|&b| b == 0).unwrap_or(len);
    let (text, pad) = raw.split_at(used);
    if text.is_empty() || !text.iter().all(|&b| ok(b)) || pad.iter().any(|&b| b != 0) {
        return Err(FileError::BadHeader(what));
    }
    core::str::from_utf8(text).map_err(|_| FileError::BadHeader(what))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
}

fn is_interface_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn is_version_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    data.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, u32::from_le_bytes)
}

impl<'a> CellFile<'a> {
    /// Checks `data` as a cell file.
    pub fn parse(data: &'a [u8]) -> Result<Self, FileError> {
        let header = data.get(..HEADER_LEN).ok_or(FileError::TooShort { len: data.len() })?;
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(FileError::BadMagic);
        }
        if u32_at(header, 8) as usize != HEADER_LEN {
            return Err(FileError::BadHeader("header length is not 128"));
        }
        if u32_at(header, 20) != 0 || header.get(96..).is_none_or(|r| r.iter().any(|&b| b != 0)) {
            return Err(FileError::BadHeader("reserved bytes are not zero"));
        }
        let name = field(header, NAME, "name must be 1-32 of [a-z0-9_-]", is_name_byte)?;
        let version = field(header, VERSION, "version must be 1-16 printable characters", is_version_byte)?;
        let interface = field(header, INTERFACE, "interface must be 1-24 of [a-z0-9_]", is_interface_byte)?;
        let len = u32_at(header, 12) as usize;
        if len > MAX_OBJECT {
            return Err(FileError::TooLarge { len });
        }
        let rest = data.get(HEADER_LEN..).unwrap_or(&[]);
        let object = rest.get(..len).ok_or(FileError::Truncated { expected: len, actual: rest.len() })?;
        let expected = u32_at(header, 16);
        let actual = crc32(object);
        if actual != expected {
            return Err(FileError::Checksum { expected, actual });
        }
        Ok(Self { name, version, interface, object })
    }

    /// Writes a cell file; fails when a field does not fit the format.
    pub fn write(name: &str, version: &str, interface: &str, object: &[u8]) -> Result<Vec<u8>, FileError> {
        if object.len() > MAX_OBJECT {
            return Err(FileError::TooLarge { len: object.len() });
        }
        let mut out = alloc::vec![0u8; HEADER_LEN];
        let mut put = |(at, len): (usize, usize), value: &str, what, ok: fn(u8) -> bool| {
            if value.is_empty() || value.len() > len || !value.bytes().all(ok) {
                return Err(FileError::BadHeader(what));
            }
            if let Some(slot) = out.get_mut(at..at + value.len()) {
                slot.copy_from_slice(value.as_bytes());
            }
            Ok(())
        };
        put(NAME, name, "name must be 1-32 of [a-z0-9_-]", is_name_byte)?;
        put(VERSION, version, "version must be 1-16 printable characters", is_version_byte)?;
        put(INTERFACE, interface, "interface must be 1-24 of [a-z0-9_]", is_interface_byte)?;
        for (at, value) in [(8, HEADER_LEN as u32), (12, object.len() as u32), (16, crc32(object))] {
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
        }
        if let Some(slot) = out.get_mut(..8) {
            slot.copy_from_slice(&MAGIC);
        }
        out.extend_from_slice(object);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let file = CellFile::write("virtio_blk", "0.1.0", "block", b"\x7fELF object").unwrap();
        let cell = CellFile::parse(&file).unwrap();
        assert_eq!((cell.name, cell.version, cell.interface, cell.object), ("virtio_blk", "0.1.0", "block", &b"\x7fELF object"[..]));
    }

    #[test]
    fn every_defect_is_named() {
        let good = CellFile::write("c", "1", "block", &[7u8; 300]).unwrap();
        assert_eq!(CellFile::parse(&good[..100]), Err(FileError::TooShort { len: 100 }));
        assert_eq!(CellFile::parse(&good[..200]), Err(FileError::Truncated { expected: 300, actual: 72 }));
        for cut in HEADER_LEN..good.len() {
            assert!(matches!(CellFile::parse(&good[..cut]), Err(FileError::Truncated { .. })));
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(CellFile::parse(&bad), Err(FileError::BadMagic));
        for at in HEADER_LEN..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x10;
            assert!(matches!(CellFile::parse(&flipped), Err(FileError::Checksum { .. })), "flip at {at}");
        }
        let mut name = good.clone();
        name[24] = b'A';
        assert!(matches!(CellFile::parse(&name), Err(FileError::BadHeader(w)) if w.starts_with("name")));
        let mut reserved = good.clone();
        reserved[100] = 1;
        assert!(matches!(CellFile::parse(&reserved), Err(FileError::BadHeader(_))));
        let mut huge = good.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(CellFile::parse(&huge), Err(FileError::TooLarge { .. })));
        assert!(CellFile::write("Bad Name", "1", "block", b"").is_err());
        assert!(CellFile::write("a", "1", "this_interface_name_is_too_long", b"").is_err());
    }
}
