//! The scheduler: a round-robin run queue with a time slice, an idle task,
//! and wait queues for blocking. Policy only; the context switch itself is
//! the trusted base's (`framekernel::task`).
//!
//! Tasks are preempted only where they allow it: a task running user code
//! calls [`preempt_point`] when the timer interrupts its program, and
//! kernel code blocks in [`WaitQueue::wait_until`] or yields.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel::mm::OutOfMemory;
use framekernel::sync::SpinLock;
use framekernel::task::{self, Task};

/// Timer ticks a task may run before it is asked to yield.
pub const TIME_SLICE_TICKS: u64 = 10;

static RUN_QUEUE: SpinLock<VecDeque<Arc<Task>>> = SpinLock::new(VecDeque::new());
static IDLE: SpinLock<Option<Arc<Task>>> = SpinLock::new(None);
static SLICE_START: AtomicU64 = AtomicU64::new(0);
static NEED_RESCHED: AtomicBool = AtomicBool::new(false);
static SWITCHES: AtomicU64 = AtomicU64::new(0);
/// When the running task was switched in (ns since boot).
static RUNNING_SINCE: AtomicU64 = AtomicU64::new(0);
/// CPU time of each task that ran (ns), by task id, until forgotten.
static CPU_NS: SpinLock<BTreeMap<u64, u64>> = SpinLock::new(BTreeMap::new());
/// CPU time the idle task had (ns): the processor was idle.
static IDLE_NS: AtomicU64 = AtomicU64::new(0);

/// Charges the time since the last switch to the task running now.
fn account_current(now: u64) {
    let spent = now.saturating_sub(RUNNING_SINCE.swap(now, Ordering::Relaxed));
    let me = task::current();
    if is_idle(&me) {
        IDLE_NS.fetch_add(spent, Ordering::Relaxed);
    } else {
        *CPU_NS.lock().entry(me.id()).or_insert(0) += spent;
    }
}

/// CPU time `t` has had (ns), its current run included.
pub fn cpu_ns(t: &Task) -> u64 {
    let mut total = CPU_NS.lock().get(&t.id()).copied().unwrap_or(0);
    if task::current().id() == t.id() {
        total += framekernel::time::now_ns().saturating_sub(RUNNING_SINCE.load(Ordering::Relaxed));
    }
    total
}

/// Time the processor was idle since boot (ns).
pub fn idle_ns() -> u64 {
    let mut total = IDLE_NS.load(Ordering::Relaxed);
    if is_idle(&task::current()) {
        total += framekernel::time::now_ns().saturating_sub(RUNNING_SINCE.load(Ordering::Relaxed));
    }
    total
}

fn on_tick(tick: u64) {
    if tick.saturating_sub(SLICE_START.load(Ordering::Relaxed)) >= TIME_SLICE_TICKS {
        NEED_RESCHED.store(true, Ordering::Relaxed);
    }
}

fn idle_loop() {
    loop {
        framekernel::arch::wait_for_interrupt();
        yield_now();
    }
}

fn exit_hook() -> ! {
    // Interrupts stay off from choosing the next task to switching to it:
    // an interrupt in between could queue the chosen task again (it is
    // neither current nor queued then), and it would later be resumed
    // from the queue while running, or after it finished.
    framekernel::arch::without_interrupts(|| {
        let next = pick_next();
        // The finished task's CPU time goes (its owner took the figure).
        CPU_NS.lock().remove(&task::current().id());
        RUNNING_SINCE.store(framekernel::time::now_ns(), Ordering::Relaxed);
        task::finish_and_switch(next)
    })
}

/// Sets up the idle task, the exit hook and the time slice. Call once.
pub fn init() -> Result<(), OutOfMemory> {
    let idle = task::spawn("idle", idle_loop)?;
    *IDLE.lock() = Some(idle);
    task::set_exit_hook(exit_hook);
    let _ = framekernel::time::on_tick(on_tick);
    Ok(())
}

/// The next task to run: the head of the run queue, else the idle task.
fn pick_next() -> Arc<Task> {
    let me = task::current();
    loop {
        let next = RUN_QUEUE.lock().pop_front();
        match next {
            // Never the caller itself, nor a task that has finished.
            Some(next) if Arc::ptr_eq(&next, &me) || next.is_finished() => continue,
            Some(next) => return next,
            None => break,
        }
    }
    match IDLE.lock().clone() {
        Some(idle) => idle,
        None => task::current(),
    }
}

fn switch(next: Arc<Task>) {
    account_current(framekernel::time::now_ns());
    SLICE_START.store(framekernel::time::ticks(), Ordering::Relaxed);
    NEED_RESCHED.store(false, Ordering::Relaxed);
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    match task::switch_to(next.clone()) {
        Ok(()) => {}
        Err(task::SwitchError::Finished) => log::error!("scheduler: picked a finished task"),
        // An interrupt handler cannot switch: `next` stays first in line.
        Err(task::SwitchError::InterruptContext) => RUN_QUEUE.lock().push_front(next),
    }
}

fn is_idle(t: &Arc<Task>) -> bool {
    IDLE.lock().as_ref().is_some_and(|idle| Arc::ptr_eq(idle, t))
}

/// Makes `t` runnable (no effect if already queued).
pub fn wake(t: &Arc<Task>) {
    if t.is_finished() || is_idle(t) {
        return;
    }
    let mut queue = RUN_QUEUE.lock();
    if !queue.iter().any(|q| Arc::ptr_eq(q, t)) && !Arc::ptr_eq(&task::current(), t) {
        queue.push_back(t.clone());
    }
}

/// Whether `t` is running or waiting for the CPU (not blocked): what
/// `/proc/PID/stat` shows as `R`.
pub fn is_runnable(t: &Arc<Task>) -> bool {
    !t.is_finished() && (Arc::ptr_eq(&task::current(), t) || RUN_QUEUE.lock().iter().any(|q| Arc::ptr_eq(q, t)))
}

/// Creates a task running `f` and queues it.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, OutOfMemory> {
    let t = task::spawn(name, f)?;
    RUN_QUEUE.lock().push_back(t.clone());
    Ok(t)
}

/// Lets every other runnable task run once before continuing.
pub fn yield_now() {
    if framekernel::irq::in_interrupt() {
        return; // the interrupted code continues; it yields itself later
    }
    framekernel::arch::without_interrupts(|| {
        let me = task::current();
        let next = RUN_QUEUE.lock().pop_front();
        if let Some(next) = next {
            if !is_idle(&me) {
                RUN_QUEUE.lock().push_back(me);
            }
            switch(next);
        }
    });
}

/// Yields if the current task has used up its time slice.
pub fn preempt_point() {
    if NEED_RESCHED.load(Ordering::Relaxed) {
        yield_now();
    }
}

/// Stops the current task until someone calls [`wake`] on it. The caller
/// must have made itself findable (a wait queue) with interrupts off.
fn block_current() {
    let next = pick_next();
    switch(next);
}

/// Context switches since boot.
pub fn switch_count() -> u64 {
    SWITCHES.load(Ordering::Relaxed)
}

/// Tasks waiting for a condition.
#[derive(Default)]
pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Task>>>,
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self { waiters: SpinLock::new(VecDeque::new()) }
    }

    /// Blocks until `ready()` returns `Some`, re-checking after each wake.
    /// `ready` runs with interrupts off, so a wake from an interrupt
    /// handler cannot be lost between the check and the sleep.
    pub fn wait_until<R>(&self, mut ready: impl FnMut() -> Option<R>) -> R {
        let mut waited = false;
        loop {
            let result = framekernel::arch::without_interrupts(|| {
                if let Some(r) = ready() {
                    if waited {
                        // Woken directly (a signal) rather than by this
                        // queue: no entry of this task may stay behind.
                        let me = task::current();
                        self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &me));
                    }
                    return Some(r);
                }
                // Once: a task woken directly (a signal) and waiting again
                // may still be listed from before.
                let me = task::current();
                let mut waiters = self.waiters.lock();
                if !waiters.iter().any(|t| Arc::ptr_eq(t, &me)) {
                    waiters.push_back(me);
                }
                drop(waiters);
                block_current();
                waited = true;
                None
            });
            if let Some(r) = result {
                return r;
            }
        }
    }

    /// Wakes every waiter.
    pub fn wake_all(&self) {
        let waiters: VecDeque<Arc<Task>> = core::mem::take(&mut *self.waiters.lock());
        for t in &waiters {
            wake(t);
        }
    }
}
