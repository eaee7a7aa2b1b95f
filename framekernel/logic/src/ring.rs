//! A fixed-size byte ring, for input that arrives in interrupt handlers.

/// Holds up to `N - 1` bytes; pushing into a full ring drops the byte and
/// counts it, so input from a device can never block or allocate.
pub struct ByteRing<const N: usize> {
    bytes: [u8; N],
    head: usize,
    tail: usize,
    dropped: u64,
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self { bytes: [0; N], head: 0, tail: 0, dropped: 0 }
    }

    /// Appends `byte`; returns false (and counts a drop) when full.
    pub fn push(&mut self, byte: u8) -> bool {
        let next = (self.head + 1) % N;
        if next == self.tail {
            self.dropped += 1;
            return false;
        }
        if let Some(slot) = self.bytes.get_mut(self.head) {
            *slot = byte;
        }
        self.head = next;
        true
    }

    /// Removes the oldest byte.
    pub fn pop(&mut self) -> Option<u8> {
        if self.head == self.tail {
            return None;
        }
        let byte = self.bytes.get(self.tail).copied();
        self.tail = (self.tail + 1) % N;
        byte
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        (self.head + N - self.tail) % N
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    /// Bytes dropped because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_wraps_and_drops_when_full() {
        let mut r: ByteRing<4> = ByteRing::new();
        assert!(r.push(1) && r.push(2) && r.push(3));
        assert!(!r.push(4));
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.len(), 3);
        assert_eq!(r.pop(), Some(1));
        assert!(r.push(5));
        assert_eq!((r.pop(), r.pop(), r.pop(), r.pop()), (Some(2), Some(3), Some(5), None));
        assert!(r.is_empty());
    }
}
