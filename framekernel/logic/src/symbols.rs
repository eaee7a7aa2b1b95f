//! Naming code addresses: which crate a demangled Rust symbol belongs to.

/// The crate a demangled symbol path belongs to, where it can be told:
/// `framekernel::arch::trap::dispatch` → `framekernel`;
/// `<kernel::Foo as core::fmt::Write>::write_str` → `kernel`;
/// `_start32` (assembly, no path) → `None`.
pub fn crate_of(demangled: &str) -> Option<&str> {
    let mut path = demangled.trim_start();
    // Trait impls: `<Type as Trait>::method` belongs to the crate of Type,
    // unless Type is a primitive or a reference, where it falls to the trait.
    while let Some(rest) = path.strip_prefix('<') {
        path = rest.trim_start_matches(['&', '*']).trim_start_matches("mut ").trim_start_matches("const ");
    }
    let end = path.find("::")?;
    let name = path.get(..end)?;
    let is_ident = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_ident.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_crate() {
        assert_eq!(crate_of("framekernel::arch::trap::dispatch"), Some("framekernel"));
        assert_eq!(crate_of("<tessera_kernel::Monitor as core::fmt::Write>::write_str"), Some("tessera_kernel"));
        assert_eq!(crate_of("<&mut alloc::vec::Vec<u8> as core::fmt::Debug>::fmt"), Some("alloc"));
        assert_eq!(crate_of("core::panicking::panic"), Some("core"));
        assert_eq!(crate_of("_start32"), None);
        assert_eq!(crate_of("<[T]>::len"), None);
        assert_eq!(crate_of(""), None);
    }
}
