//! A minimal line-oriented console monitor, until the busybox shell exists:
//! `help`, `uptime`, `mem`, `poweroff`.

use alloc::string::String;
use core::time::Duration;
use framekernel::boot::BootContext;
use framekernel::{ExitCode, arch, console, mm, print, println, time};

/// Longest input line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 256;

/// Reads lines from the console and answers them. Never returns; `poweroff`
/// leaves QEMU.
pub fn run(_boot: &BootContext) -> ! {
    let mut line = String::new();
    print!("tessera> ");
    loop {
        let Some(byte) = console::read_byte() else {
            arch::wait_for_interrupt();
            tessera_sched::yield_now(); // let background programs run
            continue;
        };
        match byte {
            b'\r' | b'\n' => {
                println!();
                execute(line.trim());
                line.clear();
                print!("tessera> ");
            }
            0x7f | 0x08 if line.pop().is_some() => print!("\x08 \x08"),
            0x20..=0x7e if line.len() < MAX_LINE => {
                line.push(char::from(byte));
                print!("{}", char::from(byte));
            }
            _ => {}
        }
    }
}

fn execute(command: &str) {
    let mut words = command.split_ascii_whitespace();
    if words.next() == Some("run") {
        let args: alloc::vec::Vec<&str> = words.collect();
        match args.split_first() {
            Some((path, rest)) => match crate::programs::run(path, rest) {
                Ok(outcome) => println!("{path}: {}", crate::programs::describe(outcome)),
                Err(why) => println!("{why}"),
            },
            None => println!("usage: run PATH [ARGS...]"),
        }
        return;
    }
    match command {
        "" => {}
        "help" => println!("commands: help, uptime, mem, run PATH [ARGS...], poweroff"),
        "uptime" => {
            let up = time::now();
            println!("up {}.{:03} s, {} timer ticks", up.as_secs(), up.subsec_millis(), time::ticks());
        }
        "mem" => {
            let frames = mm::frame_stats();
            let heap = mm::heap_stats();
            println!(
                "frames: {} free of {} ({} KiB free); heap: {} bytes in use of {} claimed",
                frames.free,
                frames.total,
                frames.free * 4,
                heap.in_use,
                heap.claimed
            );
        }
        "poweroff" => {
            println!("powering off");
            time::busy_wait(Duration::from_millis(1));
            framekernel::exit(ExitCode::Success);
        }
        other => println!("unknown command '{other}'; try help"),
    }
}
