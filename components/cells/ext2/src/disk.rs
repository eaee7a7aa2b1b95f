//! The on-disk structures of ext2 and the transaction every request runs
//! in: reads through the kernel's view (or this request's own changes),
//! changed blocks kept aside until the request is done.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use tessera_cell_api::fs::{FsErr, Time};

/// Why a step could not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// These blocks are not in the view.
    Need(Vec<u64>),
    /// The operation fails.
    Fail(FsErr),
}

impl From<FsErr> for Stop {
    fn from(e: FsErr) -> Self {
        Stop::Fail(e)
    }
}

/// Results inside the cell.
pub type R<T> = Result<T, Stop>;

/// `Corrupt` as a result.
pub fn corrupt<T>() -> R<T> {
    Err(Stop::Fail(FsErr::Corrupt))
}

pub fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => 0,
    }
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub const MAGIC: u16 = 0xef53;
/// `s_state`: cleanly unmounted.
pub const STATE_VALID: u16 = 1;
pub const INCOMPAT_FILETYPE: u32 = 0x2;
pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// `i_flags`: the directory has a hash index (ext3's dir_index), which
/// ext2 does not keep up to date: cleared when a directory changes, as
/// Linux's ext2 does.
pub const INDEX_FL: u32 = 0x1000;
pub const ROOT_INO: u64 = 2;
pub const LINK_MAX: u32 = 32000;
pub const NAME_MAX: usize = 255;

/// The superblock's fields the cell uses (checked at `parse`).
#[derive(Debug, Clone)]
pub struct Super {
    pub inodes: u32,
    pub blocks: u32,
    pub reserved: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub first_data_block: u32,
    pub block_size: usize,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inode_size: usize,
    pub first_ino: u32,
    pub groups: u32,
    pub filetype: bool,
    pub ro_compat: u32,
    pub read_only: bool,
    pub label: [u8; 16],
}

impl Super {
    /// Checks the 1024 bytes of a superblock.
    pub fn parse(b: &[u8]) -> Result<Super, FsErr> {
        if b.len() < 1024 || le16(b, 56) != MAGIC {
            return Err(FsErr::NotSupported);
        }
        let log = le32(b, 24);
        if log > 2 {
            return Err(FsErr::NotSupported); // larger than a page, as Linux's ext2
        }
        let block_size = 1024usize << log;
        let rev = le32(b, 76);
        let (inode_size, first_ino, incompat, ro_compat) = if rev == 0 {
            (128, 11, 0, 0)
        } else if rev == 1 {
            (le16(b, 88) as usize, le32(b, 84), le32(b, 96), le32(b, 100))
        } else {
            return Err(FsErr::NotSupported);
        };
        if incompat & !INCOMPAT_FILETYPE != 0 {
            return Err(FsErr::NotSupported); // compression, journal recovery, extents, 64bit, meta_bg, ...
        }
        let blocks = le32(b, 4);
        let inodes = le32(b, 0);
        let first_data_block = le32(b, 20);
        let bpg = le32(b, 32);
        let ipg = le32(b, 40);
        let bits = 8 * block_size as u32;
        let sane = inode_size >= 128
            && inode_size <= block_size
            && inode_size.is_power_of_two()
            && first_data_block == u32::from(block_size == 1024)
            && blocks > first_data_block
            && bpg > 0
            && bpg <= bits
            && ipg > 0
            && ipg <= bits
            && first_ino >= 11
            && first_ino <= inodes;
        if !sane {
            return Err(FsErr::Corrupt);
        }
        let groups = (blocks - first_data_block).div_ceil(bpg);
        if u64::from(groups) * u64::from(ipg) != u64::from(inodes) {
            return Err(FsErr::Corrupt);
        }
        let mut label = [0u8; 16];
        if let Some(l) = b.get(120..136) {
            label.copy_from_slice(l);
        }
        Ok(Super {
            inodes,
            blocks,
            reserved: le32(b, 8),
            free_blocks: le32(b, 12),
            free_inodes: le32(b, 16),
            first_data_block,
            block_size,
            blocks_per_group: bpg,
            inodes_per_group: ipg,
            inode_size,
            first_ino,
            groups,
            filetype: incompat & INCOMPAT_FILETYPE != 0,
            ro_compat,
            read_only: ro_compat & !(RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE) != 0,
            label,
        })
    }

    /// The block and offset of the superblock.
    pub fn location(&self) -> (u64, usize) {
        if self.block_size == 1024 { (1, 0) } else { (0, 1024) }
    }

    /// Blocks of group `g` (the last may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let start = self.first_data_block + g * self.blocks_per_group;
        (self.blocks - start).min(self.blocks_per_group)
    }

    /// Pointers in an indirect block.
    pub fn per_block(&self) -> u64 {
        self.block_size as u64 / 4
    }
}

/// A group descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pub block_bitmap: u64,
    pub inode_bitmap: u64,
    pub inode_table: u64,
    pub free_blocks: u16,
    pub free_inodes: u16,
}

/// The first 128 bytes of an inode (what ext2 uses).
#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: u64,
    pub raw: [u8; 128],
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;

impl Inode {
    pub fn mode(&self) -> u32 {
        u32::from(le16(&self.raw, 0))
    }
    pub fn kind(&self) -> u32 {
        self.mode() & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.kind() == S_IFDIR
    }
    pub fn set_mode(&mut self, mode: u32) {
        put16(&mut self.raw, 0, mode as u16);
    }
    pub fn uid(&self) -> u32 {
        u32::from(le16(&self.raw, 2)) | u32::from(le16(&self.raw, 120)) << 16
    }
    pub fn set_uid(&mut self, uid: u32) {
        put16(&mut self.raw, 2, uid as u16);
        put16(&mut self.raw, 120, (uid >> 16) as u16);
    }
    pub fn gid(&self) -> u32 {
        u32::from(le16(&self.raw, 24)) | u32::from(le16(&self.raw, 122)) << 16
    }
    pub fn set_gid(&mut self, gid: u32) {
        put16(&mut self.raw, 24, gid as u16);
        put16(&mut self.raw, 122, (gid >> 16) as u16);
    }
    pub fn size(&self) -> u64 {
        let high = if self.kind() == S_IFREG { u64::from(le32(&self.raw, 108)) } else { 0 };
        u64::from(le32(&self.raw, 4)) | high << 32
    }
    pub fn set_size(&mut self, size: u64) {
        put32(&mut self.raw, 4, size as u32);
        if self.kind() == S_IFREG {
            put32(&mut self.raw, 108, (size >> 32) as u32);
        }
    }
    pub fn time(&self, at: usize) -> Time {
        Time { sec: i64::from(le32(&self.raw, at) as i32), nsec: 0 }
    }
    pub fn set_time(&mut self, at: usize, t: Time) {
        put32(&mut self.raw, at, t.sec as u32);
    }
    pub fn links(&self) -> u32 {
        u32::from(le16(&self.raw, 26))
    }
    pub fn set_links(&mut self, n: u32) {
        put16(&mut self.raw, 26, n as u16);
    }
    /// 512-byte sectors held.
    pub fn sectors(&self) -> u32 {
        le32(&self.raw, 28)
    }
    pub fn set_sectors(&mut self, n: u32) {
        put32(&mut self.raw, 28, n);
    }
    pub fn flags(&self) -> u32 {
        le32(&self.raw, 32)
    }
    pub fn set_flags(&mut self, f: u32) {
        put32(&mut self.raw, 32, f);
    }
    pub fn block(&self, i: usize) -> u64 {
        u64::from(le32(&self.raw, 40 + 4 * i))
    }
    pub fn set_block(&mut self, i: usize, b: u64) {
        put32(&mut self.raw, 40 + 4 * i, b as u32);
    }
    pub fn file_acl(&self) -> u64 {
        u64::from(le32(&self.raw, 104))
    }
    pub fn set_file_acl(&mut self, b: u64) {
        put32(&mut self.raw, 104, b as u32);
    }
    /// The device number of a device node (old or new encoding, as
    /// Linux's ext2 stores it).
    pub fn rdev(&self) -> u64 {
        let old = le32(&self.raw, 40);
        if old != 0 {
            u64::from((old >> 8) & 0xff) << 8 | u64::from(old & 0xff)
        } else {
            let new = le32(&self.raw, 44);
            let major = u64::from((new & 0xfff00) >> 8);
            let minor = u64::from((new & 0xff) | ((new >> 12) & 0xfff00));
            major << 8 | minor
        }
    }
    /// Stores `rdev` (Linux's `major << 8 | minor` with wider parts).
    pub fn set_rdev(&mut self, rdev: u64) {
        let major = ((rdev >> 8) & 0xfff) as u32;
        let minor = ((rdev & 0xff) | ((rdev >> 12) & !0xff)) as u32;
        if major < 256 && minor < 256 {
            put32(&mut self.raw, 40, major << 8 | minor);
            put32(&mut self.raw, 44, 0);
        } else {
            put32(&mut self.raw, 40, 0);
            put32(&mut self.raw, 44, (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12));
        }
    }
    /// True for a symbolic link whose target lives in the block array.
    pub fn is_fast_symlink(&self, block_size: usize) -> bool {
        let acl = if self.file_acl() != 0 { block_size as u32 / 512 } else { 0 };
        self.kind() == S_IFLNK && self.sectors().saturating_sub(acl) == 0
    }
}

/// Offsets of the times in an inode.
pub const ATIME: usize = 8;
pub const CTIME: usize = 12;
pub const MTIME: usize = 16;
pub const DTIME: usize = 20;

/// One request's view of the disk and its changes.
pub struct Tx<'a> {
    index: &'a [[u64; 2]],
    data: &'a [u8],
    pub sb: Super,
    /// Changed blocks, whole.
    dirty: BTreeMap<u64, Vec<u8>>,
    /// Blocks freed by this request.
    pub freed: Vec<u64>,
}

impl<'a> Tx<'a> {
    /// Reads the superblock from the view, whose blocks are
    /// `block_size` bytes (1024 for a probe).
    pub fn open(index: &'a [[u64; 2]], data: &'a [u8], block_size: u32, probe: bool) -> R<Tx<'a>> {
        let block_size = block_size as usize;
        if !matches!(block_size, 1024 | 2048 | 4096) || (probe && block_size != 1024) {
            return Err(Stop::Fail(FsErr::Invalid));
        }
        let mut tx = Tx { index, data, sb: placeholder(), dirty: BTreeMap::new(), freed: Vec::new() };
        tx.sb.block_size = block_size;
        let (block, offset) = if block_size == 1024 { (1, 0) } else { (0, 1024) };
        let raw = tx.view(block).ok_or_else(|| Stop::Need(vec![block]))?;
        let sb = Super::parse(raw.get(offset..offset + 1024).unwrap_or(&[]))?;
        if !probe && sb.block_size != block_size {
            return Err(Stop::Fail(FsErr::Corrupt)); // the superblock changed under the mount
        }
        tx.sb = sb;
        Ok(tx)
    }

    /// Block `b` as the kernel holds it.
    fn view(&self, b: u64) -> Option<&'a [u8]> {
        let at = self.index.binary_search_by_key(&b, |e| e[0]).ok()?;
        let slot = self.index.get(at)?[1] as usize;
        let bs = self.sb.block_size;
        self.data.get(slot.checked_mul(bs)?..slot.checked_mul(bs)?.checked_add(bs)?)
    }

    /// Checks that `b` is a block of the file system.
    pub fn check(&self, b: u64) -> R<u64> {
        if b < u64::from(self.sb.first_data_block) || b >= u64::from(self.sb.blocks) {
            return corrupt();
        }
        Ok(b)
    }

    /// Block `b`, with this request's changes.
    pub fn read(&self, b: u64) -> R<&[u8]> {
        self.check(b)?;
        self.read_any(b)
    }

    /// Like `read`, for block 0 too (the superblock's with 4 KiB blocks).
    fn read_any(&self, b: u64) -> R<&[u8]> {
        if let Some(d) = self.dirty.get(&b) {
            return Ok(d);
        }
        self.view(b).ok_or_else(|| Stop::Need(vec![b]))
    }

    /// Asks for every block of `blocks` that is missing, at once.
    pub fn need_all(&self, blocks: &[u64]) -> R<()> {
        let missing: Vec<u64> = blocks.iter().copied().filter(|&b| b != 0 && !self.dirty.contains_key(&b) && self.view(b).is_none()).collect();
        if missing.is_empty() { Ok(()) } else { Err(Stop::Need(missing)) }
    }

    /// Block `b` to change (copied from the view on first use).
    pub fn modify(&mut self, b: u64) -> R<&mut Vec<u8>> {
        if b != 0 {
            self.check(b)?;
        }
        if !self.dirty.contains_key(&b) {
            let copy = self.read_any(b)?.to_vec();
            self.dirty.insert(b, copy);
        }
        self.dirty.get_mut(&b).ok_or(Stop::Fail(FsErr::Corrupt))
    }

    /// A newly allocated block, zeroed, to fill.
    pub fn fresh(&mut self, b: u64) -> R<&mut Vec<u8>> {
        self.check(b)?;
        self.freed.retain(|&f| f != b);
        self.dirty.insert(b, vec![0; self.sb.block_size]);
        self.dirty.get_mut(&b).ok_or(Stop::Fail(FsErr::Corrupt))
    }

    /// Forgets a block this request wrote (it was freed again).
    pub fn forget(&mut self, b: u64) {
        self.dirty.remove(&b);
    }

    /// The changed blocks, for the reply.
    pub fn into_writes(self) -> (Vec<u64>, Vec<u8>, Vec<u64>) {
        let mut blocks = Vec::with_capacity(self.dirty.len());
        let mut bytes = Vec::with_capacity(self.dirty.len() * self.sb.block_size);
        for (b, d) in self.dirty {
            blocks.push(b);
            bytes.extend_from_slice(&d);
        }
        (blocks, bytes, self.freed)
    }

    /// The superblock's bytes, to change.
    pub fn super_mut(&mut self) -> R<&mut [u8]> {
        let (b, off) = self.sb.location();
        self.modify(b)?.get_mut(off..off + 1024).ok_or(Stop::Fail(FsErr::Corrupt))
    }

    fn group_at(&self, g: u32) -> (u64, usize) {
        let bs = self.sb.block_size as u64;
        let byte = u64::from(g) * 32;
        (u64::from(self.sb.first_data_block) + 1 + byte / bs, (byte % bs) as usize)
    }

    /// Group descriptor `g`, checked.
    pub fn group(&self, g: u32) -> R<Group> {
        if g >= self.sb.groups {
            return corrupt();
        }
        let (b, off) = self.group_at(g);
        let d = self.read(b)?.get(off..off + 32).ok_or(Stop::Fail(FsErr::Corrupt))?;
        let grp = Group {
            block_bitmap: u64::from(le32(d, 0)),
            inode_bitmap: u64::from(le32(d, 4)),
            inode_table: u64::from(le32(d, 8)),
            free_blocks: le16(d, 12),
            free_inodes: le16(d, 14),
        };
        let table_blocks = (u64::from(self.sb.inodes_per_group) * self.sb.inode_size as u64).div_ceil(self.sb.block_size as u64);
        self.check(grp.block_bitmap)?;
        self.check(grp.inode_bitmap)?;
        self.check(grp.inode_table)?;
        self.check(grp.inode_table + table_blocks - 1)?;
        Ok(grp)
    }

    /// Changes the counts of group `g` and the superblock's totals.
    pub fn count(&mut self, g: u32, blocks: i32, inodes: i32, dirs: i32) -> R<()> {
        let (b, off) = self.group_at(g);
        let d = self.modify(b)?.get_mut(off..off + 32).ok_or(Stop::Fail(FsErr::Corrupt))?;
        put16(d, 12, (i32::from(le16(d, 12)) + blocks) as u16);
        put16(d, 14, (i32::from(le16(d, 14)) + inodes) as u16);
        put16(d, 16, (i32::from(le16(d, 16)) + dirs) as u16);
        let s = self.super_mut()?;
        put32(s, 12, (i64::from(le32(s, 12)) + i64::from(blocks)) as u32);
        put32(s, 16, (i64::from(le32(s, 16)) + i64::from(inodes)) as u32);
        self.sb.free_blocks = (i64::from(self.sb.free_blocks) + i64::from(blocks)) as u32;
        self.sb.free_inodes = (i64::from(self.sb.free_inodes) + i64::from(inodes)) as u32;
        Ok(())
    }

    fn inode_at(&self, ino: u64) -> R<(u64, usize)> {
        if ino == 0 || ino > u64::from(self.sb.inodes) {
            return corrupt();
        }
        let ipg = u64::from(self.sb.inodes_per_group);
        let g = ((ino - 1) / ipg) as u32;
        let index = (ino - 1) % ipg;
        let grp = self.group(g)?;
        let byte = index * self.sb.inode_size as u64;
        let bs = self.sb.block_size as u64;
        Ok((grp.inode_table + byte / bs, (byte % bs) as usize))
    }

    /// Inode `ino`.
    pub fn inode(&self, ino: u64) -> R<Inode> {
        let (b, off) = self.inode_at(ino)?;
        let mut raw = [0u8; 128];
        raw.copy_from_slice(self.read(b)?.get(off..off + 128).ok_or(Stop::Fail(FsErr::Corrupt))?);
        Ok(Inode { ino, raw })
    }

    /// Writes `inode` back.
    pub fn put_inode(&mut self, inode: &Inode) -> R<()> {
        let (b, off) = self.inode_at(inode.ino)?;
        self.modify(b)?.get_mut(off..off + 128).ok_or(Stop::Fail(FsErr::Corrupt))?.copy_from_slice(&inode.raw);
        Ok(())
    }

    /// Zeroes the whole on-disk inode `ino` (a new one; the bytes past
    /// 128 of a large inode too).
    pub fn clear_inode(&mut self, ino: u64) -> R<()> {
        let (b, off) = self.inode_at(ino)?;
        let size = self.sb.inode_size;
        self.modify(b)?.get_mut(off..off + size).ok_or(Stop::Fail(FsErr::Corrupt))?.fill(0);
        Ok(())
    }
}

fn placeholder() -> Super {
    Super {
        inodes: 0,
        blocks: 0,
        reserved: 0,
        free_blocks: 0,
        free_inodes: 0,
        first_data_block: 0,
        block_size: 1024,
        blocks_per_group: 1,
        inodes_per_group: 1,
        inode_size: 128,
        first_ino: 11,
        groups: 0,
        filetype: false,
        ro_compat: 0,
        read_only: true,
        label: [0; 16],
    }
}
