//! `make bench`: boot-time and size figures for the closing notes.
//! Not a test: it prints numbers and asserts nothing about speed.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};
use tessera_tests::{Machine, MachineOptions, iso_path, kernel_path, number_after};

const RUNS: usize = 7;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure(label: &str, options: &MachineOptions) {
    let mut wall = Vec::new();
    let mut kernel = Vec::new();
    let mut before_entry = Vec::new();
    for run in 0..RUNS {
        let started = Instant::now();
        let mut machine = Machine::start(&format!("{label}-{run}"), options);
        machine.expect("Tessera ready", Duration::from_secs(120));
        wall.push(started.elapsed().as_secs_f64() * 1000.0);
        let line = machine.expect("\n", Duration::from_secs(10));
        kernel.push(number_after(&line, "kernel entry to ready").unwrap_or(f64::NAN));
        before_entry.push(number_after(&line, "before entry:").unwrap_or(f64::NAN));
        machine.send("poweroff\r");
        let _ = machine.wait_exit(Duration::from_secs(30));
    }
    println!(
        "{label:<6} QEMU start to \"ready\": median {:7.1} ms (min {:7.1}, max {:7.1}) | kernel entry to ready {:5.1} ms | firmware+loader {:6.1} ms  [{RUNS} runs]",
        median(wall.clone()),
        wall.iter().copied().fold(f64::INFINITY, f64::min),
        wall.iter().copied().fold(0.0, f64::max),
        median(kernel),
        median(before_entry),
    );
}

fn main() {
    // `boot-bench fs`: only the file-system figures.
    if std::env::args().nth(1).as_deref() == Some("fs") {
        fs_figures();
        return;
    }
    // `boot-bench smp`: only the multiprocessor figures.
    if std::env::args().nth(1).as_deref() == Some("smp") {
        cell_call_figures();
        smp_figures();
        return;
    }
    // `boot-bench net`: only the network figures.
    if std::env::args().nth(1).as_deref() == Some("net") {
        net_figures();
        return;
    }
    // `boot-bench cells`: only the cells' figures (load, swap, recovery).
    if std::env::args().nth(1).as_deref() == Some("cells") {
        cell_figures();
        return;
    }
    // `boot-bench linux`: only the system-call figures beside Linux's.
    if std::env::args().nth(1).as_deref() == Some("linux") {
        side_by_side();
        return;
    }
    let kernel = kernel_path();
    let iso = iso_path();
    let bytes = std::fs::read(&kernel).expect("read kernel");
    // Sum of PT_LOAD memory sizes: what the kernel occupies once loaded.
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(bytes[0x38..0x3a].try_into().unwrap()) as usize;
    let loaded: u64 = (0..phnum)
        .map(|i| &bytes[phoff + i * 56..phoff + (i + 1) * 56])
        .filter(|ph| u32::from_le_bytes(ph[0..4].try_into().unwrap()) == 1)
        .map(|ph| u64::from_le_bytes(ph[40..48].try_into().unwrap()))
        .sum();
    println!("kernel ELF file: {} KiB (with symbols); loaded image: {} KiB", bytes.len() / 1024, loaded / 1024);
    println!("boot ISO: {} KiB", std::fs::metadata(&iso).map(|m| m.len() / 1024).unwrap_or(0));
    side_by_side();
    measure("PVH", &MachineOptions::kernel(""));
    measure("GRUB", &MachineOptions::iso());
    user_benchmarks();
    shell_figures();
    cell_figures();
    cell_call_figures();
    smp_figures();
    fs_figures();
}

/// Multiprocessor figures: Tessera booted with 1, 2 and 4 processors runs
/// `smpbench` (userspace/bench/smpbench.c) at the shell: N independent
/// CPU-bound processes at once, N pipelines, N processes churning memory
/// (the frame allocator), a wake on another processor (pipe ping-pong),
/// and a munmap that shoots down another processor's TLB.
fn smp_figures() {
    let host = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("multiprocessor (QEMU TCG, one host thread per processor; this host has {host} cores):");
    let mut spin: Vec<(u32, u32, f64)> = Vec::new(); // (processors, processes, ms)
    let mut pipes: Vec<(u32, u32, f64)> = Vec::new(); // (processors, pipelines, ms)
    let mut memory: Vec<(u32, u32, f64)> = Vec::new(); // (processors, processes, ms)
    let mut other: Vec<(u32, String)> = Vec::new();
    let mut idle: Vec<(u32, f64)> = Vec::new(); // (processors, % of a host core)
    for cpus in [1u32, 2, 4] {
        let options = MachineOptions { memory: "512M".into(), cpus, wall_clock: Duration::from_secs(900), ..MachineOptions::kernel("") };
        let mut m = Machine::start(&format!("smp-bench-{cpus}"), &options);
        m.expect("built-in shell (ash)", Duration::from_secs(120));
        m.expect("# ", Duration::from_secs(60));
        // What the idle guest costs its host: QEMU's CPU time over 10 s at
        // the prompt (after 3 s to settle).
        std::thread::sleep(Duration::from_secs(3));
        let before = m.host_cpu_ns();
        std::thread::sleep(Duration::from_secs(10));
        if let (Some(a), Some(b)) = (before, m.host_cpu_ns()) {
            idle.push((cpus, (b - a) as f64 / 1e8));
        }
        let out = m.capture(
            "b=/opt/tessera/bench/smpbench; $b pipes 1 >/dev/null; for n in 1 2 4; do $b spin $n; done; for n in 1 2 4; do $b pipes $n; done; for n in 1 2 4; do $b memory $n; done; $b wake; $b shootdown",
            Duration::from_secs(800),
        );
        m.send("poweroff\r");
        let _ = m.wait_exit(Duration::from_secs(30));
        for line in out.lines().filter_map(|l| l.trim().strip_prefix("smpbench ")) {
            let timed = |rest: &str| -> Option<(u32, f64)> {
                let n = rest.split(':').next()?.trim().parse().ok()?;
                let ms = rest.split(": ").nth(1)?.split_whitespace().next()?.parse().ok()?;
                Some((n, ms))
            };
            if let Some((n, ms)) = line.strip_prefix("spin ").and_then(timed) {
                spin.push((cpus, n, ms));
            } else if let Some((n, ms)) = line.strip_prefix("pipes ").and_then(timed) {
                pipes.push((cpus, n, ms));
            } else if let Some((n, ms)) = line.strip_prefix("memory ").and_then(timed) {
                memory.push((cpus, n, ms));
            } else {
                other.push((cpus, line.to_string()));
            }
        }
    }
    for (title, rows) in [
        ("N processes each doing the same CPU-bound work at once", &spin),
        ("N pipelines (dd 8 MiB | gzip | md5sum) at once", &pipes),
        ("N processes each mapping, touching and unmapping 64 KiB 3000 times at once", &memory),
    ] {
        println!("  {title}: wall time in ms (throughput speed-up over one)");
        println!("  {:<12} {:>16} {:>16} {:>16}", "processors", "N=1", "N=2", "N=4");
        for cpus in [1u32, 2, 4] {
            let one = rows.iter().find(|&&(c, n, _)| c == cpus && n == 1).map(|&(_, _, ms)| ms);
            let cell = |n: u32| match (rows.iter().find(|&&(c, k, _)| c == cpus && k == n), one) {
                (Some(&(_, _, ms)), Some(one)) => format!("{ms:.0} ({:.2}x)", f64::from(n) * one / ms),
                (Some(&(_, _, ms)), None) => format!("{ms:.0}"),
                (None, _) => "-".to_string(),
            };
            println!("  {:<12} {:>16} {:>16} {:>16}", cpus, cell(1), cell(2), cell(4));
        }
    }
    for (cpus, line) in other {
        println!("  {cpus} processor(s): {line}");
    }
    for (cpus, percent) in idle {
        println!("  {cpus} processor(s): idle at the shell, QEMU uses {percent:.1}% of a host core");
    }
}

/// A fresh ext2 image (4 KiB blocks) for the file-system figures.
fn ext2_image(tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tessera-fsbench-{}-{tag}.img", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let ok = std::process::Command::new("mkfs.ext2").args(["-q", "-F", "-b", "4096"]).arg(&path).arg("256M").status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "mkfs.ext2 failed (make deps installs e2fsprogs)");
    path
}

fn fsck_verdict(image: &std::path::Path) -> &'static str {
    let clean = std::process::Command::new("e2fsck").arg("-fn").arg(image).output().map(|o| o.status.success());
    if matches!(clean, Ok(true)) { "clean" } else { "NOT clean" }
}

/// `fsbench NAME: SECONDS s ...` lines as (name, seconds).
fn fs_lines(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("fsbench ")?;
            let (name, value) = rest.split_once(": ")?;
            Some((name.to_string(), value.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// ext2 on a virtio disk: userspace/bench/fs.sh on Tessera (the ext2
/// cell) and on Debian's Linux (its ext4 driver serving ext2) in the same
/// QEMU, each on a fresh 256 MiB image; and the ext2 cell's swap downtime
/// with a file open and being written.
fn fs_figures() {
    let image = ext2_image("tessera");
    let mut options = MachineOptions::kernel("");
    options.extra_disk = Some(image.clone());
    options.memory = "512M".into();
    options.wall_clock = Duration::from_secs(1500);
    let mut machine = Machine::start("fs-bench", &options);
    machine.expect("built-in shell (ash)", Duration::from_secs(120));
    machine.expect("# ", Duration::from_secs(60));
    machine.send("sh /opt/tessera/bench/fs.sh /mnt/disk /dev/vdb 2>&1\r");
    machine.expect("fs.sh /mnt/disk /dev/vdb 2>&1\n", Duration::from_secs(30));
    let tessera = fs_lines(&machine.expect("fsbench done", Duration::from_secs(1200)));
    machine.expect("# ", Duration::from_secs(60));
    // Swap the ext2 cell five times while a file on it is open and written.
    machine.send("exec 3>/mnt/disk/open; (i=0; while [ $i -lt 400 ]; do echo line $i >&3; i=$((i+1)); done) & for i in 1 2 3 4 5; do cellctl swap ext2 /lib/cells/ext2.cell; done; wait; echo \"li\"\"nes=$(wc -l < /mnt/disk/open)\"; exec 3>&-\r");
    let swaps = machine.expect("lines=", Duration::from_secs(300));
    let lines = machine.expect("\n", Duration::from_secs(30));
    let downtimes: Vec<f64> = swaps
        .lines()
        .filter(|l| l.contains("in slot ext2:"))
        .filter_map(|l| l.split("gate closed for ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    machine.send("poweroff\r");
    let _ = machine.wait_exit(Duration::from_secs(60));
    let tessera_clean = fsck_verdict(&image);
    let _ = std::fs::remove_file(&image);

    let linux_image = ext2_image("linux");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../userspace/bench/linux-fs.sh");
    let linux = std::process::Command::new("sh").arg(&script).arg(&linux_image).output();
    let linux_clean = fsck_verdict(&linux_image);
    let _ = std::fs::remove_file(&linux_image);
    let linux = match linux {
        Ok(out) if out.status.success() => fs_lines(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            println!("ext2 on Linux: not measured: {}", String::from_utf8_lossy(&out.stderr).trim());
            Vec::new()
        }
        Err(e) => {
            println!("ext2 on Linux: not measured: {e}");
            Vec::new()
        }
    };
    println!("ext2 on a virtio disk, same QEMU (TCG, 512 MiB), seconds (lower is better):");
    println!("  {:<10} {:>9} {:>9}", "workload", "Tessera", "Linux 6.1");
    for (name, secs) in &tessera {
        let other = linux.iter().find(|(n, _)| n == name).map_or("-".to_string(), |(_, v)| format!("{v:.2}"));
        let rate = match name.as_str() {
            "seq-write" | "seq-read" => format!("  ({:.1} MB/s on Tessera)", 64.0 * 1.048_576 / secs.max(0.01)),
            _ => String::new(),
        };
        println!("  {name:<10} {secs:>9.2} {other:>9}{rate}");
    }
    println!("  e2fsck -fn afterwards: Tessera's image {tessera_clean}, Linux's image {linux_clean}");
    if !downtimes.is_empty() {
        println!(
            "  ext2 cell swap with a file open and written: median downtime {:.0} us over {} swaps; {} of 400 lines written",
            median(downtimes.clone()),
            downtimes.len(),
            lines.trim()
        );
    }
}

/// The cost of one call through a slot and the cell boundary.
fn cell_call_figures() {
    let options = MachineOptions { cpus: 4, ..MachineOptions::kernel("tessera.cellbench") };
    let mut machine = Machine::start("cell-call-bench", &options);
    let _ = machine.wait_exit(Duration::from_secs(300));
    let output = machine.output();
    let per_call: Vec<f64> = output
        .lines()
        .filter(|l| l.starts_with("cellbench call:"))
        .filter_map(|l| l.split(": ").nth(2)?.split_whitespace().next()?.parse().ok())
        .collect();
    if per_call.is_empty() {
        println!("cell call: no figures in {output:?}");
    } else {
        println!("  call through a slot and the boundary (probe calls()): median {:.0} ns over {} rounds", median(per_call.clone()), per_call.len());
    }
    // The same call through the boundary alone, and as a plain call.
    let direct: Vec<(f64, f64)> = output
        .lines()
        .filter(|l| l.starts_with("cellbench direct:"))
        .filter_map(|l| {
            let rest = l.split(": ").nth(2)?;
            let boundary = rest.split_whitespace().next()?.parse().ok()?;
            let plain = rest.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
            Some((boundary, plain))
        })
        .collect();
    if !direct.is_empty() {
        println!(
            "  the same through the boundary alone (no slot gate): median {:.0} ns; as a plain function call: median {:.0} ns",
            median(direct.iter().map(|d| d.0).collect()),
            median(direct.iter().map(|d| d.1).collect())
        );
    }
    // With four processors calling the same slot at once, then swapping it
    // while they go on.
    for line in output.lines().filter(|l| l.starts_with("cellbench call all:")) {
        println!("  {}", line.trim_start_matches("cellbench ").trim());
    }
    let busy: Vec<f64> = output
        .lines()
        .filter(|l| l.starts_with("cellbench swap busy:"))
        .filter_map(|l| l.split("gate closed for ").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    if !busy.is_empty() {
        println!(
            "  swap downtime while every processor calls the slot: median {:.0} us, max {:.0} over {} swaps",
            median(busy.clone()),
            busy.iter().copied().fold(0.0, f64::max),
            busy.len()
        );
    }
}

/// Cells: load time and memory, swap downtime per slot, fault recovery.
fn cell_figures() {
    let mut machine = Machine::start("cell-bench", &MachineOptions::kernel(""));
    machine.expect("built-in shell (ash)", Duration::from_secs(120));
    machine.expect("# ", Duration::from_secs(60));
    machine.send("sh /opt/tessera/bench/cells.sh 2>&1\r");
    machine.expect("cells.sh 2>&1\n", Duration::from_secs(30)); // the echoed command line
    let output = machine.expect("cellbench done", Duration::from_secs(600));
    println!("cells (QEMU TCG):");
    let number = |line: &str, before: &str| -> Option<f64> {
        let rest = line.split(before).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let loads: Vec<f64> = output.lines().filter(|l| l.starts_with("cellbench load:")).filter_map(|l| number(l, " KiB in ")).collect();
    if !loads.is_empty() {
        println!("  load (check, link, map) of virtio_blk.cell: median {:.0} us over {}", median(loads.clone()), loads.len());
    }
    for slot in ["virtio_blk", "console", "tty", "virtio_net", "netstack", "ext2", "tmpfs", "procfs"] {
        let downtimes: Vec<f64> = output
            .lines()
            .filter(|l| l.starts_with("cellbench swap:") && l.contains(&format!("in slot {slot}:")))
            .filter_map(|l| number(l, "gate closed for "))
            .collect();
        if !downtimes.is_empty() {
            let (low, high) = downtimes.iter().fold((f64::MAX, 0.0f64), |(l, h), &d| (l.min(d), h.max(d)));
            println!("  swap downtime, slot {slot}: median {:.0} us over {} (spread {low:.0}-{high:.0}; the first swap of a slot also runs the swap code for the first time)", median(downtimes.clone()), downtimes.len());
        }
    }
    for line in output.lines().filter(|l| {
        l.starts_with("cellbench memory:")
            || (l.starts_with("cellbench recovery:") && (l.contains(": slot") || l.contains("last fault recovery") || l.contains("fault recovery:") || l.contains("faults ")))
    }) {
        println!("  {}", line.trim_start_matches("cellbench ").trim());
    }
    machine.send("poweroff\r");
    let _ = machine.wait_exit(Duration::from_secs(30));
}

/// Boot to the busybox prompt: time, memory in use there, and a pipeline.
fn shell_figures() {
    let started = Instant::now();
    let mut machine = Machine::start("shell-bench", &MachineOptions::kernel(""));
    machine.expect("built-in shell (ash)", Duration::from_secs(120));
    machine.expect("# ", Duration::from_secs(60));
    let prompt_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("busybox shell: QEMU start to the prompt {prompt_ms:.0} ms (PVH, 256 MiB)");
    machine.send("echo used=$(free | sed -n 2p | tr -s ' ' | cut -d ' ' -f 3)KiB\r");
    machine.expect("KiB\n", Duration::from_secs(30)); // the echoed command line
    let line = machine.expect("KiB", Duration::from_secs(30));
    if let Some(used) = line.rsplit("used=").next() {
        println!("  memory in use at the prompt (free): {}", used.trim());
    }
    machine.send("time sh -c 'seq 100000 | sort -n | md5sum'\r");
    machine.expect("md5sum'\n", Duration::from_secs(30)); // the echoed command line
    let timed = machine.expect("\nsys", Duration::from_secs(300));
    match timed.lines().find(|l| l.trim_start().starts_with("real")) {
        Some(line) => println!("  seq 100000 | sort -n | md5sum: {}", line.trim()),
        None => println!("  seq 100000 | sort -n | md5sum: no timing in {timed:?}"),
    }
    machine.send("poweroff\r");
    let _ = machine.wait_exit(Duration::from_secs(30));
}

/// Runs userspace/bench/bench under Tessera and prints its figures.
fn user_benchmarks() {
    let mut machine = Machine::start("user-bench", &MachineOptions::kernel("tessera.run=/opt/tessera/bench/bench tessera.monitor"));
    let output = machine.expect("/opt/tessera/bench/bench: exited", Duration::from_secs(600));
    println!("user benchmark under Tessera (QEMU TCG):");
    for line in output.lines().filter(|l| l.starts_with("bench ")) {
        println!("  {line}");
    }
    machine.expect("tessera> ", Duration::from_secs(30));
    machine.send("mem\r");
    let mem = machine.expect("claimed", Duration::from_secs(30));
    println!("  after the benchmark: {}", mem.trim());
    machine.send("poweroff\r");
    let _ = machine.wait_exit(Duration::from_secs(30));
}

/// Reads one figure of a boot's network figures.
type Metric = fn(&NetFigures) -> f64;

/// Bytes each throughput run moves.
const NET_BYTES: usize = 32 << 20;
/// Requests of the latency run.
const REQUESTS: usize = 50;

/// One boot's network figures: host to guest and guest to host in MB/s,
/// a small HTTP request's median round trip in ms.
struct NetFigures {
    down: f64,
    up: f64,
    request: f64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Boots `boot` with QEMU's user networking (as the tests do) and measures
/// through busybox `nc` and `httpd` in the guest, timed on the host.
fn net_run(label: &str, boot: tessera_tests::Boot, linux: bool) -> NetFigures {
    use std::io::{Read, Write};
    const T: Duration = Duration::from_secs(120);
    let (sink_port, httpd_port) = (free_port(), free_port());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("host listener");
    let host_port = listener.local_addr().expect("its port").port();
    let options = MachineOptions { boot, memory: "512M".into(), wall_clock: Duration::from_secs(900), ..MachineOptions::kernel("") }
        .host_port(sink_port, 5001)
        .host_port(httpd_port, 8080)
        .guest_port(host_port);
    let mut m = Machine::start(label, &options);
    if linux {
        m.expect("linux-net: eth0 configured", T);
    } else {
        m.expect("built-in shell (ash)", T);
        m.expect("# ", T);
        m.shell("i=0; until ifconfig eth0 | grep -q 'inet addr:10.0.2.15'; do sleep 1; i=$((i+1)); [ $i = 30 ] && break; done; echo lea\"\"se $i", "lease", T);
    }
    m.shell("mkdir -p /tmp/www && echo small > /tmp/www/small && httpd -p 8080 -h /tmp/www && echo htt\"\"pd up", "httpd up", T);
    // Host to guest: 32 MiB into `nc -l`, until the guest closes.
    m.shell("(nc -l -p 5001 > /dev/null &); sleep 1; echo si\"\"nk up", "sink up", T);
    let block = vec![0x5au8; 1 << 16];
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sink_port)).expect("connect to the guest's nc");
    for _ in 0..NET_BYTES / block.len() {
        stream.write_all(&block).expect("send to the guest");
    }
    stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    let down = NET_BYTES as f64 / 1e6 / started.elapsed().as_secs_f64();
    // Guest to host: 32 MiB from `dd | nc` to a host listener (guestfwd).
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the guest connects");
        let started = Instant::now();
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        while got < NET_BYTES {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        (got, started.elapsed().as_secs_f64())
    });
    m.shell(&format!("dd if=/dev/zero bs=65536 count={} 2>/dev/null | nc 10.0.2.100 {host_port}; echo se\"\"nt", NET_BYTES >> 16), "sent", T);
    let (got, secs) = receiver.join().expect("receiver");
    let up = if got == NET_BYTES { got as f64 / 1e6 / secs } else { f64::NAN };
    // Requests: connect, GET a 6-byte file, read to the end.
    let mut times = Vec::new();
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", httpd_port)).expect("connect to httpd");
        conn.write_all(b"GET /small HTTP/1.0\r\n\r\n").expect("request");
        let mut page = Vec::new();
        let _ = conn.read_to_end(&mut page);
        if page.ends_with(b"small\n") {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let request = if times.len() == REQUESTS { median(times) } else { f64::NAN };
    m.send(if linux { "poweroff -f\r" } else { "poweroff\r" });
    let _ = m.wait_exit(Duration::from_secs(30));
    NetFigures { down, up, request }
}

/// `make bench BENCH=net`: TCP throughput both ways and request latency
/// through QEMU's user networking, Tessera and (when
/// tests/ltp/fetch-linux.sh has fetched it) Debian's Linux in the same
/// QEMU with the same busybox, boots interleaved.
fn net_figures() {
    const NET_RUNS: usize = 3;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let linux_dir = std::env::var("LINUX_REF").unwrap_or_else(|_| "/work/linux-ref".into());
    let vmlinuz = std::path::Path::new(&linux_dir).join("vmlinuz");
    let initrd = std::env::temp_dir().join(format!("tessera-linux-net-{}.cpio", std::process::id()));
    let linux = vmlinuz.exists()
        && std::process::Command::new("sh")
            .arg(repo.join("userspace/bench/linux-net-initrd.sh"))
            .arg(&initrd)
            .arg(&linux_dir)
            .status()
            .is_ok_and(|s| s.success());
    let mut tessera = Vec::new();
    let mut reference = Vec::new();
    for run in 0..NET_RUNS {
        if linux {
            let boot = tessera_tests::Boot::Kernel { kernel: vmlinuz.clone(), initrd: Some(initrd.clone()), cmdline: "console=ttyS0 quiet panic=-1".into() };
            reference.push(net_run(&format!("net-linux-{run}"), boot, true));
        }
        tessera.push(net_run(&format!("net-tessera-{run}"), MachineOptions::kernel("").boot, false));
    }
    let _ = std::fs::remove_file(&initrd);
    let col = |runs: &[NetFigures], f: fn(&NetFigures) -> f64| median(runs.iter().map(f).collect());
    println!("network (QEMU user networking, TCG, 512 MiB; busybox nc/httpd in the guest, timed on the host; median of {NET_RUNS} boots):");
    println!("  {:<38} {:>10} {:>10} {:>8}", "metric", "Linux", "Tessera", "ratio");
    let metrics: [(&str, Metric); 3] = [
        ("TCP host -> guest, MB/s (32 MiB)", |f| f.down),
        ("TCP guest -> host, MB/s (32 MiB)", |f| f.up),
        ("HTTP request round trip, ms", |f| f.request),
    ];
    for (name, f) in metrics {
        let t = col(&tessera, f);
        if linux {
            let l = col(&reference, f);
            println!("  {name:<38} {l:>10.2} {t:>10.2} {:>7.2}x", t / l);
        } else {
            println!("  {name:<38} {:>10} {t:>10.2}", "-");
        }
    }
    if !linux {
        println!("  (no Linux side: tests/ltp/fetch-linux.sh fetches Debian's kernel into {linux_dir})");
    }
    swap_figures();
}

/// Serves `data` to every HTTP GET on `listener` (a thread per request).
fn serve(listener: std::net::TcpListener, data: std::sync::Arc<Vec<u8>>) {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let data = data.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let header = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len());
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&data);
            });
        }
    });
}

/// The NIC driver swapped 100 times (one every 0.2 s or so) while the
/// guest downloads a file again and again from the host: the gate-closed
/// time of each swap (the driver's downtime) and how many downloads
/// arrived whole (one that stalls for 2 minutes counts as lost).
fn swap_figures() {
    const T: Duration = Duration::from_secs(600);
    const SWAPS: usize = 100;
    // Bytes that do not repeat (a lost or repeated segment changes the sum).
    let mut x: u32 = 0x2545_f491;
    let data: Vec<u8> = (0..8 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("host server");
    let port = listener.local_addr().expect("its port").port();
    let md5 = std::process::Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&data)?;
            child.wait_with_output()
        })
        .map(|out| String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string())
        .expect("md5sum");
    serve(listener, std::sync::Arc::new(data));
    let options = MachineOptions { memory: "512M".into(), wall_clock: Duration::from_secs(900), ..MachineOptions::kernel("") }.guest_port(port);
    let mut m = Machine::start("net-swaps", &options);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m.shell("i=0; until ifconfig eth0 | grep -q 'inet addr:10.0.2.15'; do sleep 1; i=$((i+1)); [ $i = 30 ] && break; done; echo lea\"\"se $i", "lease", T);
    let script = format!(
        "rm -f /tmp/sw /tmp/swdone; (i=0; while [ $i -lt {SWAPS} ]; do cellctl swap virtio_net /lib/cells/virtio_net.cell >> /tmp/sw 2>&1; i=$((i+1)); sleep 0.2; done; touch /tmp/swdone) & \
         n=0; ok=0; while [ ! -f /tmp/swdone ]; do s=$(timeout 120 wget -q -O - http://10.0.2.100:{port}/f | md5sum); n=$((n+1)); [ \"$s\" = \"{md5}  -\" ] && ok=$((ok+1)); done; \
         echo \"downloads: $ok of $n whole\"; echo swa\"\"ps $(grep -c 'gate closed' /tmp/sw)"
    );
    let out = m.capture(&script, T);
    let summary = out.lines().find_map(|l| l.trim().strip_prefix("swaps ")).unwrap_or("?").to_string();
    let gates = m.capture("grep -o 'gate closed for [0-9]* us' /tmp/sw | awk '{print $4}' | sort -n | tr '\\n' ' '", T);
    let values: Vec<f64> = gates.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let whole = out.lines().find(|l| l.starts_with("downloads:")).unwrap_or("downloads: ?").to_string();
    m.send("poweroff\r");
    let _ = m.wait_exit(Duration::from_secs(30));
    println!("virtio_net swapped {summary} times during repeated 8 MiB downloads (guestfwd, md5 checked): {whole}");
    if !values.is_empty() {
        println!(
            "  gate closed per swap (driver downtime): median {:.0} us, min {:.0}, max {:.0} ({} swaps measured)",
            median(values.clone()),
            values.iter().copied().fold(f64::INFINITY, f64::min),
            values.iter().copied().fold(0.0, f64::max),
            values.len()
        );
    }
}

/// `make bench BENCH=linux`: see [`tessera_tests::sidebyside::run`].
fn side_by_side() {
    use tessera_tests::sidebyside;
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let report = sidebyside::run(quick);
    println!("side by side with Debian's Linux ({}):", report.header);
    print!("{}", sidebyside::table(&report.rows));
    println!("  (medians; ratio = Tessera/Linux, below 1 Tessera is faster; norm. = the same with each boot's figures divided by its {} figure)", sidebyside::SPIN);
    for failure in &report.failures {
        println!("  FAILED {failure}");
    }
    for path in &report.written {
        println!("  written: {}", path.display());
    }
    if quick {
        report.check().unwrap_or_else(|why| panic!("{why}"));
    }
}
