//! Safe parser for the ACPI tables the base reads: the RSDP, the RSDT or
//! XSDT it points to, and the MADT ("APIC"): the processors (local APIC
//! ids), the I/O APICs and the legacy interrupt overrides.
//!
//! Firmware tables are untrusted input like the boot information: every
//! signature, length and checksum is checked, every read is bounded, and
//! each failure is a typed error naming the problem. Nothing here panics.

use alloc::vec::Vec;
use core::fmt;

/// Reads firmware memory: fills `buf` from physical address `addr`, or
/// returns false when that range may not be read. The base implements it
/// over the firmware's reserved and ACPI ranges; tests over a buffer.
pub trait FirmwareMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

/// The longest table read (QEMU's MADT for 288 CPUs is under 3 KiB).
pub const MAX_TABLE: usize = 64 * 1024;
/// Most processors kept; further MADT entries are counted, not kept.
pub const MAX_CPUS: usize = 256;
/// Most I/O APICs and overrides kept.
pub const MAX_IO_APICS: usize = 16;
pub const MAX_OVERRIDES: usize = 32;
/// Bytes of a table header.
const HEADER: usize = 36;

/// Why the tables were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP: none given by the boot loader and none found by scanning.
    NoRsdp,
    /// A structure could not be read.
    Unreadable { what: &'static str, addr: u64, len: usize },
    /// A signature is wrong.
    BadSignature { what: &'static str, addr: u64 },
    /// The bytes of a structure do not sum to zero.
    BadChecksum { what: &'static str, addr: u64 },
    /// A length field is impossible.
    BadLength { what: &'static str, len: u64 },
    /// The root table lists no MADT.
    NoMadt,
    /// A MADT entry runs past the table or is shorter than its kind.
    BadEntry { offset: usize, kind: u8, len: u8 },
    /// No memory to hold a table.
    NoMemory,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => f.write_str("no ACPI RSDP (not given at boot, not found in 0xe0000..0x100000)"),
            AcpiError::Unreadable { what, addr, len } => write!(f, "{what} at {addr:#x} ({len} bytes) is not readable firmware memory"),
            AcpiError::BadSignature { what, addr } => write!(f, "{what} at {addr:#x} has a wrong signature"),
            AcpiError::BadChecksum { what, addr } => write!(f, "{what} at {addr:#x} has a bad checksum"),
            AcpiError::BadLength { what, len } => write!(f, "{what} has an impossible length {len}"),
            AcpiError::NoMadt => f.write_str("the ACPI root table lists no MADT"),
            AcpiError::BadEntry { offset, kind, len } => {
                write!(f, "MADT entry of kind {kind} at offset {offset} has a bad length {len}")
            }
            AcpiError::NoMemory => f.write_str("no memory to read the ACPI tables"),
        }
    }
}

/// The Root System Description Pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// 0 for ACPI 1.0 (RSDT only), 2 and up with an XSDT.
    pub revision: u8,
    /// Physical address of the RSDT (32-bit pointers).
    pub rsdt: u32,
    /// Physical address of the XSDT (64-bit pointers), 0 when none.
    pub xsdt: u64,
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// Checks and decodes the RSDP in `bytes` (found at `addr`): 20 bytes for
/// revision 0, its `length` (at least 36) from revision 2 on.
pub fn parse_rsdp(bytes: &[u8], addr: u64) -> Result<Rsdp, AcpiError> {
    const WHAT: &str = "ACPI RSDP";
    let first = bytes.get(..20).ok_or(AcpiError::Unreadable { what: WHAT, addr, len: 20 })?;
    if first.get(..8) != Some(b"RSD PTR ".as_slice()) {
        return Err(AcpiError::BadSignature { what: WHAT, addr });
    }
    if sum(first) != 0 {
        return Err(AcpiError::BadChecksum { what: WHAT, addr });
    }
    let revision = first.get(15).copied().unwrap_or(0);
    let rsdt = u32_at(first, 16).unwrap_or(0);
    let mut xsdt = 0;
    if revision >= 2 {
        let len = u32_at(bytes, 20).ok_or(AcpiError::Unreadable { what: WHAT, addr, len: 36 })? as usize;
        if !(36..=4096).contains(&len) {
            return Err(AcpiError::BadLength { what: WHAT, len: len as u64 });
        }
        let whole = bytes.get(..len).ok_or(AcpiError::Unreadable { what: WHAT, addr, len })?;
        if sum(whole) != 0 {
            return Err(AcpiError::BadChecksum { what: "ACPI RSDP (extended)", addr });
        }
        xsdt = u64_at(whole, 24).unwrap_or(0);
    }
    if rsdt == 0 && xsdt == 0 {
        return Err(AcpiError::BadLength { what: "ACPI RSDP root table address", len: 0 });
    }
    Ok(Rsdp { revision, rsdt, xsdt })
}

/// Finds a valid RSDP in `area` (the BIOS area, read from physical `base`):
/// on a 16-byte boundary, as the specification places it. Returns it with
/// its physical address.
pub fn find_rsdp(area: &[u8], base: u64) -> Option<(u64, Rsdp)> {
    (0..area.len()).step_by(16).find_map(|at| {
        let bytes = area.get(at..)?;
        let addr = base.checked_add(at as u64)?;
        parse_rsdp(bytes, addr).ok().map(|rsdp| (addr, rsdp))
    })
}

/// One processor of the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processor {
    /// Its local APIC id (x2APIC id for kind-9 entries).
    pub apic_id: u32,
    /// The firmware's processor UID.
    pub uid: u32,
    /// Usable now.
    pub enabled: bool,
    /// Not enabled, but can be brought online (hot-plug).
    pub online_capable: bool,
}

/// One I/O APIC of the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    pub id: u8,
    /// Physical address of its register window.
    pub address: u32,
    /// The first global system interrupt it serves.
    pub gsi_base: u32,
}

/// A legacy (ISA) interrupt wired to another global system interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    /// The ISA IRQ.
    pub source: u8,
    pub gsi: u32,
    /// MPS flags: polarity (bits 0-1) and trigger mode (bits 2-3).
    pub flags: u16,
}

/// What the MADT says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Madt {
    /// Physical address of the local APICs' register window.
    pub local_apic: u64,
    /// The machine also has the legacy 8259 PICs.
    pub pcat_compat: bool,
    pub processors: Vec<Processor>,
    pub io_apics: Vec<IoApic>,
    pub overrides: Vec<Override>,
    /// Entries past the limits above, counted and not kept.
    pub ignored: usize,
}

impl Madt {
    /// Processors that are usable now.
    pub fn enabled(&self) -> impl Iterator<Item = &Processor> {
        self.processors.iter().filter(|p| p.enabled)
    }
}

/// Reads the table at `addr` whole, checking its length and checksum and,
/// when given, its signature.
fn read_table(mem: &impl FirmwareMemory, addr: u64, signature: Option<&[u8; 4]>, what: &'static str) -> Result<Vec<u8>, AcpiError> {
    let mut header = [0u8; HEADER];
    if !mem.read(addr, &mut header) {
        return Err(AcpiError::Unreadable { what, addr, len: HEADER });
    }
    if let Some(sig) = signature
        && header.get(..4) != Some(sig.as_slice())
    {
        return Err(AcpiError::BadSignature { what, addr });
    }
    let len = u32_at(&header, 4).unwrap_or(0) as usize;
    if !(HEADER..=MAX_TABLE).contains(&len) {
        return Err(AcpiError::BadLength { what, len: len as u64 });
    }
    let mut table = Vec::new();
    table.try_reserve_exact(len).map_err(|_| AcpiError::NoMemory)?;
    table.resize(len, 0);
    if !mem.read(addr, &mut table) {
        return Err(AcpiError::Unreadable { what, addr, len });
    }
    // The header read first must be what was read whole (a table that
    // changes under us is as bad as a wrong checksum).
    if table.get(..HEADER) != Some(header.as_slice()) || sum(&table) != 0 {
        return Err(AcpiError::BadChecksum { what, addr });
    }
    Ok(table)
}

/// Finds and decodes the MADT through the root table `rsdp` names (the
/// XSDT when there is one).
pub fn read_madt(mem: &impl FirmwareMemory, rsdp: &Rsdp) -> Result<Madt, AcpiError> {
    let (root, width, what, sig) = if rsdp.revision >= 2 && rsdp.xsdt != 0 {
        (rsdp.xsdt, 8, "ACPI XSDT", b"XSDT")
    } else {
        (u64::from(rsdp.rsdt), 4, "ACPI RSDT", b"RSDT")
    };
    let table = read_table(mem, root, Some(sig), what)?;
    let entries = table.get(HEADER..).unwrap_or(&[]);
    for pointer in entries.chunks_exact(width) {
        let addr = if width == 8 { u64_at(pointer, 0) } else { u32_at(pointer, 0).map(u64::from) };
        let Some(addr) = addr.filter(|&a| a != 0) else { continue };
        let mut sig = [0u8; 4];
        if !mem.read(addr, &mut sig) {
            continue;
        }
        if &sig == b"APIC" {
            let madt = read_table(mem, addr, Some(b"APIC"), "ACPI MADT")?;
            return parse_madt(&madt);
        }
    }
    Err(AcpiError::NoMadt)
}

/// Decodes a whole MADT (header included, checksum already checked).
pub fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    let local_apic = u32_at(table, 36).ok_or(AcpiError::BadLength { what: "ACPI MADT", len: table.len() as u64 })?;
    let flags = u32_at(table, 40).ok_or(AcpiError::BadLength { what: "ACPI MADT", len: table.len() as u64 })?;
    let mut madt = Madt { local_apic: u64::from(local_apic), pcat_compat: flags & 1 != 0, ..Madt::default() };
    let mut at = 44;
    while at < table.len() {
        let kind = table.get(at).copied().unwrap_or(0);
        let len = table.get(at + 1).copied().unwrap_or(0);
        let entry = table.get(at..at + usize::from(len)).filter(|_| len >= 2).ok_or(AcpiError::BadEntry { offset: at, kind, len })?;
        let need = match kind {
            0 => 8,
            1 | 5 => 12,
            2 => 10,
            9 => 16,
            _ => 2,
        };
        if entry.len() < need {
            return Err(AcpiError::BadEntry { offset: at, kind, len });
        }
        let byte = |i: usize| entry.get(i).copied().unwrap_or(0);
        let word = |i: usize| u32_at(entry, i).unwrap_or(0);
        match kind {
            // Processor local APIC; id 0xff is a placeholder for an x2APIC
            // entry of the same processor.
            0 if byte(3) != 0xff => {
                let f = word(4);
                push_cpu(&mut madt, Processor { apic_id: u32::from(byte(3)), uid: u32::from(byte(2)), enabled: f & 1 != 0, online_capable: f & 2 != 0 });
            }
            9 => {
                let f = word(8);
                push_cpu(&mut madt, Processor { apic_id: word(4), uid: word(12), enabled: f & 1 != 0, online_capable: f & 2 != 0 });
            }
            1 => {
                if madt.io_apics.len() < MAX_IO_APICS {
                    madt.io_apics.push(IoApic { id: byte(2), address: word(4), gsi_base: word(8) });
                } else {
                    madt.ignored += 1;
                }
            }
            2 => {
                if madt.overrides.len() < MAX_OVERRIDES {
                    madt.overrides.push(Override { source: byte(3), gsi: word(4), flags: u16_at(entry, 8).unwrap_or(0) });
                } else {
                    madt.ignored += 1;
                }
            }
            5 => madt.local_apic = u64_at(entry, 4).unwrap_or(madt.local_apic),
            _ => {}
        }
        at += usize::from(len);
    }
    Ok(madt)
}

/// Keeps a processor once (firmware may list one as both kinds).
fn push_cpu(madt: &mut Madt, cpu: Processor) {
    if madt.processors.iter().any(|p| p.apic_id == cpu.apic_id) {
        return;
    }
    if madt.processors.len() < MAX_CPUS {
        madt.processors.push(cpu);
    } else {
        madt.ignored += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Firmware memory over a buffer at physical `base`.
    struct Buffer {
        base: u64,
        bytes: Vec<u8>,
    }

    impl FirmwareMemory for Buffer {
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let Some(at) = addr.checked_sub(self.base).and_then(|a| usize::try_from(a).ok()) else { return false };
            match self.bytes.get(at..at + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn fix_checksum(table: &mut [u8], at: usize) {
        table[at] = 0;
        table[at] = 0u8.wrapping_sub(sum(table));
    }

    fn header(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; HEADER];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        fix_checksum(&mut t, 9);
        t
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; 36];
        r[..8].copy_from_slice(b"RSD PTR ");
        r[15] = revision;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r[..20], 8);
        fix_checksum(&mut r, 32);
        r
    }

    /// A QEMU-like MADT: two processors, one disabled, an x2APIC one, an
    /// I/O APIC, two overrides.
    fn madt_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // cpu uid 0 apic 0 enabled
        b.extend_from_slice(&[0, 8, 1, 1, 1, 0, 0, 0]); // cpu uid 1 apic 1 enabled
        b.extend_from_slice(&[0, 8, 2, 2, 2, 0, 0, 0]); // apic 2, online-capable only
        b.extend_from_slice(&[0, 8, 3, 1, 1, 0, 0, 0]); // apic 1 again: kept once
        b.extend_from_slice(&[9, 16, 0, 0, 0x00, 0x01, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0]); // x2apic 256
        b.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // ioapic 0 at 0xfec00000
        b.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // irq 0 -> gsi 2
        b.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]); // irq 9 level high
        b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]); // NMI source: skipped
        b
    }

    /// Firmware memory with the RSDP at 0xf0000, the root table at
    /// 0x1000 and the MADT at 0x2000 (other tables before it).
    fn machine(revision: u8, madt: Vec<u8>) -> (Buffer, Rsdp) {
        let mut bytes = vec![0u8; 0x10000];
        let facp = header(b"FACP", &[0; 16]);
        bytes[0x3000..0x3000 + facp.len()].copy_from_slice(&facp);
        bytes[0x2000..0x2000 + madt.len()].copy_from_slice(&madt);
        let root = if revision >= 2 {
            let mut body = Vec::new();
            body.extend_from_slice(&0x3000u64.to_le_bytes());
            body.extend_from_slice(&0u64.to_le_bytes());
            body.extend_from_slice(&0x2000u64.to_le_bytes());
            header(b"XSDT", &body)
        } else {
            let mut body = Vec::new();
            body.extend_from_slice(&0x3000u32.to_le_bytes());
            body.extend_from_slice(&0x2000u32.to_le_bytes());
            header(b"RSDT", &body)
        };
        bytes[0x1000..0x1000 + root.len()].copy_from_slice(&root);
        let r = rsdp(revision, 0x1000, if revision >= 2 { 0x1000 } else { 0 });
        (Buffer { base: 0, bytes }, parse_rsdp(&r, 0xf0000).expect("a good RSDP"))
    }

    #[test]
    fn reads_a_qemu_like_madt_through_rsdt_and_xsdt() {
        for revision in [0, 2] {
            let (mem, rsdp) = machine(revision, header(b"APIC", &madt_body()));
            let madt = read_madt(&mem, &rsdp).expect("the MADT");
            assert_eq!(madt.local_apic, 0xfee0_0000);
            assert!(madt.pcat_compat);
            let ids: Vec<_> = madt.processors.iter().map(|p| (p.apic_id, p.enabled, p.online_capable)).collect();
            assert_eq!(ids, [(0, true, false), (1, true, false), (2, false, true), (256, true, false)]);
            assert_eq!(madt.enabled().count(), 3);
            assert_eq!(madt.io_apics, [IoApic { id: 0, address: 0xfec0_0000, gsi_base: 0 }]);
            assert_eq!(madt.overrides, [Override { source: 0, gsi: 2, flags: 0 }, Override { source: 9, gsi: 9, flags: 0x0d }]);
        }
    }

    #[test]
    fn finds_the_rsdp_on_a_16_byte_boundary() {
        let mut area = vec![0u8; 0x20000];
        let r = rsdp(2, 0x1000, 0x1000);
        // A signature at an odd place and one with a bad checksum first.
        area[0x105..0x105 + 36].copy_from_slice(&r);
        let mut bad = r.clone();
        bad[16] ^= 1;
        area[0x200..0x200 + 36].copy_from_slice(&bad);
        area[0x15a40..0x15a40 + 36].copy_from_slice(&r);
        let (addr, found) = find_rsdp(&area, 0xe0000).expect("found");
        assert_eq!(addr, 0xe0000 + 0x15a40);
        assert_eq!(found.xsdt, 0x1000);
        assert_eq!(find_rsdp(&area[..0x15a40], 0xe0000), None);
    }

    #[test]
    fn bad_tables_are_named_errors() {
        let r = rsdp(2, 0x1000, 0x1000);
        let mut bad = r.clone();
        bad[0] = b'X';
        assert_eq!(parse_rsdp(&bad, 0), Err(AcpiError::BadSignature { what: "ACPI RSDP", addr: 0 }));
        let mut bad = r.clone();
        bad[30] ^= 0x40; // only the extended checksum covers it
        assert_eq!(parse_rsdp(&bad, 0), Err(AcpiError::BadChecksum { what: "ACPI RSDP (extended)", addr: 0 }));
        assert!(parse_rsdp(&r[..20], 0).is_err(), "revision 2 needs 36 bytes");

        // MADT checksum, length past the limit, an entry running past the end.
        let mut madt = header(b"APIC", &madt_body());
        madt[50] ^= 1;
        let (mem, rsdp) = machine(2, madt);
        assert_eq!(read_madt(&mem, &rsdp), Err(AcpiError::BadChecksum { what: "ACPI MADT", addr: 0x2000 }));
        let mut madt = header(b"APIC", &madt_body());
        madt[4..8].copy_from_slice(&(MAX_TABLE as u32 + 1).to_le_bytes());
        let (mem, rsdp) = machine(2, madt);
        assert!(matches!(read_madt(&mem, &rsdp), Err(AcpiError::BadLength { .. })));
        let mut body = madt_body();
        body.extend_from_slice(&[1, 40, 0, 0]);
        let (mem, rsdp) = machine(2, header(b"APIC", &body));
        assert!(matches!(read_madt(&mem, &rsdp), Err(AcpiError::BadEntry { kind: 1, len: 40, .. })));
        let mut body = madt_body();
        body.extend_from_slice(&[0, 0]);
        assert!(matches!(parse_madt(&header(b"APIC", &body)), Err(AcpiError::BadEntry { len: 0, .. })));
        let mut body = madt_body();
        body.extend_from_slice(&[1, 6, 0, 0, 0, 0]);
        assert!(matches!(parse_madt(&header(b"APIC", &body)), Err(AcpiError::BadEntry { kind: 1, len: 6, .. })));

        // No MADT; a root table pointing outside memory.
        let (mem, rsdp) = machine(2, header(b"HPET", &[0; 20]));
        assert_eq!(read_madt(&mem, &rsdp), Err(AcpiError::NoMadt));
        let far = parse_rsdp(&rsdp_bytes_to(0xdead_0000), 0).expect("rsdp");
        assert!(matches!(read_madt(&mem, &far), Err(AcpiError::Unreadable { .. })));
    }

    fn rsdp_bytes_to(xsdt: u64) -> Vec<u8> {
        rsdp(2, 0, xsdt)
    }

    #[test]
    fn random_damage_never_panics() {
        let (good, rsdp) = machine(2, header(b"APIC", &madt_body()));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bytes = good.bytes.clone();
            for _ in 0..(next() % 8 + 1) {
                // Damage the root table or the MADT, then re-checksum
                // half the time so that the parser sees the damage.
                let at = if next() % 2 == 0 { 0x1000 } else { 0x2000 } + (next() % 160) as usize;
                bytes[at] = next() as u8;
            }
            if next() % 2 == 0 {
                for base in [0x1000, 0x2000] {
                    let len = (u32_at(&bytes, base + 4).unwrap_or(0) as usize).min(0x1000);
                    if len > 10 {
                        fix_checksum(&mut bytes[base..base + len], 9);
                    }
                }
            }
            let mem = Buffer { base: 0, bytes };
            if let Ok(madt) = read_madt(&mem, &rsdp) {
                assert!(madt.processors.len() <= MAX_CPUS);
            }
        }
    }
}
