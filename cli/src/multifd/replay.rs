//! A multifd recording (SPEC.md §14.9) replayed for the tools that look at single pages
//! (`pages`, `inspect --map`): every main-stream event and every channel page, in the order
//! `ramstream extract` applies them, each with its epoch (the number of sync points before
//! it, SPEC.md §14.5).
//!
//! The order is extract's ([`super::offline`]): the main stream's events as they come, and
//! at its k-th sync point every channel, by id, up to its k-th SYNC packet; after the main
//! stream, every channel to its end. So within one epoch the main stream's records come
//! first, then channel 0's pages, channel 1's, …. A destination does not order the main
//! stream and the channels within an epoch: two copies of a page there are both candidates.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ramstream_codec::multifd::{decode_channel, BlockTable, ChannelEvent, ChannelOptions};
use ramstream_codec::{DecoderOptions, Event, Events, PageAddr};
use ramstream_migrate::multifd::SyncPoints;

use super::recording::{channel_files, read_channel};

/// One channel file of a recording, read.
struct ChannelFile {
    id: u8,
    path: PathBuf,
    bytes: crate::input::StreamBytes,
}

/// A recording's channel files, read beside its main stream.
pub struct Recording {
    channels: Vec<ChannelFile>,
}

/// One step of a replay.
pub enum Step<'e, 'a> {
    /// A main-stream event at stream offset `at`, in epoch `epoch` (a sync point itself is
    /// in the epoch it opens); `page_size` is the stream's target page size so far.
    Main {
        /// Stream offset of the event.
        at: u64,
        /// Sync points before it (itself included when it is one).
        epoch: u64,
        /// The stream's target page size.
        page_size: usize,
        /// The event.
        event: &'e Event<'a>,
    },
    /// A page of a channel packet: `data` its contents, `None` for a zero page.
    Channel(ChannelPage<'a>),
}

/// A page a channel packet carries.
pub struct ChannelPage<'a> {
    /// The channel's id.
    pub id: u8,
    /// Channel-file offset of the page's bytes (of its packet for a zero page).
    pub at: u64,
    /// Channel-file offset of the packet that carries it.
    pub packet: u64,
    /// SYNC packets of this channel before it.
    pub epoch: u64,
    /// Where it lands.
    pub addr: PageAddr,
    /// Its contents; `None`: a zero page (9.0+, the destination zeroes it).
    pub data: Option<&'a [u8]>,
}

/// A channel's decoded events and how far the replay got.
struct Cursor<'a> {
    id: u8,
    events: Vec<(u64, ChannelEvent<'a>)>,
    next: usize,
    packet: u64,
    syncs: u64,
}

impl Recording {
    /// The channel files beside `main` (`F.multifd-0`, …), or `None` when there are none.
    /// A gap in the ids (`F.multifd-1` missing, `F.multifd-2` there) is refused by name
    /// ([`channel_files`]).
    pub fn open(main: &Path) -> Result<Option<Recording>> {
        let files = channel_files(main)?;
        if files.is_empty() {
            return Ok(None);
        }
        let channels = files
            .into_iter()
            .map(|(id, path)| {
                Ok(ChannelFile {
                    id,
                    bytes: read_channel(&path)?,
                    path,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Recording { channels }))
    }

    /// Replays main stream `bytes` (decoded with `opts`) and the channels, handing `visit`
    /// every step in extract's order. The channels are decoded against the first MEM_SIZE
    /// record's blocks; an error names the channel file and its offset.
    pub fn replay<'a>(
        &'a self,
        bytes: &'a [u8],
        opts: DecoderOptions,
        mut visit: impl FnMut(Step<'_, 'a>) -> Result<()>,
    ) -> Result<()> {
        let limits = opts.limits.clone();
        let mut events = Events::new(bytes, opts);
        let mut sync = SyncPoints::new();
        let mut epoch = 0u64;
        let mut uuid = None;
        let mut cursors: Option<Vec<Cursor<'a>>> = None;
        while let Some((at, event)) = events.next().transpose()? {
            let page_bits = events.decoder().page_bits();
            match &event {
                Event::Configuration(c) => uuid = c.uuid,
                Event::MemSize(ms) if cursors.is_none() => {
                    let table = BlockTable::new(&ms.blocks);
                    let opts = ChannelOptions::default()
                        .with_page_bits(page_bits)
                        .with_limits(limits.clone());
                    let mut all = Vec::new();
                    for c in &self.channels {
                        // Every channel is the main stream's migration's, or the first
                        // channel's when the main stream names none.
                        let (cursor, its) = decode(c, opts.clone(), &table, uuid)?;
                        uuid = uuid.or(its);
                        all.push(cursor);
                    }
                    cursors = Some(all);
                }
                _ => {}
            }
            if let Some(k) = sync.observe(&event) {
                let cursors = cursors.as_mut().ok_or_else(|| {
                    anyhow!("at offset {at:#x}: a sync point before the MEM_SIZE record")
                })?;
                for c in cursors.iter_mut() {
                    c.run(Some(k), &mut visit)?;
                }
                epoch = k;
            }
            visit(Step::Main {
                at,
                epoch,
                page_size: 1 << page_bits,
                event: &event,
            })?;
        }
        for c in cursors.iter_mut().flatten() {
            c.run(None, &mut visit)?;
        }
        // A channel file written to while it was read may have mixed old and new bytes.
        for c in &self.channels {
            c.bytes.check_unchanged()?;
        }
        Ok(())
    }
}

/// Decodes channel `c` whole, checking its initial packet's id and its uuid against
/// `uuid`; returns the channel and its uuid.
fn decode<'a>(
    c: &'a ChannelFile,
    opts: ChannelOptions,
    table: &BlockTable,
    uuid: Option<[u8; 16]>,
) -> Result<(Cursor<'a>, Option<[u8; 16]>)> {
    let events =
        decode_channel(&c.bytes[..], opts, table).with_context(|| c.path.display().to_string())?;
    let name = || format!("{}: multifd channel {}", c.path.display(), c.id);
    match events.first() {
        Some((_, ChannelEvent::Init(init))) if init.id != c.id => bail!(
            "{}: its initial packet names channel {}, not {}",
            name(),
            init.id,
            c.id
        ),
        Some((_, ChannelEvent::Init(init))) if uuid.is_some_and(|u| u != init.uuid) => bail!(
            "{}: its initial packet's uuid {} is another migration's (not {})",
            name(),
            hex::encode(init.uuid),
            hex::encode(uuid.unwrap_or_default())
        ),
        _ => {}
    }
    let its = match events.first() {
        Some((_, ChannelEvent::Init(init))) => Some(init.uuid),
        _ => None,
    };
    let cursor = Cursor {
        id: c.id,
        events,
        next: 0,
        packet: 0,
        syncs: 0,
    };
    Ok((cursor, its))
}

impl<'a> Cursor<'a> {
    /// Hands `visit` the channel's pages up to its SYNC packet `until` (or to its end).
    fn run(
        &mut self,
        until: Option<u64>,
        visit: &mut impl FnMut(Step<'_, 'a>) -> Result<()>,
    ) -> Result<()> {
        while let Some(&(at, event)) = self.events.get(self.next) {
            self.next += 1;
            let (addr, data) = match event {
                ChannelEvent::Packet(_) => {
                    self.packet = at;
                    continue;
                }
                ChannelEvent::Sync => {
                    self.syncs += 1;
                    if Some(self.syncs) == until {
                        return Ok(());
                    }
                    continue;
                }
                ChannelEvent::Page { addr, data } => (addr, Some(data)),
                ChannelEvent::Zero { addr } => (addr, None),
                _ => continue,
            };
            visit(Step::Channel(ChannelPage {
                id: self.id,
                at,
                packet: self.packet,
                epoch: self.syncs,
                addr,
                data,
            }))?;
        }
        Ok(())
    }
}
