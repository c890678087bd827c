//! What the source engine asks of a VMM, as traits the caller passes in: which pages changed
//! ([`DirtyPageSource`]), which pages the balloon holds ([`BalloonSource`]), and the device
//! state ([`DeviceStateSource`]). Pages are counted in target pages of a block, in the
//! [`GuestRam`](crate::GuestRam)'s block numbering, as runs of the one run type, [`PageRun`].
//!
//! Each has a push-style twin on [`Source`](crate::Source) for callers that would rather hand
//! the data in themselves: `handle_dirty`/`handle_dirty_bitmap`, `handle_balloon`, and
//! `handle_stopped` with a `Vec<OwnedDeviceBlob>`.

use std::convert::Infallible;
use std::error::Error as StdError;

use ramstream_codec::balloon::BalloonMap;

use crate::device::{DeviceBlob, OwnedDeviceBlob};
use crate::PageRun;

/// The dirty log a source walks at each dirty sync
/// ([`Source::sync_dirty`](crate::Source::sync_dirty)).
///
/// ```
/// use ramstream_migrate::{DirtyPageSource, PageRun};
/// /// Every page of one 8-page block dirty once, then none (a bulk pass, then a quiet guest).
/// struct Once(bool);
/// impl DirtyPageSource for Once {
///     type Error = std::convert::Infallible;
///     fn take_dirty(&mut self, _block: usize, visit: &mut dyn FnMut(PageRun)) -> Result<(), Self::Error> {
///         if !std::mem::replace(&mut self.0, true) {
///             visit(PageRun::new(0, 8));
///         }
///         Ok(())
///     }
/// }
/// let mut runs = Vec::new();
/// let mut src = Once(false);
/// src.take_dirty(0, &mut |r| runs.push(r)).unwrap();
/// src.take_dirty(0, &mut |r| runs.push(r)).unwrap();
/// assert_eq!(runs, [PageRun::new(0, 8)]);
/// ```
pub trait DirtyPageSource {
    /// What a failed read of the log says.
    type Error: StdError + Send + Sync + 'static;

    /// Calls `visit` with the runs of pages of `block` written since the previous call for
    /// that block (in any order, possibly overlapping), and forgets them:
    /// `KVM_GET_DIRTY_LOG`, or vm-memory's `AtomicBitmap` (the `vm-memory` feature's
    /// `GuestMemoryRam::dirty_log`).
    fn take_dirty(
        &mut self,
        block: usize,
        visit: &mut dyn FnMut(PageRun),
    ) -> Result<(), Self::Error>;
}

/// The pages the guest has given to its balloon: with
/// [`SourceOptions::balloon`](crate::SourceOptions::balloon) a source sends their runs
/// (SPEC.md §9) instead of the pages, and never reads them.
///
/// Only a balloon whose driver negotiated `VIRTIO_BALLOON_F_MUST_TELL_HOST` may be trusted
/// this way: otherwise the guest may reuse a page before telling the host (SPEC.md §9.8).
pub trait BalloonSource {
    /// Calls `visit` with the ballooned runs of `block` (in any order; touching or
    /// overlapping runs are merged).
    fn ballooned(&self, block: usize, visit: &mut dyn FnMut(PageRun));
}

/// The codec's run map (what a destination rebuilt, or what a VMM keeps) as a source.
impl BalloonSource for BalloonMap {
    fn ballooned(&self, block: usize, visit: &mut dyn FnMut(PageRun)) {
        self.runs(block).for_each(visit);
    }
}

/// The device state a source sends after RAM, as opaque blobs (FULL sections).
pub trait DeviceStateSource {
    /// What a failed save says.
    type Error: StdError + Send + Sync + 'static;

    /// Calls `visit` with each device's state, in the order the destination restores them.
    fn save(&mut self, visit: &mut dyn FnMut(DeviceBlob<'_>)) -> Result<(), Self::Error>;

    /// The VMDESCRIPTION JSON describing the devices saved (SPEC.md §2.7), if the stream
    /// should end with one. None by default, as the reference machine's streams.
    fn vm_description(&mut self) -> Option<Vec<u8>> {
        None
    }
}

/// Blobs the caller already holds, sent in order.
impl DeviceStateSource for [OwnedDeviceBlob] {
    type Error = Infallible;

    fn save(&mut self, visit: &mut dyn FnMut(DeviceBlob<'_>)) -> Result<(), Infallible> {
        self.iter().for_each(|b| visit(b.as_blob()));
        Ok(())
    }
}

/// Blobs the caller already holds, sent in order.
impl DeviceStateSource for Vec<OwnedDeviceBlob> {
    type Error = Infallible;

    fn save(&mut self, visit: &mut dyn FnMut(DeviceBlob<'_>)) -> Result<(), Infallible> {
        self.as_mut_slice().save(visit)
    }
}
