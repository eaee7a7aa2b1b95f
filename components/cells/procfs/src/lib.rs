//! `/proc` as a cell: which files the tree holds and what each says,
//! rendered from the facts the kernel hands over (see
//! `tessera_cell_api::procfs`). Nothing is kept between calls.
//!
//! Inode numbers name the nodes, and the cell reads everything it needs
//! back from them:
//!
//! | inode | node |
//! |---|---|
//! | 1 | `/proc` |
//! | 9 | `self` |
//! | 10 + i | the files of `/proc` ([`ROOT_FILES`]) |
//! | 200, 201 + k | `sysvipc` and its files |
//! | 210, 211 + k | `net` and its files |
//! | `PID << 8`, `PID << 8 \| k` | `/proc/PID` and its entries ([`PID_ENTRIES`]) |
//! | `TID << 8 \| 11`, `TID << 8 \| 0x20 + k` | `task/TID` and its files |
//! | tag 1, 2, 3 `<< 60` | the magic links `exe`, `cwd`, `fd/N` |
//! | tag 4 `<< 60` | `fdinfo/N` |
//! | tag 5 `<< 60 \| i` | `/proc/sys` value i |
//! | tag 6 `<< 60 \| i << 8 \| len` | the `/proc/sys` directory that is the first `len` bytes of value i's path |
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

#[cfg(feature = "hostile")]
mod hostile;
#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use tessera_cell_api::procfs::{
    Done, Entries, Export, FDINFO_TAG, Fact, Facts, LINK_CWD, LINK_EXE, LINK_FD, Node, ProcErr, ProcFs, Process, Processes, Reply, Request,
    COREDUMP_FILTER, ROOT_INO, SELF_INO, Setting, Sys, System, Tables, TextFact, link_ino, link_of, pid_dir_ino, pid_entry_ino,
    pid_of_dir, sys_ino,
};

const DIR: u32 = 0o040555;
const FILE: u32 = 0o100444;
const WRITABLE: u32 = 0o100644;
const LINK: u32 = 0o120777;

/// The files of `/proc`.
pub const ROOT_FILES: [&str; 12] =
    ["meminfo", "uptime", "version", "mounts", "cpuinfo", "loadavg", "filesystems", "partitions", "stat", "cmdline", "cells", "interrupts"];
/// The last root file's inode number.
const ROOT_FILES_LAST: u64 = 10 + ROOT_FILES.len() as u64 - 1;
const SYSVIPC_INO: u64 = 200;
const SYSVIPC: [&str; 3] = ["msg", "sem", "shm"];
const NET_INO: u64 = 210;
const NET: [&str; 2] = ["dev", "route"];

/// What `/proc/PID` holds: name and the low byte of its inode number
/// (the links' numbers are their own).
pub const PID_ENTRIES: [(&str, u64); 14] = [
    ("fd", 1),
    ("stat", 2),
    ("status", 3),
    ("cmdline", 4),
    ("comm", 5),
    ("maps", 6),
    ("mounts", 7),
    ("exe", 8),
    ("cwd", 9),
    ("task", 10),
    ("timerslack_ns", 12),
    ("fdinfo", 13),
    ("coredump_filter", COREDUMP_FILTER),
    ("smaps", 15),
];
/// Entries of `/proc/PID` only a tracer may open (EACCES otherwise).
const GUARDED: [&str; 6] = ["fd", "fdinfo", "maps", "smaps", "exe", "cwd"];
const TASK_DIR: u64 = 11;
const TASK_FILES: [&str; 3] = ["comm", "stat", "status"];
const TAG_FDINFO: u64 = FDINFO_TAG;
/// `sys_ino`'s tag.
const TAG_SYS: u64 = 5;
const TAG_SYS_DIR: u64 = 6;
/// Values and paths of `/proc/sys` are at most this many.
const SYS_MAX: u64 = 1 << 16;

/// Why a request stops before it is done.
enum Stop {
    Need(Fact),
    Fail(ProcErr),
}

impl From<ProcErr> for Stop {
    fn from(e: ProcErr) -> Self {
        Stop::Fail(e)
    }
}

type Res<T> = Result<T, Stop>;

/// What an inode number names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum What {
    Root,
    SelfLink,
    RootFile(usize),
    SysvDir,
    Sysv(u8),
    NetDir,
    Net(u8),
    SysDir { first: usize, len: usize },
    SysFile(usize),
    PidDir(u32),
    PidEntry(u32, u64),
    TaskDir(u32),
    TaskFile(u32, u64),
    Link(u64, u32, u32),
    FdInfo(u32, u32),
}

fn decode(ino: u64) -> Option<What> {
    let (tag, pid, fd) = link_of(ino);
    Some(match ino {
        ROOT_INO => What::Root,
        SELF_INO => What::SelfLink,
        10..=ROOT_FILES_LAST => What::RootFile((ino - 10) as usize),
        SYSVIPC_INO => What::SysvDir,
        201..=203 => What::Sysv((ino - 201) as u8),
        NET_INO => What::NetDir,
        211..=212 => What::Net((ino - 211) as u8),
        _ if tag == LINK_EXE || tag == LINK_CWD || tag == LINK_FD => What::Link(tag, pid, fd),
        _ if tag == TAG_FDINFO => What::FdInfo(pid, fd),
        _ if tag == TAG_SYS && ino & 0x0fff_ffff_ffff_ffff < SYS_MAX => What::SysFile((ino & 0xffff) as usize),
        _ if tag == TAG_SYS_DIR => What::SysDir { first: ((ino >> 8) & 0xffff) as usize, len: (ino & 0xff) as usize },
        _ if tag != 0 || ino >> 40 != 0 => return None,
        _ => {
            if let Some(pid) = pid_of_dir(ino) {
                return Some(What::PidDir(pid));
            }
            let (id, low) = ((ino >> 8) as u32, ino & 0xff);
            match low {
                TASK_DIR => What::TaskDir(id),
                0x20..=0x22 => What::TaskFile(id, low - 0x20),
                _ if PID_ENTRIES.iter().any(|&(_, k)| k == low) => What::PidEntry(id, low),
                _ => return None,
            }
        }
    })
}

fn sys_dir_ino(first: usize, len: usize) -> u64 {
    TAG_SYS_DIR << 60 | (first as u64) << 8 | len as u64
}

fn node(ino: u64, mode: u32) -> Node {
    Node { ino, mode }
}

fn system(f: &Facts) -> Res<&System> {
    f.system.as_ref().ok_or(Stop::Need(Fact::System))
}

fn tables(f: &Facts) -> Res<&Tables> {
    f.tables.as_ref().ok_or(Stop::Need(Fact::Tables))
}

fn processes(f: &Facts) -> Res<&Processes> {
    f.processes.as_ref().ok_or(Stop::Need(Fact::Processes))
}

fn process(f: &Facts, pid: u32) -> Res<&Process> {
    match &f.process {
        Some(Some(p)) if p.pid == pid => Ok(p),
        Some(None) => Err(Stop::Fail(ProcErr::NotFound)),
        _ => Err(Stop::Need(Fact::Process(pid))),
    }
}

/// Process `pid` when the caller may look into it as a tracer.
fn traced(f: &Facts, pid: u32) -> Res<&Process> {
    let p = process(f, pid)?;
    if p.traceable { Ok(p) } else { Err(Stop::Fail(ProcErr::Access)) }
}

fn text(f: &Facts, what: TextFact) -> Res<String> {
    match &f.text {
        Some(Some(t)) => Ok(t.clone()),
        Some(None) => Err(Stop::Fail(ProcErr::NotFound)),
        None => Err(Stop::Need(Fact::Text(what))),
    }
}

fn sys(f: &Facts) -> Res<&Sys> {
    f.sys.as_ref().ok_or(Stop::Need(Fact::Sys))
}

/// The owner of thread `tid`.
fn owner(f: &Facts, tid: u32) -> Res<u32> {
    let all = processes(f)?;
    all.threads.iter().find(|t| t[0] == tid).map(|t| t[1]).ok_or(Stop::Fail(ProcErr::NotFound))
}

/// NUL-terminated strings.
fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split_terminator('\0')
}

fn sys_names(s: &Sys) -> Vec<&str> {
    split(&s.names).take(SYS_MAX as usize).collect()
}

/// What a write to `/proc/sys` value `i` takes (0: nothing).
fn sys_writable(s: &Sys, i: usize) -> u8 {
    s.writable.get(i).copied().unwrap_or(0)
}

/// The mode of `/proc/sys` value `i`.
fn sys_mode(s: &Sys, i: usize) -> u32 {
    if sys_writable(s, i) != 0 { WRITABLE } else { FILE }
}

/// The node of `/proc/PID` entry `name`.
fn pid_entry(pid: u32, name: &str) -> Option<Node> {
    let &(_, low) = PID_ENTRIES.iter().find(|(n, _)| *n == name)?;
    let ino = pid_entry_ino(pid, low);
    Some(match name {
        "exe" => node(link_ino(LINK_EXE, pid, 0), LINK),
        "cwd" => node(link_ino(LINK_CWD, pid, 0), LINK),
        "fd" | "fdinfo" | "task" => node(ino, DIR),
        "coredump_filter" => node(ino, WRITABLE),
        _ => node(ino, FILE),
    })
}

fn lookup(f: &Facts, dir: u64, name: &str) -> Res<Node> {
    match decode(dir).ok_or(ProcErr::NotFound)? {
        What::Root => {
            if name == "self" {
                return Ok(node(SELF_INO, LINK));
            }
            if let Some(i) = ROOT_FILES.iter().position(|n| *n == name) {
                return Ok(node(10 + i as u64, FILE));
            }
            if name == "sys" {
                return Ok(node(sys_dir_ino(0, 0), DIR));
            }
            if name == "sysvipc" {
                return Ok(node(SYSVIPC_INO, DIR));
            }
            if name == "net" {
                return Ok(node(NET_INO, DIR));
            }
            let id: u32 = name.parse().map_err(|_| ProcErr::NotFound)?;
            if name.starts_with('0') || name.starts_with('+') {
                return Err(ProcErr::NotFound.into());
            }
            let all = processes(f)?;
            if all.pids.contains(&id) {
                return Ok(node(pid_dir_ino(id), DIR));
            }
            // A thread id: /proc/TID is found (not listed) as Linux finds
            // it, showing the thread.
            owner(f, id)?;
            Ok(node(pid_dir_ino(id) | TASK_DIR, DIR))
        }
        What::SysvDir => {
            let k = SYSVIPC.iter().position(|n| *n == name).ok_or(ProcErr::NotFound)?;
            Ok(node(201 + k as u64, FILE))
        }
        What::NetDir => {
            let k = NET.iter().position(|n| *n == name).ok_or(ProcErr::NotFound)?;
            Ok(node(211 + k as u64, FILE))
        }
        What::SysDir { first, len } => {
            let s = sys(f)?;
            let names = sys_names(s);
            let prefix = names.get(first).and_then(|n| n.get(..len)).ok_or(ProcErr::NotFound)?;
            let wanted = if prefix.is_empty() { String::from(name) } else { format!("{prefix}/{name}") };
            for (i, path) in names.iter().enumerate() {
                if *path == wanted {
                    return Ok(node(sys_ino(i as u32), sys_mode(s, i)));
                }
                if path.starts_with(&wanted) && path.as_bytes().get(wanted.len()) == Some(&b'/') && wanted.len() < 256 {
                    return Ok(node(sys_dir_ino(i, wanted.len()), DIR));
                }
            }
            Err(ProcErr::NotFound.into())
        }
        What::PidDir(pid) => {
            let n = pid_entry(pid, name).ok_or(ProcErr::NotFound)?;
            // What ptrace access guards is refused at lookup (EACCES), as
            // Linux's permission checks on these entries refuse opening.
            if GUARDED.contains(&name) && !process(f, pid)?.traceable {
                return Err(ProcErr::Access.into());
            }
            process(f, pid)?;
            Ok(n)
        }
        What::PidEntry(pid, 10) => {
            // task/TID
            let tid: u32 = name.parse().map_err(|_| ProcErr::NotFound)?;
            if !process(f, pid)?.tids.contains(&tid) {
                return Err(ProcErr::NotFound.into());
            }
            Ok(node(pid_dir_ino(tid) | TASK_DIR, DIR))
        }
        What::PidEntry(pid, low @ (1 | 13)) => {
            let fd: u32 = name.parse().map_err(|_| ProcErr::NotFound)?;
            if !traced(f, pid)?.fds.contains(&fd) {
                return Err(ProcErr::NotFound.into());
            }
            Ok(if low == 1 { node(link_ino(LINK_FD, pid, fd), LINK) } else { node(link_ino(TAG_FDINFO, pid, fd), FILE) })
        }
        What::TaskDir(tid) => {
            let k = TASK_FILES.iter().position(|n| *n == name).ok_or(ProcErr::NotFound)?;
            owner(f, tid)?;
            Ok(node(pid_dir_ino(tid) | (0x20 + k as u64), FILE))
        }
        What::PidEntry(..) | What::RootFile(_) | What::Sysv(_) | What::Net(_) | What::SysFile(_) | What::FdInfo(..) | What::TaskFile(..) => {
            Err(ProcErr::NotDir.into())
        }
        What::SelfLink | What::Link(..) => Err(ProcErr::NotDir.into()),
    }
}

fn list(f: &Facts, dir: u64) -> Res<Entries> {
    let mut out = Entries::default();
    let mut add = |name: &str, n: Node| {
        out.names.push_str(name);
        out.names.push('\0');
        out.inos.push(n.ino);
        out.modes.push(n.mode);
    };
    match decode(dir).ok_or(ProcErr::NotFound)? {
        What::Root => {
            for (i, name) in ROOT_FILES.iter().enumerate() {
                add(name, node(10 + i as u64, FILE));
            }
            add("self", node(SELF_INO, LINK));
            add("sys", node(sys_dir_ino(0, 0), DIR));
            add("sysvipc", node(SYSVIPC_INO, DIR));
            add("net", node(NET_INO, DIR));
            for &pid in &processes(f)?.pids {
                add(&pid.to_string(), node(pid_dir_ino(pid), DIR));
            }
        }
        What::SysvDir => {
            for (k, name) in SYSVIPC.iter().enumerate() {
                add(name, node(201 + k as u64, FILE));
            }
        }
        What::NetDir => {
            for (k, name) in NET.iter().enumerate() {
                add(name, node(211 + k as u64, FILE));
            }
        }
        What::SysDir { first, len } => {
            let s = sys(f)?;
            let names = sys_names(s);
            let dir = names.get(first).and_then(|n| n.get(..len)).ok_or(ProcErr::NotFound)?;
            let mut seen: Vec<&str> = Vec::new();
            for (i, path) in names.iter().enumerate() {
                let rest = if dir.is_empty() { Some(*path) } else { path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) };
                let Some(rest) = rest else { continue };
                let (name, n) = match rest.split_once('/') {
                    Some((sub, _)) => (sub, node(sys_dir_ino(i, path.len() - rest.len() + sub.len()), DIR)),
                    None => (rest, node(sys_ino(i as u32), sys_mode(s, i))),
                };
                if !seen.contains(&name) {
                    seen.push(name);
                    add(name, n);
                }
            }
        }
        What::PidDir(pid) => {
            process(f, pid)?;
            // Guarded entries are listed too, as on Linux (opening them is
            // what is refused).
            for (name, _) in PID_ENTRIES {
                if let Some(n) = pid_entry(pid, name) {
                    add(name, n);
                }
            }
        }
        What::PidEntry(pid, 10) => {
            for &tid in &process(f, pid)?.tids {
                add(&tid.to_string(), node(pid_dir_ino(tid) | TASK_DIR, DIR));
            }
        }
        What::PidEntry(pid, low @ (1 | 13)) => {
            for &fd in &traced(f, pid)?.fds {
                let n = if low == 1 { node(link_ino(LINK_FD, pid, fd), LINK) } else { node(link_ino(TAG_FDINFO, pid, fd), FILE) };
                add(&fd.to_string(), n);
            }
        }
        What::TaskDir(tid) => {
            owner(f, tid)?;
            for (k, name) in TASK_FILES.iter().enumerate() {
                add(name, node(pid_dir_ino(tid) | (0x20 + k as u64), FILE));
            }
        }
        _ => return Err(ProcErr::NotDir.into()),
    }
    Ok(out)
}

fn state_name(letter: u8) -> &'static str {
    match letter {
        b'R' => "R (running)",
        b'T' => "T (stopped)",
        b'Z' => "Z (zombie)",
        _ => "S (sleeping)",
    }
}

/// Clock ticks (100 Hz) of `ns`.
fn ticks(ns: u64) -> u64 {
    ns / 10_000_000
}

/// `/proc/PID/stat`, or a thread's line (its own id and state).
fn pid_stat(p: &Process, thread: Option<u32>) -> String {
    let mut state = char::from(p.state);
    if let Some(tid) = thread
        && (state == 'R' || state == 'S')
    {
        let running = p.tids.iter().position(|&t| t == tid).and_then(|i| p.tids_running.get(i)).is_some_and(|&r| r != 0);
        state = if running { 'R' } else { 'S' };
    }
    // The thread's processor; the process's is its first thread's.
    let at = thread.and_then(|tid| p.tids.iter().position(|&t| t == tid)).unwrap_or(0);
    let processor = p.tids_cpu.get(at).copied().unwrap_or(0);
    let [user, total, cuser, ctotal] = p.cpu_ns;
    let (utime, stime, cutime, cstime) = (ticks(user), ticks(total.saturating_sub(user)), ticks(cuser), ticks(ctotal.saturating_sub(cuser)));
    let (vsize, rss) = if p.has_memory { (p.memory[0], p.memory[2]) } else { (0, 0) };
    format!(
        "{} ({}) {state} {} {} {} {} {} 4194560 0 0 0 0 {utime} {stime} {cutime} {cstime} {} {} {} 0 {} {vsize} {rss} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 {processor} 0 0 0 0 0\n",
        thread.unwrap_or(p.pid),
        p.comm,
        p.ppid,
        p.pgid,
        p.sid,
        p.tty_nr,
        p.tpgid,
        20 + p.nice,
        p.nice,
        p.tids.len(),
        ticks(p.start_ns),
    )
}

fn pid_status(p: &Process) -> String {
    let ids = p.ids;
    let groups: Vec<String> = p.groups.iter().map(|g| g.to_string()).collect();
    let mut out = format!(
        "Name:\t{}\nState:\t{}\nTgid:\t{}\nPid:\t{}\nPPid:\t{}\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nGroups:\t{}\n",
        p.comm,
        state_name(p.state),
        p.pid,
        p.pid,
        p.ppid,
        ids[0],
        ids[1],
        ids[2],
        ids[3],
        ids[4],
        ids[5],
        ids[6],
        ids[7],
        groups.join(" ")
    );
    // Memory lines while the process has memory (not for zombies).
    if p.has_memory {
        let _ = write!(out, "VmSize:\t{} kB\nVmLck:\t{} kB\nVmRSS:\t{} kB\nVmSwap:\t0 kB\n", p.memory[0] / 1024, p.memory[1] / 1024, p.memory[2] * 4);
    }
    let c = p.caps;
    let _ = write!(
        out,
        "Threads:\t{}\nCapInh:\t{:016x}\nCapPrm:\t{:016x}\nCapEff:\t{:016x}\nCapBnd:\t{:016x}\nCapAmb:\t{:016x}\nNoNewPrivs:\t{}\nSeccomp:\t{}\n",
        p.tids.len(),
        c[0],
        c[1],
        c[2],
        c[3],
        c[4],
        u8::from(p.no_new_privs),
        p.seccomp
    );
    out
}

fn root_file(f: &Facts, i: usize) -> Res<String> {
    Ok(match ROOT_FILES.get(i).copied().unwrap_or("") {
        "meminfo" => {
            let s = system(f)?;
            let (total, free, shmem) = (s.total_kb, s.free_kb, s.shmem_kb);
            format!(
                "MemTotal:       {total:>8} kB\nMemFree:        {free:>8} kB\nMemAvailable:   {free:>8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:          {shmem:>8} kB\n"
            )
        }
        "uptime" => {
            let s = system(f)?;
            let centis = s.uptime_ns / 10_000_000;
            let idle = s.idle_ns / 10_000_000;
            format!("{}.{:02} {}.{:02}\n", centis / 100, centis % 100, idle / 100, idle % 100)
        }
        "version" => "Linux version 6.1.0-tessera (Tessera framekernel) #1\n".to_string(),
        "mounts" => mounts(tables(f)?),
        "cpuinfo" => {
            // One entry per online processor, as Linux lists them.
            let count = system(f)?.cpu_idle_ns.len().max(1);
            let mut out = String::new();
            for i in 0..count {
                let _ = write!(
                    out,
                    "processor\t: {i}\nvendor_id\t: QEMU\nmodel name\t: x86_64 (Tessera)\nphysical id\t: 0\nsiblings\t: {count}\ncore id\t\t: {i}\ncpu cores\t: {count}\napicid\t\t: {i}\nflags\t\t: fpu sse sse2\n\n"
                );
            }
            out
        }
        "loadavg" => {
            let procs = system(f)?.processes;
            format!("0.00 0.00 0.00 1/{procs} {procs}\n")
        }
        "filesystems" => {
            let t = tables(f)?;
            let mut out = String::new();
            for name in split(&t.nodev_types) {
                let _ = writeln!(out, "nodev\t{name}");
            }
            for name in split(&t.device_types) {
                let _ = writeln!(out, "\t{name}");
            }
            out
        }
        "partitions" => {
            let t = tables(f)?;
            let mut out = String::from("major minor  #blocks  name\n\n");
            for ((name, rdev), sectors) in split(&t.disks).zip(&t.disk_rdevs).zip(&t.disk_sectors) {
                let _ = writeln!(out, "{:4}  {:7} {:10} {name}", rdev >> 8, rdev & 0xff, sectors / 2);
            }
            out
        }
        "stat" => {
            // Per processor: programs' user time, the idle task's time, and
            // the rest (the kernel) as system time; clock ticks of 100 Hz.
            // The first line adds them up.
            let s = system(f)?;
            let per_cpu: Vec<(u64, u64)> = s.cpu_user_ns.iter().copied().zip(s.cpu_idle_ns.iter().copied()).collect();
            let line = |name: &str, user_ns: u64, idle_ns: u64, uptime_ns: u64| {
                let system_ticks = ticks(uptime_ns.saturating_sub(user_ns + idle_ns));
                format!("{name} {} 0 {system_ticks} {} 0 0 0 0 0 0\n", ticks(user_ns), ticks(idle_ns))
            };
            let cpus = per_cpu.len().max(1) as u64;
            let mut out = line("cpu ", s.user_ns, s.idle_ns, s.uptime_ns.saturating_mul(cpus));
            for (i, (user, idle)) in per_cpu.iter().enumerate() {
                out.push_str(&line(&format!("cpu{i}"), *user, *idle, s.uptime_ns));
            }
            let _ = write!(
                out,
                "btime {}\nprocesses {}\nprocs_running {}\nprocs_blocked 0\n",
                s.realtime_ns.saturating_sub(s.uptime_ns) / 1_000_000_000,
                s.processes,
                s.running.max(1)
            );
            out
        }
        "interrupts" => interrupts(system(f)?),
        "cmdline" => "tessera\n".to_string(),
        "cells" => text(f, TextFact::Cells)?,
        _ => return Err(ProcErr::NotFound.into()),
    })
}

/// `/proc/interrupts` as Linux lays it out: a column per online
/// processor; the legacy lines that fired (with the chip that delivers
/// them, and, through the I/O APIC, the line's trigger), then NMIs, local
/// timer ticks, kicks and TLB shootdowns.
fn interrupts(s: &System) -> String {
    let cpus = s.cpu_idle_ns.len().max(1);
    let mut out = String::from("    ");
    for i in 0..cpus {
        let _ = write!(out, " {:>10}", format!("CPU{i}"));
    }
    out.push('\n');
    let row = |out: &mut String, label: &str, values: &mut dyn Iterator<Item = u64>, what: &str| {
        let _ = write!(out, "{label:>4}:");
        for _ in 0..cpus {
            let _ = write!(out, " {:>10}", values.next().unwrap_or(0));
        }
        let _ = writeln!(out, "   {what}");
    };
    for (line, counts) in s.irq_lines.chunks(cpus).enumerate().take(16) {
        if counts.iter().all(|&c| c == 0) {
            continue;
        }
        let name = match line {
            0 => "timer",
            4 => "ttyS0",
            8 => "rtc0",
            _ => "",
        };
        let what = if s.irq_chip == "IO-APIC" {
            let trigger = if s.irq_level & (1 << line) != 0 { "fasteoi" } else { "edge" };
            format!("IO-APIC {:>3}-{trigger:<8} {name}", line)
        } else {
            format!("{}  {name}", s.irq_chip)
        };
        row(&mut out, &format!("{line:>3}"), &mut counts.iter().copied(), &what);
    }
    row(&mut out, "NMI", &mut s.cpu_nmis.iter().copied(), "Non-maskable interrupts");
    row(&mut out, "LOC", &mut s.cpu_local_timer.iter().copied(), "Local timer interrupts");
    row(&mut out, "RES", &mut s.cpu_kicks.iter().copied(), "Rescheduling interrupts");
    row(&mut out, "TLB", &mut s.cpu_tlb_shootdowns.iter().copied(), "TLB shootdowns");
    out
}

fn mounts(t: &Tables) -> String {
    let mut out = String::from("rootfs / tmpfs rw 0 0\n");
    let mut fields = split(&t.mounts);
    for &read_only in &t.mounts_read_only {
        let (Some(source), Some(path), Some(fstype)) = (fields.next(), fields.next(), fields.next()) else { break };
        let mode = if read_only != 0 { "ro" } else { "rw" };
        let _ = writeln!(out, "{source} {path} {fstype} {mode} 0 0");
    }
    out
}

fn read(f: &Facts, ino: u64) -> Res<Vec<u8>> {
    let text = match decode(ino).ok_or(ProcErr::NotFound)? {
        What::RootFile(i) => root_file(f, i)?,
        What::Sysv(k) => text(f, TextFact::SysvIpc(k))?,
        What::Net(k) => text(f, TextFact::Net(k))?,
        What::SysFile(i) => {
            let values: Vec<&str> = split(&sys(f)?.values).collect();
            let value = values.get(i).ok_or(ProcErr::NotFound)?;
            format!("{value}\n")
        }
        What::PidEntry(pid, low) => match low {
            2 => pid_stat(process(f, pid)?, None),
            3 => pid_status(process(f, pid)?),
            4 => return Ok(process(f, pid)?.cmdline.clone()),
            5 => format!("{}\n", process(f, pid)?.comm),
            6 => {
                traced(f, pid)?;
                text(f, TextFact::Maps(pid))?
            }
            7 => mounts(tables(f)?), // one mount namespace
            12 => format!("{}\n", process(f, pid)?.timerslack_ns),
            14 => format!("{:08x}\n", process(f, pid)?.coredump_filter),
            15 => {
                traced(f, pid)?;
                text(f, TextFact::Smaps(pid))?
            }
            _ => return Err(ProcErr::IsDir.into()),
        },
        What::TaskFile(tid, k) => {
            let pid = owner(f, tid)?;
            let p = process(f, pid)?;
            match k {
                0 => {
                    let i = p.tids.iter().position(|&t| t == tid).ok_or(ProcErr::NotFound)?;
                    format!("{}\n", split(&p.tid_comms).nth(i).unwrap_or(""))
                }
                1 => pid_stat(p, Some(tid)),
                _ => pid_status(p),
            }
        }
        What::FdInfo(pid, fd) => {
            traced(f, pid)?;
            let d = match &f.fd {
                Some(Some(d)) => d,
                Some(None) => return Err(ProcErr::NotFound.into()),
                None => return Err(Stop::Need(Fact::Fd { pid, fd })),
            };
            // Linux's layout: position, flags in octal (with O_CLOEXEC),
            // mount id, inode, then what the file kind adds.
            format!("pos:\t{}\nflags:\t0{:o}\nmnt_id:\t1\nino:\t{}\n{}", d.pos, d.flags, d.ino, d.extra)
        }
        What::Root | What::SysvDir | What::NetDir | What::SysDir { .. } | What::PidDir(_) | What::TaskDir(_) => return Err(ProcErr::IsDir.into()),
        What::SelfLink | What::Link(..) => return Err(ProcErr::Invalid.into()),
    };
    Ok(text.into_bytes())
}

fn write(f: &Facts, ino: u64, text: &str) -> Res<Setting> {
    match decode(ino).ok_or(ProcErr::NotFound)? {
        What::PidEntry(pid, COREDUMP_FILTER) => {
            process(f, pid)?;
            // Hexadecimal (0x optional), as Linux reads it.
            let text = text.trim();
            let value = u32::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|_| ProcErr::Invalid)?;
            Ok(Setting::CoredumpFilter { pid, value: value & 0x1ff })
        }
        What::SysFile(i) => {
            let index = u32::try_from(i).map_err(|_| ProcErr::NotFound)?;
            match sys_writable(sys(f)?, i) {
                // A number, whitespace around it ignored.
                1 => Ok(Setting::Number { index, value: text.trim().parse().map_err(|_| ProcErr::Invalid)? }),
                2 => Ok(Setting::Text { index, text: text.trim_end_matches('\n').to_string() }),
                _ => Err(ProcErr::NotPermitted.into()),
            }
        }
        _ => Err(ProcErr::NotPermitted.into()),
    }
}

/// The procfs cell.
pub struct Proc;

impl ProcFs for Proc {
    fn serve(&self, request: Request, facts: Facts) -> Reply {
        #[cfg(feature = "hostile")]
        use hostile::{list_hostile as list, lookup_hostile as lookup, read_hostile as read, write_hostile as write};
        let result = match &request {
            Request::Lookup { dir, name } => lookup(&facts, *dir, name).map(Done::Node),
            Request::List { dir } => list(&facts, *dir).map(Done::Entries),
            Request::Read { ino } => fault_point(*ino).and_then(|()| read(&facts, *ino)).map(Done::Text),
            Request::Write { ino, text } => write(&facts, *ino, text).map(Done::Set),
        };
        match result {
            Ok(done) => Reply::Done(done),
            Err(Stop::Need(fact)) => Reply::Need(fact),
            Err(Stop::Fail(e)) => Reply::Failed(e),
        }
    }
}

/// The faulty build (`procfs-faulty.cell`, for the fault test) panics
/// while rendering `/proc/loadavg`; the good build reads it.
fn fault_point(ino: u64) -> Res<()> {
    if cfg!(feature = "faulty") && ino == 10 + 5 {
        panic!("procfs-faulty: an injected bug in rendering /proc/loadavg");
    }
    Ok(())
}

fn make() -> Export {
    Box::new(Proc)
}

tessera_cell_api::cell_entry!(procfs, make);
