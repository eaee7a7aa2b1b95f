//! `execve`: a program's bytes become a fresh address space with its
//! segments mapped, a `brk` heap after them and the initial stack.

use crate::errno::Errno;
use crate::memory::{AddressSpace, Backing, Memory, PAGE, Prot, STACK_SIZE, STACK_TOP};
use alloc::sync::Arc;
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
        let (bytes, absolute, meta) = crate::fs::open_executable(fs, &file_path, &who)?;
        match tessera_elf::script_interpreter(&bytes) {
            None => {
                // The ELF file that runs decides set-id (a script's own
                // set-id bits are ignored, as on Linux).
                let credentials = credentials.after_exec(&meta);
                let refs: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
                let loaded = load(bytes, &refs, envp, path, fs, &who, credentials.aux_ids())?;
                return Ok(Program { loaded, exe: absolute, argv, credentials });
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

/// Adds areas for `image`'s segments, filled from `file` on first touch.
fn map_segments(memory: &mut AddressSpace, image: &tessera_elf::ExecImage, file: &Arc<Vec<u8>>) -> Result<(), Errno> {
    for segment in &image.segments {
        let prot = Prot { read: true, write: segment.write, exec: segment.exec };
        let from = segment.file_offset as usize;
        let bytes = file.get(from..from + segment.file_size as usize).ok_or(Errno::ENOEXEC)?;
        let backing = Backing { file: file.clone(), start: from, len: bytes.len(), vaddr: segment.vaddr };
        let (start, end) = segment.pages();
        // Pages of this segment not shared with an earlier one are filled
        // from the file when first touched.
        let mut page = start;
        while page < end {
            if memory.area_at(page).is_some() {
                page += PAGE;
                continue;
            }
            let run_end = (page + PAGE..end).step_by(PAGE as usize).find(|&p| memory.area_at(p).is_some()).unwrap_or(end);
            memory.add_backed_area(page, run_end, prot, backing.clone())?;
            page = run_end;
        }
        // A page an earlier segment also covers gets this segment's bytes now.
        for shared in [start, end - PAGE] {
            let covered = memory.area_at(shared).is_some_and(|(_, a)| a.backing.is_some_and(|b| b.vaddr != segment.vaddr));
            if covered {
                let lo = shared.max(segment.vaddr);
                let hi = (shared + PAGE).min(segment.vaddr + segment.file_size);
                if lo < hi {
                    let part = bytes.get((lo - segment.vaddr) as usize..(hi - segment.vaddr) as usize).unwrap_or(&[]);
                    memory.write_image(lo, part)?;
                }
            }
        }
    }
    Ok(())
}

/// Loads the ELF program `file` with the given arguments and environment;
/// a dynamically linked one gets its program interpreter (found from
/// `cwd`), which starts first and is told where the program is
/// (`AT_PHDR`, `AT_ENTRY`) and where it is itself (`AT_BASE`).
pub fn load(
    file: Arc<Vec<u8>>,
    argv: &[&[u8]],
    envp: &[&[u8]],
    execfn: &[u8],
    fs: &crate::fs::Fs,
    who: &tessera_vfs::Identity,
    ids: AuxIds,
) -> Result<Loaded, Errno> {
    let image = tessera_elf::parse(&file).map_err(|e| match e {
        ElfError::TooBig(_) => Errno::ENOMEM,
        _ => Errno::ENOEXEC,
    })?;
    let mut memory = AddressSpace::new()?;
    map_segments(&mut memory, &image, &file)?;
    let (start, base) = match &image.interpreter {
        Some(path) => {
            let (ld, _, _) = crate::fs::open_executable(fs, path, who)?;
            // Linux reads the interpreter's ELF header first: a shorter
            // file is EIO, a wrong one ELIBBAD.
            if ld.len() < 64 {
                return Err(Errno::EIO);
            }
            let ld_image = tessera_elf::parse_interpreter(&ld).map_err(|e| match e {
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
    let auxv = [
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
