//! What may cross a cell call: the argument a cell call takes ([`Arg`]),
//! what it returns ([`Ret`]), and the plain data both are built from
//! ([`Plain`]). Part of the trusted base: a call that faults is abandoned
//! without unwinding, and these traits are what makes that sound for the
//! caller (docs/soundness.md, "The cell boundary"). `framekernel::cell`
//! re-exports them; interfaces admit their own structs and enums with
//! [`cell_data!`].
//!
//! A crate of its own (not a module of `framekernel`) because cell-api
//! and the host-tested cells need it, and `framekernel` builds only for
//! the kernel target.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

/// Plain data: integers and arrays of them. Every bit pattern is a valid
/// value, there is no pointer, reference, interior mutability or drop
/// glue, so a value a faulted call left half-written is still a value.
///
/// # Safety
///
/// Implement only for such types (the base does, for the integers and
/// arrays of plain data).
pub unsafe trait Plain: Copy + 'static {}

/// What may cross into a cell call ([`Instance::call`]'s argument). A
/// faulted call abandons it: what it owns leaks, what it borrows may be
/// left half-written. So it owns only [`Ret`] data (which nobody else can
/// see), or borrows shared data that cannot be changed through the borrow
/// (`&[T]`, `&str`), or borrows exclusively plain data (`&mut [T]` of
/// [`Plain`] `T`), never anything whose half-written state would break an
/// invariant (a `&mut Vec`, a lock, a reference that could be torn).
///
/// # Safety
///
/// Implement only for such types: the base does for the standard ones,
/// and [`cell_data!`] for an interface's own structs and
/// enums, after checking each field.
pub unsafe trait Arg {}

/// What may come back from a cell call: owned data with no reference,
/// pointer, trait object or shared ownership, so nothing in it points into
/// the cell (whose code and statics may go away) or at state the cell keeps.
///
/// # Safety
///
/// Implement only for such types (see [`Arg`]).
pub unsafe trait Ret: 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        // SAFETY: an integer: every bit pattern valid, no pointers, no drop.
        unsafe impl Plain for $t {}
        // SAFETY: plain owned data (see `Plain`).
        unsafe impl Arg for $t {}
        // SAFETY: plain owned data.
        unsafe impl Ret for $t {}
    )*};
}
plain!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

macro_rules! owned {
    ($($t:ty),*) => {$(
        // SAFETY: owned, complete values with no pointer into anything
        // shared: a value moved into a faulted call leaks whole.
        unsafe impl Arg for $t {}
        // SAFETY: as above; nothing in it refers to the cell.
        unsafe impl Ret for $t {}
    )*};
}
owned!((), bool, char, String);

// SAFETY: an array of plain data is plain data.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}
// SAFETY: owned plain data.
unsafe impl<T: Plain, const N: usize> Arg for [T; N] {}
// SAFETY: owned plain data.
unsafe impl<T: Plain, const N: usize> Ret for [T; N] {}
// SAFETY: an owned buffer of plain data: leaks whole on a fault.
unsafe impl<T: Plain> Arg for Vec<T> {}
// SAFETY: owned, unshared, points only at its own heap block.
unsafe impl<T: Plain> Ret for Vec<T> {}
// SAFETY: as for `Vec`.
unsafe impl<T: Plain> Arg for Box<[T]> {}
// SAFETY: as for `Vec`.
unsafe impl<T: Plain> Ret for Box<[T]> {}
// SAFETY: nothing can be written through a shared borrow of plain data
// (no interior mutability); the borrow ends with the call.
unsafe impl<T: Plain> Arg for &[T] {}
// SAFETY: as above; a `str` cannot be changed through `&str`.
unsafe impl Arg for &str {}
// SAFETY: an exclusive borrow of plain data: any partial write leaves
// valid values; the reference itself is the caller's, never written.
unsafe impl<T: Plain> Arg for &mut [T] {}
// SAFETY: as above, for one plain value.
unsafe impl<T: Plain> Arg for &mut T {}
// SAFETY: as above, for one plain value, read only.
unsafe impl<T: Plain> Arg for &T {}
// SAFETY: a complete `Option` of an `Arg` is whatever its content is.
unsafe impl<T: Arg> Arg for Option<T> {}
// SAFETY: as above.
unsafe impl<T: Ret> Ret for Option<T> {}
// SAFETY: as above, for either side.
unsafe impl<T: Ret, E: Ret> Ret for Result<T, E> {}

macro_rules! tuples {
    ($(($($n:ident),+)),*) => {$(
        // SAFETY: each part is an `Arg`; a tuple adds no invariant between them.
        unsafe impl<$($n: Arg),+> Arg for ($($n,)+) {}
        // SAFETY: each part is a `Ret`.
        unsafe impl<$($n: Ret),+> Ret for ($($n,)+) {}
    )*};
}
tuples!((A), (A, B), (A, B, C), (A, B, C, D));

/// Checks, at compile time, that a field's type is [`Ret`] (used by
/// [`cell_data!`]).
#[doc(hidden)]
pub const fn assert_ret<T: Ret>(_: &T) {}

/// Declares an interface's struct or enum as data that may cross the cell
/// boundary both ways ([`Arg`] and [`Ret`]), after checking that every
/// field is itself [`Ret`]. List every field (a struct pattern without
/// `..` and an exhaustive match check that nothing is left out):
///
/// ```ignore
/// framekernel::cell_data!(struct DeviceInfo { description, sectors, read_only });
/// framekernel::cell_data!(enum BlockError { NoDevice(a), OutOfRange { sector, sectors }, Timeout });
/// ```
#[macro_export]
macro_rules! cell_data {
    (struct $ty:ident { $($field:ident),* $(,)? }) => {
        // SAFETY: every field is `Ret` (checked below, with a pattern that
        // must name them all), so the struct owns only such data.
        unsafe impl $crate::Arg for $ty {}
        // SAFETY: as above.
        unsafe impl $crate::Ret for $ty {}
        const _: () = {
            #[allow(dead_code, unused_variables)]
            fn check(value: &$ty) {
                let $ty { $($field),* } = value;
                $( $crate::assert_ret($field); )*
            }
        };
    };
    (enum $ty:ident { $($variant:ident $(( $($tf:ident),* ))? $({ $($sf:ident),* })?),* $(,)? }) => {
        // SAFETY: every field of every variant is `Ret` (checked below by
        // an exhaustive match naming them all).
        unsafe impl $crate::Arg for $ty {}
        // SAFETY: as above.
        unsafe impl $crate::Ret for $ty {}
        const _: () = {
            #[allow(dead_code, unused_variables)]
            fn check(value: &$ty) {
                match value {
                    $( $ty::$variant $(( $($tf),* ))? $({ $($sf),* })? => {
                        $( $( $crate::assert_ret($tf); )* )?
                        $( $( $crate::assert_ret($sf); )* )?
                    } )*
                }
            }
        };
    };
}

/// An interface cells offer: what a cell exporting it returns from its
/// entry (`Export`), its name, and a fingerprint of its definition. The
/// base calls a cell's entry as `fn() -> Export` once the signed file's
/// fingerprint equals `FINGERPRINT`, so this pairing is what makes that
/// call well typed.
///
/// # Safety
///
/// `FINGERPRINT` must identify the definition of `Export`: it is
/// `fingerprint(NAME, text)` of the source file that defines `Export` (and
/// everything it names), so two implementations share a fingerprint only
/// when they export the same definition. It is implemented once per
/// interface, in `framekernel-interfaces` (part of the trusted base).
pub unsafe trait Interface: 'static {
    /// What a cell offering it exports (`Box<dyn BlockDriver>`).
    type Export: Send + Sync + 'static;
    /// Its name (the cell header's interface field).
    const NAME: &'static str;
    /// A hash of its definition and name.
    const FINGERPRINT: [u8; 32];
}

/// The fingerprint of interface `name` defined by `source`: four FNV-1a
/// 64-bit hashes with different seeds over the name and the text. Not a
/// cryptographic hash (the file that carries it is signed); it changes
/// whenever the definition's text does.
pub const fn fingerprint(name: &str, source: &str) -> [u8; 32] {
    const fn fnv(mut h: u64, mut bytes: &[u8]) -> u64 {
        while let [first, rest @ ..] = bytes {
            h ^= *first as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            bytes = rest;
        }
        h
    }
    const fn lane(seed: u64, name: &str, source: &str) -> [u8; 8] {
        let h = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        fnv(fnv(fnv(h, name.as_bytes()), b"\0"), source.as_bytes()).to_le_bytes()
    }
    let (a, b, c, d) = (lane(1, name, source), lane(2, name, source), lane(3, name, source), lane(4, name, source));
    [
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], //
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
    ]
}
