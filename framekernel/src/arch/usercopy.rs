//! Copying between kernel buffers and the active user address space.
//!
//! A copy of 4 to 16 bytes (most of the system calls' structures and
//! numbers) is two loads of its first and last words, then two stores.
//! A longer copy moves 64-byte blocks (eight `mov` pairs a step: QEMU's TCG
//! runs a `rep` instruction one step per translated block, so a `rep
//! movsq` was one block per eight bytes), then a `rep movsq` and a `rep
//! movsb` for the rest. The parts' address ranges are known to the
//! page fault handler: a fault in a small copy copies it all again byte
//! by byte; a fault in a block or a word goes on byte by byte
//! from the block or word that faulted (a byte of it already stored is
//! stored again, the same), and a fault in the byte copy resumes at a
//! fixup that returns how many bytes were not copied, exactly, so a bad
//! user pointer becomes `EFAULT`, never a kernel fault. Addresses are
//! checked to lie wholly in the user half first, so kernel memory is
//! never reached.

use framekernel_logic::layout::is_user_range;

/// A user address could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFault {
    /// The first address of the range that failed.
    pub address: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.usercopy, "ax"
    .global tessera_user_copy
tessera_user_copy:                       /* rdi = dst, rsi = src, rdx = len; returns bytes left */
    leaq -4(%rdx), %rcx                  /* 4 to 16 bytes: two loads, two stores (below) */
    cmpq $12, %rcx
    jbe 10f
    movq %rdx, %rcx
    shrq $6, %rcx                        /* 64 bytes a step, */
    andl $63, %edx
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 1f
    stac                                 /* allow supervisor access to user pages */
1:
    .global tessera_user_copy_blocks_start
tessera_user_copy_blocks_start:          /* rsi/rdi move only after a whole block */
    testq %rcx, %rcx
    jz 7f
8:
    movq (%rsi), %rax
    movq 8(%rsi), %r8
    movq 16(%rsi), %r9
    movq 24(%rsi), %r10
    movq %rax, (%rdi)
    movq %r8, 8(%rdi)
    movq %r9, 16(%rdi)
    movq %r10, 24(%rdi)
    movq 32(%rsi), %rax
    movq 40(%rsi), %r8
    movq 48(%rsi), %r9
    movq 56(%rsi), %r10
    movq %rax, 32(%rdi)
    movq %r8, 40(%rdi)
    movq %r9, 48(%rdi)
    movq %r10, 56(%rdi)
    addq $64, %rsi
    addq $64, %rdi
    decq %rcx
    jnz 8b
7:
    .global tessera_user_copy_blocks_end
tessera_user_copy_blocks_end:
    movq %rdx, %rcx
    shrq $3, %rcx                        /* then eight bytes at a time, */
    andl $7, %edx                        /* then the rest one at a time */
    .global tessera_user_copy_start
tessera_user_copy_start:
    rep movsq
    .global tessera_user_copy_end
tessera_user_copy_end:
    movq %rdx, %rcx
    .global tessera_user_copy_bytes_start
tessera_user_copy_bytes_start:
    rep movsb
    .global tessera_user_copy_bytes_end
tessera_user_copy_bytes_end:
    xorl %eax, %eax
    jmp 2f
    .global tessera_user_copy_blocks_fixup
tessera_user_copy_blocks_fixup:          /* a fault in a block: rcx blocks and rdx bytes left, */
    shlq $6, %rcx                        /* rsi/rdi at the block that faulted: byte by byte */
    addq %rdx, %rcx
    jmp tessera_user_copy_bytes_start
    .global tessera_user_copy_fixup
tessera_user_copy_fixup:                 /* a fault in movsq: rcx words and rdx bytes left, */
    leaq (%rdx,%rcx,8), %rcx             /* rsi/rdi at the word that faulted: go on byte by */
    jmp tessera_user_copy_bytes_start    /* byte, to stop at the exact byte that faults */
10:
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 11f
    stac
11:
    .global tessera_user_copy_small_start
tessera_user_copy_small_start:           /* both loads before the first store; rsi/rdi/rdx stay */
    cmpl $8, %edx
    jb 12f
    movq (%rsi), %rax                    /* the first and the last eight bytes (they may overlap) */
    movq -8(%rsi,%rdx), %rcx
    movq %rax, (%rdi)
    movq %rcx, -8(%rdi,%rdx)
    jmp 13f
12:
    movl (%rsi), %eax                    /* the first and the last four */
    movl -4(%rsi,%rdx), %ecx
    movl %eax, (%rdi)
    movl %ecx, -4(%rdi,%rdx)
13:
    .global tessera_user_copy_small_end
tessera_user_copy_small_end:
    xorl %eax, %eax
    jmp 2f
    .global tessera_user_copy_small_fixup
tessera_user_copy_small_fixup:           /* a fault there: all of it again byte by byte, */
    movq %rdx, %rcx                      /* to stop at the exact byte that faults */
    jmp tessera_user_copy_bytes_start
    .global tessera_user_copy_bytes_fixup
tessera_user_copy_bytes_fixup:
    movq %rcx, %rax                      /* bytes not copied */
2:
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 3f
    clac
3:
    ret

    .global tessera_user_cmpxchg
tessera_user_cmpxchg:                    /* rdi = address, esi = expected, edx = new; returns the old word, or bit 32 set on a fault */
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 4f
    stac
4:
    movl %esi, %eax
    .global tessera_user_cmpxchg_start
tessera_user_cmpxchg_start:
    lock cmpxchgl %edx, (%rdi)
    .global tessera_user_cmpxchg_end
tessera_user_cmpxchg_end:
    jmp 5f
    .global tessera_user_cmpxchg_fixup
tessera_user_cmpxchg_fixup:
    movabsq $0x100000000, %rax
5:
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 6f
    clac
6:
    ret
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn tessera_user_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static tessera_user_copy_blocks_start: u8;
    static tessera_user_copy_blocks_end: u8;
    static tessera_user_copy_blocks_fixup: u8;
    static tessera_user_copy_start: u8;
    static tessera_user_copy_end: u8;
    static tessera_user_copy_fixup: u8;
    static tessera_user_copy_bytes_start: u8;
    static tessera_user_copy_bytes_end: u8;
    static tessera_user_copy_bytes_fixup: u8;
    static tessera_user_copy_small_start: u8;
    static tessera_user_copy_small_end: u8;
    static tessera_user_copy_small_fixup: u8;
    fn tessera_user_cmpxchg(address: *mut u32, expected: u32, new: u32) -> u64;
    static tessera_user_cmpxchg_start: u8;
    static tessera_user_cmpxchg_end: u8;
    static tessera_user_cmpxchg_fixup: u8;
}

/// If a kernel-mode page fault at `rip` happened inside the user copy,
/// returns the address to resume at.
pub(crate) fn fixup_for(rip: u64) -> Option<u64> {
    let copy = core::ptr::addr_of!(tessera_user_copy_start) as u64..core::ptr::addr_of!(tessera_user_copy_end) as u64;
    let cmpxchg = core::ptr::addr_of!(tessera_user_cmpxchg_start) as u64..core::ptr::addr_of!(tessera_user_cmpxchg_end) as u64;
    let bytes = core::ptr::addr_of!(tessera_user_copy_bytes_start) as u64..core::ptr::addr_of!(tessera_user_copy_bytes_end) as u64;
    let blocks = core::ptr::addr_of!(tessera_user_copy_blocks_start) as u64..core::ptr::addr_of!(tessera_user_copy_blocks_end) as u64;
    let small = core::ptr::addr_of!(tessera_user_copy_small_start) as u64..core::ptr::addr_of!(tessera_user_copy_small_end) as u64;
    if small.contains(&rip) {
        Some(core::ptr::addr_of!(tessera_user_copy_small_fixup) as u64)
    } else if blocks.contains(&rip) {
        Some(core::ptr::addr_of!(tessera_user_copy_blocks_fixup) as u64)
    } else if copy.contains(&rip) {
        Some(core::ptr::addr_of!(tessera_user_copy_fixup) as u64)
    } else if bytes.contains(&rip) {
        Some(core::ptr::addr_of!(tessera_user_copy_bytes_fixup) as u64)
    } else if cmpxchg.contains(&rip) {
        Some(core::ptr::addr_of!(tessera_user_cmpxchg_fixup) as u64)
    } else {
        None
    }
}

#[inline]
fn check(address: u64, len: usize) -> Result<(), UserFault> {
    if is_user_range(address, len as u64) { Ok(()) } else { Err(UserFault { address }) }
}

/// Copies `out.len()` bytes from user address `src` of the active address
/// space into `out`.
pub fn copy_from_user(src: u64, out: &mut [u8]) -> Result<(), UserFault> {
    check(src, out.len())?;
    // SAFETY: `out` is a valid kernel buffer of that length; the source
    // range lies wholly in the user half (checked), which maps no kernel
    // object; faults inside the copy are caught by the fixup.
    let left = unsafe { tessera_user_copy(out.as_mut_ptr(), src as *const u8, out.len()) };
    if left == 0 { Ok(()) } else { Err(UserFault { address: src + (out.len() - left) as u64 }) }
}

/// Copies `data` to user address `dst` of the active address space.
pub fn copy_to_user(dst: u64, data: &[u8]) -> Result<(), UserFault> {
    check(dst, data.len())?;
    // SAFETY: as in `copy_from_user`, with the user range as destination:
    // writing user pages cannot touch kernel objects.
    let left = unsafe { tessera_user_copy(dst as *mut u8, data.as_ptr(), data.len()) };
    if left == 0 { Ok(()) } else { Err(UserFault { address: dst + (data.len() - left) as u64 }) }
}

/// Atomically replaces the 32-bit word at user address `address` (4-byte
/// aligned) of the active address space with `new` if it holds `expected`
/// (`lock cmpxchg`, as user threads on other processors see it); returns
/// the word it held. A fault or a misaligned address is a `UserFault`.
pub fn compare_exchange_user_u32(address: u64, expected: u32, new: u32) -> Result<u32, UserFault> {
    check(address, 4)?;
    if !address.is_multiple_of(4) {
        return Err(UserFault { address });
    }
    // SAFETY: the word lies wholly in the user half (checked), which maps
    // no kernel object, and is aligned; a fault at the one instruction
    // that touches it is caught by the fixup, which reports it.
    let result = unsafe { tessera_user_cmpxchg(address as *mut u32, expected, new) };
    if result >> 32 != 0 { Err(UserFault { address }) } else { Ok(result as u32) }
}
