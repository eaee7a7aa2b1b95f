//! Interrupt and exception entry: the IDT, the assembly stubs that save a
//! [`TrapFrame`], and the dispatcher that routes vectors to exception
//! reporting or IRQ handlers.
//!
//! Stable Rust has no `x86-interrupt` ABI, so every vector gets a 16-byte
//! assembly stub that pushes a uniform frame and calls [`trap_dispatch`].

use core::mem::size_of;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

/// Registers saved on entry, in the order the stubs push them (lowest
/// address first), followed by what the CPU pushed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Interrupt vector number (pushed by the stub).
    pub vector: u64,
    /// CPU error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

// Vectors whose exceptions push an error code: #DF 8, #TS 10, #NP 11,
// #SS 12, #GP 13, #PF 14, #AC 17, #CP 21, #VC 29, #SX 30. The others get a
// dummy 0 so that every frame has the same layout.
core::arch::global_asm!(
    r#"
    .section .text.trap, "ax"
    .balign 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) + (vec == 10) + (vec == 11) + (vec == 12) + (vec == 13) + (vec == 14) + (vec == 17) + (vec == 21) + (vec == 29) + (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

trap_common:
    /* A program may set AC (alignment check / SMAP override) in ring 3 and
       interrupt and exception gates keep it: clear it before any kernel
       code runs, or user memory would be open to the kernel (iretq brings
       back the interrupted code's flags). */
    pushfq
    andq $~0x40000, (%rsp)
    popfq
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    testb $3, 144(%rsp)                  /* CS of the interrupted code: ring 3? */
    jnz 1f
    /* In kernel mode GS is the kernel's, except in the few instructions
       around swapgs on the way into and out of user mode, where only an
       NMI (2), a double fault (8) or a machine check (18) can arrive: for
       those, a GS base in the user half (bit 63 clear) is swapped for the
       kernel's and back (rbx, saved above, remembers). */
    xorl %ebx, %ebx
    movq 120(%rsp), %rax                 /* the vector */
    cmpq $2, %rax
    je 2f
    cmpq $8, %rax
    je 2f
    cmpq $18, %rax
    jne 3f
2:  movl $0xC0000101, %ecx               /* GS_BASE */
    rdmsr
    testl %edx, %edx
    js 3f                                /* a kernel address: GS is the kernel's */
    swapgs
    movl $1, %ebx
3:  movq %rsp, %rdi
    call trap_dispatch
    testl %ebx, %ebx
    jz 4f
    swapgs                               /* the user's GS back */
4:  popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                       /* vector and error code */
    iretq

1:  cmpq $2, 120(%rsp)                   /* an NMI in user mode: */
    jne 5f
    swapgs                               /* handled here (TLB shootdowns, */
    movq %rsp, %rdi                      /* counters), then straight back */
    call trap_dispatch                   /* with iretq, which also ends */
    swapgs                               /* the NMI-blocked state */
    jmp 4b
5:  swapgs                               /* from user mode: kernel GS */
    movq %rsp, %rdi
    call trap_from_user
    jmp tessera_return_from_user_trap    /* back into UserContext::run */
"#,
    options(att_syntax)
);

unsafe extern "C" {
    /// First of 256 stubs, each 16 bytes long (see the assembly above).
    static trap_stubs: u8;
}

/// One 16-byte IDT gate descriptor.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY_GATE: Gate =
    Gate { offset_low: 0, selector: 0, ist: 0, type_attr: 0, offset_mid: 0, offset_high: 0, reserved: 0 };

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: spin::Once<Idt> = spin::Once::new();

/// IST slot (1-based, as the gate encodes it) for the double-fault handler.
pub const DOUBLE_FAULT_IST: u8 = 1;
/// IST slot for NMIs.
pub const NMI_IST: u8 = 2;
/// IST slot for machine checks (not NMIs': a machine check does not block
/// NMIs, and an NMI during its handler would start over its stack).
pub const MACHINE_CHECK_IST: u8 = 3;

/// Builds and loads the IDT. `code_selector` is the kernel code segment.
pub fn init(code_selector: u16) {
    let idt = IDT.call_once(|| {
        let base = core::ptr::addr_of!(trap_stubs) as u64;
        let mut gates = [EMPTY_GATE; 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let handler = base + 16 * vector as u64;
            let ist = match vector {
                8 => DOUBLE_FAULT_IST,
                2 => NMI_IST,
                18 => MACHINE_CHECK_IST,
                _ => 0,
            };
            *gate = Gate {
                offset_low: handler as u16,
                selector: code_selector,
                ist,
                // Present, 64-bit interrupt gate (IF cleared on entry); DPL 0
                // except `int3` and `into`, which user programs may execute
                // (any other `int n` from ring 3 raises #GP instead).
                type_attr: if matches!(vector, 3 | 4) { 0xee } else { 0x8e },
                offset_mid: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        Idt(gates)
    });
    load_idt_at(idt);
}

/// Address of the IDT (once built).
pub(crate) fn idt_address() -> Option<u64> {
    IDT.get().map(|idt| idt as *const Idt as u64)
}

/// Loads the IDT `init` built on this processor (nothing before then).
pub(crate) fn load_idt() {
    if let Some(idt) = IDT.get() {
        load_idt_at(idt);
    }
}

fn load_idt_at(idt: &'static Idt) {
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt as *const Idt),
    };
    // SAFETY: `pointer` describes a complete, 'static IDT whose 256 gates
    // point at the stubs above, all in the kernel code segment (the same
    // selector on every processor's GDT).
    unsafe { lidt(&pointer) };
}

/// Called by `trap_common` with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        0..=31 => crate::arch::exception::handle(frame),
        v @ 32..=47 => {
            crate::irq::dispatch((v - 32) as u8);
            if v == 32 {
                crate::cell::watchdog(frame); // the timer: a cell call running away?
            }
        }
        v => {
            if crate::irq::dispatch_local(v as u8) {
                crate::cell::watchdog(frame); // a local timer tick
            }
        }
    }
}
