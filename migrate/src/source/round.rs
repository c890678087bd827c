//! One round over RAM (the bulk pass, a dirty iteration, or the stop-and-copy pass): its
//! pages, how far it got, and how it is cut into `ram` sections.

use ramstream_codec::PageAddr;
use ramstream_spec::stream::SectionType;

use super::page_set::PageSet;

/// Pages per PART section at most.
pub(crate) const PAGES_PER_PART: u64 = 8192;
/// Pages read per poll at most (pages the memory knows to be zero are not read, and a
/// poll may send more of them: `batch::MAX_ZERO_RUN`).
pub(crate) const BATCH: usize = 64;

/// Which round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoundKind {
    /// Every page that is not ballooned; no XBZRLE.
    Bulk,
    /// The pages dirtied before the sync that started it.
    Dirty,
    /// The last pages, with the guest stopped: its last section is END and the XBZRLE
    /// cache is no longer updated.
    Final,
}

/// A round in progress.
#[derive(Clone, Debug)]
pub(crate) struct Round {
    pub(crate) kind: RoundKind,
    pages: PageSet,
    /// Pages in the round.
    pub(crate) total: u64,
    /// Pages done.
    pub(crate) done: u64,
    cursor: (usize, u64),
    /// Whether a section is open (its header written, its EOS not yet).
    pub(crate) part_open: bool,
    part_pages: u64,
    /// Sections opened so far.
    pub(crate) parts: u64,
}

impl Round {
    pub(crate) fn new(kind: RoundKind, pages: PageSet) -> Self {
        Round {
            kind,
            total: pages.count(),
            pages,
            done: 0,
            cursor: (0, 0),
            part_open: false,
            part_pages: 0,
            parts: 0,
        }
    }

    /// Opens a section: the type of its header. Only the very last section of the final
    /// round is END.
    pub(crate) fn open_part(&mut self) -> SectionType {
        self.part_open = true;
        self.part_pages = 0;
        self.parts += 1;
        if self.kind == RoundKind::Final && self.total - self.done <= PAGES_PER_PART {
            SectionType::END
        } else {
            SectionType::PART
        }
    }

    /// The next run of consecutive pages of the open section (one block), at most `max`
    /// and what the section has room for: `(block, first page, pages)`; `None` when the
    /// round or the section has no page left. Taken with [`take`](Self::take).
    pub(crate) fn peek_run(&self, max: u64) -> Option<(usize, u64, u64)> {
        let room = (PAGES_PER_PART - self.part_pages).min(max);
        if room == 0 {
            return None;
        }
        self.pages.run_from(self.cursor, room)
    }

    /// The first `n` pages of the run [`peek_run`](Self::peek_run) gave from page `first`
    /// of `block` were sent.
    pub(crate) fn take(&mut self, block: usize, first: u64, n: u64) {
        self.cursor = (block, first + n);
        self.part_pages += n;
        self.done += n;
    }

    /// Whether the section is full or the round done (its EOS is due); if so it is closed.
    pub(crate) fn close_if_due(&mut self) -> bool {
        let closes = self.part_pages == PAGES_PER_PART || self.is_done();
        if closes {
            self.part_open = false;
        }
        closes
    }

    /// The next pages of the open section for one multifd packet (SPEC.md §14.3): at most
    /// `max`, all of the block of the first (a block change ends a packet, as in QEMU's
    /// `multifd_queue_page()`), into `out` as byte offsets in that block. Returns the block
    /// and whether the section is full or the round done after them.
    pub(crate) fn next_packet(
        &mut self,
        max: u64,
        page_size: usize,
        out: &mut Vec<u64>,
    ) -> (usize, bool) {
        out.clear();
        let room = (PAGES_PER_PART - self.part_pages).min(max);
        let mut block = None;
        while (out.len() as u64) < room {
            let Some((b, p)) = self.pages.next_from(self.cursor) else {
                break;
            };
            if *block.get_or_insert(b) != b {
                break;
            }
            out.push(PageAddr::of_page(b, p, page_size).offset);
            self.cursor = (b, p + 1);
        }
        self.part_pages += out.len() as u64;
        self.done += out.len() as u64;
        let closes = self.part_pages == PAGES_PER_PART || self.is_done();
        if closes {
            self.part_open = false;
        }
        (block.unwrap_or(0), closes)
    }

    /// Whether every page was taken.
    pub(crate) fn is_done(&self) -> bool {
        self.done == self.total
    }
}
