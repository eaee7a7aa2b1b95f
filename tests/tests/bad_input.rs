//! Bad boot data: the kernel names the problem and keeps going where it can.

use std::time::Duration;
use tessera_tests::{Boot, Exit, Machine, MachineOptions, kernel_path};

fn boot_with_module(name: &str, module: &std::path::Path) -> Machine {
    let options = MachineOptions {
        boot: Boot::Kernel { kernel: kernel_path(), initrd: Some(module.to_path_buf()), cmdline: String::new() },
        ..MachineOptions::kernel("")
    };
    Machine::start(name, &options)
}

fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tessera-test-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

#[test]
fn garbage_symbols_module_is_refused_by_name() {
    let path = scratch("garbage", &[0x5a; 8192]);
    let mut machine = boot_with_module("garbage-symbols", &path);
    let line = machine.expect("fault reports show addresses only", Duration::from_secs(60));
    assert!(line.contains("symbols: not loaded (malformed kernel ELF"), "{line}");
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
    let _ = std::fs::remove_file(path);
}

#[test]
fn symbols_of_another_program_are_refused() {
    // A real ELF with a symbol table, but not this kernel.
    let other = std::env::current_exe().expect("test binary path");
    let mut machine = boot_with_module("foreign-symbols", &other);
    let line = machine.expect("fault reports show addresses only", Duration::from_secs(60));
    assert!(line.contains("different kernel build") || line.contains("malformed kernel ELF"), "{line}");
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
}

#[test]
fn truncated_kernel_elf_as_symbols_is_refused() {
    let kernel = std::fs::read(kernel_path()).expect("read kernel");
    let path = scratch("truncated", &kernel[..kernel.len() / 2]);
    let mut machine = boot_with_module("truncated-symbols", &path);
    let line = machine.expect("fault reports show addresses only", Duration::from_secs(60));
    assert!(line.contains("malformed kernel ELF"), "{line}");
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
    let _ = std::fs::remove_file(path);
}

/// The kernel ELF with its `.text` section header patched to `size`
/// bytes: the file claims less code than the running kernel has.
fn kernel_with_text_size(size: u64) -> Vec<u8> {
    let mut elf = std::fs::read(kernel_path()).expect("read kernel");
    let u16_at = |e: &[u8], at: usize| u16::from_le_bytes([e[at], e[at + 1]]) as usize;
    let u32_at = |e: &[u8], at: usize| u32::from_le_bytes(e[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |e: &[u8], at: usize| u64::from_le_bytes(e[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(&elf, 0x28), u16_at(&elf, 0x3a), u16_at(&elf, 0x3c), u16_at(&elf, 0x3e));
    let strtab = u64_at(&elf, shoff + shstrndx * shentsize + 0x18);
    let text = (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&h| elf[strtab + u32_at(&elf, h)..].starts_with(b".text\0"))
        .expect("kernel has a .text section");
    elf[text + 0x20..text + 0x28].copy_from_slice(&size.to_le_bytes());
    elf
}

#[test]
fn symbols_with_an_empty_text_section_are_refused() {
    // Red team (issue 10, finding 11): the check compared only the bytes
    // the file claimed, so a zero-length (or shortened) .text passed.
    for (name, size) in [("empty-text", 0u64), ("short-text", 16)] {
        let path = scratch(name, &kernel_with_text_size(size));
        let mut machine = boot_with_module(name, &path);
        let line = machine.expect("fault reports show addresses only", Duration::from_secs(60));
        assert!(line.contains("different kernel build"), "{name}: {line}");
        machine.send("poweroff\r");
        assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn unknown_fault_name_is_ignored_with_a_message() {
    let mut machine = Machine::start("unknown-fault", &MachineOptions::kernel("tessera.fault=bogus"));
    machine.expect("unknown tessera.fault=bogus", Duration::from_secs(60));
    machine.expect("Tessera ready", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
}

#[test]
fn corrupt_boot_information_stops_with_a_message() {
    // QEMU lays a command line this long over its own PVH start info (and it
    // is beyond the kernel's 4096-byte limit anyway): the kernel must name
    // the problem and stop, not hang or fault.
    let cmdline = "x".repeat(5000);
    let mut machine = Machine::start("corrupt-start-info", &MachineOptions::kernel(&cmdline));
    let exit = machine.wait_exit(Duration::from_secs(60));
    let output = machine.output();
    assert!(output.contains("!!! Tessera cannot boot: bad boot information: "), "{output}");
    assert!(!output.contains("CPU exception") && !output.contains("PANIC"), "{output}");
    assert_eq!(exit, Exit::Failure, "{output}");
}

#[test]
fn truncated_boot_archive_is_named_and_the_kernel_keeps_running() {
    let archive = std::fs::read(tessera_tests::initrd_path()).expect("read boot archive");
    let path = scratch("truncated-archive", &archive[..archive.len() / 3]);
    let options = MachineOptions {
        boot: Boot::Kernel { kernel: kernel_path(), initrd: Some(path.clone()), cmdline: String::new() },
        ..MachineOptions::kernel("")
    };
    let mut machine = Machine::start("truncated-archive", &options);
    let line = machine.expect("programs cannot run", Duration::from_secs(60));
    assert!(line.contains("root file system: boot archive") && line.contains("offset"), "{line}");
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
    let _ = std::fs::remove_file(path);
}

/// The boot archive compressed with the host's gzip.
fn gzipped_archive(name: &str) -> Vec<u8> {
    let out = std::process::Command::new("gzip")
        .args(["-1", "-c"])
        .arg(tessera_tests::initrd_path())
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip failed for {name}");
    out.stdout
}

fn boot_archive(name: &str, bytes: &[u8]) -> (Machine, std::path::PathBuf) {
    let path = scratch(name, bytes);
    let options = MachineOptions {
        boot: Boot::Kernel { kernel: kernel_path(), initrd: Some(path.clone()), cmdline: String::new() },
        ..MachineOptions::kernel("")
    };
    (Machine::start(name, &options), path)
}

#[test]
fn gzip_compressed_boot_archive_reaches_the_shell() {
    let (mut machine, path) = boot_archive("gzip-archive", &gzipped_archive("gzip-archive"));
    machine.expect("kernel symbols loaded", Duration::from_secs(60));
    machine.expect("root file system: tmpfs with", Duration::from_secs(60));
    machine.expect("built-in shell (ash)", Duration::from_secs(60));
    machine.expect("# ", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(60)), Exit::Success);
    let _ = std::fs::remove_file(path);
}

#[test]
fn corrupt_gzip_boot_archive_is_named_and_the_kernel_keeps_running() {
    let mut bytes = gzipped_archive("gzip-corrupt");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    let (mut machine, path) = boot_archive("gzip-corrupt", &bytes);
    machine.expect("compressed boot archive: gzip member at byte 0: ", Duration::from_secs(60));
    machine.expect("programs cannot run", Duration::from_secs(60));
    let output = machine.output();
    assert!(output.contains("corrupt deflate data") || output.contains("CRC-32 mismatch"), "{output}");
    machine.expect("tessera> ", Duration::from_secs(60));
    machine.send("poweroff\r");
    assert_eq!(machine.wait_exit(Duration::from_secs(30)), Exit::Success);
    let _ = std::fs::remove_file(path);
}
