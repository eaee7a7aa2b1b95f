//! Discretionary access control as Linux's `generic_permission` does it:
//! who asks (file-system user and group ids, supplementary groups) against
//! a node's owner, group and mode bits; the superuser (fsuid 0, which holds
//! `CAP_DAC_OVERRIDE` and `CAP_FOWNER` on Linux) passes reads and writes
//! always and execution when any execute bit is set or the node is a
//! directory. Sticky directories and the rules for who may change a
//! node's mode and owner live here too.

use crate::node::{FileType, Metadata};
use alloc::sync::Arc;

/// Read permission (`R_OK`).
pub const MAY_READ: u32 = 4;
/// Write permission (`W_OK`).
pub const MAY_WRITE: u32 = 2;
/// Execute, or search for a directory (`X_OK`).
pub const MAY_EXEC: u32 = 1;

/// `S_ISUID`.
pub const SET_UID: u32 = 0o4000;
/// `S_ISGID`.
pub const SET_GID: u32 = 0o2000;
/// `S_ISVTX`.
pub const STICKY: u32 = 0o1000;

/// Who performs a file-system operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// File-system user id (follows the effective uid unless `setfsuid`).
    pub uid: u32,
    /// File-system group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Arc<[u32]>,
}

impl Identity {
    /// The superuser (the kernel's own lookups).
    pub fn root() -> Self {
        Self { uid: 0, gid: 0, groups: Arc::from([]) }
    }

    /// True for fsuid 0.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// True when `gid` is the fsgid or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// May this identity access `meta` for `mask` (`MAY_*` bits)?
    pub fn may(&self, meta: &Metadata, mask: u32) -> bool {
        let mask = mask & 7;
        if self.is_root() {
            let exec_ok = mask & MAY_EXEC == 0 || meta.kind == FileType::Directory || meta.perm & 0o111 != 0;
            return exec_ok;
        }
        let bits = if self.uid == meta.uid {
            meta.perm >> 6
        } else if self.in_group(meta.gid) {
            meta.perm >> 3
        } else {
            meta.perm
        } & 7;
        bits & mask == mask
    }

    /// True when this identity owns `meta` or is the superuser (who may
    /// change its mode and times: `CAP_FOWNER`).
    pub fn owns(&self, meta: &Metadata) -> bool {
        self.is_root() || self.uid == meta.uid
    }

    /// May this identity remove or rename away `child` from the directory
    /// `dir` (which it may already write)? In a sticky directory only the
    /// owner of the entry or of the directory may.
    pub fn may_delete(&self, dir: &Metadata, child: &Metadata) -> bool {
        dir.perm & STICKY == 0 || self.is_root() || self.uid == child.uid || self.uid == dir.uid
    }

    /// The mode bits `chmod(mode)` really sets: a caller that is not the
    /// superuser and not in the file's group loses `S_ISGID` (Linux).
    pub fn chmod_bits(&self, meta: &Metadata, mode: u32) -> u32 {
        let mode = mode & 0o7777;
        if !self.is_root() && !self.in_group(meta.gid) { mode & !SET_GID } else { mode }
    }

    /// May this identity give `meta` the owner `uid` and group `gid`
    /// (`u32::MAX`: unchanged)? Only the superuser changes the owner; the
    /// owner may change the group to one of its own groups.
    pub fn may_chown(&self, meta: &Metadata, uid: u32, gid: u32) -> bool {
        if self.is_root() {
            return true;
        }
        let uid_ok = uid == u32::MAX || uid == meta.uid;
        let gid_ok = gid == u32::MAX || gid == meta.gid || self.in_group(gid);
        self.uid == meta.uid && uid_ok && gid_ok
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::root()
    }
}

/// The mode bits left after a change of owner or group by `chown`: the
/// set-user-id bit goes, and the set-group-id bit when group execution
/// is allowed (Linux, for regular files, whoever changes it).
pub fn after_chown(meta: &Metadata) -> u32 {
    if meta.kind != FileType::Regular {
        return meta.perm;
    }
    let mut perm = meta.perm & !SET_UID;
    if perm & 0o010 != 0 {
        perm &= !SET_GID;
    }
    perm
}

/// The mode bits left after a write by someone other than the superuser:
/// the set-user-id bit goes, and the set-group-id bit when group
/// execution is allowed (Linux's `file_remove_privs`).
pub fn after_write(meta: &Metadata, writer: &Identity) -> u32 {
    if writer.is_root() { meta.perm } else { after_chown(meta) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Timespec;

    fn meta(kind: FileType, perm: u32, uid: u32, gid: u32) -> Metadata {
        let t = Timespec::default();
        Metadata { dev: 1, ino: 1, kind, perm, nlink: 1, uid, gid, size: 0, blocks: None, rdev: 0, atime: t, mtime: t, ctime: t }
    }

    fn user(uid: u32, gid: u32, groups: &[u32]) -> Identity {
        Identity { uid, gid, groups: Arc::from(groups) }
    }

    #[test]
    fn owner_group_and_other_bits_decide_in_that_order() {
        let file = meta(FileType::Regular, 0o640, 10, 20);
        assert!(user(10, 99, &[]).may(&file, MAY_READ | MAY_WRITE));
        assert!(!user(10, 99, &[]).may(&file, MAY_EXEC));
        assert!(user(11, 20, &[]).may(&file, MAY_READ));
        assert!(!user(11, 20, &[]).may(&file, MAY_WRITE));
        assert!(user(11, 99, &[20]).may(&file, MAY_READ), "supplementary group");
        assert!(!user(11, 99, &[]).may(&file, MAY_READ));
        // The owner's bits apply to the owner even when the group's would allow more.
        let odd = meta(FileType::Regular, 0o070, 10, 20);
        assert!(!user(10, 20, &[]).may(&odd, MAY_READ));
    }

    #[test]
    fn the_superuser_needs_an_execute_bit_only_to_execute() {
        let root = Identity::root();
        let none = meta(FileType::Regular, 0o000, 10, 20);
        assert!(root.may(&none, MAY_READ | MAY_WRITE));
        assert!(!root.may(&none, MAY_EXEC));
        assert!(root.may(&meta(FileType::Regular, 0o001, 10, 20), MAY_EXEC));
        assert!(root.may(&meta(FileType::Directory, 0o000, 10, 20), MAY_EXEC));
    }

    #[test]
    fn sticky_directories_protect_other_users_entries() {
        let tmp = meta(FileType::Directory, 0o1777, 0, 0);
        let theirs = meta(FileType::Regular, 0o666, 30, 30);
        assert!(!user(10, 10, &[]).may_delete(&tmp, &theirs));
        assert!(user(30, 30, &[]).may_delete(&tmp, &theirs));
        assert!(Identity::root().may_delete(&tmp, &theirs));
        let plain = meta(FileType::Directory, 0o777, 0, 0);
        assert!(user(10, 10, &[]).may_delete(&plain, &theirs));
    }

    #[test]
    fn mode_and_owner_changes_follow_linux() {
        let file = meta(FileType::Regular, 0o644, 10, 20);
        let owner = user(10, 10, &[5]);
        assert!(owner.owns(&file) && !user(11, 20, &[]).owns(&file));
        // Not in the file's group: S_ISGID is dropped.
        assert_eq!(owner.chmod_bits(&file, 0o2755), 0o755);
        assert_eq!(user(10, 20, &[]).chmod_bits(&file, 0o2755), 0o2755);
        assert!(owner.may_chown(&file, u32::MAX, 5));
        assert!(!owner.may_chown(&file, u32::MAX, 6));
        assert!(!owner.may_chown(&file, 11, u32::MAX));
        assert!(Identity::root().may_chown(&file, 11, 6));
        let setid = meta(FileType::Regular, 0o6755, 10, 20);
        assert_eq!(after_chown(&setid), 0o755);
        assert_eq!(after_chown(&meta(FileType::Regular, 0o6745, 10, 20)), 0o2745, "no group x: S_ISGID is mandatory locking, kept");
        assert_eq!(after_write(&setid, &Identity::root()), 0o6755);
        assert_eq!(after_write(&setid, &owner), 0o755);
    }
}
