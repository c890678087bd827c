//! QEMU's multifd channels (SPEC.md §14) in the commands: telling a source's connections
//! apart, rebuilding RAM from the main stream and the channels on several threads, the
//! multi-file recordings, and counting what each channel carries.
//!
//! The engines are `ramstream_migrate::multifd`'s: `SyncPoints` finds the main stream's sync
//! points, a `MultifdSession` holds what the main stream and the channels share, and a
//! `ChannelLoader` per channel writes its pages into the [`image::SharedImage`].

pub mod binding;
pub mod image;
pub mod incoming;
pub mod offline;
pub mod receive;
pub mod recording;
pub mod replay;
pub mod stop;
pub mod tap;
