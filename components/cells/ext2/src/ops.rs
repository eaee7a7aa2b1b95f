//! The requests: block mapping and allocation, directories, inodes.

use crate::disk::*;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use tessera_cell_api::fs::{Attr, Done, Entries, FRESH, FsErr, Info, Outcome, Reply, Request, SetAttr, Time};

/// Blocks a `Map` or `Write` handles in one call.
pub const MAX_RANGE: u64 = 1024;

/// Serves one request (see `tessera_cell_api::fs`).
pub fn serve(request: Request, block_size: u32, index: &[[u64; 2]], data: &[u8]) -> Reply {
    let probe = matches!(request, Request::Probe);
    let result = Tx::open(index, data, block_size, probe).and_then(|mut tx| {
        let done = run(&mut tx, request)?;
        Ok((done, tx))
    });
    match result {
        Ok((done, tx)) => {
            let (writes, written, freed) = tx.into_writes();
            Reply { outcome: Outcome::Done(done), writes, written, freed }
        }
        Err(Stop::Need(blocks)) => Reply { outcome: Outcome::Need(blocks), writes: Vec::new(), written: Vec::new(), freed: Vec::new() },
        Err(Stop::Fail(e)) => Reply { outcome: Outcome::Failed(e), writes: Vec::new(), written: Vec::new(), freed: Vec::new() },
    }
}

fn writable(tx: &Tx) -> R<()> {
    if tx.sb.read_only { Err(Stop::Fail(FsErr::ReadOnly)) } else { Ok(()) }
}

fn run(tx: &mut Tx, request: Request) -> R<Done> {
    match request {
        Request::Probe | Request::Statfs => Ok(Done::Info(info(tx))),
        Request::Mount { write, now, .. } => {
            if write && !tx.sb.read_only {
                let s = tx.super_mut()?;
                put32(s, 44, now.sec as u32); // s_mtime
                put16(s, 52, le16(s, 52).wrapping_add(1)); // s_mnt_count
                put16(s, 58, le16(s, 58) & !STATE_VALID);
            }
            Ok(Done::Info(info(tx)))
        }
        Request::Unmount { now } => {
            if !tx.sb.read_only {
                let s = tx.super_mut()?;
                put32(s, 48, now.sec as u32); // s_wtime
                put16(s, 58, le16(s, 58) | STATE_VALID);
            }
            Ok(Done::Unit)
        }
        Request::Stat { ino } => Ok(Done::Attr(attr(tx, &tx.inode(ino)?))),
        Request::Lookup { dir, name } => {
            let d = tx.inode(dir)?;
            let (ino, ..) = find(tx, &d, name.as_bytes())?.ok_or(Stop::Fail(FsErr::NotFound))?;
            Ok(Done::Attr(attr(tx, &tx.inode(ino)?)))
        }
        Request::ReadDir { dir } => read_dir(tx, dir),
        Request::Create { dir, name, mode, uid, gid, rdev, now } => {
            writable(tx)?;
            create(tx, dir, &name, mode, uid, gid, now, |tx, inode| {
                if matches!(mode & S_IFMT, S_IFCHR | S_IFBLK) {
                    inode.set_rdev(rdev);
                }
                if mode & S_IFMT == S_IFDIR {
                    let b = alloc_block(tx, 0, inode.ino)?;
                    let bs = tx.sb.block_size;
                    let filetype = tx.sb.filetype;
                    let blk = tx.fresh(b)?;
                    put_entry(blk, 0, inode.ino, 12, b".", if filetype { 2 } else { 0 });
                    put_entry(blk, 12, dir, bs - 12, b"..", if filetype { 2 } else { 0 });
                    inode.set_block(0, b);
                    inode.set_sectors((bs / 512) as u32);
                    inode.set_size(bs as u64);
                    inode.set_links(2);
                }
                Ok(())
            })
        }
        Request::Symlink { dir, name, target, uid, gid, now } => {
            writable(tx)?;
            let t = target.as_bytes();
            if t.is_empty() || t.len() >= tx.sb.block_size {
                return Err(Stop::Fail(if t.is_empty() { FsErr::NotFound } else { FsErr::NameTooLong }));
            }
            create(tx, dir, &name, S_IFLNK | 0o777, uid, gid, now, |tx, inode| {
                if t.len() < 60 {
                    inode.raw.get_mut(40..40 + t.len()).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(t);
                } else {
                    let b = alloc_block(tx, 0, inode.ino)?;
                    tx.fresh(b)?.get_mut(..t.len()).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(t);
                    inode.set_block(0, b);
                    inode.set_sectors((tx.sb.block_size / 512) as u32);
                }
                inode.set_size(t.len() as u64);
                Ok(())
            })
        }
        Request::Link { dir, name, ino, replace, now } => {
            writable(tx)?;
            link(tx, dir, &name, ino, replace, now)
        }
        Request::Unlink { dir, name, now } => {
            writable(tx)?;
            unlink(tx, dir, &name, now)
        }
        Request::Release { ino, now } => {
            writable(tx)?;
            release(tx, ino, now).map(|()| Done::Unit)
        }
        Request::SetAttr { ino, set, now } => {
            writable(tx)?;
            set_attr(tx, ino, set, now)
        }
        Request::Truncate { ino, size, now } => {
            writable(tx)?;
            truncate(tx, ino, size, now)
        }
        Request::Map { ino, first, count } => {
            let inode = tx.inode(ino)?;
            let count = u64::from(count).min(MAX_RANGE);
            let mut out = Vec::with_capacity(count as usize);
            for l in first..first.saturating_add(count) {
                out.push(bmap(tx, &inode, l)?);
            }
            Ok(Done::Map(out))
        }
        Request::Write { ino, offset, len, now } => {
            writable(tx)?;
            write(tx, ino, offset, len, now)
        }
        Request::ReadLink { ino } => read_link(tx, ino),
        // Linux's ext2 takes no RENAME_EXCHANGE either.
        Request::Exchange { .. } => Err(Stop::Fail(FsErr::Invalid)),
    }
}

fn info(tx: &Tx) -> Info {
    let sb = &tx.sb;
    let end = sb.label.iter().position(|&c| c == 0).unwrap_or(sb.label.len());
    Info {
        block_size: sb.block_size as u32,
        blocks: u64::from(sb.blocks),
        free_blocks: u64::from(sb.free_blocks),
        reserved_blocks: u64::from(sb.reserved),
        inodes: u64::from(sb.inodes),
        free_inodes: u64::from(sb.free_inodes),
        root: ROOT_INO,
        read_only: sb.read_only,
        label: String::from_utf8_lossy(sb.label.get(..end).unwrap_or(&[])).into_owned(),
    }
}

fn attr(tx: &Tx, i: &Inode) -> Attr {
    let rdev = if matches!(i.kind(), S_IFCHR | S_IFBLK) { i.rdev() } else { 0 };
    let _ = tx;
    Attr {
        ino: i.ino,
        mode: i.mode(),
        nlink: i.links(),
        uid: i.uid(),
        gid: i.gid(),
        size: i.size(),
        blocks: u64::from(i.sectors()),
        rdev,
        atime: i.time(ATIME),
        mtime: i.time(MTIME),
        ctime: i.time(CTIME),
    }
}

// --- block mapping -------------------------------------------------------

/// Where file block `l` hangs: the slot in the inode's block array and
/// the indexes in each level of indirect blocks below it.
fn path(tx: &Tx, l: u64) -> R<(usize, Vec<u64>)> {
    let p = tx.sb.per_block();
    if l < 12 {
        return Ok((l as usize, Vec::new()));
    }
    let l = l - 12;
    if l < p {
        return Ok((12, vec![l]));
    }
    let l = l - p;
    if l < p * p {
        return Ok((13, vec![l / p, l % p]));
    }
    let l = l - p * p;
    if l < p * p * p {
        return Ok((14, vec![l / (p * p), (l / p) % p, l % p]));
    }
    Err(Stop::Fail(FsErr::TooBig))
}

/// Largest file size: what the block tree reaches, and what the 32-bit
/// count of 512-byte sectors can account for.
pub fn max_size(tx: &Tx) -> u64 {
    let p = tx.sb.per_block();
    let bs = tx.sb.block_size as u64;
    let tree = (12 + p + p * p + p * p * p) * bs;
    tree.min((u64::from(u32::MAX) * 512) / bs * bs - 4 * bs)
}

/// The disk block of file block `l` (0: a hole).
fn bmap(tx: &Tx, inode: &Inode, l: u64) -> R<u64> {
    let (slot, idx) = path(tx, l)?;
    let mut b = inode.block(slot);
    for i in idx {
        if b == 0 {
            return Ok(0);
        }
        b = u64::from(le32(tx.read(b)?, 4 * i as usize));
    }
    if b != 0 {
        tx.check(b)?;
    }
    Ok(b)
}

/// Allocates a block near `goal` (0: in inode `ino`'s group).
fn alloc_block(tx: &mut Tx, goal: u64, ino: u64) -> R<u64> {
    let sb = &tx.sb;
    let fdb = u64::from(sb.first_data_block);
    let bpg = u64::from(sb.blocks_per_group);
    let (g0, bit0) = if goal >= fdb && goal < u64::from(sb.blocks) {
        (((goal - fdb) / bpg) as u32, ((goal - fdb) % bpg) as u32)
    } else {
        (((ino.saturating_sub(1)) / u64::from(sb.inodes_per_group)) as u32 % sb.groups.max(1), 0)
    };
    let groups = sb.groups;
    for k in 0..groups {
        let g = (g0 + k) % groups;
        let grp = tx.group(g)?;
        if grp.free_blocks == 0 {
            continue;
        }
        let n = tx.sb.blocks_in_group(g);
        let start = if k == 0 { bit0 } else { 0 };
        let found = {
            let map = tx.read(grp.block_bitmap)?;
            find_zero(map, start, n).or_else(|| find_zero(map, 0, start))
        };
        let Some(bit) = found else { continue };
        let map = tx.modify(grp.block_bitmap)?;
        set_bit(map, bit, true);
        tx.count(g, -1, 0, 0)?;
        return tx.check(fdb + u64::from(g) * bpg + u64::from(bit));
    }
    Err(Stop::Fail(FsErr::NoSpace))
}

fn find_zero(map: &[u8], from: u32, to: u32) -> Option<u32> {
    let mut bit = from;
    while bit < to {
        let byte = *map.get((bit / 8) as usize)?;
        if byte == 0xff && bit.is_multiple_of(8) {
            bit += 8;
            continue;
        }
        if byte & (1 << (bit % 8)) == 0 {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

fn set_bit(map: &mut [u8], bit: u32, on: bool) -> bool {
    let Some(byte) = map.get_mut((bit / 8) as usize) else { return false };
    let mask = 1u8 << (bit % 8);
    let was = *byte & mask != 0;
    if on { *byte |= mask } else { *byte &= !mask }
    was
}

/// Frees block `b` (a doubly freed block is corruption).
fn free_block(tx: &mut Tx, b: u64) -> R<()> {
    tx.check(b)?;
    let fdb = u64::from(tx.sb.first_data_block);
    let bpg = u64::from(tx.sb.blocks_per_group);
    let g = ((b - fdb) / bpg) as u32;
    let grp = tx.group(g)?;
    let map = tx.modify(grp.block_bitmap)?;
    if !set_bit(map, ((b - fdb) % bpg) as u32, false) {
        return corrupt();
    }
    tx.count(g, 1, 0, 0)?;
    tx.forget(b);
    tx.freed.push(b);
    Ok(())
}

/// The disk block of file block `l`, allocating it (and the indirect
/// blocks on the way) when missing; `FRESH` marks a new data block.
fn bmap_alloc(tx: &mut Tx, inode: &mut Inode, l: u64, goal: u64) -> R<u64> {
    let (slot, idx) = path(tx, l)?;
    let sectors = (tx.sb.block_size / 512) as u32;
    let mut fresh_data = false;
    let mut b = inode.block(slot);
    if b != 0 {
        tx.check(b)?;
    } else {
        b = alloc_block(tx, goal, inode.ino)?;
        inode.set_block(slot, b);
        inode.set_sectors(inode.sectors().saturating_add(sectors));
        if idx.is_empty() {
            fresh_data = true;
        } else {
            tx.fresh(b)?;
        }
    }
    let levels = idx.len();
    for (depth, i) in idx.into_iter().enumerate() {
        let at = 4 * i as usize;
        let next = u64::from(le32(tx.read(b)?, at));
        let next = if next == 0 {
            let n = alloc_block(tx, b + 1, inode.ino)?;
            inode.set_sectors(inode.sectors().saturating_add(sectors));
            put32(tx.modify(b)?, at, n as u32);
            if depth + 1 == levels {
                fresh_data = true;
            } else {
                tx.fresh(n)?;
            }
            n
        } else {
            tx.check(next)?
        };
        b = next;
    }
    Ok(if fresh_data { b | FRESH } else { b })
}

/// Frees every block of `inode` from file block `keep` on.
fn free_from(tx: &mut Tx, inode: &mut Inode, keep: u64) -> R<()> {
    for i in (keep.min(12) as usize)..12 {
        let b = inode.block(i);
        if b != 0 {
            free_block(tx, b)?;
            inode.set_block(i, 0);
            drop_sectors(tx, inode, 1);
        }
    }
    let p = tx.sb.per_block();
    let mut base = 12u64;
    for (slot, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
        let span = p.pow(level);
        if keep < base + span {
            let from = keep.saturating_sub(base);
            let b = inode.block(slot);
            if b != 0 {
                let mut freed = 0u32;
                if free_tree(tx, b, level, from, &mut freed, 0)? {
                    inode.set_block(slot, 0);
                }
                drop_sectors(tx, inode, freed);
            }
        }
        base += span;
    }
    Ok(())
}

fn drop_sectors(tx: &Tx, inode: &mut Inode, blocks: u32) {
    let sectors = (tx.sb.block_size / 512) as u32;
    inode.set_sectors(inode.sectors().saturating_sub(blocks.saturating_mul(sectors)));
}

/// Frees the tree of indirect block `b` (`level` deep) from its entry
/// `from` on; true when `b` itself went. `freed` counts blocks.
fn free_tree(tx: &mut Tx, b: u64, level: u32, from: u64, freed: &mut u32, depth: u32) -> R<bool> {
    if depth > 3 {
        return corrupt();
    }
    let p = tx.sb.per_block();
    let child_span = p.pow(level - 1);
    let first = (from / child_span) as usize;
    let children: Vec<u64> = {
        let blk = tx.read(b)?;
        (0..p as usize).map(|i| u64::from(le32(blk, 4 * i))).collect()
    };
    if level > 1 {
        tx.need_all(children.get(first..).unwrap_or(&[]))?;
    }
    for (i, &c) in children.iter().enumerate().skip(first) {
        if c == 0 {
            continue;
        }
        let child_from = if i == first { from % child_span } else { 0 };
        let gone = if level == 1 {
            free_block(tx, c)?;
            *freed += 1;
            true
        } else {
            free_tree(tx, c, level - 1, child_from, freed, depth + 1)?
        };
        if gone && from != 0 {
            put32(tx.modify(b)?, 4 * i, 0);
        }
    }
    if from == 0 {
        free_block(tx, b)?;
        *freed += 1;
        return Ok(true);
    }
    Ok(false)
}

// --- directories ---------------------------------------------------------

/// The disk blocks of directory `dir` (a hole is corruption), all asked
/// for at once.
fn dir_blocks(tx: &Tx, dir: &Inode) -> R<Vec<u64>> {
    if !dir.is_dir() {
        return Err(Stop::Fail(FsErr::NotDir));
    }
    let bs = tx.sb.block_size as u64;
    let size = dir.size();
    if !size.is_multiple_of(bs) || size > (1 << 32) {
        return corrupt();
    }
    // At most 2^16 blocks: Linux's ext2 directories stay far below, and
    // a crafted size cannot make a listing of millions of entries.
    if size / bs > 1 << 16 {
        return corrupt();
    }
    let mut out = Vec::with_capacity((size / bs) as usize);
    for l in 0..size / bs {
        match bmap(tx, dir, l)? {
            0 => return corrupt(),
            b => out.push(b),
        }
    }
    // A block listed twice (crafted pointers) is corruption, not a
    // directory twice as long.
    let mut sorted = out.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w.first() == w.get(1)) {
        return corrupt();
    }
    tx.need_all(&out)?;
    Ok(out)
}

/// One entry as stored.
struct Dirent<'a> {
    ino: u64,
    name: &'a [u8],
    kind: u8,
}

/// An entry's offset, inode, record length, name length and type.
type RawEntry = (usize, u64, usize, usize, u8);

/// Where a name was found: inode, block, offset, and the offset of the
/// entry before it in that block.
type Found = (u64, u64, usize, Option<usize>);

/// Calls `f` with each entry of one directory block, checked, until it
/// answers `Some`.
fn each_entry<T>(tx: &Tx, blk: &[u8], mut f: impl FnMut(RawEntry) -> Option<T>) -> R<Option<T>> {
    let mut off = 0;
    let bs = tx.sb.block_size;
    let filetype = tx.sb.filetype;
    let inodes = u64::from(tx.sb.inodes);
    while off < bs {
        let ino = u64::from(le32(blk, off));
        let rec_len = usize::from(le16(blk, off + 4));
        let name_len = if filetype { usize::from(*blk.get(off + 6).unwrap_or(&0)) } else { usize::from(le16(blk, off + 6)) };
        let kind = if filetype { *blk.get(off + 7).unwrap_or(&0) } else { 0 };
        if rec_len < 12 && !(rec_len == 8 && name_len == 0 && ino == 0) || rec_len % 4 != 0 || off + rec_len > bs || (ino != 0 && 8 + name_len > rec_len) || ino > inodes {
            return corrupt();
        }
        if let Some(t) = f((off, ino, rec_len, name_len, kind)) {
            return Ok(Some(t));
        }
        off += rec_len;
    }
    Ok(None)
}

/// The entries of one directory block, checked.
fn entries(tx: &Tx, blk: &[u8]) -> R<Vec<RawEntry>> {
    let mut out = Vec::new();
    each_entry(tx, blk, |e| {
        out.push(e);
        None::<()>
    })?;
    Ok(out)
}

/// Room for a new entry: block, offset of the entry to split (or reuse),
/// the bytes that entry keeps, and its record length.
type Spot = (u64, usize, usize, usize);

/// One pass over `dir`: where `name` is, and the first place a new entry
/// of `name`'s length fits.
fn scan(tx: &Tx, dir: &Inode, name: &[u8]) -> R<(Option<Found>, Option<Spot>)> {
    let need = (8 + name.len() + 3) & !3;
    let mut spot = None;
    for b in dir_blocks(tx, dir)? {
        let blk = tx.read(b)?;
        let mut prev = None;
        let found = each_entry(tx, blk, |(off, ino, rec_len, name_len, _)| {
            if ino != 0 && name_len == name.len() && blk.get(off + 8..off + 8 + name_len) == Some(name) {
                return Some((ino, b, off, prev));
            }
            if spot.is_none() {
                let used = if ino == 0 { 0 } else { (8 + name_len + 3) & !3 };
                if rec_len - used >= need {
                    spot = Some((b, off, used, rec_len));
                }
            }
            prev = Some(off);
            None
        })?;
        if found.is_some() {
            return Ok((found, spot));
        }
    }
    Ok((None, spot))
}

fn dirent<'a>(blk: &'a [u8], e: RawEntry) -> Dirent<'a> {
    let (off, ino, _, name_len, kind) = e;
    Dirent { ino, name: blk.get(off + 8..off + 8 + name_len).unwrap_or(&[]), kind }
}

/// Finds `name` in `dir`: inode, block, offset, and the offset of the
/// entry before it in that block.
fn find(tx: &Tx, dir: &Inode, name: &[u8]) -> R<Option<Found>> {
    Ok(scan(tx, dir, name)?.0)
}

fn read_dir(tx: &Tx, dir: u64) -> R<Done> {
    let d = tx.inode(dir)?;
    let mut out = Entries::default();
    for b in dir_blocks(tx, &d)? {
        let blk = tx.read(b)?;
        for e in entries(tx, blk)? {
            let d = dirent(blk, e);
            if d.ino == 0 || d.name == b"." || d.name == b".." {
                continue;
            }
            if d.name.is_empty() || d.name.contains(&0) || d.name.contains(&b'/') {
                return corrupt();
            }
            out.names.push_str(&String::from_utf8_lossy(d.name));
            out.names.push('\0');
            out.inos.push(d.ino);
            out.kinds.push(match d.kind {
                1 => 8,
                2 => 4,
                3 => 2,
                4 => 6,
                5 => 1,
                6 => 12,
                7 => 10,
                _ => 0,
            });
        }
    }
    Ok(Done::Entries(out))
}

fn put_entry(blk: &mut [u8], off: usize, ino: u64, rec_len: usize, name: &[u8], kind: u8) {
    put32(blk, off, ino as u32);
    put16(blk, off + 4, rec_len as u16);
    if let Some(b) = blk.get_mut(off + 6) {
        *b = name.len() as u8;
    }
    if let Some(b) = blk.get_mut(off + 7) {
        *b = kind;
    }
    if let Some(n) = blk.get_mut(off + 8..off + 8 + name.len()) {
        n.copy_from_slice(name);
    }
}

fn file_type(tx: &Tx, mode: u32) -> u8 {
    if !tx.sb.filetype {
        return 0;
    }
    match mode & S_IFMT {
        S_IFREG => 1,
        S_IFDIR => 2,
        S_IFCHR => 3,
        S_IFBLK => 4,
        S_IFIFO => 5,
        S_IFSOCK => 6,
        S_IFLNK => 7,
        _ => 0,
    }
}

fn check_name(name: &str) -> R<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') || name == "." || name == ".." {
        return Err(Stop::Fail(FsErr::Invalid));
    }
    if name.len() > NAME_MAX {
        return Err(Stop::Fail(FsErr::NameTooLong));
    }
    Ok(())
}

/// Adds entry `name` → `ino` to `dir` (which must not have it) at
/// `spot` (from `scan`), or in a new block at the end when there is none.
fn add_entry(tx: &mut Tx, dir: &mut Inode, name: &[u8], ino: u64, kind: u8, spot: Option<Spot>, now: Time) -> R<()> {
    #[cfg(feature = "faulty")]
    if name.starts_with(b"ext2-fault") {
        // The faulty build's bug: an index out of bounds, a panic the
        // cell boundary contains.
        let probe: [u8; 1] = [0];
        #[allow(clippy::indexing_slicing)]
        let _ = probe[name.len()];
    }
    let bs = tx.sb.block_size;
    if let Some((b, off, used, rec_len)) = spot {
        let blk = tx.modify(b)?;
        if used == 0 {
            put_entry(blk, off, ino, rec_len, name, kind);
        } else {
            put16(blk, off + 4, used as u16);
            put_entry(blk, off + used, ino, rec_len - used, name, kind);
        }
        return touch_dir(tx, dir, now);
    }
    // A new block at the end.
    let l = dir.size() / bs as u64;
    let goal = if l > 0 { bmap(tx, dir, l - 1)? } else { 0 };
    let b = bmap_alloc(tx, dir, l, goal.saturating_add(u64::from(goal != 0)))? & !FRESH;
    let blk = tx.fresh(b)?;
    put_entry(blk, 0, ino, bs, name, kind);
    dir.set_size(dir.size() + bs as u64);
    touch_dir(tx, dir, now)
}

fn touch_dir(tx: &mut Tx, dir: &mut Inode, now: Time) -> R<()> {
    dir.set_time(MTIME, now);
    dir.set_time(CTIME, now);
    dir.set_flags(dir.flags() & !INDEX_FL);
    tx.put_inode(dir)
}

/// Removes the entry at `off` in block `b` (`prev`: the entry before it).
fn remove_entry(tx: &mut Tx, b: u64, off: usize, prev: Option<usize>) -> R<()> {
    let blk = tx.modify(b)?;
    match prev {
        Some(p) => {
            let len = le16(blk, off + 4);
            let merged = le16(blk, p + 4) + len;
            put16(blk, p + 4, merged);
        }
        None => put32(blk, off, 0),
    }
    Ok(())
}

/// Where directory `child`'s `..` entry is: block, offset, and the inode
/// it names.
fn dotdot(tx: &Tx, child: &Inode) -> R<(u64, usize, u64)> {
    let first = *dir_blocks(tx, child)?.first().ok_or(Stop::Fail(FsErr::Corrupt))?;
    let blk = tx.read(first)?;
    let e = *entries(tx, blk)?.get(1).ok_or(Stop::Fail(FsErr::Corrupt))?;
    if dirent(blk, e).name != b".." {
        return corrupt();
    }
    Ok((first, e.0, e.1))
}

/// Points directory `child`'s `..` at `parent`.
fn set_dotdot(tx: &mut Tx, child: &Inode, parent: u64) -> R<()> {
    let (block, off, _) = dotdot(tx, child)?;
    put32(tx.modify(block)?, off, parent as u32);
    Ok(())
}

// --- inodes --------------------------------------------------------------

fn alloc_inode(tx: &mut Tx, near: u64, dir: bool) -> R<u64> {
    let ipg = tx.sb.inodes_per_group;
    let groups = tx.sb.groups;
    let g0 = ((near.saturating_sub(1)) / u64::from(ipg)) as u32 % groups.max(1);
    for k in 0..groups {
        let g = (g0 + k) % groups;
        let grp = tx.group(g)?;
        if grp.free_inodes == 0 {
            continue;
        }
        let first = if g == 0 { tx.sb.first_ino - 1 } else { 0 };
        let found = find_zero(tx.read(grp.inode_bitmap)?, first, ipg);
        let Some(bit) = found else { continue };
        set_bit(tx.modify(grp.inode_bitmap)?, bit, true);
        tx.count(g, 0, -1, i32::from(dir))?;
        return Ok(u64::from(g) * u64::from(ipg) + u64::from(bit) + 1);
    }
    Err(Stop::Fail(FsErr::NoSpace))
}

fn free_inode(tx: &mut Tx, ino: u64, dir: bool) -> R<()> {
    let ipg = u64::from(tx.sb.inodes_per_group);
    let g = ((ino - 1) / ipg) as u32;
    let grp = tx.group(g)?;
    if !set_bit(tx.modify(grp.inode_bitmap)?, ((ino - 1) % ipg) as u32, false) {
        return corrupt();
    }
    tx.count(g, 0, 1, -i32::from(dir))
}

/// Creates `name` in `dir`; `fill` completes the new inode.
#[allow(clippy::too_many_arguments)]
fn create(tx: &mut Tx, dir: u64, name: &str, mode: u32, uid: u32, gid: u32, now: Time, fill: impl FnOnce(&mut Tx, &mut Inode) -> R<()>) -> R<Done> {
    check_name(name)?;
    let mut d = tx.inode(dir)?;
    if !d.is_dir() {
        return Err(Stop::Fail(FsErr::NotDir));
    }
    if d.links() == 0 {
        return Err(Stop::Fail(FsErr::NotFound)); // a removed directory
    }
    let (existing, spot) = scan(tx, &d, name.as_bytes())?;
    if existing.is_some() {
        return Err(Stop::Fail(FsErr::Exists));
    }
    let is_dir = mode & S_IFMT == S_IFDIR;
    if is_dir && d.links() >= LINK_MAX {
        return Err(Stop::Fail(FsErr::TooManyLinks));
    }
    let ino = alloc_inode(tx, dir, is_dir)?;
    tx.clear_inode(ino)?;
    let mut inode = Inode { ino, raw: [0; 128] };
    inode.set_mode(mode);
    inode.set_uid(uid);
    inode.set_gid(gid);
    for at in [ATIME, CTIME, MTIME] {
        inode.set_time(at, now);
    }
    inode.set_links(1);
    fill(tx, &mut inode)?;
    tx.put_inode(&inode)?;
    let kind = file_type(tx, mode);
    add_entry(tx, &mut d, name.as_bytes(), ino, kind, spot, now)?;
    if is_dir {
        d.set_links(d.links() + 1);
        tx.put_inode(&d)?;
    }
    Ok(Done::Attr(attr(tx, &inode)))
}

fn link(tx: &mut Tx, dir: u64, name: &str, ino: u64, replace: bool, now: Time) -> R<Done> {
    check_name(name)?;
    let mut d = tx.inode(dir)?;
    if !d.is_dir() {
        return Err(Stop::Fail(FsErr::NotDir));
    }
    if d.links() == 0 {
        return Err(Stop::Fail(FsErr::NotFound));
    }
    // An inode with no link left is linked again only when the kernel
    // allows it (an O_TMPFILE file; others are ENOENT there, as Linux's
    // vfs_link decides).
    let mut inode = tx.inode(ino)?;
    if inode.mode() == 0 {
        return Err(Stop::Fail(FsErr::NotFound)); // freed
    }
    let moving_dir = inode.is_dir();
    if !moving_dir && inode.links() >= LINK_MAX {
        return Err(Stop::Fail(FsErr::TooManyLinks));
    }
    let kind = file_type(tx, inode.mode());
    let mut replaced = None;
    let (existing, spot) = scan(tx, &d, name.as_bytes())?;
    match existing {
        Some(_) if !replace => return Err(Stop::Fail(FsErr::Exists)),
        Some((old, b, off, _)) => {
            if old == ino {
                return Ok(Done::Maybe(None));
            }
            let blk = tx.modify(b)?;
            put32(blk, off, ino as u32);
            if tx.sb.filetype
                && let Some(k) = tx.modify(b)?.get_mut(off + 7)
            {
                *k = kind;
            }
            let mut victim = tx.inode(old)?;
            if victim.is_dir() {
                victim.set_links(0);
                d.set_links(d.links().saturating_sub(1));
            } else {
                victim.set_links(victim.links().saturating_sub(1));
            }
            victim.set_time(CTIME, now);
            tx.put_inode(&victim)?;
            replaced = Some(attr(tx, &victim));
            touch_dir(tx, &mut d, now)?;
        }
        None => add_entry(tx, &mut d, name.as_bytes(), ino, kind, spot, now)?,
    }
    if moving_dir {
        if d.links() >= LINK_MAX {
            return Err(Stop::Fail(FsErr::TooManyLinks));
        }
        set_dotdot(tx, &inode, dir)?;
        d.set_links(d.links() + 1);
        tx.put_inode(&d)?;
    } else {
        inode.set_links(inode.links() + 1);
    }
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Maybe(replaced))
}

fn unlink(tx: &mut Tx, dir: u64, name: &str, now: Time) -> R<Done> {
    let mut d = tx.inode(dir)?;
    let (ino, b, off, prev) = find(tx, &d, name.as_bytes())?.ok_or(Stop::Fail(FsErr::NotFound))?;
    remove_entry(tx, b, off, prev)?;
    let mut inode = tx.inode(ino)?;
    if inode.is_dir() {
        d.set_links(d.links().saturating_sub(1));
        // Removed for good unless it now hangs elsewhere (a rename
        // linked it first: its `..` moved, or it has another name here).
        if dotdot(tx, &inode)?.2 == dir && find_ino(tx, &d, ino)?.is_none() {
            inode.set_links(0);
        }
    } else {
        inode.set_links(inode.links().saturating_sub(1));
    }
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    touch_dir(tx, &mut d, now)?;
    Ok(Done::Attr(attr(tx, &inode)))
}

fn find_ino(tx: &Tx, dir: &Inode, ino: u64) -> R<Option<()>> {
    for b in dir_blocks(tx, dir)? {
        let blk = tx.read(b)?;
        for e in entries(tx, blk)? {
            let d = dirent(blk, e);
            if d.ino == ino && d.name != b"." && d.name != b".." {
                return Ok(Some(()));
            }
        }
    }
    Ok(None)
}

fn release(tx: &mut Tx, ino: u64, now: Time) -> R<()> {
    let mut inode = tx.inode(ino)?;
    if inode.links() != 0 || inode.mode() == 0 {
        return Err(Stop::Fail(FsErr::Invalid));
    }
    let is_dir = inode.is_dir();
    if !inode.is_fast_symlink(tx.sb.block_size) && !matches!(inode.kind(), S_IFCHR | S_IFBLK) {
        free_from(tx, &mut inode, 0)?;
    }
    let acl = inode.file_acl();
    if acl != 0 {
        // An extended-attribute block (made by another system): shared
        // by reference count.
        let refs = le32(tx.read(acl)?, 4);
        if le32(tx.read(acl)?, 0) == 0xea02_0000 && refs > 1 {
            put32(tx.modify(acl)?, 4, refs - 1);
        } else {
            free_block(tx, acl)?;
        }
        inode.set_file_acl(0);
    }
    inode.set_sectors(0);
    inode.set_size(0);
    inode.set_time(DTIME, now);
    tx.put_inode(&inode)?;
    free_inode(tx, ino, is_dir)
}

fn set_attr(tx: &mut Tx, ino: u64, set: SetAttr, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    if let Some(perm) = set.perm {
        inode.set_mode((inode.mode() & S_IFMT) | (perm & 0o7777));
    }
    if let Some(uid) = set.uid {
        inode.set_uid(uid);
    }
    if let Some(gid) = set.gid {
        inode.set_gid(gid);
    }
    if let Some(t) = set.atime {
        inode.set_time(ATIME, t);
    }
    if let Some(t) = set.mtime {
        inode.set_time(MTIME, t);
    }
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Attr(attr(tx, &inode)))
}

fn large_file(tx: &mut Tx, size: u64) -> R<()> {
    if size >= 1 << 31 && tx.sb.ro_compat & RO_COMPAT_LARGE_FILE == 0 {
        let s = tx.super_mut()?;
        put32(s, 100, le32(s, 100) | RO_COMPAT_LARGE_FILE);
        tx.sb.ro_compat |= RO_COMPAT_LARGE_FILE;
    }
    Ok(())
}

fn truncate(tx: &mut Tx, ino: u64, size: u64, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    match inode.kind() {
        S_IFREG => {}
        S_IFDIR => return Err(Stop::Fail(FsErr::IsDir)),
        _ => return Err(Stop::Fail(FsErr::Invalid)),
    }
    if size > max_size(tx) {
        return Err(Stop::Fail(FsErr::TooBig));
    }
    let bs = tx.sb.block_size as u64;
    let mut tail = Vec::new();
    if size < inode.size() {
        free_from(tx, &mut inode, size.div_ceil(bs))?;
        if !size.is_multiple_of(bs) {
            let b = bmap(tx, &inode, size / bs)?;
            if b != 0 {
                tail.push(b);
            }
        }
    }
    large_file(tx, size)?;
    inode.set_size(size);
    inode.set_time(MTIME, now);
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Blocks(attr(tx, &inode), tail))
}

fn write(tx: &mut Tx, ino: u64, offset: u64, len: u64, now: Time) -> R<Done> {
    let mut inode = tx.inode(ino)?;
    if inode.kind() != S_IFREG {
        return Err(Stop::Fail(if inode.is_dir() { FsErr::IsDir } else { FsErr::Invalid }));
    }
    let end = offset.checked_add(len).ok_or(Stop::Fail(FsErr::TooBig))?;
    if end > max_size(tx) {
        return Err(Stop::Fail(FsErr::TooBig));
    }
    let bs = tx.sb.block_size as u64;
    let first = offset / bs;
    let last = if len == 0 { first } else { (end - 1) / bs + 1 };
    let last = last.min(first + MAX_RANGE);
    let mut out = Vec::new();
    let mut goal = if first > 0 { bmap(tx, &inode, first - 1)? } else { 0 };
    for l in first..last {
        if len == 0 {
            break;
        }
        match bmap_alloc(tx, &mut inode, l, goal.wrapping_add(1) * u64::from(goal != 0)) {
            Ok(b) => {
                goal = b & !FRESH;
                out.push(b);
            }
            Err(Stop::Fail(FsErr::NoSpace)) if !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    let covered = (first + out.len() as u64) * bs;
    let new_end = end.min(covered);
    if new_end > inode.size() {
        large_file(tx, new_end)?;
        inode.set_size(new_end);
    }
    inode.set_time(MTIME, now);
    inode.set_time(CTIME, now);
    tx.put_inode(&inode)?;
    Ok(Done::Blocks(attr(tx, &inode), out))
}

fn read_link(tx: &Tx, ino: u64) -> R<Done> {
    let inode = tx.inode(ino)?;
    if inode.kind() != S_IFLNK {
        return Err(Stop::Fail(FsErr::Invalid));
    }
    let size = inode.size() as usize;
    let bytes = if inode.is_fast_symlink(tx.sb.block_size) {
        if size > 60 {
            return corrupt();
        }
        inode.raw.get(40..40 + size).ok_or(Stop::Fail(FsErr::Corrupt))?.to_vec()
    } else {
        if size >= tx.sb.block_size {
            return corrupt();
        }
        let b = bmap(tx, &inode, 0)?;
        if b == 0 {
            return corrupt();
        }
        tx.read(b)?.get(..size).ok_or(Stop::Fail(FsErr::Corrupt))?.to_vec()
    };
    Ok(Done::Text(String::from_utf8_lossy(&bytes).into_owned()))
}
