//! A thread that hashes the running sha256-chunked digest (SPEC.md §13.7) beside a source's
//! or a loader's own thread (feature `io`): the engines stay sans-IO, the driver takes works
//! out of its engine ([`DigestWorkSource::take_digest_work`]) between steps, this worker
//! runs them ([`DigestWork::run`]) on guest memory shared with its thread, and the driver
//! hands the results back ([`DigestWorkSource::handle_digest_done`]).
//!
//! ```text
//!  driver: take_digest_work ─► bounded queue ─► worker: DigestWork::run (read, sha256)
//!     └◄── handle_digest_done ◄── results ◄─────────┘
//! ```
//!
//! At most [`DigestWorker::IN_FLIGHT`] works are out at once, of [`DigestWorker::WORK_PAGES`]
//! pages, doubling up to [`DigestWorker::MAX_WORK_PAGES`] while they read under a quarter of
//! their pages (chunks the memory knows to be zero cost no read), so that untouched memory
//! wakes the thread once per 64 MiB rather than once per 4 MiB. A result of a chunk written
//! after its work was taken is dropped by the engine, which hashes whatever is still stale
//! itself: the digest is the memory's whatever the worker did.

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::thread::{Scope, ScopedJoinHandle};

use ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES;

use crate::error::{Error, ErrorKind};
use crate::{DigestDone, DigestWork, GuestRam, Loader, Source};

/// An engine that hands out digest work: a [`Source`] or a [`Loader`].
pub trait DigestWorkSource {
    /// Stale chunks of about `max_pages` pages to hash, if any are due.
    fn take_digest_work(&mut self, max_pages: u64) -> Option<DigestWork>;
    /// The result of a work taken with [`take_digest_work`](Self::take_digest_work).
    fn handle_digest_done(&mut self, done: DigestDone);
}

impl DigestWorkSource for Source {
    fn take_digest_work(&mut self, max_pages: u64) -> Option<DigestWork> {
        Source::take_digest_work(self, max_pages)
    }

    fn handle_digest_done(&mut self, done: DigestDone) {
        Source::handle_digest_done(self, done);
    }
}

impl<R: GuestRam> DigestWorkSource for Loader<R> {
    fn take_digest_work(&mut self, max_pages: u64) -> Option<DigestWork> {
        Loader::take_digest_work(self, max_pages)
    }

    fn handle_digest_done(&mut self, done: DigestDone) {
        Loader::handle_digest_done(self, done);
    }
}

/// What the thread hands back for one work.
type Outcome = Result<DigestDone, Error>;

/// The digest worker thread, as a driver's loop drives it.
#[derive(Debug)]
pub struct DigestWorker<'scope> {
    works: SyncSender<DigestWork>,
    results: Receiver<Outcome>,
    in_flight: usize,
    /// Pages of the next work.
    work_pages: u64,
    thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> DigestWorker<'scope> {
    /// Works out at once (queued or being hashed).
    pub const IN_FLIGHT: usize = 4;
    /// Pages of one work at first, and again after a work that read many of its pages.
    pub const WORK_PAGES: u64 = 1024;
    /// Pages of one work at most (after works that read few of their pages).
    pub const MAX_WORK_PAGES: u64 = 16 * 1024;

    /// Starts the thread in `scope`, reading guest memory through `ram`. Fails only if the
    /// system refuses a thread.
    pub fn start<'env, R: GuestRam + Sync>(
        scope: &'scope Scope<'scope, 'env>,
        ram: &'scope R,
    ) -> std::io::Result<Self> {
        let (works, queue) = mpsc::sync_channel::<DigestWork>(Self::IN_FLIGHT);
        let (done, results) = mpsc::sync_channel(Self::IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name("digest".into())
            .spawn_scoped(scope, move || {
                for work in queue {
                    if done.send(work.run(ram)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(DigestWorker {
            works,
            results,
            in_flight: 0,
            work_pages: Self::WORK_PAGES,
            thread,
        })
    }

    /// Hands every result that arrived back to `engine`, then tops the queue up with the
    /// works it has due. Never waits.
    ///
    /// Errors: a failed read of a work (the engine's [`ErrorKind::Guest`]), or
    /// [`ErrorKind::DigestWorker`] if the thread ended.
    pub fn serve(&mut self, engine: &mut impl DigestWorkSource) -> Result<(), Error> {
        loop {
            match self.results.try_recv() {
                Ok(r) => self.handle(engine, r)?,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(ended()),
            }
        }
        while self.in_flight < Self::IN_FLIGHT {
            let Some(work) = engine.take_digest_work(self.work_pages) else {
                break;
            };
            self.works.send(work).map_err(|_| ended())?;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Whether every work the thread can take is out: the driver's thread may share the
    /// hashing (e.g. [`Source::hash_digest_ahead`]).
    pub fn busy(&self) -> bool {
        self.in_flight == Self::IN_FLIGHT
    }

    /// Whether no work is out.
    pub fn idle(&self) -> bool {
        self.in_flight == 0
    }

    /// Waits for every work out and hands its result back to `engine`.
    ///
    /// Errors: as [`serve`](Self::serve).
    pub fn drain(&mut self, engine: &mut impl DigestWorkSource) -> Result<(), Error> {
        while self.in_flight > 0 {
            let r = self.results.recv().map_err(|_| ended())?;
            self.handle(engine, r)?;
        }
        Ok(())
    }

    fn handle(&mut self, engine: &mut impl DigestWorkSource, r: Outcome) -> Result<(), Error> {
        self.in_flight -= 1;
        let done = r?;
        self.work_pages = next_work_pages(self.work_pages, &done);
        engine.handle_digest_done(done);
        Ok(())
    }

    /// Closes the queue and waits for the thread (results still out are dropped).
    ///
    /// Errors: [`ErrorKind::DigestWorker`] if the thread panicked.
    pub fn finish(self) -> Result<(), Error> {
        let DigestWorker {
            works,
            results,
            thread,
            ..
        } = self;
        drop(works);
        drop(results);
        thread.join().map_err(|_| {
            Error::new(
                0,
                ErrorKind::DigestWorker {
                    reason: "its thread panicked",
                },
            )
        })
    }
}

/// The size of the next work after `done`: twice `pages` if it read under a quarter of the
/// pages it spanned (up to the maximum), else the first size.
fn next_work_pages(pages: u64, done: &DigestDone) -> u64 {
    let spanned = done.chunks().count() as u64 * DIGEST_CHUNK_PAGES;
    if done.pages_read() * 4 < spanned {
        (pages * 2).min(DigestWorker::MAX_WORK_PAGES)
    } else {
        DigestWorker::WORK_PAGES
    }
}

fn ended() -> Error {
    Error::new(
        0,
        ErrorKind::DigestWorker {
            reason: "its thread ended early",
        },
    )
}
