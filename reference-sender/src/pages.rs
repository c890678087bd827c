//! The guest's pages as the engine reads them: a [`GuestRam`] under the engine's block
//! numbering over either of the sender's page readers, the guest itself on the sending
//! thread ([`GuestSource`]) or a [`PageReader`] shared with the multifd channel threads and
//! the digest worker. A source guest is only read.

use std::sync::Arc;

use ramstream_codec::PageAddr;
use ramstream_migrate::{GuestRam, RamBlockLayout};
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

use crate::error::GuestError;
use crate::source::{GuestSource, PageReader};

/// What [`Pages`] reads through: target pages by address.
pub(crate) trait ReadPages {
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError>;
    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError>;
}

impl<G: GuestSource> ReadPages for &G {
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        GuestSource::read_page(*self, addr, buf)
    }
    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        GuestSource::known_zero_pages(*self, addr, zero)
    }
}

impl ReadPages for Arc<dyn PageReader> {
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        PageReader::read_page(&**self, addr, buf)
    }
    fn known_zero_pages(&self, addr: PageAddr, zero: &mut [bool]) -> Result<(), GuestError> {
        PageReader::known_zero_pages(&**self, addr, zero)
    }
}

/// `reader`'s pages as the RAM blocks `blocks`.
pub(crate) struct Pages<R, L> {
    pub(crate) reader: R,
    pub(crate) blocks: L,
}

/// The pages the channel threads and the digest worker read.
pub(crate) type SharedPages = Pages<Arc<dyn PageReader>, Vec<RamBlockLayout>>;

impl<R: ReadPages, L: AsRef<[RamBlockLayout]>> GuestRam for Pages<R, L> {
    type Error = GuestError;

    fn layout(&self) -> &[RamBlockLayout] {
        self.blocks.as_ref()
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), GuestError> {
        self.reader.read_page(addr, buf)
    }

    fn write_page(&self, _: PageAddr, _: &[u8]) -> Result<(), GuestError> {
        Err(GuestError::Other("a source guest is only read".into()))
    }

    /// The readers know target pages only: for other page sizes, nothing.
    fn known_zero_pages(
        &self,
        addr: PageAddr,
        page_size: usize,
        zero: &mut [bool],
    ) -> Result<(), GuestError> {
        if page_size == PAGE_SIZE {
            self.reader.known_zero_pages(addr, zero)
        } else {
            zero.fill(false);
            Ok(())
        }
    }
}
