//! Storage in QEMU: the ext2 cell on disk images made on the host (and by
//! busybox's mke2fs in the guest), checked afterwards by the host's
//! `e2fsck -fn`: files survive a reboot, a busybox workload leaves the
//! file system clean, a fault in the cell is contained, a swap under load
//! loses nothing, a full disk is ENOSPC, corrupt images give errors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(120);

fn tool(name: &str) -> String {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = format!("{dir}/{name}");
        if Path::new(&p).exists() {
            return p;
        }
    }
    panic!("{name} not found: install e2fsprogs (make deps)");
}

/// A disk image file removed when the test ends.
struct Image(PathBuf);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn image(tag: &str, size: &str, mkfs_args: &[&str]) -> Image {
    let path = std::env::temp_dir().join(format!("tessera-storage-{}-{tag}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    if mkfs_args.is_empty() {
        let out = Command::new("truncate").args(["-s", size]).arg(&path).output().expect("truncate");
        assert!(out.status.success());
    } else {
        let out = Command::new(tool("mkfs.ext2")).args(["-q", "-F"]).args(mkfs_args).arg(&path).arg(size).output().expect("mkfs.ext2");
        assert!(out.status.success(), "mkfs.ext2: {}", String::from_utf8_lossy(&out.stderr));
    }
    Image(path)
}

fn fsck(image: &Image) {
    let out = Command::new(tool("e2fsck")).arg("-fn").arg(&image.0).output().expect("e2fsck");
    assert!(
        out.status.success(),
        "e2fsck -fn {} found problems:\n{}{}",
        image.0.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn boot(name: &str, disk: &Image, memory: &str) -> Machine {
    let mut options = MachineOptions::kernel("");
    options.extra_disk = Some(disk.0.clone());
    options.memory = memory.into();
    options.wall_clock = Duration::from_secs(900);
    let mut m = Machine::start(name, &options);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m
}

fn run(m: &mut Machine, command: &str, answer: &str) -> String {
    m.shell(command, answer, Duration::from_secs(300))
}

/// Runs `command` and returns its output (up to a marker the command
/// line itself does not contain).
fn capture(m: &mut Machine, command: &str) -> String {
    m.capture(command, Duration::from_secs(300))
}

fn poweroff(mut m: Machine) {
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}

#[test]
fn files_written_in_one_boot_are_there_in_the_next_and_e2fsck_finds_the_disk_clean() {
    let disk = image("persist", "160M", &["-b", "4096"]);
    let mut m = boot("storage-persist", &disk, "256M");
    run(&mut m, "grep vdb /proc/mounts", "/dev/vdb /mnt/disk ext2 rw");
    // A busybox workload: copies, an archive unpacked, hard links,
    // renames, truncation, removal, a 100 MB file.
    run(
        &mut m,
        "cd /mnt/disk && cp -a /bin bin-copy && tar cf /tmp/etc.tar /etc && mkdir t && tar xf /tmp/etc.tar -C t \
         && ln bin-copy/busybox hard && mv t/etc t/etc2 && cp -a /sbin sbin-copy && rm -r sbin-copy \
         && dd if=/dev/urandom of=trunc bs=1000 count=300 2>/dev/null && truncate -s 123457 trunc \
         && dd if=/dev/zero of=big bs=1M count=100 2>/dev/null && echo workload done",
        "workload done",
    );
    run(&mut m, "ls -l /mnt/disk/big", "104857600");
    run(&mut m, "stat -c %h /mnt/disk/hard", "2");
    let listed = capture(&mut m, "cd /mnt/disk && find . -type f ! -name big | sort | xargs md5sum > /tmp/sums && md5sum big >> /tmp/sums; echo \"fi\"\"les=$(wc -l < /tmp/sums)\"");
    let files = tessera_tests::number_after(&listed, "files=").unwrap_or(0.0) as u64;
    assert!(files > 10, "{listed}");
    // The tree itself (names, links' targets, sizes) as well.
    let tree = capture(&mut m, "cd /mnt/disk && find . ! -name sums | sort | xargs ls -ld | awk '{ print $1, $5, $9, $10, $11 }' | md5sum");
    run(&mut m, "cp /tmp/sums /mnt/disk/sums && sync && echo synced", "synced");
    let df = capture(&mut m, "df -k /mnt/disk");
    assert!(df.contains("/dev/vdb"), "{df}");
    poweroff(m);
    fsck(&disk);

    // The second boot finds everything, byte for byte.
    let mut m = boot("storage-persist-2", &disk, "256M");
    run(&mut m, "cd /mnt/disk && md5sum -c sums | grep -vc ': OK$'", "0");
    let ok = capture(&mut m, "cd /mnt/disk && echo \"o\"\"k=$(md5sum -c sums | grep -c ': OK$')\"");
    assert_eq!(tessera_tests::number_after(&ok, "ok=").unwrap_or(0.0) as u64, files, "{ok}");
    let tree_again = capture(&mut m, "cd /mnt/disk && find . ! -name sums | sort | xargs ls -ld | awk '{ print $1, $5, $9, $10, $11 }' | md5sum");
    let sum = |text: &str| text.lines().find(|l| l.contains("  -")).map(str::to_string);
    assert!(sum(&tree).is_some() && sum(&tree) == sum(&tree_again), "{tree}\n{tree_again}");
    run(&mut m, "cd / && umount /mnt/disk && mount /dev/vdb /mnt/disk && ls /mnt/disk/t", "etc2");
    run(&mut m, "rm -r /mnt/disk/bin-copy /mnt/disk/big && echo removed", "removed");
    poweroff(m);
    fsck(&disk);
}

#[test]
fn busybox_mke2fs_makes_a_file_system_the_host_reads() {
    let disk = image("mke2fs", "32M", &[]);
    let mut m = boot("storage-mke2fs", &disk, "256M");
    // What tools read about the disk: sysfs (mdev makes the node again
    // from it), /proc/partitions, the block ioctls.
    run(&mut m, "cat /sys/block/vdb/size /sys/class/block/vdb/dev", "65536\n254:16");
    run(&mut m, "rm /dev/vdb && mdev -s && ls -l /dev/vdb", "254,  16");
    run(&mut m, "grep vdb /proc/partitions", "254       16      32768 vdb");
    run(&mut m, "blockdev --getsize64 /dev/vdb", "33554432");
    run(&mut m, "mke2fs /dev/vdb >/dev/null 2>&1; echo status $?", "status 0");
    run(&mut m, "mount -t ext2 /dev/vdb /mnt/disk && echo hello from tessera > /mnt/disk/hello && mkdir /mnt/disk/d && umount /mnt/disk && echo ok", "ok");
    poweroff(m);
    fsck(&disk);
    let out = Command::new(tool("debugfs")).args(["-R", "cat /hello"]).arg(&disk.0).output().expect("debugfs");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from tessera\n");
}

#[test]
fn a_fault_in_the_ext2_cell_is_contained_and_a_swap_under_load_loses_nothing() {
    let disk = image("swap", "96M", &["-b", "1024"]);
    let mut m = boot("storage-swap", &disk, "768M");
    run(&mut m, "echo before > /mnt/disk/before && cellctl swap ext2 /lib/cells/ext2-faulty.cell", "0.1.0+faulty in slot ext2");
    // The faulty cell panics on this name: the request fails, nothing
    // else does, and nothing of the failed request reaches the disk.
    run(&mut m, "touch /mnt/disk/ext2-fault-now; echo status $?", "Input/output error");
    run(&mut m, "echo after > /mnt/disk/after && cat /mnt/disk/before /mnt/disk/after", "after");
    run(&mut m, "ls /mnt/disk | grep -c ext2-fault", "0");
    let cells = capture(&mut m, "grep faulty /proc/cells");
    let fields: Vec<&str> = cells.lines().find(|l| l.contains("0.1.0+faulty")).unwrap_or("").split_whitespace().collect();
    assert_eq!(fields.get(8), Some(&"1"), "one fault counted: {cells}");
    run(&mut m, "cellctl swap ext2 /lib/cells/ext2.cell", "for ext2 0.1.0 in slot ext2");
    // Eight rounds: a tar unpacks a tree into the mount in the background
    // while the cell is swapped; a file stays open for writing throughout
    // and gets a line per round. Whatever the interleaving, every swap,
    // every unpacked tree and the open file must come out whole.
    run(
        &mut m,
        "mkdir /tmp/src && cp -a /bin /etc /lib/cells /tmp/src/ && dd if=/dev/urandom of=/tmp/src/random bs=64k count=64 2>/dev/null \
         && tar cf /tmp/src.tar -C /tmp src && exec 3>/mnt/disk/open && echo ready",
        "ready",
    );
    run(
        &mut m,
        "for i in 1 2 3 4 5 6 7 8; do mkdir /mnt/disk/x$i; tar xf /tmp/src.tar -C /mnt/disk/x$i & cellctl swap ext2 /lib/cells/ext2.cell >/dev/null || echo SWAP\"\"-FAILED; \
         wait $! || echo TAR\"\"-FAILED; echo round $i >&3; done; echo rounds done",
        "rounds done",
    );
    let failures = capture(&mut m, "cat /mnt/disk/open | wc -l; for i in 1 2 3 4 5 6 7 8; do diff -r /tmp/src /mnt/disk/x$i/src >/dev/null || echo DIFF\"\"ERS-$i; done");
    assert!(!failures.contains("DIFFERS-"), "{failures}");
    assert!(failures.lines().any(|l| l.trim() == "8"), "the open file has a line per round: {failures}");
    assert!(!m.output().contains("SWAP-FAILED") && !m.output().contains("TAR-FAILED"), "{}", m.output());
    // The faulty cell in, the good one back, then the eight swaps.
    run(&mut m, "exec 3>&-; cellctl info ext2", "swaps 10");
    poweroff(m);
    fsck(&disk);
}

#[test]
fn a_full_disk_is_enospc_and_stays_consistent() {
    let disk = image("full", "8M", &["-b", "1024"]);
    let mut m = boot("storage-full", &disk, "256M");
    run(&mut m, "dd if=/dev/zero of=/mnt/disk/fill bs=64k 2>&1 | grep -c 'No space left on device'", "1");
    run(&mut m, "touch /mnt/disk/a && echo x > /mnt/disk/b; df -k /mnt/disk | tail -1", "100%");
    run(&mut m, "rm /mnt/disk/fill && echo data > /mnt/disk/c && cat /mnt/disk/c", "data");
    // In use (a working directory, an open file): EBUSY; then it goes.
    run(&mut m, "cd /mnt/disk && umount /mnt/disk; echo status $?", "Device or resource busy");
    run(&mut m, "cd / && exec 3</mnt/disk/c && umount /mnt/disk; echo status $?", "Device or resource busy");
    run(&mut m, "exec 3<&- && umount /mnt/disk && grep -c vdb /proc/mounts", "0");
    poweroff(m);
    fsck(&disk);
}

/// Offset of the first block of `path`'s data in the image.
fn block_of(disk: &Image, path: &str, block_size: u64) -> u64 {
    let out = Command::new(tool("debugfs")).args(["-R", &format!("blocks {path}")]).arg(&disk.0).output().expect("debugfs");
    let text = String::from_utf8_lossy(&out.stdout);
    let first: u64 = text.split_whitespace().next().and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("blocks of {path}: {text}"));
    first * block_size
}

fn patch(disk: &Image, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(&disk.0).expect("open image");
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn corrupt_images_give_errors_never_a_panic() {
    // A directory whose first entry has an impossible record length.
    let src = std::env::temp_dir().join(format!("tessera-storage-{}-tree", std::process::id()));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/file"), b"content\n").unwrap();
    std::fs::write(src.join("good"), b"fine\n").unwrap();
    let disk = image("corrupt", "8M", &["-b", "1024", "-d", src.to_str().unwrap()]);
    let dir = block_of(&disk, "/d", 1024);
    patch(&disk, dir + 4, &[3, 0]); // rec_len 3 of "."
    let mut m = boot("storage-corrupt", &disk, "256M");
    // (busybox ls ignores readdir errors; cat and touch report them.)
    run(&mut m, "cat /mnt/disk/d/file; echo status $?", "Structure needs cleaning");
    run(&mut m, "cat /mnt/disk/good", "fine");
    run(&mut m, "touch /mnt/disk/d/new; echo status $?", "Structure needs cleaning");
    run(&mut m, "cd / && umount /mnt/disk && echo unmounted", "unmounted");
    poweroff(m);

    // A bad superblock, and a file system larger than its disk: mount
    // refuses both with EINVAL, the kernel says why.
    let bad = image("badsuper", "8M", &["-b", "1024"]);
    patch(&bad, 1024 + 24, &[9, 0, 0, 0]); // s_log_block_size 9
    let mut m = boot("storage-badsuper", &bad, "256M");
    run(&mut m, "grep -c vdb /proc/mounts", "0");
    run(&mut m, "mount -t ext2 /dev/vdb /mnt/disk; echo status $?", "Invalid argument");
    poweroff(m);
    let short = image("short", "16M", &["-b", "1024"]);
    let out = Command::new("truncate").args(["-s", "8M"]).arg(&short.0).output().unwrap();
    assert!(out.status.success());
    let mut m = boot("storage-short", &short, "256M");
    run(&mut m, "mount -t ext2 /dev/vdb /mnt/disk; echo status $?", "Invalid argument");
    run(&mut m, "dmesg | grep 'larger than' | tail -1", "ext2 of 16384 blocks of 1024 bytes is larger than the device (8388608 bytes)");
    poweroff(m);
}

#[test]
fn unsynced_writes_reach_the_disk_by_themselves() {
    let disk = image("writeback", "16M", &["-b", "1024"]);
    let mut m = boot("storage-writeback", &disk, "256M");
    run(&mut m, "echo unsynced data > /mnt/disk/w && mkdir /mnt/disk/d && echo written", "written");
    // No sync: the write-back task (every 5 s) writes it. Read the image
    // from the host while the machine runs; the bound is generous.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let out = Command::new(tool("debugfs")).args(["-R", "cat /w"]).arg(&disk.0).output().expect("debugfs");
        if String::from_utf8_lossy(&out.stdout) == "unsynced data\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not on the disk after 120 s:\n{}", m.output());
        std::thread::sleep(Duration::from_millis(500));
    }
    // Stop the machine the hard way: what was written back is complete.
    drop(m);
    fsck(&disk);
}
