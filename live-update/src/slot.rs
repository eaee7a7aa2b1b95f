//! Slots: the place in the kernel where one cell serves one interface.
//!
//! Every call goes through the slot's gate, which counts calls in flight.
//! A fault in a call is contained by the boundary (`framekernel::cell`);
//! the slot's supervisor then closes the gate, waits for the other calls
//! to leave, drops the faulted instance (freeing its device), starts a
//! fresh one from the same code with fresh statics (the faulted copy
//! renewed in place when nothing else holds it) — after a backoff when
//! faults come in a row — and retries the call if the caller said it is idempotent. A cell
//! that faults too often in a row, or at start, is held: calls fail with
//! [`SlotError::Held`] until `cellctl restart` or a swap.
//!
//! A swap loads nothing itself: the new cell is loaded and linked first
//! (`registry::load`), then the gate closes and drains, the old instance
//! hands its state over (where the slot transfers state) or is dropped,
//! the new one starts and takes the slot, and the gate reopens. An old
//! instance that handed over goes before the new one's start hook, or,
//! when the new one took its place whole (a driver that took the device
//! over: [`Restored::Whole`]), after the gate reopens. If the new one
//! cannot start, the old code starts again.

use crate::registry::{CellEntry, CellState};
use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use framekernel::cell::{Arg, Fault, Instance, LoadedCell, Ret, StartError};
use framekernel::cell::Interface;
use framekernel::sync::SpinLock;
use framekernel::time;
use tessera_sched::WaitQueue;

/// Faults in a row (without a successful call between) before a slot
/// holds its cell.
pub const MAX_CONSECUTIVE_FAULTS: u32 = 5;
/// Attempts to start an instance before giving up.
pub const START_ATTEMPTS: u32 = 3;
/// Times an idempotent call is retried after faults.
pub const MAX_RETRIES: u32 = 3;
/// Longest wait, at a swap or restart, for the last handle of the old
/// instance to go (a call that just left the gate drops its handle right
/// after): 500 ms.
const RELEASE_WAIT_NS: u64 = 500_000_000;
/// Longest wait, at a swap or restart, for a recovery under way: 1 s.
const RECOVERY_WAIT_NS: u64 = 1_000_000_000;

/// Why a slot operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotError {
    /// The slot has no cell yet.
    Empty,
    /// The cell failed too often and is held.
    Held { cell: String },
    /// The call faulted (and was not retried, or kept faulting).
    Fault(Fault),
    /// The cell's entry faulted.
    StartFault(Fault),
    /// The cell offers another interface than the slot takes.
    Interface { offers: String, expects: String },
    /// The cell is not one the slot takes (by the name in its signed header).
    WrongCell { cell: String, accepts: Vec<String> },
    /// The cell's code is gone (retired).
    Gone,
    /// Another swap of this slot is running.
    Busy,
    /// The new cell refused the old one's state.
    StateRefused(String),
    /// A fresh copy of a faulted cell could not be linked.
    Reload(String),
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Empty => f.write_str("no cell in this slot"),
            SlotError::Held { cell } => write!(f, "cell {cell} is held after repeated faults (cellctl restart)"),
            SlotError::Fault(fault) => write!(f, "cell call failed: {fault}"),
            SlotError::StartFault(fault) => write!(f, "cell failed to start: {fault}"),
            SlotError::Interface { offers, expects } => {
                write!(f, "cell offers interface {offers}, this slot takes {expects}")
            }
            SlotError::WrongCell { cell, accepts } => {
                write!(f, "cell {cell} is not one this slot takes (it takes {})", accepts.join(", "))
            }
            SlotError::Gone => f.write_str("the cell's code is no longer loaded"),
            SlotError::Busy => f.write_str("another swap of this slot is running"),
            SlotError::StateRefused(why) => write!(f, "the new cell refused the state it was handed: {why}"),
            SlotError::Reload(why) => write!(f, "a fresh copy of the faulted cell could not be linked: {why}"),
        }
    }
}

/// Figures of a slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Faults contained in its calls.
    pub faults: u64,
    /// Fresh instances started after faults.
    pub restarts: u64,
    /// Calls retried after a fault.
    pub retries: u64,
    /// Swaps done.
    pub swaps: u64,
    /// Gate closed to reopened in the last swap, in nanoseconds.
    pub last_swap_downtime_ns: u64,
    /// Fault to fresh instance in the last restart, in nanoseconds.
    pub last_recovery_ns: u64,
    /// The median and the longest of the last (up to 16) of those, and
    /// how many that is.
    pub recent_recoveries: (u64, u64, usize),
}

/// Recoveries remembered for [`SlotStats::recent_recoveries`].
const RECENT: usize = 16;

/// What a finished swap reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// Name and version swapped out.
    pub old: String,
    /// Name and version swapped in.
    pub new: String,
    /// Gate closed to reopened, in nanoseconds.
    pub downtime_ns: u64,
}

/// What the registry and `cellctl` see of any slot.
pub trait AnySlot: Send + Sync {
    /// The slot's name (`virtio_blk`).
    fn name(&self) -> &str;
    /// The interface it takes (`block`).
    fn interface(&self) -> &str;
    /// Refuses a cell this slot does not take (its name or interface).
    fn check(&self, entry: &CellEntry) -> Result<(), SlotError>;
    /// The cell serving it.
    fn cell(&self) -> Option<Arc<CellEntry>>;
    /// True when its cell is held.
    fn is_held(&self) -> bool;
    /// Whether a swap or restart of it is under way.
    fn is_swapping(&self) -> bool;
    /// Its figures.
    fn stats(&self) -> SlotStats;
    /// Puts `entry` (loaded and linked) in the slot in place of the current cell.
    fn swap(&self, entry: Arc<CellEntry>) -> Result<SwapReport, SlotError>;
    /// Starts a fresh instance of the current cell (and clears a hold).
    fn restart(&self) -> Result<(), SlotError>;
    /// Recovers from a fault that a non-blocking call recorded (the
    /// supervisor task calls this).
    fn recover_pending(&self);
    /// Links the standby copy of the current cell that the next restart
    /// after a fault takes (the supervisor task calls this).
    fn prepare_standby(&self);
}

/// A standby copy serves for `code`: a copy of it that never ran.
fn serves_as_standby(standby: &LoadedCell, code: &LoadedCell) -> bool {
    standby.is_copy_of(code) && !standby.is_tainted()
}

/// Slots with a fault to recover from, for the supervisor task.
static PENDING: SpinLock<Vec<Arc<dyn AnySlot>>> = SpinLock::new(Vec::new());
/// Slots whose standby copy is to be linked, for the supervisor task.
static WANT_STANDBY: SpinLock<Vec<Arc<dyn AnySlot>>> = SpinLock::new(Vec::new());
static SUPERVISOR: WaitQueue = WaitQueue::new();

/// Starts the supervisor: a kernel task that restarts cells whose fault
/// happened where recovery cannot wait (interrupt handlers, console
/// output), and links standby copies (recoveries first). Call once,
/// after the scheduler.
pub fn start_supervisor() -> Result<(), framekernel::mm::OutOfMemory> {
    tessera_sched::spawn("cell-supervisor", || {
        loop {
            let (slot, recover) = SUPERVISOR.wait_until(|| {
                PENDING.lock().pop().map(|s| (s, true)).or_else(|| WANT_STANDBY.lock().pop().map(|s| (s, false)))
            });
            if recover {
                slot.recover_pending();
            } else {
                slot.prepare_standby();
            }
        }
    })
    .map(|_| ())
}

/// A fault recorded by `try_call`: what, when (ns), in which instance.
type PendingFault<T> = (Fault, u64, Arc<Instance<T>>);

/// Saves an instance's state, and restores it into a fresh one (each
/// makes its own calls through the boundary).
pub type StateTransfer<T> = (SaveState<T>, RestoreState<T>);
/// Asks an instance for its state.
pub type SaveState<T> = fn(&Instance<T>) -> Result<Vec<u8>, Fault>;
/// Hands a fresh instance the old one's state (`Ok(Err)`: refused).
pub type RestoreState<T> = fn(&Instance<T>, &[u8]) -> Result<Result<Restored, String>, Fault>;
/// Runs on every fresh instance before it serves, unless it took the old
/// one's place whole ([`Restored::Whole`]).
pub type StartHook<T> = fn(&Instance<T>) -> Result<(), Fault>;

/// What a restore gave the new instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// Everything the old instance served with: a driver took its device
    /// over. The start hook (which readies a fresh instance, e.g. attaches
    /// its device) is skipped, and the old instance is dropped after the
    /// gate reopens, not with the gate closed.
    Whole,
    /// The state only: the old instance goes before the start hook runs,
    /// since it may still hold a device that the hook claims.
    Partly,
}

/// A started instance and the code it runs.
type Started<T> = (Arc<Instance<T>>, Arc<LoadedCell>);

struct Active<T: 'static> {
    instance: Arc<Instance<T>>,
    entry: Arc<CellEntry>,
}

impl<T> Clone for Active<T> {
    fn clone(&self) -> Self {
        Self { instance: self.instance.clone(), entry: self.entry.clone() }
    }
}

/// Makes an instance of a loaded cell as a `T` (`LoadedCell::instantiate`
/// for the slot's interface).
type Instantiate<T> = fn(&Arc<LoadedCell>) -> Result<Instance<T>, StartError>;

/// A slot for cells exporting a `T` (for example `Box<dyn BlockDriver>`).
pub struct Slot<T: Send + Sync + 'static> {
    me: Weak<Slot<T>>,
    name: String,
    interface: &'static str,
    fingerprint: [u8; 32],
    /// Names of the cells it takes (the signed header's name).
    accepts: Vec<String>,
    instantiate: Instantiate<T>,
    active: SpinLock<Option<Active<T>>>,
    /// The last cell that served, kept for `cellctl restart` after a hold.
    last: SpinLock<Option<Arc<CellEntry>>>,
    /// That cell's code: restarts need it after the faulted instance (which
    /// also holds it) is dropped.
    code: SpinLock<Option<Arc<LoadedCell>>>,
    /// A fresh copy of that code, linked by the supervisor ahead of time
    /// once the cell has faulted (a cell that faulted once is the one
    /// likely to fault again; the others cost no memory or boot time for
    /// it): the next restart after a fault (which needs fresh statics)
    /// takes it instead of linking one while the gate is closed.
    standby: SpinLock<Option<Arc<LoadedCell>>>,
    in_flight: AtomicU64,
    closed: AtomicBool,
    gate: WaitQueue,
    /// A swap waiting for the calls in flight to leave.
    drained: WaitQueue,
    swapping: AtomicBool,
    /// Recoveries after a fault that hold `swapping` or are about to try
    /// for it (a swap or restart then waits instead of failing). A count,
    /// not a flag: a second recovery that finds the slot taken must not
    /// clear the first one's mark.
    recovering: AtomicU32,
    consecutive: AtomicU32,
    held: AtomicBool,
    faults: AtomicU64,
    restarts: AtomicU64,
    retries: AtomicU64,
    swaps: AtomicU64,
    last_swap_ns: AtomicU64,
    last_recovery_ns: AtomicU64,
    /// The last [`RECENT`] recovery times (ns), and how many there were.
    recoveries: SpinLock<([u64; RECENT], usize)>,
    /// A non-blocking call faulted; the supervisor has not recovered yet.
    needs_recovery: AtomicBool,
    /// Called (inside the boundary) on every fresh instance before it
    /// serves: catches up with what happened while the slot was closed.
    on_start: SpinLock<Option<StartHook<T>>>,
    /// How a swap hands state from the old instance to the new one.
    transfer: SpinLock<Option<StateTransfer<T>>>,
    /// A swap rehearses the transfer first, the old instance's state
    /// asked for with this (see `rehearse_transfer`).
    rehearse: SpinLock<Option<SaveState<T>>>,
    /// A swap makes the new instance before the gate closes.
    start_early: AtomicBool,
    /// The slot's cells hold no device: a swap lets the old instance go
    /// after the gate reopens.
    no_devices: AtomicBool,
    /// Each blocking call holds a handover window.
    windowed_calls: AtomicBool,
    /// That fault, when, and the instance it happened in (recovery only
    /// replaces that instance, not one a swap has put in since).
    pending_fault: SpinLock<Option<PendingFault<T>>>,
}

static SLOTS: SpinLock<Vec<Arc<dyn AnySlot>>> = SpinLock::new(Vec::new());

/// Makes `slot` known to `cellctl` and `/proc/cells`.
pub fn register(slot: Arc<dyn AnySlot>) {
    SLOTS.lock().push(slot);
}

/// The registered slot called `name`.
pub fn find(name: &str) -> Option<Arc<dyn AnySlot>> {
    SLOTS.lock().iter().find(|s| s.name() == name).cloned()
}

/// Every registered slot.
pub fn all() -> Vec<Arc<dyn AnySlot>> {
    SLOTS.lock().clone()
}

/// The wait before a restart after `consecutive` faults in a row: none
/// for the first two (a program often makes the request that faulted
/// again at once in another form: busybox `cat` tries `sendfile`, then
/// `read`), then 1, 2, 4 ms and so on.
fn backoff(consecutive: u32) -> Duration {
    match consecutive {
        0..=2 => Duration::ZERO,
        n => Duration::from_millis(1 << (n - 3).min(6)),
    }
}

/// Waits `duration`, letting other tasks run (busy when interrupts are
/// off: halting then would never end).
fn pause(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    if !framekernel::arch::interrupts_enabled() {
        return time::busy_wait(duration);
    }
    let end = time::now().saturating_add(duration);
    while time::now() < end {
        tessera_sched::yield_now();
        framekernel::arch::wait_for_interrupt();
    }
}

impl<T: Send + Sync + 'static> Slot<T> {
    /// An empty slot called `name`, taking the cells named in `accepts`
    /// that offer interface `I` (checked by its fingerprint).
    pub fn new<I: Interface<Export = T>>(name: &str, accepts: &[&str]) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            name: name.into(),
            interface: I::NAME,
            fingerprint: I::FINGERPRINT,
            accepts: accepts.iter().map(|&a| String::from(a)).collect(),
            instantiate: LoadedCell::instantiate::<I>,
            active: SpinLock::new(None),
            last: SpinLock::new(None),
            code: SpinLock::new(None),
            standby: SpinLock::new(None),
            in_flight: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            gate: WaitQueue::new(),
            drained: WaitQueue::new(),
            swapping: AtomicBool::new(false),
            recovering: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            held: AtomicBool::new(false),
            faults: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            swaps: AtomicU64::new(0),
            last_swap_ns: AtomicU64::new(0),
            last_recovery_ns: AtomicU64::new(0),
            recoveries: SpinLock::new(([0; RECENT], 0)),
            needs_recovery: AtomicBool::new(false),
            on_start: SpinLock::new(None),
            transfer: SpinLock::new(None),
            rehearse: SpinLock::new(None),
            start_early: AtomicBool::new(false),
            no_devices: AtomicBool::new(false),
            windowed_calls: AtomicBool::new(false),
            pending_fault: SpinLock::new(None),
        })
    }

    /// Sets the hook run on every fresh instance before it serves (for a
    /// console: drain what arrived while the driver was being replaced).
    pub fn set_on_start(&self, hook: StartHook<T>) {
        *self.on_start.lock() = Some(hook);
    }

    /// Makes swaps hand state over: `save` runs on the old instance after
    /// the gate is drained, `restore` on the new one before its start hook
    /// and before it serves; a refusal rolls the swap back. (A restart after a fault starts fresh:
    /// a faulted instance's state is not trusted.)
    pub fn set_state_transfer(&self, save: SaveState<T>, restore: RestoreState<T>) {
        *self.transfer.lock() = Some((save, restore));
    }

    /// Makes every swap rehearse its state transfer first (below), with
    /// the old instance's state as `peek` gives it: `peek` must leave the
    /// old instance as it was (for the line disciplines, whose `save`
    /// does, it is `save`). The state goes to a trial instance, which is
    /// dropped, so the cell must hold no device and no global state; or,
    /// if the slot starts instances early, to the new instance itself,
    /// whose `restore` must then leave it fit for the real one (a driver's
    /// take-over fails harmlessly while the old instance holds the device).
    pub fn rehearse_swaps(&self, peek: SaveState<T>) {
        *self.rehearse.lock() = Some(peek);
    }

    /// Makes a swap create the new instance while the old one still
    /// serves, before the gate closes: for slots whose cells' entry
    /// functions claim nothing (a driver that is attached, or takes its
    /// device over, only when it starts). Its state and its start hook
    /// still come with the gate closed.
    pub fn start_instances_early(&self) {
        self.start_early.store(true, Ordering::Relaxed);
    }

    /// Says that this slot's cells hold no device (no claim of ports,
    /// memory or a PCI function): a swap then drops the old instance
    /// after the gate reopens instead of before the new one starts. A
    /// cell that claims something anyway finds it busy in its new
    /// instance until the old one is gone (the claim fails; nothing
    /// unsound).
    pub fn cells_hold_no_devices(&self) {
        self.no_devices.store(true, Ordering::Relaxed);
    }

    /// Says that this slot's cells drive PCI devices: each blocking call
    /// ([`call`](Self::call)) is then made inside a handover window, so
    /// that if it faults, the claims the base revokes linger until the
    /// recovery has started the fresh instance, which takes the device
    /// over with bus mastering still on (no configuration write, slow
    /// under emulation: 170–400 µs of a recovery under QEMU's TCG).
    pub fn calls_in_handover_windows(&self) {
        self.windowed_calls.store(true, Ordering::Relaxed);
    }

    /// Before a swap closes the gate of a slot that rehearses: the old
    /// instance gives its state once (`peek`) and a trial instance of the
    /// new code (or the early one) restores it. Both run again with the
    /// gate closed, but much of their code is no longer new to the
    /// processor (or to an emulator, which translates code on first use):
    /// under QEMU's TCG this took the `tty` swap's downtime from 0.8–0.9
    /// ms to 0.04–0.13 ms. Anything the rehearsal meets (a fault, a
    /// refusal) is left to the real swap.
    fn rehearse_transfer(&self, new_code: &Arc<LoadedCell>, early: Option<&Instance<T>>) {
        let Some(peek) = *self.rehearse.lock() else { return };
        let Some((_, restore)) = *self.transfer.lock() else { return };
        let Some(old) = self.active.lock().as_ref().map(|a| a.instance.clone()) else { return };
        if old.is_poisoned() || new_code.is_tainted() {
            return;
        }
        let Ok(state) = peek(&old) else { return };
        drop(old);
        match early {
            Some(early) => {
                let _ = restore(early, &state);
            }
            None => {
                if let Ok(trial) = (self.instantiate)(new_code) {
                    let _ = restore(&trial, &state);
                }
            }
        }
    }

    /// Makes one call attempt without ever blocking (for interrupt handlers
    /// and console output): `attempt` gets the instance and calls it
    /// (`Instance::call`). `Busy` while the gate is closed or a fault
    /// awaits recovery, `Held` when held. A fault is recorded and handed to
    /// the supervisor task, which restarts the cell; it is not retried.
    pub fn try_call<R: Ret>(&self, attempt: impl FnOnce(&Instance<T>) -> Result<R, Fault>) -> Result<R, SlotError> {
        let active = framekernel::arch::without_interrupts(|| {
            if self.held.load(Ordering::Relaxed) {
                return Err(SlotError::Held { cell: self.last.lock().as_ref().map(|e| String::from(e.name())).unwrap_or_default() });
            }
            if !self.step_in() {
                return Err(SlotError::Busy);
            }
            if self.needs_recovery.load(Ordering::Relaxed) {
                self.leave();
                return Err(SlotError::Busy);
            }
            // Held only for a moment (a clone or a replacement), maybe by
            // another processor: a bounded wait, never a block.
            let active = match self.active.try_lock_spinning(10_000) {
                Some(active) => active.as_ref().cloned().ok_or(SlotError::Empty),
                None => Err(SlotError::Busy),
            };
            if active.is_err() {
                self.leave();
            }
            active
        })?;
        let result = attempt(&active.instance);
        if result.is_ok() {
            drop(active); // before leaving the gate, as in `call`
            self.leave();
            self.consecutive.store(0, Ordering::Relaxed);
            return result.map_err(SlotError::Fault);
        }
        self.leave();
        result.map_err(|fault| {
            active.entry.faults.fetch_add(1, Ordering::Relaxed);
            self.faults.fetch_add(1, Ordering::Relaxed);
            if !self.needs_recovery.swap(true, Ordering::AcqRel) {
                if let Some(mut pending) = self.pending_fault.try_lock() {
                    *pending = Some((fault.clone(), time::now_ns(), active.instance.clone()));
                }
                if let Some(me) = self.me.upgrade() {
                    PENDING.lock().push(me);
                    SUPERVISOR.wake_all();
                }
            }
            SlotError::Fault(fault)
        })
    }

    /// Starts an instance of `entry`'s cell (`code`) as a `T`; returns it
    /// with the code it runs (a fresh copy of `code` if that had faulted:
    /// a faulted copy's statics are never used again).
    ///
    /// The instance is handed `state` (a swap's) before the start hook
    /// runs: a driver that took its device over from the old instance
    /// has nothing left to set up. `early`, an instance of `code` made
    /// before the gate closed, is used first.
    /// `lingering`: the instance a swap replaces, when it handed its state
    /// over (it may have handed its device over too): dropped before
    /// anything that could claim what it holds (a fresh instance, a start
    /// hook), else left to the caller, to drop after the gate reopens.
    fn start(&self, entry: &Arc<CellEntry>, mut code: Arc<LoadedCell>, state: Option<&[u8]>, mut early: Option<Instance<T>>, lingering: &mut Option<Active<T>>) -> Result<Started<T>, SlotError> {
        self.check(entry)?;
        let mut last = None;
        for attempt in 0..START_ATTEMPTS {
            pause(backoff(attempt + 2));
            if code.is_tainted() {
                code = self.untainted(code)?;
                entry.replace_code(&code);
            }
            let made = match early.take() {
                Some(instance) if Arc::ptr_eq(instance.cell(), &code) && !instance.is_poisoned() => Ok(instance),
                _ => {
                    self.let_go(lingering.take());
                    (self.instantiate)(&code)
                }
            };
            match made {
                Ok(typed) => {
                    let restore = self.transfer.lock().map(|(_, restore)| restore);
                    let mut restored = None;
                    if let (Some(state), Some(restore)) = (state, restore) {
                        match restore(&typed, state) {
                            Ok(Ok(how)) => restored = Some(how),
                            Ok(Err(why)) => return Err(SlotError::StateRefused(why)),
                            Err(fault) => return Err(SlotError::StartFault(fault)),
                        }
                    }
                    if restored != Some(Restored::Whole) {
                        self.let_go(lingering.take());
                        let hook = *self.on_start.lock();
                        if let Some(hook) = hook {
                            hook(&typed).map_err(SlotError::StartFault)?;
                        }
                    }
                    return Ok((Arc::new(typed), code));
                }
                Err(StartError::Interface { offers, expects }) => {
                    return Err(SlotError::Interface { offers, expects: expects.into() });
                }
                Err(StartError::Tainted) => continue, // a fresh copy next time round
                Err(StartError::Fault(fault)) => {
                    entry.faults.fetch_add(1, Ordering::Relaxed);
                    self.faults.fetch_add(1, Ordering::Relaxed);
                    log::warn!("cell {} {}: fault while starting: {fault}", entry.name(), entry.version());
                    last = Some(fault);
                }
            }
        }
        Err(SlotError::StartFault(last.unwrap_or(Fault {
            kind: framekernel::cell::FaultKind::Panic,
            message: String::new(),
        })))
    }

    /// A weak handle on the instance serving now: it does not keep the
    /// instance (a test watches with it when a swap lets the old one go).
    pub fn serving(&self) -> Option<Weak<Instance<T>>> {
        self.active.lock().as_ref().map(|a| Arc::downgrade(&a.instance))
    }

    /// Puts `entry`'s cell in the (empty) slot.
    pub fn install(&self, entry: Arc<CellEntry>) -> Result<(), SlotError> {
        let code = entry.code().ok_or(SlotError::Gone)?;
        let (instance, code) = self.start(&entry, code, None, None, &mut None)?;
        self.take_slot(instance, entry, code);
        Ok(())
    }

    /// Takes the slot for a swap or restart. A recovery after a fault
    /// that holds it (a millisecond or two; faults can come every few
    /// hundred) is waited for, up to [`RECOVERY_WAIT_NS`]: a `cellctl
    /// swap` of a faulting driver must not fail because the driver just
    /// faulted. Another swap or restart under way is `Busy`.
    fn begin_exclusive(&self) -> Result<(), SlotError> {
        let since = time::now_ns();
        while self.swapping.swap(true, Ordering::Acquire) {
            if self.recovering.load(Ordering::Acquire) == 0 || time::now_ns().saturating_sub(since) > RECOVERY_WAIT_NS {
                return Err(SlotError::Busy);
            }
            pause(Duration::from_millis(1));
        }
        Ok(())
    }

    /// A copy of the faulted `code` to start: `code` itself renewed in
    /// place when nothing else holds it (no link, and its code is already
    /// translated by an emulator), else the standby copy, else a fresh
    /// copy linked now. The slot's own handle on `code` is let go for
    /// the renewal and then names the copy returned.
    fn untainted(&self, code: Arc<LoadedCell>) -> Result<Arc<LoadedCell>, SlotError> {
        let held = self.code.lock().take_if(|held| Arc::ptr_eq(held, &code)).is_some();
        let copy = match LoadedCell::renew(code) {
            Ok(renewed) => Ok(renewed),
            Err(code) => match self.take_standby(&code) {
                Some(standby) => Ok(standby),
                None => code.fresh_copy().map_err(|e| (code, SlotError::Reload(format!("{e}")))),
            },
        };
        let (keep, result) = match copy {
            Ok(copy) => (copy.clone(), Ok(copy)),
            Err((code, e)) => (code, Err(e)),
        };
        if held {
            *self.code.lock() = Some(keep);
        }
        result
    }

    /// The standby copy, if it is one of `code` and has never run.
    fn take_standby(&self, code: &LoadedCell) -> Option<Arc<LoadedCell>> {
        self.standby.lock().take().filter(|standby| serves_as_standby(standby, code))
    }

    /// Asks the supervisor for a standby copy of the current code.
    fn want_standby(&self) {
        if let Some(me) = self.me.upgrade() {
            WANT_STANDBY.lock().push(me);
            SUPERVISOR.wake_all();
        }
    }

    fn take_slot(&self, instance: Arc<Instance<T>>, entry: Arc<CellEntry>, code: Arc<LoadedCell>) {
        *self.code.lock() = Some(code);
        // A fault recorded against the instance this one replaces is moot.
        self.pending_fault.lock().take();
        self.needs_recovery.store(false, Ordering::Release);
        entry.set_slot(&self.name);
        entry.set_state(CellState::Active);
        entry.unpin();
        *self.last.lock() = Some(entry.clone());
        *self.active.lock() = Some(Active { instance, entry });
        self.held.store(false, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
    }

    /// Passes the gate: the active instance, counted in flight.
    fn enter(&self) -> Result<Active<T>, SlotError> {
        self.gate.wait_until(|| {
            if self.held.load(Ordering::Relaxed) {
                let cell = self.last.lock().as_ref().map(|e| String::from(e.name())).unwrap_or_default();
                return Some(Err(SlotError::Held { cell }));
            }
            if !self.step_in() {
                return None;
            }
            let active = self.active.lock().as_ref().cloned();
            match active {
                Some(active) => Some(Ok(active)),
                None => {
                    self.leave();
                    Some(Err(SlotError::Empty))
                }
            }
        })
    }

    /// Counts a call in flight, then checks the gate (SeqCst both, as in
    /// `close_and_drain`, so that on many processors a call and a swap
    /// cannot both miss each other); false, and not counted, when closed.
    fn step_in(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.closed.load(Ordering::SeqCst) {
            self.leave();
            return false;
        }
        true
    }

    /// A call leaves (or steps back from a closed gate). Only a draining
    /// swap waits for this: callers waiting at the gate are not woken (one
    /// stepping back would wake itself, and spin).
    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.drained.wake_all();
        }
    }

    /// Closes the gate and waits until no call is in flight: a call that
    /// counted itself before the gate closed is waited for; one that
    /// counts itself after sees the gate closed and steps back.
    fn close_and_drain(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.drained.wait_until(|| (self.in_flight.load(Ordering::SeqCst) == 0).then_some(()));
    }

    /// Lets go of the instance a swap or restart replaces, before the new
    /// one starts (it claims the same device): a fault recorded against it
    /// is moot and dropped, then this waits (a bounded while) until nobody
    /// holds the instance any more: a call that passed the gate may still
    /// hold a handle for a moment after it left, and the instance's device
    /// claims end only with its last handle.
    fn retire(&self, old: Option<Active<T>>) {
        drop(self.pending_fault.lock().take());
        self.let_go(old);
    }

    /// Drops the slot's handle on `old` and waits (a bounded while) until
    /// nobody holds the instance any more.
    fn let_go(&self, old: Option<Active<T>>) {
        let Some(old) = old else { return };
        let instance = Arc::downgrade(&old.instance);
        drop(old);
        let since = time::now_ns();
        while instance.strong_count() > 0 {
            if time::now_ns().saturating_sub(since) > RELEASE_WAIT_NS {
                log::warn!("slot {}: the old instance is still held after {} ms; the new one starts anyway", self.name, RELEASE_WAIT_NS / 1_000_000);
                return;
            }
            tessera_sched::yield_now();
        }
    }

    fn reopen(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.gate.wake_all();
    }

    /// Calls the cell: `attempt` gets the instance and makes the call
    /// (`Instance::call`, with the arguments that cross). After a fault the
    /// cell is restarted; an `idempotent` call is then attempted again (up
    /// to [`MAX_RETRIES`]), so `attempt` may run more than once.
    pub fn call<R: Ret>(&self, idempotent: bool, mut attempt: impl FnMut(&Instance<T>) -> Result<R, Fault>) -> Result<R, SlotError> {
        self.recover_pending();
        let mut retries = 0;
        loop {
            let active = self.enter()?;
            // Open until this round's recovery (if it faults) is done.
            let window = self.windowed_calls.load(Ordering::Relaxed).then(framekernel::pci::HandoverWindow::open);
            let result = attempt(&active.instance);
            if result.is_ok() {
                // Let go of the instance before leaving the gate: a swap
                // that waits for the calls to leave then holds the last
                // handle, and the old instance (its device claims with it)
                // is gone before the new one starts.
                drop(active);
                self.leave();
                drop(window);
                self.consecutive.store(0, Ordering::Relaxed);
                return result.map_err(SlotError::Fault);
            }
            self.leave();
            match result {
                Ok(value) => return Ok(value),
                Err(fault) if fault.kind == framekernel::cell::FaultKind::Poisoned => {
                    // Another call faulted in this instance and it is being
                    // replaced: not a new fault; wait for the fresh one. A
                    // call stopped while it waited for a lock of the faulted
                    // copy (it says why) ran in part: retried only when
                    // idempotent. A `Poisoned` from an instance that is not
                    // (made up by `attempt`) replaces nothing: a healthy
                    // instance and its state are kept.
                    if !active.instance.is_poisoned() {
                        return Err(SlotError::Fault(fault));
                    }
                    self.recover(active, time::now_ns(), true);
                    let stopped = !fault.message.is_empty();
                    if retries >= MAX_RETRIES || (stopped && !idempotent) {
                        return Err(SlotError::Fault(fault));
                    }
                    retries += 1;
                }
                Err(fault) => {
                    let faulted_at = time::now_ns();
                    active.entry.faults.fetch_add(1, Ordering::Relaxed);
                    let n = self.faults.fetch_add(1, Ordering::Relaxed) + 1;
                    self.report_fault(&active.entry, n, &fault);
                    self.recover(active, faulted_at, true);
                    if !idempotent || retries >= MAX_RETRIES {
                        return Err(SlotError::Fault(fault));
                    }
                    retries += 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// [`call`](Self::call) with one argument that crosses (copied again
    /// for a retry): `f(object, arg)` runs inside the boundary.
    pub fn call_with<A: Arg + Copy, R: Ret>(&self, idempotent: bool, arg: A, f: fn(&T, A) -> R) -> Result<R, SlotError> {
        self.call(idempotent, |cell| cell.call(arg, f))
    }

    /// [`try_call`](Self::try_call) with one argument that crosses.
    pub fn try_call_with<A: Arg, R: Ret>(&self, arg: A, f: fn(&T, A) -> R) -> Result<R, SlotError> {
        self.try_call(|cell| cell.call(arg, f))
    }

    /// Logs fault `n` of this slot: the first few in full, then every 25th
    /// (as a kernel log is rate-limited), so a cell faulting in a loop does
    /// not flood the console; `/proc/cells` and `cellctl info` count all.
    fn report_fault(&self, entry: &CellEntry, n: u64, fault: &Fault) {
        let (name, version) = (entry.name(), entry.version());
        if n <= 3 || n.is_multiple_of(25) {
            let more = if n == 3 { " (further faults of this slot: every 25th is logged; cellctl info counts all)" } else { "" };
            log::warn!("cell {name} {version} in slot {}: fault {n} contained: {fault}{more}", self.name);
        } else {
            log::debug!("cell {name} {version} in slot {}: fault {n} contained: {fault}", self.name);
        }
    }

    /// After a fault in `faulted`: a fresh instance, or a hold. A caller
    /// that will call again (`wait_for_swap`) waits, if a swap or another
    /// recovery holds the slot, until that one has replaced the faulted
    /// instance; one that will not (the supervisor's `recover_pending`)
    /// leaves it to them at once.
    fn recover(&self, faulted: Active<T>, faulted_at: u64, wait_for_swap: bool) {
        // The faulted instance's device claims were revoked and linger:
        // the fresh instance takes them over; what it does not is settled
        // when this window (or the last open one) closes.
        let window = framekernel::pci::HandoverWindow::open();
        // Said before the slot is taken, so that a swap arriving in
        // between waits for this recovery instead of failing.
        self.recovering.fetch_add(1, Ordering::AcqRel);
        if self.swapping.swap(true, Ordering::Acquire) {
            self.recovering.fetch_sub(1, Ordering::AcqRel);
            if !wait_for_swap {
                return;
            }
            // A swap (or another recovery) holds the slot and replaces the
            // instance. Until it has, the faulted one may still be behind
            // an open gate (a swap makes its new instance before it closes
            // the gate): a retry now would meet it again and spend the
            // call's retries in a moment. So wait for the replacement
            // (handle let go first: the swap waits for the last one).
            let weak = Arc::downgrade(&faulted.instance);
            drop(faulted);
            self.gate.wait_until(|| {
                let replaced = !self.active.lock().as_ref().is_some_and(|a| core::ptr::eq(Arc::as_ptr(&a.instance), weak.as_ptr()));
                (replaced || !self.swapping.load(Ordering::Acquire)).then_some(())
            });
            return;
        }
        self.close_and_drain();
        let current = self.active.lock().take_if(|a| Arc::ptr_eq(&a.instance, &faulted.instance));
        if let Some(old) = current {
            let entry = old.entry.clone();
            // The old instance goes first: it faulted, so it is not dropped
            // but leaks, unread; its device claims were revoked.
            drop(old);
            drop(faulted);
            let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
            if consecutive >= MAX_CONSECUTIVE_FAULTS {
                self.hold(&entry, "faults in a row");
            } else {
                pause(backoff(consecutive));
                let code = self.code.lock().clone();
                match code.ok_or(SlotError::Gone).and_then(|code| self.start(&entry, code, None, None, &mut None)) {
                    Ok((instance, code)) => {
                        entry.restarts.fetch_add(1, Ordering::Relaxed);
                        self.restarts.fetch_add(1, Ordering::Relaxed);
                        *self.code.lock() = Some(code);
                        *self.active.lock() = Some(Active { instance, entry });
                        let took = time::now_ns().saturating_sub(faulted_at);
                        self.last_recovery_ns.store(took, Ordering::Relaxed);
                        let mut recent = self.recoveries.lock();
                        let (times, count) = &mut *recent;
                        if let Some(at) = times.get_mut(*count % RECENT) {
                            *at = took;
                        }
                        *count += 1;
                        self.want_standby();
                    }
                    Err(e) => self.hold(&entry, &format!("{e}")),
                }
            }
        }
        // The slot is let go before the recovery stops saying it runs: a
        // swap that found the slot taken and looks at `recovering` then
        // waits and tries again rather than failing as `Busy`.
        self.swapping.store(false, Ordering::Release);
        self.recovering.fetch_sub(1, Ordering::AcqRel);
        self.reopen();
        drop(window);
    }

    fn hold(&self, entry: &Arc<CellEntry>, why: &str) {
        log::error!("cell {} {} in slot {}: held ({why}); `cellctl restart {}` tries again", entry.name(), entry.version(), self.name, self.name);
        entry.set_state(CellState::Held);
        *self.last.lock() = Some(entry.clone());
        self.held.store(true, Ordering::Relaxed);
    }
}

impl<T: Send + Sync + 'static> Drop for Slot<T> {
    fn drop(&mut self) {
        if let Some(active) = self.active.lock().take() {
            active.entry.set_state(CellState::Retired);
        }
        if let Some(entry) = self.last.lock().take() {
            entry.set_state(CellState::Retired);
        }
    }
}

impl<T: Send + Sync + 'static> AnySlot for Slot<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn interface(&self) -> &str {
        self.interface
    }

    fn check(&self, entry: &CellEntry) -> Result<(), SlotError> {
        if !self.accepts.iter().any(|a| a == entry.name()) {
            return Err(SlotError::WrongCell { cell: entry.name().into(), accepts: self.accepts.clone() });
        }
        if entry.fingerprint() != &self.fingerprint || entry.interface() != self.interface {
            return Err(SlotError::Interface { offers: entry.interface().into(), expects: self.interface.into() });
        }
        Ok(())
    }

    fn cell(&self) -> Option<Arc<CellEntry>> {
        self.last.lock().clone()
    }

    fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    fn is_swapping(&self) -> bool {
        self.swapping.load(Ordering::Acquire)
    }

    fn stats(&self) -> SlotStats {
        SlotStats {
            faults: self.faults.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            swaps: self.swaps.load(Ordering::Relaxed),
            last_swap_downtime_ns: self.last_swap_ns.load(Ordering::Relaxed),
            last_recovery_ns: self.last_recovery_ns.load(Ordering::Relaxed),
            recent_recoveries: {
                let (times, count) = *self.recoveries.lock();
                let mut recent: Vec<u64> = times.iter().copied().take(count.min(RECENT)).collect();
                recent.sort_unstable();
                let median = recent.get(recent.len() / 2).copied().unwrap_or(0);
                (median, recent.last().copied().unwrap_or(0), recent.len())
            },
        }
    }

    fn swap(&self, entry: Arc<CellEntry>) -> Result<SwapReport, SlotError> {
        self.check(&entry)?;
        let new_code = entry.code().ok_or(SlotError::Gone)?;
        self.begin_exclusive()?;
        // A slot whose instances claim nothing until they are started
        // makes the new one now, while the old one still serves.
        let early = if self.start_early.load(Ordering::Relaxed) && !new_code.is_tainted() { (self.instantiate)(&new_code).ok() } else { None };
        self.rehearse_transfer(&new_code, early.as_ref());
        let old_code = self.code.lock().clone();
        // The old instance's device claims linger until the new one has
        // taken them over (or the window closes, after the gate reopens).
        let window = framekernel::pci::HandoverWindow::open();
        let closed_at = time::now_ns();
        self.close_and_drain();
        let old = self.active.lock().take();
        let old_entry = old.as_ref().map(|a| a.entry.clone()).or_else(|| self.last.lock().clone());
        let save = self.transfer.lock().map(|(save, _)| save);
        let state = match (&old, save) {
            (Some(old), Some(_)) if old.instance.is_poisoned() => {
                log::warn!("slot {}: the old instance faulted; its state is not trusted and the new cell starts fresh", self.name);
                None
            }
            (Some(old), Some(save)) => match save(&old.instance) {
                Ok(state) => Some(state),
                Err(fault) => {
                    log::warn!("slot {}: saving the old cell's state faulted ({fault}); the new cell starts fresh", self.name);
                    None
                }
            },
            _ => None,
        };
        // Cells that hold no device go after the gate reopens: nothing of
        // theirs is in the new instance's way. One that handed its state
        // over lingers while the new one starts (`start`): if the new one
        // took its device over whole, it too goes after the gate reopens.
        let no_devices = self.no_devices.load(Ordering::Relaxed);
        let mut old = if no_devices || state.is_some() {
            drop(self.pending_fault.lock().take());
            old
        } else {
            self.retire(old);
            None
        };
        // `start` may let it go early only where it could hold a device.
        let mut none = None;
        let lingering = if no_devices { &mut none } else { &mut old };
        // An early instance a rehearsal restored into serves only a swap
        // that restores the real state into it (which undoes what the
        // rehearsal left); with none, a fresh instance starts.
        let early = early.filter(|_| state.is_some() || self.rehearse.lock().is_none());
        let result = match self.start(&entry, new_code, state.as_deref(), early, lingering) {
            Ok((instance, new_code)) => {
                if let Some(old) = &old_entry
                    && !Arc::ptr_eq(old, &entry)
                {
                    old.set_state(CellState::Retired);
                }
                entry.swaps.fetch_add(1, Ordering::Relaxed);
                self.swaps.fetch_add(1, Ordering::Relaxed);
                self.take_slot(instance, entry.clone(), new_code);
                Ok(())
            }
            Err(e) => {
                // Roll back: the old cell serves again.
                if let (Some(old), Some(code)) = (&old_entry, old_code.clone()) {
                    match self.start(old, code, state.as_deref(), None, lingering) {
                        Ok((instance, code)) => self.take_slot(instance, old.clone(), code),
                        Err(again) => self.hold(old, &format!("could not restart after a failed swap: {again}")),
                    }
                }
                Err(e)
            }
        };
        let downtime_ns = time::now_ns().saturating_sub(closed_at);
        drop(old_code); // the old code goes now, unless a restart kept it
        self.swapping.store(false, Ordering::Release);
        self.reopen();
        self.let_go(old);
        drop(window);
        result?;
        self.last_swap_ns.store(downtime_ns, Ordering::Relaxed);
        let describe = |e: &CellEntry| format!("{} {}", e.name(), e.version());
        Ok(SwapReport { old: old_entry.as_deref().map(describe).unwrap_or_else(|| "-".into()), new: describe(&entry), downtime_ns })
    }

    fn recover_pending(&self) {
        if !self.needs_recovery.load(Ordering::Acquire) {
            return;
        }
        let pending = self.pending_fault.lock().take();
        let active = self.active.lock().clone();
        if let (Some((fault, at, faulted)), Some(active)) = (pending, active)
            && Arc::ptr_eq(&faulted, &active.instance)
        {
            // Only the slot's handle is left when it recovers: then the
            // faulted copy can be renewed in place.
            drop(faulted);
            self.report_fault(&active.entry, self.faults.load(Ordering::Relaxed), &fault);
            self.recover(active, at, false);
        }
        self.needs_recovery.store(false, Ordering::Release);
    }

    fn prepare_standby(&self) {
        let Some(code) = self.code.lock().clone() else { return };
        if self.standby.lock().as_ref().is_some_and(|s| serves_as_standby(s, &code)) {
            return;
        }
        // Linked outside the lock (a restart may want the old one meanwhile).
        match code.fresh_copy() {
            Ok(copy) => *self.standby.lock() = Some(copy),
            Err(e) => log::warn!("slot {}: no standby copy of {} ({e}); a restart after a fault links one", self.name, code.name()),
        }
    }

    fn restart(&self) -> Result<(), SlotError> {
        let entry = self.last.lock().clone().ok_or(SlotError::Empty)?;
        let code = self.code.lock().clone().ok_or(SlotError::Gone)?;
        self.begin_exclusive()?;
        let window = framekernel::pci::HandoverWindow::open();
        self.close_and_drain();
        let old = self.active.lock().take();
        self.retire(old);
        let result = self.start(&entry, code, None, None, &mut None).map(|(instance, code)| {
            entry.restarts.fetch_add(1, Ordering::Relaxed);
            self.restarts.fetch_add(1, Ordering::Relaxed);
            self.take_slot(instance, entry.clone(), code);
        });
        if let Err(e) = &result {
            self.hold(&entry, &format!("{e}"));
        }
        self.swapping.store(false, Ordering::Release);
        self.reopen();
        drop(window);
        result
    }
}

/// Registered slot names with their cell, for `cellctl list`.
pub fn describe_all() -> String {
    let mut out = String::new();
    for slot in all() {
        let stats = slot.stats();
        let cell = slot.cell().map(|e| format!("{} {}", e.name(), e.version())).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "slot {} ({}): {}{}; faults {}, restarts {}, retries {}, swaps {}\n",
            slot.name(),
            slot.interface(),
            cell,
            if slot.is_held() { " [held]" } else { "" },
            stats.faults,
            stats.restarts,
            stats.retries,
            stats.swaps
        ));
    }
    out
}
