//! Test doubles and helpers shared by this crate's tests: a guarded in-memory `GuestRam`,
//! a small stream builder over the codec's `Encoder`, a split-feeding driver, and the golden
//! vectors.

#![allow(dead_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::{
    BareRecord, Configuration, DecoderOptions, DeviceSection, Encoder, Event, PageAddr, RamBlock,
    SectionHeader,
};
use ramstream_conformance_vectors::Vector;
use ramstream_migrate::{Error, GuestRam, Loader, LoaderEvent, LoaderOptions, RamBlockLayout};
use ramstream_spec::ram::RamFlags;
use ramstream_spec::stream::SectionType;
use sha2::{Digest, Sha256};

/// Bytes of guard before and after each block's memory, and their pattern.
const GUARD: usize = 4096;
const GUARD_BYTE: u8 = 0xa5;

/// Why [`VecRam`] refused an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VecRamError {
    /// No such block.
    NoBlock(PageAddr),
    /// The span leaves the block.
    OutOfBlock(PageAddr, usize),
    /// A strict double saw an access that is not one whole, aligned page.
    NotAPage(PageAddr, usize),
    /// The test asked for this access to fail.
    Injected(PageAddr),
}

impl fmt::Display for VecRamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for VecRamError {}

/// Guest RAM in vectors with guard zones around every block, counting accesses. In strict
/// mode every access must be one whole page at a page-aligned offset (what the loader
/// promises).
#[derive(Debug)]
pub struct VecRam {
    layout: Vec<RamBlockLayout>,
    blocks: Vec<Mutex<Vec<u8>>>,
    page_size: usize,
    strict: bool,
    fail_write: Option<PageAddr>,
    fail_zero: Option<PageAddr>,
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub zeroes: AtomicU64,
}

impl VecRam {
    /// Zeroed blocks of `layout`, strict, 4 KiB pages.
    pub fn new(layout: &[RamBlockLayout]) -> Self {
        VecRam {
            layout: layout.to_vec(),
            blocks: layout
                .iter()
                .map(|b| {
                    let mut v = vec![GUARD_BYTE; b.used_length() as usize + 2 * GUARD];
                    v[GUARD..GUARD + b.used_length() as usize].fill(0);
                    Mutex::new(v)
                })
                .collect(),
            page_size: ramstream_spec::ram::TARGET_PAGE_SIZE_X86,
            strict: true,
            fail_write: None,
            fail_zero: None,
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            zeroes: AtomicU64::new(0),
        }
    }

    /// The blocks of a vector's manifest.
    pub fn for_manifest(v: &Vector) -> Self {
        VecRam::new(&layout_of(v))
    }

    /// Makes the write at `addr` fail.
    pub fn failing_write_at(mut self, addr: PageAddr) -> Self {
        self.fail_write = Some(addr);
        self
    }

    /// Makes zeroing the page at `addr` fail.
    pub fn failing_zero_at(mut self, addr: PageAddr) -> Self {
        self.fail_zero = Some(addr);
        self
    }

    /// Fills block `block` with `byte` (memory that holds data before the stream).
    pub fn prefill(&self, block: usize, byte: u8) {
        let len = self.layout[block].used_length() as usize;
        self.blocks[block].lock().unwrap()[GUARD..GUARD + len].fill(byte);
    }

    fn span(&self, addr: PageAddr, len: usize) -> Result<std::ops::Range<usize>, VecRamError> {
        let block = self
            .layout
            .get(addr.block)
            .ok_or(VecRamError::NoBlock(addr))?;
        if self.strict && (len != self.page_size || !addr.is_page_aligned(self.page_size)) {
            return Err(VecRamError::NotAPage(addr, len));
        }
        let end = addr.offset.checked_add(len as u64);
        if end.is_none_or(|e| e > block.used_length()) {
            return Err(VecRamError::OutOfBlock(addr, len));
        }
        let start = GUARD + addr.offset as usize;
        Ok(start..start + len)
    }

    /// Block `i`'s contents.
    pub fn contents(&self, i: usize) -> Vec<u8> {
        let len = self.layout[i].used_length() as usize;
        self.blocks[i].lock().unwrap()[GUARD..GUARD + len].to_vec()
    }

    /// Block `i`'s sha256, hex.
    pub fn sha256(&self, i: usize) -> String {
        let len = self.layout[i].used_length() as usize;
        hex::encode(Sha256::digest(
            &self.blocks[i].lock().unwrap()[GUARD..GUARD + len],
        ))
    }

    /// Every block's sha256, by idstr.
    pub fn digests(&self) -> Vec<(String, String)> {
        (0..self.layout.len())
            .map(|i| (self.layout[i].idstr().to_string(), self.sha256(i)))
            .collect()
    }

    /// Panics if a guard zone was touched.
    pub fn check_guards(&self) {
        for (i, b) in self.blocks.iter().enumerate() {
            let b = b.lock().unwrap();
            let len = b.len();
            assert!(
                b[..GUARD]
                    .iter()
                    .chain(&b[len - GUARD..])
                    .all(|&x| x == GUARD_BYTE),
                "guard of block {i} touched"
            );
        }
    }
}

impl GuestRam for VecRam {
    type Error = VecRamError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.layout
    }

    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), VecRamError> {
        let r = self.span(addr, buf.len())?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        buf.copy_from_slice(&self.blocks[addr.block].lock().unwrap()[r]);
        Ok(())
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), VecRamError> {
        if self.fail_write == Some(addr) {
            return Err(VecRamError::Injected(addr));
        }
        let r = self.span(addr, data.len())?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.blocks[addr.block].lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }

    fn zero_page(&self, addr: PageAddr, len: usize) -> Result<(), VecRamError> {
        if self.fail_zero == Some(addr) {
            return Err(VecRamError::Injected(addr));
        }
        let r = self.span(addr, len)?;
        self.zeroes.fetch_add(1, Ordering::Relaxed);
        self.blocks[addr.block].lock().unwrap()[r].fill(0);
        Ok(())
    }
}

/// A RAM block of the codec's MEM_SIZE list.
pub fn block(idstr: &str, used_length: u64) -> RamBlock {
    RamBlock {
        idstr: idstr.into(),
        used_length,
        page_size: None,
        mr_addr: None,
    }
}

/// Writes small streams record by record.
pub struct StreamBuilder {
    pub enc: Encoder,
    pub out: Vec<u8>,
}

impl StreamBuilder {
    /// Header and configuration (`pc-i440fx-7.2`, with `caps` and `page_bits` if given).
    pub fn new(caps: Option<Vec<&str>>, page_bits: Option<u32>) -> Self {
        let mut b = StreamBuilder {
            enc: Encoder::new(page_bits.unwrap_or(12)),
            out: Vec::new(),
        };
        b.enc.header(&mut b.out);
        b.enc
            .configuration(
                &Configuration {
                    machine_type: "pc-i440fx-7.2",
                    target_page_bits: page_bits,
                    capabilities: caps,
                    uuid: None,
                },
                &mut b.out,
            )
            .unwrap();
        b
    }

    /// The `ram` START section (id 2) with MEM_SIZE.
    pub fn ram_start(&mut self, blocks: &[RamBlock]) -> &mut Self {
        self.enc
            .section_header(&SectionHeader::ram_start(2), &mut self.out)
            .unwrap();
        self.enc.mem_size(blocks, &mut self.out).unwrap();
        self
    }

    /// A PART section header for the `ram` section.
    pub fn part(&mut self) -> &mut Self {
        self.enc.section_part(SectionType::PART, 2, &mut self.out);
        self
    }

    /// A later MEM_SIZE record (inside the current section).
    pub fn mem_size(&mut self, blocks: &[RamBlock]) -> &mut Self {
        self.enc.mem_size(blocks, &mut self.out).unwrap();
        self
    }

    /// The address of page `page` of `block`, in the stream's pages.
    fn addr(&self, block: usize, page: u64) -> PageAddr {
        PageAddr::of_page(block, page, self.enc.page_size())
    }

    pub fn page(&mut self, block: usize, page: u64, data: &[u8]) -> &mut Self {
        let addr = self.addr(block, page);
        let mut v = Vec::new();
        self.enc.page(addr, data, &mut v).unwrap();
        self.out.extend_from_slice(&v);
        self
    }

    pub fn zero(&mut self, block: usize, page: u64, fill: u8) -> &mut Self {
        let addr = self.addr(block, page);
        self.enc.zero(addr, fill, &mut self.out).unwrap();
        self
    }

    pub fn xbzrle(&mut self, block: usize, page: u64, delta: &[u8]) -> &mut Self {
        let addr = self.addr(block, page);
        let mut v = Vec::new();
        self.enc.xbzrle(addr, delta, &mut v).unwrap();
        self.out.extend_from_slice(&v);
        self
    }

    /// A ramstream balloon v1 record (the stream must announce the capability).
    pub fn balloon(
        &mut self,
        block: usize,
        kind: BalloonMapKind,
        inflate: &[PageRun],
    ) -> &mut Self {
        self.enc
            .balloon_v1(block, kind, inflate, &[], &mut self.out)
            .unwrap();
        self
    }

    pub fn multifd_flush(&mut self) -> &mut Self {
        let ev = Event::MultifdFlush(BareRecord {
            word: RamFlags::MULTIFD_FLUSH.bits(),
        });
        self.enc.event(&ev, &mut self.out).unwrap();
        self
    }

    /// EOS and the section footer.
    pub fn end_part(&mut self) -> &mut Self {
        self.enc.eos(&mut self.out);
        self.enc.footer(2, &mut self.out);
        self
    }

    /// A FULL device section (id `id`) with its footer.
    pub fn device(&mut self, id: u32, idstr: &str, body: &[u8]) -> &mut Self {
        let d = DeviceSection {
            header: SectionHeader {
                section_type: SectionType::FULL,
                section_id: id,
                idstr,
                instance_id: 0,
                version_id: 1,
            },
            body_offset: 0,
            body,
        };
        let mut v = Vec::new();
        self.enc.device(&d, &mut v).unwrap();
        self.enc.footer(id, &mut v);
        self.out.extend_from_slice(&v);
        self
    }

    pub fn eof(&mut self) -> &mut Self {
        self.enc.eof(&mut self.out);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.out.clone()
    }
}

/// The RAM blocks of a vector's manifest, as a guest holds them.
pub fn layout_of(v: &Vector) -> Vec<RamBlockLayout> {
    (v.manifest.blocks.iter())
        .map(|b| RamBlockLayout::new(b.idstr.clone(), b.used_length))
        .collect()
}

/// The decoder options a vector's manifest asks for.
pub fn options_for(v: &Vector) -> LoaderOptions {
    LoaderOptions::default().with_decoder(
        DecoderOptions::default().with_dialect(v.dialect().expect("manifest dialect")),
    )
}

/// Whether a vector is a mapped-ram file (which a streaming loader refuses).
pub fn is_mapped_ram(v: &Vector) -> bool {
    v.manifest
        .capabilities
        .get("mapped-ram")
        .copied()
        .unwrap_or(false)
}

/// The vectors named, with their streams.
pub fn vectors(names: &[&str]) -> Vec<(Vector, Vec<u8>)> {
    names
        .iter()
        .map(|n| {
            let v = ramstream_conformance_vectors::vector(n).expect("the vector loads");
            let s = v.stream().expect("stream matches its manifest");
            (v, s)
        })
        .collect()
}

/// A short, comparable description of a loader event.
pub fn fingerprint(offset: u64, e: &LoaderEvent<'_>) -> String {
    match e {
        LoaderEvent::Device(d) => format!(
            "{offset}: device {} {} v{} {} bytes {}",
            d.idstr,
            d.instance_id,
            d.version_id,
            d.body.len(),
            &hex::encode(Sha256::digest(d.body))[..16]
        ),
        LoaderEvent::VmDescription(j) => {
            format!(
                "{offset}: vmdesc {} bytes {}",
                j.len(),
                &hex::encode(Sha256::digest(j))[..16]
            )
        }
        other => format!("{offset}: {other:?}"),
    }
}

/// Feeds `stream` to `loader`, making `chunk()` more bytes available each time it asks
/// for more; calls `finish` once all bytes are available; answers `RamNeeded` with
/// `make_ram`. Returns the events' fingerprints (with the stream offset where each ends) up
/// to `Done`.
pub fn drive<R: GuestRam>(
    loader: &mut Loader<R>,
    stream: &[u8],
    mut chunk: impl FnMut() -> usize,
    mut make_ram: impl FnMut(&[RamBlockLayout]) -> R,
) -> Result<Vec<String>, Error> {
    let (mut pos, mut avail) = (0usize, 0usize);
    let mut events = Vec::new();
    loop {
        if avail == stream.len() {
            loader.finish();
        }
        let p = loader.handle(&stream[pos..avail])?;
        pos += p.consumed;
        // The end of the event's record: the same whatever the split.
        let at = loader.offset();
        match p.event {
            None => {
                assert!(avail < stream.len(), "a finished loader asked for more");
                avail = (avail + chunk().max(1)).min(stream.len());
            }
            Some(LoaderEvent::Done) => return Ok(events),
            Some(LoaderEvent::RamNeeded(blocks)) => {
                events.push(fingerprint(at, &LoaderEvent::RamNeeded(blocks.clone())));
                loader.provide_ram(make_ram(&blocks))?;
            }
            Some(e) => events.push(fingerprint(at, &e)),
        }
    }
}

/// Feeds the whole stream at once.
pub fn drive_whole<R: GuestRam>(
    loader: &mut Loader<R>,
    stream: &[u8],
    make_ram: impl FnMut(&[RamBlockLayout]) -> R,
) -> Result<Vec<String>, Error> {
    let len = stream.len();
    drive(loader, stream, || len, make_ram)
}

/// Loads a whole stream into a fresh `VecRam` made from MEM_SIZE.
pub fn load_into_vec_ram(stream: &[u8], opts: LoaderOptions) -> Result<VecRam, Error> {
    let mut loader = Loader::without_ram(opts);
    drive_whole(&mut loader, stream, VecRam::new)?;
    Ok(loader.into_ram().expect("ram was provided"))
}
