//! Stopping every connection of a migration when one part fails, and keeping the error that
//! caused it (not the errors its consequences cause on the other threads).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ramstream_migrate::multifd::MultifdSession;

use crate::addr::Duplex;

/// The connections of one migration (main stream, channels, a proxy's destination side)
/// and the first failure: [`Stop::fail`] keeps the error and shuts every connection down,
/// so that reads blocked on other threads return and the source sees the migration fail.
#[derive(Default)]
pub struct Stop {
    conns: Mutex<Vec<Box<dyn Duplex>>>,
    session: Mutex<Option<MultifdSession>>,
    stopped: AtomicBool,
    /// The error that stopped the migration (the first that is not a consequence).
    cause: Mutex<Option<anyhow::Error>>,
    /// An error seen after the stop (a consequence), kept in case no cause was recorded.
    later: Mutex<Option<anyhow::Error>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stop {
    pub fn new() -> Arc<Stop> {
        Arc::new(Stop::default())
    }

    /// Adds a connection to shut down on a stop (at once, if already stopped).
    pub fn watch(&self, conn: Box<dyn Duplex>) {
        if self.is_stopped() {
            conn.shutdown_both();
        }
        lock(&self.conns).push(conn);
    }

    /// The multifd session to abort on a stop.
    pub fn set_session(&self, session: MultifdSession) {
        if self.is_stopped() {
            session.abort();
        }
        *lock(&self.session) = Some(session);
    }

    /// Whether the migration was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Records `e` (the cause, unless one was recorded before) and stops.
    pub fn fail(&self, e: anyhow::Error) {
        {
            let mut cause = lock(&self.cause);
            if cause.is_none() {
                *cause = Some(e);
            } else {
                lock(&self.later).get_or_insert(e);
            }
        }
        self.stopped.store(true, Ordering::SeqCst);
        self.shut_all();
    }

    /// Records `e` as a consequence of another failure (kept only if no cause is recorded)
    /// and stops.
    pub fn consequence(&self, e: anyhow::Error) {
        lock(&self.later).get_or_insert(e);
        self.stopped.store(true, Ordering::SeqCst);
        self.shut_all();
    }

    fn shut_all(&self) {
        if let Some(s) = lock(&self.session).as_ref() {
            s.abort();
        }
        for c in lock(&self.conns).iter() {
            c.shutdown_both();
        }
    }

    /// The error that stopped the migration, if it was stopped.
    pub fn take_error(&self) -> Option<anyhow::Error> {
        lock(&self.cause)
            .take()
            .or_else(|| lock(&self.later).take())
    }
}

/// The error of a part of a migration that stopped because another part failed: a
/// consequence, never the cause.
#[derive(Debug)]
pub struct StoppedByAnother;

impl std::fmt::Display for StoppedByAnother {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped: another connection of the migration failed")
    }
}

impl std::error::Error for StoppedByAnother {}

/// Whether `e` is [`StoppedByAnother`].
pub fn is_consequence(e: &anyhow::Error) -> bool {
    e.downcast_ref::<StoppedByAnother>().is_some()
}
