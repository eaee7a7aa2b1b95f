//! Host tests: images made by `mkfs.ext2`, driven through the same
//! request protocol the kernel uses (blocks supplied only when asked
//! for), checked with `e2fsck -fn`; and a fuzzer that mutates images.

use crate::serve;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use tessera_cell_api::fs::{Attr, Done, FRESH, FsErr, Outcome, Request, SetAttr, Time};

const NOW: Time = Time { sec: 1_700_000_000, nsec: 0 };

fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/{name}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} not found: install e2fsprogs (make deps)");
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-ext2-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An image in memory, driven like the kernel drives the cell.
struct Img {
    bytes: Vec<u8>,
    bs: u32,
    /// Blocks the "cache" holds (grows as the cell asks).
    held: BTreeSet<u64>,
    rounds: usize,
}

impl Img {
    fn mkfs(tag: &str, size_kib: u64, args: &[&str]) -> (Img, PathBuf) {
        let path = scratch(tag).join("img");
        let _ = std::fs::remove_file(&path);
        let out = Command::new(tool("mkfs.ext2")).args(["-q", "-F"]).args(args).arg(&path).arg(format!("{size_kib}k")).output().expect("mkfs.ext2");
        assert!(out.status.success(), "mkfs.ext2: {}", String::from_utf8_lossy(&out.stderr));
        (Img::open(&path), path)
    }

    fn open(path: &PathBuf) -> Img {
        let bytes = std::fs::read(path).expect("image");
        let mut img = Img { bytes, bs: 1024, held: BTreeSet::new(), rounds: 0 };
        let info = match img.call(Request::Probe) {
            Ok(Done::Info(i)) => i,
            other => panic!("probe: {other:?}"),
        };
        img.bs = info.block_size;
        img.held.clear();
        img
    }

    fn save(&self, path: &PathBuf) {
        std::fs::write(path, &self.bytes).expect("write image");
    }

    fn call(&mut self, req: Request) -> Result<Done, FsErr> {
        for _ in 0..10_000 {
            let bs = self.bs as usize;
            let mut index = Vec::new();
            let mut data = Vec::new();
            for (slot, &b) in self.held.iter().enumerate() {
                index.push([b, slot as u64]);
                let start = b as usize * bs;
                data.extend_from_slice(self.bytes.get(start..start + bs).expect("held block inside the image"));
            }
            self.rounds += 1;
            let reply = serve(req.clone(), self.bs, &index, &data);
            match reply.outcome {
                Outcome::Need(blocks) => {
                    assert!(!blocks.is_empty(), "needs nothing");
                    for b in blocks {
                        if (b as usize + 1) * bs > self.bytes.len() {
                            return Err(FsErr::Corrupt); // the kernel's read fails: EIO
                        }
                        assert!(self.held.insert(b), "asks again for block {b} it holds");
                    }
                }
                Outcome::Failed(e) => {
                    assert!(reply.writes.is_empty());
                    return Err(e);
                }
                Outcome::Done(done) => {
                    assert_eq!(reply.written.len(), reply.writes.len() * bs);
                    for (i, &b) in reply.writes.iter().enumerate() {
                        let start = b as usize * bs;
                        let dst = self.bytes.get_mut(start..start + bs).expect("write inside the image");
                        dst.copy_from_slice(&reply.written[i * bs..(i + 1) * bs]);
                        self.held.insert(b);
                    }
                    for b in reply.freed {
                        self.held.remove(&b);
                    }
                    return Ok(done);
                }
            }
        }
        panic!("no answer after 10000 rounds");
    }

    fn attr(&mut self, req: Request) -> Result<Attr, FsErr> {
        match self.call(req)? {
            Done::Attr(a) => Ok(a),
            other => panic!("not attributes: {other:?}"),
        }
    }

    fn lookup_path(&mut self, path: &str) -> Result<Attr, FsErr> {
        let mut at = self.attr(Request::Stat { ino: 2 })?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            at = self.attr(Request::Lookup { dir: at.ino, name: part.into() })?;
        }
        Ok(at)
    }

    fn create(&mut self, dir: u64, name: &str, mode: u32) -> Result<Attr, FsErr> {
        self.attr(Request::Create { dir, name: name.into(), mode, uid: 1000, gid: 1000, rdev: 0, now: NOW })
    }

    /// Writes `data` at `offset` the way the kernel does.
    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<usize, FsErr> {
        let bs = self.bs as u64;
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let len = (data.len() - done) as u64;
            let blocks = match self.call(Request::Write { ino, offset: at, len, now: NOW }) {
                Ok(Done::Blocks(_, blocks)) => blocks,
                Err(_) if done > 0 => return Ok(done), // a short write
                Err(e) => return Err(e),
                Ok(other) => panic!("write answer {other:?}"),
            };
            assert!(!blocks.is_empty());
            let first = at / bs;
            for (i, b) in blocks.iter().enumerate() {
                let fresh = b & FRESH != 0;
                let b = (b & !FRESH) as usize;
                let block_start = (first + i as u64) * bs;
                let dst = &mut self.bytes[b * bs as usize..(b + 1) * bs as usize];
                if fresh {
                    dst.fill(0);
                }
                let from = at.max(block_start);
                let to = (offset + data.len() as u64).min(block_start + bs);
                if from >= to {
                    continue;
                }
                let src = &data[(from - offset) as usize..(to - offset) as usize];
                dst[(from - block_start) as usize..(to - block_start) as usize].copy_from_slice(src);
                done = (to - offset) as usize;
            }
        }
        Ok(done)
    }

    fn read(&mut self, ino: u64) -> Vec<u8> {
        let size = self.attr(Request::Stat { ino }).expect("stat").size;
        let bs = self.bs as u64;
        let mut out = vec![0u8; size as usize];
        let mut l = 0;
        while l * bs < size {
            let count = ((size.div_ceil(bs) - l) as u32).min(1024);
            let Ok(Done::Map(blocks)) = self.call(Request::Map { ino, first: l, count }) else { panic!("map") };
            for (i, b) in blocks.iter().enumerate() {
                let start = (l + i as u64) * bs;
                let n = bs.min(size - start) as usize;
                if *b != 0 {
                    let b = *b as usize * bs as usize;
                    out[start as usize..start as usize + n].copy_from_slice(&self.bytes[b..b + n]);
                }
            }
            l += blocks.len() as u64;
        }
        out
    }

    fn names(&mut self, dir: u64) -> Vec<String> {
        let Ok(Done::Entries(e)) = self.call(Request::ReadDir { dir }) else { panic!("readdir") };
        let mut v: Vec<String> = e.names.split('\0').filter(|s| !s.is_empty()).map(String::from).collect();
        v.sort();
        v
    }

    fn remove(&mut self, dir: u64, name: &str) -> Result<(), FsErr> {
        let a = self.attr(Request::Unlink { dir, name: name.into(), now: NOW })?;
        if a.nlink == 0 {
            self.call(Request::Release { ino: a.ino, now: NOW })?;
        }
        Ok(())
    }
}

fn fsck(path: &PathBuf) {
    let out = Command::new(tool("e2fsck")).args(["-fn"]).arg(path).output().expect("e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8).collect()
}

fn workload(block_size: &str) {
    let (mut img, path) = Img::mkfs(&format!("work{block_size}"), 16 * 1024, &["-b", block_size]);
    let Done::Info(info) = img.call(Request::Mount { write: true, now: NOW, options: String::new() }).expect("mount") else { panic!() };
    assert_eq!(info.block_size.to_string(), block_size);
    let root = 2;
    assert_eq!(img.names(root), vec!["lost+found"]);

    // Files of several sizes: direct, indirect and double indirect.
    let d = img.create(root, "dir", 0o040755).expect("mkdir");
    assert_eq!(d.nlink, 2);
    assert_eq!(img.attr(Request::Stat { ino: root }).unwrap().nlink, 4);
    for (i, size) in [0usize, 1, 1000, 4096, 13 * 1024, 300 * 1024, 3 * 1024 * 1024].into_iter().enumerate() {
        let f = img.create(d.ino, &format!("f{i}"), 0o100644).expect("create");
        let data = pattern(size, i as u8);
        assert_eq!(img.write(f.ino, 0, &data).unwrap(), size);
        assert_eq!(img.read(f.ino), data, "file {i} of {size} bytes");
    }
    // A sparse file reaching the triple-indirect tree (1 KiB blocks), or
    // far into the double-indirect one (4 KiB blocks).
    let s = img.create(root, "sparse", 0o100600).unwrap();
    let far = 70 * 1024 * 1024;
    img.write(s.ino, far, b"end").unwrap();
    let a = img.attr(Request::Stat { ino: s.ino }).unwrap();
    assert_eq!(a.size, far + 3);
    assert!(a.blocks < 64, "a sparse file holds few blocks ({})", a.blocks);
    let content = img.read(s.ino);
    assert!(content[..far as usize].iter().all(|&b| b == 0));
    assert_eq!(&content[far as usize..], b"end");
    // Truncate: shrink into the middle of a block, grow again with a hole.
    let f6 = img.lookup_path("/dir/f6").unwrap();
    let Done::Blocks(a, tail) = img.call(Request::Truncate { ino: f6.ino, size: 5000, now: NOW }).unwrap() else { panic!() };
    assert_eq!(a.size, 5000);
    for b in tail {
        let bs = img.bs as usize;
        let start = b as usize * bs + 5000 % bs;
        let end = (b as usize + 1) * bs;
        img.bytes[start..end].fill(0);
    }
    assert_eq!(img.read(f6.ino), pattern(5000, 6)[..].to_vec());
    img.call(Request::Truncate { ino: s.ino, size: 10, now: NOW }).unwrap();
    assert_eq!(img.read(s.ino), vec![0u8; 10]);

    // Links, symlinks, devices, renames, removal.
    let f1 = img.lookup_path("/dir/f1").unwrap();
    img.call(Request::Link { dir: root, name: "hard".into(), ino: f1.ino, replace: false, now: NOW }).unwrap();
    assert_eq!(img.attr(Request::Stat { ino: f1.ino }).unwrap().nlink, 2);
    assert_eq!(img.call(Request::Link { dir: root, name: "hard".into(), ino: f1.ino, replace: false, now: NOW }), Err(FsErr::Exists));
    let short = img.attr(Request::Symlink { dir: root, name: "short".into(), target: "dir/f1".into(), uid: 0, gid: 0, now: NOW }).unwrap();
    let long_target = "x/".repeat(100);
    let long = img.attr(Request::Symlink { dir: root, name: "long".into(), target: long_target.clone(), uid: 0, gid: 0, now: NOW }).unwrap();
    assert_eq!(img.call(Request::ReadLink { ino: short.ino }), Ok(Done::Text("dir/f1".into())));
    assert_eq!(img.call(Request::ReadLink { ino: long.ino }), Ok(Done::Text(long_target)));
    let dev = img.attr(Request::Create { dir: root, name: "null".into(), mode: 0o020666, uid: 0, gid: 0, rdev: 0x103, now: NOW }).unwrap();
    assert_eq!(dev.rdev, 0x103);
    img.create(root, "fifo", 0o010644).unwrap();
    // Rename a directory into another one and a file over another.
    let sub = img.create(d.ino, "sub", 0o040700).unwrap();
    img.create(sub.ino, "inner", 0o100644).unwrap();
    let other = img.create(root, "other", 0o040755).unwrap();
    img.call(Request::Link { dir: other.ino, name: "moved".into(), ino: sub.ino, replace: false, now: NOW }).unwrap();
    img.remove(d.ino, "sub").unwrap();
    assert_eq!(img.lookup_path("/other/moved/inner").map(|_| ()), Ok(()));
    assert_eq!(img.attr(Request::Stat { ino: d.ino }).unwrap().nlink, 2);
    assert_eq!(img.attr(Request::Stat { ino: other.ino }).unwrap().nlink, 3);
    // Rename within one directory.
    img.call(Request::Link { dir: other.ino, name: "renamed".into(), ino: sub.ino, replace: false, now: NOW }).unwrap();
    img.remove(other.ino, "moved").unwrap();
    assert_eq!(img.attr(Request::Stat { ino: sub.ino }).unwrap().nlink, 2);
    let f2 = img.lookup_path("/dir/f2").unwrap();
    let replaced = img.call(Request::Link { dir: d.ino, name: "f3".into(), ino: f2.ino, replace: true, now: NOW }).unwrap();
    let Done::Maybe(Some(victim)) = replaced else { panic!("{replaced:?}") };
    assert_eq!(victim.nlink, 0);
    img.call(Request::Release { ino: victim.ino, now: NOW }).unwrap();
    img.remove(d.ino, "f2").unwrap();
    let f3 = img.lookup_path("/dir/f3").unwrap().ino;
    assert_eq!(img.read(f3), pattern(1000, 2));
    // Many entries: the directory grows past one block.
    for i in 0..300 {
        img.create(other.ino, &format!("entry-with-a-longish-name-{i:04}"), 0o100644).unwrap();
    }
    assert_eq!(img.names(other.ino).len(), 301);
    for i in (0..300).step_by(2) {
        img.remove(other.ino, &format!("entry-with-a-longish-name-{i:04}")).unwrap();
    }
    assert_eq!(img.names(other.ino).len(), 151);
    // Errors.
    assert_eq!(img.create(root, "dir", 0o100644), Err(FsErr::Exists));
    assert_eq!(img.create(root, &"n".repeat(256), 0o100644), Err(FsErr::NameTooLong));
    assert_eq!(img.lookup_path("/nope"), Err(FsErr::NotFound));
    assert_eq!(img.call(Request::Lookup { dir: f1.ino, name: "x".into() }), Err(FsErr::NotDir));
    // Attributes.
    let a = img.attr(Request::SetAttr { ino: f1.ino, set: SetAttr { perm: Some(0o4711), uid: Some(70000), gid: Some(5), atime: None, mtime: Some(Time { sec: 12345, nsec: 0 }) }, now: NOW }).unwrap();
    assert_eq!((a.mode, a.uid, a.gid, a.mtime.sec), (0o104711, 70000, 5, 12345));
    // rmdir of the emptied tree, then removing everything else.
    img.remove(sub.ino, "inner").unwrap();
    img.remove(other.ino, "renamed").unwrap();
    img.call(Request::Unmount { now: NOW }).unwrap();
    img.save(&path);
    fsck(&path);
    println!("{block_size}: {} calls", img.rounds);
}

#[test]
fn workload_1k_blocks() {
    workload("1024");
}

#[test]
fn workload_4k_blocks() {
    workload("4096");
}

#[test]
fn reads_a_tree_made_by_mkfs() {
    let dir = scratch("tree");
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("a/b/big"), pattern(200_000, 9)).unwrap();
    std::fs::write(src.join("small"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("a/b/big", src.join("link")).unwrap();
    let path = dir.join("img");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(tool("mkfs.ext2")).args(["-q", "-F", "-d"]).arg(&src).arg(&path).arg("4M").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut img = Img::open(&path);
    let big = img.lookup_path("/a/b/big").unwrap();
    assert_eq!(img.read(big.ino), pattern(200_000, 9));
    let small = img.lookup_path("/small").unwrap();
    assert_eq!(img.read(small.ino), b"hello\n");
    let link = img.lookup_path("/link").unwrap();
    assert_eq!(img.call(Request::ReadLink { ino: link.ino }), Ok(Done::Text("a/b/big".into())));
    // Remove a file the host wrote, add one: e2fsck agrees.
    img.remove(2, "small").unwrap();
    let f = img.create(2, "new", 0o100644).unwrap();
    img.write(f.ino, 0, &pattern(70_000, 3)).unwrap();
    img.save(&path);
    fsck(&path);
}

/// genext2fs writes revision 0 file systems (128-byte inodes, no
/// feature flags): read what it put there, change it, and e2fsck agrees.
#[test]
fn reads_and_changes_a_genext2fs_image() {
    let dir = scratch("gen");
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/data"), pattern(40_000, 4)).unwrap();
    std::fs::write(src.join("top"), b"top\n").unwrap();
    let path = dir.join("img");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(tool("genext2fs")).args(["-b", "4096", "-d"]).arg(&src).arg(&path).output().expect("genext2fs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut img = Img::open(&path);
    let data = img.lookup_path("/sub/data").unwrap();
    assert_eq!(img.read(data.ino), pattern(40_000, 4));
    let sub = img.lookup_path("/sub").unwrap();
    let f = img.create(sub.ino, "new", 0o100644).unwrap();
    img.write(f.ino, 0, &pattern(300_000, 5)).unwrap();
    assert_eq!(img.read(f.ino), pattern(300_000, 5));
    img.remove(2, "top").unwrap();
    img.create(2, "dir", 0o040755).unwrap();
    img.save(&path);
    fsck(&path);
}

#[test]
fn full_disk_is_enospc_and_stays_consistent() {
    let (mut img, path) = Img::mkfs("full", 2048, &["-b", "1024"]);
    img.call(Request::Mount { write: true, now: NOW, options: String::new() }).unwrap();
    let f = img.create(2, "fill", 0o100644).unwrap();
    let chunk = pattern(64 * 1024, 1);
    let mut total = 0;
    loop {
        match img.write(f.ino, total as u64, &chunk) {
            Ok(n) => {
                total += n;
                if n < chunk.len() {
                    break;
                }
            }
            Err(FsErr::NoSpace) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(total > 1024 * 1024, "only {total} bytes fit");
    // The last block may have room left and single blocks may still fit
    // where a whole chunk's indirect block did not; then nothing does.
    let mut at = (total as u64).next_multiple_of(1024);
    let mut extra = 0;
    while img.write(f.ino, at, b"more").is_ok() {
        at += 1024;
        extra += 1;
        assert!(extra < 8, "the disk never fills");
    }
    assert_eq!(img.write(f.ino, at, b"more"), Err(FsErr::NoSpace));
    let total = img.attr(Request::Stat { ino: f.ino }).unwrap().size as usize;
    // Directories cannot grow either, but lookups still work.
    let mut made = 0;
    while img.create(2, &format!("file-{made}"), 0o100644).is_ok() {
        made += 1;
        assert!(made < 10_000);
    }
    assert_eq!(img.read(f.ino).len(), total);
    img.call(Request::Unmount { now: NOW }).unwrap();
    img.save(&path);
    fsck(&path);
    // Freeing the file gives the space back.
    img.remove(2, "fill").unwrap();
    let Done::Info(info) = img.call(Request::Statfs).unwrap() else { panic!() };
    assert!(info.free_blocks > 1500, "{info:?}");
    img.save(&path);
    fsck(&path);
}

#[test]
fn refuses_what_it_cannot_serve() {
    // Not ext2 at all.
    let mut blank = Img { bytes: vec![0; 64 * 1024], bs: 1024, held: BTreeSet::new(), rounds: 0 };
    assert_eq!(blank.call(Request::Probe), Err(FsErr::NotSupported));
    // ext4 (extents): refused at probe.
    let path = scratch("ext4").join("img");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(tool("mkfs.ext4")).args(["-q", "-F"]).arg(&path).arg("8M").output().unwrap();
    assert!(out.status.success());
    let bytes = std::fs::read(&path).unwrap();
    let mut img = Img { bytes, bs: 1024, held: BTreeSet::new(), rounds: 0 };
    assert_eq!(img.call(Request::Probe), Err(FsErr::NotSupported));
}

/// xorshift64*: a deterministic stream for the fuzzer.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Walks the tree, reads every file, and changes things, on images with
/// random bytes changed in their metadata: every call must answer (no
/// panic, no endless asking) and touch only blocks inside the image.
#[test]
fn fuzz_mutated_images() {
    let dir = scratch("fuzz");
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("d1/d2")).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("d1/f{i}")), pattern(i * 3000, i as u8)).unwrap();
    }
    std::fs::write(src.join("d1/d2/big"), pattern(600_000, 1)).unwrap();
    std::os::unix::fs::symlink("d1/f1", src.join("l")).unwrap();
    let path = dir.join("img");
    let _ = std::fs::remove_file(&path);
    let out = Command::new(tool("mkfs.ext2")).args(["-q", "-F", "-b", "1024", "-N", "64", "-d"]).arg(&src).arg(&path).arg("2M").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pristine = std::fs::read(&path).unwrap();
    // Metadata lives in the first blocks of the image (superblock, group
    // descriptors, bitmaps, inode table) and in directory blocks: mutate
    // the first 64 KiB and the rest at random.
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let iterations = std::env::var("EXT2_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let mut outcomes = [0usize; 2];
    for _ in 0..iterations {
        let mut bytes = pristine.clone();
        let flips = 1 + rng.below(8);
        for _ in 0..flips {
            let at = if rng.below(4) == 0 { rng.below(bytes.len() as u64) } else { rng.below(64 * 1024) } as usize;
            bytes[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        let mut img = Img { bytes, bs: 1024, held: BTreeSet::new(), rounds: 0 };
        // The kernel refuses a file system larger than its device.
        match img.call(Request::Probe) {
            Ok(Done::Info(i)) if i.blocks * u64::from(i.block_size) <= img.bytes.len() as u64 => img.bs = i.block_size,
            _ => {
                outcomes[0] += 1;
                continue;
            }
        }
        img.held.clear();
        outcomes[1] += 1;
        let _ = img.call(Request::Mount { write: true, now: NOW, options: String::new() });
        // Walk up to 200 nodes breadth first.
        let mut queue = vec![2u64];
        let mut seen = 0;
        while let Some(ino) = queue.pop() {
            seen += 1;
            if seen > 200 {
                break;
            }
            let Ok(a) = img.attr(Request::Stat { ino }) else { continue };
            match a.mode & 0o170000 {
                0o040000 => {
                    if let Ok(Done::Entries(e)) = img.call(Request::ReadDir { dir: ino }) {
                        queue.extend(e.inos.iter().take(50));
                        for name in e.names.split('\0').take(5) {
                            let _ = img.call(Request::Lookup { dir: ino, name: name.into() });
                        }
                    }
                    let _ = img.create(ino, "new", 0o100644).map(|f| img.write(f.ino, 0, &[7u8; 5000]));
                    let _ = img.remove(ino, "f3");
                }
                0o100000 => {
                    let _ = img.call(Request::Map { ino, first: 0, count: 300 });
                    let _ = img.call(Request::Map { ino, first: 268, count: 300 });
                    let _ = img.call(Request::Truncate { ino, size: a.size / 2, now: NOW });
                }
                0o120000 => {
                    let _ = img.call(Request::ReadLink { ino });
                }
                _ => {}
            }
        }
        let _ = img.call(Request::Statfs);
    }
    println!("fuzz: {} images refused at probe, {} served", outcomes[0], outcomes[1]);
    assert!(outcomes[1] > iterations / 4, "most mutated images should still mount");
}
