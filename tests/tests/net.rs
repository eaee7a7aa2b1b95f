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
