//! A minimal line-oriented console monitor, until the busybox shell exists:
//! `help`, `uptime`, `mem`, `poweroff`.

use core::time::Duration;
use framekernel::boot::BootContext;
use framekernel::{ExitCode, mm, print, println, time};

/// Reads lines from the console terminal (its line discipline echoes and
/// edits them) and answers them. Never returns; `poweroff` leaves QEMU.
pub fn run(_boot: &BootContext) -> ! {
    let tty = tessera_linux::files::console();
    loop {
        print!("tessera> ");
        let mut buf = [0u8; 256];
        let n = tty.read_blocking(&mut buf);
        let line = core::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or("");
        execute(line.trim());
    }
}

fn execute(command: &str) {
    let mut words = command.split_ascii_whitespace();
    if words.next() == Some("run") {
        let args: alloc::vec::Vec<&str> = words.collect();
        match args.split_first() {
            Some((path, rest)) => match crate::programs::run("/", path, rest) {
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
