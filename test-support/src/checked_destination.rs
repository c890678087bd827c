//! [`CheckedDestination`]: a [`FakeDestination`] that panics when the receiver reaches
//! outside guest memory.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ramstream_codec::PageAddr;
use ramstream_migrate::{GuestRam, PageRun, RamBlockLayout};
use ramstream_reference_receiver::{DestError, Destination, Verification};
use ramstream_reference_vmm::MemoryLayout;
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

    /// Panics unless `len` bytes at `addr` are exactly one page, page-aligned, inside a
    /// block of the layout.
    fn check(&self, what: &str, addr: PageAddr, len: usize) {
        let pages = self
            .inner
            .memory_layout()
            .regions
            .get(addr.block)
            .map(|r| r.run());
        assert!(
            pages.is_some_and(|run| run.contains(addr, PAGE_SIZE))
                && addr.is_page_aligned(PAGE_SIZE)
                && len == PAGE_SIZE,
            "receiver bug: {what} of {len} bytes at block {} offset {:#x}, outside the layout \
             (block pages {pages:?})",
            addr.block,
            addr.offset
        );
    }
}

impl GuestRam for CheckedDestination {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        self.inner.layout()
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), DestError> {
        self.check("read", addr, buf.len());
        self.inner.read_page(addr, buf)
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        self.check("write", addr, data.len());
        self.inner.write_page(addr, data)
    }
}

impl Destination for CheckedDestination {
    fn memory_layout(&self) -> &MemoryLayout {
        self.inner.memory_layout()
    }

    fn restore(&mut self, vcpu: &[u8], vm: &[u8]) -> Result<Vec<(usize, PageRun)>, DestError> {
        self.inner.restore(vcpu, vm)
    }

    fn resume(&mut self) -> Result<(), DestError> {
        self.inner.resume()?;
        self.resumed.set(true);
        Ok(())
    }

    /// Fails the guest's self-check when the fuzz input asked for it.
    fn verify(&mut self, timeout: Duration) -> Result<Verification, DestError> {
        let mut v = self.inner.verify(timeout)?;
        v.self_check_passed &= !self.verify_fails;
        Ok(v)
    }

    fn resumed(&self) -> bool {
        self.inner.resumed()
    }
}
