//! Golden vectors recorded from real QEMU.
