//! # ramstream-migrate
//!
//! The live-migration engine over QEMU's migration stream, as a sans-IO library for any VMM:
//! the caller owns sockets, files and clocks; the engine takes bytes and hands back events,
//! reading and writing guest memory only through a trait shaped like vm-memory's.
//!
//! - [`GuestRam`]: guest RAM by RAM block and byte offset ([`PageAddr`]), with `&self`
//!   `read_page`/`write_page` as vm-memory's `Bytes::read_slice`/`write_slice`; never a
//!   `&mut [u8]` into memory that vCPUs may touch. With the `vm-memory` feature,
//!   `GuestMemoryRam` implements it for any `vm_memory::GuestMemory` (`GuestMemoryMmap`...).
//! - [`Loader`]: the destination. Feed it any split of the stream with [`Loader::handle`];
//!   it checks MEM_SIZE against the guest's blocks, copies each PAGE payload straight from
//!   your buffer into guest memory, applies ZERO and XBZRLE records and balloon runs, and
//!   hands device state back as [`DeviceBlob`]s. It never does IO and reads no clock.
//! - [`Loader::verify_digest`]: the RAM digest check of SPEC.md §13, each block's
//!   sha256-sparse digest read through [`GuestRam::read_page`] (ballooned pages count as zero
//!   and are not read) against the `ramstream/ram-digest` section, as a [`DigestReport`];
//!   [`DigestPolicy::Verify`] makes the loader do it at EOF and refuse a mismatch.
//! - [`Error`]: one error type, with the stream offset, record kind and RAM block.
//!
//! - [`Source`]: the precopy source, QEMU 7.2's algorithm as a state machine. Call
//!   [`Source::poll_transmit`] with the current instant, the guest's [`GuestRam`] and a
//!   sink (a `Vec<u8>`, or a [`Vectored`](ramstream_codec::Vectored) that references the
//!   pages it read); it says what to do next ([`Transmit`]): send bytes, wait for the
//!   bandwidth limit, sync the dirty log ([`DirtyPageSource`] or
//!   [`Source::handle_dirty_bitmap`]), stop the guest and hand over its device state
//!   ([`DeviceStateSource`]). The balloon extension ([`BalloonSource`]), XBZRLE after the
//!   bulk pass, the RAM digest and the convergence decision are inside; no clock, no sleep.
//! - With the `io` feature, the `io` module: the blocking IO a VMM would otherwise write
//!   around the engines. `Loader::receive_from` loads from any `std::io::Read` through the
//!   codec's one read loop (`StreamReader` over a `StreamBuffer`), calling back for
//!   `RamNeeded`, `Device`, ...; `Source::send_to` runs the source into any
//!   `std::io::Write`, reading `Instant::now()` and sleeping there, never in the engine.
//!
//! ## Where a page goes
//!
//! ```text
//! socket/file ─read─► your buffer ─Loader::handle─► Decoder (borrows the buffer)
//!     PAGE   ─► GuestRam::write_page(addr, payload)        the one copy
//!     ZERO   ─► skipped if never written, else GuestRam::zero_page
//!     XBZRLE ─► read_page into one scratch page, xbzrle::decode, write_page
//!     FULL device section ─► LoaderEvent::Device(DeviceBlob { idstr, instance_id, .. })
//! ```
//!
//! ## Receiving a recorded QEMU stream
//!
//! A loader over an in-memory guest, fed a QEMU 7.2 stream shipped with the conformance
//! vectors; it asks for guest RAM when the stream's MEM_SIZE record says what it holds:
//!
//! ```
//! use std::sync::Mutex;
//! use ramstream_codec::PageAddr;
//! use ramstream_migrate::{GuestRam, Loader, LoaderEvent, LoaderOptions, RamBlockLayout};
//!
//! /// Guest RAM in plain vectors (a real VMM uses GuestMemoryMmap: see the example).
//! struct VecRam(Vec<RamBlockLayout>, Vec<Mutex<Vec<u8>>>);
//! impl GuestRam for VecRam {
//!     type Error = std::io::Error;
//!     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
//!     fn read_page(&self, a: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
//!         let o = a.offset as usize;
//!         buf.copy_from_slice(&self.1[a.block].lock().unwrap()[o..o + buf.len()]);
//!         Ok(())
//!     }
//!     fn write_page(&self, a: PageAddr, data: &[u8]) -> std::io::Result<()> {
//!         let o = a.offset as usize;
//!         self.1[a.block].lock().unwrap()[o..o + data.len()].copy_from_slice(data);
//!         Ok(())
//!     }
//! }
//!
//! # // QEMU 7.2's `idle-noos` golden vector (packaged with the crate).
//! # let compressed = include_bytes!("testdata/idle-noos.bin.zst");
//! let stream: Vec<u8> = zstd::decode_all(&compressed[..]).unwrap();
//! let mut loader = Loader::without_ram(LoaderOptions::default());
//! let (mut pos, mut devices) = (0, 0);
//! loop {
//!     let p = loader.handle(&stream[pos..]).unwrap();
//!     pos += p.consumed;
//!     match p.event {
//!         Some(LoaderEvent::RamNeeded(blocks)) => {
//!             let mem = blocks.iter().map(|b| Mutex::new(vec![0; b.used_length() as usize]));
//!             loader.provide_ram(VecRam(blocks.clone(), mem.collect())).unwrap();
//!         }
//!         Some(LoaderEvent::Device(_)) => devices += 1,
//!         Some(LoaderEvent::Eof) => break,
//!         _ => {}
//!     }
//! }
//! assert_eq!(loader.stream_blocks().unwrap()[0].idstr(), "pc.ram");
//! assert!(devices > 10 && loader.stats().pages > 0);
//! ```
//!
//! ## For VMM authors
//!
//! Implement [`GuestRam`] over your guest memory (or enable `vm-memory` and wrap your
//! `GuestMemoryMmap`), read from your transport into a buffer, and call [`Loader::handle`]
//! with the unconsumed bytes until [`LoaderEvent::Eof`]; restore each
//! [`LoaderEvent::Device`] blob with your device model. With a blocking transport (a
//! `std::io::Read`), the `io` feature's `Loader::receive_from` is that loop.
//! `examples/receive_qemu_stream.rs` receives a recorded QEMU stream into a
//! `GuestMemoryMmap` in under 60 lines.
//!
//! To send, make a [`Source`] for your blocks and loop on [`Source::poll_transmit`]:
//! write what it produced and report it ([`Source::handle_sent`]), sync your dirty log
//! when it asks (with the `vm-memory` feature, `GuestMemoryRam::dirty_log` reads vm-memory's
//! `AtomicBitmap`), stop your vCPUs when it says so and hand over their state.
//! `examples/send_guest_memory.rs` sends a `GuestMemoryMmap` through three precopy rounds
//! to a file in under 60 lines; with the `io` feature, `Source::send_to` is that loop
//! against a `std::io::Write`.
//!
//! `examples/live_migrate_pair.rs` puts both together: two `GuestMemoryMmap`s, a socket
//! pair, a guest thread writing while the [`Source`] runs its rounds, the guest stopped at
//! [`Transmit::StopGuest`], and a [`Loader`] with [`DigestPolicy::Require`] on the other
//! thread; the memories are compared at the end. The repository's README ("For VMM authors")
//! and ARCHITECTURE.md follow one page through both engines.
//!
//! ## Cargo features
//!
//! - `vm-memory` (off by default): `GuestRam` for any `vm_memory::GuestMemory`
//!   (`vm_memory::GuestMemoryRam`), with vm-memory's `AtomicBitmap` as the dirty log.
//! - `io` (off by default; enables the codec's `io`): the blocking helpers of the `io`
//!   module, `Loader::receive_from` / `receive_with` and `Source::send_to`. Without it
//!   the crate does no IO.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunk_hash;
mod device;
mod digest;
mod digest_chunks;
mod digest_report;
mod digest_work;
#[cfg(feature = "io")]
mod digest_worker;
mod error;
mod guest;
#[cfg(feature = "io")]
pub mod io;
mod loader;
mod loader_options_with;
pub mod multifd;
mod source;
#[cfg(feature = "vm-memory")]
pub mod vm_memory;

pub use device::{DeviceBlob, OwnedDeviceBlob};
pub use digest::{block_digest, block_digest_parallel, block_digest_with};
pub use digest_report::{BlockDigestCheck, DigestError, DigestReport};
pub use digest_work::{DigestDone, DigestWork};
#[cfg(feature = "io")]
pub use digest_worker::{DigestWorkSource, DigestWorker};
pub use error::{Error, ErrorKind, LayoutMismatch};
pub use guest::{GuestRam, RamBlockLayout};
pub use loader::{
    DigestPolicy, LoadStats, Loader, LoaderEvent, LoaderOptions, Multifd, Progress, ZeroPages,
};
/// The run type every layer uses: `count` pages from `start`.
pub use ramstream_codec::balloon::PageRun;
/// The page address every layer uses: RAM block index and byte offset in the block.
pub use ramstream_codec::PageAddr;
pub use source::{
    BalloonSource, DeviceStateSource, DirtyPageSource, Phase, RoundStats, SendStats, Source,
    SourceOptions, SourceProgress, Transmit,
};
pub use source::{ChannelSender, ChannelStats, MultifdSendOptions, PacketJob, PacketSent};
