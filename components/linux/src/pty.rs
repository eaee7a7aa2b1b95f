//! Pseudo-terminals: `/dev/ptmx` opens a new master, `/dev/pts/N` its
//! slave, a terminal like the console with its own line discipline in the
//! tty cell (number [`LD_BASE`] + N). What the master writes is typed on
//! the slave (echo, signals to its foreground group); what the slave
//! writes, after output processing, the master reads.
//!
//! As on Linux: a new slave is locked until `unlockpt` (`TIOCSPTLCK` 0;
//! opening it before gives EIO); a session leader without a terminal that
//! opens the slave makes it its controlling terminal; the master's read
//! gives EIO once every slave descriptor that was opened is closed; when
//! the master closes, the slave hangs up (reads end, writes give EIO, the
//! foreground group gets SIGHUP) and `/dev/pts/N` goes away.
//!
//! `/dev/pts` is one `devpts` instance (Linux's single-instance mode):
//! every `mount -t devpts` shows it, rcS mounts it at boot.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, NonBlocking, POLLHUP, POLLIN, POLLOUT, Tty, device_stat};
use crate::process::ProcessInfo;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use framekernel::sync::{Mutex, SpinLock};
use tessera_sched::WaitQueue;
use tessera_vfs::{FileType, NodeRef};

/// `/dev/ptmx` (major 5, minor 2).
pub const PTMX_RDEV: u64 = 0x502;
/// `/dev/tty` (major 5, minor 0): the caller's controlling terminal.
pub const TTY_RDEV: u64 = 0x500;
/// The slaves' major number.
const PTS_MAJOR: u64 = 136;
/// Ptys at once (`/proc/sys/kernel/pty/max` here; minors fit one byte).
pub const MAX_PTYS: u32 = 256;
/// Line discipline numbers of the slaves start here (0 is the console).
const LD_BASE: u32 = 0x100;
/// Bytes the slave's output holds until the master reads them.
const OUT_BYTES: usize = 64 * 1024;
/// `O_NOCTTY`.
const O_NOCTTY: u64 = 0o400;

/// The device number of `/dev/pts/n`.
pub fn slave_rdev(n: u32) -> u64 {
    (PTS_MAJOR << 8) | u64::from(n & 0xff)
}

/// The pty number a device number names, if it is a slave's.
fn slave_number(rdev: u64) -> Option<u32> {
    (rdev >> 8 == PTS_MAJOR).then_some((rdev & 0xff) as u32)
}

/// True for the device numbers this module opens.
pub fn handles(rdev: u64) -> bool {
    rdev == PTMX_RDEV || slave_number(rdev).is_some()
}

static PTYS: SpinLock<BTreeMap<u32, Weak<Pty>>> = SpinLock::new(BTreeMap::new());
static DEVPTS: spin::Once<NodeRef> = spin::Once::new();

/// The `devpts` file system's root (one instance for every mount).
pub fn devpts() -> NodeRef {
    DEVPTS
        .call_once(|| {
            let root = tessera_vfs::tmpfs::TmpFs::new_root(1 << 20, Some(crate::fs::now));
            root.set_perm(0o755);
            root
        })
        .clone()
}

/// One pseudo-terminal.
pub struct Pty {
    number: u32,
    /// The slave terminal.
    tty: Arc<Tty>,
    /// The slave's output, for the master to read.
    out: Mutex<VecDeque<u8>>,
    /// Master readers and slave writers wait here.
    out_changed: WaitQueue,
    locked: AtomicBool,
    /// Open slave descriptors, and whether one ever was.
    slaves: AtomicUsize,
    slave_opened: AtomicBool,
    master_closed: AtomicBool,
    /// Its `/dev/pts/N` node (the slave's `stat` is the node's, so that
    /// `ttyname` finds it).
    node: Mutex<Option<NodeRef>>,
}

impl Pty {
    /// The slave's status: its `/dev/pts` node's.
    pub fn stat(&self) -> FileStat {
        match &*self.node.lock() {
            Some(node) => node.metadata(),
            None => device_stat(u64::from(self.number) + 0x1000, slave_rdev(self.number), 0o620),
        }
    }

    /// N of `/dev/pts/N`.
    pub fn number(&self) -> u32 {
        self.number
    }

    fn notify(&self) {
        self.out_changed.wake_all();
        crate::syscall::poll::notify();
    }

    /// The slave writes `data` (already through output processing): it
    /// waits while the master has not read 64 KiB; EIO once the master
    /// is closed.
    pub(crate) fn slave_output(&self, data: &[u8], interrupted: &dyn Fn() -> bool) -> Result<(), Errno> {
        let mut at = 0;
        while at < data.len() {
            let step = self.out_changed.wait_until(|| {
                if self.master_closed.load(Ordering::SeqCst) {
                    return Some(Err(Errno::EIO));
                }
                let mut out = self.out.lock();
                let room = OUT_BYTES.saturating_sub(out.len());
                if room == 0 {
                    return interrupted().then_some(Err(Errno::EINTR));
                }
                let n = room.min(data.len() - at);
                out.extend(data.get(at..at + n).unwrap_or(&[]));
                Some(Ok(n))
            });
            match step {
                Ok(n) => {
                    at += n;
                    self.notify();
                }
                Err(_) if at > 0 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The master side, as an open file.
pub struct PtyMaster {
    pty: Arc<Pty>,
    nonblocking: NonBlocking,
    ino: u64,
}

/// The slave side, as an open file.
pub struct PtySlave {
    pty: Arc<Pty>,
    nonblocking: NonBlocking,
}

/// Opens `/dev/ptmx`, `/dev/pts/N` or `/dev/tty` (`rdev`) for `opener`
/// with `open(2)` `flags`.
pub fn open(rdev: u64, flags: u64, opener: &ProcessInfo) -> Result<Arc<dyn File>, Errno> {
    if rdev == PTMX_RDEV {
        return open_master(flags, opener);
    }
    let n = slave_number(rdev).ok_or(Errno::ENXIO)?;
    let pty = PTYS.lock().get(&n).and_then(Weak::upgrade).ok_or(Errno::EIO)?;
    if pty.master_closed.load(Ordering::SeqCst) || pty.locked.load(Ordering::SeqCst) {
        return Err(Errno::EIO);
    }
    // A session leader without a terminal gets this one.
    let leader = opener.sid() == opener.pid;
    if flags & O_NOCTTY == 0 && leader && pty.tty.session() == 0 && controlling(opener).is_none() {
        pty.tty.set_session(opener.sid(), opener.pgid());
    }
    Ok(slave(pty, flags & crate::fs::O_NONBLOCK as u64 != 0))
}

fn slave(pty: Arc<Pty>, nonblocking: bool) -> Arc<dyn File> {
    pty.slaves.fetch_add(1, Ordering::SeqCst);
    pty.slave_opened.store(true, Ordering::SeqCst);
    Arc::new(PtySlave { pty, nonblocking: NonBlocking::new(nonblocking) })
}

/// The slave of the pty that is `who`'s controlling terminal, if any
/// (`/dev/tty` in a pty session).
pub fn controlling(who: &ProcessInfo) -> Option<Arc<dyn File>> {
    let sid = who.sid();
    let pty = PTYS.lock().values().filter_map(Weak::upgrade).find(|p| p.tty.session() == sid && !p.master_closed.load(Ordering::SeqCst))?;
    Some(slave(pty, false))
}

fn open_master(flags: u64, opener: &ProcessInfo) -> Result<Arc<dyn File>, Errno> {
    let pty = {
        let mut ptys = PTYS.lock();
        ptys.retain(|_, p| p.strong_count() > 0);
        let n = (0..MAX_PTYS).find(|n| !ptys.contains_key(n)).ok_or(Errno::ENOSPC)?;
        let pty = Arc::new_cyclic(|me: &Weak<Pty>| Pty {
            number: n,
            tty: Arc::new(Tty::new(LD_BASE + n, Some(me.clone()))),
            out: Mutex::new(VecDeque::new()),
            out_changed: WaitQueue::new(),
            locked: AtomicBool::new(true),
            slaves: AtomicUsize::new(0),
            slave_opened: AtomicBool::new(false),
            master_closed: AtomicBool::new(false),
            node: Mutex::new(None),
        });
        ptys.insert(n, Arc::downgrade(&pty));
        pty
    };
    // The number's line discipline may hold an earlier pty's settings.
    pty.tty.reset();
    let name = alloc::format!("{}", pty.number);
    let root = devpts();
    if root.lookup(&name).is_ok() {
        let _ = root.detach(&name);
    }
    let c = opener.credentials();
    match root.create(&name, FileType::CharDevice, 0o620, slave_rdev(pty.number)) {
        Ok(node) => {
            node.set_owner(c.euid, c.egid);
            *pty.node.lock() = Some(node);
        }
        Err(e) => log::warn!("devpts: /dev/pts/{name} not made: {e:?}"),
    }
    Ok(Arc::new(PtyMaster { pty, nonblocking: NonBlocking::new(flags & crate::fs::O_NONBLOCK as u64 != 0), ino: crate::epoll::anon_ino() }))
}

impl Drop for PtyMaster {
    fn drop(&mut self) {
        let pty = &self.pty;
        pty.master_closed.store(true, Ordering::SeqCst);
        pty.tty.hang_up();
        pty.notify();
        let _ = devpts().detach(&alloc::format!("{}", pty.number));
        // The number stays taken while a slave descriptor is open (its
        // line discipline is the number's): `open_master` reuses it only
        // once the last one closed, as Linux.
    }
}

impl PtyMaster {
    /// N of `/dev/pts/N` (`TIOCGPTN`).
    pub fn number(&self) -> u32 {
        self.pty.number
    }

    /// Locks or unlocks the slave (`TIOCSPTLCK`).
    pub fn set_locked(&self, on: bool) {
        self.pty.locked.store(on, Ordering::SeqCst);
    }

    /// Whether the slave is locked (`TIOCGPTLCK`).
    pub fn locked(&self) -> bool {
        self.pty.locked.load(Ordering::SeqCst)
    }

    /// Bytes the slave wrote that the master has not read (`FIONREAD`).
    pub fn pending(&self) -> usize {
        self.pty.out.lock().len()
    }

    fn slave_gone(&self) -> bool {
        self.pty.slave_opened.load(Ordering::SeqCst) && self.pty.slaves.load(Ordering::SeqCst) == 0
    }
}

impl PtyMaster {
    /// Hands `bytes` to the slave's line discipline; what it echoes is
    /// the master's to read.
    fn feed(&self, bytes: &[u8]) {
        let pty = &self.pty;
        let mut echoed = alloc::vec::Vec::new();
        for &byte in bytes {
            pty.tty.input(byte, &mut |echo| echoed.extend_from_slice(echo));
        }
        if !echoed.is_empty() {
            let mut out = pty.out.lock();
            let room = OUT_BYTES.saturating_sub(out.len());
            out.extend(echoed.iter().take(room));
        }
        pty.tty.changed();
        pty.notify();
    }
}

impl File for PtyMaster {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        if buf.is_empty() {
            return Ok(0);
        }
        let pty = &self.pty;
        let n = pty.out_changed.wait_until(|| {
            let mut out = pty.out.lock();
            if !out.is_empty() {
                let n = out.len().min(buf.len());
                for (slot, byte) in buf.iter_mut().zip(out.drain(..n)) {
                    *slot = byte;
                }
                return Some(Ok(n));
            }
            if self.slave_gone() {
                return Some(Err(Errno::EIO));
            }
            crate::files::nothing_yet(self.nonblocking.get(), interrupted)
        })?;
        // Slave writers waiting for room.
        pty.notify();
        Ok(n as u64)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.write_interruptible(buf, &|| false)
    }

    /// Input for the slave: taken while less than `MAX_INPUT` bytes wait
    /// to be read there, else the writer waits (as Linux's pty: a paste
    /// into a busy program is held back, not lost), or gets EAGAIN when
    /// non-blocking. A line longer than the discipline holds is cut, as
    /// Linux's canonical mode does.
    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let pty = &self.pty;
        let mut done = 0;
        while done < buf.len() {
            let step = pty.out_changed.wait_until(|| {
                let room = tessera_cell_api::tty::MAX_INPUT.saturating_sub(pty.tty.available());
                if room > 0 {
                    Some(Ok(room))
                } else if self.nonblocking.get() {
                    Some(Err(Errno::EAGAIN))
                } else {
                    interrupted().then_some(Err(Errno::EINTR))
                }
            });
            match step {
                Ok(room) => {
                    let chunk = buf.get(done..buf.len().min(done + room)).unwrap_or(&[]);
                    self.feed(chunk);
                    done += chunk.len();
                }
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done as u64)
    }

    fn stat(&self) -> FileStat {
        device_stat(self.ino, PTMX_RDEV, 0o666)
    }

    fn is_tty(&self) -> bool {
        true
    }

    fn as_tty(&self) -> Option<&Tty> {
        Some(&self.pty.tty)
    }

    fn poll(&self) -> u16 {
        let mut events = 0;
        if self.pty.tty.available() < tessera_cell_api::tty::MAX_INPUT {
            events |= POLLOUT;
        }
        if !self.pty.out.lock().is_empty() {
            events |= POLLIN;
        } else if self.slave_gone() {
            events |= POLLIN | POLLHUP;
        }
        events
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn as_pty_master(&self) -> Option<&PtyMaster> {
        Some(self)
    }
}

impl Drop for PtySlave {
    fn drop(&mut self) {
        self.pty.slaves.fetch_sub(1, Ordering::SeqCst);
        self.pty.notify();
    }
}

impl File for PtySlave {
    fn read(&self, buf: &mut [u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        let tty = &self.pty.tty;
        if self.nonblocking.get() && !buf.is_empty() && tty.available() == 0 && tty.poll() & POLLHUP == 0 {
            return Err(Errno::EAGAIN);
        }
        let n = tty.read(buf, interrupted)?;
        // A master writer may wait for the room this made.
        self.pty.notify();
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        self.write_interruptible(buf, &|| false)
    }

    fn write_interruptible(&self, buf: &[u8], interrupted: &dyn Fn() -> bool) -> SysResult {
        // Non-blocking: a full buffer ends the write at once (EAGAIN, or
        // the bytes taken so far).
        let nonblocking = self.nonblocking.get();
        match self.pty.tty.write_interruptible(buf, &|| nonblocking || interrupted()) {
            Err(Errno::EINTR) if nonblocking && !interrupted() => Err(Errno::EAGAIN),
            other => other,
        }
    }

    fn status_flags(&self) -> u32 {
        self.nonblocking.status_flags()
    }

    fn set_status_flags(&self, flags: u32) {
        self.nonblocking.set_from(flags);
    }

    fn stat(&self) -> FileStat {
        self.pty.tty.stat()
    }

    fn is_tty(&self) -> bool {
        true
    }

    fn as_tty(&self) -> Option<&Tty> {
        Some(&self.pty.tty)
    }

    fn poll(&self) -> u16 {
        self.pty.tty.poll()
    }
}
