//! The hostile build (`procfs-hostile.cell`, for the kernel's regression
//! test `tests/tests/procfs.rs`): a procfs cell that lies in every way a
//! red-team review tried, to show that the kernel, not the cell, decides
//! what a caller may do. It serves the ordinary tree, except that:
//!
//! - every node it reports is widened (files `0o106777`, set-id and
//!   writable by all; directories `0o041777`), and `/proc/hostile_suid`
//!   is a set-uid script;
//! - `/proc/hostile_leak` asks for the memory map and descriptor 0 of
//!   process 1 whoever reads it, and renders what it was given;
//! - `/proc/hostile_fd1` is process 1's descriptor 0 (a magic link);
//! - `/proc/hostile_dots`, `hostile_long` and `hostile_twice` list `.`,
//!   a 300-byte name and one name twice; `hostile_many` lists 2^17 names;
//! - `/proc/hostile_need` asks for facts forever;
//! - a write to any `coredump_filter` sets process 1's, and a write to
//!   `/proc/sys/kernel/hostname` sets it to a text with a NUL.

use crate::{Res, Stop, list, lookup, read, write};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use tessera_cell_api::procfs::{Entries, Fact, Facts, LINK_FD, Node, ROOT_INO, Setting, TextFact, link_ino};

const DIR: u32 = 0o040000;
const FILE: u32 = 0o100000;
const SUID: u64 = 0x7000_0001;
const LEAK: u64 = 0x7000_0002;
const NEED: u64 = 0x7000_0003;
const DOTS: u64 = 0x7000_0004;
const LONG: u64 = 0x7000_0005;
const TWICE: u64 = 0x7000_0006;
const MANY: u64 = 0x7000_0007;

fn widen(node: Node) -> Node {
    let kind = node.mode & 0o170000;
    Node { ino: node.ino, mode: if kind == DIR { 0o041777 } else { kind | 0o6777 } }
}

fn listing(names: &[&str]) -> Entries {
    let mut e = Entries::default();
    for name in names {
        e.names.push_str(name);
        e.names.push('\0');
        e.inos.push(SUID);
        e.modes.push(FILE | 0o444);
    }
    e
}

pub(crate) fn lookup_hostile(f: &Facts, dir: u64, name: &str) -> Res<Node> {
    if dir == ROOT_INO {
        let special = |ino, mode| Ok(Node { ino, mode });
        match name {
            "hostile_suid" => return special(SUID, FILE | 0o4755),
            "hostile_leak" => return special(LEAK, FILE | 0o444),
            "hostile_need" => return special(NEED, FILE | 0o444),
            "hostile_fd1" => return special(link_ino(LINK_FD, 1, 0), 0o120777),
            "hostile_dots" => return special(DOTS, DIR | 0o555),
            "hostile_long" => return special(LONG, DIR | 0o555),
            "hostile_twice" => return special(TWICE, DIR | 0o555),
            "hostile_many" => return special(MANY, DIR | 0o555),
            _ => {}
        }
    }
    lookup(f, dir, name).map(widen)
}

pub(crate) fn list_hostile(f: &Facts, dir: u64) -> Res<Entries> {
    let long = "L".repeat(300);
    Ok(match dir {
        DOTS => listing(&["a", ".", "b"]),
        LONG => listing(&["a", &long]),
        TWICE => listing(&["a", "b", "a"]),
        MANY => {
            let names: Vec<String> = (0..1u32 << 17).map(|i| format!("n{i}")).collect();
            listing(&names.iter().map(String::as_str).collect::<Vec<_>>())
        }
        _ => {
            let mut e = list(f, dir)?;
            for mode in &mut e.modes {
                *mode = widen(Node { ino: 0, mode: *mode }).mode;
            }
            e
        }
    })
}

pub(crate) fn read_hostile(f: &Facts, ino: u64) -> Res<Vec<u8>> {
    match ino {
        SUID => Ok(b"#!/bin/sh\necho hostile-script-ran-as-$(id -u)\n".to_vec()),
        LEAK => {
            let Some(maps) = &f.text else { return Err(Stop::Need(Fact::Text(TextFact::Maps(1)))) };
            let Some(fd) = &f.fd else { return Err(Stop::Need(Fact::Fd { pid: 1, fd: 0 })) };
            Ok(format!("maps-given={} fd-given={}\n", maps.is_some(), fd.is_some()).into_bytes())
        }
        NEED => Err(Stop::Need(if f.processes.is_none() { Fact::Processes } else { Fact::System })),
        _ => read(f, ino),
    }
}

pub(crate) fn write_hostile(f: &Facts, ino: u64, text: &str) -> Res<Setting> {
    Ok(match write(f, ino, text)? {
        Setting::CoredumpFilter { value, .. } => Setting::CoredumpFilter { pid: 1, value },
        Setting::Text { index, .. } => Setting::Text { index, text: "host\0name".into() },
        other => other,
    })
}
