//! Sans-IO codec for the QEMU migration RAM stream.
