//! The physical frame allocator and the owned [`Frame`] handle.

use super::MemoryInitError;
use framekernel_logic::frames::FrameBitmap;
use framekernel_logic::layout::{DIRECT_MAP_BASE, EARLY_MAPPED, PAGE_SIZE, align_up, phys_to_direct};
use framekernel_logic::memmap::{Range, UsableMemory};

static FRAMES: crate::sync::BaseLock<Option<FrameBitmap<'static>>> = crate::sync::BaseLock::new(None);

/// No frame (or no run of frames) was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfMemory {
    /// Frames asked for.
    pub requested: u64,
    /// Frames free at the time.
    pub free: u64,
}

impl core::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "out of physical memory: {} frame(s) requested, {} free", self.requested, self.free)
    }
}

/// Frame allocator figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameStats {
    /// Frames that were ever usable.
    pub total: u64,
    /// Frames free now.
    pub free: u64,
}

/// Current frame allocator figures.
pub fn frame_stats() -> FrameStats {
    FRAMES.lock().as_ref().map_or(FrameStats::default(), |b| FrameStats { total: b.usable_frames(), free: b.free_frames() })
}

/// Places the bitmap in low usable memory and fills it. Returns its size.
/// The bitmap covers RAM up to `cover_end` too (boot modules above the
/// last usable byte can be given back later).
pub(super) fn init(usable: &mut UsableMemory, cover_end: u64) -> Result<u64, MemoryInitError> {
    let frames = usable.end().max(cover_end) / PAGE_SIZE;
    let words = FrameBitmap::words_needed(frames);
    let bytes = align_up(words as u64 * 8, PAGE_SIZE);
    let place = usable
        .ranges()
        .iter()
        .find(|r| r.len() >= bytes && r.start + bytes <= EARLY_MAPPED)
        .map(|r| r.start)
        .ok_or(MemoryInitError::NoRoomForBitmap { bytes })?;
    usable.reserve(Range::new(place, place + bytes)).map_err(MemoryInitError::Map)?;
    // SAFETY: `place..place+bytes` is usable RAM below 1 GiB (mapped by the
    // boot tables, and by the direct map afterwards) that was just removed
    // from the usable ranges, so nothing else will ever own it; u64 needs
    // 8-byte alignment and `place` is page aligned.
    let words: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut((DIRECT_MAP_BASE + place) as *mut u64, words) };
    let mut bitmap = FrameBitmap::new(words, frames);
    for range in usable.ranges() {
        bitmap.add_free(range.start / PAGE_SIZE, range.end / PAGE_SIZE);
    }
    *FRAMES.lock() = Some(bitmap);
    Ok(bytes)
}

/// Gives the whole pages of a reserved range (a boot module nobody
/// references any more) to the allocator. Returns the bytes given.
pub(crate) fn release_reserved(start: u64, end: u64) -> u64 {
    let frames = framekernel_logic::frames::frames_within(start, end);
    let count = frames.end - frames.start;
    if let Some(bitmap) = FRAMES.lock().as_mut() {
        bitmap.add_free(frames.start, frames.end);
    }
    count * PAGE_SIZE
}

/// Takes one frame, not zeroed. Only for the base's own bookkeeping.
pub(super) fn alloc_raw() -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc().map(|f| f * PAGE_SIZE)
}

/// Takes `count` contiguous frames aligned to `align` frames.
pub(super) fn alloc_contiguous_raw(count: u64, align: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_contiguous(count, align).map(|f| f * PAGE_SIZE)
}

/// Returns a frame taken with one of the raw functions.
pub(super) fn free_raw(phys: u64) {
    if let Some(Err(e)) = FRAMES.lock().as_mut().map(|bitmap| bitmap.free(phys / PAGE_SIZE)) {
        // A bug in the base; report it rather than corrupt the pool.
        log::error!("frame allocator: {e}");
    }
}

/// Zeroes the frame at `phys` through the direct map.
pub(super) fn zero(phys: u64) {
    if let Some(virt) = phys_to_direct(phys) {
        // SAFETY: callers own the frame (just allocated, not yet shared), it
        // is RAM covered by the direct map, and 4096 bytes fit in it.
        unsafe { core::ptr::write_bytes(virt as *mut u8, 0, PAGE_SIZE as usize) };
    }
}

unsafe extern "C" {
    /// `memcpy`'s code under a name the compiler does not know
    /// (`arch/mem.rs`): 64-byte blocks, then words, then bytes.
    fn tessera_untyped_copy(dst: *mut u8, src: *const u8, len: usize) -> *mut u8;
    /// `memset`'s code under a name the compiler does not know.
    fn tessera_untyped_fill(dst: *mut u8, byte: i32, len: usize) -> *mut u8;
}

/// Copies `len` bytes from `src` to `dst` with the kernel's `memcpy` code
/// (64-byte blocks of eight moves a step: QEMU's TCG runs a `rep`
/// instruction one step per translated block, so a page is 64 steps this
/// way, 512 as a `rep movsq`), called under a name the compiler does not
/// know: frame contents are untyped memory that programs may store to at
/// the same time (shared mappings), so they are never read or written by
/// Rust loads and stores or by calls the compiler could reason about.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, the
/// ranges must not overlap, and no live Rust reference may cover `dst`'s
/// range (nor a mutable one `src`'s).
unsafe fn untyped_copy(dst: *mut u8, src: *const u8, len: usize) {
    // SAFETY: the caller guarantees both ranges; the code writes exactly
    // `[dst, dst + len)` and reads `[src, src + len)` (arch/mem.rs).
    unsafe { tessera_untyped_copy(dst, src, len) };
}

/// One 4 KiB frame of physical memory; freed on drop.
///
/// Its contents are reached only by copying ([`Frame::read_bytes`],
/// [`Frame::write_bytes`]) or by mapping it into a [`super::MappedArea`],
/// which takes ownership.
#[derive(Debug)]
pub struct Frame {
    phys: u64,
}

/// An access outside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Offset asked for.
    pub offset: usize,
    /// Length asked for.
    pub len: usize,
}

impl Frame {
    /// Allocates a zero-filled frame.
    pub fn alloc() -> Result<Self, OutOfMemory> {
        let frame = Self::unfilled()?;
        zero(frame.phys);
        Ok(frame)
    }

    /// Allocates a frame holding a copy of `other` (not zeroed first: a
    /// copy-on-write copy wrote every byte twice).
    pub fn copy_of(other: &Frame) -> Result<Self, OutOfMemory> {
        let mut copy = Self::unfilled()?;
        copy.copy_from(other);
        Ok(copy)
    }

    /// A frame with whatever its last owner left in it: never handed out
    /// before every byte is written (`alloc`, `copy_of`).
    fn unfilled() -> Result<Self, OutOfMemory> {
        alloc_raw().map(|phys| Self { phys }).ok_or_else(|| OutOfMemory { requested: 1, free: frame_stats().free })
    }

    /// Physical address of the frame (for device DMA programming later).
    pub fn phys_addr(&self) -> u64 {
        self.phys
    }

    fn check(offset: usize, len: usize) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= PAGE_SIZE as usize => Ok(()),
            _ => Err(OutOfBounds { offset, len }),
        }
    }

    /// Copies `out.len()` bytes starting at `offset` out of the frame.
    pub fn read_bytes(&self, offset: usize, out: &mut [u8]) -> Result<(), OutOfBounds> {
        Self::check(offset, out.len())?;
        let src = DIRECT_MAP_BASE + self.phys + offset as u64;
        // SAFETY: the range is inside the frame (checked above), which this
        // handle keeps allocated and the direct map covers; `out` is a
        // distinct, writable buffer of that length.
        unsafe { untyped_copy(out.as_mut_ptr(), src as *const u8, out.len()) };
        Ok(())
    }

    /// Copies `data` into the frame at `offset`.
    pub fn write_bytes(&mut self, offset: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        self.write_shared(offset, data)
    }

    /// Copies `data` into the frame at `offset` through a shared handle:
    /// the frame may be mapped into user address spaces and held by
    /// others (a page cache writes `write(2)` data into the pages every
    /// mapping of the file shows). Frame contents are untyped memory: no
    /// Rust reference to them ever exists, every access is one copy in
    /// assembly, so a copy that overlaps another (or a program's stores) only
    /// mixes bytes.
    pub fn write_shared(&self, offset: usize, data: &[u8]) -> Result<(), OutOfBounds> {
        Self::check(offset, data.len())?;
        let dst = DIRECT_MAP_BASE + self.phys + offset as u64;
        // SAFETY: the range is inside the frame (checked above), which this
        // handle keeps allocated and the direct map covers (RW); frame
        // contents are never behind a Rust reference, so writing through a
        // shared handle invalidates no reference; `data` cannot overlap a
        // frame's direct-map bytes, since no reference to those exists.
        unsafe { untyped_copy(dst as *mut u8, data.as_ptr(), data.len()) };
        Ok(())
    }

    /// Copies the whole contents of `other` into this frame.
    pub fn copy_from(&mut self, other: &Frame) {
        let src = DIRECT_MAP_BASE + other.phys;
        let dst = DIRECT_MAP_BASE + self.phys;
        // SAFETY: two distinct frames (`&mut self` vs `&other`), each
        // 4096 bytes in the direct map and kept allocated by its handle.
        unsafe { untyped_copy(dst as *mut u8, src as *const u8, PAGE_SIZE as usize) };
    }

    /// Sets every byte of the frame to `byte`.
    pub fn fill(&mut self, byte: u8) {
        let dst = DIRECT_MAP_BASE + self.phys;
        // SAFETY: the whole frame, kept allocated by this handle, in the
        // direct map; written by the kernel's `memset` code under a name
        // the compiler does not know, like the copies (untyped memory).
        unsafe { tessera_untyped_fill(dst as *mut u8, i32::from(byte), PAGE_SIZE as usize) };
    }

    /// Gives up ownership without freeing (the page tables now own it).
    pub(super) fn into_phys(self) -> u64 {
        let phys = self.phys;
        core::mem::forget(self);
        phys
    }

    /// Takes ownership of a frame previously given up with `into_phys`.
    ///
    /// # Safety
    ///
    /// `phys` must come from [`Frame::into_phys`] and no other `Frame` for it
    /// may exist (it must no longer be mapped anywhere else either).
    pub(super) unsafe fn from_phys(phys: u64) -> Self {
        Self { phys }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        free_raw(self.phys);
    }
}
