//! Cells: components loaded at run time from `*.cell` files, and the
//! boundary every call into a cell crosses.
//!
//! [`load`] checks the file (`logic::cellfile`): its Ed25519 signature by
//! the build's cell signing key (whose public half is compiled into the
//! kernel from `TESSERA_CELL_PUBKEY`) before any ELF structure is looked
//! at, then that it was packed for this kernel build (GNU build id). It
//! then links the object for a range of the cell area against the
//! kernel addresses the signed file lists for its imports (resolved by the
//! packer against this build's kernel ELF; `logic::cellobj` allows only
//! the cell import allowlist), checks that the object's marker carries the interface
//! fingerprint the signed header names, and maps it W^X.
//! [`LoadedCell::instantiate`] compares that fingerprint with the
//! interface the caller expects, and only then runs the cell's entry
//! function (made by `tessera_cell_api::cell_entry!`) inside the boundary;
//! it returns the interface's `Export`, which [`Instance::call`] calls.
//!
//! Fault containment: every call into a cell records a continuation (the
//! callee-saved registers, stack pointer, flags and return address) before
//! it enters the cell. A panic, or a CPU exception in kernel mode, while
//! that record is the current task's innermost one resumes at the
//! continuation: the call returns [`Fault`] instead of stopping the
//! kernel. The abandoned frames' destructors do not run (like a `longjmp`),
//! so whatever they were changing may be half-changed. Soundness rests on
//! never looking at any of it again (docs/soundness.md):
//! - the cell is *tainted*: none of its instances is called or dropped
//!   again (their objects leak), its statics are never used again (a
//!   restart links a fresh copy), and the device claims taken in its calls
//!   are revoked by the base, which owns the claim tables;
//! - a call crosses the boundary only with [`Arg`] values in and [`Ret`]
//!   values out: plain data, whose every partial update is a valid value,
//!   or owned buffers that leak with the call; no closure, so no caller
//!   state is captured;
//! - frames are abandoned only outside the base's own critical sections
//!   ([`BaseSection`], taken by every base lock): a fault while the base
//!   holds a lock is the base's bug and stops the kernel instead;
//! - [`enter`] is the base's own: nothing outside it can abandon frames.

use crate::mm::MapError;
use crate::mm::cellmap::{self, CellMapping, Rights};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use framekernel_logic::cellfile::{self, CellFile, FileError};
use framekernel_logic::cellobj::{self, CellObject, LinkError};
use framekernel_logic::layout::PAGE_SIZE;

/// The public key that verifies cell files (the Makefile passes the
/// build's `build/cell-signing.key` public half as 64 hex digits).
const CELL_PUBKEY: Option<&str> = option_env!("TESSERA_CELL_PUBKEY");

/// The key cells must be signed with, if this kernel was built with one.
pub fn signing_key() -> Option<[u8; 32]> {
    CELL_PUBKEY.and_then(cellfile::parse_key)
}

/// This kernel's GNU build id (cells name the build they were packed for).
pub fn build_id() -> Option<&'static [u8]> {
    cellfile::gnu_build_id(crate::mm::image::build_id_note())
}

/// Why a cell was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file is not a well-formed cell file.
    File(FileError),
    /// The object could not be linked (malformed, unresolved symbol, ...).
    Link(LinkError),
    /// No room or memory to map it.
    Map(MapError),
    /// The kernel was built without `TESSERA_CELL_PUBKEY`.
    NoSigningKey,
    /// The kernel has no build id to check cells against.
    NoBuildId,
    /// The cell was packed for another kernel build.
    WrongKernel { cell: String, kernel: String },
    /// The object's marker names another interface than the signed header.
    MarkerMismatch,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::File(e) => write!(f, "{e}"),
            LoadError::Link(e) => write!(f, "{e}"),
            LoadError::Map(e) => write!(f, "cannot map the cell: {e}"),
            LoadError::NoSigningKey => f.write_str(
                "this kernel was built without a cell signing key (TESSERA_CELL_PUBKEY); it loads no cells",
            ),
            LoadError::NoBuildId => f.write_str("this kernel has no GNU build id; it cannot tell which cells were packed for it"),
            LoadError::WrongKernel { cell, kernel } => {
                write!(f, "packed for kernel build {cell}, this kernel is build {kernel} (repack it against this kernel's ELF)")
            }
            LoadError::MarkerMismatch => {
                f.write_str("the object's cell_entry! marker names another interface fingerprint than its signed header")
            }
        }
    }
}

/// A cell mapped and linked, ready to instantiate. The code stays mapped
/// as long as this (or an [`Instance`] made from it) lives.
pub struct LoadedCell {
    /// Its fault domain: claims taken in its calls are recorded under it.
    id: u64,
    /// A call faulted: its statics and instances are never used again.
    tainted: AtomicBool,
    /// Shared by a loaded cell and every fresh copy of it (see
    /// [`LoadedCell::is_copy_of`]).
    lineage: u64,
    /// The checked object, for fresh copies after a fault.
    object: Box<[u8]>,
    /// Name, version, interface, fingerprint and imports, as signed.
    signed: Signed,
    mapping: CellMapping,
    /// The writable data as linked (offset of its first page, its bytes up
    /// to the end of its last page): what [`LoadedCell::renew`] writes back.
    pristine: (u64, Box<[u8]>),
    entry: u64,
    text: (u64, u64),
    imports: usize,
    relocations: usize,
}

impl fmt::Debug for LoadedCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoadedCell({} {} at {:#x})", self.signed.name, self.signed.version, self.base())
    }
}

/// Loads the cell file `file`: signature, kernel build, link (imports on
/// the allowlist only), marker, map.
pub fn load(file: &[u8]) -> Result<Arc<LoadedCell>, LoadError> {
    let key = signing_key().ok_or(LoadError::NoSigningKey)?;
    let cell = CellFile::verify(file, &key).map_err(LoadError::File)?;
    let kernel = build_id().ok_or(LoadError::NoBuildId)?;
    if cell.header.build_id != kernel {
        return Err(LoadError::WrongKernel { cell: cellfile::hex(cell.header.build_id), kernel: cellfile::hex(kernel) });
    }
    let header = &cell.header;
    let mut imports: Vec<(String, u64)> = cell.imports.iter().map(|(name, address)| (String::from(name), address)).collect();
    imports.sort_unstable();
    let signed = Signed { name: header.name.into(), version: header.version.into(), interface: header.interface.into(), fingerprint: header.fingerprint, imports };
    link_and_map(signed, cell.object.into(), NEXT_LINEAGE.fetch_add(1, Ordering::Relaxed))
}

/// What the signed file says besides the object: kept for fresh copies.
#[derive(Clone)]
struct Signed {
    name: String,
    version: String,
    interface: String,
    fingerprint: [u8; 32],
    /// The kernel symbols the object uses and their addresses in this
    /// build (resolved by the packer, covered by the signature), sorted.
    imports: Vec<(String, u64)>,
}

static NEXT_DOMAIN: AtomicU64 = AtomicU64::new(1);
static NEXT_LINEAGE: AtomicU64 = AtomicU64::new(1);

/// Links a verified object for a fresh range of the cell area (imports on
/// the allowlist only), checks its marker and maps it W^X.
fn link_and_map(signed: Signed, object_bytes: Box<[u8]>, lineage: u64) -> Result<Arc<LoadedCell>, LoadError> {
    let object = CellObject::parse(&object_bytes).map_err(|e| LoadError::Link(LinkError::Object(e)))?;
    let size = cellobj::image_size(&object).map_err(LoadError::Link)?;
    let base = cellmap::reserve(size).map_err(LoadError::Map)?;
    // Imports resolve from the signed table only (a symbol it does not list
    // is unresolved): no symbol table handed to the base at run time can
    // point a cell's calls elsewhere.
    let resolve = |name: &str| {
        let at = signed.imports.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok()?;
        signed.imports.get(at).map(|&(_, address)| address)
    };
    let image = match cellobj::link(&object, base, &resolve) {
        Ok(image) => image,
        Err(e) => {
            cellmap::release(base, size);
            return Err(LoadError::Link(e));
        }
    };
    if image.fingerprint != signed.fingerprint {
        cellmap::release(base, size);
        return Err(LoadError::MarkerMismatch);
    }
    let parts = [
        (image.text, Rights::Execute),
        (image.rodata, Rights::ReadOnly),
        (image.data, Rights::ReadWrite),
        (image.got, Rights::ReadOnly),
    ];
    let writable = image.data.0..image.data.1.next_multiple_of(PAGE_SIZE);
    let pristine = image.bytes.get(writable.start as usize..writable.end as usize).unwrap_or_default().into();
    // On failure the partial mapping drops, which unmaps and releases it.
    let mapping = CellMapping::map(base, &image.bytes, &parts).map_err(LoadError::Map)?;
    Ok(Arc::new(LoadedCell {
        pristine: (writable.start, pristine),
        id: NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed),
        tainted: AtomicBool::new(false),
        lineage,
        mapping,
        entry: base + image.entry,
        text: (base + image.text.0, base + image.text.1),
        imports: image.imports,
        relocations: image.relocations,
        object: object_bytes,
        signed,
    }))
}

impl LoadedCell {
    /// The cell's name.
    pub fn name(&self) -> &str {
        &self.signed.name
    }

    /// Its version.
    pub fn version(&self) -> &str {
        &self.signed.version
    }

    /// The interface it says it offers.
    pub fn interface(&self) -> &str {
        &self.signed.interface
    }

    /// Load address.
    pub fn base(&self) -> u64 {
        self.mapping.base()
    }

    /// Bytes of memory its image occupies.
    pub fn size(&self) -> u64 {
        self.mapping.bytes()
    }

    /// Kernel symbols it uses, and relocations applied when it was linked.
    pub fn link_figures(&self) -> (usize, usize) {
        (self.imports, self.relocations)
    }

    /// True when `address` is in this cell's code.
    pub fn contains_code(&self, address: u64) -> bool {
        (self.text.0..self.text.1).contains(&address)
    }

    /// The fingerprint of the interface it offers (signed header and
    /// marker agree on it).
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.signed.fingerprint
    }

    /// True once a call into this cell faulted: it is not called,
    /// instantiated or asked to drop anything again.
    pub fn is_tainted(&self) -> bool {
        self.tainted.load(Ordering::Acquire)
    }

    /// The same cell linked again at a fresh address, with fresh statics:
    /// what a restart after a fault runs (the tainted copy's statics may be
    /// half-updated). The object was verified when it was first loaded and
    /// is kept in the base's own memory since.
    pub fn fresh_copy(&self) -> Result<Arc<LoadedCell>, LoadError> {
        link_and_map(self.signed.clone(), self.object.clone(), self.lineage)
    }

    /// This copy, with its statics set back to what they were when it was
    /// linked, in place, as a new fault domain: what a restart after a
    /// fault runs when it can. Nothing is linked or mapped, and the code
    /// pages stay as they are (so an emulator keeps its translations of
    /// them). Refused, giving `this` back, unless `this` is the only
    /// handle on the copy: then no instance of it exists (each holds one),
    /// so no call runs in it and no object it made is in use (a faulted
    /// instance's objects leak, unread, and are never used again). That is
    /// the moment its mapping would be freed otherwise: renewing instead is
    /// as if the same object were linked again at the same address. Its
    /// text, read-only data and GOT were never writable since the link,
    /// so only the writable data differs.
    pub fn renew(this: Arc<Self>) -> Result<Arc<Self>, Arc<Self>> {
        let mut cell = Arc::try_unwrap(this)?;
        let (offset, bytes) = &cell.pristine;
        if !cell.mapping.restore(*offset, bytes) {
            return Err(Arc::new(cell)); // not reached: the range came from the link
        }
        cell.id = NEXT_DOMAIN.fetch_add(1, Ordering::Relaxed);
        cell.tainted = AtomicBool::new(false);
        Ok(Arc::new(cell))
    }

    /// True when `self` and `other` come from the same load (one is a
    /// fresh copy of the other, or both are of a third): the same object
    /// and signed header, linked at different addresses.
    pub fn is_copy_of(&self, other: &LoadedCell) -> bool {
        self.lineage == other.lineage
    }

    /// Runs `f` inside the boundary in this cell's fault domain; a fault
    /// taints the cell.
    fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R, Fault> {
        enter(self.id, self.text, &self.tainted, f).inspect_err(|_| self.taint())
    }

    /// A call into this cell faulted: no instance of it runs again, and
    /// every device claim taken in its calls goes back to the base.
    fn taint(&self) {
        // Set before the revocations take the claim tables' locks: a claim
        // made by a call still running in this copy is either revoked now
        // or refused (`current_call_tainted`).
        if !self.tainted.swap(true, Ordering::AcqRel) {
            crate::io::revoke_domain(self.id);
            crate::mm::kmap::revoke_domain(self.id);
            crate::pci::revoke_domain(self.id);
        }
    }

    /// Runs the cell's entry function (inside the boundary) as an entry of
    /// interface `I` and returns its exported object, which keeps the code
    /// mapped while it lives. Refused without calling anything in the cell
    /// when the cell offers another interface, or when this copy faulted
    /// before (its statics are not trusted: start a [`fresh_copy`](Self::fresh_copy)).
    pub fn instantiate<I: Interface>(self: &Arc<Self>) -> Result<Instance<I::Export>, StartError> {
        if self.signed.fingerprint != I::FINGERPRINT || self.signed.interface != I::NAME {
            return Err(StartError::Interface { offers: self.signed.interface.clone(), expects: I::NAME });
        }
        if self.is_tainted() {
            return Err(StartError::Tainted);
        }
        // SAFETY: `entry` is the address of the cell's `__tessera_cell_entry`
        // function, found by its mangled name in the cell's own symbol table
        // and linked at this address. The file is signed by the build's key
        // (checked in `load`), so it is what `tessera-cellpack` packed: an
        // object whose `__TESSERA_CELL_ABI` marker (checked by `link`)
        // carries ENTRY_ABI and the fingerprint of `I` (checked above and in
        // `load`). Only `cell_entry!` writes that marker, next to an entry
        // of type `fn() -> <I as Interface>::Export` for the same interface
        // type of `tessera-cell-api`, compiled by the same build. The code
        // stays mapped while `self` lives, which outlasts the call.
        let entry: fn() -> I::Export = unsafe { core::mem::transmute::<usize, fn() -> I::Export>(self.entry as usize) };
        let object = self.run(|| Box::new(entry())).map_err(StartError::Fault)?;
        Ok(Instance { object: ManuallyDrop::new(object), cell: ManuallyDrop::new(self.clone()) })
    }
}

/// Why [`LoadedCell::instantiate`] gave no instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The cell offers another interface (nothing in it was called).
    Interface { offers: String, expects: &'static str },
    /// The entry function faulted.
    Fault(Fault),
    /// This copy of the cell faulted before: start a fresh copy.
    Tainted,
}

/// An object a cell exported, kept together with the cell's code.
pub struct Instance<T: ?Sized + 'static> {
    object: ManuallyDrop<Box<T>>,
    cell: ManuallyDrop<Arc<LoadedCell>>,
}

impl<T: ?Sized + 'static> Instance<T> {
    /// Calls `f(object, arg)` through the boundary: a panic or CPU fault in
    /// the cell returns `Err`, the cell is tainted and no instance of it is
    /// called again. `f` is a function, not a closure: nothing of the
    /// caller's reaches the call except `arg`, whose type may be left
    /// half-written or leak ([`Arg`]), and only a [`Ret`] comes back.
    pub fn call<A: Arg, R: Ret>(&self, arg: A, f: fn(&T, A) -> R) -> Result<R, Fault> {
        if self.is_poisoned() {
            return Err(Fault { kind: FaultKind::Poisoned, message: String::new() });
        }
        let object: &T = &self.object;
        self.cell.run(move || f(object, arg))
    }

    /// True once a call of this instance, or of another instance of its
    /// cell, faulted (the instance is not called again).
    pub fn is_poisoned(&self) -> bool {
        self.cell.is_tainted()
    }

    /// The cell this object came from.
    pub fn cell(&self) -> &Arc<LoadedCell> {
        &self.cell
    }
}

impl<T: ?Sized + 'static> Drop for Instance<T> {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the field is not used afterwards.
        let object = unsafe { ManuallyDrop::take(&mut self.object) };
        if self.is_poisoned() {
            // A faulted call may have left anything it reaches half-updated:
            // the object and all it owns leak, unread (its device claims
            // were revoked when the cell was tainted).
            core::mem::forget(object);
        } else {
            // The destructor is cell code: run it inside the boundary. If
            // it faults, the cell is tainted and the rest leaks. The code is
            // unmapped only after this, when `self.cell` drops.
            let _ = self.cell.run(move || drop(object));
        }
        // SAFETY: taken once, here, after the object is gone.
        drop(unsafe { ManuallyDrop::take(&mut self.cell) });
    }
}

/// How a call into a cell failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// The panic message (truncated), or a description of the exception.
    pub message: String,
}

/// The kind of a [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The cell panicked.
    Panic,
    /// A CPU exception (`vector`) at `rip`.
    Exception { vector: u64, rip: u64 },
    /// Not called, or stopped while it waited for a lock of its cell: an
    /// earlier call of this instance faulted.
    Poisoned,
    /// The call ran longer than the watchdog allows.
    Timeout,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Panic => write!(f, "panicked: {}", self.message),
            FaultKind::Poisoned if self.message.is_empty() => f.write_str("not called: an earlier call of this instance faulted"),
            FaultKind::Poisoned => write!(f, "stopped: {}", self.message),
            FaultKind::Timeout => write!(f, "stopped by the watchdog: {}", self.message),
            FaultKind::Exception { vector, rip } => {
                let (name, _) = crate::arch::exception::name(vector);
                write!(f, "CPU exception {name} (vector {vector}) at {rip:#x}: {}", self.message)
            }
        }
    }
}

/// A continuation, on the stack of the task that entered the cell. The
/// fault handlers also leave the fault's description here: no lock is
/// taken on the fault path, so a fault while describing a fault cannot
/// deadlock.
#[repr(C)]
struct Record {
    /// Stack pointer after `tessera_cell_call` saved the registers.
    rsp: u64,
    /// The enclosing record of this task (0 for none).
    prev: u64,
    /// Interrupt nesting when the call began: an interrupt handler that
    /// faults while a cell call is interrupted is not that call's fault.
    irq_depth: u64,
    /// When the call began (ns since boot), for the watchdog.
    started_ns: u64,
    /// The fault domain (the cell's id) device claims are recorded under.
    domain: u64,
    /// The cell's code (start, end): where the NMI watchdog may stop it.
    text: (u64, u64),
    /// Base critical sections the call is inside now ([`BaseSection`]):
    /// while not zero, nothing is abandoned.
    base_depth: AtomicU64,
    /// What happened (written by the fault handlers before resuming).
    kind: FaultKind,
    /// True while a handler formats the message (a fault then skips it).
    describing: bool,
    /// The message, truncated.
    message: [u8; 240],
    /// Bytes of `message` used.
    len: usize,
    /// The cell's tainted flag (null for calls of no loaded cell): set
    /// while the call runs, a lock of the cell's own it waits for may
    /// never come free ([`stop_waiting_if_tainted`]).
    tainted: *const AtomicBool,
}

static CLAIM_TOKENS: AtomicU64 = AtomicU64::new(1);

/// A fresh token identifying one device claim.
pub(crate) fn claim_token() -> u64 {
    CLAIM_TOKENS.fetch_add(1, Ordering::Relaxed)
}

/// The fault domain of the running cell call (0 outside cell calls): the
/// device claims taken now are revoked if a call of that cell faults.
pub(crate) fn current_domain() -> u64 {
    let record = innermost();
    if record == 0 {
        return 0;
    }
    // SAFETY: as in `containing_record`: a live record of the running task.
    unsafe { (*(record as *const Record)).domain }
}

/// True when the running cell call belongs to a copy of a cell that has
/// been tainted since it began (a call of that copy faulted, on any
/// processor): the copy's device claims were revoked at that moment, so
/// a claim it takes now would outlive them (nothing revokes it again).
/// The claim paths check it under their table's lock: `taint` sets the
/// flag before `revoke_domain` takes that lock, so a claim is either in
/// the table when the revocation runs, or refused here.
pub(crate) fn current_call_tainted() -> bool {
    match innermost() {
        0 => false,
        record => record_tainted(record),
    }
}

/// True when the cell of live record `record` (this task's, non-zero) has
/// been tainted since its call began.
fn record_tainted(record: u64) -> bool {
    // SAFETY: a non-zero record of the running task points to a live
    // `Record` (as in `containing_record`); only the plain pointer is
    // copied out.
    let tainted = unsafe { (*(record as *const Record)).tainted };
    // SAFETY: a non-null `tainted` is the flag of the `LoadedCell` whose
    // `run` made this call, borrowed for the whole call (`enter`), which
    // has not returned while its record is live.
    !tainted.is_null() && unsafe { (*tainted).load(Ordering::Acquire) }
}

/// A stretch of base code (any base lock held, the heap, the PCI scan)
/// that a fault or the watchdog must not abandon: while one is open in a
/// cell call, a fault is not contained (the base's state could be
/// half-updated and its lock would stay held) and the watchdog waits.
pub(crate) struct BaseSection {
    /// The record counted (0 outside cell calls).
    record: u64,
}

impl BaseSection {
    /// Opens a section for the running cell call, if any.
    pub(crate) fn enter() -> Self {
        let record = innermost();
        if record != 0 {
            // SAFETY: a live record of the running task (`containing_record`);
            // `base_depth` is atomic, so no exclusive reference is made.
            unsafe { (*(record as *const Record)).base_depth.fetch_add(1, Ordering::Relaxed) };
        }
        Self { record }
    }
}

impl Drop for BaseSection {
    fn drop(&mut self) {
        if self.record != 0 {
            // SAFETY: the record counted in `enter`: sections are opened and
            // closed in scope by base code, inside the call that owns the
            // record, which is therefore still live.
            unsafe { (*(self.record as *const Record)).base_depth.fetch_sub(1, Ordering::Relaxed) };
        }
    }
}

/// The running task's innermost record (0: not inside a cell), kept in
/// the processor's block; saved and restored per task by `task::switch_to`.
pub(crate) fn innermost() -> u64 {
    crate::percpu::this_cpu().innermost.load(Ordering::Relaxed)
}

/// Sets the running task's innermost record.
pub(crate) fn set_innermost(record: u64) {
    crate::percpu::this_cpu().innermost.store(record, Ordering::Relaxed);
}

/// Longest a cell call may run before the watchdog stops it (ms).
static WATCHDOG_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets how long a cell call may run (checked on timer ticks) and returns
/// the previous limit. A call that runs longer (a cell stuck in a loop) is
/// stopped like a fault: its caller gets a `Timeout` fault.
pub fn set_watchdog(limit: core::time::Duration) -> core::time::Duration {
    core::time::Duration::from_millis(WATCHDOG_MS.swap(limit.as_millis() as u64, Ordering::Relaxed))
}

/// Called after the timer interrupt, with the interrupted kernel frame:
/// if the running task has been inside its innermost cell call for longer
/// than the watchdog allows (and the call was not made by an interrupt
/// handler), the return from the interrupt goes to that call's
/// continuation instead.
pub(crate) fn watchdog(frame: &mut crate::arch::trap::TrapFrame) {
    stop_runaway(frame);
}

/// Called for every NMI (the PIT's ticks come as NMIs too, through the
/// I/O APIC, so a cell that spins with interrupts off is stopped): like
/// [`watchdog`], but only when the interrupted instruction is the cell's
/// own code: an NMI can arrive anywhere, even in the middle of an
/// interrupt entry or of the fault path, which must not be abandoned.
pub(crate) fn nmi_watchdog(frame: &mut crate::arch::trap::TrapFrame) {
    stop_runaway(frame);
}

fn stop_runaway(frame: &mut crate::arch::trap::TrapFrame) {
    if frame.cs & 3 != 0 {
        return;
    }
    let Some(record) = containing_record() else { return };
    let record_ptr = record as *mut Record;
    // SAFETY: as in `containing_record`: the record is in a live frame of
    // the running task, which is interrupted here and runs nothing else.
    let record_ref = unsafe { &mut *record_ptr };
    let ran_ms = crate::time::now_ns().saturating_sub(record_ref.started_ns) / 1_000_000;
    let limit = WATCHDOG_MS.load(Ordering::Relaxed);
    // `rsp` is 0 until `tessera_cell_call` saved the continuation and again
    // once the call returned: there is nothing to resume then. Only the
    // cell's own code is ever stopped: not the base's (the trampoline
    // moving the result out, say), not kernel code it returned to.
    let in_cell = (record_ref.text.0..record_ref.text.1).contains(&frame.rip);
    if ran_ms <= limit || record_ref.rsp == 0 || !in_cell {
        return;
    }
    record_ref.kind = FaultKind::Timeout;
    record_ref.describing = true;
    let mut w = Truncating { buf: &mut record_ref.message, len: 0 };
    let _ = fmt::write(&mut w, format_args!("ran for {ran_ms} ms (limit {limit} ms), interrupted at {:#x}", frame.rip));
    record_ref.len = w.len;
    // Return from the interrupt into `tessera_cell_resume(rsp)`. The record
    // has no continuation any more: an interrupt arriving while the resume
    // runs (it turns interrupts back on) must not resume a second time,
    // over the stack the first one is popping.
    frame.rip = tessera_cell_resume as *const () as u64;
    frame.rdi = core::mem::replace(&mut record_ref.rsp, 0);
}

/// Contained faults since boot.
static FAULTS: AtomicU64 = AtomicU64::new(0);

/// Faults contained at cell boundaries since boot.
pub fn fault_count() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

core::arch::global_asm!(
    r#"
    .section .text.cellcall, "ax"
    .global tessera_cell_call
tessera_cell_call:                 /* rdi = &mut rsp slot, rsi = fn(data), rdx = data; 0 = returned */
    pushfq
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rdi, %rbx                /* callee-saved (and saved above) */
    movq %rdx, %rdi
    callq *%rsi
    movq $0, (%rbx)                /* returned: no continuation to resume */
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    addq $8, %rsp                  /* the entry flags are for the fault path only */
    xorl %eax, %eax
    retq

    .global tessera_cell_resume
tessera_cell_resume:               /* rdi = saved rsp; returns 1 from tessera_cell_call */
    movq %rdi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    popfq                          /* interrupt flag as it was at entry */
    movl $1, %eax
    retq
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn tessera_cell_call(slot: *mut u64, f: extern "C" fn(*mut u8), data: *mut u8) -> u64;
    fn tessera_cell_resume(rsp: u64) -> !;
}

struct Call<F, R> {
    f: Option<F>,
    out: Option<R>,
}

extern "C" fn trampoline<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: `data` is the `&mut Call<F, R>` that `enter` passed, alive
    // and not otherwise borrowed for the duration of the call.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    if let Some(f) = call.f.take() {
        call.out = Some(f());
    }
}

/// Runs `f` inside a cell boundary for fault domain `domain`: a panic or
/// kernel-mode CPU exception while it runs (on this task, not in a nested
/// interrupt, outside base critical sections) returns `Err`. The frames it
/// abandons are not unwound: only the base calls this, for cell code whose
/// state is then quarantined (see the module documentation).
pub(crate) fn enter<F: FnOnce() -> R, R>(domain: u64, text: (u64, u64), tainted: *const AtomicBool, f: F) -> Result<R, Fault> {
    let mut call = Call { f: Some(f), out: None };
    let mut record = Record {
        rsp: 0,
        prev: innermost(),
        irq_depth: crate::irq::depth(),
        started_ns: crate::time::now_ns(),
        domain,
        text,
        base_depth: AtomicU64::new(0),
        kind: FaultKind::Panic,
        describing: false,
        message: [0; 240],
        len: 0,
        tainted,
    };
    let record_ptr: *mut Record = &mut record;
    set_innermost(record_ptr as u64);
    // SAFETY: the slot is `record.rsp`, alive for the call; the trampoline
    // matches `call`'s type. If the call faults, a handler resumes through
    // `tessera_cell_resume` with the registers and stack `tessera_cell_call`
    // saved, which are this frame's: execution continues here with 1.
    let faulted = unsafe {
        tessera_cell_call(&raw mut (*record_ptr).rsp, trampoline::<F, R>, (&raw mut call).cast::<u8>())
    };
    // SAFETY: `record` is this frame's local and no longer reachable from
    // the innermost record after the store below.
    let prev = unsafe { (*record_ptr).prev };
    set_innermost(prev);
    match (faulted, call.out) {
        (0, Some(out)) => Ok(out),
        (_, out) => {
            // A result the call was still writing when it was stopped may be
            // torn: it leaks, never read or dropped.
            core::mem::forget(out);
            // SAFETY: `record` is this frame's local; the handlers wrote it
            // through the innermost record before resuming here, and nothing else
            // refers to it any more.
            let (kind, message) = unsafe { ((*record_ptr).kind, (*record_ptr).message.get(..(*record_ptr).len).unwrap_or(&[])) };
            if kind != FaultKind::Poisoned {
                FAULTS.fetch_add(1, Ordering::Relaxed);
            }
            let message = String::from_utf8_lossy(message).into_owned();
            // The closure (and whatever it owned) was consumed or abandoned:
            // it leaks, never dropped.
            core::mem::forget(call.f);
            Err(Fault { kind, message })
        }
    }
}

/// Writes into a fixed buffer, cutting what does not fit.
struct Truncating<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// The innermost record, if a fault now belongs to a cell call.
fn containing_record() -> Option<u64> {
    let record = innermost();
    if record == 0 {
        return None;
    }
    // SAFETY: a non-zero innermost record (this processor's) points to a `Record` in the frame of an
    // `enter` call of the running task that has not returned yet (it resets
    // it before returning, and task switches swap it per task).
    let (depth, in_base) = unsafe {
        let r = &*(record as *const Record);
        (r.irq_depth, r.base_depth.load(Ordering::Relaxed))
    };
    (depth == crate::irq::depth() && in_base == 0).then_some(record)
}

fn resume(record: u64, kind: FaultKind, message: fmt::Arguments<'_>) {
    let record_ptr = record as *mut Record;
    // SAFETY: as in `containing_record`: the record lives in a frame of
    // this task below which every frame is being abandoned; only this
    // handler (this task, interrupts as they were) touches it now.
    let record_ref = unsafe { &mut *record_ptr };
    record_ref.kind = kind;
    if record_ref.describing {
        // Formatting the first fault's message faulted: keep what we have.
        let note = b" [a fault while describing the fault]";
        let end = (record_ref.len + note.len()).min(record_ref.message.len());
        if let Some(dst) = record_ref.message.get_mut(record_ref.len..end) {
            dst.copy_from_slice(note.get(..end - record_ref.len).unwrap_or(&[]));
        }
        record_ref.len = end;
    } else {
        record_ref.describing = true;
        let mut w = Truncating { buf: &mut record_ref.message, len: 0 };
        let _ = fmt::write(&mut w, message);
        record_ref.len = w.len;
    }
    // Used once: a later watchdog tick finds no continuation (see
    // `stop_runaway`).
    let rsp = core::mem::replace(&mut record_ref.rsp, 0);
    if rsp == 0 {
        return; // not entered yet, or already resumed: not this call's fault
    }
    // SAFETY: the saved stack pointer belongs to the live
    // `tessera_cell_call` frame below that `enter`, which is on this stack
    // above the current frame, so jumping there abandons only frames of the
    // faulting call.
    unsafe { tessera_cell_resume(rsp) }
}

/// Stops the running cell call, as [`FaultKind::Poisoned`], when it waits
/// in its own cell's code (`code`: the spinning function's address, inside
/// the cell's text) for a lock, and a call of that cell has faulted since
/// (the cell is tainted): the faulted call may have held the lock, which
/// then never comes free, and the slot that recovers from that fault
/// waits for this call to leave. Its slot retries it on the fresh copy.
/// Returns otherwise: outside cell calls, in base code (`code` elsewhere),
/// inside base sections, in an interrupt handler.
pub(crate) fn stop_waiting_if_tainted(code: u64, at: &core::panic::Location<'_>) {
    let Some(record) = containing_record() else { return };
    // SAFETY: as in `containing_record`: a live record of the running task;
    // only the plain field is copied out, no reference is kept.
    let text = unsafe { (*(record as *const Record)).text };
    if code < text.0 || code >= text.1 || !record_tainted(record) {
        return;
    }
    resume(record, FaultKind::Poisoned, format_args!("gave up waiting for the lock taken at {at}: a call of this cell faulted meanwhile, maybe holding it"));
}

/// Called first by the panic handler: a panic inside a cell call resumes
/// that call's continuation; otherwise returns.
pub(crate) fn contain_panic(info: &core::panic::PanicInfo<'_>) {
    if let Some(record) = containing_record() {
        match info.location() {
            Some(at) => resume(record, FaultKind::Panic, format_args!("{} at {}:{}", info.message(), at.file(), at.line())),
            None => resume(record, FaultKind::Panic, format_args!("{}", info.message())),
        }
    }
}

/// Called by the exception handler for kernel-mode exceptions: one inside
/// a cell call resumes that call's continuation; otherwise returns.
pub(crate) fn contain_exception(vector: u64, rip: u64, cr2: u64) {
    if let Some(record) = containing_record() {
        let (name, _) = crate::arch::exception::name(vector);
        let kind = FaultKind::Exception { vector, rip };
        match vector {
            14 => resume(record, kind, format_args!("{name} accessing {cr2:#x}")),
            _ => resume(record, kind, format_args!("{name}")),
        }
    }
}

pub use framekernel_boundary::{Arg, Interface, Plain, Ret};
