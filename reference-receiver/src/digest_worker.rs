//! The receiver's use of the digest worker ([`DigestWorker`], SPEC.md §13.7): it hashes the
//! loader's running digest while the main thread reads and loads the stream, so that little
//! is left to hash at EOF. Its thread starts once the destination's memory exists (MEM_SIZE
//! made it) and the destination shares it
//! ([`Destination::digest_memory`](crate::Destination::digest_memory)); before that, or
//! without shared memory, or if no thread can be had, the loader hashes ahead in line.

use std::sync::OnceLock;
use std::thread::Scope;

use ramstream_migrate::{DigestWorker, GuestRam, Loader};

use crate::digest_memory::DigestMemory;
use crate::error::RecvErrorKind;

/// The digest worker, started when the destination's memory is known.
pub(crate) struct LazyDigestWorker<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    memory: &'scope OnceLock<DigestMemory>,
    running: Option<DigestWorker<'scope>>,
    /// Starting the thread was refused: hash in line.
    refused: bool,
}

impl<'scope, 'env> LazyDigestWorker<'scope, 'env> {
    /// A worker that starts its thread in `scope` once `memory` is set.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        memory: &'scope OnceLock<DigestMemory>,
    ) -> Self {
        LazyDigestWorker {
            scope,
            memory,
            running: None,
            refused: false,
        }
    }

    /// Hands every result that arrived back to `loader`, then tops the queue up with works
    /// the loader has due. Never waits. Returns whether the worker runs and can take more
    /// (else the caller hashes in line).
    pub(crate) fn serve<L: GuestRam>(
        &mut self,
        loader: &mut Loader<L>,
    ) -> Result<bool, RecvErrorKind> {
        if self.running.is_none() && !self.refused {
            if let Some(memory) = self.memory.get() {
                match DigestWorker::start(self.scope, memory) {
                    Ok(w) => self.running = Some(w),
                    Err(_) => self.refused = true,
                }
            }
        }
        let Some(w) = self.running.as_mut() else {
            return Ok(false);
        };
        w.serve(loader).map_err(RecvErrorKind::Load)?;
        Ok(!w.busy())
    }

    /// Waits for every work out and hands its result back (the input ended: what the
    /// worker is hashing is still of use at the check).
    pub(crate) fn drain<L: GuestRam>(
        &mut self,
        loader: &mut Loader<L>,
    ) -> Result<(), RecvErrorKind> {
        match self.running.as_mut() {
            Some(w) => w.drain(loader).map_err(RecvErrorKind::Load),
            None => Ok(()),
        }
    }

    /// Closes the queue and waits for the thread (results still out are dropped).
    pub(crate) fn finish(self) -> Result<(), RecvErrorKind> {
        match self.running {
            Some(w) => w.finish().map_err(RecvErrorKind::Load),
            None => Ok(()),
        }
    }
}
