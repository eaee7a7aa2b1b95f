//! The scheduler: a round-robin run queue with a time slice, an idle task,
//! and wait queues for blocking. Policy only; the context switch itself is
//! the trusted base's (`framekernel::task`).
//!
//! Tasks are preempted only where they allow it: a task running user code
//! calls [`preempt_point`] when the timer interrupts its program, and
//! kernel code blocks in [`WaitQueue::wait_until`] or yields.
//!
//! Each processor has its own run queue and idle task. Tasks do not move:
//! [`spawn`] puts a task on the boot processor (every user program runs
//! there for now), [`spawn_on`] on another online processor for good, and
//! [`wake`] queues a task on its own processor and kicks that processor
//! when it is another.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel::cpu::MAX_CPUS;
use framekernel::mm::OutOfMemory;
use framekernel::sync::SpinLock;
use framekernel::task::{self, Task};

/// Timer ticks a task may run before it is asked to yield.
pub const TIME_SLICE_TICKS: u64 = 10;
const SLICE_NS: u64 = TIME_SLICE_TICKS * 1_000_000_000 / framekernel::time::TICK_HZ as u64;

/// One processor's share of the scheduler.
struct Cpu {
    run_queue: SpinLock<VecDeque<Arc<Task>>>,
    idle: SpinLock<Option<Arc<Task>>>,
    /// The idle task's id (`NO_TASK`: none yet; 0 is the boot task's).
    idle_id: AtomicU64,
    /// When the running task's time slice began (ns since boot).
    slice_start: AtomicU64,
    need_resched: AtomicBool,
    /// When the running task was switched in (ns since boot).
    running_since: AtomicU64,
    /// CPU time the idle task had (ns): the processor was idle.
    idle_ns: AtomicU64,
}

impl Cpu {
    const fn new() -> Self {
        Self {
            run_queue: SpinLock::new(VecDeque::new()),
            idle: SpinLock::new(None),
            idle_id: AtomicU64::new(NO_TASK),
            slice_start: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            running_since: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
        }
    }
}

/// No task has this id.
const NO_TASK: u64 = u64::MAX;

static CPUS: [Cpu; MAX_CPUS] = [const { Cpu::new() }; MAX_CPUS];
static SWITCHES: AtomicU64 = AtomicU64::new(0);
/// CPU time of each task that ran (ns), by task id, until forgotten.
static CPU_NS: SpinLock<BTreeMap<u64, u64>> = SpinLock::new(BTreeMap::new());
/// Tasks that run on a processor other than the boot one, by task id.
/// Tasks never move: every other task runs on processor 0.
static HOME: SpinLock<BTreeMap<u64, usize>> = SpinLock::new(BTreeMap::new());

/// This processor's share (the base's index is always below `MAX_CPUS`).
fn here() -> &'static Cpu {
    cpu(framekernel::cpu::current_index())
}

fn cpu(index: usize) -> &'static Cpu {
    CPUS.get(index).unwrap_or(&CPUS[0])
}

fn home(t: &Task) -> usize {
    HOME.lock().get(&t.id()).copied().unwrap_or(0)
}

/// Charges the time since the last switch to the task running now.
fn account_current(c: &Cpu, now: u64) {
    let spent = now.saturating_sub(c.running_since.swap(now, Ordering::Relaxed));
    let me = task::current();
    if is_idle(&me) {
        c.idle_ns.fetch_add(spent, Ordering::Relaxed);
    } else {
        *CPU_NS.lock().entry(me.id()).or_insert(0) += spent;
    }
}

/// CPU time `t` has had (ns), its current run on this processor included.
pub fn cpu_ns(t: &Task) -> u64 {
    let mut total = CPU_NS.lock().get(&t.id()).copied().unwrap_or(0);
    if task::current().id() == t.id() {
        total += framekernel::time::now_ns().saturating_sub(here().running_since.load(Ordering::Relaxed));
    }
    total
}

/// Time the boot processor (the one user programs run on) was idle since
/// boot (ns).
pub fn idle_ns() -> u64 {
    idle_ns_of(0)
}

/// Time processor `index` was idle since boot (ns).
pub fn idle_ns_of(index: usize) -> u64 {
    let c = cpu(index);
    let mut total = c.idle_ns.load(Ordering::Relaxed);
    if framekernel::cpu::current_index() == index && is_idle(&task::current()) {
        total += framekernel::time::now_ns().saturating_sub(c.running_since.load(Ordering::Relaxed));
    }
    total
}

fn slice_check(c: &Cpu) {
    if framekernel::time::now_ns().saturating_sub(c.slice_start.load(Ordering::Relaxed)) >= SLICE_NS {
        c.need_resched.store(true, Ordering::Relaxed);
    }
}

fn on_tick(_tick: u64) {
    slice_check(&CPUS[0]);
}

fn on_local_tick(index: usize) {
    slice_check(cpu(index));
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
        let c = here();
        let me = task::current();
        let next = pick_next(c, &me);
        // The finished task's CPU time goes (its owner took the figure).
        CPU_NS.lock().remove(&me.id());
        HOME.lock().remove(&me.id());
        c.running_since.store(framekernel::time::now_ns(), Ordering::Relaxed);
        drop(me);
        task::finish_and_switch(next)
    })
}

/// Sets up the idle task, the exit hook and the time slice. Call once.
pub fn init() -> Result<(), OutOfMemory> {
    let idle = task::spawn("idle", idle_loop)?;
    CPUS[0].idle_id.store(idle.id(), Ordering::Relaxed);
    *CPUS[0].idle.lock() = Some(idle);
    task::set_exit_hook(exit_hook);
    let _ = framekernel::time::on_tick(on_tick);
    let _ = framekernel::time::on_local_tick(on_local_tick);
    Ok(())
}

/// What the other processors run (`framekernel::cpu::start_others`): the
/// task each starts on becomes its idle task, which halts until an
/// interrupt and then runs what its run queue holds.
pub fn processor_main(index: usize) -> ! {
    let c = cpu(index);
    let me = task::current();
    c.idle_id.store(me.id(), Ordering::Relaxed);
    *c.idle.lock() = Some(me);
    c.running_since.store(framekernel::time::now_ns(), Ordering::Relaxed);
    loop {
        idle_loop();
    }
}

/// The first task in `c`'s queue that can run in place of `me`: neither
/// `me` itself (queued by a wake while it ran) nor a finished one.
fn pop_other(c: &Cpu, me: &Arc<Task>) -> Option<Arc<Task>> {
    let mut queue = c.run_queue.lock();
    while let Some(next) = queue.pop_front() {
        if !Arc::ptr_eq(&next, me) && !next.is_finished() {
            return Some(next);
        }
    }
    None
}

/// The next task to run: the head of the run queue, else the idle task.
fn pick_next(c: &Cpu, me: &Arc<Task>) -> Arc<Task> {
    if let Some(next) = pop_other(c, me) {
        return next;
    }
    match c.idle.lock().clone() {
        Some(idle) => idle,
        None => me.clone(),
    }
}

fn switch(c: &Cpu, next: Arc<Task>) {
    let now = framekernel::time::now_ns();
    account_current(c, now);
    c.slice_start.store(now, Ordering::Relaxed);
    c.need_resched.store(false, Ordering::Relaxed);
    SWITCHES.fetch_add(1, Ordering::Relaxed);
    match task::switch_to(next.clone()) {
        Ok(()) => {}
        Err(task::SwitchError::Finished) => log::error!("scheduler: picked a finished task"),
        // An interrupt handler cannot switch: `next` stays first in line.
        Err(task::SwitchError::InterruptContext) => c.run_queue.lock().push_front(next),
        // Still being left by another processor: it runs after the others.
        Err(task::SwitchError::Running) => c.run_queue.lock().push_back(next),
    }
}

fn is_idle(t: &Arc<Task>) -> bool {
    CPUS.iter().any(|c| c.idle_id.load(Ordering::Relaxed) == t.id())
}

/// Makes `t` runnable on its processor (no effect if already queued). A
/// task that runs now is queued too: it may be about to block, and the
/// wake must not be lost (`block_current` then does not block).
pub fn wake(t: &Arc<Task>) {
    if t.is_finished() || is_idle(t) {
        return;
    }
    enqueue(home(t), t);
}

/// Queues `t` on processor `index` (once) and kicks that processor when it
/// is another.
fn enqueue(index: usize, t: &Arc<Task>) {
    {
        let mut queue = cpu(index).run_queue.lock();
        if !queue.iter().any(|q| Arc::ptr_eq(q, t)) {
            queue.push_back(t.clone());
        }
    }
    if index != framekernel::cpu::current_index() {
        framekernel::cpu::kick(index);
    }
}

/// Whether `t` is running or waiting for the CPU (not blocked): what
/// `/proc/PID/stat` shows as `R`.
pub fn is_runnable(t: &Arc<Task>) -> bool {
    !t.is_finished() && (t.is_on_cpu() || cpu(home(t)).run_queue.lock().iter().any(|q| Arc::ptr_eq(q, t)))
}

/// Creates a task running `f` and queues it (on the boot processor).
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, OutOfMemory> {
    let t = task::spawn(name, f)?;
    CPUS[0].run_queue.lock().push_back(t.clone());
    Ok(t)
}

/// Why [`spawn_on`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for the task's stack.
    OutOfMemory(OutOfMemory),
    /// The processor is not online.
    NotOnline(usize),
}

/// Creates a task running `f` on processor `index` for good and queues it
/// there.
pub fn spawn_on(index: usize, name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, SpawnError> {
    if !framekernel::cpu::is_online(index) || index >= MAX_CPUS {
        return Err(SpawnError::NotOnline(index));
    }
    let t = task::spawn(name, f).map_err(SpawnError::OutOfMemory)?;
    if index != 0 {
        HOME.lock().insert(t.id(), index);
    }
    enqueue(index, &t);
    Ok(t)
}

/// Lets every other runnable task of this processor run once before
/// continuing.
pub fn yield_now() {
    if framekernel::irq::in_interrupt() {
        return; // the interrupted code continues; it yields itself later
    }
    framekernel::arch::without_interrupts(|| {
        let c = here();
        let me = task::current();
        if let Some(next) = pop_other(c, &me) {
            if !is_idle(&me) {
                let mut queue = c.run_queue.lock();
                if !queue.iter().any(|q| Arc::ptr_eq(q, &me)) {
                    queue.push_back(me);
                }
            }
            switch(c, next);
        }
    });
}

/// Yields if the current task has used up its time slice.
pub fn preempt_point() {
    if here().need_resched.load(Ordering::Relaxed) {
        yield_now();
    }
}

/// Stops the current task until someone calls [`wake`] on it. The caller
/// must have made itself findable (a wait queue) with interrupts off. A
/// wake that came meanwhile (the task is queued) ends the wait at once.
fn block_current() {
    let c = here();
    let me = task::current();
    {
        let mut queue = c.run_queue.lock();
        if let Some(at) = queue.iter().position(|q| Arc::ptr_eq(q, &me)) {
            queue.remove(at);
            return;
        }
    }
    let next = pick_next(c, &me);
    drop(me);
    switch(c, next);
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
    /// The task is listed as a waiter before `ready` runs (with interrupts
    /// off), so a waker on another processor that changes the condition
    /// after the check finds it listed and wakes it; a wake that comes
    /// before the task blocks keeps it from blocking.
    pub fn wait_until<R>(&self, mut ready: impl FnMut() -> Option<R>) -> R {
        // Ready already: no need to be listed.
        if let Some(r) = framekernel::arch::without_interrupts(&mut ready) {
            return r;
        }
        loop {
            let result = framekernel::arch::without_interrupts(|| {
                let me = task::current();
                {
                    let mut waiters = self.waiters.lock();
                    if !waiters.iter().any(|t| Arc::ptr_eq(t, &me)) {
                        waiters.push_back(me.clone());
                    }
                }
                if let Some(r) = ready() {
                    self.waiters.lock().retain(|t| !Arc::ptr_eq(t, &me));
                    return Some(r);
                }
                drop(me);
                block_current();
                None
            });
            if let Some(r) = result {
                return r;
            }
        }
    }

    /// Wakes every waiter but the caller (a task listed here that wakes
    /// the queue, from its own `ready` check, say, is running: it stays
    /// listed and is not queued, or its wait would spin).
    pub fn wake_all(&self) {
        let me = task::current();
        let waiters: VecDeque<Arc<Task>> = {
            let mut listed = self.waiters.lock();
            let all = core::mem::take(&mut *listed);
            if all.iter().any(|t| Arc::ptr_eq(t, &me)) {
                listed.push_back(me.clone());
            }
            all
        };
        for t in waiters.iter().filter(|t| !Arc::ptr_eq(t, &me)) {
            wake(t);
        }
    }
}
