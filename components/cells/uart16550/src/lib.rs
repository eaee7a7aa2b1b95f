//! The 16550 UART (COM1) behind the serial console: programs it (115200
//! baud, 8N1, FIFOs, receive interrupt), sends program output and drains
//! received bytes when the UART interrupts. The ports are lent by the
//! base (`framekernel::console::claim_uart`), which keeps writing its own
//! messages and panic reports directly.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use framekernel::io::IoPorts;
use tessera_cell_api::serial::{Export, SerialPort};

use framekernel::logic::uart16550::{
    DATA, FIFO_CONTROL, INTERRUPT_ENABLE, LINE_CONTROL, LINE_STATUS, LSR_DATA_READY, LSR_TX_EMPTY, MODEM_CONTROL, SCRATCH,
};
/// Polls of the line status before a byte is sent anyway.
const TX_WAIT: u32 = 100_000;

struct Uart {
    ports: Result<IoPorts, String>,
}

fn setup() -> Result<IoPorts, String> {
    let ports = framekernel::console::claim_uart().map_err(|e| format!("COM1: {e:?}"))?;
    let io = |e| format!("COM1 register: {e:?}");
    ports.write::<u8>(SCRATCH, 0xa5).map_err(io)?;
    if ports.read::<u8>(SCRATCH).map_err(io)? != 0xa5 {
        return Err("no UART answers at COM1".into());
    }
    ports.write::<u8>(INTERRUPT_ENABLE, 0).map_err(io)?;
    ports.write::<u8>(LINE_CONTROL, 0x80).map_err(io)?; // divisor latch
    ports.write::<u8>(DATA, 1).map_err(io)?; // 115200 baud
    ports.write::<u8>(INTERRUPT_ENABLE, 0).map_err(io)?;
    ports.write::<u8>(LINE_CONTROL, 0x03).map_err(io)?; // 8N1
    // FIFOs on, nothing cleared: bytes that arrived while the driver was
    // being replaced stay in the receive FIFO for `on_start` to drain, and
    // output still in the transmit FIFO goes out.
    ports.write::<u8>(FIFO_CONTROL, 0x01).map_err(io)?;
    ports.write::<u8>(MODEM_CONTROL, 0x0b).map_err(io)?; // DTR, RTS, OUT2
    ports.write::<u8>(INTERRUPT_ENABLE, 0x01).map_err(io)?; // received data
    Ok(ports)
}

impl SerialPort for Uart {
    fn describe(&self) -> Result<String, String> {
        match &self.ports {
            Ok(ports) => Ok(format!("16550 UART at {:#x}", ports.base())),
            Err(why) => Err(why.clone()),
        }
    }

    fn write(&self, bytes: &[u8]) -> usize {
        let Ok(ports) = &self.ports else { return 0 };
        let mut sent = 0;
        for &byte in bytes {
            for _ in 0..TX_WAIT {
                if ports.read::<u8>(LINE_STATUS).is_ok_and(|s| s & LSR_TX_EMPTY != 0) {
                    break;
                }
                core::hint::spin_loop();
            }
            if ports.write::<u8>(DATA, byte).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    }

    fn receive(&self, out: &mut [u8]) -> usize {
        let Ok(ports) = &self.ports else { return 0 };
        let mut got = 0;
        for slot in out.iter_mut() {
            if !ports.read::<u8>(LINE_STATUS).is_ok_and(|s| s & LSR_DATA_READY != 0) {
                break;
            }
            match ports.read::<u8>(DATA) {
                Ok(byte) => *slot = byte,
                Err(_) => break,
            }
            got += 1;
        }
        got
    }
}

impl Drop for Uart {
    fn drop(&mut self) {
        // The base takes the interrupt back; leave it enabled for it.
        if let Ok(ports) = &self.ports {
            let _ = ports.write::<u8>(INTERRUPT_ENABLE, 0x01);
        }
    }
}

fn make() -> Export {
    Box::new(Uart { ports: setup() })
}

tessera_cell_api::cell_entry!(serial, make);
