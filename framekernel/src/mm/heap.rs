//! The kernel heap: the `talc` allocator over physically contiguous chunks
//! taken from the frame allocator (seen through the direct map). It starts
//! small and grows a chunk at a time when an allocation does not fit.

use super::{MemoryInitError, frames};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel_logic::layout::{PAGE_SIZE, align_up, phys_to_direct};
use talc::{OomHandler, Span, Talc};

/// Heap claimed at boot.
const INITIAL_HEAP: u64 = 4 * 1024 * 1024;
/// Smallest chunk added when the heap grows.
const GROW_MIN: u64 = 1024 * 1024;

static CLAIMED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// Grows the heap from the frame allocator when talc runs out.
struct Grow;

fn claim(talc: &mut Talc<Grow>, bytes: u64) -> Result<(), ()> {
    let pages = bytes / PAGE_SIZE;
    let phys = frames::alloc_contiguous_raw(pages, 1).ok_or(())?;
    let Some(virt) = phys_to_direct(phys) else {
        frames::free_raw(phys);
        return Err(());
    };
    let span = Span::from_base_size(virt as *mut u8, bytes as usize);
    // SAFETY: the frames were just taken from the frame allocator, so the
    // range belongs to nobody else; the direct map makes it readable and
    // writable; the heap keeps it for good (chunks are never returned).
    match unsafe { talc.claim(span) } {
        Ok(_) => {
            CLAIMED.fetch_add(bytes, Ordering::Relaxed);
            Ok(())
        }
        Err(()) => {
            for page in 0..pages {
                frames::free_raw(phys + page * PAGE_SIZE);
            }
            Err(())
        }
    }
}

impl OomHandler for Grow {
    fn handle_oom(talc: &mut Talc<Self>, layout: Layout) -> Result<(), ()> {
        // Room for the request, its alignment and talc's own metadata.
        let need = (layout.size() as u64).saturating_add(layout.align() as u64).saturating_add(4096);
        let result = claim(talc, align_up(need.max(GROW_MIN), PAGE_SIZE));
        if result.is_err() {
            FAILED.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// The global allocator: talc behind an interrupt-safe lock.
struct KernelHeap {
    talc: crate::sync::BaseLock<Talc<Grow>>,
}

// SAFETY: all allocator state is behind the lock; talc returns blocks that
// satisfy the layout and do not overlap live blocks.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc callers never pass a zero-sized layout.
        unsafe { self.talc.lock().malloc(layout) }.map_or(null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator returned with
            // the same layout (GlobalAlloc contract).
            unsafe { self.talc.lock().free(ptr, layout) }
        }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap { talc: crate::sync::BaseLock::new(Talc::new(Grow)) };

/// Heap figures, for reports and for the out-of-memory message.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeapStats {
    /// Bytes taken from the frame allocator for the heap.
    pub claimed: u64,
    /// Bytes in live allocations.
    pub in_use: u64,
    /// Allocations that failed because no more frames could be claimed.
    pub failed_grows: u64,
}

/// Current heap figures. Never waits for long: an allocation on another
/// processor is let finish (a bounded spin), but when the heap lock stays
/// held (for example by the code that panicked) `in_use` reads 0.
pub fn heap_stats() -> HeapStats {
    let in_use = (0..100_000)
        .find_map(|_| {
            let talc = HEAP.talc.try_lock();
            if talc.is_none() {
                core::hint::spin_loop();
            }
            talc.map(|t| t.get_counters().allocated_bytes as u64)
        })
        .unwrap_or(0);
    HeapStats { claimed: CLAIMED.load(Ordering::Relaxed), in_use, failed_grows: FAILED.load(Ordering::Relaxed) }
}

/// Claims the initial heap.
pub(super) fn init() -> Result<(), MemoryInitError> {
    claim(&mut HEAP.talc.lock(), INITIAL_HEAP).map_err(|()| MemoryInitError::Heap { bytes: INITIAL_HEAP })
}
