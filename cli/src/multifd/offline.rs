//! A recorded multifd migration (SPEC.md §14.9) rebuilt on one thread: the main stream's
//! events in order, and at each of its sync points every channel loaded up to its SYNC
//! packet for that point, by the same engines a threaded receive uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ramstream_codec::{Event, Limits};
use ramstream_migrate::multifd::{ChannelLoadEvent, ChannelLoader, MultifdSession, SyncPoints};
use ramstream_migrate::ZeroPages;

use super::binding::bind_from_main;
use super::image::SharedImage;
use super::receive::ChannelReport;
use super::recording::{channel_files, read_channel};

struct Channel {
    id: u8,
    path: PathBuf,
    bytes: crate::input::StreamBytes,
    pos: usize,
    loader: ChannelLoader,
    done: bool,
}

/// The channel files of a recording, loaded alongside its main stream.
pub struct OfflineChannels {
    session: MultifdSession,
    image: Arc<SharedImage>,
    sync: SyncPoints,
    channels: Vec<Channel>,
    limits: Limits,
}

impl OfflineChannels {
    /// The channel files beside `main` (`F.multifd-0`, …), or `None` when there are none.
    pub fn open(main: &Path, image: Arc<SharedImage>, limits: Limits) -> Result<Option<Self>> {
        let files = channel_files(main)?;
        if files.is_empty() {
            return Ok(None);
        }
        let session = MultifdSession::new(Some(files.len() as u8), ZeroPages::Always);
        let channels = files
            .into_iter()
            .map(|(id, path)| {
                Ok(Channel {
                    id,
                    bytes: read_channel(&path)?,
                    path,
                    pos: 0,
                    loader: session.channel_loader(),
                    done: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(OfflineChannels {
            session,
            image,
            sync: SyncPoints::new(),
            channels,
            limits,
        }))
    }

    /// Takes the main stream's next event (at `offset`, page bits `page_bits`) before it is
    /// applied; at a sync point, loads every channel up to its SYNC packet for it.
    pub fn observe(&mut self, event: &Event<'_>, offset: u64, page_bits: u32) -> Result<()> {
        bind_from_main(
            &self.session,
            &self.image,
            &self.limits,
            event,
            offset,
            page_bits,
        )?;
        if let Event::Eof = event {
            self.session
                .main_ended()
                .map_err(|e| anyhow!("at offset {offset:#x} (EOF section): {e}"))?;
        }
        let Some(k) = self.sync.observe(event) else {
            return Ok(());
        };
        self.session.main_reached(k);
        for i in 0..self.channels.len() {
            self.run(i, Some(k))?;
        }
        self.session
            .release(k)
            .map_err(|e| anyhow!("at offset {offset:#x} (sync point {k}): {e}"))
    }

    /// Loads channel `i` up to its SYNC packet `until` (or to its end).
    fn run(&mut self, i: usize, until: Option<u64>) -> Result<()> {
        let image = Arc::clone(&self.image);
        let c = &mut self.channels[i];
        if c.done {
            return Ok(());
        }
        c.loader.finish();
        loop {
            let p = c
                .loader
                .handle(&*image, &c.bytes[c.pos..])
                .with_context(|| c.path.display().to_string())?;
            c.pos += p.consumed;
            match p.event {
                Some(ChannelLoadEvent::Admitted(init)) if init.id != c.id => bail!(
                    "{}: its initial packet names channel {}, not {}",
                    c.path.display(),
                    init.id,
                    c.id
                ),
                Some(ChannelLoadEvent::Sync(k)) if Some(k) == until => return Ok(()),
                Some(ChannelLoadEvent::Done) => {
                    c.done = true;
                    return Ok(());
                }
                Some(ChannelLoadEvent::NeedBlocks) => bail!(
                    "{}: a packet before the main stream's MEM_SIZE record",
                    c.path.display()
                ),
                _ => {}
            }
        }
    }

    /// After the main stream: every channel to its end; their reports.
    pub fn finish(mut self) -> Result<Vec<ChannelReport>> {
        for i in 0..self.channels.len() {
            self.run(i, None)?;
        }
        Ok(self
            .channels
            .iter()
            .map(|c| ChannelReport::of(c.id, c.path.display().to_string(), c.loader.stats()))
            .collect())
    }
}
