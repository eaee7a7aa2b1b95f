//! x86_64 ELF relocation arithmetic for loading cells (`ET_REL` objects).
//!
//! A loader places a cell's sections, then for each relocation computes the
//! bytes to store at the relocated field from S (the symbol's address), A
//! (the addend), P (the field's address) and, for GOT forms, G (the
//! address of the symbol's GOT slot). Every value is checked to fit its
//! field; a type the loader does not handle is refused by name.

use core::fmt;

/// The relocation types cells may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    /// `R_X86_64_64`: S + A, 64 bits.
    Abs64,
    /// `R_X86_64_PC32`: S + A - P, signed 32 bits.
    Pc32,
    /// `R_X86_64_PLT32`: as PC32 (no PLT: calls go straight to the symbol).
    Plt32,
    /// `R_X86_64_32`: S + A, zero-extended 32 bits.
    Abs32,
    /// `R_X86_64_32S`: S + A, sign-extended 32 bits.
    Abs32S,
    /// `R_X86_64_PC64`: S + A - P, 64 bits.
    Pc64,
    /// `R_X86_64_GOTPCREL`: G + A - P, signed 32 bits.
    GotPcRel,
    /// `R_X86_64_GOTPCRELX`: as GOTPCREL (relaxable).
    GotPcRelX,
    /// `R_X86_64_REX_GOTPCRELX`: as GOTPCREL (relaxable, REX prefix).
    RexGotPcRelX,
}

/// Why a relocation cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocError {
    /// A type outside [`RelocKind`].
    Unsupported { r_type: u32 },
    /// The value does not fit the field.
    Overflow { kind: RelocKind, value: i128 },
    /// A GOT form without a GOT slot.
    NoGotSlot,
}

/// Linux's name for an x86_64 relocation type number (for messages).
pub fn type_name(r_type: u32) -> &'static str {
    match r_type {
        0 => "R_X86_64_NONE",
        1 => "R_X86_64_64",
        2 => "R_X86_64_PC32",
        3 => "R_X86_64_GOT32",
        4 => "R_X86_64_PLT32",
        5 => "R_X86_64_COPY",
        6 => "R_X86_64_GLOB_DAT",
        7 => "R_X86_64_JUMP_SLOT",
        8 => "R_X86_64_RELATIVE",
        9 => "R_X86_64_GOTPCREL",
        10 => "R_X86_64_32",
        11 => "R_X86_64_32S",
        12 => "R_X86_64_16",
        13 => "R_X86_64_PC16",
        14 => "R_X86_64_8",
        15 => "R_X86_64_PC8",
        16 => "R_X86_64_DTPMOD64",
        17 => "R_X86_64_DTPOFF64",
        18 => "R_X86_64_TPOFF64",
        19 => "R_X86_64_TLSGD",
        20 => "R_X86_64_TLSLD",
        21 => "R_X86_64_DTPOFF32",
        22 => "R_X86_64_GOTTPOFF",
        23 => "R_X86_64_TPOFF32",
        24 => "R_X86_64_PC64",
        25 => "R_X86_64_GOTOFF64",
        26 => "R_X86_64_GOTPC32",
        27 => "R_X86_64_GOT64",
        28 => "R_X86_64_GOTPCREL64",
        29 => "R_X86_64_GOTPC64",
        30 => "R_X86_64_GOTPLT64",
        31 => "R_X86_64_PLTOFF64",
        32 => "R_X86_64_SIZE32",
        33 => "R_X86_64_SIZE64",
        34 => "R_X86_64_GOTPC32_TLSDESC",
        35 => "R_X86_64_TLSDESC_CALL",
        36 => "R_X86_64_TLSDESC",
        37 => "R_X86_64_IRELATIVE",
        38 => "R_X86_64_RELATIVE64",
        41 => "R_X86_64_GOTPCRELX",
        42 => "R_X86_64_REX_GOTPCRELX",
        _ => "an unknown type",
    }
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RelocError::Unsupported { r_type } => {
                write!(f, "relocation type {r_type} ({}) is not supported", type_name(r_type))
            }
            RelocError::Overflow { kind, value } => write!(f, "{kind:?} value {value:#x} does not fit its field"),
            RelocError::NoGotSlot => f.write_str("GOT relocation without a GOT slot"),
        }
    }
}

impl RelocKind {
    /// The kind for an ELF `r_type`.
    pub fn from_type(r_type: u32) -> Result<Self, RelocError> {
        Ok(match r_type {
            1 => RelocKind::Abs64,
            2 => RelocKind::Pc32,
            4 => RelocKind::Plt32,
            9 => RelocKind::GotPcRel,
            10 => RelocKind::Abs32,
            11 => RelocKind::Abs32S,
            24 => RelocKind::Pc64,
            41 => RelocKind::GotPcRelX,
            42 => RelocKind::RexGotPcRelX,
            _ => return Err(RelocError::Unsupported { r_type }),
        })
    }

    /// True for the forms that read a GOT slot.
    pub fn uses_got(self) -> bool {
        matches!(self, RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX)
    }

    /// Bytes of the field.
    pub fn width(self) -> usize {
        match self {
            RelocKind::Abs64 | RelocKind::Pc64 => 8,
            _ => 4,
        }
    }
}

/// The bytes to store at a relocated field (little-endian, `len` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// The value's bytes; only the first `len` are stored.
    pub bytes: [u8; 8],
    /// 4 or 8.
    pub len: usize,
}

impl Patch {
    /// The bytes to store.
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&[])
    }
}

/// Computes the field for `kind` at address `place`, for a symbol at
/// `symbol` with `addend`; `got_slot` is the symbol's GOT slot for the GOT
/// forms.
pub fn compute(kind: RelocKind, place: u64, symbol: u64, addend: i64, got_slot: Option<u64>) -> Result<Patch, RelocError> {
    let s = i128::from(symbol);
    let a = i128::from(addend);
    let p = i128::from(place);
    let value = match kind {
        RelocKind::Abs64 | RelocKind::Abs32 | RelocKind::Abs32S => s + a,
        RelocKind::Pc32 | RelocKind::Plt32 | RelocKind::Pc64 => s + a - p,
        RelocKind::GotPcRel | RelocKind::GotPcRelX | RelocKind::RexGotPcRelX => {
            i128::from(got_slot.ok_or(RelocError::NoGotSlot)?) + a - p
        }
    };
    let overflow = RelocError::Overflow { kind, value };
    let mut bytes = [0u8; 8];
    let len = kind.width();
    match kind {
        // Addresses and 64-bit differences wrap modulo 2^64 as the CPU does.
        RelocKind::Abs64 | RelocKind::Pc64 => bytes = (value as u64).to_le_bytes(),
        RelocKind::Abs32 => {
            put32(&mut bytes, u32::try_from(value).map_err(|_| overflow)?.to_le_bytes());
        }
        // 32S: the address is sign-extended from 32 bits (the top 2 GiB).
        RelocKind::Abs32S => {
            let v = i32::try_from(value - (1i128 << 64)).or_else(|_| i32::try_from(value)).map_err(|_| overflow)?;
            put32(&mut bytes, v.to_le_bytes());
        }
        _ => {
            put32(&mut bytes, i32::try_from(value).map_err(|_| overflow)?.to_le_bytes());
        }
    }
    Ok(Patch { bytes, len })
}

fn put32(bytes: &mut [u8; 8], value: [u8; 4]) {
    let [a, b, c, d] = value;
    *bytes = [a, b, c, d, 0, 0, 0, 0];
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    const KERNEL: u64 = 0xffff_ffff_8010_0000;
    const CELL: u64 = 0xffff_ffff_4000_0000;

    fn value(p: Patch) -> i64 {
        match p.len {
            4 => i64::from(i32::from_le_bytes(p.bytes[..4].try_into().unwrap())),
            _ => i64::from_le_bytes(p.bytes),
        }
    }

    #[test]
    fn kinds_from_types_and_unknown_ones_by_name() {
        assert_eq!(RelocKind::from_type(4), Ok(RelocKind::Plt32));
        assert_eq!(RelocKind::from_type(42), Ok(RelocKind::RexGotPcRelX));
        let err = RelocKind::from_type(19).unwrap_err();
        assert_eq!(err, RelocError::Unsupported { r_type: 19 });
        assert!(err.to_string().contains("R_X86_64_TLSGD"), "{err}");
        assert!(RelocError::Unsupported { r_type: 999 }.to_string().contains("999"));
    }

    #[test]
    fn pc_relative_calls_into_the_kernel() {
        // call rel32 at CELL+0x10 (field at +0x11) to a kernel function; A = -4.
        let p = compute(RelocKind::Plt32, CELL + 0x11, KERNEL + 0x40, -4, None).unwrap();
        assert_eq!(p.len, 4);
        assert_eq!(value(p), (KERNEL + 0x40) as i64 - 4 - (CELL + 0x11) as i64);
        // More than 2 GiB away: refused.
        let far = compute(RelocKind::Pc32, 0xffff_c000_0000_0000, KERNEL, 0, None);
        assert!(matches!(far, Err(RelocError::Overflow { kind: RelocKind::Pc32, .. })));
    }

    #[test]
    fn absolute_forms() {
        let p = compute(RelocKind::Abs64, CELL, KERNEL, 8, None).unwrap();
        assert_eq!((p.len, p.bytes), (8, (KERNEL + 8).to_le_bytes()));
        // 32S holds addresses in the top 2 GiB, sign-extended.
        let p = compute(RelocKind::Abs32S, CELL, KERNEL, 0, None).unwrap();
        assert_eq!(value(p) as u64, KERNEL);
        let low = compute(RelocKind::Abs32S, CELL, 0x1000, 0, None).unwrap();
        assert_eq!(value(low), 0x1000);
        assert!(compute(RelocKind::Abs32S, CELL, 0xffff_c000_0000_0000, 0, None).is_err());
        // 32 is zero-extended: kernel addresses do not fit.
        assert!(compute(RelocKind::Abs32, CELL, KERNEL, 0, None).is_err());
        assert_eq!(compute(RelocKind::Abs32, CELL, 0x8000_0000, 0, None).unwrap().as_slice(), &[0, 0, 0, 0x80]);
        let p = compute(RelocKind::Pc64, CELL, KERNEL, 0, None).unwrap();
        assert_eq!(value(p), (KERNEL - CELL) as i64);
    }

    #[test]
    fn the_cell_area_reaches_the_kernel() {
        use crate::layout::{CELLS_BASE, CELLS_END, KERNEL_BASE};
        let image_end = CELLS_BASE; // the image lies below the cell area
        for cell in [CELLS_BASE, CELLS_END - 8] {
            for kernel in [KERNEL_BASE + 0x10_0000, image_end - 8] {
                compute(RelocKind::Plt32, cell, kernel, -4, None).unwrap();
                compute(RelocKind::Pc32, kernel, cell, 0, None).unwrap();
                compute(RelocKind::Abs32S, cell, kernel, 0, None).unwrap();
                compute(RelocKind::Abs32S, kernel, cell, 0, None).unwrap();
            }
        }
    }

    #[test]
    fn got_forms_need_a_slot() {
        assert_eq!(compute(RelocKind::GotPcRel, CELL, KERNEL, -4, None), Err(RelocError::NoGotSlot));
        let p = compute(RelocKind::RexGotPcRelX, CELL + 3, KERNEL, -4, Some(CELL + 0x2000)).unwrap();
        assert_eq!(value(p), 0x2000 - 4 - 3);
        assert!(RelocKind::GotPcRelX.uses_got() && !RelocKind::Pc32.uses_got());
    }
}
