//! The digest worker: one thread that hashes the engine's sha256-chunked digest (SPEC.md
//! §13.7) while the main thread sends, so that the sending thread does not hash every page
//! it sends a second time. The engine stays sans-IO: the main thread takes works out of it
//! ([`Source::take_digest_work`]) between polls, the worker runs them on guest memory shared
//! with it ([`SharedPages`]) and the main thread hands the results back
//! ([`Source::handle_digest_done`]).
//!
//! ```text
//!  main thread: take_digest_work ─► bounded queue ─► worker: DigestWork::run (read, sha256)
//!       └◄── handle_digest_done ◄── results ◄──────────┘
//! ```
//!
//! At most [`IN_FLIGHT`] works of about [`WORK_PAGES`] pages are out at once, so the worker
//! neither falls far behind what was sent nor runs ahead unboundedly. A result of a chunk
//! dirtied after its work was taken is dropped by the engine, which hashes whatever is still
//! stale itself at stop time: the digest is the memory's at stop whatever the worker did.

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::{Scope, ScopedJoinHandle};

use ramstream_migrate::{DigestDone, DigestWork, GuestRam, Source};
use ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES;

use crate::error::SendErrorKind;
use crate::multifd::SharedPages;

/// Works out at once (queued or being hashed).
pub const IN_FLIGHT: usize = 4;

/// Pages of one work at first, and again after a work that read many of its pages (whole
/// chunks).
pub const WORK_PAGES: u64 = 1024;

/// Pages of one work at most: after works that read few of their pages (chunks the memory
/// knows to be zero cost no read), the next are twice as large, up to this, so that the
/// worker is woken once per 64 MiB of untouched memory rather than once per 4 MiB.
pub const MAX_WORK_PAGES: u64 = 16 * 1024;

/// Pages this thread hashes per step while it catches the digest up with the worker.
const CATCH_UP_PAGES: u64 = 1024;

/// What the worker hands back for one work.
type Outcome = Result<DigestDone, ramstream_migrate::Error>;

/// The digest worker thread, as the main loop drives it.
pub(crate) struct DigestWorker<'scope> {
    works: SyncSender<DigestWork>,
    results: Receiver<Outcome>,
    in_flight: usize,
    /// Pages of the next work ([`WORK_PAGES`] to [`MAX_WORK_PAGES`]).
    work_pages: u64,
    thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> DigestWorker<'scope> {
    /// Starts the thread in `scope`, reading guest memory through `ram`.
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        ram: &'scope SharedPages,
    ) -> Self {
        let (works, queue) = mpsc::sync_channel::<DigestWork>(IN_FLIGHT);
        let (done, results) = mpsc::sync_channel(IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name("digest".into())
            .spawn_scoped(scope, move || {
                for work in queue {
                    let failed = done.send(work.run(ram)).is_err();
                    if failed {
                        break;
                    }
                }
            })
            .expect("spawning the digest worker thread");
        DigestWorker {
            works,
            results,
            in_flight: 0,
            work_pages: WORK_PAGES,
            thread,
        }
    }

    /// Hands every result that arrived back to `source`, then tops the queue up with works
    /// the source has due. Never waits.
    pub(crate) fn serve(&mut self, source: &mut Source) -> Result<(), SendErrorKind> {
        loop {
            match self.results.try_recv() {
                Ok(r) => self.handle(source, r)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(ended()),
            }
        }
        while self.in_flight < IN_FLIGHT {
            let Some(work) = source.take_digest_work(self.work_pages) else {
                break;
            };
            self.works.send(work).map_err(|_| ended())?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Whether every work the worker can take is out: it is busy, and the caller's thread
    /// may share the hashing ([`Source::hash_digest_ahead`]).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight == IN_FLIGHT
    }

    /// Catches the running digest up before the guest is stopped (the engine said
    /// [`Transmit::StopGuest`](ramstream_migrate::Transmit::StopGuest)): the worker and this
    /// thread hash every chunk still due, so that the downtime hashes only the chunks the
    /// final sync dirties. Ends: no dirty page is handed in meanwhile, so what is due only
    /// shrinks.
    pub(crate) fn catch_up<R: GuestRam + ?Sized>(
        &mut self,
        source: &mut Source,
        ram: &R,
    ) -> Result<(), SendErrorKind> {
        loop {
            self.serve(source)?;
            if source.hash_digest_ahead(ram, CATCH_UP_PAGES)? == 0 {
                if self.in_flight == 0 {
                    return Ok(());
                }
                self.drain(source)?;
            }
        }
    }

    /// Waits for every work out and hands its result back (the guest is stopped: what the
    /// worker is hashing is still of use, and the engine hashes the rest itself).
    pub(crate) fn drain(&mut self, source: &mut Source) -> Result<(), SendErrorKind> {
        while self.in_flight > 0 {
            let r = self.results.recv().map_err(|_| ended())?;
            self.handle(source, r)?;
        }
        Ok(())
    }

    fn handle(&mut self, source: &mut Source, r: Outcome) -> Result<(), SendErrorKind> {
        self.in_flight -= 1;
        let done = r?;
        self.work_pages = next_work_pages(self.work_pages, &done);
        source.handle_digest_done(done);
        Ok(())
    }

    /// Closes the queue and waits for the thread (results still out are dropped).
    pub(crate) fn finish(self) -> Result<(), SendErrorKind> {
        let DigestWorker {
            works,
            results,
            thread,
            ..
        } = self;
        drop(works);
        drop(results);
        thread
            .join()
            .map_err(|_| SendErrorKind::Config("the digest worker thread panicked".into()))
    }
}

/// The size of the next work after `done`: twice `pages` if it read under a quarter of the
/// pages it spanned (up to [`MAX_WORK_PAGES`]), else [`WORK_PAGES`].
fn next_work_pages(pages: u64, done: &DigestDone) -> u64 {
    let spanned = done.chunks().count() as u64 * DIGEST_CHUNK_PAGES;
    if done.pages_read() * 4 < spanned {
        (pages * 2).min(MAX_WORK_PAGES)
    } else {
        WORK_PAGES
    }
}

fn ended() -> SendErrorKind {
    SendErrorKind::Config("the digest worker thread ended early".into())
}
