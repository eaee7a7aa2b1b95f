//! The cell file (`*.cell`): a 256-byte header naming the cell, its
//! version, the interface it offers (by name and by fingerprint) and the
//! kernel build it was packed for, followed by the cell's ELF relocatable
//! object and its imports: the address of every kernel symbol the object
//! names, resolved by the packer against the kernel ELF of that build (so
//! linking never depends on a symbol table loaded at run time). The whole
//! file is signed with Ed25519 by the build's cell
//! signing key; the kernel holds the public key (compiled in) and refuses
//! a file whose signature does not verify before it looks at any of the
//! object's ELF structures. `tools/cellpack` writes it; the loader reads it.
//!
//! ```text
//!   0  magic        b"TSRCELL2"
//!   8  header       u32 = 256
//!  12  length       u32, bytes of the object after the header
//!  16  crc32        u32, of those bytes (catches accidents before the signature)
//!  20  build id len u32, 1-32
//!  24  name         32 bytes, [a-z0-9_-], NUL-padded
//!  56  version      16 bytes, printable ASCII, NUL-padded
//!  72  interface    24 bytes, [a-z0-9_], NUL-padded
//!  96  fingerprint  32 bytes: the interface's fingerprint (`Interface::FINGERPRINT`)
//! 128  build id     32 bytes: the kernel's GNU build id, zero-padded
//! 160  signature    64 bytes: Ed25519 over the whole file with this field zeroed
//! 224  imports      u32, bytes of the imports table after the object (the file ends there)
//! 228  reserved     28 bytes = 0
//! ```
//!
//! The imports table: records of a u64 address, a u16 name length and the
//! name (a mangled kernel symbol), little-endian, at most [`MAX_IMPORTS`].

use crate::crc32::crc32;
use alloc::vec::Vec;
use core::fmt;

/// The first eight bytes of every cell file.
pub const MAGIC: [u8; 8] = *b"TSRCELL2";
/// The magic of the older, unsigned format.
pub const OLD_MAGIC: [u8; 8] = *b"TSRCELL1";
/// Length of the header.
pub const HEADER_LEN: usize = 256;
/// Largest object a cell file may carry.
pub const MAX_OBJECT: usize = 16 << 20;
/// Longest build id a header holds.
pub const MAX_BUILD_ID: usize = 32;

const NAME: (usize, usize) = (24, 32);
const VERSION: (usize, usize) = (56, 16);
const INTERFACE: (usize, usize) = (72, 24);
const FINGERPRINT: usize = 96;
const BUILD_ID: usize = 128;
const SIGNATURE: usize = 160;
const IMPORTS: usize = 224;
const RESERVED: usize = 228;
/// Most imports a cell file may list.
pub const MAX_IMPORTS: usize = 4096;

/// Why a cell file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// Shorter than the header.
    TooShort { len: usize },
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// The older, unsigned format.
    OldFormat,
    /// A header field other than the ones this version knows.
    BadHeader(&'static str),
    /// The object is larger than [`MAX_OBJECT`].
    TooLarge { len: usize },
    /// The file ends before the object does.
    Truncated { expected: usize, actual: usize },
    /// Bytes after the object.
    TrailingBytes { extra: usize },
    /// The imports table is malformed.
    BadImports(&'static str),
    /// The object's CRC-32 differs from the header's.
    Checksum { expected: u32, actual: u32 },
    /// The signature does not verify with the kernel's key.
    BadSignature,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::TooShort { len } => write!(f, "{len} bytes is too short for a cell file ({HEADER_LEN}-byte header)"),
            FileError::BadMagic => f.write_str("not a Tessera cell file (no TSRCELL2 magic)"),
            FileError::OldFormat => {
                f.write_str("an unsigned TSRCELL1 cell file; this kernel loads only signed TSRCELL2 files (tessera-cellpack pack --key)")
            }
            FileError::BadHeader(what) => write!(f, "bad cell header: {what}"),
            FileError::TooLarge { len } => write!(f, "cell object of {len} bytes exceeds the {MAX_OBJECT}-byte limit"),
            FileError::Truncated { expected, actual } => {
                write!(f, "cell file truncated: object of {expected} bytes, {actual} present")
            }
            FileError::TrailingBytes { extra } => write!(f, "cell file has {extra} bytes after its imports"),
            FileError::BadImports(what) => write!(f, "bad imports table: {what}"),
            FileError::Checksum { expected, actual } => {
                write!(f, "cell file damaged: CRC-32 {actual:#010x}, header says {expected:#010x}")
            }
            FileError::BadSignature => f.write_str(
                "cell file signature does not verify with this kernel's cell signing key (changed after it was signed, or signed for another build)",
            ),
        }
    }
}

/// What a header says, besides the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The cell's name (`virtio_blk`).
    pub name: &'a str,
    /// Its version (`0.1.0`).
    pub version: &'a str,
    /// The interface it offers (`block`, `serial`, ...).
    pub interface: &'a str,
    /// That interface's fingerprint.
    pub fingerprint: [u8; 32],
    /// The GNU build id of the kernel it was packed for.
    pub build_id: &'a [u8],
}

/// A checked cell file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellFile<'a> {
    /// The header's fields.
    pub header: Header<'a>,
    /// The ELF relocatable object.
    pub object: &'a [u8],
    /// The kernel symbols it uses, with their addresses in that build.
    pub imports: Imports<'a>,
}

/// A cell file's header, object and imports table, in that order.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// A cell file's imports table (well-formed: checked when the file is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imports<'a>(&'a [u8]);

impl<'a> Imports<'a> {
    /// Checks `table`: whole records, UTF-8 names, at most [`MAX_IMPORTS`].
    pub fn parse(table: &'a [u8]) -> Result<Self, FileError> {
        let mut count = 0;
        let mut rest = table;
        while !rest.is_empty() {
            let (_, name, tail) = Self::record(rest).ok_or(FileError::BadImports("a record runs past the table"))?;
            if core::str::from_utf8(name).is_err() || name.is_empty() {
                return Err(FileError::BadImports("a name is empty or not UTF-8"));
            }
            count += 1;
            if count > MAX_IMPORTS {
                return Err(FileError::BadImports("too many imports"));
            }
            rest = tail;
        }
        Ok(Self(table))
    }

    fn record(data: &'a [u8]) -> Option<(u64, &'a [u8], &'a [u8])> {
        let address = u64::from_le_bytes(data.get(..8)?.try_into().ok()?);
        let len = usize::from(u16::from_le_bytes(data.get(8..10)?.try_into().ok()?));
        let name = data.get(10..10 + len)?;
        Some((address, name, data.get(10 + len..)?))
    }

    /// Every (name, address).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        let mut rest = self.0;
        core::iter::from_fn(move || {
            let (address, name, tail) = Self::record(rest)?;
            rest = tail;
            Some((core::str::from_utf8(name).ok()?, address))
        })
    }

    /// The address of `name`, if listed.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.iter().find(|&(n, _)| n == name).map(|(_, a)| a)
    }

    /// Writes the table for `imports`.
    pub fn write(imports: &[(&str, u64)]) -> Result<Vec<u8>, FileError> {
        if imports.len() > MAX_IMPORTS {
            return Err(FileError::BadImports("too many imports"));
        }
        let mut out = Vec::new();
        for &(name, address) in imports {
            let len = u16::try_from(name.len()).map_err(|_| FileError::BadImports("a name is longer than 65535 bytes"))?;
            out.extend_from_slice(&address.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        Ok(out)
    }
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

fn array<const N: usize>(data: &[u8], at: usize) -> [u8; N] {
    data.get(at..at + N).and_then(|b| <[u8; N]>::try_from(b).ok()).unwrap_or([0; N])
}

/// The header with its signature field zeroed: the first part of what is signed.
fn unsigned_header(header: &[u8]) -> [u8; HEADER_LEN] {
    let mut out: [u8; HEADER_LEN] = array(header, 0);
    if let Some(sig) = out.get_mut(SIGNATURE..SIGNATURE + 64) {
        sig.fill(0);
    }
    out
}

/// Checks an Ed25519 signature over `header` (its signature field zeroed)
/// followed by `body` (the object and the imports table).
fn verify_signature(header: &[u8], body: &[u8], public_key: &[u8; 32]) -> Result<(), FileError> {
    use ed25519_compact::{PublicKey, Signature};
    let signature = Signature::new(array(header, SIGNATURE));
    let mut state = PublicKey::new(*public_key).verify_incremental(&signature).map_err(|_| FileError::BadSignature)?;
    state.absorb(unsigned_header(header));
    state.absorb(body);
    state.verify().map_err(|_| FileError::BadSignature)
}

/// The Ed25519 public key of the 32-byte `seed` (a cell signing key).
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    *ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed)).pk
}

/// Parses 64 hex digits (a public key as the Makefile passes it).
pub fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let digit = |at: usize| hex.get(at).and_then(|&c| (c as char).to_digit(16));
        *byte = u8::try_from(digit(2 * i)? * 16 + digit(2 * i + 1)?).ok()?;
    }
    Some(out)
}

/// The GNU build id in the bytes of an ELF note section
/// (`.note.gnu.build-id`): the descriptor of the first `NT_GNU_BUILD_ID`
/// note owned by `GNU`, if it is 1-32 bytes long.
pub fn gnu_build_id(notes: &[u8]) -> Option<&[u8]> {
    let mut at = 0usize;
    while at.checked_add(12)? <= notes.len() {
        let (namesz, descsz, kind) = (u32_at(notes, at) as usize, u32_at(notes, at + 4) as usize, u32_at(notes, at + 8));
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz.checked_next_multiple_of(4)?)?;
        let end = desc_at.checked_add(descsz.checked_next_multiple_of(4)?)?;
        if kind == 3 && notes.get(name_at..name_at.checked_add(namesz)?)? == b"GNU\0" {
            return notes.get(desc_at..desc_at.checked_add(descsz)?).filter(|d| !d.is_empty() && d.len() <= MAX_BUILD_ID);
        }
        at = end;
    }
    None
}

/// `bytes` as lowercase hex, for messages.
pub fn hex(bytes: &[u8]) -> alloc::string::String {
    bytes.iter().map(|b| alloc::format!("{b:02x}")).collect()
}

impl<'a> CellFile<'a> {
    /// Checks `data` as a cell file signed by the holder of `public_key`:
    /// the framing (magic, lengths, CRC), then the signature over every
    /// byte, and only then the header's fields. The object's ELF
    /// structures are not looked at here.
    pub fn verify(data: &'a [u8], public_key: &[u8; 32]) -> Result<Self, FileError> {
        let (header, object, imports) = Self::framing(data)?;
        verify_signature(header, data.get(HEADER_LEN..).unwrap_or(&[]), public_key)?;
        Ok(Self { header: Self::fields(header)?, object, imports: Imports::parse(imports)? })
    }

    /// The object of a well-framed cell file (magic, lengths, CRC), its
    /// signature NOT checked: for tools that report on a file (`make
    /// audit`), never for loading one.
    pub fn unverified_object(data: &'a [u8]) -> Result<&'a [u8], FileError> {
        Self::framing(data).map(|(_, object, _)| object)
    }

    /// Header, object and imports table of `data`, framing and CRC checked.
    fn framing(data: &'a [u8]) -> Result<Parts<'a>, FileError> {
        let header = data.get(..HEADER_LEN).ok_or(FileError::TooShort { len: data.len() })?;
        if header.get(..8) == Some(&OLD_MAGIC[..]) {
            return Err(FileError::OldFormat);
        }
        if header.get(..8) != Some(&MAGIC[..]) {
            return Err(FileError::BadMagic);
        }
        if u32_at(header, 8) as usize != HEADER_LEN {
            return Err(FileError::BadHeader("header length is not 256"));
        }
        let len = u32_at(header, 12) as usize;
        if len > MAX_OBJECT {
            return Err(FileError::TooLarge { len });
        }
        let rest = data.get(HEADER_LEN..).unwrap_or(&[]);
        let object = rest.get(..len).ok_or(FileError::Truncated { expected: len, actual: rest.len() })?;
        let imports_len = u32_at(header, IMPORTS) as usize;
        let after = rest.get(len..).unwrap_or(&[]);
        let imports = after.get(..imports_len).ok_or(FileError::Truncated { expected: len + imports_len, actual: rest.len() })?;
        if after.len() > imports_len {
            return Err(FileError::TrailingBytes { extra: after.len() - imports_len });
        }
        let expected = u32_at(header, 16);
        let actual = crc32(object);
        if actual != expected {
            return Err(FileError::Checksum { expected, actual });
        }
        Ok((header, object, imports))
    }

    /// The header's fields, checked.
    fn fields(header: &'a [u8]) -> Result<Header<'a>, FileError> {
        if header.get(RESERVED..HEADER_LEN).is_none_or(|r| r.iter().any(|&b| b != 0)) {
            return Err(FileError::BadHeader("reserved bytes are not zero"));
        }
        let id_len = u32_at(header, 20) as usize;
        if id_len == 0 || id_len > MAX_BUILD_ID || header.get(BUILD_ID + id_len..BUILD_ID + MAX_BUILD_ID).is_none_or(|p| p.iter().any(|&b| b != 0)) {
            return Err(FileError::BadHeader("build id must be 1-32 bytes, zero-padded"));
        }
        Ok(Header {
            name: field(header, NAME, "name must be 1-32 of [a-z0-9_-]", is_name_byte)?,
            version: field(header, VERSION, "version must be 1-16 printable characters", is_version_byte)?,
            interface: field(header, INTERFACE, "interface must be 1-24 of [a-z0-9_]", is_interface_byte)?,
            fingerprint: array(header, FINGERPRINT),
            build_id: header.get(BUILD_ID..BUILD_ID + id_len).ok_or(FileError::BadHeader("build id"))?,
        })
    }

    /// Writes a cell file signed with the 32-byte key `seed`; fails when a
    /// field does not fit the format.
    pub fn write(header: &Header<'_>, object: &[u8], imports: &[(&str, u64)], seed: &[u8; 32]) -> Result<Vec<u8>, FileError> {
        let table = Imports::write(imports)?;
        if object.len() > MAX_OBJECT {
            return Err(FileError::TooLarge { len: object.len() });
        }
        if header.build_id.is_empty() || header.build_id.len() > MAX_BUILD_ID {
            return Err(FileError::BadHeader("build id must be 1-32 bytes, zero-padded"));
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
        put(NAME, header.name, "name must be 1-32 of [a-z0-9_-]", is_name_byte)?;
        put(VERSION, header.version, "version must be 1-16 printable characters", is_version_byte)?;
        put(INTERFACE, header.interface, "interface must be 1-24 of [a-z0-9_]", is_interface_byte)?;
        let words = [
            (8, HEADER_LEN as u32),
            (12, object.len() as u32),
            (16, crc32(object)),
            (20, header.build_id.len() as u32),
            (IMPORTS, table.len() as u32),
        ];
        for (at, value) in words {
            if let Some(slot) = out.get_mut(at..at + 4) {
                slot.copy_from_slice(&value.to_le_bytes());
            }
        }
        for (at, bytes) in [(0, &MAGIC[..]), (FINGERPRINT, &header.fingerprint[..]), (BUILD_ID, header.build_id)] {
            if let Some(slot) = out.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        }
        out.extend_from_slice(object);
        out.extend_from_slice(&table);
        Ok(Self::sign(out, seed))
    }

    /// Signs `file` (a cell file, its signature field being overwritten)
    /// with the 32-byte key `seed`.
    pub fn sign(mut file: Vec<u8>, seed: &[u8; 32]) -> Vec<u8> {
        let keys = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
        let (header, object) = file.split_at(HEADER_LEN.min(file.len()));
        // Deterministic RFC 8032 signing over one buffer (the incremental
        // signer derives its nonce without the message, which is only safe
        // with fresh random noise each time).
        let mut message = unsigned_header(header).to_vec();
        message.extend_from_slice(object);
        let signature = keys.sk.sign(&message, None);
        if let Some(slot) = file.get_mut(SIGNATURE..SIGNATURE + 64) {
            slot.copy_from_slice(signature.as_ref());
        }
        file
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];
    const IMPORTS_AT: usize = super::IMPORTS;

    fn header(name: &str) -> Header<'_> {
        Header { name, version: "0.1.0", interface: "block", fingerprint: [0x42; 32], build_id: &[0xb1; 20] }
    }

    const IMPORTS: [(&str, u64); 2] = [("memcpy", 0xffff_ffff_8010_0000), ("_ZN11framekernel4time6now_ns17h0123E", 0xffff_ffff_8012_3450)];

    #[test]
    fn round_trip() {
        let file = CellFile::write(&header("virtio_blk"), b"\x7fELF object", &IMPORTS, &SEED).unwrap();
        let cell = CellFile::verify(&file, &public_key(&SEED)).unwrap();
        assert_eq!((cell.header, cell.object), (header("virtio_blk"), &b"\x7fELF object"[..]));
        assert_eq!(cell.imports.iter().collect::<Vec<_>>(), IMPORTS);
        assert_eq!(cell.imports.get("memcpy"), Some(0xffff_ffff_8010_0000));
        assert_eq!(cell.imports.get("memmove"), None);
    }

    #[test]
    fn malformed_import_tables_are_named() {
        assert!(Imports::parse(&[1, 2, 3]).is_err());
        let mut table = Imports::write(&IMPORTS).unwrap();
        table.pop();
        assert_eq!(Imports::parse(&table), Err(FileError::BadImports("a record runs past the table")));
        let empty_name = [0u8; 10];
        assert!(Imports::parse(&empty_name).is_err());
    }

    /// Flips `at` and fixes the CRC, as someone tampering on purpose would.
    fn tamper(file: &[u8], at: usize) -> Vec<u8> {
        let mut bad = file.to_vec();
        bad[at] ^= 0x10;
        let len = u32::from_le_bytes(bad[12..16].try_into().unwrap()) as usize;
        if let Some(object) = bad.get(HEADER_LEN..HEADER_LEN + len) {
            let crc = crc32(object);
            bad[16..20].copy_from_slice(&crc.to_le_bytes());
        }
        bad
    }

    #[test]
    fn a_flipped_bit_anywhere_with_the_crc_fixed_is_refused_by_the_signature() {
        // An import's address flipped is caught like any other byte.
        let good = CellFile::write(&header("c"), &[7u8; 300], &IMPORTS, &SEED).unwrap();
        let key = public_key(&SEED);
        for at in (0..good.len()).filter(|&at| !(16..20).contains(&at)) {
            let bad = tamper(&good, at);
            let result = CellFile::verify(&bad, &key);
            assert!(
                matches!(
                    result,
                    Err(FileError::BadSignature
                        | FileError::BadHeader(_)
                        | FileError::BadMagic
                        | FileError::TooLarge { .. }
                        | FileError::Truncated { .. }
                        | FileError::TrailingBytes { .. })
                ),
                "flip at {at}: {result:?}"
            );
            // Past the framing fields, only the signature can tell.
            if at >= 24 && !(IMPORTS_AT..IMPORTS_AT + 4).contains(&at) {
                assert_eq!(result, Err(FileError::BadSignature), "flip at {at}");
            }
        }
    }

    #[test]
    fn another_key_is_refused() {
        let file = CellFile::write(&header("c"), &[1u8; 64], &[], &SEED).unwrap();
        assert_eq!(CellFile::verify(&file, &public_key(&[8; 32])), Err(FileError::BadSignature));
        assert!(FileError::BadSignature.to_string().contains("signing key"));
    }

    #[test]
    fn every_defect_is_named() {
        let key = public_key(&SEED);
        let good = CellFile::write(&header("c"), &[7u8; 300], &[], &SEED).unwrap();
        assert_eq!(CellFile::verify(&good[..100], &key), Err(FileError::TooShort { len: 100 }));
        assert_eq!(CellFile::verify(&good[..300], &key), Err(FileError::Truncated { expected: 300, actual: 44 }));
        for cut in HEADER_LEN..good.len() {
            assert!(matches!(CellFile::verify(&good[..cut], &key), Err(FileError::Truncated { .. })));
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(CellFile::verify(&longer, &key), Err(FileError::TrailingBytes { extra: 1 }));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(CellFile::verify(&bad, &key), Err(FileError::BadMagic));
        let mut old = good.clone();
        old[..8].copy_from_slice(&OLD_MAGIC);
        assert_eq!(CellFile::verify(&old, &key), Err(FileError::OldFormat));
        for at in HEADER_LEN..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x10;
            assert!(matches!(CellFile::verify(&flipped, &key), Err(FileError::Checksum { .. })), "flip at {at}");
        }
        // A bad field, signed: refused by the field check.
        let mut name = good.clone();
        name[24] = b'A';
        let name = CellFile::sign(name, &SEED);
        assert!(matches!(CellFile::verify(&name, &key), Err(FileError::BadHeader(w)) if w.starts_with("name")));
        let mut reserved = good.clone();
        reserved[240] = 1;
        let reserved = CellFile::sign(reserved, &SEED);
        assert!(matches!(CellFile::verify(&reserved, &key), Err(FileError::BadHeader(_))));
        let mut huge = good.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(CellFile::verify(&huge, &key), Err(FileError::TooLarge { .. })));
        assert!(CellFile::write(&header("Bad Name"), b"", &[], &SEED).is_err());
        assert!(CellFile::write(&Header { interface: "this_interface_name_is_too_long", ..header("a") }, b"", &[], &SEED).is_err());
        assert!(CellFile::write(&Header { build_id: &[], ..header("a") }, b"", &[], &SEED).is_err());
    }

    #[test]
    fn fingerprints_change_with_the_definition_and_the_name() {
        let a = framekernel_boundary::fingerprint("block", "pub trait BlockDriver { fn read(&self); }");
        assert_eq!(a, framekernel_boundary::fingerprint("block", "pub trait BlockDriver { fn read(&self); }"));
        assert_ne!(a, framekernel_boundary::fingerprint("block", "pub trait BlockDriver { fn read(&self, x: u8); }"));
        assert_ne!(a, framekernel_boundary::fingerprint("serial", "pub trait BlockDriver { fn read(&self); }"));
        assert_ne!(a[..8], a[8..16]);
    }

    #[test]
    fn build_ids_are_read_from_notes() {
        let mut note = alloc::vec::Vec::new();
        for (name, kind, desc) in [(&b"Xen\0"[..], 3u32, &[1u8, 2][..]), (b"GNU\0", 1, &[3; 4]), (b"GNU\0", 3, &[0xab; 20])] {
            note.extend_from_slice(&(name.len() as u32).to_le_bytes());
            note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            note.extend_from_slice(&kind.to_le_bytes());
            note.extend_from_slice(name);
            note.extend_from_slice(desc);
            note.resize(note.len().next_multiple_of(4), 0);
        }
        assert_eq!(gnu_build_id(&note), Some(&[0xab; 20][..]));
        assert_eq!(gnu_build_id(&note[..note.len() - 1]), None);
        assert_eq!(gnu_build_id(&[0xff; 16]), None);
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn keys_parse_from_hex() {
        let key = public_key(&SEED);
        let hex: alloc::string::String = key.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(parse_key(&hex), Some(key));
        assert_eq!(parse_key(&hex[..62]), None);
        assert_eq!(parse_key(&hex.replace('a', "g")), if hex.contains('a') { None } else { Some(key) });
    }
}
