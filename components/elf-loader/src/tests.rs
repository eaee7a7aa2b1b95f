//! Host tests: synthetic ELF files with each kind of defect, a real static
//! binary built by the host's gcc, and the stack layout.

use super::*;

/// A program header for [`elf`].
#[derive(Clone, Copy)]
struct Ph {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    file_size: u64,
    mem_size: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, file_size: u64, mem_size: u64) -> Ph {
    Ph { kind: PT_LOAD, flags, offset, vaddr, file_size, mem_size }
}

/// An ELF64 x86_64 file of `size` bytes with the given headers at 64.
fn elf(kind: u16, entry: u64, phs: &[Ph], size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size.max(64 + phs.len() * 56)];
    b[..6].copy_from_slice(b"\x7fELF\x02\x01");
    b[16..18].copy_from_slice(&kind.to_le_bytes());
    b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    for (i, ph) in phs.iter().enumerate() {
        let at = 64 + i * 56;
        b[at..at + 4].copy_from_slice(&ph.kind.to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&ph.flags.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&ph.offset.to_le_bytes());
        b[at + 16..at + 24].copy_from_slice(&ph.vaddr.to_le_bytes());
        b[at + 32..at + 40].copy_from_slice(&ph.file_size.to_le_bytes());
        b[at + 40..at + 48].copy_from_slice(&ph.mem_size.to_le_bytes());
    }
    b
}

fn good() -> Vec<u8> {
    elf(
        ET_EXEC,
        0x401000,
        &[load(4, 0, 0x400000, 0x200, 0x200), load(5, 0x1000, 0x401000, 0x100, 0x100), load(6, 0x2000, 0x402000, 0x80, 0x3000)],
        0x3000,
    )
}

#[test]
fn plans_a_static_executable() {
    let image = parse(&good()).unwrap();
    assert_eq!(image.entry, 0x401000);
    assert_eq!(image.segments.len(), 3);
    assert!(image.segments[1].exec && !image.segments[1].write);
    assert!(image.segments[2].write && !image.segments[2].exec);
    assert_eq!(image.segments[2].pages(), (0x402000, 0x405000));
    assert_eq!(image.brk_start, 0x405000);
    assert_eq!(image.phdr, 0x400040, "headers found inside the first segment");
    assert_eq!((image.phnum, image.phent, image.load_bias), (3, 56, 0));
}

#[test]
fn static_pie_is_placed_at_the_pie_base() {
    let file = elf(ET_DYN, 0x1000, &[load(5, 0, 0x0, 0x1100, 0x1100)], 0x1100);
    // vaddr 0 is refused for ET_EXEC but is normal for PIE (biased).
    let image = parse(&file).unwrap();
    assert_eq!(image.entry, PIE_BASE + 0x1000);
    assert_eq!(image.segments[0].vaddr, PIE_BASE);
}

#[test]
fn each_defect_is_named() {
    let mut not_elf = good();
    not_elf[1] = b'X';
    assert_eq!(parse(&not_elf), Err(ElfError::NotElf64));
    let mut arm = good();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    assert_eq!(parse(&arm), Err(ElfError::WrongMachine(183)));
    let mut relocatable = good();
    relocatable[16..18].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(parse(&relocatable), Err(ElfError::NotExecutable(1)));
    let interp = elf(ET_EXEC, 0x401000, &[Ph { kind: PT_INTERP, flags: 4, offset: 0, vaddr: 0, file_size: 1, mem_size: 1 }], 0x200);
    assert_eq!(parse(&interp), Err(ElfError::BadInterpreter)); // one byte, not a NUL-terminated path
    let mut many = good();
    many[56..58].copy_from_slice(&1000u16.to_le_bytes());
    assert_eq!(parse(&many), Err(ElfError::Truncated("program header table")));
    let past_end = elf(ET_EXEC, 0x400000, &[load(5, 0x1000, 0x400000, 0x5000, 0x5000)], 0x2000);
    assert_eq!(parse(&past_end), Err(ElfError::BadSegment(0)));
    let file_bigger_than_mem = elf(ET_EXEC, 0x400000, &[load(5, 0, 0x400000, 0x200, 0x100)], 0x1000);
    assert_eq!(parse(&file_bigger_than_mem), Err(ElfError::BadSegment(0)));
    let misaligned = elf(ET_EXEC, 0x400000, &[load(5, 0x10, 0x400000, 0x100, 0x100)], 0x1000);
    assert_eq!(parse(&misaligned), Err(ElfError::BadSegment(0)));
    let kernel_half = elf(ET_EXEC, 0xffff_ffff_8000_0000, &[load(5, 0, 0xffff_ffff_8000_0000, 0x100, 0x100)], 0x1000);
    assert_eq!(parse(&kernel_half), Err(ElfError::BadSegment(0)));
    let wrapping = elf(ET_EXEC, 0x400000, &[load(5, 0, 0x400000, 0x100, u64::MAX)], 0x1000);
    assert_eq!(parse(&wrapping), Err(ElfError::BadSegment(0)));
    let null_page = elf(ET_EXEC, 0x0, &[load(5, 0, 0x0, 0x100, 0x100)], 0x1000);
    assert_eq!(parse(&null_page), Err(ElfError::BadSegment(0)));
    let overlap = elf(ET_EXEC, 0x400000, &[load(5, 0, 0x400000, 0x100, 0x2000), load(6, 0x1000, 0x401000, 0x10, 0x10)], 0x2000);
    assert_eq!(parse(&overlap), Err(ElfError::Overlap(0, 1)));
    let huge = elf(ET_EXEC, 0x400000, &[load(5, 0, 0x400000, 0x100, 0x100), load(6, 0, 0x10_0040_0000, 0x100, 0x100)], 0x1000);
    assert!(matches!(parse(&huge), Err(ElfError::TooBig(_))));
    let no_exec_entry = elf(ET_EXEC, 0x400010, &[load(6, 0, 0x400000, 0x100, 0x100)], 0x1000);
    assert_eq!(parse(&no_exec_entry), Err(ElfError::BadEntry(0x400010)));
    let nothing = elf(ET_EXEC, 0x400000, &[], 0x100);
    assert_eq!(parse(&nothing), Err(ElfError::NoSegments));
}

#[test]
fn every_truncation_of_a_real_header_is_refused_or_consistent() {
    let file = good();
    for cut in 0..file.len() {
        if let Ok(image) = parse(&file[..cut]) {
            for s in &image.segments {
                assert!(s.file_offset + s.file_size <= cut as u64, "segment past a cut at {cut}");
            }
        }
    }
}

#[test]
fn parses_a_real_static_binary_from_gcc() {
    let dir = std::env::temp_dir().join(format!("tessera-elf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("t.c");
    let binary = dir.join("t");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let status = std::process::Command::new("gcc").args(["-static", "-O2", "-o"]).arg(&binary).arg(&source).status();
    assert!(status.is_ok_and(|s| s.success()), "gcc -static is needed for this test (make deps)");
    let bytes = std::fs::read(&binary).unwrap();
    let image = parse(&bytes).unwrap();
    assert!(image.segments.iter().any(|s| s.exec));
    assert!(image.segments.iter().any(|s| s.write));
    assert_ne!(image.phdr, 0);
    assert!(image.brk_start > image.entry);
    // Its first page plans the same.
    assert_eq!(parse_head(&bytes[..4096], bytes.len() as u64), Ok(image.clone()));
    // Corrupted copies: flipping header bytes never panics.
    for at in (0..64 + usize::from(image.phnum) * 56).step_by(3) {
        let mut copy = bytes.clone();
        copy[at] ^= 0xff;
        let _ = parse(&copy);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn word(bytes: &[u8], sp: u64, addr: u64) -> u64 {
    let at = (addr - sp) as usize;
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn c_string(bytes: &[u8], sp: u64, addr: u64) -> String {
    let at = (addr - sp) as usize;
    let end = bytes[at..].iter().position(|&b| b == 0).unwrap();
    String::from_utf8(bytes[at..at + end].to_vec()).unwrap()
}

#[test]
fn stack_layout_matches_linux() {
    let top = 0x7fff_ffff_f000;
    let image = build_stack(
        top,
        &[b"/bin/hello", b"-v"],
        &[b"HOME=/", b"TERM=vt100"],
        &[(aux::AT_PAGESZ, 4096), (aux::AT_ENTRY, 0x401000)],
        [7; 16],
        b"/bin/hello",
    )
    .unwrap();
    let (sp, b) = (image.sp, &image.bytes);
    assert_eq!(sp % 16, 0);
    assert_eq!(sp + b.len() as u64, top);
    assert_eq!(word(b, sp, sp), 2, "argc");
    assert_eq!(c_string(b, sp, word(b, sp, sp + 8)), "/bin/hello");
    assert_eq!(c_string(b, sp, word(b, sp, sp + 16)), "-v");
    assert_eq!(word(b, sp, sp + 24), 0);
    assert_eq!(c_string(b, sp, word(b, sp, sp + 32)), "HOME=/");
    assert_eq!(c_string(b, sp, word(b, sp, sp + 40)), "TERM=vt100");
    assert_eq!(word(b, sp, sp + 48), 0);
    let mut at = sp + 56;
    let mut found = std::collections::HashMap::new();
    loop {
        let (key, value) = (word(b, sp, at), word(b, sp, at + 8));
        at += 16;
        if key == aux::AT_NULL {
            break;
        }
        found.insert(key, value);
    }
    assert_eq!(found[&aux::AT_PAGESZ], 4096);
    assert_eq!(found[&aux::AT_ENTRY], 0x401000);
    assert_eq!(c_string(b, sp, found[&aux::AT_PLATFORM]), "x86_64");
    assert_eq!(c_string(b, sp, found[&aux::AT_EXECFN]), "/bin/hello");
    let random = (found[&aux::AT_RANDOM] - sp) as usize;
    assert_eq!(&b[random..random + 16], &[7; 16]);
    assert_eq!(image.argv_start, word(b, sp, sp + 8));
}

#[test]
fn stack_limits() {
    let big = vec![b'x'; ARG_LIMIT];
    assert!(matches!(build_stack(0x7fff_0000, &[&big], &[], &[], [0; 16], b"x"), Err(StackError::TooBig { .. })));
    assert_eq!(build_stack(0x7fff_0000, &[b"a\0b"], &[], &[], [0; 16], b"x"), Err(StackError::EmbeddedNul));
    let empty = build_stack(0x7fff_0000, &[], &[], &[], [0; 16], b"x").unwrap();
    assert_eq!(word(&empty.bytes, empty.sp, empty.sp), 0, "argc 0");
}

/// The interpreter path of [`dynamic`], with its NUL.
const INTERP: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";

/// A position-independent program naming [`INTERP`] (at 0x800) as its
/// interpreter.
fn dynamic() -> Vec<u8> {
    let mut file = elf(
        ET_DYN,
        0x1000,
        &[Ph { kind: PT_INTERP, flags: 4, offset: 0x800, vaddr: 0x800, file_size: INTERP.len() as u64, mem_size: INTERP.len() as u64 }, load(5, 0x1000, 0x1000, 0x100, 0x100)],
        0x2000,
    );
    file[0x800..0x800 + INTERP.len()].copy_from_slice(INTERP);
    file
}

#[test]
fn dynamic_programs_name_their_interpreter() {
    let path = INTERP;
    let file = dynamic();
    let image = parse(&file).unwrap();
    assert_eq!(image.interpreter.as_deref(), Some(&path[..path.len() - 1]));
    assert_eq!(image.load_bias, PIE_BASE);
    // An interpreter may not name one itself; a plain ET_DYN is placed high.
    assert_eq!(parse_interpreter(&file), Err(ElfError::BadInterpreter));
    let ld = elf(ET_DYN, 0x1000, &[load(5, 0x1000, 0x1000, 0x100, 0x100)], 0x2000);
    let placed = parse_interpreter(&ld).unwrap();
    assert_eq!(placed.entry, INTERP_BASE + 0x1000);
    assert!(placed.segments.iter().all(|s| s.vaddr + s.mem_size <= USER_LOAD_LIMIT));
    assert_eq!(parse_interpreter(&good()), Err(ElfError::BadInterpreter)); // ET_EXEC
    // Not NUL-terminated, empty, or past the end of the file.
    for (offset, len) in [(0x800u64, path.len() as u64 - 1), (0x800 + path.len() as u64 - 1, 1), (0x1ff0, 0x20)] {
        let mut bad = file.clone();
        bad[64 + 8..64 + 16].copy_from_slice(&offset.to_le_bytes());
        bad[64 + 32..64 + 40].copy_from_slice(&len.to_le_bytes());
        assert_eq!(parse(&bad), Err(ElfError::BadInterpreter), "offset {offset:#x} len {len}");
    }
}

#[test]
fn script_lines_read_as_linux_reads_them() {
    let line = |s: &[u8]| script_interpreter(s);
    let ok = |i: &[u8], a: Option<&[u8]>| Some(Ok(ScriptLine { interpreter: i.to_vec(), argument: a.map(<[u8]>::to_vec) }));
    assert_eq!(line(b"\x7fELF"), None);
    assert_eq!(line(b"#"), None);
    assert_eq!(line(b"#!/bin/sh\necho hi\n"), ok(b"/bin/sh", None));
    assert_eq!(line(b"#! \t/bin/sh \t\n"), ok(b"/bin/sh", None));
    assert_eq!(line(b"#!/usr/bin/awk -f\n"), ok(b"/usr/bin/awk", Some(b"-f")));
    // The rest of the line is one argument, inner blanks kept.
    assert_eq!(line(b"#!/usr/bin/env  python3 -u  \n"), ok(b"/usr/bin/env", Some(b"python3 -u")));
    // A short file needs no newline (the buffer is NUL-padded).
    assert_eq!(line(b"#!/bin/sh"), ok(b"/bin/sh", None));
    assert_eq!(line(b"#!\n"), Some(Err(())));
    assert_eq!(line(b"#!   \n"), Some(Err(())));
    // Only the first 256 bytes count: a long argument is cut, a name cut
    // off by the limit is refused.
    let mut long_arg = b"#!/bin/sh ".to_vec();
    long_arg.extend(std::iter::repeat_n(b'x', 400));
    let Some(Ok(cut)) = line(&long_arg) else { panic!("refused") };
    assert_eq!(cut.argument.unwrap().len(), SCRIPT_LINE_MAX - 1 - 10);
    let mut long_name = b"#!/".to_vec();
    long_name.extend(std::iter::repeat_n(b'y', 400));
    assert_eq!(line(&long_name), Some(Err(())));
}

/// Parses `file` from its first `cut` bytes as a loader does: on
/// `Beyond(from, to)`, with those bytes read too.
fn parse_from_head(file: &[u8], cut: usize, interpreter: bool) -> Result<ExecImage, ElfError> {
    let head = &file[..cut.min(file.len())];
    let mut parts: Vec<(u64, &[u8])> = Vec::new();
    loop {
        let result = if interpreter { parse_interpreter_parts(head, &parts, file.len() as u64) } else { parse_parts(head, &parts, file.len() as u64) };
        match result {
            Err(ElfError::Beyond(from, to)) => {
                assert!(from < to && to as usize <= file.len() && to - from <= MAX_PHDR_TABLE.max(MAX_INTERP_PATH as u64), "Beyond({from}, {to}) of {} bytes", file.len());
                assert!(parts.len() < 4, "asked again for {from}..{to}");
                parts.push((from, &file[from as usize..to as usize]));
            }
            other => return other,
        }
    }
}

#[test]
fn the_first_bytes_plan_what_the_whole_file_plans() {
    let dynamic = dynamic();
    let mut far_table = good();
    far_table.resize(0x5000, 0);
    far_table.copy_within(64..64 + 3 * 56, 0x4000);
    far_table[32..40].copy_from_slice(&0x4000u64.to_le_bytes());
    let mut interp_past_end = dynamic.clone();
    interp_past_end[64 + 8..64 + 16].copy_from_slice(&0x1ff0u64.to_le_bytes());
    interp_past_end[64 + 32..64 + 40].copy_from_slice(&0x20u64.to_le_bytes());
    for file in [good(), dynamic, far_table, interp_past_end] {
        for cut in [64, 100, 0x200, 0x801, 0x1000, file.len()] {
            assert_eq!(parse_from_head(&file, cut, false), parse(&file), "cut at {cut}");
            assert_eq!(parse_from_head(&file, cut, true), parse_interpreter(&file), "cut at {cut}");
        }
    }
    // A header table that only a longer head holds, and one past the file.
    let mut far = good();
    far.resize(0x5000, 0);
    far[32..40].copy_from_slice(&0x4000u64.to_le_bytes());
    assert_eq!(parse_head(&far[..0x1000], far.len() as u64), Err(ElfError::Beyond(0x4000, 0x4000 + 3 * 56)));
    // The headers of a large file near its end: only they are read.
    let mut big = good();
    big.resize(64 << 20, 0);
    let at = (64 << 20) - 3 * 56;
    big.copy_within(64..64 + 3 * 56, at);
    big[32..40].copy_from_slice(&(at as u64).to_le_bytes());
    assert_eq!(parse_from_head(&big, 0x1000, false), parse(&big));
    assert!(parse(&big).is_ok());
    far[32..40].copy_from_slice(&0x4ff0u64.to_le_bytes());
    assert_eq!(parse_head(&far[..0x1000], far.len() as u64), Err(ElfError::Truncated("program header table")));
}
