//! multifd (SPEC.md §14): the main stream on the caller's thread, and one thread per
//! channel that reads its packets' pages straight from guest memory and writes them with
//! `write_vectored`. The engine ([`ramstream_migrate::Source`]) decides which pages go on
//! which channel; this is the IO around it.
//!
//! ```text
//!  main thread: Source::poll_transmit ─► main stream (framing, MULTIFD_FLUSH, devices)
//!       │ Transmit::Packets: poll_packet ─► bounded queue k ─► thread k: ChannelSender::encode
//!       │                                                       (read_page, zero test)
//!       │                                                       ─► write_vectored, channel k
//!       └◄── reports (bytes, pages) ◄── handle_packet_sent ◄────┘
//! ```
//!
//! The queues are bounded ([`QUEUE_DEPTH`] packets a channel), so the engine runs at most
//! that far ahead of the slowest channel; at every sync point the engine waits until every
//! channel reported its packets ([`Transmit::WaitChannels`](ramstream_migrate::Transmit)).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{SystemTime, UNIX_EPOCH};

use ramstream_codec::{Vectored, VectoredBuffers};
use ramstream_migrate::{ChannelSender, PacketJob, PacketSent, Source};

use crate::error::SendErrorKind;
use crate::pages::SharedPages;
use crate::transport::Transport;

/// Packets queued for one channel at most before the engine waits for it.
pub const QUEUE_DEPTH: usize = 4;

/// What a channel thread tells the main thread.
enum Report {
    /// A packet was written.
    Sent(PacketSent),
    /// The channel failed; its thread ended.
    Failed(u8, SendErrorKind),
}

/// The channel threads, as the main loop drives them.
pub(crate) struct Channels<'scope> {
    queues: Vec<SyncSender<PacketJob>>,
    reports: Receiver<Report>,
    threads: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope> Channels<'scope> {
    /// Starts one thread per channel in `scope`: sender `k` writes into `writers[k]`,
    /// adding every byte a writer accepted to `written`.
    pub(crate) fn start<'env, C: Write + Send + 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        senders: Vec<ChannelSender>,
        writers: Vec<C>,
        ram: &'scope SharedPages,
        written: &'scope AtomicU64,
    ) -> Self {
        let (report_tx, reports) = mpsc::channel();
        let (queues, threads) = senders
            .into_iter()
            .zip(writers)
            .map(|(sender, writer)| {
                let (tx, jobs) = mpsc::sync_channel(QUEUE_DEPTH);
                let report_tx = report_tx.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("multifd-{}", sender.id()))
                    .spawn_scoped(scope, move || {
                        let out = Transport::new(writer);
                        channel_thread(sender, out, jobs, report_tx, ram, written)
                    })
                    .expect("spawning a multifd channel thread");
                (tx, thread)
            })
            .unzip();
        Channels {
            queues,
            reports,
            threads,
        }
    }

    /// Hands every report that arrived to the source.
    pub(crate) fn take_reports(&mut self, source: &mut Source) -> Result<(), SendErrorKind> {
        loop {
            match self.reports.try_recv() {
                Ok(r) => handle(source, r)?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => return Err(ended()),
            }
        }
    }

    /// Answers [`Transmit::Packets`](ramstream_migrate::Transmit::Packets) (every job to
    /// its channel's queue, waiting while one is full) and
    /// [`Transmit::WaitChannels`](ramstream_migrate::Transmit::WaitChannels) (waits for
    /// one report).
    pub(crate) fn serve(&mut self, source: &mut Source) -> Result<(), SendErrorKind> {
        let mut dispatched = false;
        while let Some(job) = source.poll_packet() {
            dispatched = true;
            let queue = self.queues.get(usize::from(job.channel())).ok_or_else(|| {
                SendErrorKind::Config(format!("no writer for multifd channel {}", job.channel()))
            })?;
            if queue.send(job).is_err() {
                // The thread ended: it reported why.
                return Err(self.failure());
            }
        }
        if !dispatched {
            let r = self.reports.recv().map_err(|_| ended())?;
            handle(source, r)?;
        }
        Ok(())
    }

    /// The first failure a thread reported (waiting for it).
    fn failure(&mut self) -> SendErrorKind {
        while let Ok(r) = self.reports.recv() {
            if let Report::Failed(channel, e) = r {
                return channel_error(channel, e);
            }
        }
        ended()
    }

    /// Closes the queues and waits for the threads. After a successful run, every report
    /// goes to the source; after a failed one, a channel's own failure is returned (the
    /// likely cause).
    pub(crate) fn finish(self, source: &mut Source, ok: bool) -> Result<(), SendErrorKind> {
        let Channels {
            queues,
            reports,
            threads,
        } = self;
        drop(queues);
        let panicked = threads.into_iter().any(|t| t.join().is_err());
        let mut first = None;
        for r in reports.try_iter() {
            match r {
                Report::Sent(sent) if ok => source.handle_packet_sent(&sent)?,
                Report::Sent(_) => {}
                Report::Failed(channel, e) => {
                    first.get_or_insert(channel_error(channel, e));
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None if panicked => Err(SendErrorKind::Config(
                "a multifd channel thread panicked".into(),
            )),
            None => Ok(()),
        }
    }
}

fn handle(source: &mut Source, r: Report) -> Result<(), SendErrorKind> {
    match r {
        Report::Sent(sent) => Ok(source.handle_packet_sent(&sent)?),
        Report::Failed(channel, e) => Err(channel_error(channel, e)),
    }
}

fn ended() -> SendErrorKind {
    SendErrorKind::Config("the multifd channel threads ended early".into())
}

/// A channel's write error names the channel; its other errors already do.
fn channel_error(channel: u8, e: SendErrorKind) -> SendErrorKind {
    match e {
        SendErrorKind::Io(io) => SendErrorKind::Io(std::io::Error::new(
            io.kind(),
            format!("multifd channel {channel}: {io}"),
        )),
        other => other,
    }
}

/// One channel: encode each job, write it, report it; stop at the first error or when the
/// queue closes.
fn channel_thread<C: Write>(
    mut sender: ChannelSender,
    mut out: Transport<C>,
    jobs: Receiver<PacketJob>,
    reports: Sender<Report>,
    ram: &SharedPages,
    written: &AtomicU64,
) {
    let id = sender.id();
    let mut buffers = VectoredBuffers::default();
    for job in jobs {
        let mut v = Vectored::with_buffers(std::mem::take(&mut buffers));
        let before = out.written;
        let done = sender
            .encode(&job, ram, &mut v)
            .map_err(SendErrorKind::from)
            .and_then(|sent| {
                out.write_vectored_all(&v)?;
                Ok(sent)
            });
        buffers = v.recycle();
        written.fetch_add(out.written - before, Ordering::Relaxed);
        let report = match done {
            Ok(sent) => Report::Sent(sent),
            Err(e) => Report::Failed(id, e),
        };
        let failed = matches!(report, Report::Failed(..));
        if reports.send(report).is_err() || failed {
            return;
        }
    }
    if let Err(e) = out.inner.flush() {
        let _ = reports.send(Report::Failed(id, e.into()));
    }
}

/// A random (version 4) uuid for a migration's channels, so that a destination refuses a
/// channel of another migration (SPEC.md §14.6).
pub(crate) fn random_uuid() -> [u8; 16] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut u = [0u8; 16];
    for (i, half) in u.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}
