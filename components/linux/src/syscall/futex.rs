//! `futex`: wait until a word changes, and wake waiters. A private futex
//! (or any futex in private memory) is keyed by address space and address;
//! a shared one in a `MAP_SHARED` area by the page's frame and the offset
//! in it, so processes that map the page at different addresses (or that
//! forked) wake each other, as Linux keys them by page.
//!
//! Waiters sleep on the same queue as timed sleeps, so timeouts need no
//! extra timer; a wake-up wakes that queue and each waiter re-checks
//! whether it was chosen. Simple, and fine while there are few waiters.

use super::proc::{NEXT_WAKE, SLEEPERS};
use crate::errno::{Errno, SysResult};
use crate::memory::Memory;
use crate::process::Process;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use framekernel::mm::Frame;
use framekernel::sync::SpinLock;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// What identifies a futex word.
#[derive(Clone, PartialEq, Eq)]
enum Key {
    /// Address space and address.
    Private(usize, u64),
    /// Shared page (its frame's identity) and offset.
    Shared(usize, u64),
}

struct Waiter {
    key: Key,
    /// Keeps a shared key's frame alive, so its identity is not reused
    /// while the waiter waits.
    _frame: Option<Arc<Frame>>,
    bitset: u32,
    woken: Arc<AtomicBool>,
}

/// The key of the word at `addr`; `private` for `FUTEX_PRIVATE_FLAG`.
fn key(memory: &Memory, addr: u64, private: bool) -> Result<(Key, Option<Arc<Frame>>), Errno> {
    if !private && let Some(frame) = memory.shared_frame(addr)? {
        return Ok((Key::Shared(Arc::as_ptr(&frame) as usize, addr % 4096), Some(frame)));
    }
    Ok((Key::Private(memory.id(), addr), None))
}

static WAITERS: SpinLock<Vec<Waiter>> = SpinLock::new(Vec::new());

/// Futex waiters without a time limit (woken by futex wakes only, so the
/// sleeps and pollers that share `SLEEPERS` do not wake them all).
static UNTIMED: tessera_sched::WaitQueue = tessera_sched::WaitQueue::new();

/// Wakes up to `count` waiters on `addr` in `memory` (a shared futex, as
/// the `CLONE_CHILD_CLEARTID` wake is); returns how many.
pub fn wake(memory: &Memory, addr: u64, count: u64) -> u64 {
    match key(memory, addr, false) {
        Ok((key, _frame)) => wake_bitset(&key, count, u32::MAX),
        Err(_) => 0,
    }
}

fn wake_bitset(key: &Key, count: u64, bitset: u32) -> u64 {
    let mut woken = 0;
    WAITERS.lock().retain(|w| {
        if woken < count && w.key == *key && w.bitset & bitset != 0 {
            w.woken.store(true, Ordering::SeqCst);
            woken += 1;
            false
        } else {
            true
        }
    });
    if woken > 0 {
        UNTIMED.wake_all();
        SLEEPERS.wake_all();
    }
    woken
}

pub(super) fn futex(p: &mut Process, addr: u64, op: u64, val: u64, timeout: u64, val3: u64) -> SysResult {
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let private = op & FUTEX_PRIVATE_FLAG != 0;
    match cmd {
        FUTEX_WAKE => Ok(wake_bitset(&key(&p.memory, addr, private)?.0, val, u32::MAX)),
        FUTEX_WAKE_BITSET => {
            if val3 as u32 == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(wake_bitset(&key(&p.memory, addr, private)?.0, val, val3 as u32))
        }
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT { u32::MAX } else { val3 as u32 };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let now = framekernel::time::now_ns();
            let deadline = match timeout {
                0 => u64::MAX,
                t if cmd == FUTEX_WAIT => now.saturating_add(super::proc::read_timespec(p, t)?),
                t => {
                    // WAIT_BITSET takes an absolute time on the chosen clock.
                    let absolute = super::proc::read_timespec(p, t)?;
                    if op & FUTEX_CLOCK_REALTIME != 0 {
                        absolute.saturating_sub(framekernel::time::realtime_ns().saturating_sub(now))
                    } else {
                        absolute
                    }
                }
            };
            // Compare and enqueue with nothing else running in between
            // (the kernel is not preempted).
            let mut word = [0u8; 4];
            p.memory.read(addr, &mut word)?;
            if u32::from_le_bytes(word) != val as u32 {
                return Err(Errno::EAGAIN);
            }
            let woken = Arc::new(AtomicBool::new(false));
            let (key, frame) = key(&p.memory, addr, private)?;
            WAITERS.lock().push(Waiter { key, _frame: frame, bitset, woken: woken.clone() });
            let interrupted = p.interrupt_check();
            // Untimed waits sleep where only futex wakes (and signals) reach
            // them; timed ones where the timer tick finds them.
            let queue = if deadline == u64::MAX { &UNTIMED } else { &SLEEPERS };
            let result = queue.wait_until(|| {
                if woken.load(Ordering::SeqCst) {
                    return Some(Ok(0));
                }
                if interrupted() {
                    return Some(Err(Errno::EINTR));
                }
                if framekernel::time::now_ns() >= deadline {
                    return Some(Err(Errno::ETIMEDOUT));
                }
                NEXT_WAKE.fetch_min(deadline, Ordering::Relaxed);
                None
            });
            if result.is_err() {
                WAITERS.lock().retain(|w| !Arc::ptr_eq(&w.woken, &woken));
            }
            result
        }
        _ => Err(Errno::ENOSYS),
    }
}
