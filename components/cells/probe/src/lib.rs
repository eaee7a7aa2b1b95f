//! The probe cell: what the kernel's self-test loads to check the cell
//! loader and the boundary (see `tessera_cell_api::probe`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel::debug::{self, Fault};
use tessera_cell_api::probe::{Export, Failure, Probe};

/// Counts the calls it answers.
struct Counter {
    calls: AtomicU64,
    /// State that [`Failure::DropBomb`] leaves half-dropped.
    kept: framekernel::sync::Mutex<Option<(framekernel::mm::Frame, Bomb)>>,
}

/// Calls answered by every instance of this copy of the cell: a static,
/// which a restart after a fault must not inherit half-updated.
static SINCE_LINKING: AtomicU64 = AtomicU64::new(0);

/// A [`Failure::PanicHoldingLock`] call holds the lock; a
/// [`Probe::wait_for_lock`] call is about to wait for it.
static HOLDING: AtomicBool = AtomicBool::new(false);
static WAITING: AtomicBool = AtomicBool::new(false);
/// A [`Probe::claim_after_fault`] call runs; a [`Failure::PanicForLateClaimer`]
/// call is about to panic; the ports the late call claimed.
static LATE_CLAIMER: AtomicBool = AtomicBool::new(false);
static PANICKING: AtomicBool = AtomicBool::new(false);
static LATE_PORTS: framekernel::sync::Mutex<Option<framekernel::io::IoPorts>> = framekernel::sync::Mutex::new(None);

/// Spins until `flag` is set, 10 s at most (a guard, not a timing).
fn spin_until(flag: &AtomicBool) {
    let deadline = framekernel::time::now_ns() + 10_000_000_000;
    while !flag.load(Ordering::SeqCst) && framekernel::time::now_ns() < deadline {
        core::hint::spin_loop();
    }
}

/// Panics when dropped, naming the frame dropped just before it.
struct Bomb(u64);

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb went off right after freeing frame {:#x}", self.0);
    }
}

impl Probe for Counter {
    fn sum_to(&self, n: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let values: Vec<u64> = (0..n).collect();
        values.iter().sum()
    }

    fn describe(&self, n: u64) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let linked = SINCE_LINKING.fetch_add(1, Ordering::Relaxed) + 1;
        format!("probe cell: {n} is {n:#x}, {} calls so far, since linking {linked}", self.calls.load(Ordering::Relaxed))
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn claim_after_fault(&self, delay_ms: u64) -> u64 {
        LATE_CLAIMER.store(true, Ordering::SeqCst);
        spin_until(&PANICKING);
        let until = framekernel::time::now_ns() + delay_ms.min(10_000) * 1_000_000;
        while framekernel::time::now_ns() < until {
            core::hint::spin_loop();
        }
        match framekernel::io::claim_legacy(framekernel::io::Legacy::Com2) {
            Ok(ports) => {
                *LATE_PORTS.lock() = Some(ports);
                1
            }
            Err(_) => 0,
        }
    }

    fn wait_for_lock(&self) -> u64 {
        spin_until(&HOLDING);
        WAITING.store(true, Ordering::SeqCst);
        let _kept = self.kept.lock();
        self.calls.load(Ordering::Relaxed)
    }

    fn fail(&self, how: Failure) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        match how {
            Failure::Panic => panic!("probe cell asked to panic after {} calls", self.calls.load(Ordering::Relaxed)),
            Failure::OutOfBounds => {
                let table: Vec<u64> = (0..4).collect();
                let index = core::hint::black_box(self.calls.load(Ordering::Relaxed) as usize + 10);
                #[allow(clippy::indexing_slicing)] // the point: an out-of-bounds panic
                table[index]
            }
            Failure::PageFault => {
                debug::provoke(Fault::PageFault);
                0
            }
            Failure::InvalidOpcode => {
                debug::provoke(Fault::InvalidOpcode);
                0
            }
            Failure::Hang => loop {
                core::hint::spin_loop();
            },
            Failure::HangInterruptsOff => framekernel::arch::without_interrupts(|| loop {
                core::hint::spin_loop();
            }),
            Failure::DropBomb => {
                let Ok(frame) = framekernel::mm::Frame::alloc() else { return u64::MAX };
                let phys = frame.phys_addr();
                let mut kept = self.kept.lock();
                *kept = Some((frame, Bomb(phys)));
                // Frees the frame, then the bomb panics: `kept` still holds
                // both (the assignment never completes).
                *kept = None;
                0
            }
            Failure::PanicForLateClaimer => {
                spin_until(&LATE_CLAIMER);
                PANICKING.store(true, Ordering::SeqCst);
                panic!("probe cell panicked while a late claimer runs");
            }
            Failure::PanicHoldingLock => {
                let _kept = self.kept.lock();
                HOLDING.store(true, Ordering::SeqCst);
                spin_until(&WAITING);
                panic!("probe cell panicked holding its lock");
            }
        }
    }
}

/// The probe's object. The initfault build claims COM2's ports before it
/// fails (nothing uses them): a restart can claim them again only if the
/// fault's revocation released them.
fn make() -> Export {
    if cfg!(feature = "initfault") {
        let claim = framekernel::io::claim_legacy(framekernel::io::Legacy::Com2);
        match claim {
            Ok(_ports) => panic!("probe cell (initfault build) cannot start"),
            Err(e) => panic!("probe cell (initfault build): its earlier claim was not released: {e:?}"),
        }
    }
    Box::new(Counter { calls: AtomicU64::new(0), kept: framekernel::sync::Mutex::new(None) })
}

tessera_cell_api::cell_entry!(probe, make);
