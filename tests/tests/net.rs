//! The network card in QEMU (virtio-net on QEMU's isolated user
//! networking): the `virtio_net` driver cell attaches at boot as `eth0`
//! with the card's hardware address, moves frames both ways for a packet
//! socket (busybox arping to QEMU's gateway), is swapped live, and its
//! faulty build is contained and restarted under traffic.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(120);

#[test]
fn eth0_is_driven_by_the_virtio_net_cell_which_swaps_live_and_contains_its_faults() {
    let mut m = Machine::start("net", &MachineOptions::kernel(""));
    // QEMU gives the first card 52:54:00:12:34:56; the link is up.
    m.expect("eth0: virtio-net at ", T);
    m.expect("MAC 52:54:00:12:34:56, link up", T);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m.shell("grep -c ' virtio_net .* net .*active' /proc/cells", "1", T);
    // Frames both ways through the cell: busybox arping (a packet socket)
    // asks who has QEMU's gateway address and gets its answer.
    let arp = "arping -D -I eth0 -c 1 -w 5 10.0.2.2";
    m.shell(arp, "Unicast reply from 10.0.2.2 [52:55:0a:00:02:02]", T);
    m.shell("arping -D -I eth9 -c 1 10.0.2.2", "interface eth9 not found", T);
    // Raw frames are root's (CAP_NET_RAW), as on Linux.
    m.shell("su nobody -s /bin/sh -c 'arping -D -I eth0 -c 1 10.0.2.2'", "Operation not permitted", T);
    // Swapped live: the new instance attaches to the card and answers.
    m.shell("cellctl swap virtio_net /lib/cells/virtio_net.cell", "in slot virtio_net: gate closed for", T);
    m.shell(arp, "Unicast reply from 10.0.2.2", T);
    // The faulty build panics on its 200th received frame: that frame is
    // lost, the slot restarts the cell on the card, the rest arrive.
    m.shell("cellctl swap virtio_net /lib/cells/virtio_net-faulty.cell", "0.1.0+faulty in slot virtio_net", T);
    m.shell(
        "ok=0; i=0; while [ $i -lt 250 ]; do arping -q -D -I eth0 -c 1 -w 2 10.0.2.2; [ $? = 1 ] && ok=$((ok+1)); i=$((i+1)); done; [ $ok -ge 240 ] && echo re\"\"plies enough: $ok",
        "replies enough",
        Duration::from_secs(600),
    );
    let info = m.capture("cellctl info virtio_net", T);
    let faults = info.split("faults ").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(faults.is_some_and(|f| f >= 1), "the fault is counted: {info}");
    m.shell("cellctl swap virtio_net /lib/cells/virtio_net.cell", "in slot virtio_net: gate closed for", T);
    m.shell(arp, "Unicast reply from 10.0.2.2", T);
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}

/// A deterministic body of `len` bytes (xorshift), so that nothing about
/// it compresses or repeats.
/// Like [`telnet_until`], but `None` when the connection closes before
/// anything was seen (nobody listened yet).
fn telnet_until_or_closed(stream: &mut std::net::TcpStream, needle: &str) -> Option<String> {
    use std::io::Read;
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => return None,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Ok(_) => {}
        Err(e) => panic!("telnet: waiting for {needle:?}: {e}"),
    }
    Some(telnet_until_with(stream, needle, &first))
}

/// Reads from a telnet connection until `needle` shows, skipping the
/// option negotiation (IAC sequences); returns the text seen.
fn telnet_until(stream: &mut std::net::TcpStream, needle: &str) -> String {
    telnet_until_with(stream, needle, &[])
}

/// [`telnet_until`] with the bytes `already` read first.
fn telnet_until_with(stream: &mut std::net::TcpStream, needle: &str, already: &[u8]) -> String {
    use std::io::Read;
    let mut text = Vec::new();
    let mut raw = [0u8; 512];
    let mut iac = 0usize;
    let mut pending: Vec<u8> = already.to_vec();
    while !String::from_utf8_lossy(&text).contains(needle) {
        let n = if pending.is_empty() {
            stream.read(&mut raw).unwrap_or_else(|e| panic!("telnet: waiting for {needle:?}: {e}; seen {:?}", String::from_utf8_lossy(&text)))
        } else {
            let n = pending.len().min(raw.len());
            raw[..n].copy_from_slice(&pending[..n]);
            pending.drain(..n);
            n
        };
        assert!(n > 0, "telnet: closed while waiting for {needle:?}; seen {:?}", String::from_utf8_lossy(&text));
        for &b in &raw[..n] {
            match (iac, b) {
                (0, 255) => iac = 1,
                (0, _) => text.push(b),
                // IAC WILL/WONT/DO/DONT take one more byte.
                (1, 251..=254) => iac = 2,
                _ => iac = 0,
            }
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn body(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The md5 of `data`, from the host's md5sum.
fn md5(data: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("tessera-net-body-{}", std::process::id()));
    std::fs::write(&path, data).expect("write the body");
    let out = std::process::Command::new("md5sum").arg(&path).output().expect("run md5sum");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// A free TCP port on this machine's loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Serves `data` to every HTTP request on `listener` (HTTP/1.0, one
/// request per connection), and hands the first line of every other
/// connection to `received`.
fn serve(listener: std::net::TcpListener, data: std::sync::Arc<Vec<u8>>, received: std::sync::mpsc::Sender<String>) {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (data, received) = (data.clone(), received.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    if !b"GET ".starts_with(&got[..got.len().min(4)]) && got.contains(&b'\n') {
                        // Not HTTP: a line of bytes, passed on; closing
                        // the connection ends the sender's nc.
                        let _ = received.send(String::from_utf8_lossy(&got).into_owned());
                        return;
                    }
                }
                let header = format!("HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", data.len());
                let _ = stream.write_all(header.as_bytes());
                let _ = stream.write_all(&data);
            });
        }
    });
}

#[test]
fn tcp_and_udp_through_the_stack_cell_with_dhcp_forwarded_ports_swaps_and_faults() {
    use std::io::{Read, Write};
    let data = std::sync::Arc::new(body(10 << 20));
    let sum = md5(&data);
    let server = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the host server");
    let server_port = server.local_addr().expect("its port").port();
    let (tx, from_guest) = std::sync::mpsc::channel();
    serve(server, data.clone(), tx);
    let (httpd_port, nc_port, telnet_port) = (free_port(), free_port(), free_port());
    // Two processors: the card's interrupt line goes to the second.
    let options = MachineOptions { memory: "512M".into(), cpus: 2, wall_clock: Duration::from_secs(900), ..MachineOptions::kernel("") }
        .guest_port(server_port)
        .host_port(httpd_port, 8080)
        .host_port(nc_port, 9000)
        .host_port(telnet_port, 23);
    let mut m = Machine::start("net-tcp", &options);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    // rcS asked QEMU's DHCP server for eth0's address in the background.
    m.shell("i=0; until ifconfig eth0 | grep -q 'inet addr:10.0.2.15'; do sleep 1; i=$((i+1)); [ $i = 30 ] && break; done; echo lea\"\"se $i", "lease", T);
    m.shell("ifconfig eth0", "inet addr:10.0.2.15  Bcast:10.0.2.255  Mask:255.255.255.0", T);
    m.shell("ifconfig lo", "inet addr:127.0.0.1  Mask:255.0.0.0", T);
    // ping (a raw ICMP socket) of the loopback, the guest's own address
    // and QEMU's gateway; the routing table and counters in /proc/net.
    for host in ["127.0.0.1", "10.0.2.15", "10.0.2.2"] {
        m.shell(&format!("ping -c 2 -W 3 {host} | grep -c 'bytes from {host}'"), "2", T);
    }
    // SO_BINDTODEVICE (arping without -D binds its packet socket so).
    m.shell("arping -c 1 -w 5 -I eth0 10.0.2.3", "Unicast reply from 10.0.2.3 [52:55:0a:00:02:03]", T);
    m.shell("route -n | grep '^10.0.2.0'", "10.0.2.0        0.0.0.0         255.255.255.0   U     0      0        0 eth0", T);
    m.shell("grep -c '^  eth0: ' /proc/net/dev", "1", T);
    // busybox ip over rtnetlink (AF_NETLINK): links, addresses, routes,
    // and changes (root only).
    m.shell("ip link show lo", "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536", T);
    m.shell("ip link show eth0", "link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff", T);
    m.shell("ip addr show eth0", "inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0", T);
    // QEMU's DHCP server offers no router under restrict=on (libslirp
    // leaves it out): the default route is added by hand.
    m.shell("ip route", "10.0.2.0/24 dev eth0 scope link  src 10.0.2.15", T);
    m.shell("ip route add default via 10.0.2.2 && ip route", "default via 10.0.2.2 dev eth0", T);
    m.shell("su user -c 'ip route del default'", "RTNETLINK answers: Operation not permitted", T);
    m.shell("ip route del default && echo routes=$(ip route | grep -c default)", "routes=0", T);
    m.shell("ip route add default via 10.0.2.2 && ip route add default via 10.0.2.2", "RTNETLINK answers: File exists", T);
    m.shell("route -n | grep '^0.0.0.0'", "0.0.0.0         10.0.2.2        0.0.0.0         UG", T);
    m.shell("ip link set eth0 down && ip link show eth0 | grep -c UP; ip link set eth0 up && ip link show eth0", "<BROADCAST,MULTICAST,UP,LOWER_UP>", T);
    m.shell("ping -c 1 -W 2 10.0.2.99 >/dev/null || echo no an\"\"swer", "no answer", T);
    // TCP over the loopback interface, both ways.
    m.shell(
        "(echo from-server | nc -l -p 7000 > /tmp/s.txt &); sleep 1; echo from-client | nc 127.0.0.1 7000 > /tmp/c.txt; sleep 1; cat /tmp/s.txt /tmp/c.txt | tr '\\n' +",
        "from-client+from-server+",
        T,
    );
    // A 10 MiB download from a server on the host's loopback (guestfwd).
    let url = format!("http://10.0.2.100:{server_port}/big");
    let get = format!("wget -q -O - {url} | md5sum");
    m.shell(&get, &format!("{sum}  -"), T);
    // busybox httpd in the guest, fetched from the host (hostfwd).
    m.shell("mkdir -p /www && echo page-from-tessera > /www/index.html && httpd -p 8080 -h /www && echo httpd started", "httpd started", T);
    let mut page = String::new();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", httpd_port)).expect("connect to the forwarded httpd");
    stream.set_read_timeout(Some(T)).expect("timeout");
    stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").expect("send the request");
    stream.read_to_string(&mut page).expect("read the page");
    assert!(page.starts_with("HTTP/1.") && page.contains("page-from-tessera"), "{page}");
    // busybox telnetd in the guest: a shell on a pseudo-terminal
    // (/dev/ptmx, /dev/pts/0), used from the host through the forwarded
    // port: a command, the terminal's name, ^C of a foreground job, exit.
    // busybox telnetd goes to the background before it listens (as on
    // Linux): until it does, QEMU's forwarder connects and is refused,
    // so the shell's prompt is awaited on a fresh connection each time.
    m.shell("telnetd -l /bin/sh && echo telnetd star\"\"ted", "telnetd started", T);
    let mut telnet = None;
    for _ in 0..50 {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", telnet_port)).expect("connect to the forwarded telnetd");
        stream.set_read_timeout(Some(T)).expect("timeout");
        if telnet_until_or_closed(&mut stream, "# ").is_some() {
            telnet = Some(stream);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut telnet = telnet.expect("telnetd never answered with a prompt");
    telnet.write_all(b"echo tele$((6*7))net; tty\r\n").expect("send");
    let seen = telnet_until(&mut telnet, "/dev/pts/0");
    assert!(seen.contains("tele42net"), "{seen}");
    // ^C once the job runs (ash puts it in front before exec, so once
    // `ps` shows it, the terminal's foreground group is the job's): the
    // job dies of SIGINT, the shell drops the rest of the line (as ash
    // does on Linux) and takes the next command.
    telnet.write_all(b"sleep 60; echo not-reached\r\n").expect("send");
    m.shell("i=0; until ps | grep -q '[s]leep 60'; do sleep 1; i=$((i+1)); [ $i = 30 ] && break; done; echo wait\"\"ed $i", "waited", T);
    telnet.write_all(b"\x03").expect("send ^C");
    telnet_until(&mut telnet, "^C");
    telnet.write_all(b"echo after-$((1+1)); ps | grep -c '[s]leep 60'\r\n").expect("send");
    let seen = telnet_until(&mut telnet, "after-2");
    assert!(!seen.contains("not-reached"), "{seen}");
    telnet.write_all(b"exit\r\n").expect("send");
    let mut rest = Vec::new();
    telnet.read_to_end(&mut rest).expect("telnetd closes the connection when the shell exits");
    m.shell("echo pts=$(ls /dev/pts | wc -l)", "pts=0", T);
    // nc both ways: the host sends to a listening guest, the guest to a
    // host listener.
    m.shell("(nc -l -p 9000 > /tmp/from-host.txt &) ; sleep 1; echo nc listening", "nc listening", T);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", nc_port)).expect("connect to the forwarded nc");
    stream.write_all(b"bytes-from-the-host\n").expect("send");
    drop(stream);
    m.shell("sleep 1; cat /tmp/from-host.txt", "bytes-from-the-host", T);
    m.shell(&format!("echo bytes-from-the-guest | nc 10.0.2.100 {server_port}; echo nc done"), "nc done", T);
    let got = from_guest.recv_timeout(T).expect("the guest's bytes reach the host");
    assert!(got.contains("bytes-from-the-guest"), "{got}");
    // UDP over loopback.
    m.shell("(nc -u -l -p 7001 > /tmp/u.txt &); sleep 1; echo datagram | nc -u -w 1 127.0.0.1 7001; sleep 1; cat /tmp/u.txt", "datagram", T);
    // The NIC driver swapped during a download: frames lost in the gap
    // are sent again by TCP; the file arrives whole.
    m.shell(
        &format!("(wget -q -O /tmp/big {url}; echo wget-rc=$? > /tmp/rc) & sleep 1; cellctl swap virtio_net /lib/cells/virtio_net.cell >/dev/null; wait; cat /tmp/rc; md5sum /tmp/big"),
        &format!("{sum}  /tmp/big"),
        Duration::from_secs(300),
    );
    assert!(m.output().contains("wget-rc=0"), "{}", m.output());
    // Five swaps during one download (the card's interrupt line goes to
    // the last processor, and is taken over by each new driver).
    m.shell(
        &format!("(wget -q -O /tmp/big2 {url}; echo wget2-rc=$? > /tmp/rc2) & for i in 1 2 3 4 5; do sleep 1; cellctl swap virtio_net /lib/cells/virtio_net.cell >/dev/null; done; wait; cat /tmp/rc2; md5sum /tmp/big2"),
        &format!("{sum}  /tmp/big2"),
        Duration::from_secs(300),
    );
    assert!(m.output().contains("wget2-rc=0"), "{}", m.output());
    m.shell("rm /tmp/big /tmp/big2; echo removed", "removed", T);
    // The stack swapped: connections of the old instance are gone, the
    // configuration is not; new connections work at once.
    m.shell("cellctl swap netstack /lib/cells/netstack.cell", "in slot netstack: gate closed for", T);
    m.shell("ifconfig eth0 | grep -c 'inet addr:10.0.2.15'", "1", T);
    m.shell(&get, &format!("{sum}  -"), T);
    // The faulty stack panics on every 500th frame: each fault is
    // contained, the stack restarts with the configuration (the download
    // in flight is reset), and the kernel and shell carry on.
    m.shell("cellctl swap netstack /lib/cells/netstack-faulty.cell", "0.1.0+faulty in slot netstack", T);
    m.shell(&format!("wget -q -O /dev/null {url} || echo download cut"), "download cut", T);
    let info = m.capture("cellctl info netstack", T);
    let faults = info.split("faults ").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(faults.is_some_and(|f| f >= 1), "the fault is counted: {info}");
    m.shell("cellctl swap netstack /lib/cells/netstack.cell", "in slot netstack: gate closed for", T);
    m.shell(&get, &format!("{sum}  -"), T);
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
