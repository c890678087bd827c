//! The sender's use of the digest worker ([`DigestWorker`], SPEC.md §13.7): the main loop
//! serves it between polls, hashes a share itself while it is behind, and catches the
//! digest up before the guest is paused.

use ramstream_migrate::{DigestWorker, GuestRam, Source};

use crate::error::SendErrorKind;

/// Pages the main thread hashes per step while it catches the digest up with the worker.
const CATCH_UP_PAGES: u64 = 1024;

/// Catches the running digest up before the guest is stopped (the engine said
/// [`Transmit::StopGuest`](ramstream_migrate::Transmit::StopGuest)): the worker and this
/// thread hash every chunk still due, so that the downtime hashes only the chunks the final
/// sync dirties. Ends: no dirty page is handed in meanwhile, so what is due only shrinks.
pub(crate) fn catch_up<R: GuestRam + ?Sized>(
    worker: &mut DigestWorker<'_>,
    source: &mut Source,
    ram: &R,
) -> Result<(), SendErrorKind> {
    loop {
        worker.serve(source)?;
        if source.hash_digest_ahead(ram, CATCH_UP_PAGES)? == 0 {
            if worker.idle() {
                return Ok(());
            }
            worker.drain(source)?;
        }
    }
}
