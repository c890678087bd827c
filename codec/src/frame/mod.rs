//! Framing of the top-level stream: where each section and record begins and ends.
//!
//! One file per item of the stream; each exposes a `parse` taking a cursor and returning the
//! event, without touching decoder state (the decoder applies events afterwards).
//! `ram_record` reads a `ram` record's word and hands the payload to its record family
//! ([`crate::ram`], [`crate::balloon`]), which returns its own type.

pub(crate) mod command;
pub(crate) mod configuration;
pub(crate) mod device;
pub(crate) mod header;
pub(crate) mod ram_record;
pub(crate) mod section;
