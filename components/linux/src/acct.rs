//! BSD process accounting (`acct(2)`): while a file is set, every process
//! that ends appends one 64-byte record to it, in Linux's version-2
//! layout (`struct acct` of a kernel without CONFIG_BSD_PROCESS_ACCT_V3,
//! what glibc's <sys/acct.h> reads): flags (AFORK for a process that
//! never ran `exec`, ACORE, AXSIG), version 2, ids, start time, user,
//! system and elapsed time in 1/100 s as `comp_t`, average memory in
//! KiB, the wait status, and the command name. `acct(NULL)` stops it.

use crate::errno::{Errno, SysResult};
use crate::files::File;
use crate::process::{Outcome, ProcessInfo};
use alloc::sync::Arc;
use framekernel::sync::SpinLock;

/// The accounting file, while accounting is on.
static FILE: SpinLock<Option<Arc<dyn File>>> = SpinLock::new(None);

/// `AHZ`: the accounting clock.
const AHZ: u64 = 100;

/// Turns accounting on with `file` (None: off).
pub fn set(file: Option<Arc<dyn File>>) {
    *FILE.lock() = file;
}

/// Linux's `encode_comp_t`: 13-bit mantissa, 3-bit base-8 exponent,
/// rounded.
pub fn comp_t(mut value: u64) -> u16 {
    const MANT: u32 = 13;
    const MAXFRACT: u64 = (1 << MANT) - 1;
    let mut exp = 0u16;
    let mut round = 0;
    while value > MAXFRACT {
        round = value & 4;
        value >>= 3;
        exp += 1;
    }
    if round != 0 {
        value += 1;
        if value > MAXFRACT {
            value >>= 3;
            exp += 1;
        }
    }
    if exp > 7 {
        return u16::MAX;
    }
    (exp << MANT) | value as u16
}

/// Appends the record of `info`, which ended with `outcome`, if
/// accounting is on. A failed write is dropped, as Linux drops it.
pub fn process_ended(info: &ProcessInfo, outcome: Outcome, comm: &str) {
    let Some(file) = FILE.lock().clone() else { return };
    let record = record(info, outcome, comm);
    let _ = file.write(&record);
}

fn record(info: &ProcessInfo, outcome: Outcome, comm: &str) -> [u8; 64] {
    let mut r = [0u8; 64];
    let creds = info.credentials();
    let now = framekernel::time::now_ns();
    let elapsed = now.saturating_sub(info.start_ns);
    let (user, total) = info.cpu_ns();
    let ticks = |ns: u64| ns / (1_000_000_000 / AHZ);
    let mut flag = 0u8;
    if !info.did_exec() {
        flag |= 0x01; // AFORK
    }
    match outcome {
        Outcome::Dumped(_) => flag |= 0x08 | 0x10, // ACORE | AXSIG
        Outcome::Killed(_) => flag |= 0x10,        // AXSIG
        Outcome::Exited(_) => {}
    }
    r[0] = flag;
    r[1] = 2; // version
    r[2..4].copy_from_slice(&(creds.ruid as u16).to_le_bytes());
    r[4..6].copy_from_slice(&(creds.rgid as u16).to_le_bytes());
    let start_epoch = framekernel::time::realtime_ns().saturating_sub(elapsed) / 1_000_000_000;
    r[8..12].copy_from_slice(&(start_epoch as u32).to_le_bytes());
    let etime = ticks(elapsed);
    for (at, value) in [(12, ticks(user)), (14, ticks(total.saturating_sub(user))), (16, etime), (18, info.maxrss_seen_kib())] {
        r[at..at + 2].copy_from_slice(&comp_t(value).to_le_bytes());
    }
    r[32..36].copy_from_slice(&outcome.wait_status().to_le_bytes());
    let name = comm.as_bytes();
    let len = name.len().min(16);
    r[36..36 + len].copy_from_slice(name.get(..len).unwrap_or(&[]));
    r[53] = (etime >> 16) as u8;
    r[54..56].copy_from_slice(&(etime as u16).to_le_bytes());
    r[56..60].copy_from_slice(&creds.ruid.to_le_bytes());
    r[60..64].copy_from_slice(&creds.rgid.to_le_bytes());
    r
}

/// `acct(path)`: CAP_SYS_PACCT; the path is opened for appending and
/// must be a regular file (EACCES), on a writable file system.
pub fn acct(p: &mut crate::process::Process, path: u64) -> SysResult {
    if !p.info.credentials().capable(crate::process::cap::SYS_PACCT) {
        return Err(Errno::EPERM);
    }
    if path == 0 {
        set(None);
        return Ok(0);
    }
    let name = crate::syscall::path_arg(p, path)?;
    const O_WRONLY: u64 = 1;
    const O_APPEND: u64 = 0o2000;
    let file = crate::syscall::open_path(p, -100i64 as u64, &name, O_WRONLY | O_APPEND, 0)?;
    if file.stat().kind != tessera_vfs::FileType::Regular {
        return Err(Errno::EACCES);
    }
    set(Some(file));
    Ok(0)
}
