//! The kernel's virtual address layout and page arithmetic.
//!
//! ```text
//! 0x0000_0000_0000_0000 ..= 0x0000_7fff_ffff_ffff  user space (per process, later)
//! 0xffff_8000_0000_0000 ..  0xffff_c000_0000_0000  direct map of all physical memory
//! 0xffff_c000_0000_0000 ..  0xffff_e000_0000_0000  kernel mappings: MMIO, mapped frames
//! 0xffff_ffff_8000_0000 ..  0xffff_ffff_a000_0000  kernel image (code model `kernel`)
//! 0xffff_ffff_a000_0000 ..  0xffff_ffff_e000_0000  cells (loaded components; planned)
//! ```

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE_SIZE: u64 = 2 * 1024 * 1024;
/// Start of the direct map: physical address `p` is visible at `DIRECT_MAP_BASE + p`.
pub const DIRECT_MAP_BASE: u64 = 0xffff_8000_0000_0000;
/// Most physical memory the direct map can cover (64 TiB).
pub const DIRECT_MAP_SIZE: u64 = 0x4000_0000_0000;
/// Start of the window for kernel mappings (MMIO, mapped frame areas).
pub const KMAP_BASE: u64 = 0xffff_c000_0000_0000;
/// End of the kernel mapping window.
pub const KMAP_END: u64 = 0xffff_e000_0000_0000;
/// Virtual address the kernel image is linked at, for physical address 0.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Start of the area where cells are loaded: in the top 2 GiB with the
/// kernel, so a cell built with code model `kernel` reaches kernel symbols
/// with 32-bit PC-relative and sign-extended absolute relocations (as
/// Linux places modules).
pub const CELLS_BASE: u64 = 0xffff_ffff_a000_0000;
/// End of the cell area.
pub const CELLS_END: u64 = 0xffff_ffff_e000_0000;
/// The part of physical memory the 32-bit boot code maps (identity, direct
/// map and kernel window) before the kernel builds its own page tables.
pub const EARLY_MAPPED: u64 = 1 << 30;

// The regions of the layout must not overlap: checked at compile time.
const _: () = assert!(DIRECT_MAP_BASE + DIRECT_MAP_SIZE <= KMAP_BASE);
const _: () = assert!(KMAP_END <= KERNEL_BASE);
const _: () = assert!(KERNEL_BASE < CELLS_BASE && CELLS_BASE < CELLS_END);
// Any cell byte and any kernel-image byte are less than 2 GiB apart.
const _: () = assert!(CELLS_END - KERNEL_BASE < 1 << 31);

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align` (a power of two), saturating
/// at the highest aligned value instead of wrapping.
pub const fn align_up(value: u64, align: u64) -> u64 {
    match value.checked_add(align - 1) {
        Some(v) => v & !(align - 1),
        None => align_down(u64::MAX, align),
    }
}

/// Virtual address of physical address `phys` in the direct map, if covered.
pub const fn phys_to_direct(phys: u64) -> Option<u64> {
    if phys < DIRECT_MAP_SIZE { Some(DIRECT_MAP_BASE + phys) } else { None }
}

/// True for canonical 48-bit addresses (bits 63..47 all equal).
pub const fn is_canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// The end of the lower (user) half: one past its last address.
pub const USER_HALF_END: u64 = 1 << 47;

/// True for addresses in the lower (user) half.
pub const fn is_user_half(addr: u64) -> bool {
    addr < USER_HALF_END
}

/// True when the `len` bytes from `addr` lie wholly in the user half
/// (an empty range anywhere). Written without short circuits, so that a
/// user copy checks its range with one branch.
pub const fn is_user_range(addr: u64, len: u64) -> bool {
    (len == 0) | (is_user_half(addr) & (len <= USER_HALF_END.wrapping_sub(addr)))
}

/// The four page-table indices (PML4, PDPT, PD, PT) of a virtual address.
pub const fn table_indices(addr: u64) -> [usize; 4] {
    [
        ((addr >> 39) & 0x1ff) as usize,
        ((addr >> 30) & 0x1ff) as usize,
        ((addr >> 21) & 0x1ff) as usize,
        ((addr >> 12) & 0x1ff) as usize,
    ]
}

/// Number of pages needed to hold `bytes`.
pub const fn pages_for(bytes: u64) -> u64 {
    align_up(bytes, PAGE_SIZE) / PAGE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ranges() {
        assert!(is_user_range(0, 0));
        assert!(is_user_range(u64::MAX, 0), "an empty range touches nothing");
        assert!(is_user_range(0, USER_HALF_END));
        assert!(is_user_range(USER_HALF_END - 1, 1));
        assert!(!is_user_range(USER_HALF_END - 1, 2));
        assert!(!is_user_range(USER_HALF_END, 1));
        assert!(!is_user_range(0, USER_HALF_END + 1));
        assert!(!is_user_range(0x1000, u64::MAX), "a length that wraps");
        assert!(!is_user_range(u64::MAX, 1));
        assert!(!is_user_range(0xffff_8000_0000_0000, 8));
        // Against the plain definition: first and last byte in the half.
        for addr in [0, 1, 0x1000, USER_HALF_END - 4096, USER_HALF_END - 1, USER_HALF_END, u64::MAX - 3] {
            for len in [0, 1, 2, 4095, 4096, 1 << 46, 1 << 47, u64::MAX] {
                let plain = len == 0 || addr.checked_add(len - 1).is_some_and(|last| is_user_half(addr) && is_user_half(last));
                assert_eq!(is_user_range(addr, len), plain, "{addr:#x} + {len:#x}");
            }
        }
    }

    #[test]
    fn alignment() {
        assert_eq!(align_down(0x1fff, PAGE_SIZE), 0x1000);
        assert_eq!(align_up(0x1001, PAGE_SIZE), 0x2000);
        assert_eq!(align_up(0x2000, PAGE_SIZE), 0x2000);
        assert_eq!(align_up(u64::MAX - 5, PAGE_SIZE), !0xfff);
        assert_eq!(pages_for(0), 0);
        assert_eq!(pages_for(1), 1);
        assert_eq!(pages_for(4097), 2);
    }

    #[test]
    fn indices_of_layout_addresses() {
        assert_eq!(table_indices(KERNEL_BASE), [511, 510, 0, 0]);
        assert_eq!(table_indices(DIRECT_MAP_BASE), [256, 0, 0, 0]);
        assert_eq!(table_indices(KMAP_BASE), [384, 0, 0, 0]);
        assert_eq!(table_indices(0x0000_7fff_ffff_f000), [255, 511, 511, 511]);
        assert_eq!(table_indices(KERNEL_BASE + 0x10_3000), [511, 510, 0, 0x103]);
    }

    #[test]
    fn canonical_and_halves() {
        assert!(is_canonical(0));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert!(is_canonical(DIRECT_MAP_BASE));
        assert!(is_user_half(0x40_0000));
        assert!(!is_user_half(KERNEL_BASE));
        assert_eq!(phys_to_direct(0x1000), Some(DIRECT_MAP_BASE + 0x1000));
        assert_eq!(phys_to_direct(DIRECT_MAP_SIZE), None);
    }
}
