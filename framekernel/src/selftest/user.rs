//! Self-tests of user mode: entering ring 3, system calls, exceptions and
//! interrupts coming back as traps, FPU state, and the fault-safe user copy.

use crate::arch::user::{Trap, UserContext};
use crate::arch::usercopy::{UserFault, copy_from_user, copy_to_user};
use crate::mm::{Frame, Perms, VmSpace};
use crate::ensure;
use alloc::format;
use alloc::string::String;

const CODE: u64 = 0x40_0000;
const STACK_TOP: u64 = 0x80_0000;

/// A space with `code` at `CODE` (read+exec) and one stack page below
/// `STACK_TOP`, made active, and a context ready to run it.
fn space_with(code: &[u8]) -> Result<(VmSpace, UserContext), String> {
    let mut space = VmSpace::new().map_err(|e| format!("{e}"))?;
    let mut text = Frame::alloc().map_err(|e| format!("{e}"))?;
    text.write_bytes(0, code).map_err(|e| format!("{e:?}"))?;
    space.map(CODE, text, Perms::READ_EXEC).map_err(|(e, _)| format!("{e}"))?;
    let stack = Frame::alloc().map_err(|e| format!("{e}"))?;
    space.map(STACK_TOP - 4096, stack, Perms::READ_WRITE).map_err(|(e, _)| format!("{e}"))?;
    space.activate();
    let mut context = UserContext::new();
    context.regs.rip = CODE;
    context.regs.rsp = STACK_TOP - 64;
    Ok((space, context))
}

pub(super) fn syscalls_and_fpu_state_round_trip() -> Result<(), String> {
    #[rustfmt::skip]
    let code = [
        0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00, // mov rax, 0x1234
        0x0f, 0x05,                               // syscall
        0x48, 0x83, 0xc0, 0x01,                   // add rax, 1
        0x66, 0x48, 0x0f, 0x6e, 0xc0,             // movq xmm0, rax
        0x0f, 0x05,                               // syscall
        0x66, 0x48, 0x0f, 0x7e, 0xc0,             // movq rax, xmm0
        0x0f, 0x05,                               // syscall
        0x0f, 0x0b,                               // ud2
    ];
    let (_space, mut ctx) = space_with(&code)?;
    ctx.regs.rbx = 0xdead_beef;
    ctx.regs.r15 = 0x1515;
    ensure!(run_until_trap(&mut ctx) == Trap::Syscall, "first stop was not a syscall");
    ensure!(ctx.regs.rax == 0x1234, "rax {:#x}", ctx.regs.rax);
    ensure!(ctx.regs.rip == CODE + 9, "rip after syscall {:#x}", ctx.regs.rip);
    ensure!(ctx.regs.rbx == 0xdead_beef && ctx.regs.r15 == 0x1515, "registers not preserved: {:?}", ctx.regs);
    ctx.regs.rax = 0x5000; // the "return value"
    ensure!(run_until_trap(&mut ctx) == Trap::Syscall, "second stop was not a syscall");
    ensure!(ctx.regs.rax == 0x5001, "return value not delivered: rax {:#x}", ctx.regs.rax);
    let xmm0 = xmm0_of(&ctx.fpu_state());
    ensure!(xmm0 == 0x5001, "xmm0 not saved in the context: {xmm0:#x}");
    ctx.regs.rax = 0;
    ensure!(run_until_trap(&mut ctx) == Trap::Syscall, "third stop was not a syscall");
    ensure!(ctx.regs.rax == 0x5001, "xmm0 lost across the kernel: rax {:#x}", ctx.regs.rax);
    match run_until_trap(&mut ctx) {
        Trap::Exception { vector: 6, .. } => Ok(()),
        other => Err(format!("ud2 gave {other:?}")),
    }
}

/// Runs until the program stops for a reason of its own: a timer interrupt
/// may arrive at any instruction and is simply resumed, as a kernel would.
fn run_until_trap(ctx: &mut UserContext) -> Trap {
    loop {
        match ctx.run() {
            Trap::Interrupt { .. } => continue,
            trap => return trap,
        }
    }
}

fn run_expecting(code: &[u8], vector: u8) -> Result<Trap, String> {
    let (_space, mut ctx) = space_with(code)?;
    let trap = run_until_trap(&mut ctx);
    match trap {
        Trap::Exception { vector: v, .. } if v == vector => Ok(trap),
        other => Err(format!("expected exception {vector}, got {other:?} at rip {:#x}", ctx.regs.rip)),
    }
}

pub(super) fn user_faults_become_traps() -> Result<(), String> {
    // Reading kernel memory from ring 3: a page fault with the user bit.
    let kernel = 0xffff_ffff_8010_0000u64.to_le_bytes();
    let mut read_kernel = alloc::vec![0x48, 0xa1];
    read_kernel.extend_from_slice(&kernel);
    match run_expecting(&read_kernel, 14)? {
        Trap::Exception { error_code, fault_address, .. } => {
            ensure!(fault_address == 0xffff_ffff_8010_0000, "CR2 {fault_address:#x}");
            ensure!(error_code & 4 != 0, "page fault not marked as user mode: {error_code:#x}");
        }
        _ => unreachable!(),
    }
    run_expecting(&[0xf4], 13).map_err(|e| format!("hlt: {e}"))?; // privileged
    run_expecting(&[0xfa], 13).map_err(|e| format!("cli: {e}"))?; // IOPL 0
    run_expecting(&[0x31, 0xc9, 0xf7, 0xf1], 0).map_err(|e| format!("div by zero: {e}"))?;
    // Executing the stack page (no-execute) faults with the fetch bit.
    let (_space, mut ctx) = space_with(&[0x90])?;
    ctx.regs.rip = STACK_TOP - 4096;
    match run_until_trap(&mut ctx) {
        Trap::Exception { vector: 14, error_code, .. } if error_code & 16 != 0 => {}
        other => return Err(format!("executing the stack gave {other:?}")),
    }
    // A kernel-half rip is refused before ring 3 is entered.
    ctx.regs.rip = 0xffff_ffff_8010_0000;
    ensure!(matches!(run_until_trap(&mut ctx), Trap::Exception { vector: 13, .. }), "kernel rip accepted");
    Ok(())
}

pub(super) fn timer_interrupts_user_loop() -> Result<(), String> {
    let (_space, mut ctx) = space_with(&[0xeb, 0xfe])?; // jmp $
    for _ in 0..3 {
        match ctx.run() {
            Trap::Interrupt { .. } => {}
            other => return Err(format!("endless loop stopped by {other:?}")),
        }
        ensure!(ctx.regs.rip == CODE, "interrupted at {:#x}", ctx.regs.rip);
    }
    Ok(())
}

pub(super) fn user_copy_reports_faults() -> Result<(), String> {
    let (mut space, _ctx) = space_with(&[0x90])?;
    let data = Frame::alloc().map_err(|e| format!("{e}"))?;
    space.map(0x50_0000, data, Perms::READ_WRITE).map_err(|(e, _)| format!("{e}"))?;
    copy_to_user(0x50_0100, b"hello user").map_err(|e| format!("{e:?}"))?;
    let mut back = [0u8; 10];
    space.read_bytes(0x50_0100, &mut back).map_err(|e| format!("{e}"))?;
    ensure!(&back == b"hello user", "frame holds {back:?}");
    let mut again = [0u8; 10];
    copy_from_user(0x50_0100, &mut again).map_err(|e| format!("{e:?}"))?;
    ensure!(again == back, "copy_from_user read {again:?}");
    // Crossing into an unmapped page: fault at the first missing byte.
    let r = copy_to_user(0x50_0ff0, &[1u8; 32]);
    ensure!(r == Err(UserFault { address: 0x50_1000 }), "crossing copy gave {r:?}");
    // The same from addresses that are not multiples of 8 (the word copy
    // faults on a word that straddles the pages): still the exact byte,
    // and every byte before it copied.
    for start in [0x50_0ffbu64, 0x50_0ff3, 0x50_0fe1] {
        let r = copy_to_user(start, &[0xa5u8; 40]);
        ensure!(r == Err(UserFault { address: 0x50_1000 }), "copy to {start:#x} gave {r:?}");
        let mut head = [0u8; 31];
        let have = (0x50_1000 - start) as usize;
        space.read_bytes(start, &mut head[..have]).map_err(|e| format!("{e}"))?;
        ensure!(head[..have].iter().all(|&b| b == 0xa5), "bytes before the fault at {start:#x}: {:?}", &head[..have]);
        let mut out = [0u8; 40];
        let r = copy_from_user(start, &mut out);
        ensure!(r == Err(UserFault { address: 0x50_1000 }), "copy from {start:#x} gave {r:?}");
        ensure!(out[..have].iter().all(|&b| b == 0xa5), "bytes read before the fault at {start:#x}: {:?}", &out[..have]);
    }
    // Every start 0..200 bytes before the unmapped page and every length
    // to 300 (64-byte blocks, then words, then bytes; a fault in any of
    // them): the exact first missing byte, every byte before it copied,
    // none after it in the kernel buffer touched; whole copies below the
    // boundary are exact.
    let pattern: alloc::vec::Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
    for back in 1..=200u64 {
        let start = 0x50_1000 - back;
        for len in [back as usize - 1, back as usize, back as usize + 1, back as usize + 63, back as usize + 64, 300] {
            let len = len.min(300);
            let data = pattern.get(..len).ok_or("pattern")?;
            let faults = len as u64 > back;
            space.write_bytes(0x50_0e00, &[0u8; 0x200]).map_err(|e| format!("{e}"))?;
            let r = copy_to_user(start, data);
            ensure!(r == if faults { Err(UserFault { address: 0x50_1000 }) } else { Ok(()) }, "copy of {len} to {start:#x} gave {r:?}");
            let have = len.min(back as usize);
            let mut got = [0u8; 300];
            space.read_bytes(start, &mut got[..have]).map_err(|e| format!("{e}"))?;
            ensure!(got[..have] == data[..have], "copy of {len} to {start:#x}: bytes before the fault differ");
            let mut out = [0x5au8; 300];
            let r = copy_from_user(start, &mut out[..len]);
            ensure!(r == if faults { Err(UserFault { address: 0x50_1000 }) } else { Ok(()) }, "copy of {len} from {start:#x} gave {r:?}");
            ensure!(out[..have] == data[..have], "copy of {len} from {start:#x}: bytes before the fault differ");
            ensure!(out[have..].iter().all(|&b| b == 0x5a), "copy of {len} from {start:#x} wrote past the fault");
        }
    }
    // Lengths that are not multiples of 8 copy their last bytes.
    copy_to_user(0x50_0203, b"0123456789abcdefXYZ").map_err(|e| format!("{e:?}"))?;
    let mut odd = [0u8; 19];
    copy_from_user(0x50_0203, &mut odd).map_err(|e| format!("{e:?}"))?;
    ensure!(&odd == b"0123456789abcdefXYZ", "odd-length round trip gave {odd:?}");
    let mut buf = [0u8; 8];
    ensure!(copy_from_user(0x1000, &mut buf).is_err(), "unmapped read succeeded");
    ensure!(copy_from_user(0xffff_ffff_8010_0000, &mut buf).is_err(), "kernel address read succeeded");
    ensure!(copy_from_user(0x7fff_ffff_fffc, &mut buf).is_err(), "copy across the top of user space succeeded");
    ensure!(copy_from_user(u64::MAX - 3, &mut buf).is_err(), "wrapping copy succeeded");
    space.protect(0x50_0000, Perms::READ).map_err(|e| format!("{e}"))?;
    ensure!(copy_to_user(0x50_0000, b"x").is_err(), "write to a read-only user page succeeded");
    ensure!(copy_from_user(0x50_0000, &mut buf).is_ok(), "read of a read-only page failed");
    drop(space);
    ensure!(copy_from_user(0x50_0100, &mut buf).is_err(), "dropped space still readable");
    Ok(())
}

pub(super) fn address_space_bookkeeping() -> Result<(), String> {
    let before = crate::mm::frame_stats().free;
    {
        let mut space = VmSpace::new().map_err(|e| format!("{e}"))?;
        let f = Frame::alloc().map_err(|e| format!("{e}"))?;
        let err = space.map(0x1001, f, Perms::READ);
        let f = match err {
            Err((crate::mm::VmError::BadAddress(0x1001), f)) => f,
            other => return Err(format!("unaligned map gave {:?}", other.map_err(|(e, _)| e))),
        };
        let f = match space.map(0xffff_8000_0000_0000, f, Perms::READ) {
            Err((crate::mm::VmError::BadAddress(_), f)) => f,
            _ => return Err("kernel-half map accepted".into()),
        };
        space.map(0x1000, f, Perms::READ).map_err(|(e, _)| format!("{e}"))?;
        let g = Frame::alloc().map_err(|e| format!("{e}"))?;
        ensure!(space.map(0x1000, g, Perms::READ).is_err(), "double map accepted");
        for i in 0..64 {
            let f = Frame::alloc().map_err(|e| format!("{e}"))?;
            space.map(0x4000_0000 + i * 0x20_0000, f, Perms::READ_WRITE).map_err(|(e, _)| format!("{e}"))?;
        }
        ensure!(space.page_count() == 65, "page count {}", space.page_count());
        // Leaving the user space: no longer loaded, and user memory out of
        // reach (a fault, not another space's page) until it is activated.
        space.activate();
        let mut byte = [0u8; 1];
        ensure!(crate::arch::usercopy::copy_from_user(0x1000, &mut byte).is_ok(), "the active space's page unreadable");
        crate::mm::leave_user_space();
        ensure!(!space.is_active(), "still active after leave_user_space");
        ensure!(crate::arch::usercopy::copy_from_user(0x1000, &mut byte).is_err(), "user memory reachable after leave_user_space");
        space.activate();
        ensure!(space.is_active(), "not active again");
        crate::mm::leave_user_space();
        let f = space.unmap(0x1000).map_err(|e| format!("{e}"))?;
        ensure!(space.unmap(0x1000).is_err(), "unmap twice succeeded");
        drop(f);
    }
    let after = crate::mm::frame_stats().free;
    ensure!(after == before, "address space leaked {} frames", before as i64 - after as i64);
    Ok(())
}

/// The page tables as the record of a space (issue 15): every page keeps
/// its own frame and rights through unmaps in any order (the frame list
/// moves its last entry into each gap), `pages_in` gives exactly the
/// pages of a range in order, and `share_into` shares copy-on-write
/// without letting either side's writes reach the other.
pub(super) fn address_space_records_and_fork_sharing() -> Result<(), String> {
    fn records_and_sharing() -> Result<(), String> {
        let mut space = VmSpace::new().map_err(|e| format!("{e}"))?;
        // Pages in three regions (one across a 2 MiB boundary), each
        // frame marked with its page number.
        let mut expected: alloc::collections::BTreeMap<u64, Perms> = alloc::collections::BTreeMap::new();
        let starts = [0x40_0000u64, 0x5f_e000, 0x7fff_f000_0000];
        for (n, &base) in starts.iter().enumerate() {
            for i in 0..40u64 {
                let page = base + i * 0x1000;
                let mut f = Frame::alloc().map_err(|e| format!("{e}"))?;
                f.write_bytes(0, &page.to_le_bytes()).map_err(|_| "frame write")?;
                let perms = [Perms::READ, Perms::READ_WRITE, Perms::READ_EXEC, Perms { write: true, exec: true }][(i as usize + n) % 4];
                space.map(page, f, perms).map_err(|(e, _)| format!("{e}"))?;
                expected.insert(page, perms);
            }
        }
        // Unmap every third page, in descending order, then some from the front.
        let doomed: alloc::vec::Vec<u64> = expected.keys().copied().filter(|p| (p >> 12) % 3 == 0).rev().chain(expected.keys().copied().take(5)).collect();
        for page in doomed {
            if expected.remove(&page).is_some() {
                let frame = space.unmap(page).map_err(|e| format!("unmap {page:#x}: {e}"))?;
                let mut word = [0u8; 8];
                frame.read_bytes(0, &mut word).map_err(|_| "frame read")?;
                ensure!(u64::from_le_bytes(word) == page, "unmap of {page:#x} gave the frame of {:#x}", u64::from_le_bytes(word));
            }
        }
        ensure!(space.page_count() == expected.len(), "page count {} for {}", space.page_count(), expected.len());
        let listed: alloc::vec::Vec<(u64, Perms)> = space.pages().collect();
        let wanted: alloc::vec::Vec<(u64, Perms)> = expected.iter().map(|(&p, &r)| (p, r)).collect();
        ensure!(listed == wanted, "pages() lists {} pages, {} expected, or rights differ", listed.len(), wanted.len());
        for (&page, &perms) in &expected {
            let mut word = [0u8; 8];
            space.read_bytes(page, &mut word).map_err(|e| format!("{e}"))?;
            ensure!(u64::from_le_bytes(word) == page, "page {page:#x} shows the frame of {:#x}", u64::from_le_bytes(word));
            ensure!(space.perms(page + 5) == Some(perms), "rights of {page:#x}");
        }
        // Ranges: inside one region, across the boundary, empty, reversed.
        let (lo, hi) = (0x5f_f000u64, 0x60_9000u64);
        let part: alloc::vec::Vec<u64> = space.pages_in(lo, hi).map(|(p, _)| p).collect();
        let part_wanted: alloc::vec::Vec<u64> = expected.keys().copied().filter(|p| (lo..hi).contains(p)).collect();
        ensure!(part == part_wanted, "pages_in({lo:#x}, {hi:#x}) gave {part:x?}, not {part_wanted:x?}");
        ensure!(space.pages_in(0x60_0000, 0x60_0000).next().is_none(), "an empty range listed pages");
        ensure!(space.pages_in(0x60_9000, 0x40_0000).next().is_none(), "a reversed range listed pages");
        // Rights changes keep the frame; the same rights again are a no-op.
        let some = *expected.keys().nth(3).ok_or("no pages")?;
        space.protect(some, Perms::READ_EXEC).map_err(|e| format!("{e}"))?;
        space.protect(some, Perms::READ_EXEC).map_err(|e| format!("{e}"))?;
        ensure!(space.perms(some) == Some(Perms::READ_EXEC), "protect lost");
        expected.insert(some, Perms::READ_EXEC);
        // fork: share everything copy-on-write into a child.
        let mut child = VmSpace::new().map_err(|e| format!("{e}"))?;
        space.share_into(&mut child, 0, u64::MAX, true).map_err(|e| format!("{e}"))?;
        ensure!(child.page_count() == expected.len(), "child has {} pages", child.page_count());
        for (&page, &perms) in &expected {
            let cow = Perms { write: false, ..perms };
            ensure!(space.perms(page) == Some(cow) && child.perms(page) == Some(cow), "{page:#x} not read-only on both sides");
            ensure!(space.is_shared(page) && child.is_shared(page), "{page:#x} not shared");
        }
        // A write on one side (the loader's path: a private copy first).
        let first = *expected.keys().next().ok_or("no pages")?;
        child.write_bytes(first, &[0xee; 8]).map_err(|e| format!("{e}"))?;
        let (mut mine, mut theirs) = ([0u8; 8], [0u8; 8]);
        space.read_bytes(first, &mut mine).map_err(|e| format!("{e}"))?;
        child.read_bytes(first, &mut theirs).map_err(|e| format!("{e}"))?;
        ensure!(u64::from_le_bytes(mine) == first && theirs == [0xee; 8], "a child's write reached the parent");
        ensure!(!space.is_shared(first) && !child.is_shared(first), "still shared after the copy");
        // Sharing again leaves the child's pages alone; a shared (not
        // copy-on-write) range keeps its rights.
        space.share_into(&mut child, 0, u64::MAX, false).map_err(|e| format!("{e}"))?;
        child.read_bytes(first, &mut theirs).map_err(|e| format!("{e}"))?;
        ensure!(theirs == [0xee; 8], "share_into replaced a page the child maps");
        drop(space);
        ensure!(child.page_count() == expected.len(), "the child lost pages with its parent");
        Ok(())
    }
    // Once to warm the kernel heap up (its growth takes frames it keeps).
    records_and_sharing()?;
    let before = crate::mm::frame_stats().free;
    records_and_sharing()?;
    let after = crate::mm::frame_stats().free;
    ensure!(after == before, "spaces leaked {} frames", before as i64 - after as i64);
    Ok(())
}

/// Red team (issue 10, finding 8): a program sets AC and then traps (a
/// breakpoint, not `syscall`, whose flag mask clears AC). The kernel must
/// come back with AC clear, or SMAP would be off for it.
pub(super) fn user_alignment_flag_does_not_reach_the_kernel() -> Result<(), String> {
    #[rustfmt::skip]
    let code = [
        0x9c,                                     // pushfq
        0x81, 0x0c, 0x24, 0x00, 0x00, 0x04, 0x00, // or dword [rsp], 0x40000 (AC)
        0x9d,                                     // popfq
        0xcc,                                     // int3
        0x0f, 0x0b,                               // ud2
    ];
    let (_space, mut ctx) = space_with(&code)?;
    let trap = run_until_trap(&mut ctx);
    let kernel_flags = x86_64::registers::rflags::read_raw();
    ensure!(matches!(trap, Trap::Exception { vector: 3, .. }), "int3 gave {trap:?}");
    ensure!(ctx.regs.rflags & 0x40000 != 0, "the program's AC was not kept in its context: {:#x}", ctx.regs.rflags);
    ensure!(kernel_flags & 0x40000 == 0, "the kernel runs with AC set after a user trap: {kernel_flags:#x}");
    // An interrupt from ring 3 (the timer) must not leak it either.
    let (_space, mut ctx) = space_with(&[0x9c, 0x81, 0x0c, 0x24, 0x00, 0x00, 0x04, 0x00, 0x9d, 0xeb, 0xfe])?;
    for _ in 0..3 {
        let trap = ctx.run();
        let kernel_flags = x86_64::registers::rflags::read_raw();
        ensure!(kernel_flags & 0x40000 == 0, "AC set in the kernel after {trap:?}: {kernel_flags:#x}");
    }
    Ok(())
}

/// Red team (finding 9): an FPU image with every MXCSR bit set (as a
/// forged signal frame would carry) must not make FXRSTOR fault in ring 0.
pub(super) fn user_fpu_image_is_sanitized() -> Result<(), String> {
    let (_space, mut ctx) = space_with(&[0x0f, 0x05, 0x0f, 0x0b])?; // syscall; ud2
    let mut image = ctx.fpu_state();
    image.0[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    ctx.set_fpu_state(image);
    ensure!(run_until_trap(&mut ctx) == Trap::Syscall, "the program did not run");
    let mask = crate::arch::user::mxcsr_mask();
    let mxcsr = ctx.fpu_state().mxcsr();
    ensure!(mxcsr & !mask == 0, "reserved MXCSR bits survived: {mxcsr:#x} (mask {mask:#x})");
    ensure!(mxcsr & 0xffff_0000 == 0, "MXCSR {mxcsr:#x}");
    Ok(())
}


static SWITCH_TARGET: crate::sync::SpinLock<Option<alloc::sync::Arc<crate::task::Task>>> = crate::sync::SpinLock::new(None);
static SWITCHES_REFUSED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static SWITCHES_DONE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static TARGET_RAN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn switch_from_tick(_tick: u64) {
    use core::sync::atomic::Ordering::Relaxed;
    let target = SWITCH_TARGET.lock().clone();
    if let Some(target) = target {
        match crate::task::switch_to(target) {
            Err(crate::task::SwitchError::InterruptContext) => SWITCHES_REFUSED.fetch_add(1, Relaxed),
            _ => SWITCHES_DONE.fetch_add(1, Relaxed),
        };
    }
}

/// Red team (finding 2): a tick callback that switches tasks, while a
/// program runs in ring 3 and while the kernel runs. The switch used to
/// carry the interrupted user entry's per-CPU state to another task (the
/// kernel then executed its own stack); it is now refused.
pub(super) fn task_switch_in_interrupt_is_refused() -> Result<(), String> {
    use core::sync::atomic::Ordering::Relaxed;
    let target = crate::task::spawn("redteam-target", || TARGET_RAN.store(true, Relaxed)).map_err(|e| format!("{e}"))?;
    *SWITCH_TARGET.lock() = Some(target);
    crate::time::on_tick(switch_from_tick).map_err(|e| format!("{e:?}"))?;
    let (_space, mut ctx) = space_with(&[0xeb, 0xfe])?; // jmp $
    let mut interrupts = 0;
    for _ in 0..5 {
        if let Trap::Interrupt { .. } = ctx.run() {
            interrupts += 1;
        }
    }
    crate::time::sleep(core::time::Duration::from_millis(5)); // ticks in kernel mode too
    let _ = crate::time::remove_tick_callback(switch_from_tick);
    SWITCH_TARGET.lock().take();
    ensure!(interrupts == 5, "the user loop stopped for another reason");
    ensure!(ctx.regs.rip == CODE, "user loop resumed at {:#x}", ctx.regs.rip);
    ensure!(SWITCHES_DONE.load(Relaxed) == 0 && !TARGET_RAN.load(Relaxed), "a task switch happened inside an interrupt handler");
    ensure!(SWITCHES_REFUSED.load(Relaxed) >= 5, "only {} switches attempted", SWITCHES_REFUSED.load(Relaxed));
    Ok(())
}

static NESTED_RUNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static NESTED_REFUSED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn run_from_tick(_tick: u64) {
    use core::sync::atomic::Ordering::Relaxed;
    NESTED_RUNS.fetch_add(1, Relaxed);
    let mut ctx = UserContext::new();
    ctx.regs.rip = 0x1000; // would fault at once in ring 3
    ctx.regs.rsp = 0x2000;
    if let Trap::Exception { vector: 13, .. } = ctx.run() {
        NESTED_REFUSED.fetch_add(1, Relaxed);
    }
}

/// Red team (the review after issue 10's fixes, A8): a tick callback that
/// enters user mode while a program is stopped by that tick used to
/// overwrite the per-CPU user-entry state: the interrupted program's
/// return to the kernel then went through the nested entry's dead stack.
/// Now `run` refuses interrupt context.
pub(super) fn user_run_in_interrupt_is_refused() -> Result<(), String> {
    use core::sync::atomic::Ordering::Relaxed;
    let (_space, mut ctx) = space_with(&[0xeb, 0xfe])?; // jmp $
    ctx.regs.r12 = 0x1212;
    crate::time::on_tick(run_from_tick).map_err(|e| format!("{e:?}"))?;
    let mut traps = 0;
    for _ in 0..4 {
        if let Trap::Interrupt { .. } = ctx.run() {
            traps += 1;
        }
    }
    let _ = crate::time::remove_tick_callback(run_from_tick);
    ensure!(traps == 4, "the user loop stopped for another reason");
    ensure!(ctx.regs.rip == CODE && ctx.regs.r12 == 0x1212, "the program's registers changed: {:?}", ctx.regs);
    let (runs, refused) = (NESTED_RUNS.load(Relaxed), NESTED_REFUSED.load(Relaxed));
    ensure!(runs > 0 && runs == refused, "{refused} of {runs} nested entries refused");
    Ok(())
}

/// A program that copies rax into xmm0, stops (`syscall`), then twice
/// copies xmm0 back into rax and stops, then ends with `ud2`.
#[rustfmt::skip]
const XMM0_ROUND_TRIP: [u8; 23] = [
    0x66, 0x48, 0x0f, 0x6e, 0xc0, // movq xmm0, rax
    0x0f, 0x05,                   // syscall
    0x66, 0x48, 0x0f, 0x7e, 0xc0, // movq rax, xmm0
    0x0f, 0x05,                   // syscall
    0x66, 0x48, 0x0f, 0x7e, 0xc0, // movq rax, xmm0
    0x0f, 0x05,                   // syscall
    0x0f, 0x0b,                   // ud2
];

/// xmm0's low 64 bits in an FXSAVE image.
fn xmm0_of(image: &crate::arch::user::FpuState) -> u64 {
    u64::from_le_bytes(image.0[160..168].try_into().unwrap_or([0; 8]))
}

/// Runs `f` in a new task and comes back here when it ends.
fn in_another_task(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let me = crate::task::current();
    let other = crate::task::spawn(name, move || {
        f();
        let _ = crate::task::finish_and_switch(me);
    })
    .map_err(|e| format!("{e}"))?;
    crate::task::switch_to(other).map_err(|e| format!("{e:?}"))
}

/// `task::current` (read without a lock) names the task running: in a
/// new task, the task `spawn` made; back here, this one again; and each
/// answer is one more reference to the task, let go when dropped.
pub(super) fn current_names_the_running_task() -> Result<(), String> {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicUsize, Ordering};
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    // References to the new task, counted by itself (nothing else takes
    // one meanwhile): with one answer, with two, after dropping one.
    static COUNTS: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    let me = crate::task::current();
    let back = me.clone();
    let other = crate::task::spawn("current-probe", move || {
        let first = crate::task::current();
        COUNTS[0].store(Arc::strong_count(&first), Ordering::Relaxed);
        let second = crate::task::current();
        COUNTS[1].store(Arc::strong_count(&first), Ordering::Relaxed);
        drop(second);
        COUNTS[2].store(Arc::strong_count(&first), Ordering::Relaxed);
        SEEN.store(Arc::as_ptr(&first) as usize, Ordering::Relaxed);
        drop(first);
        let _ = crate::task::finish_and_switch(back);
    })
    .map_err(|e| format!("{e}"))?;
    let other_at = Arc::as_ptr(&other) as usize;
    crate::task::switch_to(other).map_err(|e| format!("{e:?}"))?;
    ensure!(SEEN.load(Ordering::Relaxed) == other_at, "the new task saw {:#x}, not itself ({other_at:#x})", SEEN.load(Ordering::Relaxed));
    let [one, two, after] = [0, 1, 2].map(|i| COUNTS[i].load(Ordering::Relaxed));
    ensure!(two == one + 1 && after == one, "references to the new task: {one} with one answer, {two} with two, {after} after one went");
    ensure!(Arc::ptr_eq(&crate::task::current(), &me), "back here, current is not this task");
    Ok(())
}

/// Lazy FPU: two contexts run in turn by one task (the second one's run
/// parks the first one's live state in the task), with a task switch in
/// between, and a copy taken while a state is live: each keeps its own
/// xmm0, `fpu_state` sees the newest value wherever it is, and a
/// `set_fpu_state` reaches the program even though an older state was
/// live in the registers.
pub(super) fn lazy_fpu_keeps_each_contexts_state() -> Result<(), String> {
    let xmm0 = |ctx: &UserContext| xmm0_of(&ctx.fpu_state());
    let (_space, mut a) = space_with(&XMM0_ROUND_TRIP)?;
    let mut b = a.clone();
    a.regs.rax = 0xaaaa;
    b.regs.rax = 0xbbbb;
    ensure!(run_until_trap(&mut a) == Trap::Syscall && xmm0(&a) == 0xaaaa, "a's xmm0 {:#x}", xmm0(&a));
    ensure!(run_until_trap(&mut b) == Trap::Syscall && xmm0(&b) == 0xbbbb, "b's xmm0 {:#x}", xmm0(&b));
    ensure!(xmm0(&a) == 0xaaaa, "a's parked xmm0 {:#x}", xmm0(&a));
    // Another task runs in between (the live state is parked).
    in_another_task("fpu-other", || {})?;
    ensure!(run_until_trap(&mut a) == Trap::Syscall && a.regs.rax == 0xaaaa, "a read back {:#x}", a.regs.rax);
    ensure!(run_until_trap(&mut b) == Trap::Syscall && b.regs.rax == 0xbbbb, "b read back {:#x}", b.regs.rax);
    // A copy of a live state, and a state replaced while live.
    let copy = b.clone();
    ensure!(xmm0(&copy) == 0xbbbb, "copy's xmm0 {:#x}", xmm0(&copy));
    let mut image = b.fpu_state();
    image.0[160..168].copy_from_slice(&0xcccc_u64.to_le_bytes());
    b.set_fpu_state(image);
    ensure!(run_until_trap(&mut b) == Trap::Syscall && b.regs.rax == 0xcccc, "b after set_fpu_state {:#x}", b.regs.rax);
    Ok(())
}

/// Red team (lazy FPU, finding 2): a context whose state a switch parked
/// in this task is handed to another task, which reads its FPU state and
/// replaces it; back here, the program sees the replacement.
pub(super) fn fpu_state_follows_a_context_across_tasks() -> Result<(), String> {
    use alloc::sync::Arc;
    let (_space, mut a) = space_with(&XMM0_ROUND_TRIP)?;
    a.regs.rax = 0xaaaa;
    ensure!(run_until_trap(&mut a) == Trap::Syscall, "first run");
    let shared: Arc<crate::sync::SpinLock<Option<UserContext>>> = Arc::new(crate::sync::SpinLock::new(Some(a)));
    let seen = Arc::new(core::sync::atomic::AtomicU64::new(0));
    let (s2, seen2) = (shared.clone(), seen.clone());
    in_another_task("fpu-handover", move || {
        if let Some(ctx) = s2.lock().as_mut() {
            let mut image = ctx.fpu_state();
            seen2.store(xmm0_of(&image), core::sync::atomic::Ordering::SeqCst);
            image.0[160..168].copy_from_slice(&0xcccc_u64.to_le_bytes());
            ctx.set_fpu_state(image);
        }
    })?;
    let mut a = shared.lock().take().ok_or("context gone")?;
    let seen = seen.load(core::sync::atomic::Ordering::SeqCst);
    ensure!(seen == 0xaaaa, "another task's fpu_state saw {seen:#x}, not the program's 0xaaaa");
    ensure!(run_until_trap(&mut a) == Trap::Syscall, "second run");
    ensure!(a.regs.rax == 0xcccc, "set_fpu_state by another task lost: the program read {:#x}", a.regs.rax);
    Ok(())
}

/// Red team (sysretq, finding 3): a program single-stepping itself (TF)
/// across a system call makes progress: each further run executes one
/// instruction and stops with #DB after it (sysretq would trap before
/// the instruction; the return then uses iretq).
pub(super) fn single_step_after_a_syscall_makes_progress() -> Result<(), String> {
    // syscall; nop x8; ud2
    let code = [0x0f, 0x05, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x0f, 0x0b];
    let (_space, mut ctx) = space_with(&code)?;
    ctx.regs.rflags = 0x302; // IF, TF
    let mut rips = alloc::vec::Vec::new();
    for _ in 0..6 {
        let _ = run_until_trap(&mut ctx);
        rips.push(ctx.regs.rip);
    }
    let stuck = rips.windows(2).filter(|w| w[0] == w[1]).count();
    ensure!(stuck == 0, "single-stepping made no progress {stuck} times: {rips:x?}");
    Ok(())
}

/// Red team (the small user copy): every length 0..=40 at every start 24 bytes before to 4
/// after a boundary between pages RW|none, none|RW, RW|RO, RO|RW, in both
/// directions, against a byte-by-byte model: the exact first faulting
/// byte, the bytes before it copied, nothing else touched (user memory
/// around, or the kernel buffer past the fault).
pub(super) fn redteam_user_copy_small_exhaustive() -> Result<(), String> {
    let (mut space, _ctx) = space_with(&[0x90])?;
    const BASE: u64 = 0x60_0000;
    // Pages: 0 RW, 1 unmapped, 2 RW, 3 read-only, 4 RW.
    for (n, perms) in [(0u64, Perms::READ_WRITE), (2, Perms::READ_WRITE), (3, Perms::READ_WRITE), (4, Perms::READ_WRITE)] {
        let frame = Frame::alloc().map_err(|e| format!("{e}"))?;
        space.map(BASE + n * 0x1000, frame, perms).map_err(|(e, _)| format!("{e}"))?;
    }
    let bg = |a: u64| (a.wrapping_mul(13).wrapping_add(5) ^ (a >> 8)) as u8;
    let mapped = |a: u64| (a - BASE) / 0x1000 != 1;
    let writable = |a: u64| matches!((a - BASE) / 0x1000, 0 | 2 | 4);
    let fill = |space: &mut VmSpace| -> Result<(), String> {
        for n in [0u64, 2, 3, 4] {
            let page: alloc::vec::Vec<u8> = (0..4096u64).map(|i| bg(BASE + n * 0x1000 + i)).collect();
            space.write_bytes(BASE + n * 0x1000, &page).map_err(|e| format!("{e}"))?;
        }
        Ok(())
    };
    fill(&mut space)?;
    space.protect(BASE + 0x3000, Perms::READ).map_err(|e| format!("{e}"))?;
    let mut checked = 0u32;
    for boundary in [BASE + 0x1000, BASE + 0x2000, BASE + 0x3000, BASE + 0x4000] {
        for start in boundary - 24..=boundary + 4 {
            for len in 0..=40usize {
                // From user memory.
                let first_bad = (0..len).find(|&i| !mapped(start + i as u64));
                let expect = match first_bad { Some(i) => Err(UserFault { address: start + i as u64 }), None => Ok(()) };
                let have = first_bad.unwrap_or(len);
                let mut out = [0x5au8; 48];
                let r = copy_from_user(start, &mut out[..len]);
                ensure!(r == expect, "from {start:#x} len {len}: {r:?}, expected {expect:?}");
                for (i, &got) in out.iter().enumerate() {
                    let want = if i < have { bg(start + i as u64) } else { 0x5a };
                    ensure!(got == want, "from {start:#x} len {len}: kernel byte {i} is {got:#x}, expected {want:#x}");
                }
                // To user memory.
                let first_bad = (0..len).find(|&i| !writable(start + i as u64));
                let expect = match first_bad { Some(i) => Err(UserFault { address: start + i as u64 }), None => Ok(()) };
                let have = first_bad.unwrap_or(len);
                let data: alloc::vec::Vec<u8> = (0..len as u64).map(|i| !bg(start + i)).collect();
                let r = copy_to_user(start, &data);
                ensure!(r == expect, "to {start:#x} len {len}: {r:?}, expected {expect:?}");
                for a in start - 40..start + 80 {
                    if !mapped(a) {
                        continue;
                    }
                    let mut b = [0u8];
                    space.read_bytes(a, &mut b).map_err(|e| format!("{e}"))?;
                    let off = a.wrapping_sub(start);
                    let want = if a >= start && off < have as u64 { !bg(a) } else { bg(a) };
                    ensure!(b[0] == want, "to {start:#x} len {len}: user byte {a:#x} is {:#x}, expected {want:#x}", b[0]);
                }
                if have > 0 {
                    let back: alloc::vec::Vec<u8> = (0..have as u64).map(|i| bg(start + i)).collect();
                    space.write_bytes(start, &back).map_err(|e| format!("{e}"))?;
                }
                checked += 1;
            }
        }
    }
    ensure!(checked == 4 * 29 * 41, "{checked} cases checked");
    Ok(())
}
