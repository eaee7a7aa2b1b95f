//! Process system calls: fork/clone, execve, wait4, ids, sleeping.

use crate::errno::{Errno, SysResult};
use crate::exec;
use crate::process::{self, Process};
use crate::syscall::Action;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use framekernel::arch::user::UserContext;
use tessera_sched::WaitQueue;

const CLONE_VM: u64 = 0x100;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
const CLONE_CHILD_SETTID: u64 = 0x1000000;

pub(super) fn clone(p: &mut Process, ctx: &UserContext, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> SysResult {
    // CLONE_PIDFD: clone() puts the descriptor where the parent's tid
    // would go, so the two cannot be asked for together.
    if flags & CLONE_PIDFD != 0 && flags & CLONE_PARENT_SETTID != 0 {
        return Err(Errno::EINVAL);
    }
    clone_with(p, ctx, flags, stack, ptid, ctid, tls, ptid)
}

/// `clone3(args, size)`: `struct clone_args` (flags, pidfd, child_tid,
/// parent_tid, exit_signal, stack, stack_size, tls, set_tid,
/// set_tid_size, cgroup), at least the first 64 bytes; bytes this kernel
/// does not know must be zero (E2BIG).
pub(super) fn clone3(p: &mut Process, ctx: &UserContext, args: u64, size: u64) -> SysResult {
    const KNOWN: usize = 88;
    if size < 64 {
        return Err(Errno::EINVAL);
    }
    if size > 4096 {
        return Err(Errno::E2BIG);
    }
    let mut raw = alloc::vec![0u8; size as usize];
    p.memory.read(args, &mut raw)?;
    if raw.get(KNOWN..).is_some_and(|rest| rest.iter().any(|&b| b != 0)) {
        return Err(Errno::E2BIG);
    }
    let field = |i: usize| u64::from_le_bytes(raw.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let (flags, pidfd, child_tid, parent_tid, exit_signal) = (field(0), field(1), field(2), field(3), field(4));
    let (stack, stack_size, tls, set_tid, set_tid_size) = (field(5), field(6), field(7), field(8), field(9));
    // The exit signal has its own field here; CLONE_DETACHED and the old
    // low byte are invalid, as are signals past 64.
    if flags & 0xff != 0 || flags & CLONE_DETACHED != 0 || exit_signal > 64 {
        return Err(Errno::EINVAL);
    }
    if (stack == 0) != (stack_size == 0) || set_tid_size > 32 || (set_tid == 0) != (set_tid_size == 0) {
        return Err(Errno::EINVAL);
    }
    if set_tid_size != 0 {
        // Choosing the new pid (checkpoint/restore) is not offered.
        return Err(if p.info.credentials().capable(crate::process::cap::SYS_ADMIN) { Errno::EINVAL } else { Errno::EPERM });
    }
    if flags & CLONE_INTO_CGROUP != 0 {
        return Err(Errno::EINVAL); // no cgroups
    }
    if flags & (CLONE_THREAD | CLONE_PARENT) != 0 && exit_signal != 0 {
        return Err(Errno::EINVAL);
    }
    let top = if stack == 0 { 0 } else { stack.checked_add(stack_size).ok_or(Errno::EINVAL)? };
    clone_with(p, ctx, flags | exit_signal, top, parent_tid, child_tid, tls, pidfd)
}

/// `clone` and `clone3`: `pidfd_at` receives the pidfd for CLONE_PIDFD.
#[allow(clippy::too_many_arguments)]
fn clone_with(p: &mut Process, ctx: &UserContext, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64, pidfd_at: u64) -> SysResult {
    if flags & CLONE_PIDFD != 0 && flags & CLONE_THREAD != 0 {
        return Err(Errno::EINVAL);
    }
    // A thread pointer the child could not run with fails the call (EPERM,
    // as Linux's), instead of a child that dies on its first instruction.
    if flags & CLONE_SETTLS != 0 {
        super::misc::segment_base_ok(tls)?;
    }
    check_namespaces(p, flags)?;
    if flags & CLONE_THREAD != 0 {
        // A thread shares memory and signal handlers (Linux requires both).
        if flags & (CLONE_VM | CLONE_SIGHAND) != (CLONE_VM | CLONE_SIGHAND) {
            return Err(Errno::EINVAL);
        }
        let thread = p.new_thread(flags & CLONE_FILES != 0)?;
        thread.sync_signal_state();
        return start_child(p, thread, ctx, flags, stack, ptid, ctid, tls);
    }
    if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_PARENT != 0 && p.info.pid == 1 {
        return Err(Errno::EINVAL); // init's siblings would have no parent
    }
    // A process may share its creator's memory (vfork, posix_spawn: the
    // child's writes, an exec error say, are the parent's), descriptor
    // table and file-system context. Signal actions are copied even with
    // CLONE_SIGHAND (a separate process keeps its own).
    let share = process::Sharing { memory: flags & CLONE_VM != 0, files: flags & CLONE_FILES != 0, fs: flags & CLONE_FS != 0 };
    let child = p.fork_sharing(share)?;
    child.sync_signal_state();
    if flags & CLONE_PARENT != 0 {
        // A sibling: the caller's parent is the child's (and is told when it ends).
        child.info.set_ppid(p.info.ppid());
    }
    child.info.set_exit_signal((flags & 0xff) as u8);
    let info = child.info.clone();
    // CLONE_PIDFD: a close-on-exec pidfd for the child, its number stored
    // for the parent before the child runs.
    let pidfd = if flags & CLONE_PIDFD != 0 {
        let fd = p.files.insert(crate::pidfd::PidFd::open(info.clone(), 2), 0, true);
        let stored = fd.and_then(|fd| p.memory.write(pidfd_at, &(fd as i32).to_le_bytes()).map(|()| fd));
        match stored {
            Ok(fd) => Some(fd),
            Err(errno) => {
                child.abandon();
                return Err(errno);
            }
        }
    } else {
        None
    };
    let pid = match start_child(p, child, ctx, flags, stack, ptid, ctid, tls) {
        Ok(pid) => pid,
        Err(errno) => {
            if let Some(fd) = pidfd {
                let _ = p.files.close(fd);
            }
            return Err(errno);
        }
    };
    if flags & CLONE_VFORK != 0 {
        // The parent waits until the child runs exec or ends (or the
        // parent is killed, as Linux's killable wait).
        let killed = {
            let (me, thread) = (p.info.clone(), p.thread.clone());
            move || (me.pending.bits() | thread.pending.bits()) & crate::signal::bit(crate::signal::num::SIGKILL) != 0 || thread.must_exit()
        };
        info.exited.wait_until(|| (info.vfork_released() || killed()).then_some(()));
    }
    Ok(pid)
}

const CLONE_VFORK: u64 = 0x4000;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_DETACHED: u64 = 0x40_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
const CLONE_PARENT: u64 = 0x8000;
/// CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET.
const CLONE_NEW_NAMESPACES: u64 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// New namespaces need privilege (EPERM); this kernel has none to give
/// (EINVAL, as a Linux built without them).
fn check_namespaces(p: &Process, flags: u64) -> Result<(), Errno> {
    if flags & CLONE_NEW_NAMESPACES == 0 {
        return Ok(());
    }
    if !p.info.credentials().capable(crate::process::cap::SYS_ADMIN) { Err(Errno::EPERM) } else { Err(Errno::EINVAL) }
}

/// `unshare(flags)`: a private descriptor table (CLONE_FILES) or working
/// directory and umask (CLONE_FS); CLONE_SYSVSEM and the sharing flags
/// that only a single-threaded caller can drop are accepted; namespaces
/// as for `clone`.
pub(super) fn unshare(p: &mut Process, flags: u64) -> SysResult {
    const KNOWN: u64 = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_NEW_NAMESPACES | CLONE_NEWTIME;
    if flags & !KNOWN != 0 {
        return Err(Errno::EINVAL);
    }
    // Undoing thread sharing is only possible alone.
    if flags & (CLONE_THREAD | CLONE_VM | CLONE_SIGHAND) != 0 && p.info.thread_count() > 1 {
        return Err(Errno::EINVAL);
    }
    check_namespaces(p, flags & !CLONE_NEWTIME)?;
    if flags & CLONE_NEWTIME != 0 {
        return Err(if p.info.credentials().capable(crate::process::cap::SYS_ADMIN) { Errno::EINVAL } else { Errno::EPERM });
    }
    if flags & CLONE_FILES != 0 {
        p.files = p.files.fork_copy();
        p.info.set_view(&p.files, &p.fs);
    }
    if flags & CLONE_FS != 0 {
        p.fs = p.fs.fork_copy();
        p.info.set_view(&p.files, &p.fs);
    }
    Ok(0)
}

const CLONE_FS: u64 = 0x200;
const CLONE_SYSVSEM: u64 = 0x40000;
const CLONE_NEWTIME: u64 = 0x80;

#[allow(clippy::too_many_arguments)]
fn start_child(
    p: &mut Process,
    mut child: Process,
    ctx: &UserContext,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> SysResult {
    let pid = child.thread.tid;
    let mut child_ctx = ctx.clone();
    child_ctx.regs.rax = 0;
    if stack != 0 {
        child_ctx.regs.rsp = stack;
    }
    if flags & CLONE_SETTLS != 0 {
        child_ctx.regs.fs_base = tls;
    }
    let pid_bytes = pid.to_le_bytes();
    if flags & CLONE_CHILD_SETTID != 0 {
        child.set_child_tid = ctid;
    }
    // A bad address is ignored, as Linux's `put_user` there is.
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = p.memory.write(ptid, &pid_bytes);
        // A CLONE_VM child has its own copy here: it sees the id too.
        if flags & (CLONE_VM | CLONE_THREAD) == CLONE_VM {
            let _ = child.memory.write(ptid, &pid_bytes);
        }
    }
    if flags & CLONE_CHILD_CLEARTID != 0 {
        child.clear_child_tid = ctid;
    }
    // The child runs where its parent may (Linux's fork and clone).
    child.start(child_ctx, framekernel::task::current().affinity())?;
    Ok(u64::from(pid))
}

/// Most entries in argv or envp.
const MAX_STRINGS: usize = 8192;

fn string_array(p: &mut Process, mut addr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    let mut total = 0usize;
    loop {
        let mut word = [0u8; 8];
        p.memory.read(addr, &mut word)?;
        let ptr = u64::from_le_bytes(word);
        if ptr == 0 {
            return Ok(out);
        }
        let s = p.memory.read_c_string(ptr, tessera_elf::ARG_LIMIT)?;
        total += s.len() + 9;
        if out.len() >= MAX_STRINGS || total > tessera_elf::ARG_LIMIT {
            return Err(Errno::E2BIG);
        }
        out.push(s);
        addr = addr.checked_add(8).ok_or(Errno::EFAULT)?;
    }
}

pub(super) fn execve(p: &mut Process, ctx: &mut UserContext, path: u64, argv: u64, envp: u64) -> Result<Action, Errno> {
    let path = p.memory.read_c_string(path, 4096)?;
    exec_path(p, ctx, path, argv, envp)
}

const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_EMPTY_PATH: u64 = 0x1000;

/// `execveat(dirfd, path, argv, envp, flags)`: a relative path from the
/// directory `dirfd`, or (`AT_EMPTY_PATH` with an empty path) the file
/// `dirfd` itself; `AT_SYMLINK_NOFOLLOW` refuses a final link (ELOOP).
pub(super) fn execveat(p: &mut Process, ctx: &mut UserContext, dirfd: u64, path: u64, argv: u64, envp: u64, flags: u64) -> Result<Action, Errno> {
    if flags & !(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let name = p.memory.read_c_string(path, 4096)?;
    let full = if name.is_empty() {
        if flags & AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        p.files.get(dirfd)?.location().ok_or(Errno::EACCES)?.path().into_bytes()
    } else if name.starts_with(b"/") || dirfd as i32 == -100 {
        name
    } else {
        let dir = p.files.get(dirfd)?.location().ok_or(Errno::ENOTDIR)?;
        if dir.node().metadata().kind != tessera_vfs::FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        let mut full = dir.path().into_bytes();
        if full.last() != Some(&b'/') {
            full.push(b'/');
        }
        full.extend_from_slice(&name);
        full
    };
    if flags & AT_SYMLINK_NOFOLLOW != 0 {
        let text = core::str::from_utf8(&full).map_err(|_| Errno::ENOENT)?;
        let location = crate::fs::vfs()?.resolve_in(&p.fs.root(), &p.fs.cwd(), text, false, &super::fs::who(p))?;
        if location.node().metadata().kind == tessera_vfs::FileType::Symlink {
            return Err(Errno::ELOOP);
        }
    }
    exec_path(p, ctx, full, argv, envp)
}

fn exec_path(p: &mut Process, ctx: &mut UserContext, path: Vec<u8>, argv: u64, envp: u64) -> Result<Action, Errno> {
    let mut argv = string_array(p, argv)?;
    if argv.is_empty() {
        argv.push(Vec::new()); // an empty argv gets "" as argv[0] (Linux 5.18+)
    }
    let envp = string_array(p, envp)?;
    let envp_refs: Vec<&[u8]> = envp.iter().map(Vec::as_slice).collect();
    // The old image stays until the new one is fully loaded.
    let program = exec::load_path(&p.fs, &path, argv, &envp_refs, &p.info.credentials())?;
    // The point of no return: the other threads end before the new image
    // (and its credentials) takes over.
    p.end_other_threads()?;
    let (loaded, absolute, argv) = (program.loaded, program.exe, program.argv);
    // PR_SET_NO_NEW_PRIVS: set-id bits grant nothing; the ids stay, the
    // saved ones follow the effective ones as for any exec.
    let credentials = if p.info.prctl.lock().no_new_privs {
        // As an exec of a file without set-id bits: the ids stay, the
        // capability sets change as for any exec.
        let plain = tessera_vfs::Metadata { perm: 0, ..crate::files::device_stat(0, 0, 0) };
        p.info.credentials().after_exec(&plain)
    } else {
        program.credentials
    };
    p.info.change_credentials(|_| Ok(credentials))?;
    // Dumpable again unless this exec changed who the process is
    // (set-id: AT_SECURE), as Linux's begin_new_exec decides.
    let creds = p.info.credentials();
    p.info.prctl.lock().dumpable = creds.ruid == creds.euid && creds.rgid == creds.egid;
    // POSIX timers end with the old image; interval timers stay (Linux).
    crate::timers::remove_process(p.info.pid, true);
    super::ipc::reap_removed_segments();
    p.info.note_maxrss(&p.memory); // the old image's peak stays in ru_maxrss
    p.info.aio.lock().clear(); // AIO contexts belong to the old address space
    p.info.note_exec();
    // The new image's tables first: the old space, not loaded any more,
    // is then dropped without loading the kernel's tables in between
    // (each CR3 load costs QEMU its whole TLB).
    loaded.memory.activate();
    p.memory = loaded.memory;
    p.info.set_memory_view(&p.memory);
    let mut fresh = UserContext::new();
    fresh.regs.rip = loaded.entry;
    fresh.regs.rsp = loaded.sp;
    *ctx = fresh;
    p.signals.reset_for_exec();
    p.sync_signal_state();
    // A table shared with another process (clone(CLONE_FILES)) becomes
    // this process's own first (Linux's unshare_files), so closing the
    // close-on-exec descriptors does not close the other's.
    p.files = p.files.fork_copy();
    p.info.set_view(&p.files, &p.fs);
    p.files.close_on_exec();
    p.name = process::name_of(&alloc::string::String::from_utf8_lossy(&path));
    p.io_buffer = alloc::vec::Vec::new();
    p.thread.set_comm(p.name);
    p.clear_child_tid = 0;
    p.robust_list = 0;
    p.thread.set_robust_list(0);
    // /proc/self/exe is the absolute path, symbolic links resolved.
    *p.info.exe.lock() = absolute;
    p.info.release_vfork();
    *p.info.cmdline.lock() = argv.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
    Ok(Action::Replaced)
}

const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WCONTINUED: u64 = 8;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;

const WSTOPPED: u64 = 2; // waitid's name for WUNTRACED
const WEXITED: u64 = 4;
const WNOWAIT: u64 = 0x0100_0000;
const WNOTHREAD: u64 = 0x2000_0000;

/// What a waited-for child did.
#[derive(Clone, Copy)]
enum ChildEvent {
    Ended(process::Outcome),
    Stopped(u8),
    Continued,
}

/// Which children a wait selects.
#[derive(Clone, Copy)]
enum Select {
    Any,
    Pid(u32),
    Group(u32),
}

/// The common part of `wait4` and `waitid`: waits until a child that
/// `select` picks has an event `options` asks for (WEXITED, WSTOPPED,
/// WCONTINUED); `None` with WNOHANG when none has. WNOWAIT leaves the
/// event to be reported again. ECHILD when no child matches at all.
fn wait_child(p: &mut Process, select: Select, options: u64) -> Result<Option<(u32, ChildEvent)>, Errno> {
    let me = p.info.clone();
    let interrupted = p.interrupt_check();
    let keep = options & WNOWAIT != 0;
    me.children_changed.wait_until(|| {
        // Looked at before the children: a child's SIGCHLD is sent only
        // once its end is visible (`Process::exit`), so a wait that sees
        // the signal then finds the child, and returns it rather than
        // EINTR (a signal that comes after this look wakes the wait,
        // which looks again).
        let interrupted_now = interrupted();
        let children: Vec<_> = process::all()
            .into_iter()
            .filter(|c| c.ppid() == me.pid)
            .filter(|c| match select {
                Select::Any => true,
                Select::Pid(pid) => c.pid == pid,
                Select::Group(group) => c.pgid() == group,
            })
            .collect();
        if children.is_empty() {
            return Some(Err(Errno::ECHILD));
        }
        if options & WEXITED != 0
            && let Some(found) = children.iter().find_map(|c| c.outcome().map(|o| (c.pid, ChildEvent::Ended(o))))
        {
            return Some(Ok(Some(found)));
        }
        if options & WSTOPPED != 0 {
            let report = |c: &Arc<process::ProcessInfo>| if keep { c.peek_stop_report() } else { c.take_stop_report() };
            if let Some(found) = children.iter().find_map(|c| report(c).map(|s| (c.pid, ChildEvent::Stopped(s)))) {
                return Some(Ok(Some(found)));
            }
        }
        if options & WCONTINUED != 0 {
            let report = |c: &Arc<process::ProcessInfo>| if keep { c.peek_continue_report() } else { c.take_continue_report() };
            if let Some(pid) = children.iter().find(|c| report(c)).map(|c| c.pid) {
                return Some(Ok(Some((pid, ChildEvent::Continued))));
            }
        }
        if options & WNOHANG != 0 {
            return Some(Ok(None));
        }
        if interrupted_now {
            return Some(Err(Errno::EINTR));
        }
        None
    })
}

/// After a reported exit: the child's times join the parent's and the
/// zombie goes (unless WNOWAIT kept it).
fn reap_child(p: &Process, child: u32, event: ChildEvent, options: u64) {
    if matches!(event, ChildEvent::Ended(_)) && options & WNOWAIT == 0 {
        if let Some(c) = process::lookup(child) {
            p.info.add_waited_child(&c);
        }
        process::reap(child);
    }
}

fn write_child_rusage(p: &mut Process, child: u32, rusage: u64) -> Result<(), Errno> {
    if rusage == 0 {
        return Ok(());
    }
    let (user, total) = process::lookup(child).map_or((0, 0), |c| c.cpu_ns());
    p.memory.write(rusage, &super::misc::rusage_bytes(user, total, 0))
}

pub(super) fn wait4(p: &mut Process, pid: u64, status: u64, options: u64, rusage: u64) -> SysResult {
    if options & !(WNOHANG | WUNTRACED | WCONTINUED | WALL | WCLONE | WNOTHREAD) != 0 {
        return Err(Errno::EINVAL);
    }
    let select = match pid as i64 as i32 {
        -1 => Select::Any,
        0 => Select::Group(p.info.pgid()),
        n if n > 0 => Select::Pid(n as u32),
        // i32::MIN has no group: Linux's find_get_pid(-INT_MIN) finds none.
        i32::MIN => return Err(Errno::ESRCH),
        n => Select::Group(n.unsigned_abs()),
    };
    let Some((child, event)) = wait_child(p, select, options | WEXITED)? else { return Ok(0) };
    let word = match event {
        ChildEvent::Ended(outcome) => outcome.wait_status(),
        ChildEvent::Stopped(sig) => 0x7f | (u32::from(sig) << 8),
        ChildEvent::Continued => 0xffff,
    };
    if status != 0 {
        p.memory.write(status, &word.to_le_bytes())?;
    }
    write_child_rusage(p, child, rusage)?;
    reap_child(p, child, event, options);
    Ok(u64::from(child))
}

const P_ALL: u64 = 0;
const P_PID: u64 = 1;
const P_PGID: u64 = 2;
const P_PIDFD: u64 = 3;

/// `waitid(idtype, id, infop, options, rusage)`: the child's event as a
/// `siginfo_t` (SIGCHLD, CLD_* code, pid, real uid, status).
pub(super) fn waitid(p: &mut Process, idtype: u64, id: u64, infop: u64, options: u64, rusage: u64) -> SysResult {
    if options & !(WNOHANG | WNOWAIT | WEXITED | WSTOPPED | WCONTINUED | WALL | WCLONE | WNOTHREAD) != 0
        || options & (WEXITED | WSTOPPED | WCONTINUED) == 0
    {
        return Err(Errno::EINVAL);
    }
    let id = id as u32;
    let select = match idtype {
        P_ALL => Select::Any,
        P_PID if (id as i32) > 0 => Select::Pid(id),
        P_PGID if id == 0 => Select::Group(p.info.pgid()),
        P_PGID if (id as i32) > 0 => Select::Group(id),
        P_PIDFD => Select::Pid(p.files.get(u64::from(id))?.as_pidfd().ok_or(Errno::EINVAL)?.target().pid),
        _ => return Err(Errno::EINVAL),
    };
    let found = wait_child(p, select, options)?;
    // signo, errno, code, pid, uid, status: all zero when WNOHANG found nothing.
    let (child, signo, code, uid, status) = match found {
        None => (0, 0, 0, 0, 0),
        Some((child, event)) => {
            let uid = process::lookup(child).map_or(0, |c| c.credentials().ruid);
            let (code, status) = match event {
                ChildEvent::Ended(process::Outcome::Exited(code)) => (CLD_EXITED, i32::from(code)),
                ChildEvent::Ended(process::Outcome::Killed(sig)) => (CLD_KILLED, i32::from(sig)),
                ChildEvent::Ended(process::Outcome::Dumped(sig)) => (CLD_DUMPED, i32::from(sig)),
                ChildEvent::Stopped(sig) => (CLD_STOPPED, i32::from(sig)),
                ChildEvent::Continued => (CLD_CONTINUED, i32::from(crate::signal::num::SIGCONT)),
            };
            (child, i32::from(crate::signal::num::SIGCHLD), code, uid, status)
        }
    };
    if infop != 0 {
        let mut info = [0u8; 28];
        for (at, word) in [(0, signo as u32), (4, 0), (8, code as u32), (16, child), (20, uid), (24, status as u32)] {
            info[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        p.memory.write(infop, &info)?;
    }
    if let Some((child, event)) = found {
        write_child_rusage(p, child, rusage)?;
        reap_child(p, child, event, options);
    }
    Ok(0)
}

const CLD_EXITED: i32 = 1;
const CLD_KILLED: i32 = 2;
const CLD_DUMPED: i32 = 3;
const CLD_STOPPED: i32 = 5;
const CLD_CONTINUED: i32 = 6;

/// `setpgid(pid, pgid)` with Linux's rules: the caller or one of its
/// children (ESRCH) that has not run `exec` (EACCES), in the caller's
/// session and not its leader (EPERM), into its own new group or an
/// existing group of the same session (EPERM).
pub(super) fn setpgid(p: &mut Process, pid: u64, pgid: u64) -> SysResult {
    let (pid, pgid) = (pid as i32, pgid as i32);
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let target = if pid == 0 { p.info.clone() } else { process::lookup(pid as u32).filter(|_| pid > 0).ok_or(Errno::ESRCH)? };
    if target.pid != p.info.pid {
        if target.ppid() != p.info.pid {
            return Err(Errno::ESRCH);
        }
        if target.has_execed() {
            return Err(Errno::EACCES);
        }
        if target.sid() != p.info.sid() {
            return Err(Errno::EPERM);
        }
    }
    if target.pid == target.sid() {
        return Err(Errno::EPERM); // a session leader keeps its group
    }
    let group = if pgid == 0 { target.pid } else { pgid as u32 };
    if group != target.pid {
        let session = p.info.sid();
        let exists = process::all().iter().any(|q| q.pgid() == group && q.sid() == session);
        if !exists {
            return Err(Errno::EPERM);
        }
    }
    target.set_pgid(group);
    Ok(0)
}

pub(super) fn getpgid(p: &mut Process, pid: u64) -> SysResult {
    let target = if pid == 0 { p.info.clone() } else { process::lookup(pid as u32).ok_or(Errno::ESRCH)? };
    Ok(u64::from(target.pgid()))
}

pub(super) fn getsid(p: &mut Process, pid: u64) -> SysResult {
    let target = if pid == 0 { p.info.clone() } else { process::lookup(pid as u32).ok_or(Errno::ESRCH)? };
    Ok(u64::from(target.sid()))
}

pub(super) fn setsid(p: &mut Process) -> SysResult {
    let me = p.info.pid;
    if process::all().iter().any(|other| other.pid != me && other.pgid() == me) || p.info.pgid() == me {
        return Err(Errno::EPERM);
    }
    p.info.set_sid();
    Ok(u64::from(me))
}

/// Tasks sleeping until a deadline (sleeps and futex waits with timeouts).
pub(crate) static SLEEPERS: WaitQueue = WaitQueue::new();
/// Earliest deadline (ns since boot) any sleeper waits for.
pub(crate) static NEXT_WAKE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Tasks that wait with a deadline on a queue of their own (sleeps,
/// futex and signal waits): the tick wakes each one once, when its
/// deadline has passed, and no other task. Keyed by (deadline, sequence
/// number); the task, until the tick has woken it.
static ALARMS: framekernel::sync::SpinLock<alloc::collections::BTreeMap<(u64, u64), AlarmTask>> =
    framekernel::sync::SpinLock::new(alloc::collections::BTreeMap::new());

/// The task an alarm wakes, until it has woken it.
type AlarmTask = Option<Arc<framekernel::task::Task>>;
static ALARM_SEQ: AtomicU64 = AtomicU64::new(0);

/// A wake-up of the current task at a deadline, for as long as it lives
/// (made before waiting, dropped after).
pub(crate) struct Alarm((u64, u64));

impl Alarm {
    /// Wakes the current task at `deadline` (ns since boot); none for
    /// `u64::MAX`.
    pub(crate) fn new(deadline: u64) -> Option<Self> {
        if deadline == u64::MAX {
            return None;
        }
        let key = (deadline, ALARM_SEQ.fetch_add(1, Ordering::Relaxed));
        ALARMS.lock().insert(key, Some(framekernel::task::current()));
        NEXT_WAKE.fetch_min(deadline, Ordering::Relaxed);
        Some(Self(key))
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        ALARMS.lock().remove(&self.0);
    }
}

/// Timer tick: once the earliest deadline has passed, wakes the tasks
/// whose alarms are due and the pollers on `SLEEPERS`.
pub fn sleep_tick(_tick: u64) {
    crate::timers::tick();
    super::ipc::tick();
    let now = framekernel::time::now_ns();
    if now >= NEXT_WAKE.load(Ordering::Relaxed) {
        NEXT_WAKE.store(u64::MAX, Ordering::Relaxed);
        SLEEPERS.wake_all();
        let mut alarms = ALARMS.lock();
        // One wake each: past its deadline, a waiter's check never sleeps
        // again (the check and the sleep run with interrupts off).
        for (_, task) in alarms.range_mut(..(now.saturating_add(1), 0)) {
            if let Some(task) = task.take() {
                tessera_sched::wake(&task);
            }
        }
        // Due alarms stay until their task drops them; the next wake-up is
        // the first one still ahead.
        if let Some(((next, _), _)) = alarms.range((now.saturating_add(1), 0)..).next() {
            NEXT_WAKE.fetch_min(*next, Ordering::Relaxed);
        }
    }
}

/// Puts the current kernel task to sleep for `ns` nanoseconds (a kernel
/// task's timed wait: no signals).
pub fn kernel_sleep(ns: u64) {
    let deadline = framekernel::time::now_ns().saturating_add(ns);
    let _alarm = Alarm::new(deadline);
    let queue = WaitQueue::new();
    queue.wait_until(|| (framekernel::time::now_ns() >= deadline).then_some(()));
}

/// Sleeps until `deadline` (ns since boot); EINTR with the time left when
/// a signal arrives first. Only the alarm and signals wake it.
fn sleep_until(p: &Process, deadline: u64) -> Result<(), (Errno, u64)> {
    let interrupted = p.interrupt_check();
    let _alarm = Alarm::new(deadline);
    let queue = WaitQueue::new();
    queue.wait_until(|| {
        let now = framekernel::time::now_ns();
        if now >= deadline {
            return Some(Ok(()));
        }
        if interrupted() {
            return Some(Err((Errno::EINTR, deadline - now)));
        }
        None
    })
}

/// Reads a `struct timespec` as nanoseconds; EINVAL for a negative or
/// out-of-range value (shared by sleeps, futex, poll and sigtimedwait).
pub(super) fn read_timespec(p: &Process, addr: u64) -> Result<u64, Errno> {
    let mut ts = [0u8; 16];
    p.memory.read(addr, &mut ts)?;
    let sec = i64::from_le_bytes(ts.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    let nsec = i64::from_le_bytes(ts.get(8..).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64))
}

fn write_timespec(p: &mut Process, addr: u64, ns: u64) -> Result<(), Errno> {
    let mut ts = [0u8; 16];
    ts[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    ts[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    p.memory.write(addr, &ts)
}

pub(super) fn nanosleep(p: &mut Process, req: u64, rem: u64) -> SysResult {
    let duration = read_timespec(p, req)?;
    let deadline = framekernel::time::now_ns().saturating_add(duration);
    sleep_for_call(p, deadline, rem)
}

/// Sleeps until `deadline`; on EINTR writes the time left to `rem` (if
/// set) and keeps the deadline for `restart_syscall`.
fn sleep_for_call(p: &mut Process, deadline: u64, rem: u64) -> SysResult {
    match sleep_until(p, deadline) {
        Ok(()) => Ok(0),
        Err((errno, left)) => {
            if rem != 0 {
                write_timespec(p, rem, left)?;
            }
            if errno == Errno::EINTR {
                p.restart_sleep = Some((deadline, rem));
            }
            Err(errno)
        }
    }
}

/// `restart_syscall`: the rest of a sleep that a stop (or a signal with no
/// handler) interrupted, as the kernel arranges it.
pub(super) fn restart_syscall(p: &mut Process) -> SysResult {
    let (deadline, rem) = p.restart_sleep.take().ok_or(Errno::EINTR)?;
    sleep_for_call(p, deadline, rem)
}

const TIMER_ABSTIME: u64 = 1;

pub(super) fn clock_nanosleep(p: &mut Process, clock: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    let clock = match clock {
        0 | 1 | 7 => clock,
        8 => 0, // CLOCK_REALTIME_ALARM: nothing here suspends
        9 => 7, // CLOCK_BOOTTIME_ALARM
        4..=6 => return Err(Errno::EOPNOTSUPP), // raw and coarse clocks cannot sleep
        _ => return Err(Errno::EINVAL),         // CPU-time sleeps are not supported
    };
    let value = read_timespec(p, req)?;
    let now = framekernel::time::now_ns();
    let deadline = if flags & TIMER_ABSTIME != 0 {
        // Absolute: convert realtime to the monotonic clock when needed.
        if clock == 0 { value.saturating_sub(framekernel::time::realtime_ns().saturating_sub(now)) } else { value }
    } else {
        now.saturating_add(value)
    };
    sleep_for_call(p, deadline, if flags & TIMER_ABSTIME == 0 { rem } else { 0 })
}
