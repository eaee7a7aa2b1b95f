#!/usr/bin/env python3
"""Writes the recorded results and docs/ltp.md from two runs of run.sh.

Usage: report.py LINUX_OUT TESSERA_OUT [--doc docs/ltp.md] [--info K=V ...]
                 [--notes FILE]
  LINUX_OUT, TESSERA_OUT: run.sh output directories (results.txt, boot-*.log),
  or "DIR,RERUN_DIR,...": a later directory's results (a re-run of some
  tests) replace the earlier ones
Writes tests/ltp/results-linux.txt and results-tessera.txt ("name RESULT"
lines, list order) and the document. --info adds a "K: V" line to the
document's header (LTP commit, Tessera commit, ...); --notes puts FILE's
text (hand-written findings) before the counts.

A test's reason is its first TFAIL/TBROK (else TWARN) line. Tessera's
non-passing tests are grouped into clusters by the rules in CLUSTERS (first
match wins; a rule may look at the test name); tests no rule takes are
listed under "other".
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# (title, regex on the reason line, regex on the test name or None)
CLUSTERS = [
    ("Sockets: socket() is ENOSYS (no AF_INET/AF_UNIX sockets)",
     r"socket\(|server socket failed|socketpair|\bsocket\b.*ENOSYS|ENOTSOCK|errno 38 \(expected 9\)|bring up loop back", None),
    ("Shared memory between processes: FUTEX_WAKE on a MAP_SHARED page wakes no waiter in another process, "
     "and two MAP_SHARED mappings of one file made by different processes (after exec) do not share pages; "
     "LTP's checkpoints time out and exec'd children's results are lost",
     r"tst_checkpoint_wait.*ETIMEDOUT|Test haven't reported results|tst_reinit|LTP_IPC_PATH|checkpoint|futex_wake\(\)", None),
    ("POSIX record locks and OFD locks: fcntl F_SETLK/F_SETLKW/F_GETLK/F_OFD_* fail (EINVAL)",
     r"F_SETLK|F_GETLK|F_SETLKW|lock failed|didn't set .* lock|fcntl on file failed|errno =22|fcntl\(\) failed|fcntl\(\d+,3[678],", r"^fcntl"),
    ("Pipe size: fcntl F_GETPIPE_SZ/F_SETPIPE_SZ unsupported (EINVAL)", r"PIPE_SZ|pipe-max-size", None),
    ("Other fcntl commands unsupported (EINVAL): leases F_SETLEASE, F_SETSIG, F_GETOWN_EX", r"F_SETLEASE|F_SETSIG|f_owner_ex|lease-break-time", None),
    ("Read-only mounts are not enforced (EROFS expected)", r"errno=30|EROFS", None),
    ("Permission checks: what an unprivileged user (nobody) or a file's mode forbids is allowed (EACCES/EPERM expected)",
     r"succeeded unexpectedly|as nobody succeeded|succeeded$|without permissions succeeded|as root succeeded|call succeeded|shouldn't be executed|expected EACCES|expected EPERM: SUCCESS|errno:13|13 - EACCES|sueeeeded unexpectedly|succeeds unexpectedly|succeded unexpectedly", None),
    ("Credentials on new files and chown: a new file is owned by uid/gid 0, not the caller's fsuid/fsgid; no setgid-directory group inheritance; chown does not clear S_ISUID/S_ISGID",
     r"wrong owner|wrong mode|Incorrect group|st_gid|st_uid|inherit GID|owner ID|pw_gid|pw_uid|!= user_id|setfsgid\(\) returned|Child process returned TFAIL", None),
    ("*at() calls: the directory file descriptor is not used (ENOTDIR, or EBADF for an absolute path with dirfd -1)",
     r"ENOTDIR|Not a directory|errno=20|faccessat2\(-1", None),
    ("Priorities: nice/setpriority/getpriority do not change, check or report the priority", r"nice\(|[Pp]riority", r"^(nice|getpriority|setpriority)"),
    ("Core dumps: no core dump and no core-dump bit in the wait status (abort, SIGQUIT)", r"dump core|core dump", None),
    ("Signal waits: sigsuspend does not return (TIMEOUT); in the sigwait/sigtimedwait/sigwaitinfo tests the child the test signals is already gone (kill: ESRCH)",
     r".", r"^(rt_)?sig(suspend|wait|timedwait|waitinfo)\d"),
    ("prctl options unsupported (EINVAL): PR_SET_PDEATHSIG, PR_SET_TIMERSLACK, PR_SET_TSC, SECCOMP_MODE_STRICT; arch_prctl ARCH_SET_CPUID", r"prctl", None),
    ("Missing files under /proc or /sys", r"'/proc/|'/sys/|/proc/[a-z_/0-9]+|/sys/[a-z_/0-9]+|pagemap", None),
    ("Missing device files (/dev/userfaultfd, ptys)", r"/dev/|pty", None),
    ("FIFOs: open() of a FIFO with O_RDWR, or O_RDONLY|O_NONBLOCK and no writer, gives ENXIO", r"fifo.*ENXIO|ENXIO|No such device or address", None),
    ("System calls that return ENOSYS (FAIL/BROK, or TCONF where LTP asks with tst_syscall: \"syscall(N) __NR_x not supported\")",
     r"ENOSYS|Function not implemented|- 38 :|__NR_\w+ not supported|errno 38|error:38|Test not supported on kernel/platform", None),
    ("Kernel features LTP finds missing and reports as TCONF",
     r"TCONF: .*(not configured|not supported|not implemented|doesn't support|doesn't have|not set\?|is not supported)", None),
    ("Memory mapping semantics (mmap/madvise/mremap/mlock: SIGBUS, zero-fill, MAP_FIXED_NOREPLACE, locking)", r".", r"^(mmap|madvise|mremap|mlock|munlock|msync|mincore|mprotect)"),
]


def read_results(path):
    res = {}
    for line in open(path):
        p = line.split()
        if len(p) >= 2:
            res[p[0]] = (p[1], p[2] if len(p) > 2 else "")
    return res


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def read_reasons(outdir):
    """First TFAIL/TBROK line (else TWARN, else the last line) of each test."""
    reasons = {}
    logs = sorted(f for f in os.listdir(outdir) if f.startswith("boot-") and f.endswith(".log"))
    for f in logs:
        cur = None
        lines = []
        for raw in open(os.path.join(outdir, f), errors="replace"):
            line = ANSI.sub("", raw.rstrip("\r\n").replace("\r", ""))
            if line.startswith("LTP-START "):
                cur, lines = line.split()[1], []
                continue
            if cur is None:
                continue
            if line.startswith("LTP-RESULT "):
                reasons[cur] = pick(lines)
                cur = None
                continue
            lines.append(line)
        if cur is not None:  # the boot ended during this test
            reasons[cur] = pick(lines) or "(no output)"
            last = [l for l in lines if l.strip()]
            if last:
                reasons[cur] = pick(lines) or last[-1]
    return reasons


def pick(lines):
    for key in ("TFAIL", "TBROK"):
        for l in lines:
            if key in l and "Remaining cases" not in l:
                return clean(l)
    for l in lines:
        if "TWARN" in l:
            return clean(l)
    for l in lines:
        if "Test timeouted" in l or "Killed" in l or "Segmentation" in l:
            return clean(l)
    for l in lines:
        if "TCONF" in l and "Remaining cases" not in l:
            return clean(l)
    return ""


def clean(l):
    l = l.strip()
    # "file.c:NN: TFAIL: msg" -> "TFAIL: msg"; old API "name N TFAIL : file.c:NN: msg"
    l = re.sub(r"^[\w./-]+\.c:\d+: ", "", l)
    m = re.match(r"^\S+\s+\d+\s+(T[A-Z]+)\s+:\s+(?:[\w.]+\.c:\d+:\s+)?(.*)$", l)
    if m:
        l = "%s: %s" % (m.group(1), m.group(2))
    return l[:200]


def cluster_of(name, reason):
    for title, rx, nrx in CLUSTERS:
        if nrx and not re.search(nrx, name):
            continue
        if reason and re.search(rx, reason):
            return title
    return None


def main():
    args = sys.argv[1:]
    doc = os.path.join(REPO, "docs", "ltp.md")
    info = []
    notes = None
    pos = []
    i = 0
    while i < len(args):
        if args[i] == "--doc":
            doc = args[i + 1]; i += 2
        elif args[i] == "--notes":
            notes = args[i + 1]; i += 2
        elif args[i] == "--info":
            info.append(args[i + 1]); i += 2
        else:
            pos.append(args[i]); i += 1
    lin_dir, tes_dir = pos
    # "DIR,DIR2": a later directory (a re-run of some tests) overrides.
    lin, tes, lin_why, tes_why = {}, {}, {}, {}
    for dirs, res, why in ((lin_dir, lin, lin_why), (tes_dir, tes, tes_why)):
        for d in dirs.split(","):
            res.update(read_results(os.path.join(d, "results.txt")))
            why.update(read_reasons(d))

    order = []
    for line in open(os.path.join(HERE, "syscalls.list")):
        if line.strip() and not line.startswith("#"):
            order.append(line.split()[0])
    names = [n for n in order if n in lin or n in tes]

    for path, res in (("results-linux.txt", lin), ("results-tessera.txt", tes)):
        with open(os.path.join(HERE, path), "w") as f:
            for n in names:
                if n in res:
                    f.write("%s %s\n" % (n, res[n][0]))

    kinds = ["PASS", "FAIL", "BROK", "TCONF", "TIMEOUT", "HANG", "DIED", "SKIP", "NOTRUN"]

    def count(res):
        c = {}
        for n in names:
            if n in res:
                c[res[n][0]] = c.get(res[n][0], 0) + 1
        return c

    lc, tc = count(lin), count(tes)
    out = []
    w = out.append
    w("# LTP system-call tests: Tessera and Linux")
    w("")
    w("LTP's system-call tests (`testcases/kernel/syscalls`, the entries of")
    w("`runtest/syscalls` in [tests/ltp/syscalls.list](../tests/ltp/syscalls.list))")
    w("run on Tessera and on Debian's Linux kernel in the same QEMU: q35,")
    w("`-cpu max`, TCG, one CPU, 2 GiB. How to run them again:")
    w("[tests/ltp/README.md](../tests/ltp/README.md); `tests/ltp/compare.sh`")
    w("compares a new Tessera run with this one.")
    w("")
    for kv in info:
        k, _, v = kv.partition("=")
        w("- %s: %s" % (k, v))
    w("- Tests run: %d (of %d list entries)" % (len(names), len(order)))
    w("")
    if notes:
        w(open(notes).read().rstrip())
        w("")
    w("## Counts")
    w("")
    w("| result | Linux | Tessera |")
    w("| --- | ---: | ---: |")
    for k in kinds:
        if lc.get(k) or tc.get(k):
            w("| %s | %d | %d |" % (k, lc.get(k, 0), tc.get(k, 0)))
    w("| total | %d | %d |" % (sum(lc.values()), sum(tc.values())))
    w("")
    both = sum(1 for n in names if lin.get(n, ("",))[0] == "PASS" and tes.get(n, ("",))[0] == "PASS")
    lonly = [n for n in names if lin.get(n, ("",))[0] == "PASS" and tes.get(n, ("",))[0] != "PASS"]
    tonly = [n for n in names if tes.get(n, ("",))[0] == "PASS" and lin.get(n, ("",))[0] != "PASS"]
    w("PASS on both: %d. PASS on Linux only: %d. PASS on Tessera only: %d%s." % (
        both, len(lonly), len(tonly), (" (" + ", ".join(tonly) + ")") if tonly and len(tonly) <= 20 else ""))
    w("")
    w("Results: PASS (exit 0), TCONF (exit 32: not applicable here, e.g. a")
    w("missing kernel feature LTP checks for first), FAIL (a TFAIL or TWARN),")
    w("BROK (a TBROK: the test could not set up or check; or killed by a")
    w("signal), TIMEOUT (still running after 120 s), HANG (the whole guest")
    w("stopped: no output for 210 s), DIED (the boot ended during the test).")
    w("")

    # Tessera's failures in clusters.
    w("## Tessera: why tests do not pass, in clusters")
    w("")
    w("Tests that PASS on Linux but not on Tessera, grouped by the first")
    w("TFAIL/TBROK (else TWARN, else TCONF) line of their output")
    w("(tests/ltp/report.py's rules; the")
    w("full output is in the run's boot-NNN.log files). Tests that do not")
    w("pass on Linux either are in the table below only.")
    w("")
    groups = {}
    for n in lonly:
        why = tes_why.get(n, "")
        title = cluster_of(n, why) or "Other"
        groups.setdefault(title, []).append(n)
    titles = [t for t, _, _ in CLUSTERS if t in groups] + (["Other"] if "Other" in groups else [])
    titles.sort(key=lambda t: (t == "Other", -len(groups[t])))
    for t in titles:
        w("### %s (%d)" % (t, len(groups[t])))
        w("")
        if t.startswith("Missing files under /proc"):
            # One line per missing file.
            paths = {}
            for n in groups[t]:
                m = re.search(r"(/(?:proc|sys)/[\w/.-]*|pagemap)", tes_why.get(n, ""))
                key = re.sub(r"/\d+(/|$)", r"/PID\1", m.group(1)) if m else "?"
                paths.setdefault(key, []).append(n)
            for k in sorted(paths, key=lambda k: (-len(paths[k]), k)):
                w("- `%s`: %s" % (k, ", ".join(paths[k])))
            w("")
            continue
        if t.startswith("System calls that return ENOSYS"):
            # One line per system call: which tests need it.
            calls = {}
            for n in groups[t]:
                calls.setdefault(enosys_call(n, tes_why.get(n, "")), []).append(n)
            for c in sorted(calls):
                w("- `%s`: %s" % (c, ", ".join(calls[c])))
            w("")
            continue
        for n in groups[t]:
            r = tes[n][0] if n in tes else "-"
            w("- `%s` %s: %s" % (n, r, md(tes_why.get(n, "") or "(no TFAIL/TBROK line)")))
        w("")

    w("## Linux: tests that do not pass")
    w("")
    w("On the reference kernel, in this VM: TCG's slow timing (\"slept for too")
    w("long\", the race tests bind06 and setsockopt06 past 120 s), a module list")
    w("the archive lacks (fsetxattr02), or checks LTP 20260529 makes of newer")
    w("kernels than 6.1 (mount08, ioprio_set03, time namespaces).")
    w("")
    for n in names:
        r = lin.get(n, ("-",))[0]
        if r not in ("PASS", "TCONF"):
            w("- `%s` %s: %s" % (n, r, md(lin_why.get(n, "") or "(no TFAIL/TBROK line)")))
    w("")

    w("## Every test")
    w("")
    w("| test | Linux | Tessera | Tessera's reason (first TFAIL/TBROK/TWARN, or TCONF where Linux passes) |")
    w("| --- | --- | --- | --- |")
    for n in names:
        l = lin.get(n, ("-",))[0]
        t = tes.get(n, ("-",))[0]
        why = tes_why.get(n, "") if t != "PASS" and (t != "TCONF" or l == "PASS") else ""
        w("| %s | %s | %s | %s |" % (n, l, t, md(why).replace("|", "\\|")))
    w("")
    with open(doc, "w") as f:
        f.write("\n".join(out))


def enosys_call(name, reason):
    """The system call an ENOSYS line names, else the test's name stem."""
    m = re.search(r"__NR_(\w+)", reason)
    if m:
        return m.group(1)
    m = re.search(r"([a-z_][a-z_0-9]*)\(", reason)
    if m and m.group(1) not in ("fail", "failed"):
        return re.sub(r"^(tst_|safe_|do_)", "", m.group(1))
    m = re.match(r"T[A-Z]+: (?:[\w-]+\.c:\d+: )?([a-z_0-9]+) (?:failed|system call|with)", reason)
    if m:
        return m.group(1)
    return re.sub(r"(_64|_16)$", "", re.sub(r"\d+(_64|_16)?$", "", name)).rstrip("_") + " (test name)"


def md(s):
    return s.replace("`", "'").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    main()
