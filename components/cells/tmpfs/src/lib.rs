//! In-memory file systems as a cell: `tmpfs`, and the `devtmpfs` and
//! `sysfs` trees the kernel fills, all in one format over the kernel's
//! memory store.
//!
//! Like the ext2 cell, this cell keeps nothing between calls (see
//! `tessera_cell_api::fs`): the kernel holds the file system in a sparse
//! store of 4 KiB blocks that reads as zeros where nothing was written,
//! shows the cell the metadata blocks a request needs, and applies the
//! blocks the cell hands back only when the call succeeded. A fault in
//! the cell therefore loses nothing but the call, and a swap has no state
//! to hand over, although the files live only in memory.
//!
//! The format is made for a store where every block number is cheap, so
//! nothing is allocated by searching bitmaps:
//!
//! | block | holds |
//! |---|---|
//! | 0 | the superblock: counters and limits |
//! | `1 + i / 16` | inode `i` (256 bytes at `(i % 16) * 256`) |
//! | `BITMAPS + i << 11 + k` | which of file `i`'s blocks `k * 32768 ..` exist |
//! | `DATA + i << 26 + n` | block `n` of file `i` (or of directory `i`'s entries) |
//!
//! A file's size is limited by the bitmap chunks its inode can list
//! (1280 chunks: 160 GiB). Every value read from the store is checked
//! before use: an inode number past the table, an entry naming a free
//! inode, a directory longer than 65,536 blocks is `Corrupt` (EUCLEAN).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(clippy::indexing_slicing, clippy::unwrap_used)]

extern crate alloc;

#[cfg(test)]
mod tests;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tessera_cell_api::fs::{Attr, Done, Entries, Export, FRESH, FileSystem, FsErr, Info, Outcome, Reply, Request, SetAttr, Time};

/// Bytes per block.
pub const BS: usize = 4096;
const MAGIC: u64 = 0x5346_504d_5453_4554; // "TESTMPFS"
/// Inode numbers are below this.
pub const MAX_INO: u64 = 1 << 24;
const INODE_SIZE: usize = 256;
const INODES_PER_BLOCK: u64 = (BS / INODE_SIZE) as u64;
/// First block of the presence bitmaps.
pub const BITMAPS: u64 = 1 << 50;
/// First block of file data.
pub const DATA: u64 = 2 << 50;
/// File blocks one bitmap block covers.
const CHUNK: u64 = (BS * 8) as u64;
/// Bitmap chunks an inode lists (bits of its chunk map).
const CHUNKS: u64 = 1280;
/// Largest file.
pub const MAX_SIZE: u64 = CHUNKS * CHUNK * BS as u64;
/// Directory entry slots: 272 bytes, 15 a block.
const SLOT: usize = 272;
const SLOTS: usize = BS / SLOT;
const NAME_MAX: usize = 255;
/// Longest directory, in blocks.
const DIR_MAX_BLOCKS: u64 = 1 << 16;
/// Blocks a `Map` or `Write` handles in one call.
const MAX_RANGE: u64 = 1024;
const ROOT: u64 = 1;
const LINK_MAX: u32 = u32::MAX - 1;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// The cell's object (it has no state).
pub struct TmpFs;

impl FileSystem for TmpFs {
    fn name(&self) -> String {
        String::from("tmpfs")
    }

    fn serve(&self, request: Request, block_size: u32, index: &[[u64; 2]], data: &[u8]) -> Reply {
        serve(request, block_size, index, data)
    }
}

fn make() -> Export {
    Box::new(TmpFs)
}

tessera_cell_api::cell_entry!(fs, make);

/// Why a step could not go on.
#[derive(Debug)]
enum Stop {
    Need(Vec<u64>),
    Fail(FsErr),
}

impl From<FsErr> for Stop {
    fn from(e: FsErr) -> Self {
        Stop::Fail(e)
    }
}

type R<T> = Result<T, Stop>;

fn fail<T>(e: FsErr) -> R<T> {
    Err(Stop::Fail(e))
}

fn get64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

fn get32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    if let Some(s) = b.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Serves one request (see `tessera_cell_api::fs`).
pub fn serve(request: Request, block_size: u32, index: &[[u64; 2]], data: &[u8]) -> Reply {
    let empty = |outcome| Reply { outcome, writes: Vec::new(), written: Vec::new(), freed: Vec::new() };
    let mut tx = Tx { index, data, bs: block_size as usize, dirty: BTreeMap::new(), freed: BTreeSet::new() };
    let result = if matches!(request, Request::Probe) {
        probe(&tx)
    } else if block_size as usize != BS {
        fail(FsErr::Invalid)
    } else {
        run(&mut tx, request)
    };
    match result {
        Ok(done) => {
            let mut writes = Vec::with_capacity(tx.dirty.len());
            let mut written = Vec::with_capacity(tx.dirty.len() * BS);
            for (b, d) in tx.dirty {
                writes.push(b);
                written.extend_from_slice(&d);
            }
            Reply { outcome: Outcome::Done(done), writes, written, freed: tx.freed.into_iter().collect() }
        }
        Err(Stop::Need(blocks)) => empty(Outcome::Need(blocks)),
        Err(Stop::Fail(e)) => empty(Outcome::Failed(e)),
    }
}

/// One request's view of the store and its changes.
struct Tx<'a> {
    index: &'a [[u64; 2]],
    data: &'a [u8],
    bs: usize,
    dirty: BTreeMap<u64, Vec<u8>>,
    freed: BTreeSet<u64>,
}

impl Tx<'_> {
    fn read(&self, b: u64) -> R<&[u8]> {
        if let Some(d) = self.dirty.get(&b) {
            return Ok(d);
        }
        let view = || {
            let at = self.index.binary_search_by_key(&b, |e| e[0]).ok()?;
            let slot = usize::try_from(self.index.get(at)?[1]).ok()?;
            self.data.get(slot.checked_mul(self.bs)?..slot.checked_mul(self.bs)?.checked_add(self.bs)?)
        };
        view().ok_or_else(|| Stop::Need(vec![b]))
    }

    /// Asks at once for every block of `blocks` that is missing.
    fn need_all(&self, blocks: impl Iterator<Item = u64>) -> R<()> {
        let missing: Vec<u64> = blocks.filter(|&b| self.read(b).is_err()).collect();
        if missing.is_empty() { Ok(()) } else { Err(Stop::Need(missing)) }
    }

    fn modify(&mut self, b: u64) -> R<&mut Vec<u8>> {
        if !self.dirty.contains_key(&b) {
            let copy = self.read(b)?.to_vec();
            self.freed.remove(&b);
            self.dirty.insert(b, copy);
        }
        self.dirty.get_mut(&b).ok_or(Stop::Fail(FsErr::Corrupt))
    }

    /// Drops block `b` (its contents are gone; the store frees it).
    fn free(&mut self, b: u64) {
        self.dirty.remove(&b);
        self.freed.insert(b);
    }

    fn super_block(&self) -> R<Super> {
        let s = self.read(0)?;
        if get64(s, 0) != MAGIC {
            return fail(FsErr::Corrupt);
        }
        Ok(Super { next_ino: get64(s, 8), inodes: get64(s, 16), blocks: get64(s, 24), max_blocks: get64(s, 32), max_inodes: get64(s, 40) })
    }

    fn put_super(&mut self, s: &Super) -> R<()> {
        let b = self.modify(0)?;
        put64(b, 0, MAGIC);
        put64(b, 8, s.next_ino);
        put64(b, 16, s.inodes);
        put64(b, 24, s.blocks);
        put64(b, 32, s.max_blocks);
        put64(b, 40, s.max_inodes);
        Ok(())
    }

    /// Counts `delta` blocks in use; `NoSpace` past the limit.
    fn charge(&mut self, delta: i64) -> R<()> {
        let mut s = self.super_block()?;
        if delta > 0 && s.blocks.saturating_add(delta as u64) > s.max_blocks {
            return fail(FsErr::NoSpace);
        }
        s.blocks = s.blocks.saturating_add_signed(delta);
        self.put_super(&s)
    }

    fn inode(&self, ino: u64) -> R<Inode> {
        if ino == 0 || ino >= MAX_INO {
            return fail(FsErr::Corrupt);
        }
        let off = (ino % INODES_PER_BLOCK) as usize * INODE_SIZE;
        let raw: [u8; INODE_SIZE] = self.read(1 + ino / INODES_PER_BLOCK)?.get(off..off + INODE_SIZE).and_then(|r| r.try_into().ok()).ok_or(Stop::Fail(FsErr::Corrupt))?;
        let inode = Inode { ino, raw };
        if inode.mode() == 0 {
            return fail(FsErr::Corrupt); // an entry or a request naming a free inode
        }
        Ok(inode)
    }

    fn put_inode(&mut self, inode: &Inode) -> R<()> {
        let off = (inode.ino % INODES_PER_BLOCK) as usize * INODE_SIZE;
        self.modify(1 + inode.ino / INODES_PER_BLOCK)?.get_mut(off..off + INODE_SIZE).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(&inode.raw);
        Ok(())
    }
}

struct Super {
    next_ino: u64,
    inodes: u64,
    blocks: u64,
    max_blocks: u64,
    max_inodes: u64,
}

struct Inode {
    ino: u64,
    raw: [u8; INODE_SIZE],
}

const ATIME: usize = 32;
const MTIME: usize = 40;
const CTIME: usize = 48;

impl Inode {
    fn mode(&self) -> u32 {
        get32(&self.raw, 0)
    }
    fn kind(&self) -> u32 {
        self.mode() & S_IFMT
    }
    fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    fn links(&self) -> u32 {
        get32(&self.raw, 4)
    }
    fn set_links(&mut self, n: u32) {
        put32(&mut self.raw, 4, n);
    }
    fn size(&self) -> u64 {
        get64(&self.raw, 16)
    }
    fn set_size(&mut self, n: u64) {
        put64(&mut self.raw, 16, n);
    }
    /// Blocks held (data, entries, a long link's target).
    fn blocks(&self) -> u64 {
        get64(&self.raw, 72)
    }
    fn set_blocks(&mut self, n: u64) {
        put64(&mut self.raw, 72, n);
    }
    fn parent(&self) -> u64 {
        get64(&self.raw, 80)
    }
    fn set_parent(&mut self, p: u64) {
        put64(&mut self.raw, 80, p);
    }
    fn time(&self, at: usize) -> Time {
        Time { sec: get64(&self.raw, at) as i64, nsec: get32(&self.raw, 56 + (at - ATIME) / 2) }
    }
    fn set_time(&mut self, at: usize, t: Time) {
        put64(&mut self.raw, at, t.sec as u64);
        put32(&mut self.raw, 56 + (at - ATIME) / 2, t.nsec.min(999_999_999));
    }
    /// Whether bitmap chunk `k` may have bits (regular files).
    fn has_chunk(&self, k: u64) -> bool {
        k < CHUNKS && self.raw.get(96 + (k / 8) as usize).is_some_and(|&b| b & (1 << (k % 8)) != 0)
    }
    fn set_chunk(&mut self, k: u64, on: bool) {
        if let Some(b) = self.raw.get_mut(96 + (k / 8) as usize) {
            if on { *b |= 1 << (k % 8) } else { *b &= !(1 << (k % 8)) }
        }
    }
}

fn attr(i: &Inode) -> Attr {
    Attr {
        ino: i.ino,
        mode: i.mode(),
        nlink: i.links(),
        uid: get32(&i.raw, 8),
        gid: get32(&i.raw, 12),
        size: i.size(),
        blocks: i.blocks() * (BS as u64 / 512),
        rdev: if matches!(i.kind(), S_IFCHR | S_IFBLK) { get64(&i.raw, 24) } else { 0 },
        atime: i.time(ATIME),
        mtime: i.time(MTIME),
        ctime: i.time(CTIME),
    }
}

fn data_block(ino: u64, n: u64) -> u64 {
    DATA + (ino << 26) + n
}

fn bitmap_block(ino: u64, k: u64) -> u64 {
    BITMAPS + (ino << 11) + k
}

fn info(s: &Super) -> Info {
    Info {
        block_size: BS as u32,
        blocks: s.max_blocks,
        free_blocks: s.max_blocks.saturating_sub(s.blocks),
        reserved_blocks: 0,
        inodes: s.max_inodes,
        free_inodes: s.max_inodes.saturating_sub(s.inodes),
        root: ROOT,
        read_only: false,
        label: String::new(),
    }
}

/// A fresh store (all zeros) or this format; anything else is not ours.
fn probe(tx: &Tx) -> R<Done> {
    let s = tx.read(0)?;
    if get64(s, 0) == MAGIC {
        return Ok(Done::Info(info(&tx.super_block_probe()?)));
    }
    if s.iter().any(|&b| b != 0) {
        return fail(FsErr::NotSupported);
    }
    Ok(Done::Info(Info { block_size: BS as u32, root: ROOT, ..Info::default() }))
}

impl Tx<'_> {
    /// The superblock from a probe's 1 KiB view.
    fn super_block_probe(&self) -> R<Super> {
        let s = self.read(0)?;
        Ok(Super { next_ino: get64(s, 8), inodes: get64(s, 16), blocks: get64(s, 24), max_blocks: get64(s, 32), max_inodes: get64(s, 40) })
    }
}

/// Mount options: `memory=` (the kernel's, first), `size=`, `nr_inodes=`,
/// `mode=`, `uid=`, `gid=` as Linux's tmpfs takes them.
struct Options {
    max_blocks: u64,
    max_inodes: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn number(text: &str, memory: u64) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        b't' | b'T' => (&text[..text.len() - 1], 1 << 40),
        b'%' => return text[..text.len() - 1].parse::<u64>().ok().filter(|&p| p <= 100).map(|p| memory / 100 * p),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

fn options(text: &str) -> R<Options> {
    let mut memory = 0u64;
    let mut o = Options { max_blocks: 0, max_inodes: 0, mode: 0o1777, uid: 0, gid: 0 };
    let (mut size, mut inodes) = (None, None);
    for opt in text.split(',').filter(|o| !o.is_empty()) {
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        let bad = Stop::Fail(FsErr::Invalid);
        match key {
            "memory" => memory = value.parse().map_err(|_| bad)?,
            "size" => size = Some(number(value, memory).ok_or(bad)?),
            "nr_blocks" => size = Some(number(value, memory).and_then(|n| n.checked_mul(BS as u64)).ok_or(bad)?),
            "nr_inodes" => inodes = Some(number(value, memory).ok_or(bad)?),
            "mode" => o.mode = u32::from_str_radix(value, 8).ok().filter(|&m| m <= 0o7777).ok_or(bad)?,
            "uid" => o.uid = value.parse().map_err(|_| bad)?,
            "gid" => o.gid = value.parse().map_err(|_| bad)?,
            // Taken and of no consequence here, as on a Linux without
            // huge pages, NUMA or swap.
            "huge" | "mpol" | "inode32" | "inode64" | "noswap" => {}
            _ => return Err(bad),
        }
    }
    // Linux's defaults: half the memory, and as many inodes as it has
    // pages in that half; 0 means no limit.
    o.max_blocks = match size.unwrap_or(memory / 2).div_ceil(BS as u64) {
        0 => u64::MAX,
        n => n,
    };
    o.max_inodes = match inodes.unwrap_or(memory / 2 / BS as u64) {
        0 => MAX_INO - 2,
        n => n.min(MAX_INO - 2),
    };
    Ok(o)
}

fn run(tx: &mut Tx, request: Request) -> R<Done> {
    match request {
        Request::Probe => probe(tx),
        Request::Mount { now, options: text, .. } => mount(tx, &text, now),
        Request::Unmount { .. } => Ok(Done::Unit),
        Request::Statfs => Ok(Done::Info(info(&tx.super_block()?))),
        Request::Stat { ino } => Ok(Done::Attr(attr(&tx.inode(ino)?))),
        Request::Lookup { dir, name } => {
            let d = tx.inode(dir)?;
            let (found, _) = scan(tx, &d, name.as_bytes())?;
            let (ino, ..) = found.ok_or(Stop::Fail(FsErr::NotFound))?;
            Ok(Done::Attr(attr(&tx.inode(ino)?)))
        }
        Request::ReadDir { dir } => read_dir(tx, dir),
        Request::Create { dir, name, mode, uid, gid, rdev, now } => create(tx, dir, &name, mode, uid, gid, now, |_, inode| {
            if matches!(mode & S_IFMT, S_IFCHR | S_IFBLK) {
                put64(&mut inode.raw, 24, rdev);
            }
            Ok(())
        }),
        Request::Symlink { dir, name, target, uid, gid, now } => {
            let t = target.as_bytes();
            if t.is_empty() || t.len() >= BS {
                return fail(if t.is_empty() { FsErr::NotFound } else { FsErr::NameTooLong });
            }
            create(tx, dir, &name, S_IFLNK | 0o777, uid, gid, now, |tx, inode| {
                if t.len() <= INODE_SIZE - 96 {
                    inode.raw.get_mut(96..96 + t.len()).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(t);
                } else {
                    tx.charge(1)?;
                    let b = tx.modify(data_block(inode.ino, 0))?;
                    b.fill(0);
                    b.get_mut(..t.len()).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(t);
                    inode.set_blocks(1);
                }
                inode.set_size(t.len() as u64);
                Ok(())
            })
        }
        Request::Link { dir, name, ino, replace, now } => link(tx, dir, &name, ino, replace, now),
        Request::Unlink { dir, name, now } => unlink(tx, dir, &name, now),
        Request::Release { ino, .. } => release(tx, ino).map(|()| Done::Unit),
        Request::SetAttr { ino, set, now } => set_attr(tx, ino, set, now),
        Request::Truncate { ino, size, now } => truncate(tx, ino, size, now),
        Request::Map { ino, first, count } => {
            let inode = tx.inode(ino)?;
            let last = first.saturating_add(u64::from(count).min(MAX_RANGE));
            let mut out = Vec::new();
            for n in first..last {
                out.push(if present(tx, &inode, n)? { data_block(ino, n) } else { 0 });
            }
            Ok(Done::Map(out))
        }
        Request::Write { ino, offset, len, now } => write(tx, ino, offset, len, now),
        Request::Exchange { a_dir, a_name, b_dir, b_name, now } => exchange(tx, a_dir, &a_name, b_dir, &b_name, now).map(|()| Done::Unit),
        Request::ReadLink { ino } => {
            let inode = tx.inode(ino)?;
            if inode.kind() != S_IFLNK {
                return fail(FsErr::Invalid);
            }
            let size = inode.size() as usize;
            let bytes = if size <= INODE_SIZE - 96 { inode.raw.get(96..96 + size) } else { tx.read(data_block(ino, 0))?.get(..size) };
            let bytes = bytes.ok_or(Stop::Fail(FsErr::Corrupt))?;
            Ok(Done::Text(String::from_utf8_lossy(bytes).into_owned()))
        }
    }
}

/// Formats a fresh store, or takes up the file system already in it.
fn mount(tx: &mut Tx, text: &str, now: Time) -> R<Done> {
    let o = options(text)?;
    if get64(tx.read(0)?, 0) == MAGIC {
        return Ok(Done::Info(info(&tx.super_block()?)));
    }
    if tx.read(0)?.iter().any(|&b| b != 0) {
        return fail(FsErr::NotSupported);
    }
    let s = Super { next_ino: ROOT + 1, inodes: 1, blocks: 0, max_blocks: o.max_blocks, max_inodes: o.max_inodes };
    tx.put_super(&s)?;
    let mut root = Inode { ino: ROOT, raw: [0; INODE_SIZE] };
    put32(&mut root.raw, 0, S_IFDIR | o.mode);
    put32(&mut root.raw, 8, o.uid);
    put32(&mut root.raw, 12, o.gid);
    root.set_links(2);
    root.set_parent(ROOT);
    for at in [ATIME, MTIME, CTIME] {
        root.set_time(at, now);
    }
    tx.put_inode(&root)?;
    Ok(Done::Info(info(&s)))
}

// --- file blocks ---------------------------------------------------------

fn present(tx: &Tx, inode: &Inode, n: u64) -> R<bool> {
    let k = n / CHUNK;
    if inode.kind() != S_IFREG || !inode.has_chunk(k) {
        return Ok(false);
    }
    let map = tx.read(bitmap_block(inode.ino, k))?;
    let bit = (n % CHUNK) as usize;
    Ok(map.get(bit / 8).is_some_and(|&b| b & (1 << (bit % 8)) != 0))
}

/// Marks file block `n` present (`true`) or gone; answers whether it
/// changed.
fn mark(tx: &mut Tx, inode: &mut Inode, n: u64, on: bool) -> R<bool> {
    let k = n / CHUNK;
    if k >= CHUNKS {
        return fail(FsErr::TooBig);
    }
    if !on && !inode.has_chunk(k) {
        return Ok(false);
    }
    let b = bitmap_block(inode.ino, k);
    if on && !inode.has_chunk(k) {
        tx.modify(b)?.fill(0); // a chunk not used before (its block may hold old bits)
        inode.set_chunk(k, true);
    }
    let map = tx.modify(b)?;
    let bit = (n % CHUNK) as usize;
    let byte = map.get_mut(bit / 8).ok_or(Stop::Fail(FsErr::Corrupt))?;
    let was = *byte & (1 << (bit % 8)) != 0;
    if on { *byte |= 1 << (bit % 8) } else { *byte &= !(1 << (bit % 8)) }
    if !on && map.iter().all(|&x| x == 0) {
        inode.set_chunk(k, false);
        tx.free(b);
    }
    Ok(was != on)
}

/// Frees file blocks from `keep` on.
fn free_from(tx: &mut Tx, inode: &mut Inode, keep: u64) -> R<()> {
    let chunks: Vec<u64> = (keep / CHUNK..CHUNKS).filter(|&k| inode.has_chunk(k)).collect();
    tx.need_all(chunks.iter().map(|&k| bitmap_block(inode.ino, k)))?;
    let mut freed = 0u64;
    for k in chunks {
        let map = tx.read(bitmap_block(inode.ino, k))?.to_vec();
        for (i, &byte) in map.iter().enumerate() {
            for bit in 0..8 {
                let n = k * CHUNK + (i * 8 + bit) as u64;
                if byte & (1 << bit) != 0 && n >= keep && mark(tx, inode, n, false)? {
                    tx.free(data_block(inode.ino, n));
                    freed += 1;
                }
            }
        }
    }
    inode.set_blocks(inode.blocks().saturating_sub(freed));
    tx.charge(-(freed as i64))
}

fn write(tx: &mut Tx, ino: u64, offset: u64, len: u64, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    if inode.kind() != S_IFREG {
        return fail(if inode.is_dir() { FsErr::IsDir } else { FsErr::Invalid });
    }
    let end = offset.checked_add(len).filter(|&e| e <= MAX_SIZE).ok_or(Stop::Fail(FsErr::TooBig))?;
    let bs = BS as u64;
    let first = offset / bs;
    let last = if len == 0 { first } else { ((end - 1) / bs + 1).min(first + MAX_RANGE) };
    let mut out = Vec::new();
    let mut added = 0u64;
    for n in first..last {
        if present(tx, &inode, n)? {
            out.push(data_block(ino, n));
            continue;
        }
        match tx.charge(1) {
            Ok(()) => {}
            Err(Stop::Fail(FsErr::NoSpace)) if !out.is_empty() => break,
            Err(e) => return Err(e),
        }
        mark(tx, &mut inode, n, true)?;
        added += 1;
        out.push(data_block(ino, n) | FRESH);
    }
    inode.set_blocks(inode.blocks() + added);
    let new_end = end.min((first + out.len() as u64) * bs);
    if new_end > inode.size() {
        inode.set_size(new_end);
    }
    inode.set_time(MTIME, now);
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Blocks(attr(&inode), out))
}

fn truncate(tx: &mut Tx, ino: u64, size: u64, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    match inode.kind() {
        S_IFREG => {}
        S_IFDIR => return fail(FsErr::IsDir),
        _ => return fail(FsErr::Invalid),
    }
    if size > MAX_SIZE {
        return fail(FsErr::TooBig);
    }
    let bs = BS as u64;
    let mut tail = Vec::new();
    if size < inode.size() {
        free_from(tx, &mut inode, size.div_ceil(bs))?;
        if !size.is_multiple_of(bs) && present(tx, &inode, size / bs)? {
            tail.push(data_block(ino, size / bs));
        }
    }
    inode.set_size(size);
    inode.set_time(MTIME, now);
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Blocks(attr(&inode), tail))
}

fn set_attr(tx: &mut Tx, ino: u64, set: SetAttr, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    if let Some(perm) = set.perm {
        let mode = inode.kind() | (perm & 0o7777);
        put32(&mut inode.raw, 0, mode);
    }
    if let Some(uid) = set.uid {
        put32(&mut inode.raw, 8, uid);
    }
    if let Some(gid) = set.gid {
        put32(&mut inode.raw, 12, gid);
    }
    if let Some(t) = set.atime {
        inode.set_time(ATIME, t);
    }
    if let Some(t) = set.mtime {
        inode.set_time(MTIME, t);
    }
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Attr(attr(&inode)))
}

// --- directories ---------------------------------------------------------

/// Where a name is: inode, block, slot.
type Found = (u64, u64, usize);
/// A free entry slot: block, slot.
type Spot = (u64, usize);

fn dir_blocks(tx: &Tx, dir: &Inode) -> R<Vec<u64>> {
    if !dir.is_dir() {
        return fail(FsErr::NotDir);
    }
    let n = dir.size() / BS as u64;
    if !dir.size().is_multiple_of(BS as u64) || n > DIR_MAX_BLOCKS {
        return fail(FsErr::Corrupt);
    }
    let blocks: Vec<u64> = (0..n).map(|i| data_block(dir.ino, i)).collect();
    tx.need_all(blocks.iter().copied())?;
    Ok(blocks)
}

/// Entry `slot` of a directory block: inode, type, name.
fn entry(blk: &[u8], slot: usize) -> R<Option<(u64, u8, &[u8])>> {
    let at = slot * SLOT;
    let ino = get64(blk, at);
    if ino == 0 {
        return Ok(None);
    }
    let kind = blk.get(at + 8).copied().unwrap_or(0);
    let len = usize::from(blk.get(at + 9).copied().unwrap_or(0));
    let name = blk.get(at + 10..at + 10 + len).ok_or(Stop::Fail(FsErr::Corrupt))?;
    if ino >= MAX_INO || name.is_empty() || name.contains(&0) || name.contains(&b'/') {
        return fail(FsErr::Corrupt);
    }
    Ok(Some((ino, kind, name)))
}

/// One pass over `dir`: where `name` is, and the first free slot.
fn scan(tx: &Tx, dir: &Inode, name: &[u8]) -> R<(Option<Found>, Option<Spot>)> {
    let mut free = None;
    for b in dir_blocks(tx, dir)? {
        let blk = tx.read(b)?;
        for slot in 0..SLOTS {
            match entry(blk, slot)? {
                Some((ino, _, n)) if n == name => return Ok((Some((ino, b, slot)), free)),
                Some(_) => {}
                None => free = free.or(Some((b, slot))),
            }
        }
    }
    Ok((None, free))
}

fn read_dir(tx: &Tx, dir: u64) -> R<Done> {
    let d = tx.inode(dir)?;
    let mut out = Entries::default();
    for b in dir_blocks(tx, &d)? {
        let blk = tx.read(b)?;
        for slot in 0..SLOTS {
            if let Some((ino, kind, name)) = entry(blk, slot)? {
                out.names.push_str(core::str::from_utf8(name).map_err(|_| Stop::Fail(FsErr::Corrupt))?);
                out.names.push('\0');
                out.inos.push(ino);
                out.kinds.push(kind);
            }
        }
    }
    Ok(Done::Entries(out))
}

fn d_type(mode: u32) -> u8 {
    ((mode & S_IFMT) >> 12) as u8
}

fn check_name(name: &str) -> R<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return fail(FsErr::Invalid);
    }
    if name.len() > NAME_MAX {
        return fail(FsErr::NameTooLong);
    }
    Ok(())
}

fn touch(inode: &mut Inode, now: Time) {
    inode.set_time(MTIME, now);
    inode.set_time(CTIME, now);
}

/// Adds `name` → `ino` at `free` (from `scan`) or in a new block.
fn add_entry(tx: &mut Tx, dir: &mut Inode, name: &str, ino: u64, kind: u8, free: Option<Spot>) -> R<()> {
    #[cfg(feature = "faulty")]
    if name.starts_with("tmpfs-fault") {
        // The faulty build's bug: an index out of bounds, a panic the
        // cell boundary contains.
        let probe: [u8; 1] = [0];
        #[allow(clippy::indexing_slicing)]
        let _ = probe[name.len()];
    }
    let (b, slot) = match free {
        Some(spot) => spot,
        None => {
            let n = dir.size() / BS as u64;
            if n >= DIR_MAX_BLOCKS {
                return fail(FsErr::NoSpace);
            }
            tx.charge(1)?;
            let b = data_block(dir.ino, n);
            tx.modify(b)?.fill(0);
            dir.set_size(dir.size() + BS as u64);
            dir.set_blocks(dir.blocks() + 1);
            (b, 0)
        }
    };
    let at = slot * SLOT;
    let blk = tx.modify(b)?;
    let dst = blk.get_mut(at..at + SLOT).ok_or(Stop::Fail(FsErr::Corrupt))?;
    dst.fill(0);
    put64(dst, 0, ino);
    if let Some(k) = dst.get_mut(8) {
        *k = kind;
    }
    if let Some(l) = dst.get_mut(9) {
        *l = name.len() as u8;
    }
    dst.get_mut(10..10 + name.len()).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(name.as_bytes());
    Ok(())
}

fn clear_entry(tx: &mut Tx, b: u64, slot: usize) -> R<()> {
    tx.modify(b)?.get_mut(slot * SLOT..(slot + 1) * SLOT).ok_or(Stop::Fail(FsErr::Corrupt))?.fill(0);
    Ok(())
}

fn live_dir(tx: &Tx, dir: u64) -> R<Inode> {
    let d = tx.inode(dir)?;
    if !d.is_dir() {
        return fail(FsErr::NotDir);
    }
    if d.links() == 0 {
        return fail(FsErr::NotFound); // a removed directory
    }
    Ok(d)
}

#[allow(clippy::too_many_arguments)]
fn create(tx: &mut Tx, dir: u64, name: &str, mode: u32, uid: u32, gid: u32, now: Time, fill: impl FnOnce(&mut Tx, &mut Inode) -> R<()>) -> R<Done> {
    check_name(name)?;
    let mut d = live_dir(tx, dir)?;
    let (existing, free) = scan(tx, &d, name.as_bytes())?;
    if existing.is_some() {
        return fail(FsErr::Exists);
    }
    let is_dir = mode & S_IFMT == S_IFDIR;
    if is_dir && d.links() >= LINK_MAX {
        return fail(FsErr::TooManyLinks);
    }
    let mut s = tx.super_block()?;
    if s.inodes >= s.max_inodes || s.next_ino >= MAX_INO {
        return fail(FsErr::NoSpace);
    }
    let ino = s.next_ino;
    s.next_ino += 1;
    s.inodes += 1;
    tx.put_super(&s)?;
    let mut inode = Inode { ino, raw: [0; INODE_SIZE] };
    put32(&mut inode.raw, 0, mode);
    put32(&mut inode.raw, 8, uid);
    put32(&mut inode.raw, 12, gid);
    for at in [ATIME, MTIME, CTIME] {
        inode.set_time(at, now);
    }
    inode.set_links(if is_dir { 2 } else { 1 });
    if is_dir {
        inode.set_parent(dir);
    }
    fill(tx, &mut inode)?;
    tx.put_inode(&inode)?;
    add_entry(tx, &mut d, name, ino, d_type(mode), free)?;
    if is_dir {
        d.set_links(d.links() + 1);
    }
    touch(&mut d, now);
    tx.put_inode(&d)?;
    Ok(Done::Attr(attr(&inode)))
}

fn link(tx: &mut Tx, dir: u64, name: &str, ino: u64, replace: bool, now: Time) -> R<Done> {
    check_name(name)?;
    let mut d = live_dir(tx, dir)?;
    let mut inode = tx.inode(ino)?;
    // An inode with no link left is linked again only when the kernel
    // allows it (an O_TMPFILE file; others are ENOENT there, as Linux's
    // vfs_link decides).
    let moving_dir = inode.is_dir();
    if !moving_dir && inode.links() >= LINK_MAX {
        return fail(FsErr::TooManyLinks);
    }
    let (existing, free) = scan(tx, &d, name.as_bytes())?;
    let mut replaced = None;
    match existing {
        Some(_) if !replace => return fail(FsErr::Exists),
        Some((old, _, _)) if old == ino => return Ok(Done::Maybe(None)),
        Some((old, b, slot)) => {
            set_entry(tx, b, slot, ino, d_type(inode.mode()))?;
            let mut victim = tx.inode(old)?;
            if victim.is_dir() {
                victim.set_links(0);
                d.set_links(d.links().saturating_sub(1));
            } else {
                victim.set_links(victim.links().saturating_sub(1));
            }
            victim.set_time(CTIME, now);
            tx.put_inode(&victim)?;
            replaced = Some(attr(&victim));
        }
        None => add_entry(tx, &mut d, name, ino, d_type(inode.mode()), free)?,
    }
    if moving_dir {
        if d.links() >= LINK_MAX {
            return fail(FsErr::TooManyLinks);
        }
        inode.set_parent(dir);
        d.set_links(d.links() + 1);
    } else {
        inode.set_links(inode.links() + 1);
    }
    touch(&mut d, now);
    tx.put_inode(&d)?;
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Maybe(replaced))
}

/// Points entry `slot` of block `b` at `ino` of type `kind`.
fn set_entry(tx: &mut Tx, b: u64, slot: usize, ino: u64, kind: u8) -> R<()> {
    let blk = tx.modify(b)?;
    put64(blk, slot * SLOT, ino);
    *blk.get_mut(slot * SLOT + 8).ok_or(Stop::Fail(FsErr::Corrupt))? = kind;
    Ok(())
}

fn exchange(tx: &mut Tx, a_dir: u64, a_name: &str, b_dir: u64, b_name: &str, now: Time) -> R<()> {
    let (found_a, _) = scan(tx, &live_dir(tx, a_dir)?, a_name.as_bytes())?;
    let (found_b, _) = scan(tx, &live_dir(tx, b_dir)?, b_name.as_bytes())?;
    let ((ia, ba, sa), (ib, bb, sb)) = (found_a.ok_or(Stop::Fail(FsErr::NotFound))?, found_b.ok_or(Stop::Fail(FsErr::NotFound))?);
    if ia == ib {
        return Ok(());
    }
    let (mut a, mut b) = (tx.inode(ia)?, tx.inode(ib)?);
    set_entry(tx, ba, sa, ib, d_type(b.mode()))?;
    set_entry(tx, bb, sb, ia, d_type(a.mode()))?;
    if a.is_dir() {
        a.set_parent(b_dir);
    }
    if b.is_dir() {
        b.set_parent(a_dir);
    }
    a.set_time(CTIME, now);
    b.set_time(CTIME, now);
    tx.put_inode(&a)?;
    tx.put_inode(&b)?;
    // Each directory gains the other's subdirectory link and loses its own.
    let (a_is_dir, b_is_dir) = (u32::from(a.is_dir()), u32::from(b.is_dir()));
    let mut da = tx.inode(a_dir)?;
    if a_dir != b_dir {
        da.set_links((da.links() + b_is_dir).saturating_sub(a_is_dir));
    }
    touch(&mut da, now);
    tx.put_inode(&da)?;
    if a_dir != b_dir {
        let mut db = tx.inode(b_dir)?;
        db.set_links((db.links() + a_is_dir).saturating_sub(b_is_dir));
        touch(&mut db, now);
        tx.put_inode(&db)?;
    }
    Ok(())
}

fn unlink(tx: &mut Tx, dir: u64, name: &str, now: Time) -> R<Done> {
    let mut d = tx.inode(dir)?;
    let (found, _) = scan(tx, &d, name.as_bytes())?;
    let (ino, b, slot) = found.ok_or(Stop::Fail(FsErr::NotFound))?;
    clear_entry(tx, b, slot)?;
    let mut inode = tx.inode(ino)?;
    if inode.is_dir() {
        d.set_links(d.links().saturating_sub(1));
        // Removed for good unless a rename linked it elsewhere first (its
        // parent moved) or it has another name here.
        if inode.parent() == dir && scan_ino(tx, &d, ino)?.is_none() {
            inode.set_links(0);
        }
    } else {
        inode.set_links(inode.links().saturating_sub(1));
    }
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    touch(&mut d, now);
    tx.put_inode(&d)?;
    Ok(Done::Attr(attr(&inode)))
}

fn scan_ino(tx: &Tx, dir: &Inode, ino: u64) -> R<Option<()>> {
    for b in dir_blocks(tx, dir)? {
        let blk = tx.read(b)?;
        for slot in 0..SLOTS {
            if matches!(entry(blk, slot)?, Some((i, ..)) if i == ino) {
                return Ok(Some(()));
            }
        }
    }
    Ok(None)
}

fn release(tx: &mut Tx, ino: u64) -> R<()> {
    let mut inode = tx.inode(ino)?;
    if inode.links() != 0 {
        return fail(FsErr::Invalid);
    }
    match inode.kind() {
        S_IFREG => free_from(tx, &mut inode, 0)?,
        S_IFDIR => {
            let n = inode.size() / BS as u64;
            for i in 0..n.min(DIR_MAX_BLOCKS) {
                tx.free(data_block(ino, i));
            }
            tx.charge(-(n.min(DIR_MAX_BLOCKS) as i64))?;
        }
        S_IFLNK if inode.blocks() != 0 => {
            tx.free(data_block(ino, 0));
            tx.charge(-1)?;
        }
        _ => {}
    }
    inode.raw = [0; INODE_SIZE];
    tx.put_inode(&inode)?;
    let mut s = tx.super_block()?;
    s.inodes = s.inodes.saturating_sub(1);
    tx.put_super(&s)
}
