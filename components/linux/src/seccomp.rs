//! seccomp: a thread may give up system calls for good.
//!
//! Strict mode (`SECCOMP_MODE_STRICT`) leaves `read`, `write`, `exit` and
//! `rt_sigreturn`; anything else kills the process with SIGKILL. Filter
//! mode (`SECCOMP_MODE_FILTER`) runs classic BPF programs over
//! `struct seccomp_data` (number, AUDIT_ARCH_X86_64, instruction pointer,
//! arguments) before every system call; the most restrictive answer of
//! all installed programs wins (KILL_PROCESS, KILL_THREAD, TRAP: SIGSYS
//! with SYS_SECCOMP, ERRNO, then TRACE and USER_NOTIF, which answer
//! ENOSYS here with no tracer or listener, LOG, ALLOW). Programs are
//! checked when installed as Linux checks them (at most 4096
//! instructions, forward jumps in range, loads only of aligned words of
//! the data, a return at the end), so running one always ends, within
//! its length. Installing needs `no_new_privs` or CAP_SYS_ADMIN (EACCES);
//! filters pass to children and across `exec`, and `SECCOMP_FILTER_FLAG_TSYNC`
//! gives the caller's filters to every thread of the process.

use crate::errno::{Errno, SysResult};
use crate::process::Process;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// `SECCOMP_MODE_STRICT`.
pub const MODE_STRICT: u8 = 1;
/// `SECCOMP_MODE_FILTER`.
pub const MODE_FILTER: u8 = 2;

/// `AUDIT_ARCH_X86_64`.
const ARCH: u32 = 0xc000_003e;
/// Most instructions in a program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;
/// Most instructions over all of a thread's programs (Linux's
/// MAX_INSNS_PER_PATH, counting 4 extra per program).
const MAX_TOTAL: usize = 32768;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ACTION_FULL: u32 = 0xffff_0000;

/// One instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// An installed program and the ones installed before it.
pub struct Filter {
    insns: Vec<Insn>,
    prev: Option<Arc<Filter>>,
    /// Instructions in this chain (for the total bound).
    total: usize,
}

/// What a system call meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Allow,
    /// Return this errno (ENOSYS for TRACE/USER_NOTIF without a peer).
    Errno(u32),
    /// SIGSYS (SYS_SECCOMP) with this data; the call is not run.
    Trap(u32),
    /// The thread ends (the process, if it is the last).
    KillThread,
    /// The process ends with SIGSYS.
    KillProcess,
    /// Strict mode: SIGKILL.
    StrictKill,
}

// Classic BPF instruction classes (the low three bits of the code).
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;

/// Checks a program as Linux's `bpf_check_classic` and
/// `seccomp_check_filter` do.
fn validate(insns: &[Insn]) -> Result<(), Errno> {
    if insns.is_empty() || insns.len() > MAX_INSNS {
        return Err(Errno::EINVAL);
    }
    for (pc, insn) in insns.iter().enumerate() {
        let class = insn.code & 0x07;
        let ok = match insn.code {
            // LD|W|ABS: an aligned word of seccomp_data (64 bytes).
            0x20 => insn.k < 64 && insn.k % 4 == 0,
            // LD|W|LEN, LDX|W|LEN: the data's size.
            0x80 | 0x81 => true,
            // LD|IMM, LDX|IMM.
            0x00 | 0x01 => true,
            // LD|MEM, LDX|MEM, ST, STX: 16 scratch words.
            0x60 | 0x61 | 0x02 | 0x03 => insn.k < 16,
            // ALU: ADD SUB MUL DIV OR AND LSH RSH NEG MOD XOR, K or X.
            c if class == ALU => {
                let op = c & 0xf0;
                let known = matches!(op, 0x00 | 0x10 | 0x20 | 0x30 | 0x40 | 0x50 | 0x60 | 0x70 | 0x80 | 0x90 | 0xa0);
                // A constant divisor or modulus of zero is refused.
                known && !(c & 0x08 == 0 && matches!(op, 0x30 | 0x90) && insn.k == 0)
            }
            // JMP: JA (k), JEQ JGT JGE JSET (jt/jf), K or X; forward and in range.
            c if class == JMP => {
                let op = c & 0xf0;
                let rest = insns.len() - pc - 1;
                match op {
                    0x00 => (insn.k as usize) < rest,
                    0x10 | 0x20 | 0x30 | 0x40 => usize::from(insn.jt) < rest && usize::from(insn.jf) < rest,
                    _ => false,
                }
            }
            // RET|K, RET|A.
            0x06 | 0x16 => true,
            // MISC|TAX, MISC|TXA.
            0x07 | 0x87 => true,
            _ => false,
        };
        if !ok {
            return Err(Errno::EINVAL);
        }
    }
    // The last instruction returns.
    match insns.last() {
        Some(last) if last.code & 0x07 == RET => Ok(()),
        _ => Err(Errno::EINVAL),
    }
}

/// Runs one (validated) program over `data`.
fn run(insns: &[Insn], data: &[u8; 64]) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; 16];
    let mut pc = 0usize;
    // Validated programs only jump forward: at most one step per instruction.
    while let Some(insn) = insns.get(pc) {
        pc += 1;
        let k = insn.k;
        let class = insn.code & 0x07;
        match insn.code {
            0x20 => {
                let at = k as usize;
                a = data.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            }
            0x80 => a = 64,
            0x81 => x = 64,
            0x00 => a = k,
            0x01 => x = k,
            0x60 => a = mem.get(k as usize).copied().unwrap_or(0),
            0x61 => x = mem.get(k as usize).copied().unwrap_or(0),
            0x02 => {
                if let Some(slot) = mem.get_mut(k as usize) {
                    *slot = a;
                }
            }
            0x03 => {
                if let Some(slot) = mem.get_mut(k as usize) {
                    *slot = x;
                }
            }
            c if class == ALU => {
                let src = if c & 0x08 != 0 { x } else { k };
                a = match c & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    // Dividing by zero ends the program with 0 (Linux).
                    0x30 | 0x90 if src == 0 => return RET_KILL_THREAD,
                    0x30 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0x90 => a % src,
                    _ => a ^ src,
                };
            }
            c if class == JMP => {
                let src = if c & 0x08 != 0 { x } else { k };
                let step = match c & 0xf0 {
                    0x00 => k as usize,
                    0x10 => usize::from(if a == src { insn.jt } else { insn.jf }),
                    0x20 => usize::from(if a > src { insn.jt } else { insn.jf }),
                    0x30 => usize::from(if a >= src { insn.jt } else { insn.jf }),
                    _ => usize::from(if a & src != 0 { insn.jt } else { insn.jf }),
                };
                pc += step;
            }
            0x06 => return k,
            0x16 => return a,
            0x07 => x = a,
            0x87 => a = x,
            _ => return RET_KILL_THREAD, // unreachable for a validated program
        }
    }
    RET_KILL_THREAD
}

/// The seccomp state of a thread.
#[derive(Clone, Default)]
pub struct State {
    /// 0, [`MODE_STRICT`] or [`MODE_FILTER`].
    pub mode: u8,
    /// The newest program (filter mode).
    pub filter: Option<Arc<Filter>>,
}

impl State {
    /// What system call `nr` with `args` from `rip` meets.
    pub fn verdict(&self, nr: u64, args: [u64; 6], rip: u64) -> Verdict {
        match self.mode {
            0 => Verdict::Allow,
            MODE_STRICT => {
                if matches!(nr, 0 | 1 | 60 | 15) {
                    Verdict::Allow
                } else {
                    Verdict::StrictKill
                }
            }
            _ => {
                let mut data = [0u8; 64];
                data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
                data[4..8].copy_from_slice(&ARCH.to_le_bytes());
                data[8..16].copy_from_slice(&rip.to_le_bytes());
                for (i, arg) in args.iter().enumerate() {
                    data[16 + i * 8..24 + i * 8].copy_from_slice(&arg.to_le_bytes());
                }
                // The most restrictive answer wins (the signed action
                // order: KILL_PROCESS is lowest, ALLOW highest).
                let mut best = RET_ALLOW;
                let mut at = self.filter.clone();
                while let Some(filter) = at {
                    let ret = run(&filter.insns, &data);
                    if ((ret & RET_ACTION_FULL) as i32) < ((best & RET_ACTION_FULL) as i32) {
                        best = ret;
                    }
                    at = filter.prev.clone();
                }
                let data = best & 0xffff;
                match best & RET_ACTION_FULL {
                    RET_KILL_PROCESS => Verdict::KillProcess,
                    RET_KILL_THREAD => Verdict::KillThread,
                    RET_TRAP => Verdict::Trap(data),
                    RET_ERRNO => Verdict::Errno(data.min(4095)),
                    RET_USER_NOTIF | RET_TRACE => Verdict::Errno(38), // ENOSYS: nobody listens
                    RET_LOG | RET_ALLOW => Verdict::Allow,
                    // An unknown action acts as KILL_PROCESS (Linux).
                    _ => Verdict::KillProcess,
                }
            }
        }
    }
}

const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_GET_ACTION_AVAIL: u64 = 2;
const SECCOMP_GET_NOTIF_SIZES: u64 = 3;
const FLAG_TSYNC: u64 = 1;
const FLAG_LOG: u64 = 2;
const FLAG_SPEC_ALLOW: u64 = 4;

/// Reads a `struct sock_fprog` (its length checked: EINVAL).
fn read_header(p: &Process, fprog: u64) -> Result<(usize, u64), Errno> {
    let mut head = [0u8; 16];
    p.memory.read(fprog, &mut head)?;
    let len = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let at = u64::from_le_bytes(head[8..16].try_into().unwrap_or([0; 8]));
    if len == 0 || len > MAX_INSNS {
        return Err(Errno::EINVAL);
    }
    Ok((len, at))
}

/// Reads the instructions of a program.
fn read_program(p: &Process, (len, at): (usize, u64)) -> Result<Vec<Insn>, Errno> {
    let mut raw = alloc::vec![0u8; len * 8];
    p.memory.read(at, &mut raw)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| Insn { code: u16::from_le_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]) })
        .collect())
}

/// `seccomp(operation, flags, args)` and `prctl(PR_SET_SECCOMP, mode,
/// filter)` (operation 0 or 1 with no flags).
pub fn seccomp(p: &mut Process, op: u64, flags: u64, args: u64) -> SysResult {
    match op {
        SECCOMP_SET_MODE_STRICT => {
            if flags != 0 || args != 0 {
                return Err(Errno::EINVAL);
            }
            let mut state = p.thread.seccomp.lock();
            if state.mode == MODE_FILTER {
                return Err(Errno::EINVAL); // no going back to strict
            }
            state.mode = MODE_STRICT;
            p.thread.seccomp_mode.store(MODE_STRICT, core::sync::atomic::Ordering::SeqCst);
            Ok(0)
        }
        SECCOMP_SET_MODE_FILTER => {
            if flags & !(FLAG_TSYNC | FLAG_LOG | FLAG_SPEC_ALLOW) != 0 {
                return Err(Errno::EINVAL);
            }
            // Linux's order: the header (EFAULT, EINVAL), the right to
            // filter (EACCES), the instructions (EFAULT, EINVAL).
            let header = read_header(p, args)?;
            let creds = p.info.credentials();
            if !p.info.prctl.lock().no_new_privs && !creds.capable(crate::process::cap::SYS_ADMIN) {
                return Err(Errno::EACCES);
            }
            let insns = read_program(p, header)?;
            validate(&insns)?;
            let mut state = p.thread.seccomp.lock().clone();
            if state.mode == MODE_STRICT {
                return Err(Errno::EINVAL);
            }
            // TSYNC: every other thread must be unfiltered or run the
            // caller's filters so far; else the first one's id is the
            // answer and nothing changes (Linux).
            if flags & FLAG_TSYNC != 0 {
                for thread in p.info.thread_list() {
                    let theirs = thread.seccomp.lock().clone();
                    let same = match (&theirs.filter, &state.filter) {
                        (None, _) => true,
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (Some(_), None) => false,
                    };
                    if theirs.mode == MODE_STRICT || !same {
                        return Ok(u64::from(thread.tid));
                    }
                }
            }
            let total = state.filter.as_ref().map_or(0, |f| f.total) + insns.len() + 4;
            if total > MAX_TOTAL {
                return Err(Errno::ENOMEM);
            }
            state.filter = Some(Arc::new(Filter { insns, prev: state.filter.take(), total }));
            state.mode = MODE_FILTER;
            let threads = if flags & FLAG_TSYNC != 0 { p.info.thread_list() } else { alloc::vec![p.thread.clone()] };
            for thread in threads {
                *thread.seccomp.lock() = state.clone();
                thread.seccomp_mode.store(MODE_FILTER, core::sync::atomic::Ordering::SeqCst);
            }
            Ok(0)
        }
        SECCOMP_GET_ACTION_AVAIL => {
            if flags != 0 {
                return Err(Errno::EINVAL);
            }
            let mut raw = [0u8; 4];
            p.memory.read(args, &mut raw)?;
            match u32::from_le_bytes(raw) {
                RET_KILL_PROCESS | RET_KILL_THREAD | RET_TRAP | RET_ERRNO | RET_USER_NOTIF | RET_TRACE | RET_LOG | RET_ALLOW => Ok(0),
                _ => Err(Errno::EOPNOTSUPP),
            }
        }
        SECCOMP_GET_NOTIF_SIZES => {
            if flags != 0 {
                return Err(Errno::EINVAL);
            }
            // struct seccomp_notif_sizes: notif 80, resp 24, data 64.
            let mut raw = [0u8; 6];
            raw[0..2].copy_from_slice(&80u16.to_le_bytes());
            raw[2..4].copy_from_slice(&24u16.to_le_bytes());
            raw[4..6].copy_from_slice(&64u16.to_le_bytes());
            p.memory.write(args, &raw).map(|()| 0)
        }
        _ => Err(Errno::EINVAL),
    }
}
