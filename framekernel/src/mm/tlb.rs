//! TLB shootdown: after the base unmaps or restricts a page, no other
//! processor may keep a translation for it, or it could still reach a
//! frame that has been given to someone else.
//!
//! The processor that changed the tables flushes its own TLB, then asks
//! the others with an NMI and waits until each has answered. NMIs, not
//! ordinary interrupts: the others may be spinning on a lock with
//! interrupts off (possibly one the asker holds), and an NMI still gets
//! through, so two processors shooting at each other cannot deadlock.
//! One shootdown is in flight at a time (`LOCK`); its request is in the
//! statics below, numbered by `GENERATION`; each target's block records
//! the number of the last request aimed at it and of the last one it
//! carried out. Only targets carry a request out: every NMI (the cell
//! watchdog's too) looks for one, and a processor that was not asked must
//! not act on it later, when the PML4 it names may have been freed and
//! reused for the space that processor runs now (a request's
//! `LEAVE_ROOT` would then put it on the kernel's tables under user code,
//! which faults forever). A processor that does not
//! answer within `ANSWER_NS` is reported and the kernel stops: its TLB may
//! still map memory that is about to be reused.
//!
//! The NMI handler takes no lock: it reads the request, flushes, and, when
//! asked to leave an address space that is being dropped and its CR3 holds
//! it, loads the kernel's tables.
//!
//! The same request can also *hold* the others ([`with_others_held`]): each
//! answers, then waits inside its NMI handler, where no interrupt reaches
//! it and it touches no device memory, until the asker is done. The PCI
//! configuration writes use it; see there why.

use crate::percpu::{self, PerCpu};
use crate::sync::SpinLock;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel_logic::layout::PAGE_SIZE;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr4, Cr4Flags};

/// Pages above which a whole flush is cheaper than one `invlpg` each.
const MOST_PAGES: u64 = 64;
/// How long a processor has to answer.
const ANSWER_NS: u64 = 1_000_000_000;

static LOCK: SpinLock<()> = SpinLock::new(());
static GENERATION: AtomicU64 = AtomicU64::new(0);
static START: AtomicU64 = AtomicU64::new(0);
static PAGES: AtomicU64 = AtomicU64::new(0);
/// A PML4 the processors must stop using (0: none).
static LEAVE_ROOT: AtomicU64 = AtomicU64::new(0);
static SHOOTDOWNS: AtomicU64 = AtomicU64::new(0);
/// The request whose targets wait in their NMI handler until it is
/// cleared (0: none).
static HOLD: AtomicU64 = AtomicU64::new(0);
/// Requests that held the other processors.
static HOLDS: AtomicU64 = AtomicU64::new(0);

/// Shootdowns sent since boot (each to one or more processors).
pub fn shootdown_count() -> u64 {
    SHOOTDOWNS.load(Ordering::Relaxed)
}

/// The processors besides this one that are set up (they take NMIs).
pub(crate) fn other_processors() -> u64 {
    others_where(|_| true)
}

/// The processors besides this one whose CR3 holds `root`.
pub(crate) fn others_using(root: u64) -> u64 {
    others_where(|b| b.active_root.load(Ordering::SeqCst) == root)
}

/// A mask of the set-up processors besides this one that `wanted` picks.
fn others_where(wanted: impl Fn(&PerCpu) -> bool) -> u64 {
    let me = percpu::this_cpu().index();
    (0..percpu::MAX_CPUS)
        .filter(|&i| i != me && percpu::block(i).is_some_and(|b| b.ready.load(Ordering::Acquire) && wanted(b)))
        .fold(0, |mask, i| mask | 1 << i)
}

/// Makes the processors in `targets` (a mask of indices; this one is left
/// out) drop their translations for `pages` pages from `start`
/// (`u64::MAX` pages: all, global ones included), and, when `leave_root`
/// is non-zero, stop using that PML4. Returns once every one has done it.
pub(crate) fn shootdown(targets: u64, start: u64, pages: u64, leave_root: u64) {
    let targets = targets & !(1u64 << percpu::this_cpu().index());
    if targets == 0 {
        return;
    }
    let _one_at_a_time = LOCK.lock();
    request(targets, start, pages, leave_root, false);
}

/// Runs `f` while every other set-up processor waits in its NMI handler
/// (interrupts cannot reach it there, and it touches no device memory),
/// and returns its result once they have been let go.
///
/// For the PCI configuration writes: a write there can change where
/// device memory is (decoding on or off, BARs, bus mastering), and QEMU's
/// multi-threaded TCG up to 8.0 gives the other processors the new map
/// before it drops their TLBs (its `tcg_commit`; QEMU commit 0d58c660
/// "softmmu: Use async_run_on_cpu in tcg_commit", 8.1, fixed it). A
/// memory-mapped access they make in between, such as a local APIC EOI,
/// reaches whichever device now has that slot: QEMU then stops on an
/// assertion of that device (seen once as `msix_table_mmio_write`) or the
/// write lands in the wrong registers. Held processors make no such access,
/// and they drop their TLBs before running on. `f` must not wait for
/// another processor.
pub(crate) fn with_others_held<R>(f: impl FnOnce() -> R) -> R {
    let targets = other_processors();
    if targets == 0 {
        return f();
    }
    let _one_at_a_time = LOCK.lock();
    /// Lets the others go even if `f` unwinds.
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            HOLD.store(0, Ordering::Release);
        }
    }
    let _release = Release;
    request(targets, 0, 0, 0, true);
    HOLDS.fetch_add(1, Ordering::Relaxed);
    f()
}

/// Requests that held the other processors since boot.
pub(crate) fn hold_count() -> u64 {
    HOLDS.load(Ordering::Relaxed)
}

/// Sends a request to `targets` (not this processor) and waits until each
/// has carried it out; with `hold`, they wait on until `HOLD` is cleared.
/// The caller holds `LOCK`.
fn request(targets: u64, start: u64, pages: u64, leave_root: u64, hold: bool) {
    let me = percpu::this_cpu();
    START.store(start, Ordering::Relaxed);
    PAGES.store(pages, Ordering::Relaxed);
    LEAVE_ROOT.store(leave_root, Ordering::Relaxed);
    let generation = GENERATION.fetch_add(1, Ordering::SeqCst) + 1;
    HOLD.store(if hold { generation } else { 0 }, Ordering::SeqCst);
    me.tlb_ack.store(generation, Ordering::Relaxed); // nothing for this one to do
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
    let blocks = || (0..percpu::MAX_CPUS).filter(move |i| targets & (1 << i) != 0).filter_map(percpu::block);
    for block in blocks() {
        // Publishes the request's statics to this target (its handler
        // loads `tlb_want` with Acquire before reading them).
        block.tlb_want.store(generation, Ordering::Release);
    }
    for block in blocks() {
        if let Err(why) = crate::arch::lapic::send_nmi(block.apic_id.load(Ordering::Relaxed)) {
            unanswered(block, why);
        }
    }
    for block in blocks() {
        let deadline = crate::time::now_ns() + ANSWER_NS;
        while block.tlb_ack.load(Ordering::Acquire) < generation {
            if crate::time::now_ns() > deadline {
                unanswered(block, "no answer in 1 s");
            }
            core::hint::spin_loop();
        }
    }
}

fn unanswered(block: &PerCpu, why: &str) -> ! {
    crate::console::emergency_print(format_args!(
        "\n!!! processor {} (local APIC id {}) did not carry out a TLB shootdown ({why}); its TLB may still map memory about to be reused: stopping\n",
        block.index(),
        block.apic_id.load(Ordering::Relaxed)
    ));
    crate::arch::qemu::exit(crate::arch::qemu::ExitCode::Failure)
}

/// Called for every NMI: carries out a shootdown request aimed at this
/// processor that it has not done yet (the request stays put until every
/// target answered). Requests aimed at others are none of its business.
pub(crate) fn on_nmi() {
    let block = percpu::this_cpu();
    let generation = block.tlb_want.load(Ordering::Acquire);
    if block.tlb_ack.load(Ordering::Relaxed) >= generation || !block.ready.load(Ordering::Acquire) {
        return;
    }
    let (start, pages, leave_root) = (START.load(Ordering::Relaxed), PAGES.load(Ordering::Relaxed), LEAVE_ROOT.load(Ordering::Relaxed));
    let (frame, flags) = Cr3::read();
    if leave_root != 0 && frame.start_address().as_u64() == leave_root {
        let kernel = x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(super::paging::kernel_root()));
        // SAFETY: the kernel's PML4 is always valid to load (every space
        // shares its kernel half); the space being left is about to be
        // freed, so no code on this processor may use its lower half any
        // more (user copies into it fault and return an error).
        unsafe { Cr3::write(kernel, flags) };
        block.active_root.store(kernel.start_address().as_u64(), Ordering::SeqCst);
    }
    if pages > MOST_PAGES {
        flush_everything();
    } else {
        for i in 0..pages {
            x86_64::instructions::tlb::flush(VirtAddr::new_truncate(start.wrapping_add(i * PAGE_SIZE)));
        }
    }
    block.shootdowns.fetch_add(1, Ordering::Relaxed);
    block.tlb_ack.store(generation, Ordering::Release);
    // Held: wait here until the asker is done. Only a processor that has
    // just answered this request waits (never the asker, which marked it
    // done for itself), and NMIs do not nest, so nothing can wait on it.
    while HOLD.load(Ordering::Acquire) == generation {
        core::hint::spin_loop();
    }
}

/// Drops every translation, global ones too (toggling CR4.PGE).
fn flush_everything() {
    let cr4 = Cr4::read();
    if cr4.contains(Cr4Flags::PAGE_GLOBAL) {
        // SAFETY: clearing and restoring PGE changes no mapping; it only
        // invalidates the TLB, global entries included. Only the processor
        // itself writes its CR4, and not while it is set up (`ready`).
        unsafe {
            Cr4::write(cr4 - Cr4Flags::PAGE_GLOBAL);
            Cr4::write(cr4);
        }
    } else {
        x86_64::instructions::tlb::flush_all();
    }
}
