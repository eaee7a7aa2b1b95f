//! Where `execve` finds programs until the VFS exists: the boot archive.

use framekernel::sync::SpinLock;

static ARCHIVE: SpinLock<Option<&'static [u8]>> = SpinLock::new(None);

/// Sets the cpio archive that `execve` reads programs from.
pub fn set_archive(archive: &'static [u8]) {
    *ARCHIVE.lock() = Some(archive);
}

/// The contents of the regular file at `path` in the archive.
pub fn find(path: &[u8]) -> Option<&'static [u8]> {
    let archive = (*ARCHIVE.lock())?;
    let path = core::str::from_utf8(path).ok()?;
    tessera_cpio::find(archive, path).ok().flatten().filter(|e| e.is_file()).map(|e| e.data)
}
