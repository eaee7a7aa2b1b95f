//! Boot tests: both boot paths reach "ready", the console answers, and the
//! in-kernel self-tests pass.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions, number_after};

const BOOT: Duration = Duration::from_secs(60);

fn ready_and_poweroff(machine: &mut Machine, protocol: &str) {
    machine.expect(&format!("booted via {protocol}"), BOOT);
    let map = machine.expect("usable RAM:", BOOT);
    assert!(map.contains("memory map from the boot loader"), "no memory map printed:\n{map}");
    assert!(map.contains("usable"), "memory map lists no usable region:\n{map}");
    let symbols = machine.expect("Tessera ready", BOOT);
    assert!(symbols.contains("kernel symbols loaded"), "symbols module not used:\n{}", machine.output());
    machine.expect("tessera> ", BOOT);
    // Interrupts are on: the timer ticks while the kernel idles.
    std::thread::sleep(Duration::from_millis(200));
    machine.send("uptime\r");
    let answer = machine.expect("timer ticks", BOOT);
    let ticks = number_after(&answer, "s, ").unwrap_or(0.0);
    assert!(ticks > 100.0, "timer barely ticks ({ticks} ticks):\n{answer}");
    machine.send("frobnicate\r");
    machine.expect("unknown command 'frobnicate'", BOOT);
    machine.send("poweroff\r");
    machine.expect("powering off", BOOT);
    assert_eq!(machine.wait_exit(BOOT), Exit::Success, "{}", machine.output());
}

#[test]
fn grub_iso_boots_to_the_busybox_shell_and_powers_off() {
    let mut machine = Machine::start("grub", &MachineOptions::iso());
    machine.expect("booted via multiboot2", BOOT);
    machine.expect("kernel symbols loaded", BOOT);
    machine.expect("Tessera ready", BOOT);
    machine.expect("built-in shell (ash)", BOOT);
    machine.expect("# ", BOOT);
    machine.send("echo grub $((40+2))\r");
    machine.expect("grub 42", BOOT);
    machine.send("poweroff\r");
    machine.expect("Requesting system poweroff", BOOT);
    assert_eq!(machine.wait_exit(BOOT), Exit::Success, "{}", machine.output());
    let output = machine.output();
    assert!(output.contains("boot module 'initrd'"), "GRUB module missing:\n{output}");
}

#[test]
fn pvh_boots_to_the_monitor_and_powers_off() {
    let mut machine = Machine::start("pvh", &MachineOptions::kernel("tessera.monitor"));
    ready_and_poweroff(&mut machine, "PVH");
}

#[test]
fn self_tests_pass() {
    // Four processors: the others' set-up is tested too, and they run
    // the scheduler and call a cell while it is swapped.
    let mut machine = Machine::start("selftest", &MachineOptions { cpus: 4, ..MachineOptions::kernel("tessera.selftest") });
    let exit = machine.wait_exit(Duration::from_secs(90));
    let output = machine.output();
    let passed = output.lines().filter(|l| l.starts_with("selftest ") && l.ends_with(')') && l.contains(" ... ok")).count();
    assert!(!output.contains("FAILED"), "a self-test failed:\n{output}");
    assert!(passed >= 10, "only {passed} self-tests reported ok:\n{output}");
    assert!(output.contains(&format!("selftest: {passed} passed, 0 failed")), "no summary line:\n{output}");
    // The cell self-tests ran on the probe cell from the boot archive.
    for test in [
        "cell_calls_and_state",
        "cell_faults_contained_and_restarted",
        "cell_runaway_call_stopped_by_watchdog",
        "cell_repeated_faults_hold",
        "cell_swap_replaces_and_retires",
        "cell_unload_gives_memory_back",
        "cell_start_faults_hold_and_swaps_roll_back",
        "cell_swap_drains_calls_and_refuses_a_second",
        "processors_take_nmis_on_their_own_stacks",
        "kernel_unmaps_reach_every_processor",
        "pci_writes_hold_the_other_processors",
        "cell_swapped_while_every_processor_calls_it",
        "lock_held_too_long_is_reported",
        "redteam_barriers_kicks_and_spinlocks_everywhere",
        "idle_processors_stop_their_timers",
        "irq_oneshot_lines_wait_for_unmask",
        "redteam_pci_holds_everywhere",
        "redteam_tick_callbacks_cannot_switch_spaces",
        "device_lines_reach_the_chosen_processor",
        "redteam_watchdog_everywhere_at_once",
    ] {
        assert!(output.contains(&format!("selftest {test} ... ok")), "{test} did not run:\n{output}");
    }
    assert!(output.contains("cells: virtio_blk 0.1.0 (block) loaded from /lib/cells/virtio_blk.cell"), "{output}");
    assert!(output.contains("selftest: 3 other processor(s) online"), "{output}");
    // lock_held_too_long_is_reported: the waiter named the lock's source
    // line, and said when it got it.
    assert!(
        output.lines().any(|l| l.contains(": the lock taken at kernel/src/cells.rs:") && l.contains("has been held for over 5 s")),
        "no lock stall report:\n{output}"
    );
    assert!(output.lines().any(|l| l.contains(": the lock taken at kernel/src/cells.rs:") && l.contains("is free again after")), "{output}");
    assert_eq!(exit, Exit::Success, "{output}");
}

/// The cell watchdog stops a cell spinning with interrupts off on every
/// processor: past the eighth (no flat logical id for the PIT's NMI: the
/// boot processor forwards it), and with `noapic` (the PICs deliver
/// interrupts; the PIT's NMI reaches the boot processor alone).
#[test]
fn watchdog_reaches_nine_processors_and_noapic() {
    let only = "tessera.selftest.only=redteam_watchdog_nmis_reach_every_busy_processor,redteam_watchdog_alone_on_the_last_processor,redteam_cell_spinning_with_interrupts_off_stopped,redteam_watchdog_forwarding_while_the_boot_processor_waits";
    for (name, cpus, extra) in [("watchdog-9", 9, ""), ("watchdog-noapic", 4, " noapic")] {
        let options = MachineOptions { cpus, ..MachineOptions::kernel(&format!("tessera.selftest {only}{extra}")) };
        let mut machine = Machine::start(name, &options);
        let exit = machine.wait_exit(Duration::from_secs(300));
        let output = machine.output();
        assert!(output.contains(&format!("selftest: {} other processor(s) online", cpus - 1)), "{output}");
        assert!(output.contains("selftest: 4 passed, 0 failed"), "{name}:\n{output}");
        assert_eq!(exit, Exit::Success, "{output}");
    }
}

#[test]
fn boots_in_small_memory() {
    // The kernel alone as the module: the test boot archive (every test
    // program twice) would not fit next to the self-tests in 32 MiB.
    let mut options = MachineOptions::kernel("tessera.selftest");
    options.boot = tessera_tests::Boot::Kernel {
        kernel: tessera_tests::kernel_path(),
        initrd: Some(tessera_tests::kernel_path()),
        cmdline: "tessera.selftest".into(),
    };
    options.memory = "32M".into();
    let mut machine = Machine::start("small-memory", &options);
    let exit = machine.wait_exit(Duration::from_secs(90));
    assert_eq!(exit, Exit::Success, "{}", machine.output());
}

#[test]
fn boot_archive_memory_is_given_back() {
    // Once unpacked into the root tmpfs, the archive's pages join the frame
    // allocator: MemTotal then counts them (without that, it would be about
    // the archive's size lower).
    let archive = std::fs::metadata(tessera_tests::initrd_path()).expect("boot archive").len() as f64;
    let mut machine = Machine::start("archive-given-back", &MachineOptions::kernel(""));
    let line = machine.expect("given back to the frame allocator", BOOT);
    assert!(line.contains("boot module"), "{line}");
    machine.expect("built-in shell (ash)", BOOT);
    machine.expect("# ", BOOT);
    machine.send("grep MemTotal /proc/meminfo\r");
    let line = machine.expect(" kB", BOOT);
    let total_kib = number_after(&line, "MemTotal:").expect("MemTotal value");
    let ram = 256.0 * 1024.0 * 1024.0;
    assert!(total_kib * 1024.0 > ram - archive / 2.0, "MemTotal {total_kib} kB with a {archive}-byte archive");
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(BOOT), Exit::Success);
}

#[test]
fn too_little_memory_for_the_archive_is_named_not_a_panic() {
    // An archive with one 30 MiB file in a 48 MiB machine: the module and
    // its unpacked copy cannot both fit. Unpacking stops with "NoSpace"
    // naming the entry, and the kernel carries on to its monitor.
    let dir = std::env::temp_dir().join(format!("tessera-big-archive-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tree")).unwrap();
    let big: Vec<u8> = (0..30u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(dir.join("tree/big"), big).unwrap();
    let archive = dir.join("big.cpio");
    let mkinitrd = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tessera-mkinitrd");
    let status = std::process::Command::new(mkinitrd)
        .arg(&archive)
        .arg(format!("={}", dir.join("tree").display()))
        .status()
        .expect("run tessera-mkinitrd");
    assert!(status.success());
    let options = MachineOptions {
        boot: tessera_tests::Boot::Kernel {
            kernel: tessera_tests::kernel_path(),
            initrd: Some(archive),
            cmdline: String::new(),
        },
        memory: "48M".into(),
        ..MachineOptions::kernel("")
    };
    let mut machine = Machine::start("small-memory", &options);
    let line = machine.expect("programs cannot run", BOOT);
    assert!(line.contains("root file system: boot archive entry 'big': NoSpace"), "{line}");
    machine.expect("tessera> ", BOOT);
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(BOOT), Exit::Success);
    assert!(!machine.output().contains("PANIC"), "{}", machine.output());
    let _ = std::fs::remove_dir_all(dir);
}

/// The firmware's processor list (ACPI MADT) is read on both boot paths:
/// GRUB gives the RSDP in a multiboot2 tag, PVH in its start info (or the
/// BIOS area has it). The other processors start, set themselves up and
/// join the scheduler; sysfs and /proc say so. `nosmp` keeps Tessera on
/// the boot processor, as Linux.
#[test]
fn every_processor_is_listed_on_both_boot_paths() {
    for (name, options) in [("smp-pvh", MachineOptions::kernel("tessera.monitor")), ("smp-grub", MachineOptions::iso())] {
        let mut machine = Machine::start(name, &MachineOptions { cpus: 4, ..options });
        // The other three are woken (INIT-SIPI-SIPI) and park.
        let line = machine.expect("1 I/O APIC(s)", BOOT);
        assert!(line.contains("processors: 4 (local APIC ids [0, 1, 2, 3], boot 0), 3 started, set up and parked"), "{name}:\n{}", machine.output());
        machine.expect("scheduler: running on 4 processor(s)", BOOT);
        machine.expect("Tessera ready", BOOT);
        if name == "smp-grub" {
            // sysfs, /proc and the affinity calls say the same: all four
            // present and online.
            machine.expect("# ", BOOT);
            machine.send("cd /sys/devices/system/cpu; echo cpus=$(cat present)/$(cat online)/$(cat offline)/$(ls -d cpu[0-9]* | wc -l)/$(nproc)/$(grep -c '^processor' /proc/cpuinfo)/$(grep -c '^cpu[0-9]' /proc/stat)\r");
            machine.expect("cpus=0-3/0-3//4/4/4/4", BOOT);
        }
        drop(machine);
    }
    let mut machine = Machine::start("nosmp", &MachineOptions { cpus: 4, ..MachineOptions::kernel("tessera.monitor nosmp") });
    machine.expect("3 started, set up and parked", BOOT);
    machine.expect("scheduler: running on 1 processor(s)", BOOT);
    machine.expect("Tessera ready", BOOT);
}

/// A MADT written by an attacker (or broken firmware), handed over by
/// GRUB's `acpi` command in place of QEMU's: its local APIC override aims
/// the start-up's INIT below the APIC page, its I/O APIC window lies in
/// the local APICs' range (writes there are interrupt messages), one
/// processor needs x2APIC mode. The kernel reports each and boots; it
/// obeys none of them (the red-team found each resetting or crashing the
/// machine).
#[test]
fn hostile_firmware_tables_are_reported_not_obeyed() {
    let dir = std::env::temp_dir().join(format!("tessera-test-{}-madt", std::process::id()));
    let boot = dir.join("tree/boot");
    std::fs::create_dir_all(boot.join("grub")).expect("iso tree");
    std::fs::copy(tessera_tests::kernel_path(), boot.join("tessera.elf")).expect("kernel");
    std::fs::copy(tessera_tests::initrd_path(), boot.join("initrd.cpio")).expect("archive");
    let mut entries = Vec::new();
    entries.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // processor, local APIC id 0
    entries.extend_from_slice(&[0, 8, 1, 1, 1, 0, 0, 0]); // processor, local APIC id 1
    entries.extend_from_slice(&[9, 16, 0, 0, 44, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]); // x2APIC id 300
    entries.extend_from_slice(&[1, 12, 0, 0, 0x00, 0x10, 0xe0, 0xfe, 0, 0, 0, 0]); // I/O APIC at 0xfee01000
    entries.extend_from_slice(&[5, 12, 0, 0]); // local APIC override to 0xfedffd00
    entries.extend_from_slice(&0xfedf_fd00u64.to_le_bytes());
    let mut madt = b"APIC".to_vec();
    madt.extend_from_slice(&(36 + 8 + entries.len() as u32).to_le_bytes());
    madt.extend_from_slice(&[3, 0]); // revision, checksum (below)
    madt.extend_from_slice(b"EVIL  EVILMADT");
    madt.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
    madt.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    madt.extend_from_slice(&1u32.to_le_bytes());
    madt.extend_from_slice(&entries);
    let sum = madt.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    madt[9] = 0u8.wrapping_sub(sum);
    std::fs::write(boot.join("madt.bin"), &madt).expect("table");
    let menu = "set timeout=0\nserial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n\
        menuentry \"Tessera\" {\n insmod acpi\n acpi --exclude=APIC /boot/madt.bin\n multiboot2 /boot/tessera.elf tessera.monitor\n module2 /boot/initrd.cpio initrd\n boot\n}\n";
    std::fs::write(boot.join("grub/grub.cfg"), menu).expect("menu");
    let iso = dir.join("hostile.iso");
    let made = std::process::Command::new("grub-mkrescue")
        .args(["-d", "/usr/lib/grub/i386-pc", "-o"])
        .arg(&iso)
        .arg(dir.join("tree"))
        .output()
        .expect("grub-mkrescue (make deps installs it)");
    assert!(made.status.success(), "grub-mkrescue: {}", String::from_utf8_lossy(&made.stderr));
    let options = MachineOptions { boot: tessera_tests::Boot::Iso(iso), cpus: 3, ..MachineOptions::iso() };
    let mut machine = Machine::start("hostile-madt", &options);
    machine.expect("the MADT puts the local APIC at 0xfedffd00, the processor at 0xfee00000; using the processor's", BOOT);
    machine.expect("I/O APIC 0 at 0xfee01000 refused", BOOT);
    machine.expect("local APIC id 300 needs x2APIC mode", BOOT);
    let line = machine.expect("interrupt override(s)", BOOT);
    assert!(line.contains("processors: 3 (local APIC ids [0, 1, 300], boot 0), 1 started, set up and parked"), "{}", machine.output());
    machine.expect("scheduler: running on 2 processor(s)", BOOT);
    machine.expect("tessera> ", BOOT);
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(BOOT), Exit::Success, "{}", machine.output());
    drop(machine);
    let _ = std::fs::remove_dir_all(&dir);
}
