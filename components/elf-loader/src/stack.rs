//! The initial user stack, laid out as Linux does for x86_64:
//!
//! ```text
//! high  execfn string, envp strings, argv strings, "x86_64", 16 random bytes
//!       (padding to 16 bytes)
//!       auxv pairs ... AT_NULL
//!       NULL, envp[envc-1] ... envp[0]
//!       NULL, argv[argc-1] ... argv[0]
//! sp -> argc                                         (16-byte aligned)
//! ```

use alloc::vec::Vec;

/// Auxiliary vector keys (`<elf.h>` AT_*).
pub mod aux {
    #![allow(missing_docs)]
    pub const AT_NULL: u64 = 0;
    pub const AT_PHDR: u64 = 3;
    pub const AT_PHENT: u64 = 4;
    pub const AT_PHNUM: u64 = 5;
    pub const AT_PAGESZ: u64 = 6;
    pub const AT_BASE: u64 = 7;
    pub const AT_FLAGS: u64 = 8;
    pub const AT_ENTRY: u64 = 9;
    pub const AT_UID: u64 = 11;
    pub const AT_EUID: u64 = 12;
    pub const AT_GID: u64 = 13;
    pub const AT_EGID: u64 = 14;
    pub const AT_PLATFORM: u64 = 15;
    pub const AT_HWCAP: u64 = 16;
    pub const AT_CLKTCK: u64 = 17;
    pub const AT_SECURE: u64 = 23;
    pub const AT_RANDOM: u64 = 25;
    pub const AT_HWCAP2: u64 = 26;
    pub const AT_EXECFN: u64 = 31;
    pub const AT_SYSINFO_EHDR: u64 = 33;
}

/// One auxiliary-vector entry supplied by the caller.
pub type AuxEntry = (u64, u64);

/// Why the stack could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackError {
    /// Arguments and environment exceed the limit (`E2BIG`).
    TooBig { bytes: usize, limit: usize },
    /// A string contains a NUL byte.
    EmbeddedNul,
}

/// Most bytes of argument and environment strings (with pointers).
pub const ARG_LIMIT: usize = 256 * 1024;

/// The stack contents: `bytes` go at `[sp, top)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackImage {
    /// Initial stack pointer (points at `argc`).
    pub sp: u64,
    /// Memory from `sp` up to the stack top.
    pub bytes: Vec<u8>,
    /// Where `argv[0]` points (for tests and `/proc/[pid]/cmdline`).
    pub argv_start: u64,
}

/// Lays out the stack below `top` (16-byte aligned).
pub fn build_stack(
    top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    auxv: &[AuxEntry],
    random: [u8; 16],
    execfn: &[u8],
) -> Result<StackImage, StackError> {
    if argv.iter().chain(envp).chain(core::iter::once(&execfn)).any(|s| s.contains(&0)) {
        return Err(StackError::EmbeddedNul);
    }
    let strings: usize = argv.iter().chain(envp).map(|s| s.len() + 1).sum::<usize>() + execfn.len() + 1;
    let pointers = (argv.len() + envp.len() + 2) * 8;
    if strings + pointers > ARG_LIMIT {
        return Err(StackError::TooBig { bytes: strings + pointers, limit: ARG_LIMIT });
    }
    // Build the string area from the top down, remembering addresses.
    let mut high: Vec<u8> = Vec::new(); // reversed later: high[0] is the byte just below `top`
    let mut cursor = top;
    let mut push = |bytes: &[u8], cursor: &mut u64| -> u64 {
        let mut with_nul = bytes.to_vec();
        with_nul.push(0);
        *cursor -= with_nul.len() as u64;
        for b in with_nul.iter().rev() {
            high.push(*b);
        }
        *cursor
    };
    let execfn_addr = push(execfn, &mut cursor);
    let env_addrs: Vec<u64> = envp.iter().rev().map(|s| push(s, &mut cursor)).collect();
    let arg_addrs: Vec<u64> = argv.iter().rev().map(|s| push(s, &mut cursor)).collect();
    let platform_addr = push(b"x86_64", &mut cursor);
    cursor -= 16;
    for b in random.iter().rev() {
        high.push(*b);
    }
    let random_addr = cursor;
    // The vector area: argc, argv + NULL, envp + NULL, auxv + AT_NULL pair.
    let mut aux_all: Vec<AuxEntry> = auxv.to_vec();
    aux_all.push((aux::AT_RANDOM, random_addr));
    aux_all.push((aux::AT_PLATFORM, platform_addr));
    aux_all.push((aux::AT_EXECFN, execfn_addr));
    aux_all.push((aux::AT_NULL, 0));
    let words = 1 + argv.len() + 1 + envp.len() + 1 + aux_all.len() * 2;
    let sp = (cursor - words as u64 * 8) & !15;
    let mut vector: Vec<u64> = Vec::with_capacity(words);
    vector.push(argv.len() as u64);
    vector.extend(arg_addrs.iter().rev());
    vector.push(0);
    vector.extend(env_addrs.iter().rev());
    vector.push(0);
    for (key, value) in aux_all {
        vector.push(key);
        vector.push(value);
    }
    let mut bytes: Vec<u8> = vector.iter().flat_map(|w| w.to_le_bytes()).collect();
    // Padding between the vectors and the strings.
    bytes.resize((cursor - sp) as usize, 0);
    bytes.extend(high.iter().rev());
    let argv_start = arg_addrs.last().copied().unwrap_or(execfn_addr);
    Ok(StackImage { sp, bytes, argv_start })
}
