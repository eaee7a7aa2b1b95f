//! Boots Tessera in QEMU and drives its serial console, expect-style.
//!
//! Every machine runs under `timeout` with a wall-clock limit, so a hung
//! kernel fails its test instead of hanging the suite, and the kernel leaves
//! QEMU through `isa-debug-exit` (status 33 = success, 35 = failure).
//!
//! The console is QEMU's `-serial stdio` on plain pipes: QEMU passes bytes
//! through unchanged (a typed Ctrl-C is byte 0x03), so no pseudo-terminal
//! is needed and none of the host terminal's processing gets in the way.
#![forbid(unsafe_code)]

pub mod sidebyside;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the machine boots.
#[derive(Debug, Clone)]
pub enum Boot {
    /// GRUB from the ISO (multiboot2): the path users take.
    Iso(PathBuf),
    /// QEMU loads the ELF itself (PVH), with the boot archive as `-initrd`
    /// unless `initrd` says otherwise.
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String },
}

/// Options for [`Machine::start`].
#[derive(Debug, Clone)]
pub struct MachineOptions {
    /// Boot path.
    pub boot: Boot,
    /// Guest RAM (`-m`).
    pub memory: String,
    /// Processors (`-smp`): 1 unless a test asks for more (the SMP tests
    /// boot 2 or 4).
    pub cpus: u32,
    /// Hard limit on the whole QEMU run.
    pub wall_clock: Duration,
    /// Size of the empty scratch disk attached as virtio-blk (`/dev/vda`),
    /// in MiB; 0 for none.
    pub disk_mib: u64,
    /// An image (raw or qcow2) attached after it as a second virtio-blk
    /// disk (`/dev/vdb`, which the system mounts at `/mnt/disk`); kept.
    pub extra_disk: Option<PathBuf>,
    /// Options appended to the isolated user network (`,hostfwd=...`,
    /// `,guestfwd=...`); see [`MachineOptions::host_port`] and
    /// [`MachineOptions::guest_port`].
    pub netdev: String,
}

impl MachineOptions {
    /// The PVH fast path with `cmdline`.
    pub fn kernel(cmdline: &str) -> Self {
        Self {
            boot: Boot::Kernel { kernel: kernel_path(), initrd: None, cmdline: cmdline.to_string() },
            memory: "256M".into(),
            cpus: 1,
            wall_clock: Duration::from_secs(120),
            disk_mib: 16,
            extra_disk: None,
            netdev: String::new(),
        }
    }

    /// Forwards `127.0.0.1:host` on this machine to the guest's TCP port
    /// `guest` (QEMU `hostfwd`).
    pub fn host_port(mut self, host: u16, guest: u16) -> Self {
        self.netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        self
    }

    /// Makes this machine's `127.0.0.1:port` reachable from the guest at
    /// `10.0.2.100:port` (QEMU `guestfwd` through socat).
    pub fn guest_port(mut self, port: u16) -> Self {
        self.netdev.push_str(&format!(",guestfwd=tcp:10.0.2.100:{port}-cmd:socat - TCP:127.0.0.1:{port}"));
        self
    }

    /// The GRUB path from the ISO.
    pub fn iso() -> Self {
        Self {
            boot: Boot::Iso(iso_path()),
            memory: "256M".into(),
            cpus: 1,
            wall_clock: Duration::from_secs(180),
            disk_mib: 16,
            extra_disk: None,
            netdev: String::new(),
        }
    }
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The kernel reported success (status 33).
    Success,
    /// The kernel reported failure (status 35).
    Failure,
    /// Any other status (QEMU error, killed by the wall-clock limit: 124/137).
    Other(i32),
}

struct Console {
    text: Mutex<(String, bool)>,
    changed: Condvar,
}

/// A running QEMU with its console.
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<Console>,
    /// Byte offset in the console text up to which `expect` has consumed.
    cursor: usize,
    name: String,
    /// The scratch disk image, removed with the machine.
    disk: Option<PathBuf>,
}

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn existing(var: &str, default: PathBuf) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(path.exists(), "{} not found: build it first (`make test` does), or set {var}", path.display());
    path
}

/// The kernel ELF under test (`TESSERA_KERNEL`, default: the release build).
pub fn kernel_path() -> PathBuf {
    existing("TESSERA_KERNEL", workspace().join("target/x86_64-unknown-none/release/tessera"))
}

/// The boot archive under test (`TESSERA_INITRD`, default: `build/initrd.cpio`).
pub fn initrd_path() -> PathBuf {
    existing("TESSERA_INITRD", workspace().join("build/initrd.cpio"))
}

/// The ISO under test (`TESSERA_ISO`, default: `build/tessera.iso`).
pub fn iso_path() -> PathBuf {
    existing("TESSERA_ISO", workspace().join("build/tessera.iso"))
}

impl Machine {
    /// Starts QEMU. `name` labels failure messages.
    pub fn start(name: &str, options: &MachineOptions) -> Machine {
        let mut cmd = Command::new("timeout");
        cmd.arg("--kill-after=5").arg(format!("{}", options.wall_clock.as_secs())).arg("qemu-system-x86_64");
        cmd.args(["-machine", "q35", "-cpu", "max", "-m", &options.memory, "-no-reboot"]);
        cmd.arg("-smp").arg(options.cpus.to_string());
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        cmd.args(["-display", "none", "-serial", "stdio", "-monitor", "none"]);
        let disk = (options.disk_mib > 0).then(|| {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("tessera-test-{}-{n}.img", std::process::id()));
            let file = std::fs::File::create(&path).expect("create the scratch disk image");
            file.set_len(options.disk_mib << 20).expect("size the scratch disk image");
            cmd.arg("-drive").arg(format!("file={},format=raw,if=none,id=scratch", path.display()));
            cmd.args(["-device", "virtio-blk-pci,drive=scratch"]);
            path
        });
        if let Some(image) = &options.extra_disk {
            let mut magic = [0u8; 4];
            let qcow2 = std::fs::File::open(image).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"QFI\xfb";
            let format = if qcow2 { "qcow2" } else { "raw" };
            cmd.arg("-drive").arg(format!("file={},format={format},if=none,id=disk", image.display()));
            cmd.args(["-device", "virtio-blk-pci,drive=disk"]);
        }
        // eth0: a virtio-net card on QEMU's isolated user networking.
        cmd.arg("-netdev").arg(format!("user,id=net0,restrict=on{}", options.netdev));
        cmd.args(["-device", "virtio-net-pci,netdev=net0"]);
        match &options.boot {
            Boot::Iso(iso) => {
                cmd.arg("-cdrom").arg(iso);
            }
            Boot::Kernel { kernel, initrd, cmdline } => {
                cmd.arg("-kernel").arg(kernel);
                let initrd = initrd.clone().unwrap_or_else(initrd_path);
                cmd.arg("-initrd").arg(initrd);
                cmd.arg("-append").arg(cmdline);
            }
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start qemu-system-x86_64 (run `make deps`)");
        let console = Arc::new(Console { text: Mutex::new((String::new(), false)), changed: Condvar::new() });
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&console);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut text = sink.text.lock().unwrap();
                        text.0.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
                        sink.changed.notify_all();
                    }
                }
            }
            // QEMU's own complaints go after the console text.
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            let mut text = sink.text.lock().unwrap();
            if !err.is_empty() {
                text.0.push_str("\n[qemu stderr] ");
                text.0.push_str(&err);
            }
            text.1 = true;
            sink.changed.notify_all();
        });
        let stdin = child.stdin.take();
        Machine { child, stdin, console, cursor: 0, name: name.to_string(), disk }
    }

    /// Everything the console printed so far.
    /// CPU time QEMU has used on the host so far (ns, user and system, all
    /// its threads), from `/proc`; `None` off Linux or once it has ended.
    pub fn host_cpu_ns(&self) -> Option<u64> {
        // The child is `timeout`; QEMU is its child.
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id())).ok()?;
        let qemu: u32 = children.split_whitespace().next()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{qemu}/stat")).ok()?;
        // Fields after the command (which may hold spaces): state is the
        // third field; utime and stime the 14th and 15th, in USER_HZ
        // (100 on x86 Linux, part of the ABI).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks * 10_000_000)
    }

    pub fn output(&self) -> String {
        self.console.text.lock().unwrap().0.clone()
    }

    /// Waits until `needle` appears after the previous match; returns the text
    /// from there up to and including it. Panics with the whole console on
    /// timeout or when QEMU ends first.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut guard = self.console.text.lock().unwrap();
        loop {
            if let Some(pos) = guard.0.get(self.cursor..).and_then(|rest| rest.find(needle)) {
                let end = self.cursor + pos + needle.len();
                let seen = guard.0[self.cursor..end].to_string();
                self.cursor = end;
                return seen;
            }
            let now = Instant::now();
            if guard.1 || now >= deadline {
                let why = if guard.1 { "QEMU exited" } else { "timed out" };
                panic!(
                    "[{}] {why} waiting for {needle:?} ({:?} limit). Console:\n{}",
                    self.name, timeout, guard.0
                );
            }
            guard = self.console.changed.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Types `command` at the shell, waits for `answer` and then the next
    /// prompt (`# `); returns what came up to the answer.
    pub fn shell(&mut self, command: &str, answer: &str, timeout: Duration) -> String {
        self.send(&format!("{command}\r"));
        let seen = self.expect(answer, timeout);
        self.expect("# ", timeout);
        seen
    }

    /// Runs `command` at the shell and returns its output: what came up
    /// to a marker the typed line itself does not contain.
    pub fn capture(&mut self, command: &str, timeout: Duration) -> String {
        self.send(&format!("{command}; echo \"<<$((6*7))>>\"\r"));
        let out = self.expect("<<42>>", timeout);
        self.expect("# ", timeout);
        out
    }

    /// Types `text` on the console.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("console input is open");
        stdin.write_all(text.as_bytes()).expect("write to QEMU");
        stdin.flush().expect("flush to QEMU");
    }

    /// Waits for QEMU to end and says how. Panics (with the console) if it
    /// does not end within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Exit {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for QEMU") {
                // Let the reader thread drain the last output.
                let mut guard = self.console.text.lock().unwrap();
                while !guard.1 {
                    guard = self.console.changed.wait_timeout(guard, Duration::from_secs(5)).unwrap().0;
                    if !guard.1 {
                        break;
                    }
                }
                return match status.code() {
                    Some(33) => Exit::Success,
                    Some(35) => Exit::Failure,
                    Some(code) => Exit::Other(code),
                    None => Exit::Other(-1),
                };
            }
            if Instant::now() >= deadline {
                panic!("[{}] QEMU still running after {timeout:?}. Console:\n{}", self.name, self.output());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SIGTERM to `timeout`, which passes it on to QEMU (a SIGKILL
        // would end `timeout` alone and leave QEMU running); SIGKILL only
        // if they are not gone after a while.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(disk) = &self.disk {
            let _ = std::fs::remove_file(disk);
        }
    }
}

/// Finds `prefix` in `text` and parses the number right after it.
pub fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let start = text.find(prefix)? + prefix.len();
    let digits: String =
        text[start..].chars().skip_while(|c| *c == ' ').take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_after_prefixes() {
        let text = "Tessera ready: kernel entry to ready 42.4 ms (x)\nup 1.250 s, 1250 timer ticks";
        assert_eq!(number_after(text, "entry to ready"), Some(42.4));
        assert_eq!(number_after(text, "up"), Some(1.25));
        assert_eq!(number_after(text, "missing"), None);
    }
}
