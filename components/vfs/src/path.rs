//! Path resolution and the mount table.

use crate::perm::{Identity, MAY_EXEC};
use crate::node::{FileType, NodeRef};
use crate::FsError;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

/// Longest path accepted (including the terminating NUL in Linux terms).
pub const MAX_PATH: usize = 4096;
/// Longest name of one component.
pub const MAX_NAME: usize = 255;
/// Most symbolic links followed while resolving one path.
pub const MAX_SYMLINKS: usize = 40;

/// A place in the tree: the chain of names and nodes from the root, so
/// that `..` and `getcwd` need no parent pointers in the file systems.
///
/// The chain is shared: each step holds its name, its node and the step
/// above it, so cloning a location (a working directory, a walk's start)
/// costs one reference count, and a walk adds one allocation per name.
#[derive(Clone)]
pub struct Location {
    step: Arc<Step>,
}

/// One step of a [`Location`]'s chain.
struct Step {
    /// The step above (`None` at the root).
    parent: Option<Location>,
    name: Name,
    node: NodeRef,
    /// Steps above this one (0 at the root).
    depth: usize,
}

impl Step {
    /// This step and those above it, up to the root.
    fn up(&self) -> impl Iterator<Item = &Step> {
        core::iter::successors(Some(self), |s| s.parent.as_ref().map(|p| &*p.step))
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        // A deep chain is let go one step at a time, not by recursion (a
        // working directory may be thousands of names deep).
        let mut next = self.parent.take();
        while let Some(above) = next {
            next = Arc::into_inner(above.step).and_then(|mut step| step.parent.take());
        }
    }
}

/// A name of up to [`Name::INLINE`] bytes is kept in the step itself.
enum Name {
    Short(u8, [u8; Name::INLINE]),
    Long(alloc::boxed::Box<str>),
}

impl Name {
    const INLINE: usize = 30;

    fn new(name: &str) -> Self {
        let bytes = name.as_bytes();
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= Self::INLINE => {
                let mut buf = [0u8; Self::INLINE];
                if let Some(dst) = buf.get_mut(..bytes.len()) {
                    dst.copy_from_slice(bytes);
                }
                Name::Short(len, buf)
            }
            _ => Name::Long(name.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `&str` whole, so always UTF-8.
            Name::Short(len, buf) => buf.get(..usize::from(*len)).and_then(|b| core::str::from_utf8(b).ok()).unwrap_or(""),
            Name::Long(name) => name,
        }
    }
}

impl Location {
    /// The location of a root node.
    fn at_root(root: NodeRef) -> Self {
        Location { step: Arc::new(Step { parent: None, name: Name::new(""), node: root, depth: 0 }) }
    }

    /// The node here.
    pub fn node(&self) -> &NodeRef {
        &self.step.node
    }

    /// The steps from here up to the root, this one first.
    fn steps(&self) -> impl Iterator<Item = &Step> {
        self.step.up()
    }

    /// The location `depth` steps from the root on the way here (`None`
    /// when deeper than this one).
    fn ancestor_at(&self, depth: usize) -> Option<&Step> {
        let up = self.step.depth.checked_sub(depth)?;
        self.steps().nth(up)
    }

    /// Whether both name the same place by the same way down from the root.
    pub fn is_same(&self, other: &Location) -> bool {
        Arc::ptr_eq(&self.step, &other.step)
            || (self.step.depth == other.step.depth && self.steps().zip(other.steps()).all(|(a, b)| Arc::ptr_eq(&a.node, &b.node)))
    }

    /// The path as seen from `root` (a `chroot` directory): relative to it
    /// when inside it, `None` when outside.
    pub fn path_from(&self, root: &Location) -> Option<String> {
        let top = self.ancestor_at(root.step.depth)?;
        let inside = top.up().zip(root.steps()).all(|(a, b)| Arc::ptr_eq(&a.node, &b.node));
        inside.then(|| self.path_below(root.step.depth))
    }

    /// The absolute path (`/` for the root).
    pub fn path(&self) -> String {
        self.path_below(0)
    }

    /// The names of the steps deeper than `depth` down to here, as a path
    /// from `/`.
    fn path_below(&self, depth: usize) -> String {
        let mut names: Vec<&str> = self.steps().take(self.step.depth.saturating_sub(depth)).map(|s| s.name.as_str()).collect();
        names.reverse();
        alloc::format!("/{}", names.join("/"))
    }

    /// The directory holding this location and the name it has there
    /// (`None` at the root).
    pub fn parent_and_name(&self) -> Option<(&NodeRef, &str)> {
        let parent = self.step.parent.as_ref()?;
        Some((&parent.step.node, self.step.name.as_str()))
    }

    /// True when `node` is this location or one of its ancestors.
    pub fn contains(&self, node: &NodeRef) -> bool {
        let id = node.fs_node_id();
        self.steps().any(|s| s.node.fs_node_id() == id)
    }

    fn push(&mut self, name: &str, node: NodeRef) {
        let depth = self.step.depth + 1;
        let parent = core::mem::replace(self, Location { step: Arc::new(Step { parent: None, name: Name::new(name), node, depth }) });
        // The new step is not shared yet: it takes its parent in place.
        if let Some(step) = Arc::get_mut(&mut self.step) {
            step.parent = Some(parent);
        }
    }

    fn pop(&mut self) {
        if let Some(parent) = self.step.parent.clone() {
            *self = parent;
        }
    }
}

/// The result of resolving a path.
pub type Resolved = Location;

struct Mount {
    /// (dev, ino) of the directory covered.
    at: (u64, u64),
    root: NodeRef,
    path: String,
    fstype: String,
    /// Mounted (or remounted) read-only: changes are refused (EROFS).
    read_only: bool,
    source: String,
}

/// The file-system tree: a root and the mounts on it.
pub struct Vfs {
    /// `root`'s location (a walk from `/` starts from a clone of it).
    root_location: Location,
    mounts: Mutex<Vec<Mount>>,
}

fn is_dir(node: &NodeRef) -> bool {
    node.kind() == FileType::Directory
}

impl Vfs {
    /// A tree with `root` at `/`.
    pub fn new(root: NodeRef) -> Self {
        Self { root_location: Location::at_root(root), mounts: Mutex::new(Vec::new()) }
    }

    /// The root location.
    pub fn root(&self) -> Location {
        self.root_location.clone()
    }

    /// Mounts `root` (of type `fstype`) over the directory at `at`.
    pub fn mount(&self, at: &Location, root: NodeRef, fstype: &str) -> Result<(), FsError> {
        self.mount_from(at, root, fstype, fstype)
    }

    /// Mounts `root` (of type `fstype`, from `source`: a device path, or
    /// the type's name) over the directory at `at`.
    pub fn mount_from(&self, at: &Location, root: NodeRef, fstype: &str, source: &str) -> Result<(), FsError> {
        if !is_dir(at.node()) || !is_dir(&root) {
            return Err(FsError::NotDir);
        }
        let id = at.node().fs_node_id();
        let mut mounts = self.mounts.lock();
        if mounts.iter().any(|m| m.at == id) {
            return Err(FsError::Busy);
        }
        mounts.push(Mount { at: id, root, path: at.path(), fstype: fstype.to_string(), source: source.to_string(), read_only: false });
        Ok(())
    }

    /// Makes the file system mounted at `at` (its root directory, as a
    /// path walk reaches it) read-only or writable again (`MS_REMOUNT`);
    /// `Invalid` when `at` is not the root of a mount.
    pub fn set_read_only(&self, at: &Location, read_only: bool) -> Result<(), FsError> {
        let root = at.node();
        let mut mounts = self.mounts.lock();
        let mount = mounts.iter_mut().rev().find(|m| Arc::ptr_eq(&m.root, root)).ok_or(FsError::Invalid)?;
        mount.read_only = read_only;
        Ok(())
    }

    /// Whether `location` is on a read-only mount: the nearest mount root
    /// on its way down from the root decides.
    pub fn is_read_only(&self, location: &Location) -> bool {
        let mounts = self.mounts.lock();
        if mounts.iter().all(|m| !m.read_only) {
            return false;
        }
        for step in location.steps() {
            if let Some(mount) = mounts.iter().rev().find(|m| Arc::ptr_eq(&m.root, &step.node)) {
                return mount.read_only;
            }
        }
        false
    }

    /// Removes the mount at absolute `path`.
    pub fn unmount(&self, path: &str) -> Result<(), FsError> {
        let mut mounts = self.mounts.lock();
        let index = mounts.iter().rposition(|m| m.path == path).ok_or(FsError::Invalid)?;
        mounts.remove(index);
        Ok(())
    }

    /// Mount points and their types, for `/proc/mounts`.
    pub fn mounts(&self) -> Vec<(String, String)> {
        self.mounts.lock().iter().map(|m| (m.path.clone(), m.fstype.clone())).collect()
    }

    /// Every mount: path, type and whether it is read-only.
    pub fn mount_list(&self) -> Vec<(String, String, bool)> {
        self.mounts.lock().iter().map(|m| (m.path.clone(), m.fstype.clone(), m.read_only)).collect()
    }

    /// Every mount: source, path, type and whether it is read-only.
    pub fn mount_table(&self) -> Vec<(String, String, String, bool)> {
        self.mounts.lock().iter().map(|m| (m.source.clone(), m.path.clone(), m.fstype.clone(), m.read_only)).collect()
    }

    /// The root of the mount at absolute `path`.
    pub fn mount_root(&self, path: &str) -> Option<NodeRef> {
        self.mounts.lock().iter().rev().find(|m| m.path == path).map(|m| m.root.clone())
    }

    /// True when `node` is covered by a mount.
    pub fn is_mount_point(&self, node: &NodeRef) -> bool {
        let id = node.fs_node_id();
        self.mounts.lock().iter().any(|m| m.at == id)
    }

    fn cross_mounts(&self, mut node: NodeRef) -> NodeRef {
        // Bounded: each step enters a different mount.
        for _ in 0..64 {
            let id = node.fs_node_id();
            let mounted = self.mounts.lock().iter().find(|m| m.at == id).map(|m| m.root.clone());
            match mounted {
                Some(root) => node = root,
                None => break,
            }
        }
        node
    }

    /// Resolves `path` from `cwd`. `follow_last`: a final symbolic link is
    /// followed (stat) or not (lstat, readlink, unlink).
    pub fn resolve(&self, cwd: &Location, path: &str, follow_last: bool) -> Result<Location, FsError> {
        let mut links = 0;
        self.walk(&self.root(), cwd.clone(), path, follow_last, &mut links, None)
    }

    /// [`Vfs::resolve`] for `who`: every directory walked through must
    /// allow `who` to search it (`Access` otherwise, EACCES).
    pub fn resolve_as(&self, cwd: &Location, path: &str, follow_last: bool, who: &Identity) -> Result<Location, FsError> {
        self.resolve_in(&self.root(), cwd, path, follow_last, who)
    }

    /// [`Vfs::resolve_as`] for a walker whose root directory is `root`
    /// (`chroot`): absolute paths and absolute symbolic links start there
    /// and `..` does not climb above it.
    pub fn resolve_in(&self, root: &Location, cwd: &Location, path: &str, follow_last: bool, who: &Identity) -> Result<Location, FsError> {
        let mut links = 0;
        self.walk(root, cwd.clone(), path, follow_last, &mut links, Some(who))
    }

    /// [`Vfs::resolve_in`] following symbolic links, the last ones too,
    /// except a last one for which `keep(node)` holds: its own location
    /// (Linux's "magic" links, `/proc/PID/fd/N`, which name an object the
    /// caller reaches itself, even through `/dev/stdin -> /proc/self/fd/0`).
    pub fn resolve_keeping(&self, root: &Location, cwd: &Location, path: &str, keep: &dyn Fn(&NodeRef) -> bool, who: &Identity) -> Result<Location, FsError> {
        let mut links = 0;
        let mut location = self.walk(root, cwd.clone(), path, false, &mut links, Some(who))?;
        loop {
            let node = location.node();
            if node.kind() != FileType::Symlink || keep(node) {
                return Ok(location);
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(FsError::Loop);
            }
            let target = node.read_link()?;
            let mut dir = location.clone();
            dir.pop();
            location = self.walk(root, dir, &target, false, &mut links, Some(who))?;
        }
    }

    fn walk(&self, root: &Location, start: Location, path: &str, follow_last: bool, links: &mut usize, who: Option<&Identity>) -> Result<Location, FsError> {
        if path.len() >= MAX_PATH {
            return Err(FsError::NameTooLong);
        }
        if path.is_empty() {
            return Err(FsError::NotFound);
        }
        let mut location = if path.starts_with('/') { root.clone() } else { start };
        let must_be_dir = path.ends_with('/');
        // The superuser may search every directory: no attributes to read.
        let who = who.filter(|w| !w.is_root());
        let mut components = path.split('/').filter(|c| !c.is_empty()).peekable();
        while let Some(component) = components.next() {
            let last = components.peek().is_none();
            if component.len() > MAX_NAME {
                return Err(FsError::NameTooLong);
            }
            if let Some(who) = who {
                let dir = location.node().metadata();
                if dir.kind == FileType::Directory && !who.may(&dir, MAY_EXEC) {
                    return Err(FsError::Access);
                }
            }
            if component == "." {
                if !is_dir(location.node()) {
                    return Err(FsError::NotDir);
                }
                continue;
            }
            if component == ".." {
                if !is_dir(location.node()) {
                    return Err(FsError::NotDir);
                }
                if !location.is_same(root) {
                    location.pop();
                }
                continue;
            }
            if !is_dir(location.node()) {
                return Err(FsError::NotDir);
            }
            let child = self.cross_mounts(location.node().lookup(component)?);
            if child.kind() == FileType::Symlink && (!last || follow_last || must_be_dir) {
                *links += 1;
                if *links > MAX_SYMLINKS {
                    return Err(FsError::Loop);
                }
                let target = child.read_link()?;
                location = self.walk(root, location, &target, true, links, who)?;
                continue;
            }
            location.push(component, child);
        }
        if must_be_dir && !is_dir(location.node()) {
            return Err(FsError::NotDir);
        }
        Ok(location)
    }

    /// Resolves all but the last component of `path`; returns the parent
    /// directory and the last name (which may be `.` or `..`).
    pub fn resolve_parent(&self, cwd: &Location, path: &str) -> Result<(Location, String), FsError> {
        self.parent_of(&self.root(), cwd, path, None)
    }

    /// [`Vfs::resolve_parent`] for `who` (search permission checked on the
    /// way, as [`Vfs::resolve_as`]).
    pub fn resolve_parent_as(&self, cwd: &Location, path: &str, who: &Identity) -> Result<(Location, String), FsError> {
        self.parent_of(&self.root(), cwd, path, Some(who))
    }

    /// [`Vfs::resolve_parent_as`] under the root directory `root` (see
    /// [`Vfs::resolve_in`]).
    pub fn resolve_parent_in(&self, root: &Location, cwd: &Location, path: &str, who: &Identity) -> Result<(Location, String), FsError> {
        self.parent_of(root, cwd, path, Some(who))
    }

    fn parent_of(&self, root: &Location, cwd: &Location, path: &str, who: Option<&Identity>) -> Result<(Location, String), FsError> {
        if path.len() >= MAX_PATH {
            return Err(FsError::NameTooLong);
        }
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            // "/" itself: the root, named "." (mkdir gives EEXIST, unlink EISDIR).
            return if path.is_empty() { Err(FsError::NotFound) } else { Ok((root.clone(), ".".to_string())) };
        }
        let (dir, name) = match trimmed.rfind('/') {
            Some(0) => ("/", trimmed.get(1..).unwrap_or("")),
            Some(at) => (trimmed.get(..at).unwrap_or(""), trimmed.get(at + 1..).unwrap_or("")),
            None => (".", trimmed),
        };
        if name.len() > MAX_NAME {
            return Err(FsError::NameTooLong);
        }
        let mut links = 0;
        let parent = self.walk(root, cwd.clone(), dir, true, &mut links, who)?;
        if !is_dir(parent.node()) {
            return Err(FsError::NotDir);
        }
        Ok((parent, name.to_string()))
    }

    /// Removes the non-directory `name` in `parent`.
    pub fn unlink(&self, parent: &Location, name: &str) -> Result<(), FsError> {
        if name == "." || name == ".." {
            return Err(FsError::IsDir);
        }
        let node = parent.node().lookup(name)?;
        if is_dir(&node) {
            return Err(FsError::IsDir);
        }
        parent.node().detach(name).map(drop)
    }

    /// Removes the empty directory `name` in `parent`.
    pub fn rmdir(&self, parent: &Location, name: &str) -> Result<(), FsError> {
        match name {
            "." => return Err(FsError::Invalid),
            ".." => return Err(FsError::NotEmpty),
            _ => {}
        }
        let node = parent.node().lookup(name)?;
        if !is_dir(&node) {
            return Err(FsError::NotDir);
        }
        if self.is_mount_point(&node) {
            return Err(FsError::Busy);
        }
        if !node.entries()?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        parent.node().detach(name).map(drop)
    }

    /// Renames `old_name` in `old_parent` to `new_name` in `new_parent`.
    pub fn rename(&self, old_parent: &Location, old_name: &str, new_parent: &Location, new_name: &str) -> Result<(), FsError> {
        for name in [old_name, new_name] {
            if name == "." || name == ".." {
                return Err(FsError::Busy);
            }
        }
        let source = old_parent.node().lookup(old_name)?;
        if self.is_mount_point(&source) {
            return Err(FsError::Busy);
        }
        let source_is_dir = is_dir(&source);
        if let Ok(target) = new_parent.node().lookup(new_name) {
            if target.fs_node_id() == source.fs_node_id() {
                return Ok(());
            }
            match (source_is_dir, is_dir(&target)) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !target.entries()?.is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
            if self.is_mount_point(&target) {
                return Err(FsError::Busy);
            }
        }
        if source_is_dir && new_parent.contains(&source) {
            return Err(FsError::Invalid); // into itself
        }
        if source.metadata().dev != new_parent.node().metadata().dev {
            return Err(FsError::CrossDevice);
        }
        new_parent.node().attach(new_name, source, true)?;
        old_parent.node().detach(old_name).map(drop)
    }

    /// Swaps two entries (`RENAME_EXCHANGE`): both must exist, on one file
    /// system, neither a mount point nor a directory moved into itself.
    pub fn exchange(&self, a_parent: &Location, a_name: &str, b_parent: &Location, b_name: &str) -> Result<(), FsError> {
        for name in [a_name, b_name] {
            if name == "." || name == ".." {
                return Err(FsError::Busy);
            }
        }
        let a = a_parent.node().lookup(a_name)?;
        let b = b_parent.node().lookup(b_name)?;
        if a.fs_node_id() == b.fs_node_id() {
            return Ok(());
        }
        if self.is_mount_point(&a) || self.is_mount_point(&b) {
            return Err(FsError::Busy);
        }
        if (is_dir(&a) && b_parent.contains(&a)) || (is_dir(&b) && a_parent.contains(&b)) {
            return Err(FsError::Invalid);
        }
        if a.metadata().dev != b_parent.node().metadata().dev || b.metadata().dev != a_parent.node().metadata().dev {
            return Err(FsError::CrossDevice);
        }
        if let Some(done) = a_parent.node().exchange(a_name, b_parent.node(), b_name) {
            return done;
        }
        b_parent.node().attach(b_name, a, true)?;
        a_parent.node().attach(a_name, b, true)
    }

    /// Makes `new_name` in `new_parent` another name for the file `node`.
    pub fn link(&self, node: &NodeRef, new_parent: &Location, new_name: &str) -> Result<(), FsError> {
        if is_dir(node) {
            return Err(FsError::NotPermitted);
        }
        new_parent.node().attach(new_name, node.clone(), false)
    }
}
