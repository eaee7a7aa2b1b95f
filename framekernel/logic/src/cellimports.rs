//! What a cell may import: an allowlist over demangled symbol paths.
//!
//! A cell's undefined symbols are resolved against the kernel, so any
//! kernel function it names it can call. Functions that store a pointer
//! into the cell (callbacks, trait objects, task entries: `irq::register`,
//! `block::add_disk`, `slot::register`, ...) would leave that pointer in a
//! kernel global after the cell is unloaded, where the registry cannot
//! revoke it. So a cell may import only:
//!
//! * `core::…` and `alloc::…` (including their trait impls on primitive,
//!   `core`/`alloc`, cell-API and base handle types), the allocator shims
//!   (`__rustc::__rust_alloc` and friends) and the compiler built-ins
//!   `memcpy memmove memset memcmp bcmp`;
//! * `tessera_cell_api::…` (plain-data helpers of the interfaces);
//! * logging through the `log` facade (`log::MAX_LOG_LEVEL_FILTER` and
//!   `<log::__private_api::GlobalLogger as log::Log>::log`; not
//!   `log::set_logger`);
//! * the base's handle APIs, listed in [`BASE_FUNCTIONS`] and
//!   [`BASE_TYPES`]: functions that return a handle the base owns
//!   (ports, PCI functions, DMA buffers) and the handle's methods, and
//!   `core` trait impls (`Display`, `Debug`, `Drop`, ...) of those types.
//!
//! Everything else is refused, by the packer at build time and by the
//! loader at load time, naming the symbol demangled.
//!
//! Demangling (legacy `_ZN…` and v0 `_R…`) uses `rustc-demangle` in its
//! alternate form, which drops hashes and crate disambiguators. Legacy
//! names do not spell generic arguments; `core`/`alloc` code only works on
//! what the cell hands it, so that is not a way to reach kernel state.

use alloc::format;
use alloc::string::String;

/// Base functions a cell may call: each returns a handle the base owns and
/// takes back on drop (ports, PCI functions, DMA memory), or plain data;
/// `sync::report_stall` is what a cell's `SpinLock`/`Mutex` (generic base
/// code compiled into the cell) calls to report a lock held over 5 s, and
/// `sync::give_up_abandoned_wait` what it calls to stop waiting for a lock
/// that a faulted call of the cell may have left held.
pub const BASE_FUNCTIONS: [&str; 8] = [
    "framekernel::pci::devices",
    "framekernel::sync::report_stall",
    "framekernel::sync::give_up_abandoned_wait",
    "framekernel::io::claim_legacy",
    "framekernel::time::now_ns",
    "framekernel::console::claim_uart",
    // The probe cell provokes faults through it (a self-test of the boundary).
    "framekernel::debug::provoke",
    "framekernel::debug::Fault::from_name",
];

/// Base types whose methods, and whose `core` trait impls, a cell may use.
pub const BASE_TYPES: [&str; 15] = [
    "framekernel::io::IoPorts",
    "framekernel::io::Legacy",
    "framekernel::mm::frames::Frame",
    "framekernel::mm::frames::OutOfBounds",
    "framekernel::mm::kmap::IoMem",
    "framekernel::io::IoPortError",
    "framekernel::pci::PciDevice",
    "framekernel::pci::PciInfo",
    "framekernel::pci::PciError",
    "framekernel::mm::dma::DmaBuffer",
    "framekernel::mm::dma::DmaOutOfRange",
    "framekernel::mm::frames::OutOfMemory",
    "framekernel::mm::OutOfMemory",
    "framekernel::mm::iomem::IoMem",
    "framekernel::debug::Fault",
];

/// Compiler built-ins with C names.
const BUILTINS: [&str; 5] = ["memcpy", "memmove", "memset", "memcmp", "bcmp"];

/// The global allocator's shims.
const ALLOCATOR: [&str; 5] = [
    "__rustc::__rust_alloc",
    "__rustc::__rust_dealloc",
    "__rustc::__rust_realloc",
    "__rustc::__rust_alloc_zeroed",
    "__rustc::__rust_no_alloc_shim_is_unstable_v2",
];

/// Other single items.
const OTHER: [&str; 2] = ["log::MAX_LOG_LEVEL_FILTER", "<log::__private_api::GlobalLogger as log::Log>::log"];

/// `name` demangled, without hash or crate disambiguators.
pub fn demangle(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

/// Why a cell may not import `name`: `Err` with the demangled name.
pub fn check(name: &str) -> Result<(), String> {
    let path = demangle(name);
    if allowed(&path) { Ok(()) } else { Err(path) }
}

fn is_std(path: &str) -> bool {
    path.starts_with("core::") || path.starts_with("alloc::")
}

/// `<A as B>::rest` or `<A>::rest`: (A, Some(B)) or (A, None), and rest.
fn split_qualified(path: &str) -> Option<(&str, Option<&str>, &str)> {
    let inner_start = path.strip_prefix('<')?;
    let mut depth = 0usize;
    let mut close = None;
    let mut as_at = None;
    for (i, c) in inner_start.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => {
                close = Some(i);
                break;
            }
            '>' => depth -= 1,
            ' ' if depth == 0 && as_at.is_none() && inner_start.get(i..).is_some_and(|r| r.starts_with(" as ")) => {
                as_at = Some(i);
            }
            _ => {}
        }
    }
    let close = close?;
    let inner = inner_start.get(..close)?;
    let rest = inner_start.get(close + 1..)?.strip_prefix("::")?;
    Some(match as_at {
        Some(at) => (inner.get(..at)?, Some(inner.get(at + 4..)?), rest),
        None => (inner, None, rest),
    })
}

/// `ty` without generic arguments (`Foo<T>` → `Foo`).
fn base_name(ty: &str) -> &str {
    ty.split('<').next().unwrap_or(ty)
}

/// A primitive type (`u64`, `str`, ...): only `core` can give it
/// inherent methods (no other crate may write `impl u32`).
fn primitive(name: &str) -> bool {
    !name.is_empty() && !name.contains("::") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A type whose `core` trait impls a cell may call.
fn allowed_type(ty: &str) -> bool {
    let mut ty = ty.trim();
    for prefix in ["&mut ", "&", "*const ", "*mut ", "dyn ", "["] {
        if let Some(rest) = ty.strip_prefix(prefix) {
            ty = rest.trim();
        }
    }
    let ty = ty.trim_end_matches(']');
    let name = base_name(ty);
    // Primitive types (`u64`, `str`, ...) and the unit or tuple types.
    primitive(name)
        || ty.starts_with('(')
        || is_std(ty)
        || ty.starts_with("tessera_cell_api::")
        || ty.starts_with("framekernel_logic::")
        || BASE_TYPES.contains(&name)
}

/// True when a cell may import the item at `path` (demangled).
pub fn allowed(path: &str) -> bool {
    if BUILTINS.contains(&path) || ALLOCATOR.contains(&path) || OTHER.contains(&path) || BASE_FUNCTIONS.contains(&path) {
        return true;
    }
    if let Some((ty, as_trait, _)) = split_qualified(path) {
        return match as_trait {
            // A trait impl: a `core`/`alloc` trait on an allowed type.
            Some(tr) => is_std(tr) && allowed_type(ty),
            // An inherent method: of a `core`/`alloc` type, of a
            // primitive type (defined in `core`, as `<u32>::_fmt`), or of
            // a base handle.
            None => is_std(ty) || primitive(ty) || BASE_TYPES.contains(&base_name(ty)),
        };
    }
    if is_std(path) || path.starts_with("tessera_cell_api::") {
        return true;
    }
    // A method of a base handle type, as legacy mangling spells it.
    path.rsplit_once("::").is_some_and(|(owner, _)| BASE_TYPES.contains(&owner))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every import of the real cells (`nm -u build/cell-objects/*.o`).
    const REAL: &[&str] = &[
        "_RNvCsfLfy6EI15iL_7___rustc12___rust_alloc",
        "_RNvCsfLfy6EI15iL_7___rustc14___rust_dealloc",
        "_RNvCsfLfy6EI15iL_7___rustc14___rust_realloc",
        "_RNvCsfLfy6EI15iL_7___rustc19___rust_alloc_zeroed",
        "_RNvCsfLfy6EI15iL_7___rustc35___rust_no_alloc_shim_is_unstable_v2",
        "_RNvMs3_NtCsfySoobUK4LL_5alloc7raw_vecINtB5_6RawVechE8grow_oneB7_",
        // `<u32>::_fmt`: an inherent method of a primitive type (procfs).
        "_RNvMsa_NtNtNtCsg3SjgaGcPXb_4core3fmt3num3impm4__fmt",
        "_RNvMsa_NtCsg3SjgaGcPXb_4core3fmtNtB5_9Formatter26debug_struct_field1_finish",
        "_RNvMsa_NtCsg3SjgaGcPXb_4core3fmtNtB5_9Formatter26debug_struct_field2_finish",
        "_RNvMsa_NtCsg3SjgaGcPXb_4core3fmtNtB5_9Formatter26debug_struct_field3_finish",
        "_RNvNtCsfySoobUK4LL_5alloc5alloc18handle_alloc_error",
        "_RNvNtCsfySoobUK4LL_5alloc7raw_vec12handle_error",
        "_RNvNtCsg3SjgaGcPXb_4core6option13expect_failed",
        "_RNvNtCsg3SjgaGcPXb_4core6option13unwrap_failed",
        "_RNvNtCsg3SjgaGcPXb_4core9panicking18panic_bounds_check",
        "_RNvNtCsg3SjgaGcPXb_4core9panicking5panic",
        "_RNvNtCsg3SjgaGcPXb_4core9panicking9panic_fmt",
        "_RNvNtNtCsg3SjgaGcPXb_4core5slice5index16slice_index_fail",
        "_RNvNtNtCsg3SjgaGcPXb_4core9panicking11panic_const23panic_const_rem_by_zero",
        "_RNvNvNtCsfySoobUK4LL_5alloc3fmt6format12format_inner",
        "_RNvXs3_NtNtNtCsg3SjgaGcPXb_4core3fmt3num3imptNtB9_7Display3fmt",
        "_RNvXs4_NtCsfySoobUK4LL_5alloc6stringNtB5_6StringNtNtCsg3SjgaGcPXb_4core5clone5Clone5clone",
        "_RNvXsC_NtNtCsg3SjgaGcPXb_4core3fmt3numyNtB7_8LowerHex3fmt",
        "_RNvXsd_NtNtNtCsg3SjgaGcPXb_4core3fmt3num3impyNtB9_7Display3fmt",
        "_RNvXsh_NtCsg3SjgaGcPXb_4core3fmteNtB5_5Debug3fmt",
        "_RNvXsi_NtCsg3SjgaGcPXb_4core3fmteNtB5_7Display3fmt",
        "_RNvXsi_NtNtNtCsg3SjgaGcPXb_4core3fmt3num3impjNtB9_7Display3fmt",
        "_RNvXsm_NtNtCsg3SjgaGcPXb_4core3fmt3numtNtB7_8LowerHex3fmt",
        "_RNvXso_NtNtCsg3SjgaGcPXb_4core3fmt3numtNtB7_8UpperHex3fmt",
        "_ZN11framekernel2io7IoPorts7acquire17hda09223299191a98E",
        "_ZN11framekernel2mm3dma9DmaBuffer3new17h1a4ac7878046ebc8E",
        "_ZN11framekernel3pci7devices17hdbd23312f1955fb1E",
        "_ZN11framekernel3pci9PciDevice5claim17h635119d683038b55E",
        "_ZN11framekernel3pci9PciDevice6enable17ha1336ee291f8d4c0E",
        "_ZN11framekernel3pci9PciDevice8io_ports17h588a2ef7fc66ae65E",
        "_ZN11framekernel4time6now_ns17h59da3b88288a2978E",
        "_ZN11framekernel5debug7provoke17h55133368b52f431eE",
        "_ZN11framekernel7console10claim_uart17h9093c18d1f08af91E",
        "_ZN16tessera_cell_api3tty7Termios10from_bytes17h000e56257f57985cE",
        "_ZN16tessera_cell_api3tty7Termios8to_bytes17he61243ae0b19283bE",
        "_ZN3log20MAX_LOG_LEVEL_FILTER17h3c1f522e4e8abe5eE",
        "_ZN61_$LT$log..__private_api..GlobalLogger$u20$as$u20$log..Log$GT$3log17h28f72fd2d7070c72E",
        "_ZN65_$LT$framekernel..pci..PciError$u20$as$u20$core..fmt..Display$GT$3fmt17h00f96a34be4bb3c7E",
        "_ZN66_$LT$framekernel..io..IoPorts$u20$as$u20$core..ops..drop..Drop$GT$4drop17hbe3815cde72d90c3E",
        "_ZN69_$LT$framekernel..pci..PciDevice$u20$as$u20$core..ops..drop..Drop$GT$4drop17h18be517b91079e79E",
        "_ZN73_$LT$framekernel..mm..dma..DmaBuffer$u20$as$u20$core..ops..drop..Drop$GT$4drop17h18917da80ef40bdbE",
        "_ZN73_$LT$framekernel_logic..pci..PciAddress$u20$as$u20$core..fmt..Display$GT$3fmt17h84e31eb4e8f3f3adE",
        "_ZN73_$LT$tessera_cell_api..tty..Termios$u20$as$u20$core..default..Default$GT$7default17h8cafc40b67fd852aE",
        "_ZN74_$LT$framekernel..mm..dma..DmaOutOfRange$u20$as$u20$core..fmt..Display$GT$3fmt17h2ec3a3223d1fa67eE",
        "_ZN75_$LT$framekernel..mm..frames..OutOfMemory$u20$as$u20$core..fmt..Display$GT$3fmt17h5ce7a2747fe1ea84E",
        "memcpy",
        "memmove",
        "memset",
    ];

    #[test]
    fn the_real_cells_imports_are_allowed() {
        for name in REAL {
            assert_eq!(check(name), Ok(()), "{name} = {}", demangle(name));
        }
    }

    #[test]
    fn registration_and_kernel_state_are_refused_by_demangled_name() {
        for (name, path) in [
            ("_ZN13tessera_linux5block8add_disk17h0123456789abcdefE", "tessera_linux::block::add_disk"),
            ("_ZN19tessera_live_update4slot8register17h0123456789abcdefE", "tessera_live_update::slot::register"),
            ("_ZN11framekernel3irq8register17h0123456789abcdefE", "framekernel::irq::register"),
            ("_ZN11framekernel4time7on_tick17h0123456789abcdefE", "framekernel::time::on_tick"),
            ("_ZN11framekernel7console10set_driver17h0123456789abcdefE", "framekernel::console::set_driver"),
            ("_ZN11framekernel4task9new_stack17h0123456789abcdefE", "framekernel::task::new_stack"),
            ("_ZN13tessera_sched5spawn17h0123456789abcdefE", "tessera_sched::spawn"),
            ("_ZN3log10set_logger17h0123456789abcdefE", "log::set_logger"),
            ("_ZN11framekernel7symbols5TABLE17h0123456789abcdefE", "framekernel::symbols::TABLE"),
            ("tessera_cell_call", "tessera_cell_call"),
            // A trait impl of a kernel type that is not a base handle.
            (
                "_ZN68_$LT$tessera_linux..block..Disk$u20$as$u20$core..ops..drop..Drop$GT$4drop17h0123456789abcdefE",
                "<tessera_linux::block::Disk as core::ops::drop::Drop>::drop",
            ),
            // A non-core trait on a base type.
            (
                "_ZN64_$LT$framekernel..io..IoPorts$u20$as$u20$tessera_linux..Hook$GT$3run17h0123456789abcdefE",
                "<framekernel::io::IoPorts as tessera_linux::Hook>::run",
            ),
        ] {
            assert_eq!(check(name), Err(path.into()), "{name}");
        }
    }

    #[test]
    fn inherent_methods_of_primitives_are_core_and_of_kernel_types_are_not() {
        assert!(allowed("<u32>::_fmt"));
        assert!(allowed("<str>::trim"));
        assert!(!allowed("<tessera_linux::block::Disk>::read"));
        assert!(!allowed("<tessera_linux::block::Disk<u32>>::read"));
        assert!(!allowed("<>::x"));
    }

    #[test]
    fn qualified_paths_split_at_the_right_angle_bracket() {
        assert_eq!(
            split_qualified("<alloc::vec::Vec<u8> as core::fmt::Write>::write_str"),
            Some(("alloc::vec::Vec<u8>", Some("core::fmt::Write"), "write_str"))
        );
        assert_eq!(split_qualified("<alloc::raw_vec::RawVec<u8>>::grow_one"), Some(("alloc::raw_vec::RawVec<u8>", None, "grow_one")));
        assert_eq!(split_qualified("core::fmt::write"), None);
        assert_eq!(split_qualified("<broken"), None);
        assert!(allowed("<framekernel::pci::PciDevice>::enable"));
        assert!(!allowed("<framekernel::irq::Handlers>::add"));
    }
}
