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

/// Loads `file` with the given arguments and environment.
pub fn load(file: Arc<Vec<u8>>, argv: &[&[u8]], envp: &[&[u8]], execfn: &[u8]) -> Result<Loaded, Errno> {
    let image = tessera_elf::parse(&file).map_err(|e| match e {
        ElfError::TooBig(_) => Errno::ENOMEM,
        _ => Errno::ENOEXEC,
    })?;
    let mut memory = AddressSpace::new()?;
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
    memory.brk_start = image.brk_start;
    memory.brk = image.brk_start;
    memory.add_area(STACK_TOP - STACK_SIZE, STACK_TOP, Prot::DATA, false)?;
    let auxv = [
        (aux::AT_PHDR, image.phdr),
        (aux::AT_PHENT, u64::from(image.phent)),
        (aux::AT_PHNUM, u64::from(image.phnum)),
        (aux::AT_PAGESZ, PAGE),
        (aux::AT_BASE, 0),
        (aux::AT_FLAGS, 0),
        (aux::AT_ENTRY, image.entry),
        (aux::AT_UID, 0),
        (aux::AT_EUID, 0),
        (aux::AT_GID, 0),
        (aux::AT_EGID, 0),
        (aux::AT_HWCAP, hwcap()),
        (aux::AT_CLKTCK, 100),
        (aux::AT_SECURE, 0),
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
    Ok(Loaded { memory: Memory::new(memory), entry: image.entry, sp: stack.sp, args: (stack.argv_start, args_len) })
}

/// Splits a `KEY=value` environment into the byte strings exec wants.
pub fn default_env() -> Vec<&'static [u8]> {
    alloc::vec![b"PATH=/bin:/sbin:/usr/bin:/usr/sbin".as_slice(), b"HOME=/", b"TERM=vt100"]
}
