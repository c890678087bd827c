//! What the source side will need from a VMM (the precopy engine that drives these is the
//! next slice): which pages changed, which pages the balloon holds, and the device state.
//! Pages are counted in target pages of a block, in the [`GuestRam`](crate::GuestRam)'s block
//! numbering, as runs of the one run type, [`PageRun`].

use std::error::Error as StdError;

use crate::device::DeviceBlob;
use crate::PageRun;

/// The dirty log a source walks on each precopy iteration.
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
    /// that block (ascending, disjoint), and forgets them: `KVM_GET_DIRTY_LOG`, or
    /// vm-memory's `AtomicBitmap::get_and_reset`.
    fn take_dirty(
        &mut self,
        block: usize,
        visit: &mut dyn FnMut(PageRun),
    ) -> Result<(), Self::Error>;
}

/// The pages the guest has given to its balloon: a source sends their runs (SPEC.md §9)
/// instead of the pages.
pub trait BalloonSource {
    /// Calls `visit` with the ballooned runs of `block` (ascending, disjoint).
    fn ballooned(&self, block: usize, visit: &mut dyn FnMut(PageRun));
}

/// The device state a source sends after RAM, as opaque blobs (FULL sections).
pub trait DeviceStateSource {
    /// What a failed save says.
    type Error: StdError + Send + Sync + 'static;

    /// Calls `visit` with each device's state, in the order the destination restores them.
    fn save(&mut self, visit: &mut dyn FnMut(DeviceBlob<'_>)) -> Result<(), Self::Error>;
}
