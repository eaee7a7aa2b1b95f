//! Bookkeeping of physical frames: one bit per 4 KiB frame, set when free.

use crate::memmap::UsableMemory;
use core::fmt;

/// Errors from freeing frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame is beyond the memory the bitmap covers.
    OutOfRange { frame: u64 },
    /// The frame is already free.
    DoubleFree { frame: u64 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::OutOfRange { frame } => write!(f, "frame {frame:#x} is outside physical memory"),
            FrameError::DoubleFree { frame } => write!(f, "frame {frame:#x} freed twice"),
        }
    }
}

/// A bitmap over frames `0..frames`. Bit set = free.
pub struct FrameBitmap<'a> {
    words: &'a mut [u64],
    frames: u64,
    free: u64,
    usable: u64,
    /// Word index where the next single-frame search starts.
    hint: usize,
}

impl<'a> FrameBitmap<'a> {
    /// Number of `u64` words needed to cover `frames` frames.
    pub const fn words_needed(frames: u64) -> usize {
        frames.div_ceil(64) as usize
    }

    /// A bitmap over `words` covering `frames` frames, all marked in use.
    /// Frames beyond `words.len() * 64` are ignored.
    pub fn new(words: &'a mut [u64], frames: u64) -> Self {
        words.fill(0);
        let frames = frames.min(words.len() as u64 * 64);
        Self { words, frames, free: 0, usable: 0, hint: 0 }
    }

    /// A bitmap with every page of `usable` marked free.
    pub fn from_usable(words: &'a mut [u64], usable: &UsableMemory) -> Self {
        let frames = usable.end() / crate::layout::PAGE_SIZE;
        let mut bitmap = Self::new(words, frames);
        for range in usable.ranges() {
            bitmap.add_free(range.start / crate::layout::PAGE_SIZE, range.end / crate::layout::PAGE_SIZE);
        }
        bitmap
    }

    /// Marks frames `[first, end)` free and usable (at initialisation, and
    /// when reserved memory such as a boot module is given back).
    pub fn add_free(&mut self, first: u64, end: u64) {
        for frame in first..end.min(self.frames) {
            if !self.is_free(frame) {
                self.set(frame, true);
                self.free += 1;
                self.usable += 1;
            }
        }
    }

    fn set(&mut self, frame: u64, free: bool) {
        let bit = 1u64 << (frame % 64);
        if let Some(word) = self.words.get_mut((frame / 64) as usize) {
            if free {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    /// True when `frame` is free.
    pub fn is_free(&self, frame: u64) -> bool {
        frame < self.frames && self.words.get((frame / 64) as usize).is_some_and(|w| w & (1 << (frame % 64)) != 0)
    }

    /// Takes the lowest free frame at or after the search hint.
    pub fn alloc(&mut self) -> Option<u64> {
        let n = self.words.len();
        for step in 0..n {
            let index = (self.hint + step) % n;
            let word = self.words.get(index).copied().unwrap_or(0);
            if word != 0 {
                let frame = index as u64 * 64 + u64::from(word.trailing_zeros());
                if frame >= self.frames {
                    continue;
                }
                self.set(frame, false);
                self.free -= 1;
                self.hint = index;
                return Some(frame);
            }
        }
        None
    }

    /// Takes `count` consecutive free frames whose first frame number is a
    /// multiple of `align` (a power of two, in frames).
    pub fn alloc_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        if count == 0 || align == 0 || !align.is_power_of_two() {
            return None;
        }
        // Word at a time: whole words of used frames are skipped at once
        // (the low memory is mostly the kernel's, in use).
        let mut start = 0u64;
        loop {
            start = self.next_with(start, true)?.checked_next_multiple_of(align)?;
            let end = start.checked_add(count)?;
            if end > self.frames {
                return None;
            }
            match self.next_with(start, false).filter(|&used| used < end) {
                None => {
                    for frame in start..end {
                        self.set(frame, false);
                    }
                    self.free -= count;
                    return Some(start);
                }
                Some(used) => start = used + 1,
            }
        }
    }

    /// The first frame at or after `from` that is free (`free`) or in use
    /// (frames past the end count as in use); `None` if there is none
    /// (looking for a free one).
    fn next_with(&self, from: u64, free: bool) -> Option<u64> {
        let mut index = (from / 64) as usize;
        // Bits below `from` in its word are masked off.
        let mut mask = u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        while let Some(&word) = self.words.get(index) {
            let bits = if free { word } else { !word } & mask;
            if bits != 0 {
                let frame = index as u64 * 64 + u64::from(bits.trailing_zeros());
                return match (free, frame < self.frames) {
                    (true, true) => Some(frame),
                    (true, false) => None,
                    (false, _) => Some(frame.min(self.frames)),
                };
            }
            index += 1;
            mask = u64::MAX;
        }
        if free { None } else { Some(self.frames.max(from)) }
    }

    /// Returns `frame` to the pool.
    pub fn free(&mut self, frame: u64) -> Result<(), FrameError> {
        if frame >= self.frames {
            return Err(FrameError::OutOfRange { frame });
        }
        if self.is_free(frame) {
            return Err(FrameError::DoubleFree { frame });
        }
        self.set(frame, true);
        self.free += 1;
        let word = (frame / 64) as usize;
        if word < self.hint {
            self.hint = word;
        }
        Ok(())
    }

    /// Frames free now.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Frames that were ever usable.
    pub fn usable_frames(&self) -> u64 {
        self.usable
    }
}

/// The frames lying wholly inside the byte range `[start, end)`: those a
/// reserved range can give back without touching its neighbours' pages.
pub fn frames_within(start: u64, end: u64) -> core::ops::Range<u64> {
    let page = crate::layout::PAGE_SIZE;
    let first = start.div_ceil(page);
    let last = end / page;
    first..last.max(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootinfo::{MemoryRegion, RegionKind};
    use crate::memmap::usable_memory;

    #[test]
    fn frames_within_skips_partial_pages() {
        assert_eq!(frames_within(0x1000, 0x4000), 1..4);
        assert_eq!(frames_within(0x1001, 0x4fff), 2..4);
        assert_eq!(frames_within(0x1001, 0x1fff), 2..2, "no whole page inside");
        assert_eq!(frames_within(0x2000, 0x1000), 2..2, "an empty range gives nothing");
    }

    #[test]
    fn allocates_lowest_first_and_tracks_counts() {
        let mut words = vec![0u64; 4];
        let mut bitmap = FrameBitmap::new(&mut words, 256);
        bitmap.add_free(10, 20);
        assert_eq!(bitmap.free_frames(), 10);
        assert_eq!(bitmap.alloc(), Some(10));
        assert_eq!(bitmap.alloc(), Some(11));
        assert_eq!(bitmap.free_frames(), 8);
        bitmap.free(10).unwrap();
        assert_eq!(bitmap.alloc(), Some(10));
        for _ in 0..8 {
            assert!(bitmap.alloc().is_some());
        }
        assert_eq!(bitmap.alloc(), None);
        assert_eq!(bitmap.free_frames(), 0);
        assert_eq!(bitmap.usable_frames(), 10);
    }

    #[test]
    fn double_free_and_out_of_range() {
        let mut words = vec![0u64; 1];
        let mut bitmap = FrameBitmap::new(&mut words, 64);
        bitmap.add_free(0, 4);
        assert_eq!(bitmap.free(2), Err(FrameError::DoubleFree { frame: 2 }));
        assert_eq!(bitmap.free(64), Err(FrameError::OutOfRange { frame: 64 }));
        let f = bitmap.alloc().unwrap();
        assert_eq!(bitmap.free(f), Ok(()));
        assert_eq!(bitmap.free(f), Err(FrameError::DoubleFree { frame: f }));
    }

    #[test]
    fn contiguous_respects_alignment_and_holes() {
        let mut words = vec![0u64; 2];
        let mut bitmap = FrameBitmap::new(&mut words, 128);
        bitmap.add_free(1, 128);
        bitmap.set(9, false); // a hole at frame 9
        bitmap.free -= 1;
        let start = bitmap.alloc_contiguous(8, 8).unwrap();
        assert_eq!(start, 16, "0..8 has frame 0 used, 8..16 has the hole at 9");
        assert!((16..24).all(|f| !bitmap.is_free(f)));
        assert_eq!(bitmap.alloc_contiguous(200, 1), None);
        assert_eq!(bitmap.alloc_contiguous(0, 1), None);
        assert_eq!(bitmap.alloc_contiguous(1, 3), None);
        let before = bitmap.free_frames();
        assert_eq!(bitmap.alloc_contiguous(3, 1), Some(1));
        assert_eq!(bitmap.free_frames(), before - 3);
    }

    #[test]
    fn contiguous_skips_used_words_and_matches_a_frame_by_frame_search() {
        // A pseudo-random pattern of holes; every request is checked against
        // the plain search (first aligned run of free frames).
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..200 {
            let frames = 64 * 6 + (round % 70);
            let mut words = vec![0u64; FrameBitmap::words_needed(frames)];
            let mut bitmap = FrameBitmap::new(&mut words, frames);
            bitmap.add_free(0, frames);
            for f in 0..frames {
                // Dense used stretches, then sparse ones.
                let used = if f < 200 { rand() % 8 != 0 } else { rand() % 5 == 0 };
                if used {
                    bitmap.set(f, false);
                    bitmap.free -= 1;
                }
            }
            let count = 1 + rand() % 6;
            let align = 1u64 << (rand() % 3);
            let expect = (0..frames)
                .step_by(align as usize)
                .find(|&s| s + count <= frames && (s..s + count).all(|f| bitmap.is_free(f)));
            let free = bitmap.free_frames();
            let got = bitmap.alloc_contiguous(count, align);
            assert_eq!(got, expect, "round {round}: {count} frames aligned to {align}");
            if let Some(start) = got {
                assert!((start..start + count).all(|f| !bitmap.is_free(f)));
                assert_eq!(bitmap.free_frames(), free - count);
            }
        }
    }

    #[test]
    fn contiguous_never_runs_past_the_last_frame() {
        let mut words = vec![0u64; 2];
        let mut bitmap = FrameBitmap::new(&mut words, 70);
        bitmap.add_free(60, 70);
        assert_eq!(bitmap.alloc_contiguous(11, 1), None);
        assert_eq!(bitmap.alloc_contiguous(10, 1), Some(60));
        assert_eq!(bitmap.alloc_contiguous(1, 1), None);
    }

    #[test]
    fn built_from_usable_memory() {
        let map = [
            MemoryRegion { start: 0, len: 0x9f000, kind: RegionKind::Usable },
            MemoryRegion { start: 0x100000, len: 0x100000, kind: RegionKind::Usable },
        ];
        let usable = usable_memory(&map, &[]).unwrap();
        let frames = usable.end() / 4096;
        let mut words = vec![0u64; FrameBitmap::words_needed(frames)];
        let mut bitmap = FrameBitmap::from_usable(&mut words, &usable);
        assert_eq!(bitmap.free_frames(), 256);
        assert!(!bitmap.is_free(0x9e));
        assert_eq!(bitmap.alloc(), Some(0x100));
    }
}
