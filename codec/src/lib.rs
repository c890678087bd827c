//! Sans-IO codec for the QEMU migration RAM stream.

pub mod vmdesc;
