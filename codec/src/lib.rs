//! Sans-IO codec for the QEMU migration RAM stream.

pub mod cache;
pub mod xbzrle;
pub mod zero;
