//! Block device nodes (`/dev/vda`, ...): byte offsets on top of a sector
//! device. Reads and writes of any size and alignment work (partial
//! sectors are read, merged and written back); a read at the end returns
//! 0, a write past it `ENOSPC`, a device failure `EIO`.

use crate::errno::{Errno, SysResult};
use crate::files::{File, FileStat, SEEK_CUR, SEEK_END, SEEK_SET};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use framekernel::sync::{Mutex, SpinLock};
use tessera_vfs::FileType;

/// Bytes in a sector.
pub const SECTOR: u64 = 512;
/// Largest piece handed to the device at once.
const CHUNK: u64 = 64 * 1024;
/// Major number of the disks (Linux's virtio-blk is dynamic; 254 is free).
const MAJOR: u64 = 254;

/// A sector device, as a driver slot offers it.
pub trait BlockBackend: Send + Sync {
    /// Size in sectors.
    fn sectors(&self) -> Result<u64, Errno>;
    /// Reads whole sectors at `sector`.
    fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), Errno>;
    /// Writes whole sectors at `sector`.
    fn write(&self, sector: u64, buf: &[u8]) -> Result<(), Errno>;
    /// Makes writes durable.
    fn flush(&self) -> Result<(), Errno>;
    /// Forgets the sectors of `count` at `sector`: a file system freed
    /// them (a disk may ignore it; the memory store gives the pages back).
    fn discard(&self, _sector: u64, _count: u64) {}
}

struct Disk {
    name: String,
    rdev: u64,
    backend: Arc<dyn BlockBackend>,
}

static DISKS: SpinLock<Vec<Arc<Disk>>> = SpinLock::new(Vec::new());

/// Makes `/dev/NAME` for `backend`. Call after the root file system exists.
pub fn add_disk(name: &str, backend: Arc<dyn BlockBackend>) -> Result<(), String> {
    let rdev = {
        let mut disks = DISKS.lock();
        let rdev = MAJOR << 8 | (disks.len() as u64 * 16);
        disks.push(Arc::new(Disk { name: name.into(), rdev, backend }));
        rdev
    };
    let vfs = crate::fs::vfs().map_err(|e| alloc::format!("no root file system: {e:?}"))?;
    let dev = vfs.resolve(&vfs.root(), "/dev", true).map_err(|e| alloc::format!("/dev: {e:?}"))?;
    dev.node().create(name, FileType::BlockDevice, 0o660, rdev).map_err(|e| alloc::format!("/dev/{name}: {e:?}"))?;
    Ok(())
}

/// The disk with device number `rdev`: its name and driver.
pub fn disk(rdev: u64) -> Option<(String, Arc<dyn BlockBackend>)> {
    DISKS.lock().iter().find(|d| d.rdev == rdev).map(|d| (d.name.clone(), d.backend.clone()))
}

/// Every disk: name, device number and size in sectors.
pub fn disks() -> Vec<(String, u64, u64)> {
    let disks = DISKS.lock().clone();
    disks.iter().map(|d| (d.name.clone(), d.rdev, d.backend.sectors().unwrap_or(0))).collect()
}

/// Fills a new sysfs with the processors (`devices/system/cpu`) and the
/// disks as Linux shows them to `mdev -s`,
/// `lsblk`-like tools and `df`: `block/NAME/{dev,size,ro,removable,
/// uevent,queue/*}`, `class/block/NAME` and `dev/block/MAJ:MIN` (links to
/// `block/NAME`).
pub fn fill_sysfs(root: &tessera_vfs::NodeRef) -> Result<(), tessera_vfs::FsError> {
    let dir = |at: &tessera_vfs::NodeRef, name: &str| at.lookup(name).or_else(|_| at.create(name, FileType::Directory, 0o755, 0));
    let file = |at: &tessera_vfs::NodeRef, name: &str, text: &str| {
        at.create(name, FileType::Regular, 0o444, 0).and_then(|f| f.write_at(0, text.as_bytes()).map(drop))
    };
    let block = dir(root, "block")?;
    let class_block = dir(&dir(root, "class")?, "block")?;
    let dev_block = dir(&dir(root, "dev")?, "block")?;
    for (name, rdev, sectors) in disks() {
        let (major, minor) = (rdev >> 8, rdev & 0xff);
        let d = dir(&block, &name)?;
        file(&d, "dev", &alloc::format!("{major}:{minor}\n"))?;
        file(&d, "size", &alloc::format!("{sectors}\n"))?;
        file(&d, "ro", "0\n")?;
        file(&d, "removable", "0\n")?;
        file(&d, "uevent", &alloc::format!("MAJOR={major}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\n"))?;
        let queue = dir(&d, "queue")?;
        file(&queue, "logical_block_size", "512\n")?;
        file(&queue, "physical_block_size", "512\n")?;
        file(&queue, "rotational", "0\n")?;
        class_block.symlink(&name, &alloc::format!("../../block/{name}"))?;
        dev_block.symlink(&alloc::format!("{major}:{minor}"), &alloc::format!("../../block/{name}"))?;
    }
    // The processors, as Linux shows them: every one the firmware lists
    // is present and possible, the ones Tessera runs on are online (so
    // glibc's configured and online counts tell the truth).
    let cpus = dir(&dir(&dir(root, "devices")?, "system")?, "cpu")?;
    let (present, online) = (framekernel::cpu::present(), framekernel::cpu::online().min(framekernel::cpu::present()));
    let span = |first: usize, end: usize| match end - first {
        0 => String::from("\n"),
        1 => alloc::format!("{first}\n"),
        _ => alloc::format!("{first}-{}\n", end - 1),
    };
    file(&cpus, "possible", &span(0, present))?;
    file(&cpus, "present", &span(0, present))?;
    file(&cpus, "online", &span(0, online))?;
    file(&cpus, "offline", &span(online, present))?;
    for n in 0..present {
        let cpu = dir(&cpus, &alloc::format!("cpu{n}"))?;
        if n > 0 {
            file(&cpu, "online", if n < online { "1\n" } else { "0\n" })?;
        }
    }
    Ok(())
}

/// Writes what mounted file systems hold back, then flushes every disk
/// (`sync`).
pub fn sync_all() {
    crate::cellfs::sync_all();
    let disks = DISKS.lock().clone();
    for disk in disks {
        if let Err(e) = disk.backend.flush() {
            log::warn!("/dev/{}: flush failed: {e:?}", disk.name);
        }
    }
}

/// Opens the disk with device number `rdev`.
pub fn open(rdev: u64) -> Result<Arc<dyn File>, Errno> {
    let disk = DISKS.lock().iter().find(|d| d.rdev == rdev).cloned().ok_or(Errno::ENXIO)?;
    Ok(Arc::new(BlockFile { disk, offset: Mutex::new(0) }))
}

struct BlockFile {
    disk: Arc<Disk>,
    offset: Mutex<u64>,
}

impl BlockFile {
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.disk.backend.sectors()?.saturating_mul(SECTOR))
    }

    /// Reads at `offset`; each piece goes through a sector-aligned buffer.
    fn pread(&self, offset: u64, buf: &mut [u8]) -> SysResult {
        let len = (buf.len() as u64).min(self.size()?.saturating_sub(offset));
        for piece in pieces(offset, len) {
            let mut bounce = vec![0u8; piece.span as usize];
            self.disk.backend.read(piece.sector, &mut bounce)?;
            let from = bounce.get(piece.skip as usize..(piece.skip + piece.len) as usize).ok_or(Errno::EIO)?;
            buf.get_mut(piece.done as usize..(piece.done + piece.len) as usize).ok_or(Errno::EFAULT)?.copy_from_slice(from);
        }
        Ok(len)
    }

    /// Writes at `offset`; partial sectors are read and merged first.
    fn pwrite(&self, offset: u64, data: &[u8]) -> SysResult {
        let size = self.size()?;
        if data.is_empty() {
            return Ok(0);
        }
        if offset >= size {
            return Err(Errno::ENOSPC);
        }
        let len = (data.len() as u64).min(size - offset);
        for piece in pieces(offset, len) {
            let mut bounce = vec![0u8; piece.span as usize];
            if piece.skip != 0 || !piece.len.is_multiple_of(SECTOR) {
                self.disk.backend.read(piece.sector, &mut bounce)?;
            }
            let from = data.get(piece.done as usize..(piece.done + piece.len) as usize).ok_or(Errno::EFAULT)?;
            bounce.get_mut(piece.skip as usize..(piece.skip + piece.len) as usize).ok_or(Errno::EIO)?.copy_from_slice(from);
            self.disk.backend.write(piece.sector, &bounce)?;
        }
        Ok(len)
    }
}

/// One device request of a byte-range transfer.
struct Piece {
    /// Bytes of the transfer before this piece.
    done: u64,
    /// First sector.
    sector: u64,
    /// Bytes of that sector before the transfer's data.
    skip: u64,
    /// Bytes of the transfer in this piece.
    len: u64,
    /// Whole sectors covered, in bytes.
    span: u64,
}

/// Splits `len` bytes at `offset` into requests of at most [`CHUNK`].
fn pieces(offset: u64, len: u64) -> impl Iterator<Item = Piece> {
    let mut done = 0u64;
    core::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = offset + done;
        let skip = at % SECTOR;
        let piece_len = (len - done).min(CHUNK - skip);
        let piece = Piece { done, sector: at / SECTOR, skip, len: piece_len, span: (skip + piece_len).div_ceil(SECTOR) * SECTOR };
        done += piece_len;
        Some(piece)
    })
}

impl File for BlockFile {
    // The offset lock is not held across the device call: a call may wait
    // at the driver slot's gate (during a swap), and a holder must not block.
    fn read(&self, buf: &mut [u8], _interrupted: &dyn Fn() -> bool) -> SysResult {
        let at = *self.offset.lock();
        let n = self.pread(at, buf)?;
        *self.offset.lock() = at + n;
        Ok(n)
    }

    fn write(&self, buf: &[u8]) -> SysResult {
        let at = *self.offset.lock();
        let n = self.pwrite(at, buf)?;
        *self.offset.lock() = at + n;
        Ok(n)
    }

    fn stat(&self) -> FileStat {
        let mut stat = crate::files::device_stat(0, self.disk.rdev, 0o660);
        stat.kind = FileType::BlockDevice;
        stat
    }

    fn seek(&self, offset: i64, whence: u32) -> SysResult {
        let mut current = self.offset.lock();
        let base = match whence {
            SEEK_SET => 0,
            SEEK_CUR => *current as i64,
            SEEK_END => self.size()? as i64,
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).filter(|&n| n >= 0).ok_or(Errno::EINVAL)?;
        *current = new as u64;
        Ok(new as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> SysResult {
        self.pread(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> SysResult {
        self.pwrite(offset, buf)
    }

    fn sync(&self) -> SysResult {
        self.disk.backend.flush().map(|()| 0)
    }
}
