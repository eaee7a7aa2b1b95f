//! The cell against facts made here, answered as the kernel answers
//! [`Reply::Need`].

use super::*;
use tessera_cell_api::procfs::Fd;

/// Two processes: 1 (root's, not traceable by the caller) and 5 (the
/// caller's, with threads 5 and 6 and descriptors 0, 1, 2).
fn kernel(fact: Fact, facts: &mut Facts) {
    match fact {
        Fact::System => {
            facts.system = Some(System {
                total_kb: 524_288,
                free_kb: 400_000,
                shmem_kb: 7000,
                uptime_ns: 12_340_000_000,
                realtime_ns: 1_700_000_000_000_000_000,
                user_ns: 1_000_000_000,
                idle_ns: 10_000_000_000,
                processes: 2,
                cpu_user_ns: vec![600_000_000, 400_000_000],
                cpu_idle_ns: vec![4_000_000_000, 6_000_000_000],
                running: 3,
                cpu_local_timer: vec![0, 812],
                cpu_kicks: vec![3, 41],
                cpu_nmis: vec![12_000, 2],
                cpu_tlb_shootdowns: vec![0, 7],
                // Line-major, two processors: line 4 on both, line 11 on
                // the second.
                irq_lines: [vec![0; 8], vec![20, 7], vec![0; 12], vec![0, 5], vec![0; 8]].concat(),
                irq_chip: "IO-APIC".into(),
                irq_level: 1 << 11,
            })
        }
        Fact::Tables => {
            facts.tables = Some(Tables {
                mounts: "proc\0/proc\0proc\0/dev/vdb\0/mnt/disk\0ext2\0".into(),
                mounts_read_only: vec![0, 1],
                disks: "vda\0vdb\0".into(),
                disk_rdevs: vec![254 << 8, 254 << 8 | 16],
                disk_sectors: vec![131_072, 524_288],
                nodev_types: "proc\0tmpfs\0".into(),
                device_types: "ext2\0".into(),
            })
        }
        Fact::Processes => facts.processes = Some(Processes { pids: vec![1, 5], threads: vec![[1, 1], [5, 5], [6, 5]] }),
        Fact::Process(pid) => {
            facts.process = Some(match pid {
                1 => Some(Process { pid: 1, comm: "init".into(), state: b'S', tids: vec![1], tids_running: vec![0], tid_comms: "init\0".into(), ..Process::default() }),
                5 => Some(Process {
                    pid: 5,
                    ppid: 1,
                    pgid: 5,
                    sid: 1,
                    state: b'R',
                    comm: "sh".into(),
                    nice: 0,
                    cpu_ns: [30_000_000, 50_000_000, 0, 0],
                    start_ns: 2_000_000_000,
                    has_memory: true,
                    memory: [8 << 20, 0, 100],
                    tty_nr: 4 << 8 | 64,
                    tpgid: 5,
                    ids: [1000, 1000, 1000, 1000, 100, 100, 100, 100],
                    groups: vec![100, 27],
                    caps: [0; 5],
                    cmdline: b"sh\0-c\0x\0".to_vec(),
                    timerslack_ns: 50_000,
                    coredump_filter: 0x33,
                    tids: vec![5, 6],
                    tids_running: vec![1, 0],
                    tids_cpu: vec![1, 3],
                    tid_comms: "sh\0worker\0".into(),
                    traceable: true,
                    fds: vec![0, 1, 2],
                    ..Process::default()
                }),
                _ => None,
            })
        }
        Fact::Text(TextFact::Maps(5)) => facts.text = Some(Some("00400000-00401000 r-xp 00000000 00:00 0 /bin/sh\n".into())),
        Fact::Text(TextFact::Cells) => facts.text = Some(Some("cells table\n".into())),
        Fact::Text(_) => facts.text = Some(None),
        Fact::Fd { pid: 5, fd: 1 } => facts.fd = Some(Some(Fd { pos: 7, flags: 0o2000002, ino: 42, extra: String::new() })),
        Fact::Fd { .. } => facts.fd = Some(None),
        Fact::Sys => {
            facts.sys = Some(Sys {
                names: "kernel/pid_max\0kernel/random/entropy_avail\0fs/pipe-max-size\0kernel/hostname\0".into(),
                values: ["32768", "256", "1048576", "tessera"].iter().map(|v| format!("{v}\0")).collect(),
                writable: vec![1, 0, 1, 2],
            })
        }
    }
}

fn run(request: Request) -> Result<Done, ProcErr> {
    let mut facts = Facts::default();
    for _ in 0..8 {
        match Proc.serve(request.clone(), facts.clone()) {
            Reply::Done(d) => return Ok(d),
            Reply::Failed(e) => return Err(e),
            Reply::Need(fact) => kernel(fact, &mut facts),
        }
    }
    panic!("no answer to {request:?} after 8 rounds");
}

fn walk(path: &str) -> Result<Node, ProcErr> {
    let mut at = node(ROOT_INO, DIR);
    for name in path.split('/').filter(|n| !n.is_empty()) {
        at = match run(Request::Lookup { dir: at.ino, name: name.into() })? {
            Done::Node(n) => n,
            other => panic!("lookup answered {other:?}"),
        };
    }
    Ok(at)
}

fn read_path(path: &str) -> Result<String, ProcErr> {
    let ino = walk(path)?.ino;
    match run(Request::Read { ino })? {
        Done::Text(t) => Ok(String::from_utf8(t).expect("text")),
        other => panic!("read answered {other:?}"),
    }
}

fn names(path: &str) -> Result<Vec<String>, ProcErr> {
    let ino = walk(path)?.ino;
    match run(Request::List { dir: ino })? {
        Done::Entries(e) => {
            assert_eq!(e.inos.len(), e.modes.len());
            let names: Vec<String> = split(&e.names).map(String::from).collect();
            assert_eq!(names.len(), e.inos.len());
            // Every listed entry is found by lookup, as the same node.
            for (name, ino) in names.iter().zip(&e.inos) {
                match walk(&format!("{path}/{name}")) {
                    Ok(n) => assert_eq!(n.ino, *ino, "{path}/{name}"),
                    Err(ProcErr::Access) => {}
                    Err(e) => panic!("{path}/{name}: {e:?}"),
                }
            }
            Ok(names)
        }
        other => panic!("list answered {other:?}"),
    }
}

fn write_path(path: &str, text: &str) -> Result<Setting, ProcErr> {
    let ino = walk(path)?.ino;
    match run(Request::Write { ino, text: text.into() })? {
        Done::Set(s) => Ok(s),
        other => panic!("write answered {other:?}"),
    }
}

#[test]
fn the_root_lists_files_processes_and_not_threads() {
    let root = names("/").unwrap();
    for name in ["meminfo", "mounts", "self", "sys", "sysvipc", "1", "5"] {
        assert!(root.contains(&name.to_string()), "{name} in {root:?}");
    }
    assert!(!root.contains(&"6".to_string()));
    // A thread is found by its id, as its own directory.
    assert_eq!(read_path("6/comm").unwrap(), "worker\n");
    assert_eq!(walk("7"), Err(ProcErr::NotFound));
    assert_eq!(walk("05"), Err(ProcErr::NotFound));
    assert_eq!(walk("nosuch"), Err(ProcErr::NotFound));
    assert_eq!(walk("meminfo/x"), Err(ProcErr::NotDir));
}

#[test]
fn system_files_render_the_facts() {
    let meminfo = read_path("meminfo").unwrap();
    assert!(meminfo.starts_with("MemTotal:         524288 kB\nMemFree:          400000 kB\n"), "{meminfo}");
    assert!(meminfo.contains("Shmem:              7000 kB\n"), "{meminfo}");
    assert_eq!(read_path("uptime").unwrap(), "12.34 10.00\n");
    assert_eq!(read_path("mounts").unwrap(), "rootfs / tmpfs rw 0 0\nproc /proc proc rw 0 0\n/dev/vdb /mnt/disk ext2 ro 0 0\n");
    assert_eq!(read_path("5/mounts").unwrap(), read_path("mounts").unwrap());
    assert_eq!(read_path("filesystems").unwrap(), "nodev\tproc\nnodev\ttmpfs\n\text2\n");
    assert_eq!(read_path("partitions").unwrap(), "major minor  #blocks  name\n\n 254        0      65536 vda\n 254       16     262144 vdb\n");
    let stat = read_path("stat").unwrap();
    // Two processors: the first line adds them up (2 x 12.34 s of which
    // 1 s user and 10 s idle), then one line each.
    assert!(stat.starts_with("cpu  100 0 1368 1000 0 0 0 0 0 0\ncpu0 60 0 774 400 0 0 0 0 0 0\ncpu1 40 0 594 600 0"), "{stat}");
    assert!(stat.contains("btime 1699999987\nprocesses 2\nprocs_running 3\n"), "{stat}");
    let cpuinfo = read_path("cpuinfo").unwrap();
    assert_eq!(cpuinfo.matches("processor\t: ").count(), 2, "{cpuinfo}");
    assert!(cpuinfo.contains("processor\t: 1\n") && cpuinfo.contains("siblings\t: 2\n"), "{cpuinfo}");
    assert_eq!(read_path("loadavg").unwrap(), "0.00 0.00 0.00 1/2 2\n");
    assert_eq!(read_path("cells").unwrap(), "cells table\n");
    // A column per processor; the lines that fired, then NMI, LOC, RES.
    let interrupts = read_path("interrupts").unwrap();
    let lines: Vec<&str> = interrupts.lines().collect();
    assert_eq!(lines.len(), 7, "{interrupts}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["CPU0", "CPU1"], "{interrupts}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["4:", "20", "7", "IO-APIC", "4-edge", "ttyS0"], "{interrupts}");
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["11:", "0", "5", "IO-APIC", "11-fasteoi"], "{interrupts}");
    assert_eq!(lines[3].split_whitespace().take(3).collect::<Vec<_>>(), ["NMI:", "12000", "2"], "{interrupts}");
    assert_eq!(lines[4].split_whitespace().take(4).collect::<Vec<_>>(), ["LOC:", "0", "812", "Local"], "{interrupts}");
    assert_eq!(lines[5].split_whitespace().take(3).collect::<Vec<_>>(), ["RES:", "3", "41"], "{interrupts}");
    assert_eq!(lines[6].split_whitespace().take(4).collect::<Vec<_>>(), ["TLB:", "0", "7", "TLB"], "{interrupts}");
}

#[test]
fn process_files_render_the_process() {
    let stat = read_path("5/stat").unwrap();
    let fields: Vec<&str> = stat.split(' ').collect();
    assert_eq!(&fields[..8], ["5", "(sh)", "R", "1", "5", "1", "1088", "5"]);
    assert_eq!(fields[13], "3"); // utime
    assert_eq!(fields[14], "2"); // stime
    assert_eq!(fields[19], "2"); // threads
    assert_eq!(fields[21], "200"); // start time
    assert_eq!(fields[38], "1"); // processor: the first thread's
    let status = read_path("5/status").unwrap();
    assert!(status.contains("State:\tR (running)\n"), "{status}");
    assert!(status.contains("Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t100 27\n"), "{status}");
    assert!(status.contains("VmSize:\t8192 kB\n") && status.contains("VmRSS:\t400 kB\n") && status.contains("Threads:\t2\n"), "{status}");
    assert_eq!(read_path("5/cmdline").unwrap(), "sh\0-c\0x\0");
    assert_eq!(read_path("5/comm").unwrap(), "sh\n");
    assert_eq!(read_path("5/coredump_filter").unwrap(), "00000033\n");
    assert_eq!(read_path("5/timerslack_ns").unwrap(), "50000\n");
    // The thread's own line: its id and state.
    let thread = read_path("5/task/6/stat").unwrap();
    assert!(thread.starts_with("6 (sh) S 1 "), "{thread}");
    assert_eq!(thread.split(' ').nth(38), Some("3")); // its own processor
    assert_eq!(names("5/task").unwrap(), ["5", "6"]);
    assert_eq!(read_path("5/maps").unwrap(), "00400000-00401000 r-xp 00000000 00:00 0 /bin/sh\n");
}

#[test]
fn descriptors_are_links_and_fdinfo_files() {
    assert_eq!(names("5/fd").unwrap(), ["0", "1", "2"]);
    let link = walk("5/fd/1").unwrap();
    assert_eq!((link.ino, link.mode), (link_ino(LINK_FD, 5, 1), LINK));
    assert_eq!(walk("5/fd/3"), Err(ProcErr::NotFound));
    assert_eq!(read_path("5/fdinfo/1").unwrap(), "pos:\t7\nflags:\t02000002\nmnt_id:\t1\nino:\t42\n");
    assert_eq!(walk("5/exe").unwrap().ino, link_ino(LINK_EXE, 5, 0));
    assert_eq!(walk("self").unwrap(), node(SELF_INO, LINK));
}

#[test]
fn what_only_a_tracer_sees_is_refused_to_others() {
    // Listed, as on Linux, but not opened.
    let listing = names("1").unwrap();
    for name in ["fd", "maps", "exe", "stat"] {
        assert!(listing.contains(&name.to_string()), "{name}");
    }
    for path in ["1/fd", "1/fdinfo", "1/maps", "1/smaps", "1/exe", "1/cwd"] {
        assert_eq!(walk(path), Err(ProcErr::Access), "{path}");
    }
    assert!(read_path("1/stat").unwrap().starts_with("1 (init) S "));
}

#[test]
fn sys_is_a_tree_of_the_values_given() {
    assert_eq!(names("sys").unwrap(), ["kernel", "fs"]);
    assert_eq!(names("sys/kernel").unwrap(), ["pid_max", "random", "hostname"]);
    assert_eq!(names("sys/kernel/random").unwrap(), ["entropy_avail"]);
    assert_eq!(read_path("sys/kernel/pid_max").unwrap(), "32768\n");
    assert_eq!(read_path("sys/kernel/hostname").unwrap(), "tessera\n");
    assert_eq!(walk("sys/kernel/random/entropy_avail").unwrap().mode, FILE);
    assert_eq!(walk("sys/kernel/pid_max").unwrap().mode, WRITABLE);
    assert_eq!(walk("sys/kernel/nosuch"), Err(ProcErr::NotFound));
    assert_eq!(walk("sys/kern"), Err(ProcErr::NotFound));
}

#[test]
fn writes_become_typed_settings() {
    assert_eq!(write_path("sys/kernel/pid_max", "  100\n"), Ok(Setting::Number { index: 0, value: 100 }));
    assert_eq!(write_path("sys/fs/pipe-max-size", "-1"), Ok(Setting::Number { index: 2, value: -1 }));
    assert_eq!(write_path("sys/kernel/pid_max", "abc"), Err(ProcErr::Invalid));
    assert_eq!(write_path("sys/kernel/hostname", "box\n"), Ok(Setting::Text { index: 3, text: "box".into() }));
    assert_eq!(write_path("sys/kernel/random/entropy_avail", "1"), Err(ProcErr::NotPermitted));
    assert_eq!(write_path("5/coredump_filter", "0x1ff3\n"), Ok(Setting::CoredumpFilter { pid: 5, value: 0x1f3 }));
    assert_eq!(write_path("5/coredump_filter", "zz"), Err(ProcErr::Invalid));
    assert_eq!(write_path("meminfo", "1"), Err(ProcErr::NotPermitted));
}

/// Any inode number and name, with any facts: an answer, never a panic,
/// and no endless asking.
#[test]
fn arbitrary_requests_are_answered() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let iterations: u32 = std::env::var("PROCFS_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let names = ["", ".", "..", "5", "6", "1", "0", "-1", "4294967296", "sys", "kernel", "fd", "task", "stat", "self", "\0", "a/b", "99999999999"];
    for _ in 0..iterations {
        let r = next();
        let ino = match r % 5 {
            0 => r >> 8,
            1 => (r >> 8) & 0xffff,
            2 => link_ino(r >> 62, (r >> 8) as u32 & 0xff, (r >> 20) as u32 & 3),
            3 => TAG_SYS_DIR << 60 | ((r >> 8) & 0xff_ffff),
            _ => pid_dir_ino(5) | ((r >> 8) & 0xff),
        };
        let name = names[(next() % names.len() as u64) as usize].to_string();
        let request = match next() % 4 {
            0 => Request::Lookup { dir: ino, name },
            1 => Request::List { dir: ino },
            2 => Request::Read { ino },
            _ => Request::Write { ino, text: name },
        };
        let _ = run(request);
    }
}
