//! Talking to a running QEMU over a socket: receive its stream, or sit between two QEMUs.

pub mod addr;
pub mod proxy;
pub mod pump;
pub mod receive;
pub mod side_channels;
