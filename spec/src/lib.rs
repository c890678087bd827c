//! Wire constants of the QEMU migration RAM stream.
