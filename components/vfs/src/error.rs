//! File-system errors; each maps to one Linux errno.

/// Why a file-system operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    /// No such file or directory (ENOENT).
    NotFound,
    /// Already exists (EEXIST).
    Exists,
    /// A path component is not a directory (ENOTDIR).
    NotDir,
    /// Is a directory (EISDIR).
    IsDir,
    /// Directory not empty (ENOTEMPTY).
    NotEmpty,
    /// No space left (ENOSPC).
    NoSpace,
    /// A name or path is too long (ENAMETOOLONG).
    NameTooLong,
    /// Too many symbolic links (ELOOP).
    Loop,
    /// Invalid argument (EINVAL).
    Invalid,
    /// Cross-device link or rename (EXDEV).
    CrossDevice,
    /// Operation not permitted (EPERM).
    NotPermitted,
    /// Busy, e.g. a mount point (EBUSY).
    Busy,
    /// The operation does not apply to this kind of node (EINVAL/ENOTSUP).
    Unsupported,
    /// Permission denied (EACCES).
    Access,
    /// The storage failed (EIO).
    Io,
    /// The structures on disk are inconsistent (EUCLEAN).
    Corrupt,
    /// Past the largest file the file system holds (EFBIG).
    TooBig,
    /// Too many links (EMLINK).
    TooManyLinks,
    /// A read-only file system (EROFS).
    ReadOnly,
}

impl FsError {
    /// The Linux errno number.
    pub fn errno(self) -> i32 {
        match self {
            FsError::NotFound => 2,
            FsError::Exists => 17,
            FsError::NotDir => 20,
            FsError::IsDir => 21,
            FsError::NotEmpty => 39,
            FsError::NoSpace => 28,
            FsError::NameTooLong => 36,
            FsError::Loop => 40,
            FsError::Invalid => 22,
            FsError::CrossDevice => 18,
            FsError::NotPermitted => 1,
            FsError::Busy => 16,
            FsError::Unsupported => 95,
            FsError::Access => 13,
            FsError::Io => 5,
            FsError::Corrupt => 117,
            FsError::TooBig => 27,
            FsError::TooManyLinks => 31,
            FsError::ReadOnly => 30,
        }
    }
}
