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

/// Flushes every disk (`sync`).
pub fn sync_all() {
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

    /// Reads at `offset`, sector-aligned pieces straight, edges through a
    /// bounce buffer.
    fn pread(&self, offset: u64, buf: &mut [u8]) -> SysResult {
        let size = self.size()?;
        let len = (buf.len() as u64).min(size.saturating_sub(offset));
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let first = at / SECTOR;
            let skip = at % SECTOR;
            let want = (len - done).min(CHUNK - skip);
            let span = (skip + want).div_ceil(SECTOR) * SECTOR;
            let mut bounce = vec![0u8; span as usize];
            self.disk.backend.read(first, &mut bounce)?;
            let piece = bounce.get(skip as usize..(skip + want) as usize).ok_or(Errno::EIO)?;
            buf.get_mut(done as usize..(done + want) as usize).ok_or(Errno::EFAULT)?.copy_from_slice(piece);
            done += want;
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
        let mut done = 0u64;
        while done < len {
            let at = offset + done;
            let first = at / SECTOR;
            let skip = at % SECTOR;
            let want = (len - done).min(CHUNK - skip);
            let span = (skip + want).div_ceil(SECTOR) * SECTOR;
            let mut bounce = vec![0u8; span as usize];
            if skip != 0 || !want.is_multiple_of(SECTOR) {
                self.disk.backend.read(first, &mut bounce)?;
            }
            let piece = data.get(done as usize..(done + want) as usize).ok_or(Errno::EFAULT)?;
            bounce.get_mut(skip as usize..(skip + want) as usize).ok_or(Errno::EIO)?.copy_from_slice(piece);
            self.disk.backend.write(first, &bounce)?;
            done += want;
        }
        Ok(len)
    }
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
