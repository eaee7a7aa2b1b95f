//! Deliberate faults, for the tests that check fault reporting
//! (`tessera.fault=KIND` on the kernel command line).

/// A fault the kernel can provoke on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read from an unmapped address (`0xdead0000`).
    PageFault,
    /// Write to the kernel's read-only data.
    WriteRodata,
    /// Execute an undefined instruction (`ud2`).
    InvalidOpcode,
    /// Recurse until the boot stack's guard page is hit.
    StackOverflow,
    /// Allocate until the heap and physical memory run out.
    OutOfMemory,
    /// Call `panic!`.
    Panic,
}

impl Fault {
    /// Parses a `tessera.fault=` value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "page" => Fault::PageFault,
            "rodata" => Fault::WriteRodata,
            "ud" => Fault::InvalidOpcode,
            "stack" => Fault::StackOverflow,
            "oom" => Fault::OutOfMemory,
            "panic" => Fault::Panic,
            _ => return None,
        })
    }
}

/// The address [`Fault::PageFault`] reads.
pub const UNMAPPED_ADDRESS: u64 = 0xdead_0000;

static READ_ONLY: u64 = 0x5eed;

#[inline(never)]
#[allow(unconditional_recursion)] // the point: overflow the stack
fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    core::hint::black_box(&pad);
    recurse(depth + 1) + core::hint::black_box(pad[0])
}

/// Provokes `fault`. Only returns if the fault was somehow survived.
pub fn provoke(fault: Fault) {
    log::warn!("provoking {fault:?} on purpose");
    match fault {
        Fault::PageFault => {
            // SAFETY: a deliberate fault: nothing is mapped at this address,
            // so the read faults and the exception handler reports it and
            // stops the machine; were a page mapped, it reads a harmless value.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED_ADDRESS as *const u64) };
            core::hint::black_box(value);
        }
        Fault::WriteRodata => {
            // SAFETY: as above; rodata is mapped read-only, so the write faults.
            unsafe { core::ptr::write_volatile(core::ptr::addr_of!(READ_ONLY).cast_mut(), 1) };
        }
        // SAFETY: ud2 raises #UD, which is reported; it never returns here.
        Fault::InvalidOpcode => unsafe { core::arch::asm!("ud2") },
        Fault::StackOverflow => {
            core::hint::black_box(recurse(0));
        }
        Fault::OutOfMemory => {
            let mut hoard = alloc::vec::Vec::new();
            loop {
                hoard.push(alloc::vec![0u8; 8 << 20]);
            }
        }
        Fault::Panic => panic!("deliberate panic (tessera.fault=panic)"),
    }
}
