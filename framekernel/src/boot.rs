//! Kernel entry in Rust: brings up the machine in order, then calls the
//! kernel's main function (registered with [`crate::entry_point!`]).
//!
//! Order matters: console first (so every later failure is reported), then
//! GDT/IDT (so faults are reported), then memory, interrupts and time.

use crate::arch::{self, gdt, pic, qemu, trap};
use crate::mm::{self, phys::EarlyPhys};
use crate::{console, time};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use framekernel_logic::bootinfo::{BootProtocol, MemoryRegion};
use framekernel_logic::cmdline::Cmdline;
use framekernel_logic::memmap::UsableMemory;
use framekernel_logic::{multiboot2, pvh};

/// A boot module as the kernel sees it: where it was loaded. Its contents
/// are reached through [`take_modules`].
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    /// The module's name (its command line; empty for a bare `-initrd`).
    pub name: String,
    /// Physical start.
    pub start: u64,
    /// Physical end (exclusive).
    pub end: u64,
}

/// A boot module's memory, owned. The contents are borrowed from the
/// handle; dropping it gives the module's pages to the frame allocator
/// (so a boot archive costs no memory once it is unpacked).
pub struct BootModule {
    info: ModuleInfo,
    /// Reserved at boot, never written; valid until this handle drops
    /// (no reference to it outlives `&self`).
    bytes: &'static [u8],
}

impl BootModule {
    /// Where the module was loaded.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    /// The contents.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for BootModule {
    fn drop(&mut self) {
        let freed = mm::frames::release_reserved(self.info.start, self.info.end);
        log::info!("boot module '{}': {} KiB given back to the frame allocator", self.info.name, freed / 1024);
    }
}

impl core::fmt::Debug for BootModule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BootModule({:?}, {:#x}..{:#x})", self.info.name, self.info.start, self.info.end)
    }
}

/// The boot modules, until the kernel takes them.
static MODULES: crate::sync::BaseLock<Option<Vec<BootModule>>> = crate::sync::BaseLock::new(None);

/// Hands the boot modules to the caller, in boot-loader order; the first
/// call gets them all, later calls nothing.
pub fn take_modules() -> Vec<BootModule> {
    MODULES.lock().take().unwrap_or_default()
}

/// What the kernel's main function gets: everything learned at boot.
#[derive(Debug)]
pub struct BootContext {
    /// Which boot path was taken.
    pub protocol: BootProtocol,
    /// The kernel command line.
    pub cmdline: String,
    /// The firmware memory map, as given.
    pub memory_map: Vec<MemoryRegion>,
    /// RAM handed to the frame allocator.
    pub usable: UsableMemory,
    /// Boot modules.
    pub modules: Vec<ModuleInfo>,
    /// Physical range of the kernel image.
    pub kernel_image: (u64, u64),
    /// TSC at kernel entry (ticks since machine reset).
    pub entry_tsc: u64,
}

impl BootContext {
    /// The command line, parsed.
    pub fn cmdline(&self) -> Cmdline<'_> {
        Cmdline::new(&self.cmdline)
    }
}

/// Stops the boot with a message naming the problem.
fn fatal(args: core::fmt::Arguments<'_>) -> ! {
    console::emergency_print(format_args!("\n!!! Tessera cannot boot: {args}\n"));
    qemu::exit(qemu::ExitCode::Failure)
}

unsafe extern "Rust" {
    /// Defined by the kernel binary through `framekernel::entry_point!`.
    fn __tessera_kernel_main(boot: &'static BootContext) -> !;
}

/// Called from the assembly entry (`arch::boot`) on the boot stack.
#[unsafe(no_mangle)]
extern "C" fn framekernel_entry(magic: u64, info_addr: u64) -> ! {
    // First of all: GS points at the boot processor's block, which
    // `percpu::this_cpu` (locks, interrupt depth, the current task) reads
    // from here on. `gdt::init` fills in the rest of the block.
    if crate::percpu::install(0).is_none() {
        arch::halt_forever();
    }
    time::mark_boot();
    console::init_early();
    let parsed = match magic as u32 {
        multiboot2::BOOTLOADER_MAGIC => multiboot2::parse(&EarlyPhys, info_addr),
        pvh::START_INFO_MAGIC => pvh::parse(&EarlyPhys, info_addr),
        other => fatal(format_args!(
            "unknown boot protocol (entry magic {other:#x}); boot with GRUB (multiboot2) or qemu -kernel (PVH)"
        )),
    };
    let info = parsed.unwrap_or_else(|e| fatal(format_args!("bad boot information: {e}")));
    let selectors = gdt::init();
    trap::init(selectors.kernel_code.0);
    arch::cpu::init(&selectors);
    let report = mm::init(&info).unwrap_or_else(|e| fatal(format_args!("memory: {e}")));
    pic::init();
    time::calibrate();
    // The firmware's processor list; before the timer, which routes its
    // watchdog NMI through the I/O APIC the list names.
    crate::cpu::init(info.rsdp);
    let lapic = arch::lapic::init().and_then(|()| arch::lapic::enable_boot_processor());
    if let Err(why) = lapic {
        log::warn!("local APIC: {why}; no inter-processor interrupts");
    }
    let noapic = Cmdline::new(info.cmdline.as_str()).flag("noapic");
    let controller = crate::irq::init_controller(noapic, lapic.is_ok());
    // The PCI scan sizes BARs, turning decoding off and on: done while
    // this is the only processor (see `mm::tlb::with_others_held`).
    let functions = crate::pci::devices().len();
    log::debug!("pci: {functions} function(s)");
    let modules: Vec<(u64, u64)> = info.modules.iter().map(|m| (m.start, m.end)).collect();
    arch::smp::start_aps(&modules);
    time::read_wall_clock();
    time::start_timer(controller);
    console::init_input();

    let mut owned = Vec::new();
    let mut modules = Vec::new();
    for m in info.modules.iter() {
        let bytes = mm::phys::reserved_module(m.start, m.end).unwrap_or_else(|| {
            fatal(format_args!("boot module '{}' lies outside the direct map", m.name.as_str()))
        });
        let module = ModuleInfo { name: m.name.as_str().to_string(), start: m.start, end: m.end };
        modules.push(module.clone());
        owned.push(BootModule { info: module, bytes });
    }
    *MODULES.lock() = Some(owned);
    let context = Box::leak(Box::new(BootContext {
        protocol: info.protocol,
        cmdline: info.cmdline.as_str().to_string(),
        memory_map: info.memory.as_slice().to_vec(),
        usable: report.usable,
        modules,
        kernel_image: (report.kernel.start, report.kernel.end),
        entry_tsc: time::boot_tsc(),
    }));
    arch::enable_interrupts();
    // SAFETY: `__tessera_kernel_main` is defined exactly once, by the kernel
    // binary's `entry_point!`, with this signature (the macro checks it).
    unsafe { __tessera_kernel_main(context) }
}

/// Defines the kernel's main function: `entry_point!(path::to::main)` where
/// `main: fn(&'static BootContext) -> !`. The base calls it once the machine
/// is up (memory, heap, interrupts, timer).
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[unsafe(export_name = "__tessera_kernel_main")]
        fn __tessera_kernel_main(boot: &'static $crate::boot::BootContext) -> ! {
            let main: fn(&'static $crate::boot::BootContext) -> ! = $main;
            main(boot)
        }
    };
}
