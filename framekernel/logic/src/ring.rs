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

/// A fixed-size log buffer that keeps the newest `N` bytes, overwriting the
/// oldest (for `dmesg`).
pub struct LogRing<const N: usize> {
    bytes: [u8; N],
    /// Total bytes ever written.
    written: u64,
}

impl<const N: usize> LogRing<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; N], written: 0 }
    }

    /// Appends `data`, dropping the oldest bytes beyond `N`.
    pub fn push(&mut self, data: &[u8]) {
        for &b in data {
            if let Some(slot) = self.bytes.get_mut((self.written % N as u64) as usize) {
                *slot = b;
            }
            self.written += 1;
        }
    }

    /// Bytes held now.
    pub fn len(&self) -> usize {
        self.written.min(N as u64) as usize
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Copies the held bytes, oldest first, into `out`; returns the count.
    pub fn copy_to(&self, out: &mut [u8]) -> usize {
        let held = self.len();
        let start = self.written - held as u64;
        let n = held.min(out.len());
        for (i, slot) in out.iter_mut().take(n).enumerate() {
            *slot = self.bytes.get(((start + i as u64) % N as u64) as usize).copied().unwrap_or(0);
        }
        n
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes() {
        let mut ring: LogRing<8> = LogRing::new();
        assert!(ring.is_empty());
        ring.push(b"abc");
        let mut out = [0u8; 16];
        assert_eq!(ring.copy_to(&mut out), 3);
        assert_eq!(&out[..3], b"abc");
        ring.push(b"defghijk");
        assert_eq!(ring.len(), 8);
        let n = ring.copy_to(&mut out);
        assert_eq!(&out[..n], b"defghijk");
        let mut small = [0u8; 3];
        assert_eq!(ring.copy_to(&mut small), 3);
        assert_eq!(&small, b"def");
    }
}
