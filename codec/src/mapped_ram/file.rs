//! [`MappedRamFile`]: a whole mapped-ram file decoded, with its blocks' views (SPEC.md §7.9).

use ramstream_spec::config::capability;

use crate::error::Error;
use crate::event::Event;
use crate::events::Events;
use crate::image::PageStore;
use crate::mapped_ram::MappedBlock;
use crate::options::{DecoderOptions, MappedRam};
use crate::ram::MemSize;

/// A mapped-ram file held in memory: every event of its stream (offsets are file offsets)
/// and, for the last MEM_SIZE, each block's bitmap and pages.
///
/// `input` is the stream from its first byte (`QEVM`); `opts.file_offset` says where that
/// byte is in the file (the `offset=` of `file:PATH,offset=N`, usually 0). `opts.mapped_ram`
/// is taken as [`MappedRam::Read`].
///
/// ```
/// use ramstream_codec::mapped_ram::MappedRamFile;
/// // Header, configuration listing mapped-ram, ram START, MEM_SIZE of one 4 KiB block with
/// // its header: bitmap at 0x5e, pages at 0x1000; then (after the pages) EOS, footer, EOF.
/// let mut f = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2".to_vec();
/// f.extend(b"\x05\x1aconfiguration/capabilities\0\0\0\x01\0\0\0\x01\x0amapped-ram");
/// f.extend(b"\x01\0\0\0\x01\x03ram\0\0\0\0\0\0\0\x04");
/// f.extend(0x1004u64.to_be_bytes());
/// f.extend(b"\x01b");
/// f.extend(0x1000u64.to_be_bytes());
/// f.extend(1u32.to_be_bytes());
/// for v in [0x1000u64, f.len() as u64 + 24, 0x1000] {
///     f.extend(v.to_be_bytes());
/// }
/// f.push(0b1); // bitmap: page 0 present
/// f.resize(0x1000, 0);
/// f.extend([0xab; 0x1000]); // page 0
/// f.extend(0x10u64.to_be_bytes());
/// f.extend(b"\x7e\0\0\0\x01\x00");
///
/// let file = MappedRamFile::parse(&f, &Default::default()).unwrap();
/// let b = &file.blocks()[0];
/// assert_eq!((b.block.idstr.as_str(), b.header.pages_offset), ("b", 0x1000));
/// let pages: Vec<_> = b.present_pages().collect();
/// assert_eq!(pages, [(0, &[0xab; 0x1000][..])]);
/// ```
#[derive(Clone, Debug)]
pub struct MappedRamFile<'a> {
    events: Vec<(u64, Event<'a>)>,
    blocks: Vec<MappedBlock<'a>>,
    page_size: usize,
}

impl<'a> MappedRamFile<'a> {
    /// Decodes the whole stream and builds the views of the last MEM_SIZE's blocks. Fails
    /// with the decoder's error (file offsets), e.g. on a bad header or a region past the
    /// end of the input. A stream without `mapped-ram` also parses (its blocks list is
    /// empty); [`MappedRamFile::announced`] tells them apart first.
    pub fn parse(input: &'a [u8], opts: &DecoderOptions) -> Result<Self, Error> {
        let mut opts = opts.clone();
        opts.mapped_ram = MappedRam::Read;
        let file_offset = opts.file_offset;
        let mut events = Events::new(input, opts);
        let mut decoded = Vec::new();
        let mut blocks = Vec::new();
        while let Some((at, event)) = events.next().transpose()? {
            if let Event::MemSize(ms) = &event {
                blocks = block_views(input, file_offset, ms, events.decoder().page_size())?;
            }
            decoded.push((at, event));
        }
        Ok(MappedRamFile {
            events: decoded,
            blocks,
            page_size: events.decoder().page_size(),
        })
    }

    /// Whether `input` starts a stream whose configuration announces `mapped-ram`: the
    /// header and configuration are decoded, nothing else. `false` for anything that does
    /// not decode that far.
    pub fn announced(input: &[u8], opts: &DecoderOptions) -> bool {
        let mut opts = opts.clone();
        opts.mapped_ram = MappedRam::Read;
        // The header, then the configuration.
        for item in Events::new(input, opts).take(2) {
            match item {
                Ok((_, Event::Configuration(c))) => {
                    return c.has_capability(capability::MAPPED_RAM)
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }

    /// Every event of the stream with its file offset. The MEM_SIZE event spans the block
    /// entries, their headers and their regions; no page record ever appears.
    pub fn events(&self) -> &[(u64, Event<'a>)] {
        &self.events
    }

    /// The blocks of the last MEM_SIZE, in order (empty without `mapped-ram`).
    pub fn blocks(&self) -> &[MappedBlock<'a>] {
        &self.blocks
    }

    /// The target page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Writes every present page of every block into `store` (block `i` of the store is
    /// block `i` here); returns how many pages.
    pub fn apply_to(&self, store: &mut impl PageStore) -> u64 {
        self.blocks
            .iter()
            .enumerate()
            .map(|(i, b)| b.apply_to(store, i))
            .sum()
    }
}

/// The views of a mapped-ram MEM_SIZE's blocks in `input` (whose first byte is at
/// `file_offset`); empty when the record has no mapped-ram headers.
pub fn block_views<'a>(
    input: &'a [u8],
    file_offset: u64,
    ms: &MemSize,
    page_size: usize,
) -> Result<Vec<MappedBlock<'a>>, Error> {
    ms.blocks
        .iter()
        .zip(&ms.mapped_ram)
        .map(|(b, h)| MappedBlock::new(input, file_offset, b, h, page_size))
        .collect()
}
