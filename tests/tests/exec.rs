//! `make exec`: a script of everyday applets runs under Tessera and prints
//! exactly what the same busybox prints on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

#[test]
fn applet_script_matches_host_busybox() {
    let root = workspace();
    let script = root.join("tests/scripts/applets.sh");
    let rootfs = root.join("build/rootfs");
    assert!(rootfs.join("bin/busybox").exists(), "build/rootfs missing: run make test");
    // The host run: the same busybox, with only its applets on PATH.
    let path: Vec<String> =
        ["bin", "sbin", "usr/bin", "usr/sbin"].iter().map(|d| rootfs.join(d).display().to_string()).collect();
    let host = Command::new("/bin/busybox")
        .arg("sh")
        .arg(&script)
        .env("PATH", path.join(":"))
        .output()
        .expect("run busybox on the host");
    assert!(host.status.success(), "host run failed: {}", String::from_utf8_lossy(&host.stderr));
    // The Tessera run, through the README's command.
    let tessera = Command::new("make")
        .args(["-s", "--no-print-directory", "exec"])
        .arg(format!("SCRIPT={}", script.display()))
        .current_dir(&root)
        .output()
        .expect("run make exec");
    let ours = String::from_utf8_lossy(&tessera.stdout);
    let theirs = String::from_utf8_lossy(&host.stdout);
    assert!(tessera.status.success(), "make exec failed:\n{ours}\n{}", String::from_utf8_lossy(&tessera.stderr));
    let invocations = std::fs::read_to_string(&script)
        .expect("script")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .count();
    assert!(invocations >= 60, "the script should run at least 60 commands, has {invocations} lines");
    assert_eq!(ours, theirs, "Tessera's output differs from the host's");
    assert!(ours.starts_with("start\n") && ours.ends_with("end\n"));
}

/// What `make exec` does, with a private archive in `dir`: the root file
/// system and the cells, `overlay` on top, `script` as the job; QEMU with `mem`.
fn exec_with_overlay(dir: &Path, overlay: &Path, script: &Path, mem: &str) -> std::process::Output {
    let root = workspace();
    let archive = dir.join("exec.cpio");
    let status = Command::new(root.join("target/release/tessera-mkinitrd"))
        .arg(&archive)
        .arg(format!("={}", root.join("build/rootfs").display()))
        // The system's cells (the root file system and /proc are theirs).
        .arg(format!("lib/cells={}", root.join("build/cells").display()))
        .arg(format!("={}", overlay.display()))
        .arg(format!("etc/tessera-exec.sh={}", script.display()))
        .status()
        .expect("mkinitrd");
    assert!(status.success());
    Command::new("sh")
        .arg(root.join("tools/exec.sh"))
        .arg(root.join("target/x86_64-unknown-none/release/tessera"))
        .arg(&archive)
        .arg(mem)
        .output()
        .expect("exec.sh")
}

#[test]
fn exec_passes_the_exit_status_and_overlay() {
    let dir = std::env::temp_dir().join(format!("tessera-exec-{}", std::process::id()));
    let overlay = dir.join("overlay");
    std::fs::create_dir_all(overlay.join("data")).unwrap();
    std::fs::write(overlay.join("data/message"), "from the overlay\n").unwrap();
    let script = dir.join("script.sh");
    std::fs::write(&script, "cat /data/message\nexit 3\n").unwrap();
    let out = exec_with_overlay(&dir, &overlay, &script, "256M");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the overlay\n");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exec_takes_an_overlay_of_hundreds_of_mib() {
    // 150 static binaries (busybox copies, about 280 MiB) in the overlay;
    // the script runs one and checks another's contents.
    let root = workspace();
    let dir = std::env::temp_dir().join(format!("tessera-exec-big-{}", std::process::id()));
    let bin = dir.join("overlay/opt/big");
    std::fs::create_dir_all(&bin).unwrap();
    let busybox = root.join("build/rootfs/bin/busybox");
    for i in 0..150 {
        std::fs::create_dir_all(bin.join(i.to_string())).unwrap();
        std::fs::copy(&busybox, bin.join(format!("{i}/busybox"))).expect("copy busybox");
    }
    let script = dir.join("script.sh");
    std::fs::write(&script, "ls /opt/big | wc -l\n/opt/big/149/busybox echo ran from the overlay\ncmp /opt/big/0/busybox /opt/big/77/busybox && echo same\n").unwrap();
    let out = exec_with_overlay(&dir, &dir.join("overlay"), &script, "1G");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "150\nran from the overlay\nsame\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}
