#!/usr/bin/env python3
"""Writes tests/ltp/syscalls.list from an LTP build.

Usage: make-list.py LTP_SRC LTP_BUILD > tests/ltp/syscalls.list

Every entry of LTP_SRC/runtest/syscalls ("name command args") is kept, in
order, when its program was built (LTP_BUILD/testcases/bin/COMMAND exists),
unless it is meaningless in the test VM: one CPU, no block device, no
network device, no kernel modules. Those are written as comments, each with
its reason. The requirements come from LTP's own test metadata
(LTP_SRC/metadata/ltp.json, `make -C metadata`), plus a few tests named
below whose needs the metadata does not show.
"""
import json
import os
import re
import subprocess
import sys

# Needs the metadata does not show (test name -> reason).
BY_NAME = {
    "delete_module01": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "delete_module02": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "delete_module03": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "finit_module01": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "finit_module02": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "init_module01": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "init_module02": "needs LTP's test .ko kernel module (modules not built, no module loading in the VM)",
    "madvise11": "loads the hwpoison_inject kernel module (modprobe)",
    "ioctl_sg01": "needs a SCSI disk (/dev/sg*)",
    "ioctl03": "needs the TUN network device (/dev/net/tun)",
    "ioctl02": "shell wrapper (test_ioctl) running ioctl02 on the virtual consoles /dev/ttyN (the VM has a serial console only); needs LTP's old shell API commands (tools/apicmds)",
    "accept02": "joins a multicast group (MCAST_JOIN_GROUP): needs a network interface besides loopback",
    "keyctl05": "loads the dns_resolver kernel module (modprobe)",
    "ioctl_loop01": "needs the loop block device driver",
    "ioctl_loop02": "needs the loop block device driver",
    "ioctl_loop03": "needs the loop block device driver",
    "ioctl_loop04": "needs the loop block device driver",
    "ioctl_loop05": "needs the loop block device driver",
    "ioctl_loop06": "needs the loop block device driver",
    "ioctl_loop07": "needs the loop block device driver",
}


def busybox_applets():
    try:
        out = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return set()
    return set(out.split())


old_api_device = set()


def find_old_api_device_tests(src):
    """Old-API tests that get a block device (tst_acquire_device, tst_mkfs)."""
    top = os.path.join(src, "testcases", "kernel", "syscalls")
    for d, _, files in os.walk(top):
        for f in files:
            if f.endswith(".c"):
                text = open(os.path.join(d, f), errors="replace").read()
                if re.search(r"tst_acquire_device|tst_mkfs\(", text):
                    old_api_device.add(f[:-2])


def reason(name, cmd, meta, bindir, applets):
    if not os.path.isfile(os.path.join(bindir, cmd)):
        return "not built: %s is not under testcases/kernel/syscalls" % cmd
    if name in BY_NAME:
        return BY_NAME[name]
    # The metadata names a test by its source file: fstatfs01_64 is fstatfs01.
    m = meta.get(cmd) or meta.get(re.sub(r"_(64|16)$", "", cmd), {})
    if any(m.get(k) for k in ("needs_device", "mount_device", "format_device", "all_filesystems")):
        return "needs a block device (LTP makes a loop device and mkfs's it); the VM has none"
    # Tests of the old API are not in the metadata: look at their source.
    if not m and cmd in old_api_device:
        return "needs a block device (tst_acquire_device: a loop device, mkfs); the VM has none"
    if int(m.get("min_cpus", "1")) > 1:
        return "needs %s CPUs; the VM has one" % m["min_cpus"]
    missing = []
    for c in m.get("needs_cmds", []):
        if c.get("optional"):
            continue
        prog = c["cmd"].split()[0]
        if prog not in applets:
            missing.append(prog)
    if missing:
        return "needs command(s) not in busybox: %s" % ", ".join(missing)
    return None


def main():
    src, build = sys.argv[1], sys.argv[2]
    bindir = os.path.join(build, "testcases", "bin")
    meta = json.load(open(os.path.join(src, "metadata", "ltp.json")))["tests"]
    applets = busybox_applets()
    find_old_api_device_tests(src)
    kept = excluded = 0
    body = []
    for line in open(os.path.join(src, "runtest", "syscalls")):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        name, cmd = parts[0], parts[1]
        why = reason(name, cmd, meta, bindir, applets)
        if why:
            body.append("# %s  # %s" % (line, why))
            excluded += 1
        else:
            body.append(line)
            kept += 1
    commit = subprocess.run(["git", "-C", src, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("# LTP system-call tests run on Tessera and on Linux (tests/ltp/run.sh).")
    print("# Made by tests/ltp/make-list.py from runtest/syscalls of LTP %s." % commit)
    print("# Format: one runtest line, \"name command args\"; an excluded entry is")
    print("# commented out as \"# name command args  # reason\".")
    print("# %d entries kept, %d excluded." % (kept, excluded))
    for b in body:
        print(b)


if __name__ == "__main__":
    main()
