//! The machine-level entry: multiboot2 header, PVH note, 32-bit start code
//! and the switch to 64-bit long mode in the higher half.
//!
//! Both entries arrive in 32-bit protected mode with paging off:
//! - multiboot2 (GRUB): `eax` = 0x36d76289, `ebx` = boot information address;
//! - PVH (`qemu -kernel`): `ebx` = `hvm_start_info` address.
//!
//! The common path builds throw-away page tables that map the first GiB of
//! physical memory three times (identity, direct map at
//! `0xffff800000000000`, kernel window at `0xffffffff80000000`) with 2 MiB
//! pages, enables PAE, long mode, NX (when the CPU has it) and write
//! protection, and jumps to `framekernel_entry(magic, info)` on the boot
//! stack. `framekernel::mm` replaces these tables with W^X ones at once.

core::arch::global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
mb2_header_start:
    .long 0xE85250D6                     /* multiboot2 magic */
    .long 0                              /* architecture: i386 protected mode */
    .long mb2_header_end - mb2_header_start
    /* Written as 2^32 - sum: a negative literal would overflow in the assembler. */
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header_start))
    .balign 8
    .short 0                             /* end tag */
    .short 0
    .long 8
mb2_header_end:

    .section .note.Xen, "a", @note
    .balign 4
    .long 4                              /* name size: "Xen\0" */
    .long 4                              /* descriptor size */
    .long 18                             /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    .section .boot.text, "ax"
    .code32
    .global _start32
_start32:
    cli
    cld
    movl %eax, %edi                      /* multiboot2 magic */
    movl %ebx, %esi                      /* boot information */
    jmp boot_common32

    .global pvh_start32
pvh_start32:
    cli
    cld
    movl $0x336ec578, %edi               /* PVH start-info magic marks this path */
    movl %ebx, %esi                      /* hvm_start_info */

boot_common32:
    movl $boot_stack32_top, %esp

    /* Long mode available? CPUID 0x80000001 EDX bit 29. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz no_long_mode
    movl %edx, %ebp                      /* keep the NX bit (20) for later */

    /* Zero the four boot page tables (loaders zero .bss, but do not rely on it). */
    pushl %edi                           /* rep stosl uses edi: keep the magic */
    movl $boot_pml4, %edi
    movl $(4 * 4096 / 4), %ecx
    xorl %eax, %eax
    rep stosl
    popl %edi

    /* PD: 512 entries of 2 MiB covering physical 0..1 GiB, present+writable+huge. */
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b

    movl $boot_pd, %eax
    orl $3, %eax
    movl %eax, boot_pdpt_low             /* 0 .. 1 GiB */
    movl %eax, boot_pdpt_high + 510 * 8  /* 0xffffffff80000000 .. */
    movl $boot_pdpt_low, %eax
    orl $3, %eax
    movl %eax, boot_pml4                 /* identity, for the jump below */
    movl %eax, boot_pml4 + 256 * 8       /* direct map at 0xffff800000000000 */
    movl $boot_pdpt_high, %eax
    orl $3, %eax
    movl %eax, boot_pml4 + 511 * 8

    movl %cr4, %eax
    orl $(1 << 5), %eax                  /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3

    movl $0xC0000080, %ecx               /* EFER */
    rdmsr
    orl $(1 << 8), %eax                  /* LME */
    testl $(1 << 20), %ebp
    jz 2f
    orl $(1 << 11), %eax                 /* NXE, when the CPU has NX */
2:  wrmsr

    movl %cr0, %eax
    orl $0x80010001, %eax                /* PG | WP | PE */
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_low

no_long_mode:
    movl $no_long_mode_message, %esi
3:  movb (%esi), %al
    testb %al, %al
    jz 4f
    movw $0x3f8, %dx
    outb %al, %dx
    incl %esi
    jmp 3b
4:  hlt
    jmp 4b

    .code64
long_mode_low:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $long_mode_high, %rax
    jmpq *%rax

    .section .boot.rodata, "a"
    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF             /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF             /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
no_long_mode_message:
    .asciz "Tessera: this CPU has no 64-bit long mode; cannot boot.\r\n"

    .section .boot.bss, "aw", @nobits
    .balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096
boot_stack32:   .skip 1024
boot_stack32_top:

    .section .text.entry, "ax"
    .code64
long_mode_high:
    leaq __boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp                      /* ends frame-pointer stack walks */
    movl %edi, %edi                      /* upper halves are undefined after the switch */
    movl %esi, %esi
    call framekernel_entry
    ud2
"#,
    options(att_syntax)
);
