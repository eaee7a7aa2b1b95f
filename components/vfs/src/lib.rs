//! The virtual file system: the [`Node`] interface every file system
//! implements, path resolution with `.`, `..`, symbolic links (ELOOP after
//! 40) and mount points, and [`tmpfs`], the in-memory file system the root
//! lives on.
//!
//! Pure logic over `alloc` and `spin` locks: it builds and is tested on
//! the host. Errors are [`FsError`]s, which the Linux layer turns into
//! errno values.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod error;
mod node;
mod path;
pub mod perm;
pub mod tmpfs;

pub use error::FsError;
pub use node::{DirEntry, FileType, FsStats, Metadata, Node, NodeRef, Timespec, Xattrs};
pub use perm::Identity;
pub use path::{Location, MAX_NAME, MAX_PATH, MAX_SYMLINKS, Resolved, Vfs};

#[cfg(test)]
mod tests;
