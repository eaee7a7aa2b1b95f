#!/usr/bin/env python3
"""Writes hostile and odd program files for userspace/tests/exec.c.

Usage: make-bad-programs.py GOOD_STATIC_ELF OUTPUT_DIR [DYNAMIC_ELF]

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

# A dynamically linked program whose interpreter (PT_INTERP) is missing,
# or not an ELF file. The paths are relative: Linux resolves them from the
# working directory, which is testdata's parent for exec.c on both kernels.
if len(sys.argv) > 3:
    dynamic = bytearray(open(sys.argv[3], "rb").read())
    (dphoff,) = struct.unpack_from("<Q", dynamic, 0x20)
    dphentsize, dphnum = struct.unpack_from("<HH", dynamic, 0x36)
    for i in range(dphnum):
        at = dphoff + i * dphentsize
        if struct.unpack_from("<I", dynamic, at)[0] == 3:  # PT_INTERP
            (offset,) = struct.unpack_from("<Q", dynamic, at + 8)
            (size,) = struct.unpack_from("<Q", dynamic, at + 32)
            for name, interp in [("interp-missing", b"testdata/no-such-ld.so"), ("interp-not-elf", b"testdata/not-elf")]:
                assert len(interp) < size
                copy = bytearray(dynamic)
                copy[offset : offset + size] = interp + bytes(size - len(interp))
                write(name, copy)
