//! The script a [`ScriptedGuest`](crate::ScriptedGuest) follows: what the guest does to its
//! memory and balloon at each dirty sync, and the page contents it writes.

use ramstream_migrate::PageRun;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;

/// One step of a [`ScriptedGuest`](crate::ScriptedGuest)'s script, applied at a dirty sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptStep {
    /// The guest writes `count` pages from `first` of `block` with a pattern derived from
    /// `seed` (each page differs from every other page and every other seed).
    Write {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
        /// Pattern seed.
        seed: u64,
    },
    /// The guest changes only the first 8 bytes of each page (an XBZRLE-friendly write).
    Touch {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
        /// Value written.
        seed: u64,
    },
    /// The guest zeroes pages (they stay in use).
    Zero {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
    /// Balloon inflate: the pages are discarded (zero) and ballooned.
    Inflate {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
    /// Balloon deflate: the pages leave the balloon, reading as zero.
    Deflate {
        /// Block index.
        block: usize,
        /// First page.
        first: u64,
        /// Pages.
        count: u64,
    },
}

impl ScriptStep {
    /// The block the step touches and its pages there.
    pub fn pages(&self) -> (usize, PageRun) {
        match *self {
            ScriptStep::Write {
                block,
                first,
                count,
                ..
            }
            | ScriptStep::Touch {
                block,
                first,
                count,
                ..
            }
            | ScriptStep::Zero {
                block,
                first,
                count,
            }
            | ScriptStep::Inflate {
                block,
                first,
                count,
            }
            | ScriptStep::Deflate {
                block,
                first,
                count,
            } => (block, PageRun::new(first, count)),
        }
    }
}

/// The deterministic content of a page written by [`ScriptStep::Write`].
pub fn pattern_page(block: usize, page: u64, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; PAGE_SIZE];
    let mut x = (block as u64) << 48 ^ page << 16 ^ seed ^ 0x9E37_79B9_7F4A_7C15;
    for w in v.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    v
}
