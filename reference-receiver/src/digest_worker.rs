//! The digest worker: one thread that hashes the loader's running sha256-chunked digest
//! (SPEC.md §13.7) while the main thread reads and loads the stream, so that little is left
//! to hash at EOF. The loader stays sans-IO: the main thread takes works out of it
//! ([`Loader::take_digest_work`]) while it waits for input, the worker runs them on the
//! destination's memory shared with it ([`DigestMemory`]) and the main thread hands the
//! results back ([`Loader::handle_digest_done`]). A destination without shared memory
//! ([`Destination::digest_memory`](crate::Destination::digest_memory) is `None`) starts no
//! thread: the loader hashes ahead in line, as before.
//!
//! At most [`IN_FLIGHT`] works of about [`WORK_PAGES`] pages are out at once. A result of a
//! chunk written after its work was taken is dropped by the loader, which re-hashes what is
//! still stale at EOF: the check is the memory's whatever the worker did.

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::OnceLock;
use std::thread::{Scope, ScopedJoinHandle};

use ramstream_migrate::{DigestDone, DigestWork, GuestRam, Loader};
use ramstream_spec::extension::digest::DIGEST_CHUNK_PAGES;

use crate::digest_memory::DigestMemory;
use crate::error::RecvErrorKind;

/// Works out at once (queued or being hashed).
pub const IN_FLIGHT: usize = 4;

/// Pages of one work at first, and again after a work that read many of its pages (whole
/// chunks).
pub const WORK_PAGES: u64 = 1024;

/// Pages of one work at most: after works that read few of their pages (chunks the memory
/// knows to be zero cost no read), the next are twice as large, up to this, so that the
/// worker is woken once per 64 MiB of untouched memory rather than once per 4 MiB.
pub const MAX_WORK_PAGES: u64 = 16 * 1024;

/// What the worker hands back for one work.
type Outcome = Result<DigestDone, ramstream_migrate::Error>;

/// The worker thread, started once the destination's memory is known.
struct Running<'scope> {
    works: SyncSender<DigestWork>,
    results: Receiver<Outcome>,
    thread: ScopedJoinHandle<'scope, ()>,
}

/// The digest worker, as the receive loop drives it.
pub(crate) struct DigestWorker<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    memory: &'scope OnceLock<DigestMemory>,
    running: Option<Running<'scope>>,
    in_flight: usize,
    /// Pages of the next work ([`WORK_PAGES`] to [`MAX_WORK_PAGES`]).
    work_pages: u64,
}

impl<'scope, 'env> DigestWorker<'scope, 'env> {
    /// A worker that starts its thread in `scope` once `memory` is set.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        memory: &'scope OnceLock<DigestMemory>,
    ) -> Self {
        DigestWorker {
            scope,
            memory,
            running: None,
            in_flight: 0,
            work_pages: WORK_PAGES,
        }
    }

    /// Hands every result that arrived back to `loader`, then tops the queue up with works
    /// the loader has due. Never waits. Returns whether the worker runs (else the caller
    /// hashes in line).
    pub(crate) fn serve<L: GuestRam>(
        &mut self,
        loader: &mut Loader<L>,
    ) -> Result<bool, RecvErrorKind> {
        if !self.start() {
            return Ok(false);
        }
        let Some(run) = &self.running else {
            return Ok(false);
        };
        loop {
            match run.results.try_recv() {
                Ok(r) => {
                    self.in_flight -= 1;
                    let done = r.map_err(RecvErrorKind::Load)?;
                    self.work_pages = next_work_pages(self.work_pages, &done);
                    loader.handle_digest_done(done);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(ended()),
            }
        }
        while self.in_flight < IN_FLIGHT {
            let Some(work) = loader.take_digest_work(self.work_pages) else {
                break;
            };
            run.works.send(work).map_err(|_| ended())?;
            self.in_flight += 1;
        }
        Ok(true)
    }

    /// Whether every work the worker can take is out.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight == IN_FLIGHT
    }

    /// Waits for every work out and hands its result back (the input ended: what the
    /// worker is hashing is still of use at the check).
    pub(crate) fn drain<L: GuestRam>(
        &mut self,
        loader: &mut Loader<L>,
    ) -> Result<(), RecvErrorKind> {
        let Some(run) = &self.running else {
            return Ok(());
        };
        while self.in_flight > 0 {
            let r = run.results.recv().map_err(|_| ended())?;
            self.in_flight -= 1;
            loader.handle_digest_done(r.map_err(RecvErrorKind::Load)?);
        }
        Ok(())
    }

    /// Starts the thread if the memory is known; whether it runs.
    fn start(&mut self) -> bool {
        if self.running.is_none() {
            let Some(memory) = self.memory.get() else {
                return false;
            };
            let (works, queue) = mpsc::sync_channel::<DigestWork>(IN_FLIGHT);
            let (done, results) = mpsc::sync_channel(IN_FLIGHT);
            let thread = std::thread::Builder::new()
                .name("digest".into())
                .spawn_scoped(self.scope, move || {
                    for work in queue {
                        if done.send(work.run(memory)).is_err() {
                            break;
                        }
                    }
                });
            let Ok(thread) = thread else {
                return false;
            };
            self.running = Some(Running {
                works,
                results,
                thread,
            });
        }
        true
    }

    /// Closes the queue and waits for the thread (results still out are dropped).
    pub(crate) fn finish(self) -> Result<(), RecvErrorKind> {
        let Some(Running {
            works,
            results,
            thread,
        }) = self.running
        else {
            return Ok(());
        };
        drop(works);
        drop(results);
        thread.join().map_err(|_| {
            RecvErrorKind::Io(std::io::Error::other("the digest worker thread panicked"))
        })
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

fn ended() -> RecvErrorKind {
    RecvErrorKind::Io(std::io::Error::other(
        "the digest worker thread ended early",
    ))
}
