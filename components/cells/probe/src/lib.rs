//! The probe cell: what the kernel's self-test loads to check the cell
//! loader and the boundary (see `tessera_cell_api::probe`).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel::debug::{self, Fault};
use tessera_cell_api::probe::{Export, Failure, Probe};

/// Counts the calls it answers.
struct Counter {
    calls: AtomicU64,
}

impl Probe for Counter {
    fn sum_to(&self, n: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let values: Vec<u64> = (0..n).collect();
        values.iter().sum()
    }

    fn describe(&self, n: u64) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        format!("probe cell: {n} is {n:#x}, {} calls so far", self.calls.load(Ordering::Relaxed))
    }

    fn calls(&self) -> u64 {
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
        }
    }
}

/// Ports the initfault build claims before it fails (nothing is there):
/// a restart can claim them again only if the fault released them.
const INITFAULT_PORTS: (u16, u16) = (0x0e80, 8);

fn make() -> Export {
    if cfg!(feature = "initfault") {
        let claim = framekernel::io::IoPorts::acquire(INITFAULT_PORTS.0, INITFAULT_PORTS.1);
        match claim {
            Ok(_ports) => panic!("probe cell (initfault build) cannot start"),
            Err(e) => panic!("probe cell (initfault build): its earlier claim was not released: {e:?}"),
        }
    }
    Box::new(Counter { calls: AtomicU64::new(0) })
}

tessera_cell_api::cell_entry!(probe, make);
