//! The vDSO: a small shared object (`userspace/vdso`, built by this
//! crate's build script) mapped into every process with the kernel's
//! clock page below it, so that `clock_gettime`, `gettimeofday`, `time`
//! and `getcpu` run in user mode, as on Linux. Its address reaches the
//! program as `AT_SYSINFO_EHDR`; `/proc/[pid]/maps` names the two areas
//! `[vvar]` and `[vdso]`.
//!
//! The image is user-mode code, untrusted like any program: the kernel
//! only copies its bytes into frames (once) and maps them read-only (a
//! write, after `mprotect`, copies the page for that process alone). The
//! clock page is the base's (`framekernel::time::clock_page`): user
//! programs can only read it.

use crate::errno::Errno;
use crate::memory::{AddressSpace, PAGE, Prot, Special};
use alloc::sync::Arc;
use alloc::vec::Vec;
use framekernel::mm::Frame;

/// The shared object, as built.
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vdso.so"));

/// Pages of the image.
pub fn image_pages() -> u64 {
    (IMAGE.len() as u64).div_ceil(PAGE)
}

static FRAMES: spin::Once<Vec<Arc<Frame>>> = spin::Once::new();

/// Page `index` of the image, in a frame every process shares.
pub fn image_frame(index: u64) -> Result<Arc<Frame>, Errno> {
    if FRAMES.get().is_none() {
        let mut frames = Vec::new();
        for chunk in IMAGE.chunks(PAGE as usize) {
            let mut frame = Frame::alloc().map_err(|_| Errno::ENOMEM)?;
            frame.write_bytes(0, chunk).map_err(|_| Errno::ENOMEM)?;
            frames.push(Arc::new(frame));
        }
        // Another exec may have been first: its frames are used.
        FRAMES.call_once(|| frames);
    }
    FRAMES.get().and_then(|f| f.get(index as usize)).cloned().ok_or(Errno::EFAULT)
}

/// Maps the clock page and, above it, the vDSO into `memory` (a new
/// program's space), both filled now; returns the vDSO's address (for
/// `AT_SYSINFO_EHDR`).
pub fn map_into(memory: &mut AddressSpace) -> Result<u64, Errno> {
    let pages = image_pages();
    let len = (pages + 1) * PAGE;
    let start = memory.find_free(len).ok_or(Errno::ENOMEM)?;
    let base = start + PAGE;
    memory.add_special_area(start, base, Prot { read: true, write: false, exec: false }, Special::Vvar)?;
    memory.add_special_area(base, base + pages * PAGE, Prot { read: true, write: false, exec: true }, Special::Vdso { base })?;
    memory.populate_range(start, len, false)?;
    Ok(base)
}
