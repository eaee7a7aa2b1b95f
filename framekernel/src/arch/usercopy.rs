//! Copying between kernel buffers and the active user address space.
//!
//! The copy is one `rep movsb` whose address range is known to the page
//! fault handler: a fault there (unmapped or protected user page) resumes
//! at a fixup that returns how many bytes were not copied, so a bad user
//! pointer becomes `EFAULT`, never a kernel fault. Addresses are checked to
//! lie wholly in the user half first, so kernel memory is never reached.

use framekernel_logic::layout::is_user_half;

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
    movq %rdx, %rcx
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 1f
    stac                                 /* allow supervisor access to user pages */
1:
    .global tessera_user_copy_start
tessera_user_copy_start:
    rep movsb
    .global tessera_user_copy_end
tessera_user_copy_end:
    xorl %eax, %eax
    jmp 2f
    .global tessera_user_copy_fixup
tessera_user_copy_fixup:
    movq %rcx, %rax                      /* bytes not copied */
2:
    cmpb $0, TESSERA_SMAP_ENABLED(%rip)
    je 3f
    clac
3:
    ret
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn tessera_user_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static tessera_user_copy_start: u8;
    static tessera_user_copy_end: u8;
    static tessera_user_copy_fixup: u8;
}

/// If a kernel-mode page fault at `rip` happened inside the user copy,
/// returns the address to resume at.
pub(crate) fn fixup_for(rip: u64) -> Option<u64> {
    let start = core::ptr::addr_of!(tessera_user_copy_start) as u64;
    let end = core::ptr::addr_of!(tessera_user_copy_end) as u64;
    (start..end).contains(&rip).then_some(core::ptr::addr_of!(tessera_user_copy_fixup) as u64)
}

fn check(address: u64, len: usize) -> Result<(), UserFault> {
    let last = address.checked_add(len as u64).and_then(|end| end.checked_sub(1));
    match last {
        _ if len == 0 => Ok(()),
        Some(last) if is_user_half(address) && is_user_half(last) => Ok(()),
        _ => Err(UserFault { address }),
    }
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
