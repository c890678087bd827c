//! The destination's guest memory as the digest worker thread reads it
//! ([`crate::Destination::digest_memory`]), while the loader writes it.

use std::sync::Arc;

use ramstream_codec::PageAddr;
use ramstream_migrate::{GuestRam, RamBlockLayout};
use ramstream_reference_vmm::GuestMemory;

/// A destination's guest memory as the digest worker reads it, in guest block numbering,
/// while the loader writes it.
#[derive(Debug, Clone)]
pub struct DigestMemory {
    mem: Arc<GuestMemory>,
    blocks: Vec<RamBlockLayout>,
}

impl DigestMemory {
    /// `mem`, whose RAM blocks are `blocks` (its regions, in order).
    pub fn new(mem: Arc<GuestMemory>, blocks: Vec<RamBlockLayout>) -> Self {
        DigestMemory { mem, blocks }
    }
}

impl GuestRam for DigestMemory {
    type Error = ramstream_reference_vmm::Error;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.mem.read_page(addr, buf)
    }

    /// Pages the host never backed ([`GuestMemory::known_zero_pages`]): not read.
    fn known_zero_pages(
        &self,
        addr: PageAddr,
        page_size: usize,
        zero: &mut [bool],
    ) -> Result<(), Self::Error> {
        if page_size == ramstream_spec::ram::TARGET_PAGE_SIZE_X86 {
            self.mem.known_zero_pages(addr, zero)
        } else {
            zero.fill(false);
            Ok(())
        }
    }

    /// Refused: the worker only reads.
    fn write_page(&self, addr: PageAddr, _: &[u8]) -> Result<(), Self::Error> {
        Err(ramstream_reference_vmm::Error::InvalidConfig(format!(
            "the digest worker's view of guest memory is read-only (a write at {addr:?})"
        )))
    }
}
