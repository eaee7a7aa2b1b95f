//! Cells in QEMU: the disk driver cell loaded at boot, the fault-containment
//! demo from the README (a faulty driver swapped in under a checksum loop,
//! then the fixed one swapped back live), and every kind of bad cell file
//! refused through `cellctl` with the system unchanged.

use framekernel_logic::cellfile::{self, CellFile, HEADER_LEN, Header};
use framekernel_logic::cellobj::{self, CellObject};
use framekernel_logic::testcell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

fn shell(name: &str) -> Machine {
    shell_on(name, 1)
}

fn shell_on(name: &str, cpus: u32) -> Machine {
    let mut machine = Machine::start(name, &MachineOptions { cpus, ..MachineOptions::kernel("") });
    machine.expect("built-in shell (ash)", T);
    machine.expect("# ", T);
    machine
}

/// Types `command`, waits for `answer` and the next prompt; returns what
/// was printed up to the answer.
fn run(machine: &mut Machine, command: &str, answer: &str) -> String {
    machine.shell(command, answer, T)
}

/// Types `command` and returns what the console shows up to the end of
/// its output (the echoed command line included), marked by text the
/// command line itself does not contain.
fn capture(machine: &mut Machine, command: &str) -> String {
    machine.capture(command, T)
}

#[test]
fn the_disk_driver_cell_is_loaded_at_boot_and_serves_dev_vda() {
    let mut m = shell("cells-boot");
    let boot = m.output();
    assert!(boot.contains("cells: virtio_blk 0.1.0 (block) loaded from /lib/cells/virtio_blk.cell at 0x"), "{boot}");
    assert!(boot.contains("/dev/vda: virtio-blk at 0000:00:"), "{boot}");
    let cells = capture(&mut m, "cat /proc/cells");
    let line = cells.lines().find(|l| l.contains("virtio_blk")).unwrap_or_else(|| panic!("no virtio_blk in:\n{cells}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[1..6], ["virtio_blk", "0.1.0", "block", "active", "virtio_blk"], "{line}");
    assert!(fields[6].starts_with("0xffffffffa"), "{line}");
    run(&mut m, "ls -l /dev/vda", "brw-rw----");
    // 16 MiB disk: a round trip of random data, and the end of the disk.
    run(
        &mut m,
        "dd if=/dev/urandom of=/tmp/a bs=1000 count=300 2>/dev/null; dd if=/tmp/a of=/dev/vda bs=1000 seek=7 2>/dev/null; \
         dd if=/dev/vda bs=1000 skip=7 count=300 2>/dev/null | cmp - /tmp/a && echo same",
        "same",
    );
    run(&mut m, "dd if=/dev/zero of=/dev/vda bs=512 seek=32767 count=2; echo status $?", "No space left on device");
    run(&mut m, "cellctl info virtio_blk", "cell virtio_blk 0.1.0 (active)");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success);
}

fn faults_of(line: &str) -> u64 {
    line.split("faults=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn a_faulty_driver_is_contained_and_swapped_out_live_without_losing_data() {
    // Four processors, two disk loops on their own blocks of one disk: the
    // faulty cell is called, faults and restarts from several processors
    // at once, and the fixed one is swapped in under both loops.
    let mut m = shell_on("cells-demo", 4);
    run(&mut m, "cellctl swap virtio_blk /lib/cells/virtio_blk-faulty.cell", "for virtio_blk 0.1.0+faulty in slot virtio_blk");
    m.send("disk-loop 200 /dev/vda 0 > /tmp/loop1.log 2>&1 & disk-loop 200 /dev/vda 1024 > /tmp/loop2.log 2>&1 &\r");
    m.expect("# ", T);
    // Wait for 20 contained faults; the shell answers all along.
    let started = Instant::now();
    loop {
        let seen = capture(&mut m, "awk '/faulty/ { print \"fa\" \"ults=\" $9 }' /proc/cells");
        if faults_of(&seen) >= 20 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(400), "fewer than 20 faults in 400 s:\n{}", m.output());
        std::thread::sleep(Duration::from_secs(1));
    }
    // The loops are still running; swap the fixed driver in under them.
    run(&mut m, "cat /tmp/loop1.log /tmp/loop2.log | grep -c disk-loop:", "0");
    run(&mut m, "cellctl swap virtio_blk /lib/cells/virtio_blk.cell", "for virtio_blk 0.1.0 in slot virtio_blk: gate closed for");
    run(&mut m, "cat /tmp/loop1.log /tmp/loop2.log | grep -c disk-loop:", "0");
    // (Rounds that did not end "ok" are shown, for a failure's report.)
    m.send("wait; grep -hv ' ok$' /tmp/loop1.log /tmp/loop2.log; tail -qn1 /tmp/loop1.log /tmp/loop2.log | grep -c '^disk-loop: 200 rounds, 0 errors$' | sed 's/^/clean=/'\r");
    m.expect("clean=2", Duration::from_secs(600));
    m.expect("# ", T);
    run(&mut m, "cat /tmp/loop1.log /tmp/loop2.log | grep -c ' ok$'", "400");
    let cells = capture(&mut m, "cat /proc/cells");
    let faulty = cells.lines().find(|l| l.contains("0.1.0+faulty")).unwrap_or_else(|| panic!("{cells}"));
    let f: Vec<&str> = faulty.split_whitespace().collect();
    assert_eq!(f[4], "retired", "{faulty}");
    // Every fault restarted the driver, except one that came while the
    // swap held the slot (its new instance replaced the faulted one).
    let (faults, restarts) = (f[8].parse::<u64>().unwrap(), f[9].parse::<u64>().unwrap());
    assert!(faults >= 20 && restarts <= faults && faults - restarts <= 1, "faults and restarts: {faulty}");
    let fixed = cells.lines().rfind(|l| l.contains(" 0.1.0 ") && l.contains("active")).unwrap_or_else(|| panic!("{cells}"));
    let g: Vec<&str> = fixed.split_whitespace().collect();
    assert_eq!(&g[8..11], ["0", "0", "1"], "the fixed cell: no faults, no restarts, one swap: {fixed}");
    run(&mut m, "cellctl info virtio_blk", "swaps 2");
    // A call that faulted holding the driver's lock did not leave a call
    // on another processor waiting for it (it is stopped and retried).
    assert!(!m.output().contains("has been held for over"), "a lock stall:\n{}", m.output());
    run(&mut m, "echo still answering", "still answering");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success);
}

/// The build's cell signing key (`make` made it; `TESSERA_CELL_KEY` names it).
fn build_key() -> [u8; 32] {
    let path = std::env::var("TESSERA_CELL_KEY").expect("TESSERA_CELL_KEY: run through make test");
    cellfile::parse_key(&std::fs::read_to_string(path).expect("read the cell signing key")).expect("a cell signing key")
}

/// A cell file of the build: its header's fields and its object.
fn read_cell(name: &str) -> (Header<'static>, &'static [u8]) {
    let bytes = std::fs::read(workspace().join(format!("build/cells/{name}.cell"))).expect("build/cells: run make test");
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let cell = CellFile::verify(bytes, &cellfile::public_key(&build_key())).expect("the build's cell verifies");
    (cell.header, cell.object)
}

/// The probe cell's object (from the build) with `patch` applied, packed
/// again with a correct header and signed with the build's key: only the
/// defect under test is wrong.
fn patched(object: &[u8], patch: impl Fn(&mut Vec<u8>, &CellObject<'_>)) -> Vec<u8> {
    patched_as(read_cell("probe").0, object, patch)
}

/// As [`patched`], with `header`.
fn patched_as(header: Header<'_>, object: &[u8], patch: impl Fn(&mut Vec<u8>, &CellObject<'_>)) -> Vec<u8> {
    let parsed = CellObject::parse(object).expect("object parses");
    let mut bytes = object.to_vec();
    patch(&mut bytes, &parsed);
    let imports = imports_of(&bytes);
    let imports: Vec<(&str, u64)> = imports.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    CellFile::write(&header, &bytes, &imports, &build_key()).expect("pack")
}

/// The kernel addresses of the symbols `object` imports, as the packer
/// would list them (a name the kernel does not define is left out, so the
/// loader finds it unresolved).
fn imports_of(object: &[u8]) -> Vec<(String, u64)> {
    use framekernel_logic::cellobj::SymbolPlace;
    let kernel = std::fs::read(std::env::var("TESSERA_KERNEL").expect("TESSERA_KERNEL")).expect("read the kernel");
    let defined = tessera_cellpack::defined_symbols(&kernel).expect("kernel symbols");
    let Ok(parsed) = CellObject::parse(object) else { return Vec::new() };
    (0..parsed.symbol_count())
        .filter_map(|i| parsed.symbol(i).ok())
        .filter(|s| s.place == SymbolPlace::Undefined && !s.name.is_empty())
        .filter_map(|s| defined.get(s.name).map(|&a| (s.name.to_string(), a)))
        .collect()
}

/// The kernel symbol (NUL-terminated in its string table) containing `tag`.
fn kernel_symbol(kernel: &[u8], tag: &[u8]) -> Vec<u8> {
    let at = kernel.windows(tag.len()).position(|w| w == tag).unwrap_or_else(|| panic!("no {} in the kernel", String::from_utf8_lossy(tag)));
    let start = kernel[..at].iter().rposition(|&c| c == 0).expect("string table") + 1;
    let end = at + kernel[at..].iter().position(|&c| c == 0).expect("string end");
    kernel[start..end].to_vec()
}

fn replace_once(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern in the object");
    bytes[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn bad_cell_files_are_refused_by_name_and_nothing_changes() {
    let root = workspace();
    let good = std::fs::read(root.join("build/cells/probe.cell")).expect("build/cells/probe.cell: run make test");
    let (probe, object) = read_cell("probe");
    let dir = std::env::temp_dir().join(format!("tessera-badcells-{}", std::process::id()));
    let cells = dir.join("overlay/bad");
    std::fs::create_dir_all(&cells).unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(cells.join(name), bytes).unwrap();
    write("truncated.cell", &good[..good.len() / 2]);
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    write("flipped.cell", &flipped);
    write("arm64.cell", &patched(object, |b, _| b[18] = 183)); // e_machine = AArch64
    write(
        "reloc.cell",
        &patched(object, |b, o| {
            let rela = o.sections.iter().find(|s| s.kind == 4 && s.size >= 24).expect("a RELA section");
            b[rela.offset as usize + 8] = 37; // R_X86_64_IRELATIVE
        }),
    );
    write("unresolved.cell", &patched(object, |b, _| replace_once(b, b"panic_fmt", b"panic_fmX")));
    write("noentry.cell", &patched(object, |b, _| replace_once(b, b"20__tessera_cell_entry", b"20__tessera_cell_entrX")));
    write("nomarker.cell", &patched(object, |b, _| replace_once(b, b"18__TESSERA_CELL_ABI", b"18__TESSERA_CELL_ABX")));
    // The disk driver, its import of `<IoPorts as Drop>::drop` renamed to
    // kernel functions that would keep the cell's vtable in a kernel global.
    let kernel = std::fs::read(std::env::var("TESSERA_KERNEL").expect("TESSERA_KERNEL")).expect("read the kernel");
    let (disk, driver) = read_cell("virtio_blk");
    for (file, tag) in [("adddisk.cell", &b"5block8add_disk17h"[..]), ("slotregister.cell", &b"4slot8register17h"[..])] {
        let name = kernel_symbol(&kernel, tag);
        let bad = patched_as(disk, driver, |b, _| {
            let from = b"IoPorts$u20$as$u20$core..ops..drop..Drop$GT$4drop17h";
            let at = b.windows(from.len()).position(|w| w == from).expect("IoPorts drop import");
            let start = b[..at].iter().rposition(|&c| c == 0).expect("string table") + 1;
            b[start..start + name.len()].copy_from_slice(&name);
            b[start + name.len()] = 0;
        });
        write(file, &bad);
    }
    // Red team. One bit of a relocation flipped and the CRC fixed: the
    // signature no longer verifies.
    let mut relocflip = good.clone();
    let rela = CellObject::parse(object).unwrap().sections.into_iter().find(|s| s.kind == 4 && s.size >= 24).expect("a RELA section");
    relocflip[HEADER_LEN + rela.offset as usize + 8] ^= 1;
    let crc = framekernel_logic::crc32::crc32(&relocflip[HEADER_LEN..HEADER_LEN + object.len()]);
    relocflip[16..20].copy_from_slice(&crc.to_le_bytes());
    write("relocflip.cell", &relocflip);
    // Red team: one signed import address changed (an attacker's way to
    // point a call elsewhere without touching the object or its CRC).
    let mut importflip = good.clone();
    let last = importflip.len() - 1;
    importflip[last - 3] ^= 1;
    write("importflip.cell", &importflip);
    // A forged cell: a hand-made object with the marker (and the probe's
    // fingerprint) and a function named like the entry returning
    // `(1, 0xdead_0000)`, signed with another key.
    let marker: String = cellobj::marker(probe.fingerprint).iter().map(|b| format!("\\x{b:02x}")).collect();
    let forged = testcell::compile(&format!(
        "#![no_std]\npub static __TESSERA_CELL_ABI: [u8; 64] = *b\"{marker}\";\n\
         #[inline(never)]\npub fn __tessera_cell_entry() -> (u64, u64) {{ (1, 0xdead_0000) }}\n"
    ));
    write("forged.cell", &CellFile::write(&probe, &forged, &[], &[0x5a; 32]).unwrap());
    // The probe, packed for another kernel build (signed with the right key).
    write("otherkernel.cell", &patched_as(Header { build_id: &[0x11; 20], ..probe }, object, |_, _| {}));
    // A header naming another interface fingerprint than the marker.
    write("fingerprint.cell", &patched_as(Header { fingerprint: disk.fingerprint, ..probe }, object, |_, _| {}));
    // The disk driver labelled tty, and the probe labelled as the disk driver.
    write("ttyname.cell", &patched_as(Header { name: "tty", ..disk }, driver, |_, _| {}));
    write("probeasdisk.cell", &patched_as(Header { name: "virtio_blk", ..probe }, object, |_, _| {}));
    let script = dir.join("script.sh");
    std::fs::write(
        &script,
        "for f in truncated flipped arm64 reloc unresolved noentry nomarker adddisk slotregister relocflip importflip forged otherkernel fingerprint; do cellctl load /bad/$f.cell; echo \"$f: status $?\"; done\n\
         cellctl swap virtio_blk /lib/cells/probe.cell; echo \"wrong cell: status $?\"\n\
         cellctl swap virtio_blk /bad/ttyname.cell; echo \"tty name: status $?\"\n\
         cellctl swap virtio_blk /bad/probeasdisk.cell; echo \"interface: status $?\"\n\
         cellctl swap sound /lib/cells/virtio_blk.cell; echo \"no slot: status $?\"\n\
         cellctl unload virtio_blk; echo \"in use: status $?\"\n\
         cellctl frobnicate; echo \"usage: status $?\"\n\
         echo frobnicate > /dev/cellctl; echo \"raw: status $?\"\n\
         cellctl load /etc/hostname; echo \"not a cell: status $?\"\n\
         cat /proc/cells\n\
         echo data > /tmp/d; dd if=/tmp/d of=/dev/vda conv=sync 2>/dev/null; dd if=/dev/vda bs=5 count=1 2>/dev/null\n",
    )
    .unwrap();
    let out = Command::new("make")
        .args(["-s", "--no-print-directory", "exec"])
        .arg(format!("SCRIPT={}", script.display()))
        .arg(format!("OVERLAY={}", dir.join("overlay").display()))
        .current_dir(&root)
        .output()
        .expect("run make exec");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    for (expected, status) in [
        ("cellctl: Exec format error: /bad/truncated.cell: cell file truncated: object of", "truncated: status 1"),
        ("cellctl: Exec format error: /bad/flipped.cell: cell file damaged: CRC-32", "flipped: status 1"),
        ("cellctl: Exec format error: /bad/arm64.cell: built for machine 183, not x86_64 (62)", "arm64: status 1"),
        ("cellctl: Exec format error: /bad/reloc.cell: section", "reloc: status 1"),
        ("R_X86_64_IRELATIVE", "reloc: status 1"),
        ("cellctl: Exec format error: /bad/unresolved.cell: undefined symbol", "unresolved: status 1"),
        ("panic_fmX is not defined by the kernel", "unresolved: status 1"),
        ("cellctl: Exec format error: /bad/noentry.cell: no entry function", "noentry: status 1"),
        ("cellctl: Exec format error: /bad/nomarker.cell: the entry function was not made by tessera_cell_api::cell_entry!", "nomarker: status 1"),
        ("cellctl: Exec format error: /bad/adddisk.cell: imports tessera_linux::block::add_disk (_ZN", "adddisk: status 1"),
        ("cellctl: Exec format error: /bad/slotregister.cell: imports tessera_live_update::slot::register (_ZN", "slotregister: status 1"),
        ("which is not on the cell import allowlist", "adddisk: status 1"),
        ("cellctl: Exec format error: /bad/relocflip.cell: cell file signature does not verify with this kernel's cell signing key", "relocflip: status 1"),
        ("cellctl: Exec format error: /bad/importflip.cell: cell file signature does not verify with this kernel's cell signing key", "importflip: status 1"),
        ("cellctl: Exec format error: /bad/forged.cell: cell file signature does not verify", "forged: status 1"),
        ("cellctl: Exec format error: /bad/otherkernel.cell: packed for kernel build 1111111111", "otherkernel: status 1"),
        ("cellctl: Exec format error: /bad/fingerprint.cell: the object's cell_entry! marker names another interface fingerprint", "fingerprint: status 1"),
        ("cellctl: Invalid argument: /lib/cells/probe.cell: slot virtio_blk: cell probe is not one this slot takes (it takes virtio_blk)", "wrong cell: status 1"),
        ("cellctl: Invalid argument: /bad/ttyname.cell: slot virtio_blk: cell tty is not one this slot takes (it takes virtio_blk)", "tty name: status 1"),
        ("cellctl: Invalid argument: /bad/probeasdisk.cell: cell virtio_blk offers interface probe, slot virtio_blk takes block", "interface: status 1"),
        ("cellctl: No such file or directory: no slot sound (slots: ext2, tmpfs, procfs, tty, console, virtio_net, netstack, virtio_blk)", "no slot: status 1"),
        ("cellctl: Resource busy: virtio_blk is in use by slot virtio_blk", "in use: status 1"),
        ("usage: cellctl list | info NAME", "usage: status 2"),
        ("Invalid argument", "raw: status 1"),
        ("cellctl: Exec format error: /etc/hostname: ", "not a cell: status 1"),
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
        assert!(text.contains(status), "missing {status:?}:\n{text}");
    }
    // Nothing refused stays loaded; the driver is untouched and works.
    // /proc/cells rows start with the cell's id.
    let table: Vec<&str> =
        text.lines().filter(|l| l.split_whitespace().next().is_some_and(|w| w.parse::<u32>().is_ok())).collect();
    let driver = table.iter().find(|l| l.contains("virtio_blk")).unwrap_or_else(|| panic!("{text}"));
    let d: Vec<&str> = driver.split_whitespace().collect();
    assert_eq!((d[4], &d[8..11]), ("active", &["0", "0", "0"][..]), "{driver}");
    assert!(!table.iter().any(|l| l.contains(" loaded ")), "a refused cell stayed loaded:\n{text}");
    assert!(text.trim_end().ends_with("data"), "the disk does not work after the refusals:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_console_driver_is_swapped_while_the_shell_is_in_use() {
    let mut m = shell("cells-console");
    assert!(m.output().contains("console: 16550 UART at 0x3f8, driven by cell uart16550"), "{}", m.output());
    // A swap from the background while a command line is being typed,
    // one key at a time: every key arrives, the shell answers.
    m.send("(sleep 1; cellctl swap console /lib/cells/uart16550.cell > /tmp/swap.log) &\r");
    m.expect("# ", T);
    let line = "echo typed-through-the-swap-abcdefghijklmnopqrstuvwxyz-0123456789";
    let started = Instant::now();
    for key in line.chars() {
        m.send(&key.to_string());
        std::thread::sleep(Duration::from_millis(40));
    }
    assert!(started.elapsed() > Duration::from_millis(1500), "typing must span the swap");
    m.send("\r");
    m.expect("\ntyped-through-the-swap-abcdefghijklmnopqrstuvwxyz-0123456789", T);
    m.expect("# ", T);
    run(&mut m, "cat /tmp/swap.log", "swapped uart16550 0.1.0 for uart16550 0.1.0 in slot console: gate closed for");
    run(&mut m, "cellctl info console", "swaps 1");
    run(&mut m, "seq 1 300 | tail -1", "300");
    let cells = capture(&mut m, "cat /proc/cells");
    assert!(cells.lines().any(|l| l.contains("uart16550") && l.contains(" active ") && l.contains("console")), "{cells}");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success);
}

#[test]
fn the_tty_layer_is_swapped_with_its_state_while_a_line_is_half_typed() {
    let mut m = shell("cells-tty");
    assert!(m.output().contains("tty: line discipline from cell tty"), "{}", m.output());
    // Half a command line is in the line discipline when the new cell takes
    // over: it receives that state and the line completes.
    // The swap's report comes out on the console while the first half of
    // the line waits in the line discipline; the rest is typed after it,
    // so the swap falls mid-line however fast or slow the machine is.
    m.send("(sleep 1; cellctl swap tty /lib/cells/tty.cell) &\r");
    m.expect("# ", T);
    m.send("echo state-hand");
    m.expect("swapped tty 0.1.0 for tty 0.1.0 in slot tty: gate closed for", T);
    m.send("ed-over-$((20+22))\r");
    m.expect("\nstate-handed-over-42", T);
    m.expect("# ", T);
    // Settings made before a swap hold after it; ^C still interrupts.
    run(&mut m, "stty -echo; cellctl swap tty /lib/cells/tty.cell >/dev/null; stty -a | grep -o -- '-echo ' ; stty echo", "-echo");
    m.send("sleep 100\r");
    std::thread::sleep(Duration::from_millis(500));
    m.send("\x03");
    m.expect("# ", T);
    run(&mut m, "echo status $?", "status 130");
    run(&mut m, "cellctl info tty", "swaps 2");
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success);
}
