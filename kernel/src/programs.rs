//! Running user programs until init exists: `tessera.run=PATH`,
//! `tessera.usertests` (every program under /opt/tessera/bin),
//! and the monitor's `run`.

use alloc::string::String;
use alloc::vec::Vec;
use framekernel::println;
use tessera_linux::{Outcome, Process};

/// Where the boot archive puts the test programs.
const TESTS: &str = "/opt/tessera/bin";

/// Every regular file under `path` in the root file system, depth first.
fn files_under(path: &str, out: &mut Vec<String>) {
    let Ok(vfs) = tessera_linux::fs::vfs() else { return };
    let Ok(dir) = vfs.resolve(&vfs.root(), path, true) else { return };
    let Ok(entries) = dir.node().entries() else { return };
    for entry in entries {
        let child = alloc::format!("{path}/{}", entry.name);
        match entry.kind {
            tessera_vfs::FileType::Directory => files_under(&child, out),
            tessera_vfs::FileType::Regular => out.push(child),
            _ => {}
        }
    }
}

/// Runs `path` with `args` (argv[0] is the path). Returns
/// how it ended, or why it could not start.
pub fn run(cwd: &str, path: &str, args: &[&str]) -> Result<Outcome, String> {
    let mut argv: Vec<&[u8]> = alloc::vec![path.as_bytes()];
    argv.extend(args.iter().map(|a| a.as_bytes()));
    let (process, context) = Process::spawn(cwd, path, &argv).map_err(|e| match e {
        tessera_linux::Errno::ENOENT => alloc::format!("{path}: no such file"),
        e => alloc::format!("{path}: cannot execute: {e:?}"),
    })?;
    let info = process.start(context, u64::MAX).map_err(|e| alloc::format!("{path}: cannot start: {e:?}"))?;
    // The program owns the terminal while it runs: ^C interrupts it.
    let tty = tessera_linux::files::console();
    tty.set_foreground(info.pgid());
    let outcome = info.wait_exit();
    tty.set_foreground(0);
    Ok(outcome)
}

/// Describes an outcome like a shell would.
pub fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Exited(code) => alloc::format!("exited with status {code}"),
        Outcome::Killed(signal) => alloc::format!("killed by signal {signal}"),
        Outcome::Dumped(signal) => alloc::format!("killed by signal {signal} (core dumped)"),
    }
}

/// Runs every test program (under `/opt/tessera/bin`); each passes when it
/// exits with status 0. Prints one line per program and the totals.
pub fn run_all() -> (usize, usize) {
    // The programs expect /proc and /dev/pts, as a system's init would
    // mount them.
    if let Ok(vfs) = tessera_linux::fs::vfs() {
        if let Ok(at) = vfs.resolve(&vfs.root(), "/proc", true)
            && let Err(e) = tessera_linux::procfs::new_root().and_then(|root| vfs.mount(&at, root, "proc").map_err(Into::into))
        {
            println!("usertests: cannot mount /proc: {e:?}");
        }
        if let Ok(dev) = vfs.resolve(&vfs.root(), "/dev", true) {
            let _ = dev.node().create("pts", tessera_vfs::FileType::Directory, 0o755, 0);
        }
        if let Ok(at) = vfs.resolve(&vfs.root(), "/dev/pts", true)
            && let Err(e) = vfs.mount(&at, tessera_linux::pty::devpts(), "devpts")
        {
            println!("usertests: cannot mount /dev/pts: {e:?}");
        }
    }
    let mut programs = Vec::new();
    files_under(TESTS, &mut programs);
    if programs.is_empty() {
        println!("usertests: no programs under {TESTS}");
        return (0, 1);
    }
    let (mut passed, mut failed) = (0, 0);
    for path in &programs {
        // Run from /opt/tessera: the programs use relative paths (bin/...,
        // testdata/...), as they do on the host from build/userspace.
        match run("/opt/tessera", path, &[]) {
            Ok(Outcome::Exited(0)) => {
                passed += 1;
                println!("usertest {path} ... ok");
            }
            Ok(outcome) => {
                failed += 1;
                println!("usertest {path} ... FAILED: {}", describe(outcome));
            }
            Err(why) => {
                failed += 1;
                println!("usertest {path} ... FAILED: {why}");
            }
        }
    }
    println!("usertests: {passed} passed, {failed} failed");
    (passed, failed)
}
