//! What the guest memory said of the pages a round is about to visit
//! ([`GuestRam::known_zero_pages`]), asked ahead in windows that grow while the round walks
//! its pages in order: the bulk pass of an idle guest asks once per 4,096 pages, a dirty
//! round with scattered pages asks a small window around each.
//!
//! An answer stays good for the round it was asked in: a page written after it is in the
//! next dirty sync, as for a page read (SPEC.md §7.7). A new round forgets them all.

use ramstream_codec::PageAddr;

use crate::GuestRam;

/// Pages asked at once when a round starts, or jumps.
const FIRST_WINDOW: u64 = 64;
/// Pages asked at once at most, after the round has walked whole windows in order.
const MAX_WINDOW: u64 = 4096;

/// The latest answer of [`GuestRam::known_zero_pages`] for one span of one block.
#[derive(Debug)]
pub(crate) struct ZeroAhead {
    /// Pages of each block (a window stops at its block's end).
    block_pages: Vec<u64>,
    /// (block, first page) of the answer in `zero`; `None`: nothing held.
    at: Option<(usize, u64)>,
    zero: Vec<bool>,
    /// Pages the next window asks.
    window: u64,
}

impl ZeroAhead {
    pub(crate) fn new(block_pages: &[u64]) -> Self {
        ZeroAhead {
            block_pages: block_pages.to_vec(),
            at: None,
            zero: Vec::with_capacity(MAX_WINDOW as usize),
            window: FIRST_WINDOW,
        }
    }

    /// Forgets the answer held (a new round).
    pub(crate) fn forget(&mut self) {
        self.at = None;
        self.window = FIRST_WINDOW;
    }

    /// How many consecutive pages of `page_size` bytes from `addr` (at most `max`) are known
    /// to be zero, asking `ram` for a window from `addr` when the answer held does not cover
    /// it. 0: the page at `addr` is not known zero. A run may go on past the window: ask again
    /// from its end.
    pub(crate) fn zero_run<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        addr: PageAddr,
        page_size: usize,
        max: u64,
    ) -> Result<u64, (PageAddr, R::Error)> {
        let page = addr.offset / page_size as u64;
        let first = match self.at {
            Some((b, first))
                if b == addr.block && first <= page && page < first + self.zero.len() as u64 =>
            {
                first
            }
            _ => {
                self.ask(ram, addr, page, page_size)?;
                page
            }
        };
        let from = (page - first) as usize;
        let run = self.zero[from..]
            .iter()
            .take(usize::try_from(max).unwrap_or(usize::MAX))
            .take_while(|&&z| z)
            .count();
        Ok(run as u64)
    }

    /// Asks `ram` for the window from `page` (at `addr`) of its block.
    fn ask<R: GuestRam + ?Sized>(
        &mut self,
        ram: &R,
        addr: PageAddr,
        page: u64,
        page_size: usize,
    ) -> Result<(), (PageAddr, R::Error)> {
        // The next window in order grows; a jump starts small again.
        if let Some((b, first)) = self.at {
            self.window = if b == addr.block && page == first + self.zero.len() as u64 {
                (self.window * 4).min(MAX_WINDOW)
            } else {
                FIRST_WINDOW
            };
        }
        let end = self
            .block_pages
            .get(addr.block)
            .copied()
            .unwrap_or(page + 1)
            .max(page + 1);
        let n = (end - page).min(self.window) as usize;
        self.zero.clear();
        self.zero.resize(n, false);
        self.at = None;
        ram.known_zero_pages(addr, page_size, &mut self.zero)
            .map_err(|e| (addr, e))?;
        self.at = Some((addr.block, page));
        Ok(())
    }
}
