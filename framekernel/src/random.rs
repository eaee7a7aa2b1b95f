//! Random bytes for the kernel and for `getrandom`.
//!
//! Uses the CPU's RDRAND when it has one (QEMU `-cpu max` does); otherwise
//! a SplitMix64 stream seeded from the TSC, which is unpredictable enough
//! for address-space randomisation and hash seeds but not for cryptography
//! (reported once in the log).

use core::sync::atomic::{AtomicU64, Ordering};

static STATE: AtomicU64 = AtomicU64::new(0);
static HAS_RDRAND: spin::Once<bool> = spin::Once::new();

fn rdrand() -> Option<u64> {
    let has = *HAS_RDRAND.call_once(|| {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        let has = leaf1.ecx & (1 << 30) != 0;
        if !has {
            log::warn!("no RDRAND: random bytes come from a TSC-seeded generator, not fit for cryptography");
        }
        has
    });
    if !has {
        return None;
    }
    for _ in 0..10 {
        let mut value = 0u64;
        // SAFETY: RDRAND exists on this CPU (CPUID checked above) and only
        // writes `value`.
        if unsafe { core::arch::x86_64::_rdrand64_step(&mut value) } == 1 {
            return Some(value);
        }
    }
    None
}

fn splitmix() -> u64 {
    let mut seed = STATE.load(Ordering::Relaxed);
    if seed == 0 {
        seed = crate::arch::rdtsc() | 1;
    }
    let next = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    STATE.store(next, Ordering::Relaxed);
    let mut z = next;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31) ^ crate::arch::rdtsc().rotate_left(17)
}

/// A random 64-bit value.
pub fn next_u64() -> u64 {
    rdrand().unwrap_or_else(splitmix)
}

/// Fills `out` with random bytes.
pub fn fill(out: &mut [u8]) {
    for chunk in out.chunks_mut(8) {
        let bytes = next_u64().to_le_bytes();
        chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or(&[]));
    }
}
