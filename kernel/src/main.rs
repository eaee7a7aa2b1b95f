//! The Tessera kernel binary: the composition root. It owns no mechanism;
//! it reads the command line, reports what the trusted base set up, runs
//! self-tests or a provoked fault when asked, and otherwise idles with a
//! small console monitor until components and user programs arrive.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod cells;
mod monitor;
mod programs;

use framekernel::boot::BootContext;
use framekernel::debug::Fault;
use framekernel::selftest::{self, SelfTest};
use framekernel::{ExitCode, println, time};

framekernel::entry_point!(main);

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main(boot: &'static BootContext) -> ! {
    let quiet = boot.cmdline().flag("tessera.quiet");
    if quiet {
        log::set_max_level(log::LevelFilter::Error);
        quiet_boot(boot);
    }
    println!();
    println!("Tessera {VERSION} — a framekernel for x86_64 (booted via {})", boot.protocol);
    println!("command line: {}", if boot.cmdline.is_empty() { "(empty)" } else { &boot.cmdline });
    print_memory(boot);
    // The boot modules are read here and then dropped, which gives their
    // memory back: the archive lives on as the root file system.
    let archive = BootArchive::take(root_limit(boot));
    if let Some(problem) = &archive.problem {
        println!("boot archive: {problem}");
    }
    match load_symbols(archive.bytes()) {
        Ok(count) => println!("symbols: {count} kernel symbols loaded"),
        Err(why) => println!("symbols: not loaded ({why}); fault reports show addresses only"),
    }
    if boot.cmdline().flag("tessera.selftest") {
        // The self-tests count frames and heap bytes exactly: the kernel's
        // own tasks stay on this processor, where they cannot run in the
        // middle of a check (the tests that need the others use them).
        tessera_sched::set_spawn_affinity(1);
    }
    match tessera_sched::init() {
        Ok(()) => println!("scheduler: running on {} processor(s)", 1 + start_processors(boot)),
        Err(e) => println!("scheduler: cannot start ({e}); user programs will not run"),
    }
    tessera_linux::init();
    // The file-system cells first: the root is served by the tmpfs cell.
    let boot_cells = cells::load_boot_cells(false, &|path| archive.file(path));
    cells::start_file_system_cells(&boot_cells, false);
    match archive.cpio() {
        Some(cpio) => {
            // The root file system: a tmpfs of at most half the RAM, filled
            // from the boot archive.
            let limit = root_limit(boot);
            let started = time::now_ns();
            match tessera_linux::fs::boot_root(cpio, limit, tessera_linux::fs::now) {
                Ok((count, server)) => println!(
                    "root file system: tmpfs with {count} entries from the boot archive, served by {server} ({} ms)",
                    time::now_ns().saturating_sub(started) / 1_000_000
                ),
                Err(why) => println!("root file system: {why}; programs cannot run"),
            }
        }
        None => println!("root file system: no boot archive; programs cannot run"),
    }
    drop(archive);
    cells::start_drivers(&boot_cells, false);
    let cmdline = boot.cmdline();
    if let Some(name) = cmdline.value("tessera.fault") {
        match Fault::from_name(name) {
            Some(fault) => framekernel::debug::provoke(fault),
            None => println!("unknown tessera.fault={name} (page, rodata, ud, stack, oom, panic); ignored"),
        }
    }
    if cmdline.flag("tessera.usertests") {
        let (passed, failed) = programs::run_all();
        framekernel::exit(if failed == 0 && passed > 0 { ExitCode::Success } else { ExitCode::Failure });
    }
    if let Some(path) = cmdline.value("tessera.run") {
        match programs::run("/", path, &[]) {
            Ok(outcome) => println!("{path}: {}", programs::describe(outcome)),
            Err(why) => println!("{why}"),
        }
    }
    if cmdline.flag("tessera.cellbench") {
        cells::call_benchmark();
        framekernel::exit(ExitCode::Success);
    }
    if cmdline.flag("tessera.selftest") {
        println!("selftest: {} other processor(s) online", framekernel::cpu::online() - 1);
        let mut tests: alloc::vec::Vec<SelfTest> = selftest::BASE_TESTS.to_vec();
        tests.extend(cells::selftests());
        // `tessera.selftest.only=a,b`: only the tests named.
        if let Some(only) = cmdline.value("tessera.selftest.only") {
            tests.retain(|t| only.split(',').any(|name| name == t.name));
        }
        let summary = selftest::run(&tests);
        framekernel::exit(if summary.failed == 0 && summary.passed > 0 { ExitCode::Success } else { ExitCode::Failure });
    }
    let kernel_ms = time::now_ns() as f64 / 1e6;
    let since_reset_ms = time::tsc_to_ns(boot.entry_tsc) as f64 / 1e6;
    println!(
        "Tessera ready: kernel entry to ready {kernel_ms:.1} ms (firmware and loader before entry: {since_reset_ms:.1} ms)"
    );
    if !cmdline.flag("tessera.monitor") {
        // Normal boot: init (busybox) as process 1, which starts the shell.
        let init = cmdline.value("tessera.init").unwrap_or("/sbin/init");
        match programs::run("/", init, &[]) {
            Ok(outcome) => println!("init {}; the kernel monitor takes over", programs::describe(outcome)),
            Err(why) => println!("init: {why}; the kernel monitor takes over"),
        }
    }
    monitor::run(boot)
}

/// `tessera.quiet` with `tessera.exec=SCRIPT`: set up silently; process 1
/// (a shell) runs `/etc/init.d/rcS` as `make run`'s init does (so `/proc`,
/// `/tmp` and the rest are mounted) and then becomes the script's shell;
/// leave QEMU with the script's exit status. This is what `make exec` uses; only the
/// output of rcS and the script is printed.
fn quiet_boot(boot: &'static BootContext) -> ! {
    let archive = BootArchive::take(root_limit(boot));
    let _ = load_symbols(archive.bytes());
    if tessera_sched::init().is_ok() {
        start_processors(boot);
    }
    tessera_linux::init();
    let boot_cells = cells::load_boot_cells(true, &|path| archive.file(path));
    cells::start_file_system_cells(&boot_cells, true);
    let limit = root_limit(boot);
    let root = match (&archive.problem, archive.cpio()) {
        (Some(problem), _) => Some(Err(alloc::format!("boot archive: {problem}"))),
        (None, cpio) => cpio.map(|cpio| tessera_linux::fs::boot_root(cpio, limit, tessera_linux::fs::now)),
    };
    drop(archive);
    cells::start_drivers(&boot_cells, true);
    // The script's output goes to the host as is: no \n -> \r\n.
    let tty = tessera_linux::files::console();
    let mut termios = tty.termios();
    termios.oflag &= !1; // OPOST
    tty.set_termios(termios, false);
    let status = match root {
        Some(root) => {
            match root {
                Ok(_) => match boot.cmdline().value("tessera.exec") {
                    Some(script) => {
                        // One shell is process 1 throughout, as init is on
                        // Linux: it runs rcS, then becomes the script's shell.
                        let command = alloc::format!("{RCS_LINE}exec /bin/sh {script}");
                        match programs::run("/", "/bin/sh", &["-c", &command]) {
                            Ok(tessera_linux::Outcome::Exited(code)) => u32::from(code),
                            Ok(tessera_linux::Outcome::Killed(signal) | tessera_linux::Outcome::Dumped(signal)) => 128 + u32::from(signal),
                            Err(why) => {
                                println!("tessera: {why}");
                                127
                            }
                        }
                    }
                    None => {
                        println!("tessera: tessera.quiet needs tessera.exec=SCRIPT");
                        127
                    }
                },
                Err(why) => {
                    println!("tessera: root file system: {why}");
                    127
                }
            }
        }
        None => {
            println!("tessera: no boot archive");
            127
        }
    };
    // Whatever the script wrote to disk file systems reaches the disk.
    tessera_linux::block::sync_all();
    framekernel::exit_with_value(status)
}

/// Starts the other processors, which run the scheduler from then on;
/// returns how many came online. None with `nosmp` or `maxcpus=0` or `1`,
/// as on Linux.
fn start_processors(boot: &BootContext) -> usize {
    let cmdline = boot.cmdline();
    if cmdline.flag("nosmp") || matches!(cmdline.value("maxcpus"), Some("0" | "1")) {
        return 0;
    }
    framekernel::cpu::start_others(tessera_sched::processor_main)
}

/// What process 1 runs before the script: the system's start script if
/// there is one (its failure is reported by the shell, not fatal, as
/// busybox init goes on after sysinit).
const RCS_LINE: &str = "[ -x /etc/init.d/rcS ] && /etc/init.d/rcS; ";

/// Where the kernel's own ELF sits in the boot archive.
const SYMBOLS_PATH: &str = "boot/tessera.elf";

/// The root tmpfs may fill half the RAM, as Linux's: the usable RAM plus
/// the boot modules, whose memory is given back once they are unpacked.
fn root_limit(boot: &BootContext) -> u64 {
    let modules: u64 = boot.modules.iter().map(|m| m.end.saturating_sub(m.start)).sum();
    (boot.usable.total() + modules) / 2
}

/// The boot modules and, when the first is gzip-compressed (as Linux
/// accepts an initramfs), its decompressed contents. Dropping it gives the
/// modules' memory back.
struct BootArchive {
    modules: alloc::vec::Vec<framekernel::boot::BootModule>,
    inflated: Option<Inflated>,
    /// Why a compressed archive could not be used.
    problem: Option<alloc::string::String>,
}

impl BootArchive {
    /// Takes the modules; decompresses the first into at most `limit` bytes.
    fn take(limit: u64) -> Self {
        let modules = framekernel::boot::take_modules();
        let (mut inflated, mut problem) = (None, None);
        if let Some(first) = modules.first().filter(|m| tessera_cpio::gzip::is_gzip(m.bytes())) {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            match Inflated::new(first.bytes(), limit) {
                Ok(bytes) => inflated = Some(bytes),
                Err(e) => problem = Some(alloc::format!("compressed boot archive: {e}")),
            }
        }
        Self { modules, inflated, problem }
    }

    /// The first module's contents (decompressed), if usable.
    fn bytes(&self) -> Option<&[u8]> {
        if self.problem.is_some() {
            return None;
        }
        self.inflated.as_ref().map(Inflated::bytes).or_else(|| self.modules.first().map(|m| m.bytes()))
    }

    /// The boot archive, when the first module is (or decompresses to) cpio.
    fn cpio(&self) -> Option<&[u8]> {
        self.bytes().filter(|b| tessera_cpio::is_cpio(b))
    }

    /// The contents of the regular file at `path` in the boot archive (the
    /// last entry of that name: a later one, from an overlay, replaces an
    /// earlier one, as when the archive is unpacked).
    fn file(&self, path: &str) -> Option<&[u8]> {
        let name = path.trim_start_matches('/');
        let entries = tessera_cpio::Reader::new(self.cpio()?).map_while(Result::ok);
        entries.filter(|e| e.name == name && e.is_file()).last().map(|e| e.data)
    }
}

/// A decompressed boot archive. When its size is known up front it lives
/// in whole frames, so dropping it returns them to the frame allocator
/// (heap memory, once claimed, stays with the heap).
enum Inflated {
    Frames(framekernel::mm::MappedArea, usize),
    Heap(alloc::vec::Vec<u8>),
}

impl Inflated {
    fn new(gzip: &[u8], limit: usize) -> Result<Self, tessera_cpio::gzip::GzipError> {
        use tessera_cpio::gzip::{self, GzipError};
        if let Some(size) = gzip::size_hint(gzip).filter(|&s| s <= limit) {
            let frames: Result<alloc::vec::Vec<_>, _> =
                (0..size.div_ceil(4096)).map(|_| framekernel::mm::Frame::alloc()).collect();
            let mut area = framekernel::mm::MappedArea::new(frames.map_err(|_| GzipError::OutOfMemory)?)
                .map_err(|_| GzipError::OutOfMemory)?;
            match gzip::decompress_into(gzip, area.as_mut_slice()) {
                Ok(len) => return Ok(Inflated::Frames(area, len)),
                // Several members: the hint was only the last one's size.
                Err(GzipError::TooLarge { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        gzip::decompress(gzip, limit).map(Inflated::Heap)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Inflated::Frames(area, len) => area.as_slice().get(..*len).unwrap_or(&[]),
            Inflated::Heap(bytes) => bytes,
        }
    }
}

/// Loads the kernel's symbol table from the first boot module: a cpio boot
/// archive holding `boot/tessera.elf`, or the kernel ELF itself.
fn load_symbols(module: Option<&[u8]>) -> Result<usize, alloc::string::String> {
    use alloc::string::ToString;
    let module = module.ok_or("no usable boot module")?;
    let elf = if tessera_cpio::is_cpio(module) {
        match tessera_cpio::find(module, SYMBOLS_PATH) {
            Ok(Some(entry)) => entry.data,
            Ok(None) => return Err(alloc::format!("boot archive has no {SYMBOLS_PATH}")),
            Err(e) => return Err(alloc::format!("boot archive: {e}")),
        }
    } else {
        module
    };
    framekernel::symbols::load(elf).map_err(|e| e.to_string())
}

fn print_memory(boot: &BootContext) {
    println!("memory map from the boot loader ({} entries):", boot.memory_map.len());
    for region in &boot.memory_map {
        println!(
            "  [{:#014x}-{:#014x}) {:>9} KiB  {}",
            region.start,
            region.start.saturating_add(region.len),
            region.len / 1024,
            region.kind
        );
    }
    let (kstart, kend) = boot.kernel_image;
    println!("kernel image: [{kstart:#x}-{kend:#x}) {} KiB", (kend - kstart) / 1024);
    for module in &boot.modules {
        println!(
            "boot module '{}': [{:#x}-{:#x}) {} KiB",
            module.name,
            module.start,
            module.end,
            (module.end - module.start) / 1024
        );
    }
    let cpus = framekernel::cpu::topology();
    match cpus.error {
        None => {
            let ids: alloc::vec::Vec<alloc::string::String> = cpus.processors.iter().filter(|p| p.enabled).map(|p| alloc::format!("{}", p.apic_id)).collect();
            let shown = if ids.len() > 16 { alloc::format!("{}, ...", ids[..16].join(", ")) } else { ids.join(", ") };
            println!(
                "processors: {} (local APIC ids [{shown}], boot {}), {} started, set up and parked; {} I/O APIC(s), {} interrupt override(s)",
                framekernel::cpu::present(),
                cpus.boot_apic_id,
                framekernel::cpu::parked(),
                cpus.io_apics.len(),
                cpus.overrides.len()
            );
        }
        Some(e) => println!("processors: firmware tables not read ({e}); running on the boot processor"),
    }
    let frames = framekernel::mm::frame_stats();
    println!(
        "usable RAM: {} MiB in {} range(s); {} MiB free for allocation",
        boot.usable.total() / (1024 * 1024),
        boot.usable.ranges().len(),
        frames.free * 4096 / (1024 * 1024)
    );
}
