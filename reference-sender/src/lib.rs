//! # ramstream reference sender
//!
//! Live-migrates a guest the way QEMU 7.2's precopy does, on QEMU's wire: header,
//! configuration (machine type `ramstream-ref-v1`, capability `x-ramstream-balloon-v1`),
//! `ram` START with MEM_SIZE and one full-map balloon record per block (SPEC.md §9.4), PART
//! sections for the bulk stage and each dirty iteration (each opening with full-map records of
//! blocks whose balloon changed), END with the last pages while the guest is paused, then FULL
//! device sections (vCPU, VM, memory layout), the digest section (SPEC.md §13) and EOF. The
//! stop-and-copy runs without the bandwidth limit, as QEMU's `migration_completion` does.
//!
//! ```text
//!  setup ──> bulk stage ──> dirty iteration ──┐  (expected downtime > limit and
//!   START     PART…          PART… <──────────┘   iterations < max)
//!                │                 │
//!                └───── converged ─┴──> stop-and-copy: pause, last sync, END,
//!                                       vcpu/vm/layout/digest FULL sections, EOF
//! ```
//!
//! The algorithm and the stream are [`ramstream_migrate::Source`]'s, the sans-IO precopy
//! engine; this crate is the shell around it ([`migrate`]): it reads the clock and the
//! guest's KVM dirty log and balloon, feeds them to the engine, writes what the engine
//! produced to the transport with `write_vectored` (page payloads referenced from the
//! engine's page buffers, not copied), sleeps when the bandwidth limit says so, and pauses
//! the guest when the engine asks.
//!
//! The guest is a [`GuestSource`]: the real KVM guest of the reference VMM
//! ([`KvmSource`]), or for tests `ramstream-test-support`'s scripted fake guest. Ballooned
//! pages are skipped by runs, never read.
//!
//! The device sections' bodies are written with [`ramstream_codec::extension`], the codec's
//! one implementation of those wire formats; the digests (SPEC.md §13) are hashed by
//! [`GuestSource::block_digests`] (in parallel for the KVM guest) and sent by the engine.
//!
//! With [`SendOptions::multifd_channels`], [`migrate_multifd`] sends as QEMU 9.2 to 11.1 do
//! with capability `multifd` (SPEC.md §14): the main stream carries the framing, the
//! MULTIFD_FLUSH records and the device state, and each of N channels (a connection of its
//! own) is written by a thread of its own that reads its packets' pages through the guest's
//! [`PageReader`] and writes them with `write_vectored` ([`multifd`]).
//!
//! If anything fails, the source guest runs again (if it was running) and the
//! [`SendError`] names the phase and the bytes sent.

#![forbid(unsafe_code)]

mod digest_worker;
pub mod error;
pub mod multifd;
mod pages;
pub mod precopy;
pub mod source;
pub mod stats;
mod transport;

pub use error::{GuestError, Phase, SendError, SendErrorKind};
pub use precopy::{migrate, migrate_multifd, Progress, SendOptions};
pub use ramstream_codec::cache::XbzrleCacheStats;
pub use source::{GuestSource, KvmSource, PageReader, StateBlobs};
pub use stats::{ChannelReport, IterationReport, MigrationReport, MultifdReport, RamStats};
