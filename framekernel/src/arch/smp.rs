//! Starting the other processors (application processors, APs) with
//! INIT-SIPI-SIPI through the local APIC.
//!
//! An AP wakes in 16-bit real mode at `TRAMPOLINE` (the start-up IPI's
//! vector names the page). The trampoline, copied there by the boot
//! processor, switches to protected mode, then to long mode on temporary
//! page tables in the pages after it (the first 2 MiB identity-mapped, for
//! the trampoline itself, and the kernel half of the kernel's own tables),
//! jumps to `ap_long_entry` in the kernel's text, which loads the kernel's
//! page tables, and calls `framekernel_ap_entry` on a stack of its own.
//!
//! So far an AP sets itself up (its per-CPU block, GDT, TSS and IST stacks,
//! the IDT, control registers and system-call MSRs), says it is alive and
//! parks (interrupts off, halted): Tessera runs on the boot processor
//! (issue 14 adds the rest). APs are
//! started one at a time; the first that does not answer within
//! `ANSWER_MS` stops the start-up (a late one would find the next one's
//! stack in the shared data area), and is reported.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// Physical address of the trampoline page (the start-up vector is its
/// page number). Below 1 MiB, where the frame allocator never goes.
const TRAMPOLINE: u64 = 0x7_0000;
/// The temporary PML4, PDPT and PD after it.
const TEMP_PML4: u64 = TRAMPOLINE + 0x1000;
const TEMP_PDPT: u64 = TRAMPOLINE + 0x2000;
const TEMP_PD: u64 = TRAMPOLINE + 0x3000;
/// Pages the start-up uses.
const PAGES: u64 = 4;
/// Bytes of each AP's stack.
const AP_STACK: usize = crate::task::STACK_SIZE;
/// How long an AP has to answer.
const ANSWER_MS: u64 = 2000;

/// APs that reached `framekernel_ap_entry`.
static STARTED: AtomicU32 = AtomicU32::new(0);

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
    .code16
ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(0x70000 + ap_pm32 - ap_trampoline_start)

    .code32
ap_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax                   /* PAE */
    movl %eax, %cr4
    movl (0x70000 + ap_data_pml4 - ap_trampoline_start), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx                /* EFER: LME, and NXE as the boot processor has it */
    rdmsr
    orl (0x70000 + ap_data_efer - ap_trampoline_start), %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax                 /* PG | WP | PE */
    movl %eax, %cr0
    ljmpl $0x18, $(0x70000 + ap_lm64 - ap_trampoline_start)

    .code64
ap_lm64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (0x70000 + ap_data_stack - ap_trampoline_start), %rsp
    movq (0x70000 + ap_data_cr3 - ap_trampoline_start), %rax
    movq (0x70000 + ap_data_index - ap_trampoline_start), %rdi
    movq (0x70000 + ap_data_entry - ap_trampoline_start), %rbx
    jmpq *%rbx

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF              /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF              /* 0x10: data */
    .quad 0x00AF9A000000FFFF              /* 0x18: 64-bit code */
ap_gdt_end:
ap_gdt_ptr:
    .short ap_gdt_end - ap_gdt - 1
    .long 0x70000 + ap_gdt - ap_trampoline_start
    .balign 8
    .global ap_trampoline_data
ap_trampoline_data:
ap_data_pml4:  .quad 0
ap_data_efer:  .quad 0
ap_data_stack: .quad 0
ap_data_cr3:   .quad 0
ap_data_index: .quad 0
ap_data_entry: .quad 0
    .global ap_trampoline_end
ap_trampoline_end:

    .section .text.ap_entry, "ax"
    .code64
    .global ap_long_entry
ap_long_entry:
    movq %rax, %cr3                       /* the kernel's page tables */
    xorl %ebp, %ebp                       /* ends frame-pointer stack walks */
    call framekernel_ap_entry
    ud2
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_data: u8;
    static ap_trampoline_end: u8;
    fn ap_long_entry();
}

/// Where an AP arrives, on its own stack and the kernel's page tables,
/// interrupts off. It installs its per-CPU block (GS base), loads its own
/// GDT and TSS (with its own IST stacks) and the shared IDT, sets the
/// control registers and system-call MSRs as the boot processor did, says
/// it is alive, and parks.
#[unsafe(no_mangle)]
extern "C" fn framekernel_ap_entry(index: u64) -> ! {
    // The boot processor filled in the block's stacks before waking this
    // one (and waits for it to answer before touching the block again).
    let Some(block) = crate::percpu::block(index as usize) else { super::halt_forever() };
    if crate::percpu::install(index as usize).is_none() {
        super::halt_forever();
    }
    // The kernel's page tables, loaded by `ap_long_entry`.
    block.active_root.store(x86_64::registers::control::Cr3::read().0.start_address().as_u64(), Ordering::SeqCst);
    let selectors = super::gdt::load(block);
    super::trap::load_idt();
    match super::cpu::init_ap(&selectors).and_then(|()| check_tables(block)) {
        Ok(()) => block.ready.store(true, Ordering::Release),
        Err(why) => refuse(block, why),
    }
    STARTED.fetch_add(1, Ordering::Release);
    // Parked (interrupts off, halted) until the kernel gives the
    // processors work; an NMI wakes it to look (and shootdowns use NMIs).
    let entry = loop {
        if let Some(&entry) = AP_MAIN.get()
            && block.ready.load(Ordering::Acquire)
        {
            break entry;
        }
        x86_64::instructions::hlt();
    };
    if let Err(why) = super::lapic::start_local_timer(u64::from(crate::time::TICK_HZ)) {
        refuse(block, why);
        super::halt_forever();
    }
    block.local_timer.store(true, Ordering::Release);
    block.online.store(true, Ordering::Release);
    super::enable_interrupts();
    entry(index as usize)
}

/// What the other processors run once the kernel starts them.
static AP_MAIN: spin::Once<fn(usize) -> !> = spin::Once::new();

/// Starts the parked processors (once): each starts its local timer, turns
/// interrupts on and calls `entry(index)` on the task it runs now. Returns
/// how many are online within a second each.
pub(crate) fn start_others(entry: fn(usize) -> !) -> usize {
    if AP_MAIN.get().is_some() {
        return 0;
    }
    AP_MAIN.call_once(|| entry);
    let mut online = 0;
    for block in (1..crate::percpu::MAX_CPUS).filter_map(crate::percpu::block).filter(|b| b.ready.load(Ordering::Acquire)) {
        if super::lapic::send_nmi(block.apic_id.load(Ordering::Relaxed)).is_err() {
            continue;
        }
        let deadline = crate::time::now_ns() + 1_000_000_000;
        while !block.online.load(Ordering::Acquire) && crate::time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        if block.online.load(Ordering::Acquire) {
            online += 1;
        } else if let Some((id, why)) = REFUSED.lock().take() {
            log::warn!("smp: processor with local APIC id {id} stays parked: {why}");
        } else {
            log::warn!("smp: processor {} did not come online in 1 s", block.index());
        }
    }
    online
}

/// What the processor's own registers say about its set-up: its GDT, its
/// TSS, the shared IDT and its per-CPU block.
fn check_tables(block: &'static crate::percpu::PerCpu) -> Result<(), &'static str> {
    use x86_64::instructions::tables::{sgdt, sidt};
    use x86_64::registers::model_specific::GsBase;
    let gdt = block.gdt.get().ok_or("no GDT was built")?;
    if sgdt().base.as_u64() != &gdt.0 as *const _ as u64 {
        return Err("its GDT register does not name its own GDT");
    }
    if Some(sidt().base.as_u64()) != super::trap::idt_address() {
        return Err("its IDT register does not name the kernel's IDT");
    }
    if GsBase::read().as_u64() != block.address() {
        return Err("its GS base is not its per-CPU block");
    }
    let tr: u16;
    // SAFETY: STR reads the task register into a general register; no
    // memory is touched.
    unsafe { core::arch::asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags)) };
    if tr != gdt.1.tss.0 {
        return Err("its task register does not name its TSS");
    }
    Ok(())
}

/// Sends an NMI to started processor `index` (1..), which takes it on its
/// own NMI stack and goes back to what it was doing.
pub(crate) fn send_nmi(index: usize) -> Result<(), &'static str> {
    let block = crate::percpu::block(index).filter(|b| index > 0 && b.ready.load(Ordering::Acquire)).ok_or("no such processor is set up")?;
    super::lapic::send_nmi(block.apic_id.load(Ordering::Relaxed))
}

/// A processor that came up but differs from the boot processor: its APIC
/// id and why (reported by the boot processor).
static REFUSED: spin::Mutex<Option<(u32, &'static str)>> = spin::Mutex::new(None);

/// Records why this processor is not used, for the boot processor to say.
fn refuse(block: &crate::percpu::PerCpu, why: &'static str) {
    if let Some(mut refused) = REFUSED.try_lock() {
        *refused = Some((block.apic_id.load(Ordering::Relaxed), why));
    }
}

/// Processors started besides the boot one.
pub(crate) fn started() -> u32 {
    STARTED.load(Ordering::Acquire)
}

/// Processors started besides the boot one whose descriptor tables,
/// per-CPU block and system-call registers are set up.
pub(crate) fn ready() -> usize {
    (1..crate::percpu::MAX_CPUS).filter_map(crate::percpu::block).filter(|b| b.ready.load(Ordering::Acquire)).count()
}

/// Writes `bytes` at physical `phys` in low memory (the start-up pages).
fn write_low(phys: u64, bytes: &[u8]) {
    let Some(virt) = framekernel_logic::layout::phys_to_direct(phys) else { return };
    debug_assert!(phys + bytes.len() as u64 <= TRAMPOLINE + PAGES * 4096);
    // SAFETY: the start-up pages lie below 1 MiB, which the frame allocator
    // never hands out and nothing else in the kernel uses (checked usable
    // RAM in `start_aps`); the direct map covers the first 2 MiB read-write.
    // Only the boot processor writes them, while no AP runs the trampoline
    // (APs are started one at a time and each has left it when it answers).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), virt as *mut u8, bytes.len()) };
}

/// Starts every enabled processor the firmware lists, one by one, and
/// reports each. Returns how many answered.
pub(crate) fn start_aps(modules: &[(u64, u64)]) -> u32 {
    let topology = crate::cpu::topology();
    let others: Vec<u32> = topology.processors.iter().filter(|p| p.enabled && p.apic_id != topology.boot_apic_id).map(|p| p.apic_id).collect();
    if others.is_empty() {
        return 0;
    }
    if topology.x2apic {
        log::warn!("smp: the local APICs run in x2APIC mode, which the start-up does not speak yet; processors not started");
        return 0;
    }
    let pages = TRAMPOLINE..TRAMPOLINE + PAGES * 4096;
    if modules.iter().any(|&(start, end)| start < pages.end && pages.start < end) {
        log::warn!("smp: processors not started: a boot module lies in the start-up pages at {TRAMPOLINE:#x}");
        return 0;
    }
    if let Err(why) = prepare() {
        log::warn!("smp: processors not started: {why}");
        return 0;
    }
    if let Err(why) = super::lapic::init() {
        log::warn!("smp: processors not started: {why}");
        return 0;
    }
    // The kernel's page tables, which every AP loads.
    let cr3 = x86_64::registers::control::Cr3::read().0.start_address().as_u64();
    let mut index = 0usize;
    for &apic_id in &others {
        // The xAPIC's interrupt command register names 8-bit ids.
        if apic_id > 0xfe {
            log::warn!("smp: processor with local APIC id {apic_id} needs x2APIC mode; not started");
            continue;
        }
        index += 1;
        let Some(block) = crate::percpu::block(index) else {
            log::warn!("smp: Tessera uses at most {} processors; the rest are not started", crate::percpu::MAX_CPUS);
            break;
        };
        let Some([stack, df, nmi, mc]) = new_stacks() else {
            log::warn!("smp: no memory for processor {index}'s stacks; the rest are not started");
            break;
        };
        block.apic_id.store(apic_id, Ordering::Relaxed);
        block.set_stacks(stack, [df, nmi, mc]);
        // The data area's fields, in the assembly's order.
        let fields = [TEMP_PML4, efer_bits(), stack.1, cr3, index as u64, ap_long_entry as *const () as u64];
        let bytes: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
        write_low(TRAMPOLINE + data_offset(), &bytes);
        let before = started();
        if !wake(apic_id, before) {
            log::warn!("smp: processor with local APIC id {apic_id} did not answer in {ANSWER_MS} ms; it and the rest are not used");
            break;
        }
        if let Some((id, why)) = REFUSED.lock().take() {
            log::warn!("smp: processor with local APIC id {id} is not used: {why}");
        }
    }
    let n = started();
    log::debug!("smp: {n} of {} other processor(s) started, {} set up, parked; Tessera runs on the boot processor", others.len(), ready());
    n
}

/// The data area's offset in the trampoline.
fn data_offset() -> u64 {
    // Addresses of the assembly's labels only (never dereferenced).
    let start = core::ptr::addr_of!(ap_trampoline_start) as u64;
    core::ptr::addr_of!(ap_trampoline_data) as u64 - start
}

/// EFER bits the AP sets: long mode, and no-execute when this processor
/// has it on (the kernel's page tables use it).
fn efer_bits() -> u64 {
    use x86_64::registers::model_specific::{Efer, EferFlags};
    let mut bits = EferFlags::LONG_MODE_ENABLE.bits();
    if Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE) {
        bits |= EferFlags::NO_EXECUTE_ENABLE.bits();
    }
    bits
}

/// An AP's stacks, as (bottom, top): the one it starts on, and its
/// double-fault, NMI and machine-check stacks. Mapped in the kernel window with an
/// unmapped page below each (an overflow faults), and never freed: the
/// processor may run on them for good.
fn new_stacks() -> Option<[(u64, u64); 4]> {
    let stack = |bytes: usize| -> Option<(u64, u64)> {
        let frames: Vec<crate::mm::Frame> = (0..bytes / 4096).map(|_| crate::mm::Frame::alloc()).collect::<Result<_, _>>().ok()?;
        let area = crate::mm::MappedArea::new(frames).ok()?;
        let bounds = (area.virt_addr(), area.virt_addr() + area.len() as u64);
        core::mem::forget(area);
        Some(bounds)
    };
    Some([stack(AP_STACK)?, stack(super::gdt::IST_SIZE)?, stack(super::gdt::IST_SIZE)?, stack(super::gdt::IST_SIZE)?])
}

/// Copies the trampoline and builds the temporary page tables.
fn prepare() -> Result<(), &'static str> {
    use framekernel_logic::bootinfo::RegionKind;
    // The pages must be RAM the firmware does not use.
    let end = TRAMPOLINE + PAGES * 4096;
    let usable = crate::mm::firmware_map().iter().any(|r| r.kind == RegionKind::Usable && r.start <= TRAMPOLINE && end <= r.start.saturating_add(r.len));
    if !usable {
        return Err("the start-up pages at 0x70000 are not free RAM");
    }
    let start = core::ptr::addr_of!(ap_trampoline_start) as usize;
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start;
    if len > 4096 {
        return Err("the trampoline is larger than a page");
    }
    // SAFETY: `ap_trampoline_start..ap_trampoline_end` is read-only data
    // of the kernel image (the assembly above), `len` bytes long.
    let code = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
    write_low(TRAMPOLINE, code);
    // Temporary tables: PML4[0] -> PDPT[0] -> PD[0] = 2 MiB identity;
    // PML4[256..512] = the kernel's.
    let mut pml4 = [0u64; 512];
    pml4[0] = TEMP_PDPT | 3;
    let kernel_root = x86_64::registers::control::Cr3::read().0.start_address().as_u64();
    let root = framekernel_logic::layout::phys_to_direct(kernel_root).ok_or("the kernel's page tables are outside the direct map")?;
    for (i, entry) in pml4.iter_mut().enumerate().skip(256) {
        // SAFETY: `root` is the direct-map address of the active PML4 (a
        // page-table frame the paging module owns); entries are read as
        // plain integers, volatile, while nothing changes the kernel half
        // (boot, one processor, interrupts off).
        *entry = unsafe { core::ptr::read_volatile((root as *const u64).add(i)) };
    }
    let mut pdpt = [0u64; 512];
    pdpt[0] = TEMP_PD | 3;
    let mut pd = [0u64; 512];
    pd[0] = 0x83; // present, writable, 2 MiB
    for (phys, table) in [(TEMP_PML4, &pml4), (TEMP_PDPT, &pdpt), (TEMP_PD, &pd)] {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        write_low(phys, &bytes);
    }
    Ok(())
}

/// INIT, then up to two start-up IPIs, to `apic_id`; true once it answers
/// (`started` passes `before`).
fn wake(apic_id: u32, before: u32) -> bool {
    let send = |low: u32| {
        let _ = super::lapic::send_ipi(apic_id, low);
    };
    let answered = |ms: u64| {
        let deadline = crate::time::now_ns() + ms * 1_000_000;
        while crate::time::now_ns() < deadline {
            if started() > before {
                return true;
            }
            core::hint::spin_loop();
        }
        started() > before
    };
    let vector = (TRAMPOLINE >> 12) as u32;
    send(0x0000_4500); // INIT, assert
    let _ = answered(10);
    send(0x0000_4600 | vector); // start-up
    if answered(1) {
        return true;
    }
    send(0x0000_4600 | vector);
    answered(ANSWER_MS)
}
