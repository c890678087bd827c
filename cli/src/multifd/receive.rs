//! `receive --extract` of a multifd migration: the main stream on the calling thread, one
//! thread per channel loading its pages straight into the shared image with the engine's
//! `ChannelLoader`, and the main stream waiting at each sync point until every channel
//! reached it (SPEC.md §14.5). Each channel's thread tells the `--timeline` clock what its
//! channel carried as it loads it ([`ChannelMeter`]).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ramstream_codec::{Event, Limits};
use ramstream_migrate::multifd::{
    ChannelLoadStats, ChannelLoader, ChannelReceiveError, MultifdError, MultifdSession, SyncPoints,
};
use ramstream_migrate::ZeroPages;
use serde::Serialize;

use super::binding::bind_from_main;
use super::image::SharedImage;
use super::incoming::{gather_channels, Conn};
use super::recording::Tee;
use super::stop::{Stop, StoppedByAnother};
use crate::addr::Listener;
use crate::timeline::ChannelMeter;

/// How long the main stream waits at a sync point for the channels' SYNC packets (QEMU
/// writes a sync point only after every channel sent its own, so they are in flight).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `--multifd-channels N` waits for its N channels at the first sync point.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one channel of a finished receive did.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelReport {
    pub id: u8,
    /// The peer it came from, or the file it was read from.
    pub from: String,
    pub bytes: u64,
    pub packets: u64,
    pub pages: u64,
    pub zero_pages: u64,
    pub syncs: u64,
}

impl ChannelReport {
    pub fn of(id: u8, from: String, s: &ChannelLoadStats) -> Self {
        ChannelReport {
            id,
            from,
            bytes: s.bytes,
            packets: s.packets,
            pages: s.pages,
            zero_pages: s.zero_pages,
            syncs: s.syncs,
        }
    }
}

/// A channel thread's result: its report and, when recording, its file (named by
/// connection until its id is known).
type ChannelDone = Result<(ChannelReport, Option<PathBuf>), ()>;

/// The multifd side of a receive: counts the main stream's sync points, gathers the
/// channels at the first one, runs them, and holds the main stream at each sync point.
pub struct MultifdReceive {
    listener: Option<Listener>,
    early: Vec<Conn>,
    expected: Option<u8>,
    session: MultifdSession,
    image: Arc<SharedImage>,
    sync: SyncPoints,
    /// The channels counted at the first sync point.
    channels: Option<usize>,
    threads: Vec<JoinHandle<ChannelDone>>,
    stop: Arc<Stop>,
    /// The recording's main file, when saving the stream: channel `i` is recorded into
    /// `<F>.partial-conn<i>` and renamed `F.multifd-<id>` at the end.
    record: Option<PathBuf>,
    limits: Limits,
    /// Where the channels' threads report what they carried (`--timeline`).
    meter: Option<ChannelMeter>,
}

impl MultifdReceive {
    /// For the main stream accepted on `listener` (with the channels that connected before
    /// it), writing pages into `image`; `expected` is `--multifd-channels`.
    pub fn new(
        listener: Listener,
        early: Vec<Conn>,
        expected: Option<u8>,
        image: Arc<SharedImage>,
        stop: Arc<Stop>,
        record: Option<PathBuf>,
        limits: Limits,
    ) -> Self {
        let session = MultifdSession::new(expected, ZeroPages::Always);
        stop.set_session(session.clone());
        MultifdReceive {
            listener: Some(listener),
            early,
            expected,
            session,
            image,
            sync: SyncPoints::new(),
            channels: None,
            threads: Vec::new(),
            stop,
            record,
            limits,
            meter: None,
        }
    }

    /// Has every channel's thread report what its channel carried to `meter`'s clock (a
    /// meter of its own each, [`ChannelMeter::another_channel`]).
    pub fn with_meter(mut self, meter: ChannelMeter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Takes a main-stream event at `offset` (its page bits `page_bits`), before it is
    /// applied: binds the channels' block table at MEM_SIZE, and at a sync point gathers
    /// the channels (the first time) and waits until every one reached it.
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
            if self.channels.unwrap_or(0) > 0 {
                self.session
                    .main_ended()
                    .map_err(|e| anyhow!("at offset {offset:#x} (EOF section): {e}"))?;
            }
        }
        let Some(k) = self.sync.observe(event) else {
            return Ok(());
        };
        if self.channels.is_none() {
            self.start_channels(offset)?;
        }
        if self.channels == Some(0) {
            if let Event::MultifdFlush(_) = event {
                bail!(
                    "at offset {offset:#x}: MULTIFD_FLUSH record: the source uses capability multifd, but no multifd channel connected by the main stream's first sync point"
                );
            }
            return Ok(());
        }
        self.session.main_reached(k);
        let what = match event {
            Event::MultifdFlush(_) => "MULTIFD_FLUSH",
            _ => "ram EOS",
        };
        match self
            .session
            .wait_channels(k, SYNC_TIMEOUT)
            .and_then(|()| self.session.release(k))
        {
            Ok(()) => Ok(()),
            Err(MultifdError::Aborted) => Err(anyhow!(StoppedByAnother)),
            Err(e) => Err(anyhow!(
                "at offset {offset:#x} ({what}, sync point {k}): {e}"
            )),
        }
    }

    /// Whether channels were gathered at the first sync point (their pages go into the
    /// shared image).
    pub fn has_channels(&self) -> bool {
        self.channels.is_some_and(|n| n > 0)
    }

    /// At the first sync point: the channels that connected by now (or `--multifd-channels`
    /// of them), each on its own thread; then later connections are refused.
    fn start_channels(&mut self, offset: u64) -> Result<()> {
        let listener = self.listener.take().expect("gathered once");
        let early = std::mem::take(&mut self.early);
        let conns = gather_channels(&listener, early, self.expected, CONNECT_TIMEOUT)
            .with_context(|| {
                format!("at offset {offset:#x} (the main stream's first sync point)")
            })?;
        let n = conns.len();
        if self.expected.is_none() {
            self.session
                .set_channels(n as u8)
                .map_err(|e| anyhow!("{e}"))?;
        }
        if n > 0 {
            eprintln!("multifd: {n} channel(s) at the main stream's first sync point");
        }
        for (i, conn) in conns.into_iter().enumerate() {
            self.stop.watch(conn.handle()?);
            let record = self.record.as_ref().map(|f| partial_channel(f, i));
            let (session, image, stop) = (
                self.session.clone(),
                Arc::clone(&self.image),
                Arc::clone(&self.stop),
            );
            let meter = self.meter.as_ref().map(ChannelMeter::another_channel);
            self.threads.push(std::thread::spawn(move || {
                run_channel(conn, session, &image, record, meter, &stop)
            }));
        }
        self.channels = Some(n);
        crate::side_channels::watch(listener, n, Arc::clone(&self.stop));
        Ok(())
    }

    /// After the main stream: waits for every channel to end; their reports, by id, and
    /// their recordings.
    pub fn join(self) -> Result<Vec<(ChannelReport, Option<PathBuf>)>> {
        let mut out = Vec::new();
        let mut failed = false;
        for t in self.threads {
            match t.join() {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(())) => failed = true,
                Err(_) => {
                    self.stop
                        .fail(anyhow!("a multifd channel's thread panicked"));
                    failed = true;
                }
            }
        }
        if failed {
            for (_, recorded) in &out {
                if let Some(p) = recorded {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(self
                .stop
                .take_error()
                .unwrap_or_else(|| anyhow!("a multifd channel failed")));
        }
        out.sort_by_key(|(r, _)| r.id);
        Ok(out)
    }
}

/// `F.partial-conn<i>`: channel connection `i`'s recording until its id is known.
fn partial_channel(main: &Path, i: usize) -> PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push(format!(".partial-conn{i}"));
    PathBuf::from(name)
}

/// One channel's thread: loads it into `image`, reporting to `meter`; on failure records
/// the error in `stop` (the cause, unless the migration was already stopped) and removes
/// its recording.
fn run_channel(
    conn: Conn,
    session: MultifdSession,
    image: &SharedImage,
    record: Option<PathBuf>,
    mut meter: Option<ChannelMeter>,
    stop: &Stop,
) -> ChannelDone {
    let peer = conn.peer.clone();
    let mut loader = session.channel_loader();
    let reader = conn.into_reader();
    let r = match &record {
        Some(path) => match Tee::new(reader, path) {
            Ok(tee) => receive_metered(&mut loader, image, tee, meter.as_mut()),
            Err(e) => {
                stop.fail(e);
                return Err(());
            }
        },
        None => receive_metered(&mut loader, image, reader, meter.as_mut()),
    };
    match r {
        Ok(()) => {
            let id = loader.id().unwrap_or_default();
            Ok((ChannelReport::of(id, peer, loader.stats()), record))
        }
        Err(e) => {
            if let Some(p) = &record {
                let _ = std::fs::remove_file(p);
            }
            let e = match e {
                ChannelReceiveError::Aborted => None,
                ChannelReceiveError::Load(e) => Some(anyhow!(e)),
                ChannelReceiveError::Read(e) => Some(anyhow!(e).context(format!(
                    "multifd channel {} from {peer}",
                    loader.id().map_or("?".into(), |i| i.to_string())
                ))),
                other => Some(anyhow!("{other}")),
            };
            if let Some(e) = e {
                stop.fail(e);
            }
            Err(())
        }
    }
}

/// The engine's `ChannelLoader::receive_from`, telling `meter` the channel's bytes and
/// pages after each batch of packets the loader took, stamped with the instant it was handed
/// them: before it passes a SYNC packet, so before the main stream may go past that sync
/// point (the timeline's attribution, `timeline.rs`).
fn receive_metered(
    loader: &mut ChannelLoader,
    image: &SharedImage,
    input: impl Read,
    mut meter: Option<&mut ChannelMeter>,
) -> Result<(), ChannelReceiveError> {
    loader.receive_from_metered(
        image,
        input,
        Instant::now,
        |l, since| {
            if let Some(m) = meter.as_deref_mut() {
                let s = l.stats();
                m.reached(since, s.bytes, s.pages + s.zero_pages);
            }
        },
        |_, _| {},
    )
}
