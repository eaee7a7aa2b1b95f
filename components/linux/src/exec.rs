//! `execve`: a program's bytes become a fresh address space with its
//! segments mapped, a `brk` heap after them and the initial stack.

use crate::errno::Errno;
use crate::memory::{AddressSpace, Memory, PAGE, Prot, STACK_SIZE, STACK_TOP};
use alloc::vec::Vec;
use tessera_elf::{ElfError, aux};

/// A loaded program, ready to run.
pub struct Loaded {
    /// Its address space.
    pub memory: Memory,
    /// Entry point.
    pub entry: u64,
    /// Initial stack pointer.
    pub sp: u64,
    /// Address of `argv[0]`'s bytes and the total length of the argument
    /// strings (for `/proc/[pid]/cmdline`).
    pub args: (u64, usize),
}

fn hwcap() -> u64 {
    u64::from(core::arch::x86_64::__cpuid(1).edx)
}

/// Ids the auxiliary vector reports (`AT_UID` ...) and whether the
/// program runs with more rights than its caller (`AT_SECURE`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AuxIds {
    /// Real user id.
    pub uid: u32,
    /// Effective user id.
    pub euid: u32,
    /// Real group id.
    pub gid: u32,
    /// Effective group id.
    pub egid: u32,
    /// Set-id program.
    pub secure: bool,
}

/// Most `#!` scripts in a chain (Linux gives ELOOP beyond five).
pub const MAX_SCRIPT_DEPTH: usize = 5;

/// A program found by path and loaded.
pub struct Program {
    /// The loaded image.
    pub loaded: Loaded,
    /// Absolute path of the file that runs (`/proc/self/exe`): the last
    /// interpreter of a script.
    pub exe: alloc::string::String,
    /// The arguments the program gets (a script's interpreter, its
    /// optional argument and the script's path come first).
    pub argv: Vec<Vec<u8>>,
    /// The credentials it runs with (a set-id program changes them).
    pub credentials: crate::process::Credentials,
}

/// Finds `path` from `cwd` and loads it: an ELF program (with its program
/// interpreter if it is dynamically linked) or a `#!` script run by its
/// interpreter, as Linux's `execve` does.
pub fn load_path(
    fs: &crate::fs::Fs,
    path: &[u8],
    argv: Vec<Vec<u8>>,
    envp: &[&[u8]],
    credentials: &crate::process::Credentials,
) -> Result<Program, Errno> {
    let who = credentials.identity();
    let mut argv = argv;
    let mut file_path = path.to_vec();
    for _ in 0..=MAX_SCRIPT_DEPTH {
        let program = crate::fs::open_executable(fs, &file_path, &who)?;
        match tessera_elf::script_interpreter(&program.head) {
            None => {
                // The ELF file that runs decides set-id (a script's own
                // set-id bits are ignored, as on Linux).
                let credentials = credentials.after_exec(&program.meta);
                let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
                let exe = program.path.clone();
                let loaded = load(&program, &refs, envp, path, fs, &who, credentials.aux_ids())?;
                return Ok(Program { loaded, exe, argv, credentials });
            }
            Some(Err(())) => return Err(Errno::ENOEXEC),
            Some(Ok(line)) => {
                // interpreter [argument] script-path argv[1..]
                let mut next = alloc::vec![line.interpreter.clone()];
                next.extend(line.argument);
                next.push(file_path);
                next.extend(argv.into_iter().skip(1));
                argv = next;
                file_path = line.interpreter;
            }
        }
    }
    Err(Errno::ELOOP)
}

/// Adds areas for `image`'s segments. Their pages show the file's
/// page-cache pages, read-only until written (copy on write), so every
/// process running a program shares one copy of its code, as on Linux;
/// a segment's zero-filled tail (`.bss`) is anonymous memory, and the
/// page where file bytes end and zeros begin is a private copy made now.
fn map_segments(memory: &mut AddressSpace, image: &tessera_elf::ExecImage, program: &crate::fs::Executable) -> Result<(), Errno> {
    for segment in &image.segments {
        let prot = Prot { read: true, write: segment.write, exec: segment.exec };
        let (start, end) = segment.pages();
        let file_end = segment.vaddr + segment.file_size;
        let mem_end = segment.vaddr + segment.mem_size;
        // Pages an earlier segment's areas already cover (a page two
        // segments share) keep that area and get this segment's bytes.
        let mut covered: Vec<u64> = [start, end - PAGE].into_iter().filter(|&p| memory.area_end(p).is_some()).collect();
        covered.dedup();
        // Whole pages of file bytes (the last one partly, when no zeros
        // follow in the segment: the rest of that page shows the file, as
        // on Linux), then the zero-filled rest.
        let tail_zeroed = mem_end > file_end && !file_end.is_multiple_of(PAGE);
        let file_pages_end = if tail_zeroed { file_end & !(PAGE - 1) } else { file_end.next_multiple_of(PAGE) };
        let base = segment.vaddr.wrapping_sub(segment.file_offset);
        add_uncovered(memory, start, file_pages_end.max(start), |memory, lo, hi| {
            memory.add_file_area(lo, hi, prot, (false, true), (program.node.clone(), program.path.clone()), lo.wrapping_sub(base))
        })?;
        add_uncovered(memory, file_pages_end.max(start), end, |memory, lo, hi| memory.add_area(lo, hi, prot, false))?;
        // Bytes written now: the page where the file bytes end and zeros
        // begin, and pages shared with an earlier segment.
        let mut eager: Vec<u64> = covered;
        if tail_zeroed && segment.file_size > 0 && !eager.contains(&(file_end & !(PAGE - 1))) {
            eager.push(file_end & !(PAGE - 1));
        }
        for page in eager {
            let lo = page.max(segment.vaddr);
            let hi = (page + PAGE).min(mem_end);
            if lo >= hi {
                continue;
            }
            let mut contents = alloc::vec![0u8; (hi - lo) as usize];
            if lo < file_end {
                let part = contents.get_mut(..(hi.min(file_end) - lo) as usize).unwrap_or_default();
                program.read_exact_at(segment.file_offset + (lo - segment.vaddr), part)?;
            }
            memory.write_image(lo, &contents)?;
        }
    }
    Ok(())
}

/// `tessera_elf::parse_parts` or `parse_interpreter_parts`.
type ParseParts = fn(&[u8], &[(u64, &[u8])], u64) -> Result<tessera_elf::ExecImage, ElfError>;

/// Plans `program` from its first bytes, reading the pieces its headers
/// ask for when they lie further (`ElfError::Beyond`: the program header
/// table (64 KiB at most) or the interpreter path (4 KiB), wherever
/// they are in the file; never the bytes between).
fn plan(program: &crate::fs::Executable, parse: ParseParts) -> Result<Result<tessera_elf::ExecImage, ElfError>, Errno> {
    let mut parts: Vec<(u64, Vec<u8>)> = Vec::new();
    loop {
        let view: Vec<(u64, &[u8])> = parts.iter().map(|(at, bytes)| (*at, bytes.as_slice())).collect();
        match parse(&program.head, &view, program.len) {
            // Two pieces at most (the table, the path); each is asked for once.
            Err(ElfError::Beyond(from, to)) if parts.len() < 2 && to > from && to <= program.len && !parts.iter().any(|(at, _)| *at == from) => {
                let mut piece = alloc::vec![0u8; (to - from).min(tessera_elf::MAX_PHDR_TABLE.max(tessera_elf::MAX_INTERP_PATH as u64)) as usize];
                program.read_exact_at(from, &mut piece)?;
                parts.push((from, piece));
            }
            Err(ElfError::Beyond(..)) => return Ok(Err(ElfError::Truncated("headers"))),
            result => return Ok(result),
        }
    }
}

/// Calls `add(memory, lo, hi)` for each run of pages in `[start, end)`
/// that no area covers yet.
fn add_uncovered(
    memory: &mut AddressSpace,
    start: u64,
    end: u64,
    mut add: impl FnMut(&mut AddressSpace, u64, u64) -> Result<(), Errno>,
) -> Result<(), Errno> {
    // Area by area, not page by page (a program's text is hundreds of pages).
    let mut page = start;
    while page < end {
        if let Some(area_end) = memory.area_end(page) {
            page = area_end.max(page + PAGE);
            continue;
        }
        let run_end = memory.next_area_start(page).map_or(end, |next| next.min(end));
        add(memory, page, run_end)?;
        page = run_end;
    }
    Ok(())
}

/// Loads the ELF program `file` with the given arguments and environment;
/// a dynamically linked one gets its program interpreter (found from
/// `cwd`), which starts first and is told where the program is
/// (`AT_PHDR`, `AT_ENTRY`) and where it is itself (`AT_BASE`).
pub fn load(
    program: &crate::fs::Executable,
    argv: &[&[u8]],
    envp: &[&[u8]],
    execfn: &[u8],
    fs: &crate::fs::Fs,
    who: &tessera_vfs::Identity,
    ids: AuxIds,
) -> Result<Loaded, Errno> {
    let image = plan(program, tessera_elf::parse_parts)?.map_err(|e| match e {
        ElfError::TooBig(_) => Errno::ENOMEM,
        _ => Errno::ENOEXEC,
    })?;
    let mut memory = AddressSpace::new()?;
    map_segments(&mut memory, &image, program)?;
    let (start, base) = match &image.interpreter {
        Some(path) => {
            let ld = crate::fs::open_executable(fs, path, who)?;
            // Linux reads the interpreter's ELF header first: a shorter
            // file is EIO, a wrong one ELIBBAD.
            if ld.len < 64 {
                return Err(Errno::EIO);
            }
            let ld_image = plan(&ld, tessera_elf::parse_interpreter_parts)?.map_err(|e| match e {
                ElfError::TooBig(_) => Errno::ENOMEM,
                _ => Errno::ELIBBAD,
            })?;
            map_segments(&mut memory, &ld_image, &ld)?;
            (ld_image.entry, ld_image.load_bias)
        }
        None => (image.entry, 0),
    };
    memory.brk_start = image.brk_start;
    memory.brk = image.brk_start;
    memory.add_area(STACK_TOP - STACK_SIZE, STACK_TOP, Prot::DATA, false)?;
    let vdso = crate::vdso::map_into(&mut memory)?;
    let auxv = [
        (aux::AT_SYSINFO_EHDR, vdso),
        (aux::AT_PHDR, image.phdr),
        (aux::AT_PHENT, u64::from(image.phent)),
        (aux::AT_PHNUM, u64::from(image.phnum)),
        (aux::AT_PAGESZ, PAGE),
        (aux::AT_BASE, base),
        (aux::AT_FLAGS, 0),
        (aux::AT_ENTRY, image.entry),
        (aux::AT_UID, u64::from(ids.uid)),
        (aux::AT_EUID, u64::from(ids.euid)),
        (aux::AT_GID, u64::from(ids.gid)),
        (aux::AT_EGID, u64::from(ids.egid)),
        (aux::AT_HWCAP, hwcap()),
        (aux::AT_CLKTCK, 100),
        (aux::AT_SECURE, u64::from(ids.secure)),
        (aux::AT_HWCAP2, 0),
    ];
    let mut random = [0u8; 16];
    framekernel::random::fill(&mut random);
    let stack = tessera_elf::build_stack(STACK_TOP, argv, envp, &auxv, random, execfn).map_err(|e| match e {
        tessera_elf::StackError::TooBig { .. } => Errno::E2BIG,
        tessera_elf::StackError::EmbeddedNul => Errno::EINVAL,
    })?;
    memory.write_image(stack.sp, &stack.bytes)?;
    let args_len: usize = argv.iter().map(|a| a.len() + 1).sum();
    Ok(Loaded { memory: Memory::new(memory), entry: start, sp: stack.sp, args: (stack.argv_start, args_len) })
}

/// Splits a `KEY=value` environment into the byte strings exec wants.
pub fn default_env() -> Vec<&'static [u8]> {
    alloc::vec![b"PATH=/bin:/sbin:/usr/bin:/usr/sbin".as_slice(), b"HOME=/", b"TERM=vt100"]
}
