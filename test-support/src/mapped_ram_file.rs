//! Hand-built mapped-ram files (SPEC.md §7.9): a few small blocks with chosen present and
//! stale pages, for the codec's mapped-ram tests and the `mapped_ram` fuzz target's seeds.

use ramstream_spec::config::capability;
use ramstream_spec::mapped_ram::{bitmap_len, HEADER_LEN, HEADER_VERSION};
use ramstream_spec::ram::RamFlags;
use ramstream_spec::stream::SectionType;

use ramstream_codec::{Configuration, Encoder, Event, SectionHeader};

/// One block of a hand-built mapped-ram file.
#[derive(Clone, Debug)]
pub struct MappedRamBlockSpec {
    /// The block's idstr.
    pub idstr: String,
    /// Its length in target pages.
    pub pages: u64,
    /// Pages whose bitmap bit is set (data from [`page_byte`]).
    pub present: Vec<u64>,
    /// Pages whose bit is clear but whose slot holds stale bytes (0xEE), which a reader must
    /// ignore.
    pub stale: Vec<u64>,
    /// `mr_addr` (written when the file has x-ignore-shared).
    pub mr_addr: u64,
    /// An x-ignore-shared block: header offsets 0, no regions (QEMU 11.0+).
    pub ignored: bool,
}

impl MappedRamBlockSpec {
    /// A block of `pages` pages with `present` set and nothing stale.
    pub fn new(idstr: &str, pages: u64, present: &[u64]) -> Self {
        MappedRamBlockSpec {
            idstr: idstr.into(),
            pages,
            present: present.to_vec(),
            stale: Vec::new(),
            mr_addr: 0,
            ignored: false,
        }
    }
}

/// Byte `k` of present page `page` of block `block` in a hand-built file: never zero.
pub fn page_byte(block: usize, page: u64, k: usize) -> u8 {
    (block as u8)
        .wrapping_mul(31)
        .wrapping_add((page as u8).wrapping_mul(7))
        .wrapping_add(k as u8)
        | 1
}

/// A hand-built mapped-ram file: header, configuration listing `mapped-ram` (and
/// `x-ignore-shared` when asked), `ram` START (section id 2) with MEM_SIZE and each block's
/// header and regions, EOS and footer, a PART and an END section holding only EOS, EOF.
#[derive(Clone, Debug)]
pub struct MappedRamFileSpec {
    /// The blocks.
    pub blocks: Vec<MappedRamBlockSpec>,
    /// Whether the configuration lists `x-ignore-shared` (MEM_SIZE then has `mr_addr`).
    pub ignore_shared: bool,
    /// What `pages_offset` is rounded up to (QEMU: 1 MiB; a loader needs only a page).
    pub alignment: u64,
    /// Bytes (0xF0) before the stream: the `offset=` of `file:PATH,offset=N`.
    pub file_offset: u64,
}

/// A built file and where its parts are.
#[derive(Clone, Debug)]
pub struct BuiltMappedRam {
    /// The whole file, `file_offset` bytes of prefix included.
    pub bytes: Vec<u8>,
    /// File offset of each block's header.
    pub headers: Vec<u64>,
    /// File offset of the PART section's EOS word (where a test may splice in a record).
    pub part_eos: u64,
}

impl BuiltMappedRam {
    /// The stream: the file without its prefix.
    pub fn stream(&self, file_offset: u64) -> &[u8] {
        &self.bytes[file_offset as usize..]
    }

    /// Overwrites the file bytes at file offset `at`.
    pub fn patch(&mut self, at: u64, bytes: &[u8]) {
        self.bytes[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }
}

/// The target page size of a hand-built file: x86's (SPEC.md §6.1), as a byte count.
pub const PAGE: u64 = ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as u64;

impl MappedRamFileSpec {
    /// Two small blocks (4 and 70 pages), 4 KiB alignment, no prefix: a few hundred KiB.
    pub fn small() -> Self {
        let mut b = MappedRamBlockSpec::new("pc.ram", 70, &[0, 1, 5, 63, 64, 69]);
        b.stale = vec![2, 68];
        MappedRamFileSpec {
            blocks: vec![MappedRamBlockSpec::new("pc.bios", 4, &[3]), b],
            ignore_shared: false,
            alignment: PAGE,
            file_offset: 0,
        }
    }

    /// Builds the file.
    pub fn build(&self) -> BuiltMappedRam {
        let mut f = vec![0xF0u8; self.file_offset as usize];
        let mut enc = Encoder::new(12);
        enc.header(&mut f);
        let mut caps = vec![capability::MAPPED_RAM];
        if self.ignore_shared {
            caps.push(capability::X_IGNORE_SHARED);
        }
        enc.event(
            &Event::Configuration(Configuration {
                machine_type: "pc-i440fx-10.0",
                target_page_bits: None,
                capabilities: Some(caps),
                uuid: None,
            }),
            &mut f,
        )
        .expect("configuration");
        enc.section_header(&SectionHeader::ram_start(2), &mut f)
            .expect("START");
        let total: u64 = self.blocks.iter().map(|b| b.pages * PAGE).sum();
        f.extend((total | RamFlags::MEM_SIZE.bits()).to_be_bytes());
        let mut headers = Vec::new();
        for (bi, b) in self.blocks.iter().enumerate() {
            let used = b.pages * PAGE;
            f.push(b.idstr.len() as u8);
            f.extend(b.idstr.as_bytes());
            f.extend(used.to_be_bytes());
            if self.ignore_shared {
                f.extend(b.mr_addr.to_be_bytes());
            }
            let at = f.len() as u64;
            headers.push(at);
            let bitmap_offset = at + HEADER_LEN as u64;
            let blen = bitmap_len(b.pages);
            let pages_offset = (bitmap_offset + blen).div_ceil(self.alignment) * self.alignment;
            let (bo, po) = if b.ignored {
                (0, 0)
            } else {
                (bitmap_offset, pages_offset)
            };
            f.extend(HEADER_VERSION.to_be_bytes());
            f.extend(PAGE.to_be_bytes());
            f.extend(bo.to_be_bytes());
            f.extend(po.to_be_bytes());
            if b.ignored {
                continue;
            }
            f.resize((pages_offset + used) as usize, 0);
            for &p in &b.present {
                f[(bitmap_offset + p / 8) as usize] |= 1 << (p % 8);
                let slot = (pages_offset + p * PAGE) as usize;
                for k in 0..PAGE as usize {
                    f[slot + k] = page_byte(bi, p, k);
                }
            }
            for &p in &b.stale {
                let slot = (pages_offset + p * PAGE) as usize;
                f[slot..slot + PAGE as usize].fill(0xEE);
            }
        }
        enc.eos(&mut f);
        enc.footer(2, &mut f);
        enc.section_part(SectionType::PART, 2, &mut f);
        let part_eos = f.len() as u64;
        enc.eos(&mut f);
        enc.footer(2, &mut f);
        enc.section_part(SectionType::END, 2, &mut f);
        enc.eos(&mut f);
        enc.footer(2, &mut f);
        enc.eof(&mut f);
        BuiltMappedRam {
            bytes: f,
            headers,
            part_eos,
        }
    }
}
