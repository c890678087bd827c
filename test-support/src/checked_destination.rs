//! [`CheckedDestination`]: a [`FakeDestination`] that panics when the receiver reaches
//! outside guest memory.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ramstream_reference_receiver::{Destination, Verification};
use ramstream_reference_vmm::{BalloonRun, MemoryLayout};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::FakeDestination;

/// Dense in-memory guest memory ([`FakeDestination`]) behind a check of every page the
/// receiver touches: a block index or page outside the layout, or a buffer that is not
/// exactly one page, is a receiver bug (it would write outside guest memory) and panics.
/// Whether the guest was resumed is kept in a flag the caller shares, so it can be checked
/// after a failed receive has dropped the destination.
#[derive(Debug)]
pub struct CheckedDestination {
    inner: FakeDestination,
    resumed: Rc<Cell<bool>>,
    verify_fails: bool,
}

impl CheckedDestination {
    /// Zeroed memory for `layout`; `resumed` is set when the receiver resumes the guest, and
    /// with `verify_fails` the resumed guest fails its verification.
    pub fn new(layout: &MemoryLayout, resumed: Rc<Cell<bool>>, verify_fails: bool) -> Self {
        CheckedDestination {
            inner: FakeDestination::new(layout),
            resumed,
            verify_fails,
        }
    }

    /// Panics unless `page` of `block` is inside the layout and `len` is one page.
    fn check(&self, what: &str, block: usize, page: u64, len: usize) {
        let pages = self.inner.layout().regions.get(block).map(|r| r.pages());
        assert!(
            pages.is_some_and(|n| page < n) && len == PAGE_SIZE,
            "receiver bug: {what} of {len} bytes at block {block} page {page}, \
             outside the layout (block has {pages:?} pages)"
        );
    }
}

impl Destination for CheckedDestination {
    fn layout(&self) -> &MemoryLayout {
        self.inner.layout()
    }

    fn write_page(&mut self, block: usize, page: u64, data: &[u8]) -> Result<(), String> {
        self.check("write", block, page, data.len());
        self.inner.write_page(block, page, data)
    }

    fn read_page(&self, block: usize, page: u64, dst: &mut [u8]) -> Result<(), String> {
        self.check("read", block, page, dst.len());
        self.inner.read_page(block, page, dst)
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<BalloonRun>, String> {
        self.inner.restore(vcpu, vm)
    }

    fn resume(&mut self) -> Result<(), String> {
        self.inner.resume()?;
        self.resumed.set(true);
        Ok(())
    }

    fn verify(&mut self, timeout: Duration) -> Result<Verification, String> {
        if self.verify_fails {
            return Err("the fuzz input asked verification to fail".into());
        }
        self.inner.verify(timeout)
    }

    fn resumed(&self) -> bool {
        self.inner.resumed()
    }
}
