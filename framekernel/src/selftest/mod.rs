//! In-kernel self-tests: a tiny runner and the trusted base's own tests.
//!
//! The kernel runs them when booted with `tessera.selftest`; the runner
//! prints one line per test and a closing `N passed, N failed` line.

mod user;
mod vm_model;

use crate::mm::{Frame, IoMem, IoMemError, MappedArea};
use crate::{arch, io, irq, mm, time};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

/// One self-test: a name and a function that returns why it failed.
#[derive(Clone, Copy)]
pub struct SelfTest {
    /// Shown in the report.
    pub name: &'static str,
    /// The test.
    pub run: fn() -> Result<(), String>,
}

/// Totals of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests that returned `Ok`.
    pub passed: usize,
    /// Tests that returned `Err`.
    pub failed: usize,
}

/// Runs `tests` in order, printing each result and the totals.
pub fn run(tests: &[SelfTest]) -> Summary {
    let mut summary = Summary::default();
    for test in tests {
        let started = time::now();
        match (test.run)() {
            Ok(()) => {
                summary.passed += 1;
                crate::println!("selftest {} ... ok ({} us)", test.name, (time::now() - started).as_micros());
            }
            Err(why) => {
                summary.failed += 1;
                crate::println!("selftest {} ... FAILED: {why}", test.name);
            }
        }
    }
    crate::println!("selftest: {} passed, {} failed", summary.passed, summary.failed);
    summary
}

/// Fails with a message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(alloc::format!($($arg)+));
        }
    };
}

/// The PIT's ticks also arrive as NMIs (the cell watchdog's), even with
/// interrupts off.
fn watchdog_nmis_arrive() -> Result<(), String> {
    let before = arch::exception::nmi_count();
    // Waits (with interrupts off) until three arrive; two seconds is far
    // more than three 1 ms ticks take, however busy the host.
    let end = time::now() + Duration::from_secs(2);
    arch::without_interrupts(|| {
        while arch::exception::nmi_count() - before < 3 && time::now() < end {
            core::hint::spin_loop();
        }
    });
    let during = arch::exception::nmi_count() - before;
    ensure!(during >= 3, "{during} NMIs in 2 s with interrupts off");
    Ok(())
}

/// Every other processor that was started set itself up: it has its own
/// per-CPU block, and an NMI sent to it is taken there, on its own NMI
/// stack (its own TSS), not on the boot processor's.
fn processors_take_nmis_on_their_own_stacks() -> Result<(), String> {
    let others = crate::cpu::present() - 1;
    let parked = crate::cpu::parked();
    ensure!(parked == others.min(crate::percpu::MAX_CPUS - 1), "{parked} of {others} other processors set up");
    ensure!(crate::percpu::this_cpu().index() == 0, "the self-tests run on processor {}", crate::cpu::current_index());
    let mut stacks = Vec::new();
    for index in 1..=parked {
        let block = crate::percpu::block(index).ok_or("no block")?;
        let before = block.nmis.load(Ordering::Relaxed);
        arch::smp::send_nmi(index).map_err(|e| format!("processor {index}: {e}"))?;
        let end = time::now() + Duration::from_secs(2);
        while block.nmis.load(Ordering::Relaxed) == before && time::now() < end {
            core::hint::spin_loop();
        }
        ensure!(block.nmis.load(Ordering::Relaxed) > before, "processor {index} took no NMI in 2 s");
        let frame = block.nmi_frame.load(Ordering::Relaxed);
        let [_, (lo, hi), _] = block.ist_bounds();
        ensure!((lo..hi).contains(&frame), "processor {index}'s NMI frame at {frame:#x} is not on its NMI stack {lo:#x}..{hi:#x}");
        stacks.push((lo, hi));
    }
    let own = crate::percpu::this_cpu();
    let [_, boot_nmi, _] = own.ist_bounds();
    stacks.push(boot_nmi);
    stacks.sort_unstable();
    ensure!(stacks.windows(2).all(|w| w[0].1 <= w[1].0), "two processors share NMI stack memory: {stacks:x?}");
    Ok(())
}

/// A kernel-window unmap is carried out on every other processor before
/// the frames can be reused: each answers the shootdown's NMI.
fn kernel_unmaps_reach_every_processor() -> Result<(), String> {
    let others = crate::cpu::parked();
    let before = mm::shootdown_count();
    let frames: Vec<Frame> = (0..3).map(|_| Frame::alloc()).collect::<Result<_, _>>().map_err(|e| format!("{e:?}"))?;
    let area = MappedArea::new(frames).map_err(|e| format!("{e:?}"))?;
    drop(area);
    let sent = mm::shootdown_count() - before;
    if others == 0 {
        ensure!(sent == 0, "{sent} shootdowns sent with no other processor");
        return Ok(());
    }
    ensure!(sent >= 1, "no shootdown sent for a kernel unmap with {others} other processors");
    let latest = (1..=others).filter_map(crate::percpu::block).map(|b| b.tlb_ack.load(Ordering::Acquire)).collect::<Vec<_>>();
    let own = crate::percpu::this_cpu().tlb_ack.load(Ordering::Acquire);
    ensure!(latest.iter().all(|&ack| ack == own), "processors answered up to {latest:?}, the last shootdown was {own}");
    Ok(())
}

/// A PCI configuration write waits until every other processor has
/// stopped in its NMI handler (QEMU's TCG may otherwise send their
/// memory-mapped accesses to the wrong device while the map changes), and
/// lets them go again.
fn pci_writes_hold_the_other_processors() -> Result<(), String> {
    let others = crate::cpu::parked();
    let address = crate::pci::devices().first().map(|d| d.address).ok_or("no PCI function")?;
    let device = crate::pci::PciDevice::claim(address).map_err(|e| format!("{e}"))?;
    let before = device.read_config(4).map_err(|e| format!("{e}"))?;
    let (holds, shootdowns) = (mm::tlb::hold_count(), mm::shootdown_count());
    device.enable(false).map_err(|e| format!("{e}"))?;
    let command = device.read_config(4).map_err(|e| format!("{e}"))?;
    ensure!(command & 0x3 == 0x3, "decoding is not on after enable: {command:#x}");
    let held = mm::tlb::hold_count() - holds;
    if others == 0 {
        ensure!(held == 0 && mm::shootdown_count() == shootdowns, "{held} holds with no other processor");
        return Ok(());
    }
    // Enabling what is on already writes nothing.
    let writes = u64::from(before & 0x3 != 0x3);
    ensure!(held == writes, "{held} holds for {writes} configuration write(s) with {others} other processors");
    let own = crate::percpu::this_cpu().tlb_ack.load(Ordering::Acquire);
    let answered = (1..=others).filter_map(crate::percpu::block).map(|b| b.tlb_ack.load(Ordering::Acquire)).collect::<Vec<_>>();
    ensure!(answered.iter().all(|&ack| ack == own), "processors answered up to {answered:?}, the hold was request {own}");
    // Let go: a shootdown needs every one of them to answer again.
    mm::tlb::shootdown(mm::tlb::other_processors(), 0, 0, 0);
    ensure!(mm::shootdown_count() - shootdowns == writes + 1, "the processors did not answer after the hold");
    drop(device); // bus mastering off: another configuration write, held too
    ensure!(mm::tlb::hold_count() - holds == writes + 1, "dropping the claim wrote without holding");
    Ok(())
}

/// Red team (issue 10, finding 4): a DMA buffer dropped while its device
/// may still write it does not give its frames back until the device's
/// claim ends (bus mastering off); without a device there is no DMA
/// buffer at all.
fn dma_frames_wait_for_bus_mastering_off() -> Result<(), String> {
    // The host bridge: present on every PC, claimed by no driver.
    let address = crate::pci::devices().first().map(|d| d.address).ok_or("no PCI function")?;
    let device = crate::pci::PciDevice::claim(address).map_err(|e| format!("{e}"))?;
    arch::without_interrupts(|| {
        let buffer = device.dma_buffer(3 * 4096).map_err(|e| format!("{e}"))?;
        let held = mm::frame_stats().free;
        drop(buffer);
        ensure!(mm::frame_stats().free == held, "DMA frames were freed while the device could still write them");
        drop(device);
        ensure!(mm::frame_stats().free == held + 3, "DMA frames not given back once bus mastering was off");
        Ok(())
    })
}

/// Red team (the review after issue 10's fixes, A2/A3): handles whose
/// claims were revoked (a faulted cell call took them; kernel code kept
/// them) do nothing any more, while the device's next owner works.
fn revoked_handles_are_inert() -> Result<(), String> {
    // A fault domain of its own, as a cell call that then faults has.
    const DOMAIN: u64 = u64::MAX - 7;
    let (ports, device) = crate::cell::enter(DOMAIN, (0, 0), core::ptr::null(), || {
        let ports = io::claim_legacy(io::Legacy::Com2);
        let address = crate::pci::devices().first().map(|d| d.address);
        let device = address.and_then(|a| crate::pci::PciDevice::claim(a).ok());
        (ports, device)
    })
    .map_err(|e| format!("{e}"))?;
    let ports = ports.map_err(|e| format!("COM2: {e}"))?;
    let device = device.ok_or("no PCI function to claim")?;
    ensure!(io::claim_legacy(io::Legacy::Com2).is_err(), "COM2 claimed twice");
    crate::io::revoke_domain(DOMAIN);
    crate::mm::kmap::revoke_domain(DOMAIN);
    crate::pci::revoke_domain(DOMAIN);
    let next = io::claim_legacy(io::Legacy::Com2).map_err(|e| format!("COM2 after revocation: {e}"))?;
    next.write::<u8>(7, 0xa5).map_err(|e| format!("{e}"))?;
    ensure!(ports.write::<u8>(7, 0x5a) == Err(io::IoPortError::Revoked), "a revoked port handle still writes");
    ensure!(ports.read::<u8>(7) == Err(io::IoPortError::Revoked), "a revoked port handle still reads");
    ensure!(next.read::<u8>(7).is_ok(), "the new owner cannot read its ports");
    let again = crate::pci::PciDevice::claim(device.info().address).map_err(|e| format!("PCI after revocation: {e}"))?;
    let command = again.read_config(4).map_err(|e| format!("{e}"))? & 0xffff;
    ensure!(matches!(device.enable(true), Err(crate::pci::PciError::Revoked(_))), "a revoked PCI handle still enables");
    ensure!(again.read_config(4).map_err(|e| format!("{e}"))? & 0xffff == command, "the command register changed through a revoked handle");
    ensure!(matches!(device.read_config(0), Err(crate::pci::PciError::Revoked(_))), "a revoked PCI handle still reads configuration space");
    ensure!(matches!(device.config_space(), Err(crate::pci::PciError::Revoked(_))), "a revoked PCI handle still reads its configuration header");
    ensure!(matches!(device.dma_buffer(4096), Err(crate::pci::PciError::Revoked(_))), "a revoked PCI handle still makes DMA buffers");
    ensure!(matches!(device.io_ports(0), Err(crate::pci::PciError::Revoked(_))), "a revoked PCI handle still hands out BARs");
    Ok(())
}

/// `PciDevice::take_over` is all or nothing: a refusal (too few slots, a
/// buffer not left, a BAR without ports, a function still claimed) takes
/// nothing and leaves what waited as it was, kept for the next try; a
/// take-over that succeeds hands the kept buffers over unzeroed, with the
/// BAR's ports. Run on a function nobody drives that has an I/O BAR.
fn pci_take_over_is_all_or_nothing() -> Result<(), String> {
    use crate::pci::{HandoverWindow, PciDevice, PciError};
    use framekernel_logic::pci::Bar;
    let Some((address, bar, ports_len)) = crate::pci::devices().iter().find_map(|d| {
        let (bar, len) = d.bars.iter().enumerate().find_map(|(i, b)| match *b {
            Bar::Io { size, .. } => Some((i, size)),
            _ => None,
        })?;
        // Nobody's: a claim of it succeeds (and ends at once).
        PciDevice::claim(d.address).ok().map(|_| (d.address, bar, len))
    }) else {
        // q35 has its SATA and SMBus functions; QEMU's pc its IDE.
        return Err("no function nobody drives has I/O ports".into());
    };
    let e = |e: PciError| format!("{e}");
    let start = mm::frame_stats().free;
    let window = HandoverWindow::open();
    let first = PciDevice::claim(address).map_err(e)?;
    let ring = first.dma_buffer(2 * 4096).map_err(e)?;
    let request = first.dma_buffer(4096).map_err(e)?;
    ring.write::<u64>(8, 0x7a4e).map_err(|e| format!("{e}"))?;
    let (ring_at, request_at) = (ring.phys_addr(), request.phys_addr());
    drop((ring, request, first));
    ensure!(crate::pci::lingering() == 1, "the first claim did not linger");
    let kept = [(ring_at, 2 * 4096), (request_at, 4096)];
    let waiting = || mm::frame_stats().free == start - 3 && crate::pci::lingering() == 1;
    // Refusals take nothing.
    let mut one = [None];
    ensure!(matches!(PciDevice::take_over(address, &kept, &mut one, bar), Err(PciError::NoKeptBuffer { .. })), "too few slots accepted");
    ensure!(one[0].is_none() && waiting(), "a refusal for too few slots took something");
    let mut slots = [None, None];
    let wrong = [(ring_at, 2 * 4096), (request_at + 4096, 4096)];
    ensure!(matches!(PciDevice::take_over(address, &wrong, &mut slots, bar), Err(PciError::NoKeptBuffer { .. })), "a buffer never left was handed out");
    ensure!(slots.iter().all(Option::is_none) && waiting(), "a refused take-over kept what it took");
    ensure!(matches!(PciDevice::take_over(address, &kept, &mut slots, 6), Err(PciError::NoSuchBar { .. })), "a BAR that does not exist gave ports");
    ensure!(slots.iter().all(Option::is_none) && waiting(), "a take-over refused for its ports kept what it took");
    // What waited is still there for a take-over that succeeds.
    let (device, ports) = PciDevice::take_over(address, &kept, &mut slots, bar).map_err(e)?;
    ensure!(crate::pci::lingering() == 0, "the take-over did not end the lingering claim");
    ensure!(ports.len() == ports_len, "ports of {} bytes for a BAR of {ports_len}", ports.len());
    let [Some(ring), Some(request)] = &slots else {
        return Err("the take-over left a slot empty".into());
    };
    ensure!(ring.phys_addr() == ring_at && request.phys_addr() == request_at, "the buffers were not those left");
    ensure!(ring.read::<u64>(8) == Ok(0x7a4e), "a kept buffer lost its contents");
    let mut again = [None, None];
    ensure!(matches!(PciDevice::take_over(address, &kept, &mut again, bar), Err(PciError::Busy(_))), "a claimed function taken over");
    ensure!(again.iter().all(Option::is_none), "a refused take-over filled a slot");
    drop((slots, ports, device));
    drop(window);
    ensure!(crate::pci::lingering() == 0 && mm::frame_stats().free == start, "closing the window kept the DMA frames");
    Ok(())
}

/// A claim that ends while a handover window is open lingers: bus
/// mastering stays on and the function's dropped DMA frames stay out of
/// use; the next claim takes it over (the frames reusable, in place and
/// unzeroed only when asked for exactly, and never after a fault),
/// buffers of the earlier claim dropped later still wait for the function
/// to stop, a revoked earlier handle cannot end the new claim, closing
/// the window settles what nobody took over, and a revocation outside a
/// window turns bus mastering off at once.
fn pci_claims_linger_in_a_handover_window() -> Result<(), String> {
    use crate::pci::{HandoverWindow, PciDevice, PciError};
    const DOMAIN: u64 = u64::MAX - 9;
    let address = crate::pci::devices().first().map(|d| d.address).ok_or("no PCI function")?;
    let e = |e: PciError| format!("{e}");
    let kept_refused = |r: Result<mm::DmaBuffer, PciError>| matches!(r, Err(PciError::NoKeptBuffer { .. }));
    let start = mm::frame_stats().free;
    let window = HandoverWindow::open();
    // A first driver lets go with the window open.
    let first = PciDevice::claim(address).map_err(e)?;
    let ring = first.dma_buffer(2 * 4096).map_err(e)?;
    let late = first.dma_buffer(4096).map_err(e)?;
    ring.write::<u64>(8, 0x5eed).map_err(|e| format!("{e}"))?;
    let ring_at = ring.phys_addr();
    drop(ring);
    drop(first);
    ensure!(crate::pci::lingering() == 1, "{} functions linger after a release in a window", crate::pci::lingering());
    ensure!(mm::frame_stats().free == start - 3, "DMA frames of a lingering function went back");
    crate::pci::settle();
    ensure!(crate::pci::lingering() == 1, "settle ended a claim while a window was open");
    let second = PciDevice::claim(address).map_err(e)?;
    ensure!(crate::pci::lingering() == 0, "the new claim did not take the lingering one over");
    ensure!(kept_refused(second.dma_buffer_kept(ring_at + 4096, 4096)), "a kept buffer of another place was handed out");
    let kept = second.dma_buffer_kept(ring_at, 2 * 4096).map_err(e)?;
    ensure!(kept.read::<u64>(8) == Ok(0x5eed), "a kept buffer lost its contents");
    ensure!(kept_refused(second.dma_buffer_kept(ring_at, 2 * 4096)), "one kept buffer handed out twice");
    drop(kept);
    let reused = second.dma_buffer(2 * 4096).map_err(e)?;
    ensure!(reused.phys_addr() == ring_at, "dropped frames of the function were not reused");
    ensure!(reused.read::<u64>(8) == Ok(0), "a reused buffer was not zeroed");
    // A buffer of the first claim dropped now still waits for the device.
    drop(late);
    drop(reused);
    ensure!(mm::frame_stats().free == start - 3, "DMA frames went back while the function could write them");
    drop(second);
    ensure!(crate::pci::lingering() == 1 && mm::frame_stats().free == start - 3, "the second claim did not linger");
    // A driver in a fault domain faults: its claim lingers too (the window
    // is open), its handle is inert, and what it left is not kept for the
    // next one.
    let (third, secret_at) = crate::cell::enter(DOMAIN, (0, 0), core::ptr::null(), || {
        let device = PciDevice::claim(address)?;
        let secret = device.dma_buffer(4096)?;
        secret.write::<u64>(0, 0x5ec2e7).map_err(|_| PciError::NoMemory)?;
        Ok::<_, PciError>((device, secret.phys_addr()))
    })
    .map_err(|f| format!("{f}"))?
    .map_err(e)?;
    crate::pci::revoke_domain(DOMAIN);
    ensure!(third.read_config(0).is_err(), "a revoked handle still reads");
    let fourth = PciDevice::claim(address).map_err(e)?;
    drop(third); // the revoked handle: must not end the new claim
    ensure!(fourth.read_config(0).is_ok(), "dropping a revoked handle ended the claim that took over");
    ensure!(kept_refused(fourth.dma_buffer_kept(secret_at, 4096)), "a faulted driver's buffer was kept for the next claim");
    let zeroed = fourth.dma_buffer(4096).map_err(e)?;
    ensure!(zeroed.read::<u64>(0) == Ok(0), "a faulted driver's buffer was reused unzeroed");
    drop(zeroed);
    drop(fourth);
    drop(window);
    ensure!(crate::pci::lingering() == 0, "closing the last window left a function lingering");
    ensure!(mm::frame_stats().free == start, "settling kept the DMA frames");
    // Outside a window, a revocation ends the claim at once.
    let fifth = crate::cell::enter(DOMAIN, (0, 0), core::ptr::null(), || {
        let device = PciDevice::claim(address)?;
        drop(device.dma_buffer(4096)?);
        Ok::<_, PciError>(device)
    })
    .map_err(|f| format!("{f}"))?
    .map_err(e)?;
    crate::pci::revoke_domain(DOMAIN);
    ensure!(crate::pci::lingering() == 0 && mm::frame_stats().free == start, "a revocation outside a window lingered");
    drop(fifth);
    Ok(())
}

/// The trusted base's own tests.
pub const BASE_TESTS: &[SelfTest] = &[
    SelfTest { name: "frames_alloc_write_free", run: frames_alloc_write_free },
    SelfTest { name: "clock_page_agrees_with_the_kernel_clock", run: clock_page_agrees_with_the_kernel_clock },
    SelfTest { name: "frame_bounds_checked", run: frame_bounds_checked },
    SelfTest { name: "memset_memcpy_and_frame_copies_are_exact", run: memset_memcpy_and_frame_copies_are_exact },
    SelfTest { name: "heap_grows_and_shrinks", run: heap_grows_and_shrinks },
    SelfTest { name: "mapped_area_aliases_frames", run: mapped_area_aliases_frames },
    SelfTest { name: "kernel_image_is_w_xor_x", run: kernel_image_is_w_xor_x },
    SelfTest { name: "breakpoint_resumes", run: breakpoint_resumes },
    SelfTest { name: "timer_ticks_and_callbacks", run: timer_ticks_and_callbacks },
    SelfTest { name: "clock_agrees_with_timer", run: clock_agrees_with_timer },
    SelfTest { name: "io_ports_guarded", run: io_ports_guarded },
    SelfTest { name: "irq_registration_rtc", run: irq_registration_rtc },
    SelfTest { name: "irq_oneshot_lines_wait_for_unmask", run: irq_oneshot_lines_wait_for_unmask },
    SelfTest { name: "iomem_guarded_and_reads_hpet", run: iomem_guarded_and_reads_hpet },
    SelfTest { name: "spinlock_masks_interrupts", run: spinlock_masks_interrupts },
    SelfTest { name: "watchdog_nmis_arrive", run: watchdog_nmis_arrive },
    SelfTest { name: "processors_take_nmis_on_their_own_stacks", run: processors_take_nmis_on_their_own_stacks },
    SelfTest { name: "kernel_unmaps_reach_every_processor", run: kernel_unmaps_reach_every_processor },
    SelfTest { name: "pci_writes_hold_the_other_processors", run: pci_writes_hold_the_other_processors },
    SelfTest { name: "redteam_dma_frames_wait_for_bus_mastering_off", run: dma_frames_wait_for_bus_mastering_off },
    SelfTest { name: "pci_claims_linger_in_a_handover_window", run: pci_claims_linger_in_a_handover_window },
    SelfTest { name: "pci_take_over_is_all_or_nothing", run: pci_take_over_is_all_or_nothing },
    SelfTest { name: "user_syscalls_and_fpu_state", run: user::syscalls_and_fpu_state_round_trip },
    SelfTest { name: "user_faults_become_traps", run: user::user_faults_become_traps },
    SelfTest { name: "user_loop_is_interrupted", run: user::timer_interrupts_user_loop },
    SelfTest { name: "redteam_user_ac_flag_cleared", run: user::user_alignment_flag_does_not_reach_the_kernel },
    SelfTest { name: "redteam_user_mxcsr_sanitized", run: user::user_fpu_image_is_sanitized },
    SelfTest { name: "lazy_fpu_keeps_each_contexts_state", run: user::lazy_fpu_keeps_each_contexts_state },
    SelfTest { name: "redteam_fpu_state_follows_a_context_across_tasks", run: user::fpu_state_follows_a_context_across_tasks },
    SelfTest { name: "redteam_single_step_after_a_syscall_makes_progress", run: user::single_step_after_a_syscall_makes_progress },
    SelfTest { name: "redteam_switch_in_interrupt_refused", run: user::task_switch_in_interrupt_is_refused },
    SelfTest { name: "current_names_the_running_task", run: user::current_names_the_running_task },
    SelfTest { name: "redteam_user_run_in_interrupt_refused", run: user::user_run_in_interrupt_is_refused },
    SelfTest { name: "redteam_revoked_handles_are_inert", run: revoked_handles_are_inert },
    SelfTest { name: "user_copy_reports_faults", run: user::user_copy_reports_faults },
    SelfTest { name: "redteam_user_copy_small_exhaustive", run: user::redteam_user_copy_small_exhaustive },
    SelfTest { name: "address_space_bookkeeping", run: user::address_space_bookkeeping },
    SelfTest { name: "address_space_records_and_fork_sharing", run: user::address_space_records_and_fork_sharing },
    SelfTest { name: "address_space_model_fuzz", run: vm_model::address_space_model_fuzz },
    SelfTest { name: "symbols_resolve_both_ways", run: symbols_resolve_both_ways },
];

fn symbols_resolve_both_ways() -> Result<(), String> {
    ensure!(crate::symbols::available(), "kernel symbols not loaded");
    let addr = frames_alloc_write_free as fn() -> Result<(), String> as usize as u64;
    let sym = crate::symbols::lookup(addr + 1).ok_or("no symbol for a kernel function")?;
    ensure!(sym.start == addr && sym.offset == 1, "lookup gave {:#x}+{:#x}", sym.start, sym.offset);
    ensure!(crate::symbols::address_of(sym.name) == Some(addr), "address_of({}) disagrees", sym.name);
    ensure!(crate::symbols::address_of("framekernel_entry").is_some(), "framekernel_entry not found by name");
    ensure!(crate::symbols::address_of("no such symbol").is_none(), "a made-up name resolved");
    Ok(())
}

fn frames_alloc_write_free() -> Result<(), String> {
    let before = mm::frame_stats().free;
    let mut a = Frame::alloc().map_err(|e| format!("{e}"))?;
    let b = Frame::alloc().map_err(|e| format!("{e}"))?;
    ensure!(a.phys_addr() != b.phys_addr(), "two frames share {:#x}", a.phys_addr());
    ensure!(a.phys_addr() % 4096 == 0, "frame {:#x} not page aligned", a.phys_addr());
    ensure!(mm::frame_stats().free == before - 2, "free count did not drop by 2");
    let mut zero = [1u8; 64];
    b.read_bytes(4000, &mut zero[..96 - 64]).map_err(|e| format!("{e:?}"))?;
    ensure!(zero[..32].iter().all(|&x| x == 0), "new frame not zeroed");
    a.write_bytes(100, b"tessera").map_err(|e| format!("{e:?}"))?;
    let mut back = [0u8; 7];
    a.read_bytes(100, &mut back).map_err(|e| format!("{e:?}"))?;
    ensure!(&back == b"tessera", "read back {back:?}");
    drop((a, b));
    ensure!(mm::frame_stats().free == before, "frames not returned on drop");
    Ok(())
}

fn frame_bounds_checked() -> Result<(), String> {
    let mut f = Frame::alloc().map_err(|e| format!("{e}"))?;
    ensure!(f.write_bytes(4090, &[0; 7]).is_err(), "write past the end accepted");
    ensure!(f.read_bytes(usize::MAX, &mut [0; 2]).is_err(), "overflowing offset accepted");
    ensure!(f.write_bytes(4089, &[0; 7]).is_ok(), "write ending at the last byte refused");
    Ok(())
}

/// The kernel's own `memset`/`memcpy` (arch/mem.rs: 64-byte blocks, then
/// words, then bytes) and the frames' block copies, at every length up to
/// 300 and every alignment of both ends: each byte inside the range is
/// right, none outside it is touched.
fn memset_memcpy_and_frame_copies_are_exact() -> Result<(), String> {
    use core::hint::black_box;
    const GUARD: usize = 16;
    let pattern = |i: usize| (i.wrapping_mul(31) ^ 0x5a) as u8;
    for len in 0..300usize {
        for offset in 0..8usize {
            let mut buf = [0xeeu8; 300 + 2 * GUARD + 8];
            let start = GUARD + offset;
            // SAFETY: `start + len` is within `buf` (at most 16 + 7 + 299).
            unsafe { core::ptr::write_bytes(buf.as_mut_ptr().add(black_box(start)), black_box(0x3c), black_box(len)) };
            for (i, &b) in buf.iter().enumerate() {
                let want = if (start..start + len).contains(&i) { 0x3c } else { 0xee };
                ensure!(b == want, "memset of {len} bytes at offset {offset}: byte {i} is {b:#x}, not {want:#x}");
            }
            let src: Vec<u8> = (0..len + 8).map(pattern).collect();
            let mut dst = [0xeeu8; 300 + 2 * GUARD + 8];
            let from = (offset * 3) % 8;
            // SAFETY: `src` holds `from + len` bytes (from < 8); `dst` as above;
            // distinct buffers.
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr().add(black_box(from)), dst.as_mut_ptr().add(black_box(start)), black_box(len)) };
            for (i, &b) in dst.iter().enumerate() {
                let want = if (start..start + len).contains(&i) { pattern(i - start + from) } else { 0xee };
                ensure!(b == want, "memcpy of {len} bytes ({from} -> {offset}): byte {i} is {b:#x}, not {want:#x}");
            }
        }
    }
    let mut frame = Frame::alloc().map_err(|e| format!("{e}"))?;
    let whole: Vec<u8> = (0..4096).map(pattern).collect();
    frame.write_bytes(0, &whole).map_err(|e| format!("{e:?}"))?;
    let copy = Frame::copy_of(&frame).map_err(|e| format!("{e}"))?;
    let mut back = alloc::vec![0u8; 4096];
    copy.read_bytes(0, &mut back).map_err(|e| format!("{e:?}"))?;
    ensure!(back == whole, "Frame::copy_of differs from its original");
    for (offset, len) in [(0usize, 4096usize), (1, 4095), (7, 64), (63, 65), (100, 129), (4033, 63)] {
        let mut part = alloc::vec![0xeeu8; len + 2];
        copy.read_bytes(offset, &mut part[1..=len]).map_err(|e| format!("{e:?}"))?;
        ensure!(part[0] == 0xee && part[len + 1] == 0xee, "a read of {len} bytes at {offset} wrote outside its buffer");
        ensure!(part[1..=len] == whole[offset..offset + len], "a read of {len} bytes at {offset} differs");
    }
    Ok(())
}

fn heap_grows_and_shrinks() -> Result<(), String> {
    let before = mm::heap_stats();
    // Larger than the initial heap: forces a grow from the frame allocator.
    let big: Vec<u8> = alloc::vec![0xa5; 6 << 20];
    let during = mm::heap_stats();
    ensure!(big.iter().step_by(4096).all(|&b| b == 0xa5), "heap memory lost its contents");
    ensure!(during.claimed > before.claimed, "heap did not grow ({} bytes claimed)", during.claimed);
    // The other processors' tasks allocate and free too (KiBs at boot):
    // the figures are the whole heap's, so 1 MiB of slack either way.
    const SLACK: u64 = 1 << 20;
    ensure!(during.in_use + SLACK >= before.in_use + (6 << 20), "in-use figure did not count the allocation");
    drop(big);
    let after = mm::heap_stats();
    ensure!(after.in_use + (6 << 20) <= during.in_use + SLACK, "in-use figure did not drop after free");
    let boxed = alloc::boxed::Box::new([7u64; 512]);
    ensure!(boxed.iter().all(|&x| x == 7), "boxed array corrupted");
    Ok(())
}

fn mapped_area_aliases_frames() -> Result<(), String> {
    let frames: Vec<Frame> = (0..3).map(|_| Frame::alloc()).collect::<Result<_, _>>().map_err(|e| format!("{e}"))?;
    let phys: Vec<u64> = frames.iter().map(Frame::phys_addr).collect();
    let mut area = MappedArea::new(frames).map_err(|e| format!("{e}"))?;
    ensure!(area.len() == 3 * 4096, "length {}", area.len());
    let virt = area.virt_addr();
    area.as_mut_slice()[4096 + 5] = 0x42;
    let info = mm::query(virt + 4096 + 5).ok_or("mapped page not in the page tables")?;
    ensure!(info.phys == phys[1] + 5, "virtual {virt:#x} maps to {:#x}, expected {:#x}", info.phys, phys[1] + 5);
    ensure!(info.writable && !info.executable && !info.user, "wrong flags {info:?}");
    ensure!(area.as_slice()[4096 + 5] == 0x42, "write through the mapping lost");
    drop(area);
    ensure!(mm::query(virt).is_none(), "page still mapped after drop");
    Ok(())
}

fn kernel_image_is_w_xor_x() -> Result<(), String> {
    let code = mm::query(kernel_image_is_w_xor_x as *const () as u64).ok_or("kernel code not mapped")?;
    ensure!(code.executable && !code.writable, "code page flags {code:?}");
    let rodata = mm::query(BASE_TESTS.as_ptr() as u64).ok_or("rodata not mapped")?;
    ensure!(!rodata.executable && !rodata.writable, "rodata page flags {rodata:?}");
    static DATA: AtomicU64 = AtomicU64::new(0);
    let data = mm::query(&DATA as *const AtomicU64 as u64).ok_or("data not mapped")?;
    ensure!(!data.executable && data.writable, "data page flags {data:?}");
    ensure!(mm::query(0).is_none(), "page 0 is mapped");
    ensure!(mm::query(mm::image::stack_guard()).is_none(), "stack guard page is mapped");
    let direct = mm::query(framekernel_logic::layout::DIRECT_MAP_BASE + 0x100000).ok_or("direct map missing")?;
    ensure!(!direct.executable, "direct map is executable");
    Ok(())
}

fn breakpoint_resumes() -> Result<(), String> {
    let before = arch::exception::breakpoint_count();
    x86_64::instructions::interrupts::int3();
    x86_64::instructions::interrupts::int3();
    let after = arch::exception::breakpoint_count();
    ensure!(after == before + 2, "breakpoints counted {before} -> {after}");
    Ok(())
}

static TICK_SEEN: AtomicU64 = AtomicU64::new(0);

fn count_tick(_tick: u64) {
    TICK_SEEN.fetch_add(1, Ordering::Relaxed);
}

fn timer_ticks_and_callbacks() -> Result<(), String> {
    ensure!(arch::interrupts_enabled(), "interrupts are off");
    TICK_SEEN.store(0, Ordering::Relaxed);
    time::on_tick(count_tick).map_err(|e| format!("{e:?}"))?;
    let start = time::ticks();
    // Until five ticks came (a busy host can stall this processor for
    // longer than any fixed sleep: the count, not the time, is checked).
    let ticked = wait_while_running(Duration::from_secs(10), || time::ticks() - start >= 5);
    let elapsed = time::ticks() - start;
    time::remove_tick_callback(count_tick).map_err(|e| format!("{e:?}"))?;
    let seen = TICK_SEEN.load(Ordering::Relaxed);
    ensure!(ticked, "only {elapsed} ticks in 10 s of running");
    ensure!(seen >= 5 && seen <= elapsed + 1, "callback saw {seen} of {elapsed} ticks");
    let after = TICK_SEEN.load(Ordering::Relaxed);
    let removed = time::ticks();
    wait_while_running(Duration::from_secs(10), || time::ticks() - removed >= 3);
    ensure!(TICK_SEEN.load(Ordering::Relaxed) == after, "callback still called after removal");
    ensure!(time::remove_tick_callback(count_tick).is_err(), "removing twice succeeded");
    Ok(())
}

/// The clock keeps the HPET's time (within 2%: the boot's calibration
/// brackets its readings as this test does), and the timer's ticks are never
/// early by it. (Late or lost ticks are not checked: a host that stalls
/// this processor loses them, as it may.) The HPET's main counter runs on
/// its own, so a stall cannot skew the comparison.
fn clock_agrees_with_timer() -> Result<(), String> {
    const HPET: u64 = 0xfed0_0000;
    let hpet = IoMem::acquire(HPET, 0x400).map_err(|e| format!("{e}"))?;
    let caps = hpet.read::<u64>(0).map_err(|e| format!("{e}"))?;
    let period_fs = caps >> 32;
    ensure!(period_fs > 0 && period_fs <= 100_000_000, "HPET period {period_fs} fs");
    let config = hpet.read::<u64>(0x10).map_err(|e| format!("{e}"))?;
    hpet.write::<u64>(0x10, config | 1).map_err(|e| format!("{e}"))?; // the main counter runs
    let counter = || hpet.read::<u64>(0xf0).map_err(|e| format!("{e}"));
    // Each clock reading lies between two counter readings: a stall
    // between them widens the bracket, it cannot fail the check.
    let bracket = || -> Result<(u64, core::time::Duration, u64), String> { Ok((counter()?, time::now(), counter()?)) };
    let ((h0a, t0, h0b), k0) = (bracket()?, time::ticks());
    while time::ticks() < k0 + 50 {
        arch::wait_for_interrupt();
    }
    let ((h1a, t1, h1b), k1) = (bracket()?, time::ticks());
    hpet.write::<u64>(0x10, config).map_err(|e| format!("{e}"))?;
    let hpet_us = |ticks: u64| u64::try_from(u128::from(ticks) * u128::from(period_fs) / 1_000_000_000).unwrap_or(u64::MAX);
    let (shortest, longest) = (hpet_us(h1a.wrapping_sub(h0b)), hpet_us(h1b.wrapping_sub(h0a)));
    let clock_us = (t1 - t0).as_micros() as u64;
    let tick_us = (k1 - k0) * 1_000_000 / u64::from(time::TICK_HZ);
    ensure!(
        clock_us * 50 >= shortest * 49 && clock_us * 50 <= longest * 51,
        "clock {clock_us} us, HPET between {shortest} and {longest} us"
    );
    ensure!(tick_us <= clock_us + clock_us / 10 + 1000, "timer {tick_us} us ahead of the clock's {clock_us} us");
    let a = time::now_ns();
    let b = time::now_ns();
    ensure!(b >= a, "clock went backwards");
    ensure!(time::tsc_hz() >= 1_000_000, "TSC frequency {} Hz", time::tsc_hz());
    Ok(())
}

/// The clock page says what the kernel's clock says: a time computed
/// from it as the vDSO does lies between two kernel readings around it,
/// for the monotonic and the realtime clock, also after the realtime
/// clock is set (and put back); `rdtscp` gives this processor's index.
fn clock_page_agrees_with_the_kernel_clock() -> Result<(), String> {
    let page = time::clock_page().map_err(|e| format!("{e:?}"))?;
    let read = |realtime: bool| -> Result<u64, String> {
        let mut raw = [0u8; 40];
        page.read_bytes(0, &mut raw).map_err(|e| format!("{e:?}"))?;
        let word = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
        let (seq, flags) = (u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]), raw[4]);
        ensure!(seq % 2 == 0, "clock page sequence {seq} odd with nobody writing");
        ensure!(flags & 1 == 1, "clock page not marked calibrated (flags {flags:#x})");
        let delta = arch::rdtsc().saturating_sub(word(8));
        let ns = ((u128::from(delta) * u128::from(word(16))) >> word(24)) as u64;
        Ok(if realtime { ns + word(32) } else { ns })
    };
    for realtime in [false, true] {
        let clock = || if realtime { time::realtime_ns() } else { time::now_ns() };
        let before = clock();
        let got = read(realtime)?;
        let after = clock();
        ensure!(before <= got && got <= after, "clock page ({realtime}) says {got}, kernel {before}..{after}");
    }
    let wall = time::realtime_ns();
    time::set_realtime_ns(wall + 3_600_000_000_000);
    let moved = read(true)?;
    time::set_realtime_ns(time::realtime_ns() - 3_600_000_000_000);
    ensure!(moved >= wall + 3_600_000_000_000, "clock page did not follow set_realtime_ns");
    if arch::cpu::features().rdtscp {
        // Interrupts off: the task stays on this processor in between.
        let (aux, here) = arch::without_interrupts(|| {
            let aux: u32;
            // SAFETY: the processor has RDTSCP (the feature flag); the
            // instruction only reads the TSC and IA32_TSC_AUX.
            unsafe { core::arch::asm!("rdtscp", out("eax") _, out("edx") _, out("ecx") aux, options(nomem, nostack)) };
            (aux, crate::cpu::current_index())
        });
        ensure!(aux as usize == here, "rdtscp says processor {aux}, running on {here}");
    }
    Ok(())
}

fn io_ports_guarded() -> Result<(), String> {
    ensure!(matches!(io::IoPorts::acquire(0x20, 2), Err(io::IoPortError::Reserved { .. })), "PIC ports handed out");
    ensure!(matches!(io::IoPorts::acquire(0x3f0, 16), Err(io::IoPortError::Reserved { .. })), "COM1 overlap handed out");
    ensure!(io::IoPorts::acquire(0xffff, 2).is_err(), "range past 0xffff accepted");
    ensure!(io::IoPorts::acquire(0x70, 0).is_err(), "empty range accepted");
    let cmos = io::IoPorts::acquire(0x70, 2).map_err(|e| format!("{e}"))?;
    ensure!(matches!(io::IoPorts::acquire(0x71, 1), Err(io::IoPortError::Busy { .. })), "port acquired twice");
    ensure!(cmos.read::<u8>(2).is_err(), "read outside the range accepted");
    // An absent device reads all ones; the RTC's status register B never does.
    let status_b = cmos_read(&cmos, 0x0b)?;
    ensure!(status_b != 0xff, "CMOS absent (status B {status_b:#x})");
    drop(cmos);
    ensure!(io::IoPorts::acquire(0x70, 2).is_ok(), "ports not released on drop");
    Ok(())
}

static RTC_IRQS: AtomicU64 = AtomicU64::new(0);

fn rtc_interrupt() {
    RTC_IRQS.fetch_add(1, Ordering::Relaxed);
    // Reading status register C acknowledges the RTC interrupt.
    if let Ok(cmos) = io::IoPorts::acquire(0x70, 2) {
        let _ = cmos.write::<u8>(0, 0x0c);
        let _ = cmos.read::<u8>(1);
    }
}

fn cmos_write(cmos: &io::IoPorts, reg: u8, value: u8) -> Result<(), String> {
    cmos.write::<u8>(0, 0x80 | reg).map_err(|e| format!("{e}"))?; // bit 7: keep NMI off while selecting
    cmos.write::<u8>(1, value).map_err(|e| format!("{e}"))
}

fn cmos_read(cmos: &io::IoPorts, reg: u8) -> Result<u8, String> {
    cmos.write::<u8>(0, 0x80 | reg).map_err(|e| format!("{e}"))?;
    cmos.read::<u8>(1).map_err(|e| format!("{e}"))
}

/// Turns the CMOS clock's periodic interrupt (1024 Hz) on or off, then
/// reads register C (acknowledging a pending interrupt).
/// Spins until `done()` is true or `limit` has passed twice over: by the
/// clock and by this processor's timer ticks (interrupts on). A host that
/// stops the guest for a while moves the clock but not the ticks, so a
/// deadline of the clock alone could pass while the guest did not run.
/// Returns `done()`.
fn wait_while_running(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = time::now() + limit;
    let ticks = (limit.as_millis() as u64).saturating_mul(u64::from(time::TICK_HZ)) / 1000;
    let first = time::ticks();
    while !done() {
        if time::now() >= end && time::ticks().saturating_sub(first) >= ticks {
            return done();
        }
        core::hint::spin_loop();
    }
    true
}

fn rtc_periodic(on: bool) -> Result<(), String> {
    arch::without_interrupts(|| {
        // The clock's interrupt handler, on another processor, holds the
        // ports for a moment each time it acknowledges: wait for them.
        let mut tries = 0u32;
        let cmos = loop {
            match io::IoPorts::acquire(0x70, 2) {
                Ok(cmos) => break cmos,
                Err(_) if tries < 1_000_000 => {
                    tries += 1;
                    core::hint::spin_loop();
                }
                Err(e) => return Err(format!("{e}")),
            }
        };
        let b = cmos_read(&cmos, 0x0b)?;
        cmos_write(&cmos, 0x0b, if on { b | 0x40 } else { b & !0x40 })?;
        cmos_read(&cmos, 0x0c)?;
        Ok(())
    })
}

fn irq_registration_rtc() -> Result<(), String> {
    ensure!(irq::register(0, rtc_interrupt) == Err(irq::IrqError::Reserved(0)), "timer line handed out");
    ensure!(irq::register(16, rtc_interrupt) == Err(irq::IrqError::InvalidLine(16)), "line 16 accepted");
    ensure!(irq::unregister(8) == Err(irq::IrqError::NotRegistered(8)), "unregistered line removed");
    RTC_IRQS.store(0, Ordering::Relaxed);
    irq::register(8, rtc_interrupt).map_err(|e| format!("{e}"))?;
    ensure!(irq::register(8, rtc_interrupt) == Err(irq::IrqError::Busy(8)), "line registered twice");
    // Program the RTC's periodic interrupt (1024 Hz) from a safe handle.
    arch::without_interrupts(|| -> Result<(), String> {
        let cmos = io::IoPorts::acquire(0x70, 2).map_err(|e| format!("{e}"))?;
        let b = cmos_read(&cmos, 0x0b)?;
        cmos_write(&cmos, 0x0b, b | 0x40)?;
        cmos_read(&cmos, 0x0c)?;
        Ok(())
    })?;
    // Until the handler ran three times (a busy host can stall this
    // processor for longer than any fixed sleep).
    let ran = wait_while_running(Duration::from_secs(10), || RTC_IRQS.load(Ordering::Relaxed) >= 3);
    arch::without_interrupts(|| -> Result<(), String> {
        let cmos = io::IoPorts::acquire(0x70, 2).map_err(|e| format!("{e}"))?;
        let b = cmos_read(&cmos, 0x0b)?;
        cmos_write(&cmos, 0x0b, b & !0x40)?;
        Ok(())
    })?;
    irq::unregister(8).map_err(|e| format!("{e}"))?;
    let seen = RTC_IRQS.load(Ordering::Relaxed);
    ensure!(ran, "RTC handler ran {seen} times in 10 s of running");
    ensure!(irq::count(8) >= seen, "IRQ 8 count {} below handler runs {seen}", irq::count(8));
    Ok(())
}

/// A test for the kernel's self-tests (which run once the other
/// processors are online): sends the RTC's line (8) to processor `cpu`
/// ([`irq::set_affinity`]), turns its periodic interrupt on until the
/// handler ran `count` times (at most 10 s), and checks that `cpu`'s
/// count for the line grew as much and no other processor's grew. (The
/// counts, taken as each interrupt arrives, are compared from after the
/// move: a handler of an earlier round still finishing elsewhere has
/// been counted already.) Fails
/// when the line is taken, the processor is not online or the I/O APIC
/// does not deliver lines.
pub fn rtc_interrupts_reach(cpu: usize, count: u64) -> Result<(), String> {
    irq::register(8, rtc_interrupt).map_err(|e| format!("{e}"))?;
    let result = (|| -> Result<(), String> {
        irq::set_affinity(8, cpu).map_err(|e| format!("line 8 to processor {cpu}: {e}"))?;
        let counts = || (0..crate::percpu::MAX_CPUS).map(|c| irq::count_on(8, c)).collect::<Vec<u64>>();
        let (runs, before) = (RTC_IRQS.load(Ordering::SeqCst), counts());
        rtc_periodic(true)?;
        let end = time::now() + Duration::from_secs(10);
        while RTC_IRQS.load(Ordering::SeqCst) - runs < count && time::now() < end {
            time::sleep(Duration::from_millis(1));
        }
        rtc_periodic(false)?;
        let ran = RTC_IRQS.load(Ordering::SeqCst) - runs;
        ensure!(ran >= count, "line 8 sent to processor {cpu} fired {ran} times in 10 s");
        let grew: Vec<u64> = counts().iter().zip(&before).map(|(after, before)| after - before).collect();
        let here = grew.get(cpu).copied().unwrap_or(0);
        ensure!(here >= ran, "processor {cpu}'s count for line 8 grew {here}, the handler ran {ran} times");
        let elsewhere = grew.iter().sum::<u64>() - here;
        ensure!(elsewhere == 0, "{elsewhere} of the interrupts sent to processor {cpu} arrived elsewhere (growth per processor {grew:?})");
        Ok(())
    })();
    let _ = rtc_periodic(false);
    irq::unregister(8).map_err(|e| format!("{e}"))?;
    result
}

/// What a line looks like, for a failure's message: its counts per
/// processor, its I/O APIC entry, the CMOS clock's registers B and A
/// (not C, whose reading acknowledges).
fn line_report(line: u8) -> String {
    let counts: Vec<u64> = (0..crate::percpu::MAX_CPUS).map(|cpu| irq::count_on(line, cpu)).collect();
    let entry = crate::arch::ioapic::entry(line);
    let cmos = arch::without_interrupts(|| {
        let cmos = io::IoPorts::acquire(0x70, 2).ok()?;
        Some((cmos_read(&cmos, 0x0b).ok()?, cmos_read(&cmos, 0x0a).ok()?))
    });
    format!("counts per processor {counts:?}, controller {:?}, I/O APIC entry {entry:#x?}, CMOS B and A {cmos:#x?}, spurious {}", irq::controller(), irq::spurious_count())
}

/// A line registered with `register_oneshot` stays masked after it fires
/// until its owner unmasks it (the RTC keeps interrupting: its handler
/// acknowledges each one); only such lines can be unmasked.
///
/// The line is masked as each interrupt is taken, before its handler
/// runs. QEMU's RTC raises its line at every period (1024 Hz) whether or
/// not the last one was acknowledged, so one more interrupt can already
/// be waiting in the processor's local APIC (which holds one per vector)
/// when the mask lands: at most two per unmask, however late the
/// processor takes them. Left unmasked, the 40 ms waits below would bring
/// about forty.
fn irq_oneshot_lines_wait_for_unmask() -> Result<(), String> {
    ensure!(irq::unmask(4) == Err(irq::IrqError::NotRegistered(4)), "the console's line unmasked");
    ensure!(irq::unmask(8) == Err(irq::IrqError::NotRegistered(8)), "an unregistered line unmasked");
    ensure!(irq::register_oneshot(2, rtc_interrupt) == Err(irq::IrqError::Reserved(2)), "the cascade handed out");
    RTC_IRQS.store(0, Ordering::Relaxed);
    irq::register_oneshot(8, rtc_interrupt).map_err(|e| format!("{e}"))?;
    let masked_now = || irq::controller() != irq::Controller::IoApic || crate::arch::ioapic::entry(8).is_some_and(|e| e & 1 << 16 != 0);
    let result = (|| -> Result<(), String> {
        rtc_periodic(true)?;
        ensure!(
            wait_while_running(Duration::from_secs(5), || RTC_IRQS.load(Ordering::Relaxed) > 0),
            "the RTC's line did not fire in 5 s ({})",
            line_report(8)
        );
        ensure!(masked_now(), "a one-shot line is not masked after it fired ({})", line_report(8));
        time::sleep(Duration::from_millis(40));
        let first = RTC_IRQS.load(Ordering::Relaxed);
        ensure!(first <= 2, "a one-shot line fired {first} times before it was unmasked ({})", line_report(8));
        // Acknowledge what the clock raised while the line was masked (an
        // edge then is dropped), as a driver would, so the next period
        // raises the line afresh.
        rtc_periodic(true)?;
        irq::unmask(8).map_err(|e| format!("{e}"))?;
        ensure!(
            wait_while_running(Duration::from_secs(5), || RTC_IRQS.load(Ordering::Relaxed) > first),
            "the line did not fire again after unmask ({})",
            line_report(8)
        );
        ensure!(masked_now(), "a one-shot line is not masked after it fired again ({})", line_report(8));
        time::sleep(Duration::from_millis(40));
        let total = RTC_IRQS.load(Ordering::Relaxed);
        ensure!(total <= 4, "the line fired {total} times in all for one unmask ({})", line_report(8));
        Ok(())
    })();
    rtc_periodic(false)?;
    irq::unregister(8).map_err(|e| format!("{e}"))?;
    ensure!(irq::unmask(8) == Err(irq::IrqError::NotRegistered(8)), "a line unmasked after its handler went");
    result
}

/// `IoMem` over the HPET (q35 has one at 0xfed00000): claims are
/// exclusive, bounds and alignment checked, released on drop; the local
/// APIC window, which the base keeps for its IPIs, is not handed out.
fn iomem_guarded_and_reads_hpet() -> Result<(), String> {
    const HPET: u64 = 0xfed0_0000;
    ensure!(matches!(IoMem::acquire(0x100000, 4096), Err(IoMemError::IsRam { .. })), "RAM handed out as MMIO");
    ensure!(matches!(IoMem::acquire(HPET, 0), Err(IoMemError::BadRange { .. })), "empty MMIO range accepted");
    ensure!(matches!(IoMem::acquire(0xfee0_0000, 4), Err(IoMemError::Busy { .. })), "the base's local APIC window handed out");
    let hpet = IoMem::acquire(HPET, 0x400).map_err(|e| format!("{e}"))?;
    ensure!(matches!(IoMem::acquire(HPET + 0x100, 4), Err(IoMemError::Busy { .. })), "MMIO acquired twice");
    ensure!(matches!(hpet.read::<u32>(0x400), Err(IoMemError::OutOfRange { .. })), "read past the end accepted");
    ensure!(matches!(hpet.read::<u32>(0x31), Err(IoMemError::Misaligned { .. })), "misaligned read accepted");
    // General capabilities: revision in bits 0..8 (non-zero), the counter
    // period in femtoseconds in the high half (at most 100 ns).
    let caps = hpet.read::<u64>(0).map_err(|e| format!("{e}"))?;
    ensure!(caps & 0xff != 0 && caps != u64::MAX, "HPET capabilities read {caps:#x}");
    let period = caps >> 32;
    ensure!(period > 0 && period <= 100_000_000, "HPET period {period} fs");
    drop(hpet);
    ensure!(IoMem::acquire(HPET, 4).is_ok(), "MMIO not released on drop");
    Ok(())
}

fn spinlock_masks_interrupts() -> Result<(), String> {
    let lock = crate::sync::SpinLock::new(5u32);
    ensure!(arch::interrupts_enabled(), "interrupts off before locking");
    {
        let mut guard = lock.lock();
        ensure!(!arch::interrupts_enabled(), "interrupts on while a SpinLock is held");
        *guard += 1;
        ensure!(lock.try_lock().is_none(), "try_lock took a held lock");
    }
    ensure!(arch::interrupts_enabled(), "interrupts not restored after unlock");
    ensure!(*lock.lock() == 6, "value lost");
    Ok(())
}
