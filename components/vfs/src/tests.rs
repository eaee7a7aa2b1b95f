//! Host tests of the path walk, mounts and tmpfs.

use super::*;
use crate::tmpfs::TmpFs;
use alloc::string::ToString;
use alloc::sync::Arc;

fn tree() -> Vfs {
    let vfs = Vfs::new(TmpFs::new_root(1 << 20, None));
    let root = vfs.root();
    let usr = root.node().create("usr", FileType::Directory, 0o755, 0).unwrap();
    let bin = usr.create("bin", FileType::Directory, 0o755, 0).unwrap();
    let file = bin.create("tool", FileType::Regular, 0o755, 0).unwrap();
    file.write_at(0, b"#!contents").unwrap();
    root.node().symlink("bin", "usr/bin").unwrap();
    root.node().symlink("abs", "/usr/bin/tool").unwrap();
    root.node().symlink("loop1", "loop2").unwrap();
    root.node().symlink("loop2", "loop1").unwrap();
    vfs
}

#[test]
fn walks_dots_and_symlinks() {
    let vfs = tree();
    let root = vfs.root();
    let tool = vfs.resolve(&root, "/bin/tool", true).unwrap();
    assert_eq!(tool.path(), "/usr/bin/tool");
    let mut buf = [0u8; 10];
    assert_eq!(tool.node().read_at(0, &mut buf).unwrap(), 10);
    assert_eq!(vfs.resolve(&root, "/usr/./bin/../bin/tool", true).unwrap().path(), "/usr/bin/tool");
    assert_eq!(vfs.resolve(&root, "/../../usr", true).unwrap().path(), "/usr");
    assert_eq!(vfs.resolve(&root, "abs", true).unwrap().path(), "/usr/bin/tool");
    let link = vfs.resolve(&root, "abs", false).unwrap();
    assert_eq!(link.node().metadata().kind, FileType::Symlink);
    assert_eq!(link.node().read_link().unwrap(), "/usr/bin/tool");
    let usr = vfs.resolve(&root, "usr", true).unwrap();
    assert_eq!(vfs.resolve(&usr, "bin/tool", true).unwrap().path(), "/usr/bin/tool");
    assert_eq!(vfs.resolve(&usr, "..", true).unwrap().path(), "/");
}

#[test]
fn path_errors() {
    let vfs = tree();
    let root = vfs.root();
    assert_eq!(vfs.resolve(&root, "/nope", true).err(), Some(FsError::NotFound));
    assert_eq!(vfs.resolve(&root, "", true).err(), Some(FsError::NotFound));
    assert_eq!(vfs.resolve(&root, "/usr/bin/tool/x", true).err(), Some(FsError::NotDir));
    assert_eq!(vfs.resolve(&root, "/usr/bin/tool/", true).err(), Some(FsError::NotDir));
    assert_eq!(vfs.resolve(&root, "/loop1", true).err(), Some(FsError::Loop));
    assert_eq!(vfs.resolve(&root, "/loop1/x", false).err(), Some(FsError::Loop));
    assert!(vfs.resolve(&root, "/loop1", false).is_ok(), "lstat of a looping link works");
    let long = "a".repeat(MAX_NAME + 1);
    assert_eq!(vfs.resolve(&root, &long, true).err(), Some(FsError::NameTooLong));
    let huge = "/a".repeat(MAX_PATH);
    assert_eq!(vfs.resolve(&root, &huge, true).err(), Some(FsError::NameTooLong));
}

#[test]
fn create_remove_and_rename() {
    let vfs = tree();
    let root = vfs.root();
    let (parent, name) = vfs.resolve_parent(&root, "/usr/bin/new").unwrap();
    assert_eq!((parent.path().as_str(), name.as_str()), ("/usr/bin", "new"));
    parent.node().create(&name, FileType::Regular, 0o644, 0).unwrap();
    assert_eq!(parent.node().create(&name, FileType::Regular, 0o644, 0).err(), Some(FsError::Exists));
    // rename over an existing file replaces it
    vfs.rename(&parent, "new", &parent, "tool").unwrap();
    assert_eq!(vfs.resolve(&root, "/usr/bin/new", true).err(), Some(FsError::NotFound));
    assert_eq!(vfs.resolve(&root, "/usr/bin/tool", true).unwrap().node().metadata().size, 0);
    // directories: not into themselves, not over files, only over empty dirs
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    let bin = vfs.resolve(&root, "/usr/bin", true).unwrap();
    assert_eq!(vfs.rename(&root, "usr", &bin, "x").err(), Some(FsError::Invalid));
    assert_eq!(vfs.rename(&usr, "bin", &bin, "tool").err(), Some(FsError::NotDir));
    root.node().create("empty", FileType::Directory, 0o755, 0).unwrap();
    vfs.rename(&usr, "bin", &root, "empty").unwrap();
    assert_eq!(vfs.resolve(&root, "/empty/tool", true).unwrap().path(), "/empty/tool");
    // rmdir and unlink rules
    assert_eq!(vfs.rmdir(&root, "empty").err(), Some(FsError::NotEmpty));
    assert_eq!(vfs.unlink(&root, "empty").err(), Some(FsError::IsDir));
    let empty = vfs.resolve(&root, "/empty", true).unwrap();
    assert_eq!(vfs.rmdir(&empty, "tool").err(), Some(FsError::NotDir));
    vfs.unlink(&empty, "tool").unwrap();
    vfs.rmdir(&root, "empty").unwrap();
    assert_eq!(vfs.rmdir(&root, ".").err(), Some(FsError::Invalid));
    let (parent, name) = vfs.resolve_parent(&root, "/").unwrap();
    assert_eq!((parent.path().as_str(), name.as_str()), ("/", "."));
}

#[test]
fn hard_links_count() {
    let vfs = tree();
    let root = vfs.root();
    let tool = vfs.resolve(&root, "/usr/bin/tool", true).unwrap();
    assert_eq!(tool.node().metadata().nlink, 1);
    vfs.link(tool.node(), &root, "again").unwrap();
    assert_eq!(tool.node().metadata().nlink, 2);
    vfs.unlink(&root, "again").unwrap();
    assert_eq!(tool.node().metadata().nlink, 1);
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    assert_eq!(vfs.link(usr.node(), &root, "u2").err(), Some(FsError::NotPermitted));
}

#[test]
fn mounts_cover_directories() {
    let vfs = tree();
    let root = vfs.root();
    let tmp = root.node().create("tmp", FileType::Directory, 0o1777, 0).unwrap();
    tmp.create("hidden", FileType::Regular, 0o644, 0).unwrap();
    let at = vfs.resolve(&root, "/tmp", true).unwrap();
    let other = TmpFs::new_root(4096, None);
    other.create("inside", FileType::Regular, 0o644, 0).unwrap();
    other.create("d", FileType::Directory, 0o755, 0).unwrap();
    vfs.mount(&at, other, "tmpfs").unwrap();
    assert_eq!(vfs.mount(&at, TmpFs::new_root(1, None), "tmpfs").err(), Some(FsError::Busy));
    assert!(vfs.resolve(&root, "/tmp/inside", true).is_ok());
    assert_eq!(vfs.resolve(&root, "/tmp/hidden", true).err(), Some(FsError::NotFound));
    assert_eq!(vfs.resolve(&root, "/tmp/d/../../usr", true).unwrap().path(), "/usr");
    assert_eq!(vfs.resolve(&root, "/tmp/inside/..", true).err(), Some(FsError::NotDir));
    assert_eq!(vfs.rmdir(&root, "tmp").err(), Some(FsError::Busy));
    let tmp = vfs.resolve(&root, "/tmp", true).unwrap();
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    assert_eq!(vfs.rename(&tmp, "inside", &usr, "x").err(), Some(FsError::CrossDevice));
    assert_eq!(vfs.mounts(), vec![("/tmp".to_string(), "tmpfs".to_string())]);
}

#[test]
fn tmpfs_limit_and_snapshots() {
    let root = TmpFs::new_root(10_000, None);
    let file = root.create("f", FileType::Regular, 0o644, 0).unwrap();
    assert_eq!(file.write_at(0, &[1; 8000]).unwrap(), 8000);
    assert_eq!(file.write_at(8000, &[1; 4000]).err(), Some(FsError::NoSpace));
    let snapshot = file.snapshot().unwrap();
    file.write_at(0, &[2; 10]).unwrap();
    assert_eq!(snapshot[0], 1, "a snapshot does not see later writes");
    file.truncate(100).unwrap();
    assert_eq!(file.metadata().size, 100);
    let other = root.create("g", FileType::Regular, 0o644, 0).unwrap();
    assert_eq!(other.write_at(0, &[3; 9000]).unwrap(), 9000, "truncate gave the space back");
    drop(other);
    root.detach("g").unwrap();
    let again = root.create("h", FileType::Regular, 0o644, 0).unwrap();
    assert_eq!(again.write_at(0, &[4; 9000]).unwrap(), 9000, "removing a file gave its space back");
    let stats = file.fs_stats();
    assert_eq!((stats.magic, stats.capacity, stats.used), (crate::tmpfs::TMPFS_MAGIC, 10_000, 9100));
    assert_eq!(stats.nodes_used, 3, "root, f and h are alive");
    assert_eq!(root.fs_stats(), stats, "every node reports its file system");
    assert_eq!(TmpFs::new_root(5, None).fs_stats().used, 0, "another tmpfs has its own usage");
    let mut buf = [0u8; 4];
    assert_eq!(file.read_at(98, &mut buf).unwrap(), 2);
    assert_eq!(file.read_at(1000, &mut buf).unwrap(), 0);
    assert_eq!(root.read_at(0, &mut buf).err(), Some(FsError::IsDir));
    assert_eq!(file.lookup("x").err(), Some(FsError::NotDir));
    assert_eq!(root.create("a/b", FileType::Regular, 0, 0).err(), Some(FsError::Invalid));
}

#[test]
fn exchange_swaps_entries_and_keeps_link_counts() {
    let vfs = tree();
    let root = vfs.root();
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    let bin = vfs.resolve(&root, "/usr/bin", true).unwrap();
    let note = root.node().create("note", FileType::Regular, 0o644, 0).unwrap();
    note.write_at(0, b"note").unwrap();
    // A file and a directory swap places across directories.
    vfs.exchange(&root, "note", &usr, "bin").unwrap();
    assert_eq!(vfs.resolve(&root, "/note/tool", true).unwrap().path(), "/note/tool");
    assert_eq!(vfs.resolve(&root, "/usr/bin", true).unwrap().node().metadata().size, 4);
    assert_eq!(note.metadata().nlink, 1);
    // Both must exist; no directory into itself.
    assert_eq!(vfs.exchange(&root, "missing", &usr, "bin").err(), Some(FsError::NotFound));
    let moved = vfs.resolve(&root, "/note", true).unwrap();
    assert_eq!(vfs.exchange(&root, "note", &moved, "tool").err(), Some(FsError::Invalid));
    drop(bin);
}

#[test]
fn a_walk_under_another_root_stays_there() {
    let vfs = tree();
    let root = vfs.root();
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    let who = crate::Identity::root();
    // "/" is the new root; ".." stops there; absolute links start there.
    let bin = vfs.resolve_in(&usr, &usr, "/bin", true, &who).unwrap();
    assert_eq!(bin.path(), "/usr/bin");
    assert_eq!(vfs.resolve_in(&usr, &bin, "../../..", true, &who).unwrap().path(), "/usr");
    assert_eq!(bin.path_from(&usr).as_deref(), Some("/bin"));
    assert_eq!(root.path_from(&usr), None);
    assert_eq!(vfs.resolve_in(&usr, &usr, "/usr", true, &who).err(), Some(FsError::NotFound));
}

#[test]
fn read_only_mounts_cover_their_tree_only() {
    let vfs = tree();
    let root = vfs.root();
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    vfs.mount(&usr, TmpFs::new_root(1 << 20, None), "tmpfs").unwrap();
    let mounted = vfs.resolve(&root, "/usr", true).unwrap();
    mounted.node().create("dir", FileType::Directory, 0o755, 0).unwrap();
    let inside = vfs.resolve(&root, "/usr/dir", true).unwrap();
    assert!(!vfs.is_read_only(&inside));
    vfs.set_read_only(&mounted, true).unwrap();
    assert!(vfs.is_read_only(&inside) && vfs.is_read_only(&mounted));
    assert!(!vfs.is_read_only(&root));
    assert_eq!(vfs.set_read_only(&inside, true).err(), Some(FsError::Invalid)); // not a mount root
    assert_eq!(vfs.mount_list(), alloc::vec![(String::from("/usr"), String::from("tmpfs"), true)]);
    vfs.set_read_only(&mounted, false).unwrap();
    assert!(!vfs.is_read_only(&inside));
}

#[test]
fn file_types_from_mode_and_dirent_type() {
    assert_eq!(FileType::from_mode(0o100644), Some(FileType::Regular));
    assert_eq!(FileType::from_mode(0o040755), Some(FileType::Directory));
    assert_eq!(FileType::from_mode(0o120777), Some(FileType::Symlink));
    assert_eq!(FileType::from_mode(0o020666), Some(FileType::CharDevice));
    assert_eq!(FileType::from_mode(0o644), None);
    assert_eq!(FileType::from_mode(0o170000), None);
    assert_eq!(FileType::from_dirent_type(4), Some(FileType::Directory));
    assert_eq!(FileType::from_dirent_type(10), Some(FileType::Symlink));
    assert_eq!(FileType::from_dirent_type(0), None);
    assert_eq!(FileType::from_dirent_type(3), None);
}

#[test]
fn resolve_keeping_stops_at_a_kept_link_through_a_chain() {
    let vfs = tree();
    let root = vfs.root();
    let who = crate::Identity::root();
    let dev = root.node().create("dev", FileType::Directory, 0o755, 0).unwrap();
    root.node().symlink("magic", "/nowhere").unwrap();
    dev.symlink("stdin", "../magic").unwrap();
    root.node().symlink("chain", "dev/stdin").unwrap();
    let keep = |n: &NodeRef| n.read_link().is_ok_and(|t| t == "/nowhere");
    for path in ["/magic", "/dev/stdin", "chain"] {
        let at = vfs.resolve_keeping(&root, &root, path, &keep, &who).unwrap();
        assert_eq!(at.path(), "/magic", "{path}");
    }
    // Links not kept are followed to the end; loops are refused.
    assert_eq!(vfs.resolve_keeping(&root, &root, "/abs", &keep, &who).unwrap().path(), "/usr/bin/tool");
    assert_eq!(vfs.resolve_keeping(&root, &root, "/usr", &keep, &who).unwrap().path(), "/usr");
    assert!(matches!(vfs.resolve_keeping(&root, &root, "/loop1", &keep, &who), Err(FsError::Loop)));
}

#[test]
fn locations_share_their_chain_and_name_their_place() {
    let vfs = tree();
    let root = vfs.root();
    let long = "n".repeat(200);
    let dir = root.node().create(&long, FileType::Directory, 0o755, 0).unwrap();
    dir.create("short", FileType::Directory, 0o755, 0).unwrap();
    let deep = vfs.resolve(&root, &alloc::format!("/{long}/short"), true).unwrap();
    assert_eq!(deep.path(), alloc::format!("/{long}/short"));
    let (parent, name) = deep.parent_and_name().unwrap();
    assert_eq!(name, "short");
    assert!(Arc::ptr_eq(parent, &dir));
    assert!(deep.contains(&dir) && deep.contains(root.node()));
    assert!(!root.contains(&dir));
    // The same place reached twice is the same; a clone is too.
    let again = vfs.resolve(&root, &alloc::format!("/{long}/./short/../short"), true).unwrap();
    assert!(deep.is_same(&again) && again.is_same(&deep.clone()));
    assert!(!deep.is_same(&root));
    let top = vfs.resolve(&root, &long, true).unwrap();
    assert_eq!(deep.path_from(&top).as_deref(), Some("/short"));
    assert_eq!(deep.path_from(&root).unwrap(), deep.path());
    assert_eq!(root.path_from(&deep), None);
    let usr = vfs.resolve(&root, "/usr", true).unwrap();
    assert_eq!(deep.path_from(&usr), None);
    assert_eq!(root.path(), "/");
    assert!(root.parent_and_name().is_none());
}

#[test]
fn a_very_deep_location_and_tree_are_let_go_without_recursion() {
    // Deeper than a recursive drop of the chain could go on a test
    // thread's stack.
    let vfs = Vfs::new(TmpFs::new_root(1 << 30, None));
    let mut at = vfs.root();
    for _ in 0..200_000 {
        let node = at.node().create("d", FileType::Directory, 0o755, 0).unwrap();
        at = vfs.resolve(&at, "d", true).unwrap();
        assert!(Arc::ptr_eq(at.node(), &node));
    }
    assert_eq!(vfs.resolve(&at, "..", true).unwrap().parent_and_name().map(|(_, n)| n.to_string()).as_deref(), Some("d"));
    drop(at);
    // The tree goes too, one node at a time.
    drop(vfs);
}
