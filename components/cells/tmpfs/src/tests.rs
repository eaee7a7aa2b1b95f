//! Host tests: a memory store driven through the same request protocol
//! the kernel uses (blocks shown only when asked for, changes applied only
//! on success), a model compared after random operations, and a fuzzer
//! that damages the store.

use crate::{BS, DATA, MAX_SIZE, serve};
use std::collections::{BTreeMap, BTreeSet};
use tessera_cell_api::fs::{Attr, Done, FRESH, FsErr, Info, Outcome, Request, SetAttr, Time};

const NOW: Time = Time { sec: 1_700_000_000, nsec: 123_456_789 };
const MIB: u64 = 1 << 20;

/// The kernel's memory store and its view, as the kernel drives them.
#[derive(Default)]
struct Store {
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Blocks shown to the cell (the kernel's metadata cache).
    held: BTreeSet<u64>,
    calls: u64,
}

impl Store {
    fn block(&self, b: u64) -> Vec<u8> {
        self.blocks.get(&b).cloned().unwrap_or_else(|| vec![0; BS])
    }

    fn call(&mut self, req: Request) -> Result<Done, FsErr> {
        let bs = if matches!(req, Request::Probe) { 1024 } else { BS };
        for _ in 0..1000 {
            self.calls += 1;
            let index: Vec<[u64; 2]> = self.held.iter().enumerate().map(|(i, &b)| [b, i as u64]).collect();
            let mut data = Vec::new();
            for &b in &self.held {
                data.extend_from_slice(&self.block(b)[..bs]);
            }
            let reply = serve(req.clone(), bs as u32, &index, &data);
            match reply.outcome {
                Outcome::Need(blocks) => {
                    assert!(!blocks.is_empty());
                    for b in blocks {
                        assert!(self.held.insert(b), "asked again for block {b:#x}");
                    }
                }
                Outcome::Failed(e) => {
                    assert!(reply.writes.is_empty() && reply.freed.is_empty());
                    return Err(e);
                }
                Outcome::Done(done) => {
                    assert_eq!(reply.written.len(), reply.writes.len() * BS);
                    for (b, bytes) in reply.writes.iter().zip(reply.written.chunks(BS)) {
                        assert!(!reply.freed.contains(b), "block {b:#x} written and freed");
                        if bytes.iter().all(|&x| x == 0) {
                            self.blocks.remove(b); // the kernel's store keeps no zero blocks
                        } else {
                            self.blocks.insert(*b, bytes.to_vec());
                        }
                    }
                    for b in reply.freed {
                        self.blocks.remove(&b);
                        self.held.remove(&b);
                    }
                    return Ok(done);
                }
            }
        }
        panic!("no answer after 1000 rounds");
    }

    fn attr(&mut self, req: Request) -> Result<Attr, FsErr> {
        match self.call(req)? {
            Done::Attr(a) => Ok(a),
            other => panic!("not attributes: {other:?}"),
        }
    }

    fn mount(options: &str) -> Store {
        let mut s = Store::default();
        let Done::Info(_) = s.call(Request::Probe).expect("probe") else { panic!() };
        s.held.clear();
        let Done::Info(info) = s.call(Request::Mount { write: true, now: NOW, options: options.into() }).expect("mount") else { panic!() };
        assert_eq!(info.root, 1);
        s
    }

    fn statfs(&mut self) -> Info {
        match self.call(Request::Statfs) {
            Ok(Done::Info(i)) => i,
            other => panic!("{other:?}"),
        }
    }

    fn create(&mut self, dir: u64, name: &str, mode: u32) -> Result<Attr, FsErr> {
        self.attr(Request::Create { dir, name: name.into(), mode, uid: 7, gid: 8, rdev: 0, now: NOW })
    }

    /// Writes like the kernel: asks for blocks, copies into them.
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<usize, FsErr> {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let blocks = match self.call(Request::Write { ino, offset: at, len: (data.len() - done) as u64, now: NOW }) {
                Ok(Done::Blocks(_, blocks)) => blocks,
                Err(_) if done > 0 => return Ok(done),
                Err(e) => return Err(e),
                Ok(other) => panic!("write answer {other:?}"),
            };
            assert!(!blocks.is_empty());
            for (i, b) in blocks.iter().enumerate() {
                let fresh = b & FRESH != 0;
                let b = b & !FRESH;
                let start = (at / BS as u64 + i as u64) * BS as u64;
                let mut block = if fresh { vec![0; BS] } else { self.block(b) };
                let from = at.max(start);
                let to = (offset + data.len() as u64).min(start + BS as u64);
                block[(from - start) as usize..(to - start) as usize].copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
                self.blocks.insert(b, block);
                done = (to - offset) as usize;
            }
        }
        Ok(done)
    }

    fn read(&mut self, ino: u64) -> Vec<u8> {
        let size = self.attr(Request::Stat { ino }).expect("stat").size;
        let mut out = Vec::new();
        let mut n = 0;
        while (out.len() as u64) < size {
            let Ok(Done::Map(blocks)) = self.call(Request::Map { ino, first: n, count: 64 }) else { panic!("map") };
            for b in blocks {
                out.extend_from_slice(&if b == 0 { vec![0; BS] } else { self.block(b) });
            }
            n += 64;
        }
        out.truncate(size as usize);
        out
    }

    fn names(&mut self, dir: u64) -> Vec<String> {
        let Ok(Done::Entries(e)) = self.call(Request::ReadDir { dir }) else { panic!("readdir") };
        let mut names: Vec<String> = e.names.split('\0').filter(|n| !n.is_empty()).map(String::from).collect();
        names.sort();
        names
    }

    fn lookup(&mut self, dir: u64, name: &str) -> Result<Attr, FsErr> {
        self.attr(Request::Lookup { dir, name: name.into() })
    }

    fn unlink(&mut self, dir: u64, name: &str) -> Result<Attr, FsErr> {
        let a = self.attr(Request::Unlink { dir, name: name.into(), now: NOW })?;
        if a.nlink == 0 {
            self.call(Request::Release { ino: a.ino, now: NOW }).expect("release");
        }
        Ok(a)
    }

    /// `rename` as the kernel does it: link at the new place, unlink the old.
    fn rename(&mut self, from: u64, old: &str, to: u64, new: &str) -> Result<(), FsErr> {
        let a = self.lookup(from, old)?;
        let Done::Maybe(replaced) = self.call(Request::Link { dir: to, name: new.into(), ino: a.ino, replace: true, now: NOW })? else { panic!() };
        self.call(Request::Unlink { dir: from, name: old.into(), now: NOW })?;
        if let Some(r) = replaced.filter(|r| r.nlink == 0) {
            self.call(Request::Release { ino: r.ino, now: NOW })?;
        }
        Ok(())
    }
}

#[test]
fn a_fresh_store_is_probed_and_formatted_from_the_options() {
    let mut s = Store::mount("memory=1073741824,mode=755,uid=5,gid=6");
    let root = s.attr(Request::Stat { ino: 1 }).unwrap();
    assert_eq!((root.mode, root.nlink, root.uid, root.gid), (0o40755, 2, 5, 6));
    let info = s.statfs();
    // Linux's defaults: half the memory, and an inode per page of it.
    assert_eq!((info.block_size, info.blocks, info.free_blocks), (4096, 131072, 131072));
    assert_eq!((info.inodes, info.free_inodes), (131072, 131071));
    // A formatted store is ours; a store with anything else is not.
    let Done::Info(_) = s.call(Request::Probe).unwrap() else { panic!() };
    let mut other = Store::default();
    other.blocks.insert(0, vec![0xef; BS]);
    assert_eq!(other.call(Request::Probe).unwrap_err(), FsErr::NotSupported);
    assert_eq!(other.call(Request::Mount { write: true, now: NOW, options: String::new() }).unwrap_err(), FsErr::NotSupported);
}

#[test]
fn bad_options_are_refused() {
    for bad in ["size=abc", "bogus=1", "mode=99999", "mode=8", "size=101%", "uid=-1", "size=99999999999999999999", "nr_inodes=1x"] {
        let mut s = Store::default();
        assert_eq!(s.call(Request::Mount { write: true, now: NOW, options: format!("memory={},{bad}", 64 * MIB) }).unwrap_err(), FsErr::Invalid, "{bad}");
    }
    let mut s = Store::mount(&format!("memory={},size=25%,nr_inodes=1k", 64 * MIB));
    let info = s.statfs();
    assert_eq!((info.blocks, info.inodes), (4096, 1024));
}

#[test]
fn files_hold_their_bytes_and_holes_and_truncate_frees() {
    let mut s = Store::mount(&format!("memory={}", 256 * MIB));
    let f = s.create(1, "f", 0o100644).unwrap();
    assert_eq!((f.nlink, f.uid, f.gid, f.size, f.mtime), (1, 7, 8, 0, NOW));
    let data: Vec<u8> = (0..3 * BS + 100).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(s.write(f.ino, 0, &data).unwrap(), data.len());
    // A hole, then data far away.
    let far = 1u64 << 33;
    s.write(f.ino, far, b"end").unwrap();
    let a = s.attr(Request::Stat { ino: f.ino }).unwrap();
    assert_eq!((a.size, a.blocks), (far + 3, 5 * 8));
    let Ok(Done::Map(m)) = s.call(Request::Map { ino: f.ino, first: 3, count: 3 }) else { panic!() };
    assert_eq!((m[0] != 0, m[1], m[2]), (true, 0, 0));
    let used = s.statfs().free_blocks;
    // Truncate into the first block: its tail is the kernel's to zero.
    let Ok(Done::Blocks(a, tail)) = s.call(Request::Truncate { ino: f.ino, size: 10, now: NOW }) else { panic!() };
    assert_eq!((a.size, a.blocks, tail.len()), (10, 8, 1));
    assert_eq!(s.statfs().free_blocks, used + 4);
    assert_eq!(&s.read(f.ino)[..], &data[..10]);
    // Freed blocks left the store.
    assert!(s.blocks.keys().all(|&b| b < DATA + (f.ino << 26) + 1 || b >= DATA + ((f.ino + 1) << 26)));
    assert_eq!(s.call(Request::Truncate { ino: f.ino, size: MAX_SIZE + 1, now: NOW }).unwrap_err(), FsErr::TooBig);
    assert_eq!(s.call(Request::Write { ino: f.ino, offset: MAX_SIZE, len: 1, now: NOW }).unwrap_err(), FsErr::TooBig);
    assert_eq!(s.call(Request::Truncate { ino: 1, size: 0, now: NOW }).unwrap_err(), FsErr::IsDir);
    // Removing the file returns every block: the store is as it began.
    s.unlink(1, "f").unwrap();
    assert_eq!(s.statfs().free_blocks, s.statfs().blocks - 1, "the root's entry block stays");
    assert!(s.blocks.keys().all(|&b| b < DATA), "{:x?}", s.blocks.keys().collect::<Vec<_>>());
}

#[test]
fn directories_links_renames_and_symlinks() {
    let mut s = Store::mount(&format!("memory={}", 256 * MIB));
    let a = s.create(1, "a", 0o40755).unwrap();
    let b = s.create(a.ino, "b", 0o40700).unwrap();
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().nlink, 3);
    assert_eq!(s.attr(Request::Stat { ino: a.ino }).unwrap().nlink, 3);
    assert_eq!(s.create(1, "a", 0o100644).unwrap_err(), FsErr::Exists);
    assert_eq!(s.create(1, &"x".repeat(256), 0o100644).unwrap_err(), FsErr::NameTooLong);
    s.create(1, &"x".repeat(255), 0o100644).unwrap();
    for bad in ["", ".", "..", "a/b"] {
        assert_eq!(s.create(1, bad, 0o100644).unwrap_err(), FsErr::Invalid);
    }
    // Hard links count.
    let f = s.create(b.ino, "f", 0o100600).unwrap();
    s.call(Request::Link { dir: 1, name: "g".into(), ino: f.ino, replace: false, now: NOW }).unwrap();
    assert_eq!(s.lookup(1, "g").unwrap().nlink, 2);
    // Move directory b from a to the root: parent counts follow.
    s.rename(a.ino, "b", 1, "b2").unwrap();
    assert_eq!(s.attr(Request::Stat { ino: a.ino }).unwrap().nlink, 2);
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().nlink, 4);
    assert_eq!(s.names(1), ["a", "b2", "g", &"x".repeat(255)]);
    // Renaming a file over another frees the other.
    let h = s.create(1, "h", 0o100644).unwrap();
    s.write(h.ino, 0, b"hello").unwrap();
    s.rename(1, "h", b.ino, "f").unwrap();
    assert_eq!(s.lookup(1, "g").unwrap().nlink, 1);
    assert_eq!(s.read(h.ino), b"hello");
    // A directory that is not empty stays; an empty one goes.
    let gone = s.unlink(1, "a").unwrap();
    assert_eq!(gone.nlink, 0);
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().nlink, 3);
    assert_eq!(s.create(a.ino, "late", 0o100644).unwrap_err(), FsErr::Corrupt);
    // Symbolic links, short and long.
    for target in ["t".to_string(), "long/".repeat(100)] {
        let l = s.attr(Request::Symlink { dir: 1, name: format!("l{}", target.len()), target: target.clone(), uid: 0, gid: 0, now: NOW }).unwrap();
        assert_eq!(l.size as usize, target.len());
        let Ok(Done::Text(t)) = s.call(Request::ReadLink { ino: l.ino }) else { panic!() };
        assert_eq!(t, target);
        s.unlink(1, &format!("l{}", target.len())).unwrap();
    }
    assert_eq!(s.call(Request::Symlink { dir: 1, name: "e".into(), target: String::new(), uid: 0, gid: 0, now: NOW }).unwrap_err(), FsErr::NotFound);
    // RENAME_EXCHANGE of a file and a directory in two directories: the
    // subdirectory link moves with the directory.
    let c = s.create(1, "c", 0o40755).unwrap();
    let x = s.create(c.ino, "x", 0o100644).unwrap();
    let before_root = s.attr(Request::Stat { ino: 1 }).unwrap().nlink;
    s.call(Request::Exchange { a_dir: 1, a_name: "b2".into(), b_dir: c.ino, b_name: "x".into(), now: NOW }).unwrap();
    assert_eq!(s.lookup(1, "b2").unwrap().ino, x.ino);
    assert_eq!(s.lookup(c.ino, "x").unwrap().ino, b.ino);
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().nlink, before_root - 1);
    assert_eq!(s.attr(Request::Stat { ino: c.ino }).unwrap().nlink, 3);
    // `b` now hangs in `c`: removing its old name there frees nothing.
    s.rename(c.ino, "x", 1, "back").unwrap();
    assert_eq!(s.attr(Request::Stat { ino: c.ino }).unwrap().nlink, 2);
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().nlink, before_root);
    assert_eq!(s.call(Request::Exchange { a_dir: 1, a_name: "nope".into(), b_dir: 1, b_name: "back".into(), now: NOW }).unwrap_err(), FsErr::NotFound);
    let set = SetAttr { perm: Some(0o4755), uid: Some(1), gid: Some(2), atime: Some(Time { sec: 5, nsec: 6 }), mtime: None };
    let after = s.attr(Request::SetAttr { ino: h.ino, set, now: NOW }).unwrap();
    assert_eq!((after.mode, after.uid, after.gid, after.atime), (0o104755, 1, 2, Time { sec: 5, nsec: 6 }));
}

#[test]
fn limits_give_nospace_and_short_writes() {
    let mut s = Store::mount(&format!("memory={},size=16k,nr_inodes=3", 64 * MIB));
    let f = s.create(1, "f", 0o100644).unwrap();
    // The directory took one block for its entries: 3 are left.
    assert_eq!(s.write(f.ino, 0, &vec![1; 5 * BS]).unwrap(), 3 * BS);
    assert_eq!(s.write(f.ino, 10 * BS as u64, b"x").unwrap_err(), FsErr::NoSpace);
    s.create(1, "g", 0o100644).unwrap();
    assert_eq!(s.create(1, "h", 0o100644).unwrap_err(), FsErr::NoSpace);
    s.unlink(1, "f").unwrap();
    s.create(1, "h", 0o100644).unwrap();
    assert_eq!(s.statfs().free_blocks, 3);
}

#[test]
fn thousands_of_entries_come_and_go() {
    let mut s = Store::mount(&format!("memory={}", 256 * MIB));
    for i in 0..3000 {
        s.create(1, &format!("file-{i}"), 0o100644).unwrap();
    }
    assert_eq!(s.names(1).len(), 3000);
    assert_eq!(s.lookup(1, "file-2999").unwrap().nlink, 1);
    for i in (0..3000).step_by(2) {
        s.unlink(1, &format!("file-{i}")).unwrap();
    }
    // Freed slots are used again before the directory grows.
    let size = s.attr(Request::Stat { ino: 1 }).unwrap().size;
    for i in 0..1500 {
        s.create(1, &format!("again-{i}"), 0o100644).unwrap();
    }
    assert_eq!(s.attr(Request::Stat { ino: 1 }).unwrap().size, size);
    assert_eq!(s.statfs().free_inodes, s.statfs().inodes - 3001);
}

/// Random operations against a model of names and contents.
#[test]
fn random_operations_match_a_model() {
    let mut s = Store::mount(&format!("memory={}", 256 * MIB));
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..1500 {
        let name = format!("n{}", next(40));
        match next(4) {
            0 => {
                let made = s.create(1, &name, 0o100644);
                assert_eq!(made.is_ok(), !model.contains_key(&name));
                model.entry(name).or_default();
            }
            1 => {
                let removed = s.unlink(1, &name);
                assert_eq!(removed.is_ok(), model.remove(&name).is_some());
            }
            2 => {
                if let (Ok(a), Some(content)) = (s.lookup(1, &name), model.get_mut(&name)) {
                    let at = next(3 * BS as u64);
                    let bytes: Vec<u8> = (0..next(2 * BS as u64) + 1).map(|i| (i + at) as u8).collect();
                    s.write(a.ino, at, &bytes).unwrap();
                    if content.len() < (at as usize + bytes.len()) {
                        content.resize(at as usize + bytes.len(), 0);
                    }
                    content[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
                }
            }
            _ => {
                if let (Ok(a), Some(content)) = (s.lookup(1, &name), model.get_mut(&name)) {
                    let size = next(4 * BS as u64);
                    s.call(Request::Truncate { ino: a.ino, size, now: NOW }).unwrap();
                    // The kernel zeroes the tail of the last block.
                    if !(size as usize).is_multiple_of(BS) && (size as usize) < content.len() {
                        let Ok(Done::Map(m)) = s.call(Request::Map { ino: a.ino, first: size / BS as u64, count: 1 }) else { panic!() };
                        if m[0] != 0 {
                            let mut blk = s.block(m[0]);
                            blk[size as usize % BS..].fill(0);
                            s.blocks.insert(m[0], blk);
                        }
                    }
                    content.resize(size as usize, 0);
                }
            }
        }
    }
    assert_eq!(s.names(1), model.keys().cloned().collect::<Vec<_>>());
    for (name, content) in &model {
        let a = s.lookup(1, name).unwrap();
        assert_eq!(&s.read(a.ino), content, "{name}");
    }
    for name in model.keys() {
        s.unlink(1, name).unwrap();
    }
    let entry_blocks = s.attr(Request::Stat { ino: 1 }).unwrap().size / BS as u64;
    assert_eq!(s.statfs().free_blocks, s.statfs().blocks - entry_blocks, "only the root's entry blocks stay");
}

/// A damaged store: every answer is an error or a result, never a panic,
/// and nothing the cell writes lands outside the format's blocks.
#[test]
fn damaged_stores_never_panic_the_cell() {
    let iterations: u64 = std::env::var("TMPFS_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n.max(1)
    };
    let mut base = Store::mount(&format!("memory={}", 64 * MIB));
    let d = base.create(1, "d", 0o40755).unwrap();
    for i in 0..40 {
        let f = base.create(if i % 2 == 0 { 1 } else { d.ino }, &format!("f{i}"), 0o100644).unwrap();
        base.write(f.ino, (i * 1000) as u64, b"some bytes").unwrap();
    }
    base.attr(Request::Symlink { dir: 1, name: "l".into(), target: "x".repeat(300), uid: 0, gid: 0, now: NOW }).unwrap();
    for _ in 0..iterations {
        let mut s = Store { blocks: base.blocks.clone(), ..Store::default() };
        let keys: Vec<u64> = s.blocks.keys().copied().collect();
        for _ in 0..1 + next(8) {
            let b = keys[next(keys.len() as u64) as usize];
            let blk = s.blocks.get_mut(&b).unwrap();
            let at = next(BS as u64) as usize;
            blk[at] = next(256) as u8;
            if next(2) == 0 {
                let at = next(BS as u64 - 8) as usize;
                blk[at..at + 8].copy_from_slice(&next(u64::MAX).to_le_bytes());
            }
        }
        let ino = 1 + next(50);
        let requests = [
            Request::Stat { ino },
            Request::ReadDir { dir: ino },
            Request::Lookup { dir: ino, name: format!("f{}", next(40)) },
            Request::Create { dir: ino, name: "new".into(), mode: 0o100644, uid: 0, gid: 0, rdev: 0, now: NOW },
            Request::Unlink { dir: ino, name: format!("f{}", next(40)), now: NOW },
            Request::Release { ino, now: NOW },
            Request::Write { ino, offset: next(1 << 20), len: next(1 << 16), now: NOW },
            Request::Truncate { ino, size: next(1 << 20), now: NOW },
            Request::Map { ino, first: next(300), count: 64 },
            Request::ReadLink { ino },
            Request::Link { dir: ino, name: "x".into(), ino: 1 + next(50), replace: true, now: NOW },
            Request::Statfs,
        ];
        for r in requests {
            let _ = s.call(r);
        }
    }
}
