//! `memset` and `memcpy` for the kernel image, in place of the
//! `compiler_builtins` ones (which the linker takes only when nothing
//! else defines them: theirs are weak).
//!
//! Theirs are a `rep stosq`/`rep movsq` and a `rep stosb`/`rep movsb`.
//! QEMU's TCG, which runs Tessera in every test and benchmark, runs a
//! `rep` instruction one step per translated block: zeroing a page is 512
//! blocks, and a `fork`+`exec` zeroed and copied some 70 pages. These run
//! blocks of 64 bytes as eight plain moves a step (a page is 64 steps),
//! then the rest as the `rep` instructions did. On hardware either is
//! fine.
//!
//! The base's copies of untyped memory (frame contents, which programs
//! may store to at the same time) call the same code under names of
//! their own, `tessera_untyped_fill` and `tessera_untyped_copy`: the
//! compiler knows what `memset`/`memcpy` do and may reason about the
//! bytes; it knows nothing of these names.
//!
//! Both follow the C contract and the System V ABI: `rdi` = destination,
//! `rsi` = source or byte, `rdx` = length; the destination is returned;
//! only caller-saved registers are touched; the direction flag is clear
//! on entry (the ABI), so the `rep` instructions run upwards.

core::arch::global_asm!(
    r#"
    .section .text.tessera_mem, "ax"
    .global memset
    .type memset, @function
    .global tessera_untyped_fill
    .type tessera_untyped_fill, @function
memset:
tessera_untyped_fill:
    movq %rdi, %r8                       /* the return value */
    movzbl %sil, %eax
    movabsq $0x0101010101010101, %rcx
    imulq %rcx, %rax                     /* the byte in every byte of rax */
    cmpq $64, %rdx
    jb 2f
1:
    movq %rax, (%rdi)
    movq %rax, 8(%rdi)
    movq %rax, 16(%rdi)
    movq %rax, 24(%rdi)
    movq %rax, 32(%rdi)
    movq %rax, 40(%rdi)
    movq %rax, 48(%rdi)
    movq %rax, 56(%rdi)
    addq $64, %rdi
    subq $64, %rdx
    cmpq $64, %rdx
    jae 1b
2:
    movq %rdx, %rcx
    shrq $3, %rcx
    rep stosq
    movl %edx, %ecx
    andl $7, %ecx
    rep stosb
    movq %r8, %rax
    ret
    .size memset, . - memset
    .size tessera_untyped_fill, . - tessera_untyped_fill

    .global memcpy
    .type memcpy, @function
    .global tessera_untyped_copy
    .type tessera_untyped_copy, @function
memcpy:
tessera_untyped_copy:
    movq %rdi, %rax                      /* the return value */
    cmpq $64, %rdx
    jb 2f
1:
    movq (%rsi), %rcx
    movq 8(%rsi), %r8
    movq 16(%rsi), %r9
    movq 24(%rsi), %r10
    movq %rcx, (%rdi)
    movq %r8, 8(%rdi)
    movq %r9, 16(%rdi)
    movq %r10, 24(%rdi)
    movq 32(%rsi), %rcx
    movq 40(%rsi), %r8
    movq 48(%rsi), %r9
    movq 56(%rsi), %r10
    movq %rcx, 32(%rdi)
    movq %r8, 40(%rdi)
    movq %r9, 48(%rdi)
    movq %r10, 56(%rdi)
    addq $64, %rsi
    addq $64, %rdi
    subq $64, %rdx
    cmpq $64, %rdx
    jae 1b
2:
    movq %rdx, %rcx
    shrq $3, %rcx
    rep movsq
    movl %edx, %ecx
    andl $7, %ecx
    rep movsb
    ret
    .size memcpy, . - memcpy
    .size tessera_untyped_copy, . - tessera_untyped_copy
"#,
    options(att_syntax)
);
