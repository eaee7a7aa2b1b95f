//! The scheduler: a round-robin run queue per processor with a time
//! slice, an idle task per processor, and wait queues for blocking. Policy
//! only; the context switch itself is the trusted base's
//! (`framekernel::task`).
//!
//! Tasks are preempted only where they allow it: a task running user code
//! calls [`preempt_point`] when the timer interrupts its program, and
//! kernel code blocks in [`WaitQueue::wait_until`] or yields.
//!
//! Placement: a task is queued on its home processor (the one it last ran
//! on). A wake or a new task goes to an idle processor instead when its
//! home is busy, and an idle processor takes a waiting task from another's
//! queue (the task's home moves with it). Both honour the task's affinity
//! ([`set_affinity`]); a task running where it may no longer run moves at
//! its next [`preempt_point`]. A wake on another processor kicks it with an
//! IPI.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
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
    /// True while the idle task runs.
    idle_now: AtomicBool,
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
            idle_now: AtomicBool::new(false),
        }
    }

    /// Idle with nothing queued: a task placed here runs at once.
    fn is_free(&self) -> bool {
        self.idle_now.load(Ordering::Acquire) && self.run_queue.lock().is_empty()
    }
}

/// No task has this id.
const NO_TASK: u64 = u64::MAX;

static CPUS: [Cpu; MAX_CPUS] = [const { Cpu::new() }; MAX_CPUS];
static SWITCHES: AtomicU64 = AtomicU64::new(0);

/// The processors that run the scheduler (an idle task each), one bit
/// each.
static SCHEDULING: AtomicU64 = AtomicU64::new(0);

/// The bit of processor `index` in a mask (0 past the mask's width).
fn bit(index: usize) -> u64 {
    1u64.checked_shl(index as u32).unwrap_or(0)
}

/// The processors in `mask`, lowest first.
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        let i = mask.trailing_zeros() as usize;
        mask &= mask.wrapping_sub(1);
        (i < MAX_CPUS).then_some(i)
    })
}

/// The processors that run the scheduler, one bit each: what tasks can be
/// placed on (`sched_getaffinity` shows a task's mask within it).
pub fn online_mask() -> u64 {
    SCHEDULING.load(Ordering::Acquire)
}

/// This processor's share (the base's index is always below `MAX_CPUS`).
fn here() -> &'static Cpu {
    cpu(framekernel::cpu::current_index())
}

fn cpu(index: usize) -> &'static Cpu {
    CPUS.get(index).unwrap_or(&CPUS[0])
}

/// Charges the time since the last switch to the task running now.
fn account_current(c: &Cpu, now: u64) {
    let spent = now.saturating_sub(c.running_since.swap(now, Ordering::Relaxed));
    let me = task::current();
    if is_idle(&me) {
        c.idle_ns.fetch_add(spent, Ordering::Relaxed);
    } else {
        me.charge_cpu_time(spent);
    }
}

/// CPU time `t` has had (ns), its current run on this processor included.
pub fn cpu_ns(t: &Task) -> u64 {
    let mut total = t.cpu_time();
    if task::current().id() == t.id() {
        total += framekernel::time::now_ns().saturating_sub(here().running_since.load(Ordering::Relaxed));
    }
    total
}

/// Time the processors were idle since boot, added up (ns): the second
/// figure of `/proc/uptime`.
pub fn idle_ns() -> u64 {
    (0..MAX_CPUS).filter(|&i| online_mask() & bit(i) != 0).map(idle_ns_of).sum()
}

/// Time processor `index` was idle since boot (ns), its current idle
/// stretch included.
pub fn idle_ns_of(index: usize) -> u64 {
    let c = cpu(index);
    let mut total = c.idle_ns.load(Ordering::Relaxed);
    if c.idle_now.load(Ordering::Acquire) {
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

/// The idle task: halts until an interrupt when there is nothing to run
/// here or to take from a busy processor, then runs what is queued.
fn idle_loop() {
    let index = framekernel::cpu::current_index();
    let c = cpu(index);
    loop {
        // Interrupts stay off from the check to the halt (`sti; hlt` is
        // one step): a kick that queues a task in between is not slept
        // through.
        framekernel::arch::without_interrupts(|| {
            if !c.run_queue.lock().is_empty() {
                return;
            }
            match steal(index) {
                Some(t) => enqueue(index, &t),
                // A task that may run here waits on a busy processor but
                // is still being switched away from there (`steal` skips
                // it): halt with the timer running, to look again at the
                // next tick.
                None if waiting_elsewhere(index) => framekernel::arch::wait_for_interrupt(),
                // Its timer stopped: only a kick (a task queued here, or
                // one waiting on a busy processor: `nudge_idle`) wakes it.
                None => {
                    let shootdowns = || framekernel::cpu::interrupt_counts(index).map_or(0, |c| c.tlb_shootdowns);
                    let before = shootdowns();
                    framekernel::cpu::idle_wait();
                    // A shootdown reached it while it idled (it still had
                    // the space it ran last loaded): load the kernel's
                    // tables, so that the next ones skip it. Not at once:
                    // a wake back into the same space then needs no CR3
                    // switch, which costs TCG a whole TLB.
                    if shootdowns() != before && c.run_queue.lock().is_empty() {
                        framekernel::mm::leave_user_space();
                    }
                }
            }
        });
        yield_now();
    }
}

/// A task for idle processor `index`: the last one queued on a busy
/// processor that may run here and is not being switched away from there
/// (`take_from`). An idle processor runs its queue itself (it was kicked).
fn steal(index: usize) -> Option<Arc<Task>> {
    let others = online_mask() & !bit(index);
    (1..MAX_CPUS)
        .map(|k| (index + k) % MAX_CPUS)
        .filter(|&j| others & bit(j) != 0 && !cpu(j).idle_now.load(Ordering::Acquire))
        .find_map(|j| take_from(j, index))
}

/// Takes the last task queued on processor `j` that may run on processor
/// `index` and is neither running nor finished; its home is `index` from
/// then on (set under `j`'s queue lock, so that a wake in between queues
/// it at `index`, where `enqueue` keeps one entry).
fn take_from(j: usize, index: usize) -> Option<Arc<Task>> {
    let mine = bit(index);
    let mut queue = cpu(j).run_queue.lock();
    let at = queue.iter().rposition(|t| t.affinity() & mine != 0 && !t.is_on_cpu() && !t.is_finished())?;
    let t = queue.remove(at)?;
    t.set_home(index);
    Some(t)
}

/// Tasks running or waiting on processor `j`.
fn load(j: usize) -> usize {
    let c = cpu(j);
    c.run_queue.lock().len() + usize::from(!c.idle_now.load(Ordering::Acquire))
}

/// Busy processors even out (idle ones `steal`): at the end of a time
/// slice, processor `index` pulls one task off the most loaded processor
/// when that one has at least two more tasks (running and waiting) than
/// it has, so three tasks on one processor and one on another become two
/// and two. Tasks that may not run here stay.
fn balance(index: usize) {
    let mine = load(index);
    let others = online_mask() & !bit(index);
    let busiest = (0..MAX_CPUS).filter(|&j| others & bit(j) != 0).map(|j| (load(j), j)).max();
    if let Some((theirs, j)) = busiest
        && theirs >= mine + 2
        && let Some(t) = take_from(j, index)
    {
        BALANCED.fetch_add(1, Ordering::Relaxed);
        enqueue(index, &t);
    }
}

/// Tasks moved by [`balance`] since boot.
static BALANCED: AtomicU64 = AtomicU64::new(0);

/// Tasks moved between busy processors to even them out, since boot.
pub fn balanced_count() -> u64 {
    BALANCED.load(Ordering::Relaxed)
}

/// True when a busy processor's queue holds a task that may run on
/// processor `index`.
fn waiting_elsewhere(index: usize) -> bool {
    let mine = bit(index);
    let others = online_mask() & !mine;
    (0..MAX_CPUS).filter(|&j| others & bit(j) != 0 && !cpu(j).idle_now.load(Ordering::Acquire)).any(|j| {
        cpu(j).run_queue.lock().iter().any(|t| t.affinity() & mine != 0 && !t.is_finished())
    })
}

fn exit_hook() -> ! {
    // Interrupts stay off from choosing the next task to switching to it:
    // an interrupt in between could queue the chosen task again (it is
    // neither current nor queued then), and it would later be resumed
    // from the queue while running, or after it finished.
    framekernel::arch::without_interrupts(|| {
        let c = here();
        let me = task::current();
        let mut next = pick_next(c, &me);
        drop(me);
        loop {
            c.running_since.store(framekernel::time::now_ns(), Ordering::Relaxed);
            c.idle_now.store(is_idle(&next), Ordering::Release);
            let handed_here = next.home() == framekernel::cpu::current_index();
            next.set_home(framekernel::cpu::current_index());
            match task::finish_and_switch(next.clone()) {
                // Still running on another processor: it runs here later
                // if it was handed here; this processor's idle task, which
                // runs nowhere else, is entered now.
                task::SwitchError::Running => requeue_running(c, next, handed_here),
                // Finished meanwhile on another processor: dropped.
                task::SwitchError::Finished => {}
                // A task's own flow never ends inside an interrupt handler.
                task::SwitchError::InterruptContext => {
                    log::error!("scheduler: a task ended inside an interrupt handler; processor stopped");
                    framekernel::arch::halt_forever()
                }
            }
            next = match c.idle.lock().clone() {
                Some(idle) => idle,
                None => framekernel::arch::halt_forever(),
            };
        }
    })
}

/// Sets up the idle task, the exit hook and the time slice on the boot
/// processor. Call once.
pub fn init() -> Result<(), OutOfMemory> {
    let idle = task::spawn("idle", idle_loop)?;
    idle.set_affinity(bit(0));
    CPUS[0].idle_id.store(idle.id(), Ordering::Relaxed);
    *CPUS[0].idle.lock() = Some(idle);
    task::set_exit_hook(exit_hook);
    let _ = framekernel::time::on_tick(on_tick);
    let _ = framekernel::time::on_local_tick(on_local_tick);
    SCHEDULING.fetch_or(bit(0), Ordering::AcqRel);
    Ok(())
}

/// What the other processors run (`framekernel::cpu::start_others`): the
/// task each starts on becomes its idle task, which halts until an
/// interrupt and then runs what its run queue holds or takes work from a
/// busy processor.
pub fn processor_main(index: usize) -> ! {
    let c = cpu(index);
    let me = task::current();
    c.idle_id.store(me.id(), Ordering::Relaxed);
    *c.idle.lock() = Some(me);
    c.running_since.store(framekernel::time::now_ns(), Ordering::Relaxed);
    c.idle_now.store(true, Ordering::Release);
    SCHEDULING.fetch_or(bit(index), Ordering::AcqRel);
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
    let index = framekernel::cpu::current_index();
    let handed_here = next.home() == index;
    next.set_home(index);
    let was_idle = c.idle_now.swap(is_idle(&next), Ordering::AcqRel);
    match task::switch_to(next.clone()) {
        // Running again (perhaps elsewhere). Tasks that wait behind this
        // one are no longer running: an idle processor may take them now
        // (it could not while they were being switched away from).
        Ok(()) => {
            let c = here();
            let waiting = c.run_queue.lock().front().map(|t| t.affinity());
            if let Some(allowed) = waiting {
                nudge_idle(allowed, framekernel::cpu::current_index());
            }
        }
        Err(e) => {
            c.idle_now.store(was_idle, Ordering::Release);
            match e {
                // It finished on another processor after it was picked
                // (a second queue entry from a concurrent wake): dropped.
                task::SwitchError::Finished => {}
                // An interrupt handler cannot switch: `next` stays first in line.
                task::SwitchError::InterruptContext => c.run_queue.lock().push_front(next),
                task::SwitchError::Running => requeue_running(c, next, handed_here),
            }
        }
    }
}

/// `t` was picked here but another processor runs it still. Handed to
/// this processor (its home was here: a migration or a wake while it was
/// being left), it runs after the others once that processor lets go; a
/// second queue entry of a task at home elsewhere (two wakes at once) is
/// dropped, or this processor would spin on it while it runs there.
fn requeue_running(c: &Cpu, t: Arc<Task>, handed_here: bool) {
    // An idle task is never queued (it runs when nothing is), and a task
    // is queued once.
    if handed_here && !is_idle(&t) {
        let mut queue = c.run_queue.lock();
        if !queue.iter().any(|q| Arc::ptr_eq(q, &t)) {
            queue.push_back(t);
        }
    }
}

/// An idle task's home is always its processor: it is never woken,
/// queued, moved or spawned elsewhere, and only its processor enters it.
fn is_idle(t: &Arc<Task>) -> bool {
    cpu(t.home()).idle_id.load(Ordering::Relaxed) == t.id()
}

/// Where to queue `t`: where it runs now; else its home when that is
/// free; else a free processor it may run on (this one first: no IPI);
/// else its home, or the first processor it may run on.
fn place(t: &Task) -> usize {
    let allowed = t.affinity() & online_mask();
    let home = t.home();
    let home_allowed = allowed & bit(home) != 0;
    if home_allowed && (t.is_on_cpu() || cpu(home).is_free()) {
        return home;
    }
    let here = framekernel::cpu::current_index();
    // The allowed processors from this one up, then from 0 up to it.
    let from_here = allowed & bit(here).wrapping_neg();
    let free = bits(from_here).chain(bits(allowed & !from_here)).find(|&i| cpu(i).is_free());
    match free {
        Some(i) => i,
        None if home_allowed => home,
        None => bits(allowed).next().unwrap_or(0),
    }
}

/// Makes `t` runnable (no effect if already queued). A task that runs
/// now is queued too, on its processor: it may be about to block, and the
/// wake must not be lost (`block_current` then does not block).
pub fn wake(t: &Arc<Task>) {
    if t.is_finished() || is_idle(t) {
        return;
    }
    enqueue(place(t), t);
}

/// Queues `t` on processor `index` (once), makes that its home, and kicks
/// that processor when it is another.
fn enqueue(index: usize, t: &Arc<Task>) {
    {
        let mut queue = cpu(index).run_queue.lock();
        t.set_home(index);
        if !queue.iter().any(|q| Arc::ptr_eq(q, t)) {
            queue.push_back(t.clone());
        }
    }
    if index != framekernel::cpu::current_index() {
        framekernel::cpu::kick(index);
    }
    if !cpu(index).idle_now.load(Ordering::Acquire) {
        // It waits behind a running task: an idle processor may take it.
        nudge_idle(t.affinity(), index);
    }
}

/// Kicks one idle processor in `allowed` other than `busy` (and this
/// one), if there is one: idle processors sleep with their timers stopped
/// and take waiting work off busy ones (`steal`) only when woken.
fn nudge_idle(allowed: u64, busy: usize) {
    let here = framekernel::cpu::current_index();
    let candidates = allowed & online_mask() & !bit(busy) & !bit(here);
    if let Some(i) = bits(candidates).find(|&i| cpu(i).idle_now.load(Ordering::Acquire)) {
        framekernel::cpu::kick(i);
    }
}

/// Whether `t` is running or waiting for the CPU (not blocked): what
/// `/proc/PID/stat` shows as `R`.
pub fn is_runnable(t: &Arc<Task>) -> bool {
    !t.is_finished() && (t.is_on_cpu() || cpu(t.home()).run_queue.lock().iter().any(|q| Arc::ptr_eq(q, t)))
}

/// The processors [`spawn`] lets new tasks run on.
static SPAWN_AFFINITY: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the processors that tasks made by [`spawn`] may run on (the
/// self-test boot keeps the kernel's own tasks on the boot processor, so
/// that its exact memory counts are not disturbed by them).
pub fn set_spawn_affinity(mask: u64) {
    SPAWN_AFFINITY.store(mask, Ordering::Release);
}

/// Creates a task running `f` and queues it where it can run soonest.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, OutOfMemory> {
    spawn_with_affinity(name, SPAWN_AFFINITY.load(Ordering::Acquire), f)
}

/// Creates a task running `f` that may run on the processors in
/// `affinity` (one bit each; none online: any) and queues it.
pub fn spawn_with_affinity(name: &str, affinity: u64, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, OutOfMemory> {
    spawn_recorded(name, affinity, f, |_| {})
}

/// As [`spawn_with_affinity`], and `record(task)` runs before the task
/// can: another processor may start it at once, and it may need to find
/// itself where its creator records it (a thread's task in its record).
pub fn spawn_recorded(
    name: &str,
    affinity: u64,
    f: impl FnOnce() + Send + 'static,
    record: impl FnOnce(&Arc<Task>),
) -> Result<Arc<Task>, OutOfMemory> {
    let t = task::spawn(name, f)?;
    t.set_affinity(if affinity & online_mask() == 0 { u64::MAX } else { affinity });
    t.set_home(framekernel::cpu::current_index());
    record(&t);
    enqueue(place(&t), &t);
    Ok(t)
}

/// Why [`spawn_on`] or [`set_affinity`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// No memory for the task's stack.
    OutOfMemory(OutOfMemory),
    /// The processor is not online (none of the mask's is).
    NotOnline(usize),
}

/// Creates a task running `f` on processor `index` for good and queues it
/// there.
pub fn spawn_on(index: usize, name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, SpawnError> {
    if index >= MAX_CPUS || online_mask() & bit(index) == 0 {
        return Err(SpawnError::NotOnline(index));
    }
    let t = task::spawn(name, f).map_err(SpawnError::OutOfMemory)?;
    t.set_affinity(bit(index));
    enqueue(index, &t);
    Ok(t)
}

/// The processors `t` may run on, within those online.
pub fn affinity(t: &Task) -> u64 {
    t.affinity() & online_mask()
}

/// Lets `t` run only on the processors in `mask` (bits of processors that
/// are not online are kept, as Linux keeps them). Refused for an idle
/// task, the boot task (both run on their processor's first stack) and
/// when no processor in `mask` is online. A queued task moves at
/// once; the calling task moves before this returns; a task running on
/// another processor moves at its next [`preempt_point`].
pub fn set_affinity(t: &Arc<Task>, mask: u64) -> Result<(), SpawnError> {
    if mask & online_mask() == 0 || is_idle(t) || t.id() == 0 {
        return Err(SpawnError::NotOnline(mask.trailing_zeros() as usize));
    }
    t.set_affinity(mask);
    if Arc::ptr_eq(t, &task::current()) {
        if mask & bit(framekernel::cpu::current_index()) == 0 {
            migrate_current();
        }
        return Ok(());
    }
    framekernel::arch::without_interrupts(|| {
        let home = t.home();
        if mask & bit(home) != 0 || t.is_on_cpu() {
            return;
        }
        let removed = {
            let mut queue = cpu(home).run_queue.lock();
            let before = queue.len();
            queue.retain(|q| !Arc::ptr_eq(q, t));
            queue.len() != before
        };
        if removed {
            enqueue(place(t), t);
        }
    });
    Ok(())
}

/// Moves the running task to a processor its affinity allows (it runs
/// where it is until that processor takes it).
fn migrate_current() {
    framekernel::arch::without_interrupts(|| {
        let c = here();
        let me = task::current();
        let allowed = me.affinity() & online_mask();
        if allowed == 0 || allowed & bit(framekernel::cpu::current_index()) != 0 || is_idle(&me) {
            return;
        }
        // A wake while it ran queued it here.
        c.run_queue.lock().retain(|q| !Arc::ptr_eq(q, &me));
        enqueue(place(&me), &me);
        let next = pick_next(c, &me);
        drop(me);
        switch(c, next);
    });
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

/// Yields if the current task has used up its time slice, and moves it
/// if it may no longer run on this processor.
pub fn preempt_point() {
    if task::current().affinity() & bit(framekernel::cpu::current_index()) == 0 {
        migrate_current();
    }
    if here().need_resched.load(Ordering::Relaxed) {
        if !framekernel::irq::in_interrupt() {
            framekernel::arch::without_interrupts(|| balance(framekernel::cpu::current_index()));
        }
        yield_now();
    }
}

/// Stops the current task until someone calls [`wake`] on it. The caller
/// must have made itself findable (a wait queue) with interrupts off. A
/// wake that came meanwhile (the task is queued) ends the wait at once.
fn block_current() {
    let c = here();
    let me = task::current();
    // One hold of the queue from looking for a wake to taking the next
    // task: a wake from another processor that queued this task in
    // between would otherwise be taken for a stale entry and dropped (and
    // the task would sleep through it). A wake after the hold finds the
    // task running still and queues it here: it runs again later.
    let queued = {
        let mut queue = c.run_queue.lock();
        if let Some(at) = queue.iter().position(|q| Arc::ptr_eq(q, &me)) {
            queue.remove(at);
            return;
        }
        let mut next = None;
        while let Some(t) = queue.pop_front() {
            if !t.is_finished() {
                next = Some(t);
                break;
            }
        }
        next
    };
    let next = match queued {
        Some(next) => next,
        None => match c.idle.lock().clone() {
            Some(idle) => idle,
            None => return,
        },
    };
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
            // Woken: most often with the condition met and taken off the
            // list by the waker, so check before listing again (a wait
            // then lists itself once, not twice). Still listed (woken by
            // something else): leave the list.
            let woken = framekernel::arch::without_interrupts(|| {
                let r = ready()?;
                let mut waiters = self.waiters.lock();
                if !waiters.is_empty() {
                    let me = task::current();
                    waiters.retain(|t| !Arc::ptr_eq(t, &me));
                }
                Some(r)
            });
            if let Some(r) = woken {
                return r;
            }
        }
    }

    /// Wakes every waiter but the caller (a task listed here that wakes
    /// the queue, from its own `ready` check, say, is running: it stays
    /// listed and is not queued, or its wait would spin).
    pub fn wake_all(&self) {
        // Nobody listed (the common case): no need to know who calls. A
        // waiter that lists itself after this look checks its condition
        // after listing, so it sees what the caller changed before.
        let listed = self.waiters.lock().len();
        if listed == 0 {
            return;
        }
        // Those listed now, taken one at a time from the front (the queue
        // keeps its room: no allocation per wait). One that lists itself
        // meanwhile goes to the back, after them; one that leaves
        // meanwhile makes this wake one task more than listed, which
        // checks its condition again (a spurious wake).
        let me = task::current();
        for _ in 0..listed {
            let next = {
                let mut waiters = self.waiters.lock();
                match waiters.pop_front() {
                    Some(t) if Arc::ptr_eq(&t, &me) => {
                        waiters.push_back(t);
                        continue;
                    }
                    Some(t) => t,
                    None => break,
                }
            };
            wake(&next);
        }
    }
}
