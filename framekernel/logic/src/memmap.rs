//! Turning the firmware memory map into the list of RAM the kernel may use.
//!
//! Rules: only `usable` entries count; anything any other entry also claims
//! is left out (a reserved claim wins over a usable one); the first MiB is
//! left to firmware; the kernel image, the boot modules and whatever else
//! the caller reserves are cut out; ranges shrink inward to whole pages.

use crate::bootinfo::{MemoryRegion, Module, RegionKind};
use crate::fixed::{FixedString, FixedVec};
use crate::layout::{align_down, align_up, PAGE_SIZE};
use core::fmt;

/// Memory below this address is never handed out (BIOS data, EBDA, VGA, ROMs).
pub const LOW_MEMORY_END: u64 = 0x10_0000;
/// Most separate usable ranges tracked.
pub const MAX_USABLE_RANGES: usize = 192;

/// A half-open physical range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// The range `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }

    /// Length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True when the two ranges share a byte.
    pub const fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// True when `other` lies entirely inside this range.
    pub const fn contains_range(&self, other: &Range) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#014x}-{:#014x})", self.start, self.end)
    }
}

/// A range the frame allocator must not hand out, and why.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reservation {
    /// The physical range.
    pub range: Range,
    /// What it holds, for messages ("kernel image", "module symbols", ...).
    pub what: &'static str,
}

/// Why no usable memory map could be made.
#[derive(Debug, Clone, Copy)]
pub enum MemoryMapError {
    /// After the rules above, no RAM at or above 1 MiB is left.
    NoUsableMemoryAbove1MiB { total_usable_below: u64 },
    /// A boot module lies on top of the kernel image.
    ModuleOverlapsKernel { module: FixedString<48>, module_range: Range, kernel: Range },
    /// Two boot modules overlap each other.
    ModulesOverlap { first: FixedString<48>, second: FixedString<48> },
    /// A boot module is not inside RAM the memory map calls usable.
    ModuleOutsideRam { module: FixedString<48>, module_range: Range },
    /// The map is fragmented beyond what the kernel tracks.
    TooManyRanges { limit: usize },
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryMapError::NoUsableMemoryAbove1MiB { total_usable_below } => write!(
                f,
                "no usable memory above 1 MiB in the memory map ({total_usable_below} bytes usable below it)"
            ),
            MemoryMapError::ModuleOverlapsKernel { module, module_range, kernel } => {
                write!(f, "boot module '{module}' at {module_range} overlaps the kernel image at {kernel}")
            }
            MemoryMapError::ModulesOverlap { first, second } => {
                write!(f, "boot modules '{first}' and '{second}' overlap")
            }
            MemoryMapError::ModuleOutsideRam { module, module_range } => {
                write!(f, "boot module '{module}' at {module_range} is not in usable RAM")
            }
            MemoryMapError::TooManyRanges { limit } => {
                write!(f, "memory map splits into more than {limit} usable ranges")
            }
        }
    }
}

/// The RAM the kernel may allocate, sorted, disjoint and page aligned.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsableMemory {
    ranges: FixedVec<Range, MAX_USABLE_RANGES>,
}

impl UsableMemory {
    /// The ranges, sorted by address.
    pub fn ranges(&self) -> &[Range] {
        self.ranges.as_slice()
    }

    /// Total usable bytes.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(Range::len).sum()
    }

    /// One past the highest usable byte.
    pub fn end(&self) -> u64 {
        self.ranges.as_slice().last().map_or(0, |r| r.end)
    }

    /// Removes `hole` (rounded out to pages) from the usable ranges.
    pub fn reserve(&mut self, hole: Range) -> Result<(), MemoryMapError> {
        subtract(&mut self.ranges, Range::new(align_down(hole.start, PAGE_SIZE), align_up(hole.end, PAGE_SIZE)))
    }
}

fn too_many() -> MemoryMapError {
    MemoryMapError::TooManyRanges { limit: MAX_USABLE_RANGES }
}

fn subtract(ranges: &mut FixedVec<Range, MAX_USABLE_RANGES>, hole: Range) -> Result<(), MemoryMapError> {
    if hole.is_empty() {
        return Ok(());
    }
    let mut out = FixedVec::<Range, MAX_USABLE_RANGES>::new();
    for r in ranges.iter() {
        if !r.overlaps(&hole) {
            out.push(*r).map_err(|_| too_many())?;
            continue;
        }
        let below = Range::new(r.start, hole.start.min(r.end));
        let above = Range::new(hole.end.max(r.start), r.end);
        for piece in [below, above] {
            if !piece.is_empty() {
                out.push(piece).map_err(|_| too_many())?;
            }
        }
    }
    *ranges = out;
    Ok(())
}

fn module_range(module: &Module) -> Range {
    Range::new(module.start, module.end)
}

fn module_name(module: &Module) -> FixedString<48> {
    FixedString::truncated(module.name.as_str())
}

/// Checks that modules lie in usable RAM and clear of the kernel and each other.
pub fn check_modules(regions: &[MemoryRegion], kernel: Range, modules: &[Module]) -> Result<(), MemoryMapError> {
    for (i, module) in modules.iter().enumerate() {
        let range = module_range(module);
        if range.overlaps(&kernel) {
            return Err(MemoryMapError::ModuleOverlapsKernel { module: module_name(module), module_range: range, kernel });
        }
        let in_ram = regions.iter().any(|r| {
            r.kind == RegionKind::Usable && Range::new(r.start, r.start.saturating_add(r.len)).contains_range(&range)
        });
        if !in_ram {
            return Err(MemoryMapError::ModuleOutsideRam { module: module_name(module), module_range: range });
        }
        for other in modules.iter().skip(i + 1) {
            if range.overlaps(&module_range(other)) {
                return Err(MemoryMapError::ModulesOverlap { first: module_name(module), second: module_name(other) });
            }
        }
    }
    Ok(())
}

/// Builds the usable memory from the firmware map and the reservations.
pub fn usable_memory(regions: &[MemoryRegion], reservations: &[Reservation]) -> Result<UsableMemory, MemoryMapError> {
    let mut ranges = FixedVec::<Range, MAX_USABLE_RANGES>::new();
    let mut usable_below = 0u64;
    for r in regions.iter().filter(|r| r.kind == RegionKind::Usable) {
        let end = r.start.saturating_add(r.len);
        usable_below += end.min(LOW_MEMORY_END).saturating_sub(r.start);
        let start = align_up(r.start.max(LOW_MEMORY_END), PAGE_SIZE);
        let end = align_down(end, PAGE_SIZE);
        if start < end {
            ranges.push(Range::new(start, end)).map_err(|_| too_many())?;
        }
    }
    for r in regions.iter().filter(|r| r.kind != RegionKind::Usable) {
        let end = r.start.saturating_add(r.len);
        subtract(&mut ranges, Range::new(align_down(r.start, PAGE_SIZE), align_up(end, PAGE_SIZE)))?;
    }
    for reservation in reservations {
        let hole = reservation.range;
        subtract(&mut ranges, Range::new(align_down(hole.start, PAGE_SIZE), align_up(hole.end, PAGE_SIZE)))?;
    }
    // Sort (insertion sort: at most a few hundred entries, no allocator) and
    // merge ranges that touch or that duplicate map entries made overlap.
    let slice = ranges.as_mut_slice();
    for i in 1..slice.len() {
        let mut j = i;
        while j > 0 && slice.get(j - 1).map(|r| r.start) > slice.get(j).map(|r| r.start) {
            slice.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut merged = FixedVec::<Range, MAX_USABLE_RANGES>::new();
    for r in ranges.iter() {
        match merged.as_mut_slice().last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(*r).map_err(|_| too_many())?,
        }
    }
    if merged.is_empty() {
        return Err(MemoryMapError::NoUsableMemoryAbove1MiB { total_usable_below: usable_below });
    }
    Ok(UsableMemory { ranges: merged })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, len: u64, kind: RegionKind) -> MemoryRegion {
        MemoryRegion { start, len, kind }
    }

    fn qemu_map() -> Vec<MemoryRegion> {
        vec![
            region(0, 0x9fc00, RegionKind::Usable),
            region(0x9fc00, 0x400, RegionKind::Reserved),
            region(0xf0000, 0x10000, RegionKind::Reserved),
            region(0x100000, 0x7ee0000, RegionKind::Usable),
            region(0x7fe0000, 0x20000, RegionKind::Reserved),
            region(0xfffc0000, 0x40000, RegionKind::Reserved),
        ]
    }

    #[test]
    fn cuts_kernel_and_low_memory() {
        let kernel = Reservation { range: Range::new(0x100000, 0x345678), what: "kernel image" };
        let usable = usable_memory(&qemu_map(), &[kernel]).unwrap();
        assert_eq!(usable.ranges(), &[Range::new(0x346000, 0x7fe0000)]);
        assert_eq!(usable.total(), 0x7fe0000 - 0x346000);
    }

    #[test]
    fn reserved_claim_wins_over_usable_and_pages_round_inward() {
        let map = vec![
            region(0x100800, 0x1000_0000, RegionKind::Usable),
            region(0x200100, 0x10, RegionKind::Reserved),
            region(0x300000, 0x1000, RegionKind::Bad),
        ];
        let usable = usable_memory(&map, &[]).unwrap();
        assert_eq!(
            usable.ranges(),
            &[Range::new(0x101000, 0x200000), Range::new(0x201000, 0x300000), Range::new(0x301000, 0x10100000)]
        );
    }

    #[test]
    fn unsorted_and_duplicate_entries_merge() {
        let map = vec![
            region(0x400000, 0x100000, RegionKind::Usable),
            region(0x100000, 0x300000, RegionKind::Usable),
            region(0x200000, 0x100000, RegionKind::Usable),
        ];
        let usable = usable_memory(&map, &[]).unwrap();
        assert_eq!(usable.ranges(), &[Range::new(0x100000, 0x500000)]);
    }

    #[test]
    fn no_memory_above_one_mib() {
        let map = vec![region(0, 0x9fc00, RegionKind::Usable), region(0x100000, 0x800, RegionKind::Usable)];
        match usable_memory(&map, &[]) {
            Err(MemoryMapError::NoUsableMemoryAbove1MiB { total_usable_below }) => {
                assert_eq!(total_usable_below, 0x9fc00)
            }
            other => panic!("{other:?}"),
        }
        let err = usable_memory(&[], &[]).unwrap_err();
        assert!(err.to_string().contains("no usable memory above 1 MiB"));
    }

    #[test]
    fn module_overlapping_kernel_is_named() {
        let module = Module {
            start: 0x200000,
            end: 0x300000,
            name: crate::fixed::FixedString::copy_from("symbols").unwrap(),
        };
        let err = check_modules(&qemu_map(), Range::new(0x100000, 0x280000), &[module]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'symbols'") && text.contains("overlaps the kernel image"), "{text}");
        assert!(check_modules(&qemu_map(), Range::new(0x100000, 0x200000), &[module]).is_ok());
    }

    #[test]
    fn module_outside_ram_and_overlapping_modules() {
        let name = crate::fixed::FixedString::copy_from("m").unwrap();
        let far = Module { start: 0x9000_0000, end: 0x9000_1000, name };
        assert!(matches!(
            check_modules(&qemu_map(), Range::new(0x100000, 0x200000), &[far]),
            Err(MemoryMapError::ModuleOutsideRam { .. })
        ));
        let a = Module { start: 0x400000, end: 0x500000, name };
        let b = Module { start: 0x4ff000, end: 0x600000, name };
        assert!(matches!(
            check_modules(&qemu_map(), Range::new(0x100000, 0x200000), &[a, b]),
            Err(MemoryMapError::ModulesOverlap { .. })
        ));
    }

    #[test]
    fn reserve_later_splits_a_range() {
        let mut usable = usable_memory(&qemu_map(), &[]).unwrap();
        usable.reserve(Range::new(0x200010, 0x200020)).unwrap();
        assert_eq!(usable.ranges(), &[Range::new(0x100000, 0x200000), Range::new(0x201000, 0x7fe0000)]);
    }

    #[test]
    fn fragmented_map_reports_limit() {
        let map: Vec<_> = (0..MAX_USABLE_RANGES as u64 + 10)
            .map(|i| region(0x100000 + i * 0x2000, 0x1000, RegionKind::Usable))
            .collect();
        assert!(matches!(usable_memory(&map, &[]), Err(MemoryMapError::TooManyRanges { .. })));
    }
}
