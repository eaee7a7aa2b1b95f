//! `futex`: wait until a word changes, and wake waiters. A private futex
//! (or any futex in private memory) is keyed by address space and address;
//! a shared one in a `MAP_SHARED` area by the page's frame and the offset
//! in it, so processes that map the page at different addresses (or that
//! forked) wake each other, as Linux keys them by page.
//!
//! A waiter is listed with its task; a wake marks the chosen waiters and
//! wakes exactly their tasks (a timed wait also sets an alarm for its
//! deadline). `FUTEX_REQUEUE`/`FUTEX_CMP_REQUEUE` move waiters to another
//! word; `FUTEX_WAKE_OP` changes a second word and wakes on both.

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
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
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
    /// The waiting task, woken directly.
    task: Arc<framekernel::task::Task>,
}

/// The key of the word at `addr`; `private` for `FUTEX_PRIVATE_FLAG`.
fn key(memory: &Memory, addr: u64, private: bool) -> Result<(Key, Option<Arc<Frame>>), Errno> {
    if !private && let Some(frame) = memory.shared_frame(addr)? {
        return Ok((Key::Shared(Arc::as_ptr(&frame) as usize, addr % 4096), Some(frame)));
    }
    Ok((Key::Private(memory.id(), addr), None))
}

static WAITERS: SpinLock<Vec<Waiter>> = SpinLock::new(Vec::new());


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
    let mut tasks = Vec::new();
    WAITERS.lock().retain(|w| {
        if woken < count && w.key == *key && w.bitset & bitset != 0 {
            w.woken.store(true, Ordering::SeqCst);
            tasks.push(w.task.clone());
            woken += 1;
            false
        } else {
            true
        }
    });
    // Exactly the woken waiters run again (no herd of other waiters).
    for task in &tasks {
        tessera_sched::wake(task);
    }
    woken
}

/// Wakes up to `wakes` waiters on `from` and moves up to `moves` more to
/// `to` (keeping `frame`, the page of a shared `to`, alive); returns how
/// many were woken and moved.
fn requeue(from: &Key, to: &Key, frame: Option<Arc<Frame>>, wakes: u64, moves: u64) -> u64 {
    let woken = wake_bitset(from, wakes, u32::MAX);
    let mut moved = 0;
    for w in WAITERS.lock().iter_mut() {
        if moved < moves && w.key == *from {
            w.key = to.clone();
            w._frame = frame.clone();
            moved += 1;
        }
    }
    woken + moved
}

/// `FUTEX_WAKE_OP`: `*addr2 = *addr2 OP oparg`, wake `val` waiters on
/// `addr`, and `val2` on `addr2` if the old value compares true.
fn wake_op(p: &mut Process, addr: u64, addr2: u64, val: u64, val2: u64, encoded: u32, private: bool) -> SysResult {
    let (op, cmp) = ((encoded >> 28) & 15, (encoded >> 24) & 15);
    let sign12 = |v: u32| ((v << 20) as i32) >> 20;
    let (mut oparg, cmparg) = (sign12((encoded >> 12) & 0xfff), sign12(encoded & 0xfff));
    if op & 8 != 0 {
        oparg = if (0..32).contains(&oparg) { 1 << oparg } else { 0 };
    }
    if cmp > 5 || op & 7 > 4 {
        return Err(Errno::ENOSYS);
    }
    if !addr2.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let key1 = key(&p.memory, addr, private)?.0;
    let key2 = key(&p.memory, addr2, private)?.0;
    // Read, change and write atomically (threads on other processors may
    // change the word meanwhile: compare-exchange until it stays put).
    let mut word = [0u8; 4];
    p.memory.read(addr2, &mut word)?;
    let mut old = i32::from_le_bytes(word);
    loop {
        let new = match op & 7 {
            0 => oparg,
            1 => old.wrapping_add(oparg),
            2 => old | oparg,
            3 => old & !oparg,
            _ => old ^ oparg,
        };
        let held = p.memory.compare_exchange_u32(addr2, old as u32, new as u32)? as i32;
        if held == old {
            break;
        }
        old = held;
    }
    let mut woken = wake_bitset(&key1, val, u32::MAX);
    let hit = match cmp {
        0 => old == cmparg,
        1 => old != cmparg,
        2 => old < cmparg,
        3 => old <= cmparg,
        4 => old > cmparg,
        _ => old >= cmparg,
    };
    if hit {
        woken += wake_bitset(&key2, val2, u32::MAX);
    }
    Ok(woken)
}

/// `futex_waitv(waiters, count, flags, timeout, clock)`: waits on up to
/// 128 words at once (`struct futex_waitv`: value, address, `FUTEX_32`
/// with an optional private flag); EAGAIN if a word already differs;
/// returns the index of a woken one. The time-out is absolute on
/// CLOCK_MONOTONIC or CLOCK_REALTIME.
pub(super) fn futex_waitv(p: &mut Process, list: u64, count: u64, flags: u64, timeout: u64, clock: u64) -> SysResult {
    const FUTEX_32: u32 = 2;
    if flags != 0 || count == 0 || count > 128 || list == 0 {
        return Err(Errno::EINVAL);
    }
    let deadline = if timeout == 0 {
        u64::MAX
    } else {
        let now = framekernel::time::now_ns();
        let absolute = super::proc::read_timespec(p, timeout)?;
        match clock {
            1 => absolute,
            0 => absolute.saturating_sub(framekernel::time::realtime_ns().saturating_sub(now)),
            _ => return Err(Errno::EINVAL),
        }
    };
    let mut raw = alloc::vec![0u8; count as usize * 24];
    p.memory.read(list, &mut raw)?;
    let mut entries = Vec::new();
    for chunk in raw.chunks_exact(24) {
        let word = |at: usize| u64::from_le_bytes(chunk.get(at..at + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
        let (value, addr, bits) = (word(0), word(8), word(16));
        let (wflags, reserved) = (bits as u32, (bits >> 32) as u32);
        if reserved != 0 || wflags & !(FUTEX_32 | FUTEX_PRIVATE_FLAG as u32) != 0 || wflags & FUTEX_32 == 0 || !addr.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        if value > u64::from(u32::MAX) {
            return Err(Errno::EINVAL);
        }
        entries.push((addr, value as u32, wflags & FUTEX_PRIVATE_FLAG as u32 != 0));
    }
    // Enqueue on every word first, then compare them (as Linux): a wake
    // that comes while a later word is read is not lost.
    let mut flags_woken = Vec::new();
    let mut waiters = Vec::new();
    for &(addr, _, private) in &entries {
        let (key, frame) = key(&p.memory, addr, private)?;
        let woken = Arc::new(AtomicBool::new(false));
        flags_woken.push(woken.clone());
        waiters.push(Waiter { key, _frame: frame, bitset: u32::MAX, woken, task: framekernel::task::current() });
    }
    WAITERS.lock().extend(waiters);
    let forget = |flags: &Vec<Arc<AtomicBool>>| WAITERS.lock().retain(|w| !flags.iter().any(|f| Arc::ptr_eq(&w.woken, f)));
    for &(addr, value, _) in &entries {
        let mut word = [0u8; 4];
        let read = p.memory.read(addr, &mut word);
        if read.is_err() || u32::from_le_bytes(word) != value {
            forget(&flags_woken);
            if let Some(index) = flags_woken.iter().position(|w| w.load(Ordering::SeqCst)) {
                return Ok(index as u64); // woken while comparing
            }
            return Err(if read.is_err() { Errno::EFAULT } else { Errno::EAGAIN });
        }
    }
    let interrupted = p.interrupt_check();
    let _alarm = super::proc::Alarm::new(deadline);
    let result = tessera_sched::WaitQueue::new().wait_until(|| {
        if let Some(index) = flags_woken.iter().position(|w| w.load(Ordering::SeqCst)) {
            return Some(Ok(index as u64));
        }
        if interrupted() {
            return Some(Err(Errno::EINTR));
        }
        if framekernel::time::now_ns() >= deadline {
            return Some(Err(Errno::ETIMEDOUT));
        }
        None
    });
    WAITERS.lock().retain(|w| !flags_woken.iter().any(|f| Arc::ptr_eq(&w.woken, f)));
    result
}

pub(super) fn futex(p: &mut Process, addr: u64, op: u64, val: u64, timeout: u64, addr2: u64, val3: u64) -> SysResult {
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
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            // `timeout` carries the number to requeue (val2).
            if (val as i32) < 0 || (timeout as i32) < 0 {
                return Err(Errno::EINVAL);
            }
            if !addr2.is_multiple_of(4) {
                return Err(Errno::EINVAL);
            }
            let from = key(&p.memory, addr, private)?.0;
            let (to, frame) = key(&p.memory, addr2, private)?;
            if cmd == FUTEX_CMP_REQUEUE {
                let mut word = [0u8; 4];
                p.memory.read(addr, &mut word)?;
                if u32::from_le_bytes(word) != val3 as u32 {
                    return Err(Errno::EAGAIN);
                }
            }
            Ok(requeue(&from, &to, frame, u64::from(val as u32), u64::from(timeout as u32)))
        }
        FUTEX_WAKE_OP => wake_op(p, addr, addr2, u64::from(val as u32), u64::from(timeout as u32), val3 as u32, private),
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
            // Listed first, then compared: a waker on another processor
            // that changes the word after the comparison finds this waiter
            // listed (Linux compares under the bucket lock that its wake
            // takes; the order here gives the same guarantee without
            // reading user memory under a lock).
            let woken = Arc::new(AtomicBool::new(false));
            let (key, frame) = key(&p.memory, addr, private)?;
            WAITERS.lock().push(Waiter { key, _frame: frame, bitset, woken: woken.clone(), task: framekernel::task::current() });
            let mut word = [0u8; 4];
            let compared = p.memory.read(addr, &mut word).and_then(|()| {
                if u32::from_le_bytes(word) != val as u32 { Err(Errno::EAGAIN) } else { Ok(()) }
            });
            if let Err(e) = compared {
                WAITERS.lock().retain(|w| !Arc::ptr_eq(&w.woken, &woken));
                // A wake that chose this waiter meanwhile is not lost: it
                // counts as this wait's (futex waits may end at any time).
                return if woken.load(Ordering::SeqCst) { Ok(0) } else { Err(e) };
            }
            let interrupted = p.interrupt_check();
            // Woken directly: by a futex wake of this waiter, a signal, or
            // the alarm at the deadline.
            let _alarm = super::proc::Alarm::new(deadline);
            let queue = tessera_sched::WaitQueue::new();
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
