//! Core dumps: a process killed by a signal whose default action dumps
//! core (SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV,
//! SIGXCPU, SIGXFSZ, SIGSYS) leaves an ELF core file named `core` in its
//! working directory, as Linux does with `core_pattern` "core", and its
//! wait status gets the core-dump bit (0x80).
//!
//! Linux's conditions: `RLIMIT_CORE` of at least a page, the process
//! dumpable (`PR_SET_DUMPABLE`; not after a set-id `exec`), and a `core`
//! file that can be made or is a regular file with one link, owned by the
//! process's file-system uid, that it may write. The file is made with
//! mode 0600 (less the umask). It holds the notes gdb reads (NT_PRSTATUS:
//! signal, ids, registers; NT_PRPSINFO: name and arguments; NT_FPREGSET)
//! and one PT_LOAD per piece of the address space: runs of resident pages
//! with their bytes, the untouched gaps and unreadable areas as segments
//! without contents (zeros, as Linux writes holes). Only bytes written
//! count against `RLIMIT_CORE`; a dump that would pass it is not made (no
//! bit), as Linux abandons it.
//!
//! The other threads of the process are not stopped first (Linux stops
//! them): the dump shows the faulting thread's registers and the memory
//! as it is while the dump is written.

use crate::errno::Errno;
use crate::process::{Process, rlimit};
use alloc::vec::Vec;
use framekernel::arch::user::UserContext;

/// `kernel.core_pattern`: the core file's name, with `%p` (pid), `%e`
/// (command), `%s` (signal), `%u`/`%g` (ids), `%t` (time), `%h` (host)
/// and `%%`; relative to the working directory unless absolute. A pipe
/// (`|program`) is not supported: no dump is made.
static PATTERN: framekernel::sync::SpinLock<alloc::string::String> = framekernel::sync::SpinLock::new(alloc::string::String::new());

/// The current pattern ("core" by default).
pub fn pattern() -> alloc::string::String {
    let pattern = PATTERN.lock();
    if pattern.is_empty() { alloc::string::String::from("core") } else { pattern.clone() }
}

/// Sets the pattern (at most 127 bytes, as Linux's CORENAME_MAX_SIZE).
pub fn set_pattern(text: &str) -> Result<(), Errno> {
    let text = text.trim_end_matches('\n');
    if text.len() > 127 {
        return Err(Errno::EINVAL);
    }
    *PATTERN.lock() = alloc::string::String::from(text);
    Ok(())
}

fn core_name(p: &Process, sig: u8) -> Option<alloc::string::String> {
    let pattern = pattern();
    if pattern.starts_with('|') {
        return None;
    }
    let creds = p.info.credentials();
    let mut out = alloc::string::String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('p') | Some('P') => out.push_str(&alloc::format!("{}", p.info.pid)),
            Some('i') | Some('I') => out.push_str(&alloc::format!("{}", p.thread.tid)),
            // A name with '/' must not steer the path (Linux writes '!').
            Some('e') => out.push_str(&p.thread.comm().replace('/', "!")),
            Some('s') => out.push_str(&alloc::format!("{sig}")),
            Some('u') => out.push_str(&alloc::format!("{}", creds.euid)),
            Some('g') => out.push_str(&alloc::format!("{}", creds.egid)),
            Some('t') => out.push_str(&alloc::format!("{}", framekernel::time::realtime_ns() / 1_000_000_000)),
            Some('h') => out.push_str(&crate::syscall::hostname_string()),
            Some('%') => out.push('%'),
            _ => {}
        }
    }
    Some(out)
}

/// Signals whose default action dumps core.
pub fn dumps_core(sig: u8) -> bool {
    matches!(sig, 3 | 4 | 5 | 6 | 7 | 8 | 11 | 24 | 25 | 31)
}

/// Most `PT_LOAD` segments (the rest of the address space is left out).
const MAX_SEGMENTS: usize = 4096;
const PAGE: u64 = 4096;
const O_WRONLY: u64 = 1;
const O_CREAT: u64 = 0o100;
const O_NOFOLLOW: u64 = 0o400000;
const AT_FDCWD: u64 = -100i64 as u64;

/// Writes the core file for `sig` of the thread `p` with registers `ctx`.
/// True when a complete dump was written (the wait status then carries
/// the core-dump bit).
pub fn write(p: &Process, ctx: &UserContext, sig: u8) -> bool {
    let limit = p.info.soft_limit(rlimit::CORE);
    if limit < PAGE || !p.info.prctl.lock().dumpable {
        return false;
    }
    match try_write(p, ctx, sig, limit) {
        Ok(()) => true,
        Err(errno) => {
            log::info!("pid {}: no core dump for signal {sig}: {errno:?}", p.info.pid);
            false
        }
    }
}

fn try_write(p: &Process, ctx: &UserContext, sig: u8, limit: u64) -> Result<(), Errno> {
    let filter = p.info.prctl.lock().coredump_filter;
    let plan = p.memory.lock().dump_plan(MAX_SEGMENTS, filter);
    let notes = notes(p, ctx, sig);
    let phnum = plan.len() + 1;
    let headers = 64 + 56 * phnum as u64;
    let notes_at = headers;
    let data_at = (notes_at + notes.len() as u64).next_multiple_of(PAGE);
    let data_bytes: u64 = plan.iter().filter(|piece| piece.contents).map(|piece| piece.end - piece.start).sum();
    if data_at.saturating_add(data_bytes) > limit {
        return Err(Errno::EFBIG);
    }
    let name = core_name(p, sig).ok_or(Errno::EOPNOTSUPP)?;
    let file = open_core(p, &name)?;
    let mut out = Vec::with_capacity(data_at as usize);
    out.extend_from_slice(&elf_header(phnum));
    out.extend_from_slice(&program_header(4, 0, notes_at, 0, notes.len() as u64, 0, 4)); // PT_NOTE
    let mut offset = data_at;
    for piece in &plan {
        let size = piece.end - piece.start;
        let file_size = if piece.contents { size } else { 0 };
        out.extend_from_slice(&program_header(1, piece.flags, if piece.contents { offset } else { 0 }, piece.start, file_size, size, PAGE));
        offset += file_size;
    }
    out.extend_from_slice(&notes);
    out.resize(data_at as usize, 0);
    write_all(&*file, 0, &out)?;
    let mut offset = data_at;
    let mut page = alloc::vec![0u8; PAGE as usize];
    for piece in plan.iter().filter(|piece| piece.contents) {
        let mut at = piece.start;
        while at < piece.end {
            // A page that went away meanwhile (another thread) reads as zeros.
            if p.memory.read(at, &mut page).is_err() {
                page.fill(0);
            }
            write_all(&*file, offset, &page)?;
            at += PAGE;
            offset += PAGE;
        }
    }
    Ok(())
}

/// Opens `core` in the working directory as Linux's `do_coredump` does:
/// made 0600, or an existing regular file with one link owned by the
/// file-system uid, emptied.
fn open_core(p: &Process, name: &str) -> Result<alloc::sync::Arc<dyn crate::files::File>, Errno> {
    let file = crate::syscall::open_path(p, AT_FDCWD, name, O_WRONLY | O_CREAT | O_NOFOLLOW, 0o600)?;
    let meta = file.stat();
    if meta.kind != tessera_vfs::FileType::Regular || meta.nlink != 1 || meta.uid != p.info.credentials().fsuid {
        return Err(Errno::EPERM);
    }
    let location = file.location().ok_or(Errno::EPERM)?;
    location.node().truncate(0)?;
    crate::pagecache::truncated(location.node(), 0);
    Ok(file)
}

fn write_all(file: &dyn crate::files::File, mut offset: u64, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        let n = file.write_at(offset, bytes)? as usize;
        if n == 0 {
            return Err(Errno::ENOSPC);
        }
        bytes = bytes.get(n..).unwrap_or(&[]);
        offset += n as u64;
    }
    Ok(())
}

fn elf_header(phnum: usize) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h[56..58].copy_from_slice(&(phnum.min(0xffff) as u16).to_le_bytes());
    h
}

fn program_header(kind: u32, flags: u32, offset: u64, vaddr: u64, file_size: u64, mem_size: u64, align: u64) -> [u8; 56] {
    let mut h = [0u8; 56];
    h[0..4].copy_from_slice(&kind.to_le_bytes());
    h[4..8].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&vaddr.to_le_bytes());
    h[32..40].copy_from_slice(&file_size.to_le_bytes());
    h[40..48].copy_from_slice(&mem_size.to_le_bytes());
    h[48..56].copy_from_slice(&align.to_le_bytes());
    h
}

/// One ELF note named "CORE".
fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn notes(p: &Process, ctx: &UserContext, sig: u8) -> Vec<u8> {
    let info = &p.info;
    let creds = info.credentials();
    let mut out = Vec::new();
    // struct elf_prstatus (336 bytes): siginfo head, cursig, pending and
    // held sets, ids, times, then user_regs_struct at 112.
    let mut status = [0u8; 336];
    put(&mut status, 0, &i32::from(sig).to_le_bytes());
    put(&mut status, 12, &u16::from(sig).to_le_bytes());
    put(&mut status, 24, &p.signals.mask.to_le_bytes());
    put(&mut status, 32, &p.thread.tid.to_le_bytes());
    put(&mut status, 36, &info.ppid().to_le_bytes());
    put(&mut status, 40, &info.pgid().to_le_bytes());
    put(&mut status, 44, &info.sid().to_le_bytes());
    let r = &ctx.regs;
    // r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax
    // rip cs eflags rsp ss fs_base gs_base ds es fs gs
    let regs = [
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx, r.rsi, r.rdi, u64::MAX, r.rip, 0x33, r.rflags, r.rsp, 0x2b,
        r.fs_base, r.gs_base, 0, 0, 0, 0,
    ];
    for (i, value) in regs.iter().enumerate() {
        put(&mut status, 112 + i * 8, &value.to_le_bytes());
    }
    put(&mut status, 328, &1u32.to_le_bytes()); // pr_fpvalid
    note(&mut out, 1, &status); // NT_PRSTATUS
    note(&mut out, 2, &ctx.fpu_state().0); // NT_PRFPREG
    // struct elf_prpsinfo (136 bytes).
    let mut ps = [0u8; 136];
    ps[1] = b'R';
    put(&mut ps, 16, &creds.ruid.to_le_bytes());
    put(&mut ps, 20, &creds.rgid.to_le_bytes());
    put(&mut ps, 24, &info.pid.to_le_bytes());
    put(&mut ps, 28, &info.ppid().to_le_bytes());
    put(&mut ps, 32, &info.pgid().to_le_bytes());
    put(&mut ps, 36, &info.sid().to_le_bytes());
    let name = p.thread.comm();
    put(&mut ps, 40, name.as_bytes().get(..name.len().min(15)).unwrap_or(&[]));
    let args: Vec<u8> = info.cmdline.lock().iter().take(79).map(|&b| if b == 0 { b' ' } else { b }).collect();
    put(&mut ps, 56, &args);
    note(&mut out, 3, &ps); // NT_PRPSINFO
    out
}
