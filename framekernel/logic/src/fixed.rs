//! `FixedVec`: a vector with capacity fixed at compile time, for data parsed
//! before the kernel heap exists.

use core::fmt;

/// Error returned when a [`FixedVec`] is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityError {
    /// The fixed capacity that was exceeded.
    pub capacity: usize,
}

/// A vector of at most `N` elements stored inline.
#[derive(Clone, Copy)]
pub struct FixedVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy, const N: usize> FixedVec<T, N>
where
    T: Default,
{
    /// An empty vector usable in `const` context (for statics); `T` must
    /// still be `Default` for the other methods.
    pub const fn new_const() -> Self
    where
        T: ConstDefault,
    {
        Self { items: [T::DEFAULT; N], len: 0 }
    }
}

/// A `Default` available in `const` context.
pub trait ConstDefault {
    /// The default value.
    const DEFAULT: Self;
}

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// An empty vector.
    pub fn new() -> Self {
        Self { items: [T::default(); N], len: 0 }
    }

    /// Appends `value`, or fails when all `N` places are taken.
    pub fn push(&mut self, value: T) -> Result<(), CapacityError> {
        let slot = self.items.get_mut(self.len).ok_or(CapacityError { capacity: N })?;
        *slot = value;
        self.len += 1;
        Ok(())
    }

    /// Removes the element at `index`, shifting later ones down.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        if index >= self.len {
            return None;
        }
        let value = self.items.get(index).copied();
        self.items.copy_within(index + 1..self.len, index);
        self.len -= 1;
        value
    }

    /// Inserts `value` at `index` (at most `len`), shifting later ones up.
    pub fn insert(&mut self, index: usize, value: T) -> Result<(), CapacityError> {
        if self.len >= N || index > self.len {
            return Err(CapacityError { capacity: N });
        }
        self.items.copy_within(index..self.len, index + 1);
        if let Some(slot) = self.items.get_mut(index) {
            *slot = value;
        }
        self.len += 1;
        Ok(())
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The elements as a slice.
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// The elements as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len;
        self.items.get_mut(..len).unwrap_or(&mut [])
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the elements.
    pub fn iter(&self) -> core::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<'a, T: Copy + Default, const N: usize> IntoIterator for &'a FixedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A string of at most `N` bytes stored inline (UTF-8 checked on the way in).
#[derive(Clone, Copy)]
pub struct FixedString<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedString<N> {
    /// An empty string.
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// Copies the longest prefix of `text` that fits, cut at a character boundary.
    pub fn truncated(text: &str) -> Self {
        let mut end = text.len().min(N);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self::copy_from(text.get(..end).unwrap_or("")).unwrap_or_default()
    }

    /// Copies `text`, or fails when it is longer than `N` bytes.
    pub fn copy_from(text: &str) -> Result<Self, CapacityError> {
        let mut out = Self::new();
        let dest = out.bytes.get_mut(..text.len()).ok_or(CapacityError { capacity: N })?;
        dest.copy_from_slice(text.as_bytes());
        out.len = text.len();
        Ok(out)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `&str` values are ever copied in, so this cannot fail.
        core::str::from_utf8(self.bytes.get(..self.len).unwrap_or(&[])).unwrap_or("")
    }
}

impl<const N: usize> Default for FixedString<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Debug for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_until_full() {
        let mut v: FixedVec<u32, 2> = FixedVec::new();
        assert!(v.push(1).is_ok());
        assert!(v.push(2).is_ok());
        assert_eq!(v.push(3), Err(CapacityError { capacity: 2 }));
        assert_eq!(v.as_slice(), &[1, 2]);
    }

    #[test]
    fn insert_and_remove_keep_order() {
        let mut v: FixedVec<u32, 4> = FixedVec::new();
        v.push(1).unwrap();
        v.push(3).unwrap();
        v.insert(1, 2).unwrap();
        assert_eq!(v.as_slice(), &[1, 2, 3]);
        assert_eq!(v.remove(0), Some(1));
        assert_eq!(v.as_slice(), &[2, 3]);
        assert_eq!(v.remove(5), None);
        assert!(v.insert(3, 9).is_err());
    }

    #[test]
    fn fixed_string_rejects_long_text() {
        assert_eq!(FixedString::<4>::copy_from("abcd").unwrap().as_str(), "abcd");
        assert!(FixedString::<4>::copy_from("abcde").is_err());
        assert_eq!(FixedString::<4>::truncated("abcde").as_str(), "abcd");
        assert_eq!(FixedString::<4>::truncated("abcé").as_str(), "abc");
    }
}
