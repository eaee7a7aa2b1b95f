//! The network card in QEMU (virtio-net on QEMU's isolated user
//! networking): the `virtio_net` driver cell attaches at boot as `eth0`
//! with the card's hardware address, and is swapped live, to a faulty
//! build and back, keeping the card.

use std::time::Duration;
use tessera_tests::{Exit, Machine, MachineOptions};

const T: Duration = Duration::from_secs(120);

#[test]
fn eth0_is_driven_by_the_virtio_net_cell_which_swaps_live() {
    let mut m = Machine::start("net", &MachineOptions::kernel(""));
    // QEMU gives the first card 52:54:00:12:34:56; the link is up.
    m.expect("eth0: virtio-net at ", T);
    m.expect("MAC 52:54:00:12:34:56, link up", T);
    m.expect("built-in shell (ash)", T);
    m.expect("# ", T);
    m.shell("grep -c ' virtio_net .* net .*active' /proc/cells", "1", T);
    for cell in ["virtio_net-faulty", "virtio_net"] {
        m.shell(&format!("cellctl swap virtio_net /lib/cells/{cell}.cell"), "in slot virtio_net: gate closed for", T);
    }
    m.shell("cellctl info virtio_net | grep -o 'swaps [0-9]*'", "swaps 2", T);
    // Each new instance attached to the card again: no fault, no restart.
    m.shell("cellctl info virtio_net | grep -o 'faults [0-9]*, restarts [0-9]*'", "faults 0, restarts 0", T);
    m.send("poweroff\r");
    assert_eq!(m.wait_exit(T), Exit::Success, "{}", m.output());
}
