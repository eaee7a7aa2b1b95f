//! Kernel tasks: each has its own kernel stack, and [`switch_to`] moves the
//! CPU from the current task to another. Which task runs next is policy
//! and belongs to the scheduler component; this module is the mechanism.
//!
//! A task's stack lives as long as an `Arc<Task>` does. The task being left
//! is handed to the task being entered, which drops that reference only
//! after the switch, so a finished task's stack is freed from another stack.

use crate::mm::{Frame, MappedArea, OutOfMemory};
use crate::sync::SpinLock;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Kernel stack size of a task.
pub const STACK_SIZE: usize = 64 * 1024;

const NEW: u8 = 0;
const LIVE: u8 = 1;
const FINISHED: u8 = 2;

type Entry = Box<dyn FnOnce() + Send>;

/// A kernel task.
pub struct Task {
    id: u64,
    name: String,
    /// Saved stack pointer while not running; written by `tessera_switch`
    /// on the processor leaving the task, read by `switch_to` on the
    /// processor entering it, which must first take `on_cpu`.
    saved_rsp: UnsafeCell<u64>,
    /// True while a processor runs the task or is still switching away
    /// from it (cleared by the next task on that processor once the
    /// leaving task's registers and stack pointer are saved).
    on_cpu: core::sync::atomic::AtomicBool,
    /// None: the task a processor started on, on that processor's first
    /// stack.
    stack: Option<MappedArea>,
    /// The processor whose first stack a task without `stack` runs on.
    born_on: usize,
    entry: SpinLock<Option<Entry>>,
    state: AtomicU8,
    /// The task's innermost cell-call record while it is switched out
    /// (the processor's block holds the running task's).
    cell_record: AtomicU64,
    /// The per-CPU user-entry state (resume stack, current context, TSS
    /// rsp0) while it is switched out: it belongs to the task, not the CPU.
    user_entry: SpinLock<crate::arch::cpu::UserEntry>,
    /// Where a switch away parks the FPU state a user context of this task
    /// left in the processor's registers (see `arch::user`'s lazy FPU).
    pub(crate) fpu_parked: SpinLock<crate::arch::user::ParkedFpu>,
    /// The scheduler's: the processor the task is queued on (the base
    /// never reads it).
    home: core::sync::atomic::AtomicUsize,
    /// The scheduler's: the processors the task may run on, one bit each
    /// (the base never reads it).
    affinity: AtomicU64,
    /// The scheduler's: CPU time charged to the task, ns (the base never
    /// reads it).
    cpu_time: AtomicU64,
}

// SAFETY: `saved_rsp` is the only non-Sync field. It is written only by
// the processor running the task, as it switches away (`tessera_switch`,
// interrupts off), and read only by a processor that has taken the task's
// `on_cpu` flag (Acquire), which the leaving processor releases only after
// the write (`after_switch`, Release): one processor at a time touches it.
unsafe impl Sync for Task {}
// SAFETY: as above; every other field is Send.
unsafe impl Send for Task {}

impl core::fmt::Debug for Task {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Task({}, {:?})", self.id, self.name)
    }
}

/// Why a switch was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    /// The target task has finished.
    Finished,
    /// Called from an interrupt handler (a tick callback, say): the
    /// interrupted code's frame and the CPU's trap state are not a task's
    /// to carry away.
    InterruptContext,
    /// The target task is running on another processor (or that processor
    /// is still switching away from it).
    Running,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Called when a task's function returns; must switch away for good.
static EXIT_HOOK: crate::sync::BaseLock<Option<fn() -> !>> = crate::sync::BaseLock::new(None);

unsafe extern "C" {
    fn tessera_switch(save_rsp: *mut u64, load_rsp: u64);
    fn tessera_task_trampoline();
}

core::arch::global_asm!(
    r#"
    .section .text.task, "ax"
    .global tessera_switch
tessera_switch:                          /* rdi = where to save rsp, rsi = rsp to load */
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    .global tessera_task_trampoline
tessera_task_trampoline:                 /* first run of a task */
    xorl %ebp, %ebp
    andq $-16, %rsp
    call tessera_task_start
    ud2
"#,
    options(att_syntax)
);

impl Task {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while a processor runs the task (or is still switching away
    /// from it).
    pub fn is_on_cpu(&self) -> bool {
        self.on_cpu.load(Ordering::Acquire)
    }

    /// True once the task's function has returned.
    pub fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == FINISHED
    }

    /// The processor the scheduler keeps the task on (a number the base
    /// only stores: 0 for a new task).
    pub fn home(&self) -> usize {
        self.home.load(Ordering::Acquire)
    }

    /// Records the processor the scheduler keeps the task on.
    pub fn set_home(&self, index: usize) {
        self.home.store(index, Ordering::Release);
    }

    /// The processors the scheduler may run the task on, one bit each (a
    /// mask the base only stores: all ones for a new task).
    pub fn affinity(&self) -> u64 {
        self.affinity.load(Ordering::Acquire)
    }

    /// Records the processors the scheduler may run the task on.
    pub fn set_affinity(&self, mask: u64) {
        self.affinity.store(mask, Ordering::Release);
    }

    /// CPU time the scheduler charged to the task (ns; a figure the base
    /// only stores).
    pub fn cpu_time(&self) -> u64 {
        self.cpu_time.load(Ordering::Relaxed)
    }

    /// Charges `ns` more CPU time to the task (saturating).
    pub fn charge_cpu_time(&self, ns: u64) {
        let _ = self.cpu_time.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_add(ns)));
    }
}

/// The task running now on this processor (its first flow is a task
/// created on first use: task 0, "boot", on the boot processor).
pub fn current() -> Arc<Task> {
    let block = crate::percpu::this_cpu();
    let running = block.current_ptr.load(Ordering::Relaxed);
    if !running.is_null() {
        // SAFETY: `running` came from `Arc::as_ptr` of the task that this
        // processor's `current` holds a strong reference to. Only this
        // processor replaces that reference (in `switch_to` or below,
        // interrupts off, updating `current_ptr` with it), and this code
        // runs on this processor until it returns: a task leaves its
        // processor only inside `switch_to`, and an interrupt handler never
        // switches (`switch_to` refuses). So the task is alive and held
        // from the load to the increment.
        unsafe {
            Arc::increment_strong_count(running);
            return Arc::from_raw(running);
        }
    }
    first_task(block)
}

/// The processor's first flow as a task, made on first use (out of line:
/// [`current`]'s usual path is then a load and an increment that callers
/// in the base inline. Marked `#[inline]` for other crates too, it made
/// the pipe round trip faster but a 1-byte read of /dev/zero 10% slower
/// under QEMU's TCG, so it is not.)
#[cold]
#[inline(never)]
fn first_task(block: &crate::percpu::PerCpu) -> Arc<Task> {
    let mut current = block.current.lock();
    let task = current
        .get_or_insert_with(|| {
            let index = block.index();
            Arc::new(Task {
                id: if index == 0 { 0 } else { NEXT_ID.fetch_add(1, Ordering::Relaxed) },
                name: if index == 0 { String::from("boot") } else { alloc::format!("cpu{index}") },
                saved_rsp: UnsafeCell::new(0),
                on_cpu: core::sync::atomic::AtomicBool::new(true),
                stack: None,
                born_on: index,
                entry: SpinLock::new(None),
                state: AtomicU8::new(LIVE),
                cell_record: AtomicU64::new(0),
                user_entry: SpinLock::new(crate::arch::cpu::UserEntry::default()),
                fpu_parked: SpinLock::new(crate::arch::user::ParkedFpu::EMPTY),
                home: core::sync::atomic::AtomicUsize::new(index),
                affinity: AtomicU64::new(1u64.checked_shl(index as u32).unwrap_or(0)),
                cpu_time: AtomicU64::new(0),
            })
        })
        .clone();
    block.current_ptr.store(Arc::as_ptr(&task).cast_mut(), Ordering::Relaxed);
    task
}

/// Sets the function called when a task's function returns. It must
/// switch to another task and never return (the scheduler provides it).
pub fn set_exit_hook(hook: fn() -> !) {
    *EXIT_HOOK.lock() = Some(hook);
}

/// Stacks of finished tasks, kept mapped for the next tasks: spawning
/// needs no mapping then, and the kernel window is not used up.
static STACK_POOL: crate::sync::BaseLock<Vec<MappedArea>> = crate::sync::BaseLock::new(Vec::new());
/// Most stacks kept in the pool.
const STACK_POOL_MAX: usize = 32;

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            let mut pool = STACK_POOL.lock();
            if pool.len() < STACK_POOL_MAX {
                pool.push(stack);
            }
        }
    }
}

fn new_stack() -> Result<MappedArea, OutOfMemory> {
    if let Some(stack) = STACK_POOL.lock().pop() {
        return Ok(stack);
    }
    let pages = STACK_SIZE / 4096;
    let frames: Vec<Frame> = (0..pages).map(|_| Frame::alloc()).collect::<Result<_, _>>()?;
    MappedArea::new(frames).map_err(|_| OutOfMemory { requested: pages as u64, free: 0 })
}

/// Creates a task that will run `f` when first switched to.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Arc<Task>, OutOfMemory> {
    let mut stack = new_stack()?;
    let top = stack.virt_addr() + stack.len() as u64;
    // Initial frame for `tessera_switch`: six callee-saved registers (zero),
    // then the trampoline as return address, then padding.
    let slice = stack.as_mut_slice();
    let len = slice.len();
    let words = [0u64, 0, 0, 0, 0, 0, tessera_task_trampoline as *const () as u64, 0];
    for (i, word) in words.iter().enumerate() {
        let at = len - 64 + i * 8;
        if let Some(dst) = slice.get_mut(at..at + 8) {
            dst.copy_from_slice(&word.to_le_bytes());
        }
    }
    Ok(Arc::new(Task {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: String::from(name),
        saved_rsp: UnsafeCell::new(top - 64),
        on_cpu: core::sync::atomic::AtomicBool::new(false),
        stack: Some(stack),
        born_on: 0,
        entry: SpinLock::new(Some(Box::new(f))),
        state: AtomicU8::new(NEW),
        cell_record: AtomicU64::new(0),
        user_entry: SpinLock::new(crate::arch::cpu::UserEntry::default()),
        fpu_parked: SpinLock::new(crate::arch::user::ParkedFpu::EMPTY),
        home: core::sync::atomic::AtomicUsize::new(0),
        affinity: AtomicU64::new(u64::MAX),
        cpu_time: AtomicU64::new(0),
    }))
}

/// A task's stack; a processor's first task runs on the stack that
/// processor started on, wherever it runs.
fn stack_bounds(task: &Task) -> (u64, u64) {
    match &task.stack {
        Some(area) => (area.virt_addr(), area.virt_addr() + area.len() as u64),
        None => crate::percpu::block(task.born_on).map_or((0, 0), |b| b.initial_stack()),
    }
}

/// Bounds of the running task's kernel stack.
pub(crate) fn current_stack_bounds() -> (u64, u64) {
    crate::percpu::this_cpu().stack_bounds.try_lock().map_or((0, 0), |b| *b)
}

/// Releases the task this processor came from (its registers and stack
/// pointer are saved now: another processor may enter it) and drops the
/// reference to it (maybe freeing its stack).
fn after_switch() {
    let previous = crate::percpu::this_cpu().previous.lock().take();
    if let Some(previous) = &previous {
        previous.on_cpu.store(false, Ordering::Release);
    }
    drop(previous);
}

/// Switches the CPU to `next`; returns when some task switches back to the
/// caller. Switching to the current task does nothing. Refused inside an
/// interrupt handler.
pub fn switch_to(next: Arc<Task>) -> Result<(), SwitchError> {
    if crate::irq::depth() > 0 {
        return Err(SwitchError::InterruptContext);
    }
    if next.is_finished() {
        return Err(SwitchError::Finished);
    }
    let me = current();
    if Arc::ptr_eq(&me, &next) {
        return Ok(());
    }
    crate::arch::without_interrupts(|| {
        // Taken for good by this processor, or refused: a task runs on one
        // processor at a time.
        if next.on_cpu.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(SwitchError::Running);
        }
        // Checked again with the flag held: a task that finished on another
        // processor after the first check released the flag only after
        // marking itself finished (Release), and is never entered again.
        if next.is_finished() {
            next.on_cpu.store(false, Ordering::Release);
            return Err(SwitchError::Finished);
        }
        let save: *mut u64 = me.saved_rsp.get();
        // SAFETY: this processor holds `next`'s `on_cpu` flag, so no
        // processor runs it or is still saving it: its saved stack pointer
        // is stable, written by its last switch (or by `spawn`) before the
        // flag was released.
        let load = unsafe { *next.saved_rsp.get() };
        next.state.compare_exchange(NEW, LIVE, Ordering::AcqRel, Ordering::Acquire).ok();
        let block = crate::percpu::this_cpu();
        me.cell_record.store(crate::cell::innermost(), Ordering::Relaxed);
        crate::cell::set_innermost(next.cell_record.load(Ordering::Relaxed));
        *me.user_entry.lock() = crate::arch::cpu::UserEntry::save();
        crate::arch::user::park_live_fpu(&me);
        next.user_entry.lock().restore();
        *block.stack_bounds.lock() = stack_bounds(&next);
        block.current_ptr.store(Arc::as_ptr(&next).cast_mut(), Ordering::Relaxed);
        *block.current.lock() = Some(next);
        *block.previous.lock() = Some(me);
        // SAFETY: `save` points into the leaving task, which stays alive
        // (the block's `previous` holds it until the entered task has switched); `load`
        // is a stack pointer prepared by `tessera_switch` or `spawn` on a
        // stack that the entered task (held by the block's `current`) owns.
        unsafe { tessera_switch(save, load) };
        after_switch();
        Ok(())
    })
}

/// Ends the current task and switches to `next` for good. Returns only
/// when `next` cannot be entered (finished, or running on another
/// processor), saying why: the caller is finished then all the same (no
/// processor enters it again) and must call again with another task.
/// Inside an interrupt handler it does nothing (`InterruptContext`): the
/// interrupted task is not the handler's to end.
pub fn finish_and_switch(next: Arc<Task>) -> SwitchError {
    if crate::irq::depth() > 0 {
        return SwitchError::InterruptContext;
    }
    current().state.store(FINISHED, Ordering::Release);
    // A finished task is never switched back to: `Ok` cannot come back.
    match switch_to(next) {
        Ok(()) => panic!("a finished task was resumed"),
        Err(e) => e,
    }
}

/// First code a new task runs (from the trampoline).
#[unsafe(no_mangle)]
extern "C" fn tessera_task_start() -> ! {
    after_switch();
    crate::arch::enable_interrupts();
    let entry = current().entry.lock().take();
    if let Some(entry) = entry {
        entry();
    }
    let hook = *EXIT_HOOK.lock();
    match hook {
        Some(hook) => hook(),
        None => panic!("task returned and no scheduler set an exit hook"),
    }
}
