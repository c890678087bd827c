//! Framing of the top-level stream: where each section and record begins and ends.
//!
//! One file per record family; each exposes a `parse` taking a cursor and returning the
//! event, without touching decoder state (the decoder applies events afterwards).

pub(crate) mod command;
pub(crate) mod configuration;
pub(crate) mod device;
pub(crate) mod header;
pub(crate) mod section;
