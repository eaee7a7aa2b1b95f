#!/usr/bin/env python3
"""Writes hostile and odd program files for userspace/tests/exec.c.

Usage: make-bad-programs.py GOOD_STATIC_ELF OUTPUT_DIR

Each file is a damaged copy of a good static x86_64 program (or not a
program at all); exec.c checks that execve refuses each one cleanly.
"""
import os
import struct
import sys

good_path, out = sys.argv[1], sys.argv[2]
good = bytearray(open(good_path, "rb").read())
os.makedirs(out, exist_ok=True)

(phoff,) = struct.unpack_from("<Q", good, 0x20)
phentsize, phnum = struct.unpack_from("<HH", good, 0x36)
loads = [phoff + i * phentsize for i in range(phnum) if struct.unpack_from("<I", good, phoff + i * phentsize)[0] == 1]


def write(name, data):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755)


write("not-elf", b"this is not a program\n")
write("truncated", good[:200])
copy = bytearray(good)
struct.pack_into("<H", copy, 0x12, 183)  # EM_AARCH64
write("wrong-machine", copy)
copy = bytearray(good)
struct.pack_into("<Q", copy, 0x20, 0x7FFFFFFFFFF0)  # program headers far outside
write("bad-phoff", copy)
copy = bytearray(good)
struct.pack_into("<Q", copy, loads[-1] + 40, 1 << 46)  # p_memsz of the last PT_LOAD: 64 TiB
write("huge-memsz", copy)
copy = bytearray(good)
first_vaddr = struct.unpack_from("<Q", copy, loads[0] + 16)[0]
first_offset = struct.unpack_from("<Q", copy, loads[0] + 8)[0]
struct.pack_into("<Q", copy, loads[-1] + 16, first_vaddr)  # last PT_LOAD on top of the first
struct.pack_into("<Q", copy, loads[-1] + 8, first_offset)
write("overlap", copy)
copy = bytearray(good)
struct.pack_into("<Q", copy, 0x18, 0)  # entry point 0
write("entry-zero", copy)
copy = bytearray(good)
struct.pack_into("<Q", copy, loads[0] + 32, 1 << 40)  # p_filesz past the end of the file
write("filesz-past-end", copy)
