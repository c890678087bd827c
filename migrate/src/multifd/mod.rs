//! multifd on the destination (SPEC.md §14): a migration's pages arrive on N channels
//! besides the main stream, each loaded by its own [`ChannelLoader`] on its own thread
//! straight into the guest RAM the main stream's [`Loader`](crate::Loader) writes into,
//! with the sync points of SPEC.md §14.5 honoured.
//!
//! ```text
//!  main stream ─► Loader ──────────────────────────► ZERO records, device state
//!                   │ MultifdSync(k)  ▲ release_sync()          │
//!                   ▼                 │                         ▼
//!              MultifdSession: block table, written pages, admitted channels, sync counts
//!                   ▲                 │                         ▲
//!                   │ Sync(k)         ▼ may_continue(k)         │
//!  channel i ─► ChannelLoader ─────────────────────────► pages (GuestRam::write_page)
//! ```
//!
//! - With [`LoaderOptions::multifd`](crate::LoaderOptions::multifd) on, the main loader
//!   yields [`LoaderEvent::MultifdSync`](crate::LoaderEvent::MultifdSync)\(k) at each sync
//!   point ([`SyncPoints`]: every MULTIFD_FLUSH; every `ram` EOS when the START section has
//!   none, as QEMU 7.2 writes) and takes no more input until
//!   [`Loader::release_sync`](crate::Loader::release_sync), which refuses unless every
//!   channel passed its k-th SYNC. A [`ChannelLoader`] yields
//!   [`ChannelLoadEvent::Sync`]\(k) at its k-th SYNC packet and takes no more input until
//!   the main stream released k. The waiting is the caller's (threads, a condition
//!   variable); the engines check that it was done. So no channel page of epoch k+1 lands
//!   before a ZERO record of epoch k on the main stream, and the device state (after the
//!   last sync point) is loaded only once every channel's pages before it are in memory.
//! - The written-page bits are shared: a ZERO record on the main stream (QEMU 7.2–8.2 and
//!   `zero-page-detection=legacy` send zero pages there) zeroes a page a channel wrote in
//!   an earlier epoch, and skips one that nobody wrote, exactly as without multifd.
//! - Admission: every channel's initial packet is checked against the migration (the main
//!   stream's `configuration/uuid` or the first channel's; ids below N, each once).
//! - The end: the main loader's EOF fixes the last sync point; a channel that ends before a
//!   sync point the main stream reached, or that has pages after the last, is refused. A
//!   receiver acts on [`LoaderEvent::Eof`](crate::LoaderEvent::Eof) only once every
//!   channel returned [`ChannelLoadEvent::Done`].
//!
//! With the `io` feature, `ChannelLoader::receive_from` is a channel thread's whole loop
//! over a `std::io::Read`, and `Loader::sync_with_channels` the main thread's wait at a
//! sync point.
//!
//! A whole recorded migration, main stream and two channels written like QEMU 10.0 (pages on
//! the channels, one MULTIFD_FLUSH per sync point), loaded on one thread by alternating
//! between the loaders at the sync points:
//!
//! ```
//! use std::sync::Mutex;
//! use ramstream_codec::multifd::{ChannelEncoder, InitPacket, RamPacket, WriterVersion};
//! use ramstream_codec::{BareRecord, Encoder, Event, MemSize, PageAddr, RamBlock, SectionHeader};
//! use ramstream_migrate::multifd::ChannelLoadEvent;
//! use ramstream_migrate::{GuestRam, Loader, LoaderEvent, LoaderOptions, Multifd, RamBlockLayout};
//! use ramstream_spec::stream::SectionType;
//!
//! struct VecRam(Vec<RamBlockLayout>, Mutex<Vec<u8>>);
//! impl GuestRam for VecRam {
//!     type Error = std::io::Error;
//!     fn layout(&self) -> &[RamBlockLayout] { &self.0 }
//!     fn read_page(&self, a: PageAddr, buf: &mut [u8]) -> std::io::Result<()> {
//!         let o = a.offset as usize;
//!         buf.copy_from_slice(&self.1.lock().unwrap()[o..o + buf.len()]);
//!         Ok(())
//!     }
//!     fn write_page(&self, a: PageAddr, data: &[u8]) -> std::io::Result<()> {
//!         let o = a.offset as usize;
//!         self.1.lock().unwrap()[o..o + data.len()].copy_from_slice(data);
//!         Ok(())
//!     }
//! }
//!
//! // The main stream: header, configuration, ram START with MEM_SIZE and a flush, EOF.
//! let block = RamBlock { idstr: "pc.ram".into(), used_length: 1 << 16, page_size: None, mr_addr: None };
//! let mut enc = Encoder::new(12);
//! let mut main = Vec::new();
//! enc.header(&mut main);
//! enc.event(&Event::Configuration(ramstream_codec::Configuration {
//!     machine_type: "pc-i440fx-10.0", target_page_bits: None, capabilities: None, uuid: None,
//! }), &mut main).unwrap();
//! for e in [
//!     Event::SectionStart(SectionHeader::ram_start(2)),
//!     Event::MemSize(MemSize { word: (1 << 16) | 0x04, blocks: vec![block.clone()], mapped_ram: vec![] }),
//!     Event::MultifdFlush(BareRecord { word: 0x200 }),
//!     Event::Eos(BareRecord { word: 0x10 }),
//!     Event::Footer { section_id: 2 },
//!     Event::Eof,
//! ] {
//!     enc.event(&e, &mut main).unwrap();
//! }
//! // Two channels: channel 0 carries one page, then both sync.
//! let ch = ChannelEncoder::new(WriterVersion::Qemu9_2, 12).unwrap();
//! let page = [7u8; 4096];
//! let mut chans = vec![Vec::new(), Vec::new()];
//! for (id, bytes) in chans.iter_mut().enumerate() {
//!     ch.init(&InitPacket { uuid: [0; 16], id: id as u8 }, bytes);
//! }
//! ch.ram_packet(&RamPacket { packet_num: 0, block: "pc.ram", normal: &[(0x3000, &page[..])], zero: &[], sync: false }, &mut chans[0]).unwrap();
//! ch.sync_packet(1, &mut chans[0]);
//! ch.sync_packet(2, &mut chans[1]);
//!
//! let ram = VecRam(vec![RamBlockLayout::new("pc.ram", 1 << 16)], Mutex::new(vec![0; 1 << 16]));
//! let opts = LoaderOptions::default().with_multifd(Multifd::Channels(2));
//! let mut loader = Loader::new(&ram, opts);
//! loader.finish();
//! let session = loader.multifd().unwrap().clone();
//! let mut channels: Vec<_> = (0..2).map(|_| session.channel_loader()).collect();
//! let mut pos = vec![0; 2];
//! let mut main_pos = 0;
//! loop {
//!     let p = loader.handle(&main[main_pos..]).unwrap();
//!     main_pos += p.consumed;
//!     match p.event {
//!         Some(LoaderEvent::MultifdSync(k)) => {
//!             // Bring every channel to its k-th SYNC, then release the sync point.
//!             for i in 0..2 {
//!                 loop {
//!                     let p = channels[i].handle(&ram, &chans[i][pos[i]..]).unwrap();
//!                     pos[i] += p.consumed;
//!                     if p.event == Some(ChannelLoadEvent::Sync(k)) { break; }
//!                 }
//!             }
//!             loader.release_sync().unwrap();
//!         }
//!         Some(LoaderEvent::Eof) => break,
//!         _ => {}
//!     }
//! }
//! assert_eq!(ram.1.lock().unwrap()[0x3000..0x4000], page);
//! ```

mod channel;
mod error;
mod session;
mod sync_points;
#[cfg(feature = "io")]
mod wait;

pub use channel::{ChannelLoadEvent, ChannelLoadStats, ChannelLoader, ChannelProgress};
pub use error::MultifdError;
pub(crate) use session::Bound;
pub use session::MultifdSession;
pub use sync_points::{SyncMode, SyncPoints};
#[cfg(feature = "io")]
pub use wait::ChannelReceiveError;
