//! gzip (RFC 1952) decompression for compressed boot archives, as Linux
//! accepts them: one or more gzip members back to back (zero padding after
//! the last is allowed). Each member's CRC-32 and length are checked, so a
//! corrupt or truncated archive is an error naming the problem, never a
//! partly unpacked tree. The deflate data itself is inflated by
//! `miniz_oxide` (safe Rust).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use miniz_oxide::inflate::stream::{InflateState, inflate};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// The two bytes every gzip member starts with.
pub const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// True when `data` starts like a gzip file.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// Why a gzip archive could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipError {
    /// The header of the member at this offset is malformed or cut short.
    BadHeader { offset: usize },
    /// A compression method other than deflate.
    UnknownMethod { offset: usize, method: u8 },
    /// The deflate data of the member at this offset is corrupt.
    Corrupt { offset: usize },
    /// The member at this offset ends before its data does.
    Truncated { offset: usize },
    /// The member's CRC-32 does not match its contents.
    BadChecksum { offset: usize },
    /// The member's recorded length does not match its contents.
    BadLength { offset: usize },
    /// The contents would exceed the limit given (bytes).
    TooLarge { limit: usize },
    /// No memory for the contents.
    OutOfMemory,
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GzipError::BadHeader { offset } => write!(f, "gzip member at byte {offset}: malformed header"),
            GzipError::UnknownMethod { offset, method } => {
                write!(f, "gzip member at byte {offset}: unknown compression method {method}")
            }
            GzipError::Corrupt { offset } => write!(f, "gzip member at byte {offset}: corrupt deflate data"),
            GzipError::Truncated { offset } => write!(f, "gzip member at byte {offset}: truncated"),
            GzipError::BadChecksum { offset } => write!(f, "gzip member at byte {offset}: CRC-32 mismatch"),
            GzipError::BadLength { offset } => write!(f, "gzip member at byte {offset}: length mismatch"),
            GzipError::TooLarge { limit } => write!(f, "decompressed archive larger than {limit} bytes"),
            GzipError::OutOfMemory => f.write_str("no memory for the decompressed archive"),
        }
    }
}

const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

/// Length of the member header at the start of `data`.
fn header_len(data: &[u8], offset: usize) -> Result<usize, GzipError> {
    let bad = GzipError::BadHeader { offset };
    let (method, flags) = match data.get(..10) {
        Some([0x1f, 0x8b, method, flags, ..]) => (*method, *flags),
        _ => return Err(bad),
    };
    if method != 8 {
        return Err(GzipError::UnknownMethod { offset, method });
    }
    if flags & 0xe0 != 0 {
        return Err(bad); // reserved flags must be zero
    }
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let &[lo, hi] = data.get(at..at + 2).ok_or(bad)? else { return Err(bad) };
        at += 2 + usize::from(u16::from_le_bytes([lo, hi]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let rest = data.get(at..).ok_or(bad)?;
            at += rest.iter().position(|&b| b == 0).ok_or(bad)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > data.len() {
        return Err(bad);
    }
    Ok(at)
}

/// CRC-32 (IEEE, reflected) as gzip uses it (shared with the cell file format).
pub use framekernel_logic::crc32::crc32;
use framekernel_logic::crc32::crc32_update;

/// The decompressed size the archive records for its last member: the
/// whole size of the usual single-member archive (a hint only).
pub fn size_hint(data: &[u8]) -> Option<usize> {
    let tail = data.len().checked_sub(4).and_then(|at| data.get(at..))?;
    let size = u32::from_le_bytes(<[u8; 4]>::try_from(tail).ok()?) as usize;
    // Deflate cannot expand more than about 1032:1.
    (size > 0 && size / 1032 <= data.len()).then_some(size)
}

/// Decompresses every member of `data` into one buffer of at most `limit`
/// bytes.
pub fn decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, GzipError> {
    let mut out = Vec::new();
    if let Some(hint) = size_hint(data).filter(|&h| h <= limit) {
        out.try_reserve_exact(hint).map_err(|_| GzipError::OutOfMemory)?;
    }
    each_member(data, &mut |bytes| {
        if out.len() + bytes.len() > limit {
            return Err(GzipError::TooLarge { limit });
        }
        out.try_reserve(bytes.len()).map_err(|_| GzipError::OutOfMemory)?;
        out.extend_from_slice(bytes);
        Ok(())
    })?;
    Ok(out)
}

/// Decompresses every member of `data` into `out`; returns the length.
pub fn decompress_into(data: &[u8], out: &mut [u8]) -> Result<usize, GzipError> {
    let limit = out.len();
    let mut used = 0usize;
    each_member(data, &mut |bytes| {
        let end = used + bytes.len();
        out.get_mut(used..end).ok_or(GzipError::TooLarge { limit })?.copy_from_slice(bytes);
        used = end;
        Ok(())
    })?;
    Ok(used)
}

/// Feeds the contents of every member to `sink`, in order.
fn each_member(data: &[u8], sink: &mut dyn FnMut(&[u8]) -> Result<(), GzipError>) -> Result<(), GzipError> {
    let mut offset = 0usize;
    while offset < data.len() {
        let rest = data.get(offset..).unwrap_or(&[]);
        if rest.iter().all(|&b| b == 0) {
            break; // padding after the last member
        }
        offset += member(rest, offset, sink)?;
    }
    if offset == 0 {
        return Err(GzipError::BadHeader { offset: 0 });
    }
    Ok(())
}

/// Decompresses the member at the start of `data` (at `offset` in the
/// whole archive) into `sink`; returns its length in bytes.
fn member(data: &[u8], offset: usize, sink: &mut dyn FnMut(&[u8]) -> Result<(), GzipError>) -> Result<usize, GzipError> {
    let start = header_len(data, offset)?;
    let mut state: Box<InflateState> = InflateState::new_boxed(DataFormat::Raw);
    let mut input = data.get(start..).unwrap_or(&[]);
    let mut consumed = start;
    let (mut crc, mut length) = (!0u32, 0u32);
    let mut chunk = alloc::vec![0u8; 64 * 1024];
    loop {
        let result = inflate(&mut state, input, &mut chunk, MZFlush::None);
        let written = chunk.get(..result.bytes_written).unwrap_or(&[]);
        crc = crc32_update(crc, written);
        length = length.wrapping_add(written.len() as u32);
        sink(written)?;
        consumed += result.bytes_consumed;
        input = input.get(result.bytes_consumed..).unwrap_or(&[]);
        match result.status {
            Ok(MZStatus::StreamEnd) => break,
            Ok(_) if result.bytes_consumed == 0 && result.bytes_written == 0 => {
                return Err(if input.is_empty() { GzipError::Truncated { offset } } else { GzipError::Corrupt { offset } });
            }
            Ok(_) => {}
            Err(MZError::Buf) if input.is_empty() => return Err(GzipError::Truncated { offset }),
            Err(_) => return Err(GzipError::Corrupt { offset }),
        }
    }
    let word = |at: usize| -> Result<u32, GzipError> {
        let bytes = data.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).ok_or(GzipError::Truncated { offset })?;
        Ok(u32::from_le_bytes(bytes))
    };
    if word(consumed)? != !crc {
        return Err(GzipError::BadChecksum { offset });
    }
    if word(consumed + 4)? != length {
        return Err(GzipError::BadLength { offset });
    }
    Ok(consumed + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip member of `data` (with a file name, as `gzip` writes).
    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = alloc::vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 0, 3];
        out.extend_from_slice(b"initrd.cpio\0");
        out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
        out.extend_from_slice(&crc32(data).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn members_and_padding() {
        let data = sample();
        let mut archive = gzip(&data);
        assert!(is_gzip(&archive));
        assert_eq!(decompress(&archive, usize::MAX).unwrap(), data);
        assert_eq!(size_hint(&archive), Some(data.len()));
        let mut exact = alloc::vec![0u8; data.len()];
        assert_eq!(decompress_into(&archive, &mut exact), Ok(data.len()));
        assert_eq!(exact, data);
        archive.extend_from_slice(&gzip(b"second member"));
        archive.extend_from_slice(&[0; 512]);
        let out = decompress(&archive, usize::MAX).unwrap();
        assert_eq!(out.len(), data.len() + 13);
        assert!(out.ends_with(b"second member"));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error() {
        let data = sample();
        let archive = gzip(&data);
        for len in (0..archive.len()).step_by(97).chain([archive.len() - 1, archive.len() - 5, 1, 9, 15]) {
            assert!(decompress(&archive[..len], usize::MAX).is_err(), "truncated to {len} bytes");
        }
        for at in (30..archive.len()).step_by(211) {
            let mut bad = archive.clone();
            bad[at] ^= 0x55;
            assert!(decompress(&bad, usize::MAX).is_err(), "byte {at} flipped");
        }
        let mut method = archive.clone();
        method[2] = 7;
        assert_eq!(decompress(&method, usize::MAX), Err(GzipError::UnknownMethod { offset: 0, method: 7 }));
        let mut length = archive.clone();
        let n = length.len();
        length[n - 1] ^= 1;
        assert_eq!(decompress(&length, usize::MAX), Err(GzipError::BadLength { offset: 0 }));
        assert_eq!(decompress(&archive, 1000), Err(GzipError::TooLarge { limit: 1000 }));
        let mut small = [0u8; 100];
        assert_eq!(decompress_into(&archive, &mut small), Err(GzipError::TooLarge { limit: 100 }));
        let text = GzipError::BadChecksum { offset: 7 }.to_string();
        assert!(text.contains("byte 7") && text.contains("CRC-32"), "{text}");
    }
}
