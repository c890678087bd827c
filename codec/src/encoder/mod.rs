//! The encoder: records to bytes, page payloads referenced, not copied (SPEC.md §2–§7).
//!
//! It keeps what the wire needs across records (the announced blocks, the CONTINUE state)
//! and writes each record's word; the record families' own writers do the rest
//! (`balloon.rs` hands balloon records to [`crate::balloon`]'s).

mod balloon;

use ramstream_spec::config::{
    SUBSECTION_CAPABILITIES, SUBSECTION_TARGET_PAGE_BITS, SUBSECTION_UUID, SUBSECTION_VERSION,
};
use ramstream_spec::ram::{join_record_word, RamFlags, ZERO_RECORD_CONTINUED_LEN};
use ramstream_spec::stream::{SectionType, FILE_VERSION, QEVM_MAGIC};
use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;

use crate::addr::PageAddr;
use crate::error::{Error, ErrorKind};
use crate::event::{Configuration, DeviceSection, Event, SectionHeader};
use crate::ram::{MemSize, RamBlock};
use crate::sink::Sink;

/// Writes a stream record by record.
///
/// The encoder remembers what the wire needs across records: the block list (to write
/// idstrs) and the last block written (for CONTINUE). Given the same records it always
/// writes the same bytes; [`Encoder::event`] reproduces a decoded stream byte for byte.
#[derive(Clone, Debug)]
pub struct Encoder {
    page_bits: u32,
    blocks: Vec<String>,
    /// Used lengths of the announced blocks (balloon runs are checked against them).
    block_lengths: Vec<u64>,
    last_block: Option<usize>,
}

fn enc_err(reason: impl Into<String>) -> Error {
    Error::new(
        0,
        ErrorKind::Encode {
            reason: reason.into(),
        },
    )
}

/// The one-byte length of a counted name (idstr, subsection or capability name), or an
/// error naming `what` when it does not fit: the encoder never truncates a name.
fn counted_len(what: &str, name: &str) -> Result<u8, Error> {
    u8::try_from(name.len()).map_err(|_| {
        enc_err(format!(
            "{what} {:?} is {} bytes; a counted name holds at most 255",
            name.chars().take(32).collect::<String>(),
            name.len()
        ))
    })
}

impl Encoder {
    /// An encoder for a target with `page_bits` page bits (12 on x86).
    pub fn new(page_bits: u32) -> Self {
        Encoder {
            page_bits,
            blocks: Vec::new(),
            block_lengths: Vec::new(),
            last_block: None,
        }
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        1 << self.page_bits
    }

    /// Forgets the last block, so the next page record names its block.
    pub fn reset_continue(&mut self) {
        self.last_block = None;
    }

    /// `QEVM` and version 3.
    pub fn header<'a>(&mut self, s: &mut impl Sink<'a>) {
        s.put(&QEVM_MAGIC.to_be_bytes());
        s.put(&FILE_VERSION.to_be_bytes());
    }

    /// The configuration section, subsections in QEMU's order.
    ///
    /// Fails, writing nothing, when a capability name is longer than 255 bytes or the
    /// machine type longer than a be32 can count.
    pub fn configuration<'a>(
        &mut self,
        cfg: &Configuration<'_>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let machine_len = u32::try_from(cfg.machine_type.len())
            .map_err(|_| enc_err("machine type longer than 4 GiB"))?;
        let caps = cfg.capabilities.as_deref().unwrap_or_default();
        let cap_lens = caps
            .iter()
            .map(|c| counted_len("capability", c))
            .collect::<Result<Vec<u8>, Error>>()?;
        let cap_count =
            u32::try_from(caps.len()).map_err(|_| enc_err("more than 2^32 capabilities"))?;
        s.put(&[SectionType::CONFIGURATION.0]);
        s.put(&machine_len.to_be_bytes());
        s.put(cfg.machine_type.as_bytes());
        // The subsection names are the spec crate's constants, all shorter than 256 bytes.
        let sub = |s: &mut dyn FnMut(&[u8]), name: &str| {
            s(&[SectionType::SUBSECTION.0, name.len() as u8]);
            s(name.as_bytes());
            s(&SUBSECTION_VERSION.to_be_bytes());
        };
        let mut put = |b: &[u8]| s.put(b);
        if let Some(bits) = cfg.target_page_bits {
            sub(&mut put, SUBSECTION_TARGET_PAGE_BITS);
            put(&bits.to_be_bytes());
        }
        if cfg.capabilities.is_some() {
            sub(&mut put, SUBSECTION_CAPABILITIES);
            put(&cap_count.to_be_bytes());
            for (c, len) in caps.iter().zip(cap_lens) {
                put(&[len]);
                put(c.as_bytes());
            }
        }
        if let Some(uuid) = &cfg.uuid {
            sub(&mut put, SUBSECTION_UUID);
            put(uuid);
        }
        Ok(())
    }

    /// A command section.
    pub fn command<'a>(
        &mut self,
        command: ramstream_spec::stream::Command,
        payload: &'a [u8],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let len = u16::try_from(payload.len())
            .map_err(|_| enc_err("command payload longer than 65535 bytes"))?;
        s.put(&[SectionType::COMMAND.0]);
        s.put(&command.0.to_be_bytes());
        s.put(&len.to_be_bytes());
        s.put_payload(payload);
        Ok(())
    }

    /// A START or FULL section header. Fails, writing nothing, when the idstr is longer
    /// than 255 bytes.
    pub fn section_header<'a>(
        &mut self,
        h: &SectionHeader<'_>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let len = counted_len("section idstr", h.idstr)?;
        s.put(&[h.section_type.0]);
        s.put(&h.section_id.to_be_bytes());
        s.put(&[len]);
        s.put(h.idstr.as_bytes());
        s.put(&h.instance_id.to_be_bytes());
        s.put(&h.version_id.to_be_bytes());
        Ok(())
    }

    /// A PART or END section header.
    pub fn section_part<'a>(
        &mut self,
        section_type: SectionType,
        section_id: u32,
        s: &mut impl Sink<'a>,
    ) {
        s.put(&[section_type.0]);
        s.put(&section_id.to_be_bytes());
    }

    /// A section footer.
    pub fn footer<'a>(&mut self, section_id: u32, s: &mut impl Sink<'a>) {
        s.put(&[SectionType::FOOTER.0]);
        s.put(&section_id.to_be_bytes());
    }

    /// A MEM_SIZE record announcing `blocks` with the canonical word (total | MEM_SIZE).
    ///
    /// Fails, writing nothing, when an idstr is longer than 255 bytes or the total does not
    /// fit beside the flag bits.
    pub fn mem_size<'a>(
        &mut self,
        blocks: &[RamBlock],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let total = blocks
            .iter()
            .try_fold(0u64, |t, b| t.checked_add(b.used_length))
            .ok_or_else(|| enc_err("the blocks' used lengths add up to more than 2^64"))?;
        if total & ((1 << self.page_bits) - 1) != 0 {
            return Err(enc_err(format!(
                "the blocks' used lengths add up to {total:#x}, not a whole number of pages"
            )));
        }
        let ms = MemSize {
            word: join_record_word(total, RamFlags::MEM_SIZE),
            blocks: blocks.to_vec(),
            mapped_ram: Vec::new(),
        };
        self.mem_size_record(&ms, s)
    }

    /// A MEM_SIZE record exactly as given (raw word kept). Fails, writing nothing, when an
    /// idstr is longer than 255 bytes, or for the MEM_SIZE of a mapped-ram file: its block
    /// headers point at file regions (bitmaps, pages, never-written gaps) that are no part
    /// of the record, so a stream encoder cannot write it (SPEC.md §7.9).
    pub fn mem_size_record<'a>(
        &mut self,
        ms: &MemSize,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        if !ms.mapped_ram.is_empty() {
            return Err(enc_err(
                "a mapped-ram MEM_SIZE record: its block headers point at bitmap and page \
                 regions at fixed file offsets, which are no part of a stream",
            ));
        }
        let lens = ms
            .blocks
            .iter()
            .map(|b| counted_len("block idstr", &b.idstr))
            .collect::<Result<Vec<u8>, Error>>()?;
        s.put(&ms.word.to_be_bytes());
        for (b, len) in ms.blocks.iter().zip(lens) {
            s.put(&[len]);
            s.put(b.idstr.as_bytes());
            s.put(&b.used_length.to_be_bytes());
            if let Some(p) = b.page_size {
                s.put(&p.to_be_bytes());
            }
            if let Some(a) = b.mr_addr {
                s.put(&a.to_be_bytes());
            }
        }
        let last = self.last_block.and_then(|i| self.blocks.get(i)).cloned();
        self.blocks = ms.blocks.iter().map(|b| b.idstr.clone()).collect();
        self.block_lengths = ms.blocks.iter().map(|b| b.used_length).collect();
        self.last_block = last.and_then(|n| self.blocks.iter().position(|b| *b == n));
        Ok(())
    }

    /// The record word and, without CONTINUE, the idstr: page records and balloon v1 records
    /// share this and the last-block state (SPEC.md §9.7).
    fn page_word<'a>(
        &mut self,
        addr: PageAddr,
        flag: RamFlags,
        continued: Option<bool>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        let name = self
            .blocks
            .get(addr.block)
            .ok_or_else(|| enc_err(format!("block index {} not announced", addr.block)))?;
        if addr.offset & ((1 << self.page_bits) - 1) != 0 {
            return Err(enc_err(format!(
                "offset {:#x} not page aligned",
                addr.offset
            )));
        }
        let same = self.last_block == Some(addr.block);
        let cont = continued.unwrap_or(same);
        if cont && !same {
            return Err(enc_err("CONTINUE requested for a block change"));
        }
        let flags = if cont {
            flag | RamFlags::CONTINUE
        } else {
            flag
        };
        s.put(&join_record_word(addr.offset, flags).to_be_bytes());
        if !cont {
            // Checked by `mem_size_record` when the block was announced.
            s.put(&[name.len() as u8]);
            s.put(name.as_bytes());
        }
        self.last_block = Some(addr.block);
        Ok(())
    }

    /// A PAGE record; CONTINUE when the block is the previous record's (canonical).
    pub fn page<'a>(
        &mut self,
        addr: PageAddr,
        data: &'a [u8],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        if data.len() != self.page_size() {
            return Err(enc_err(format!("page of {} bytes", data.len())));
        }
        self.page_word(addr, RamFlags::PAGE, None, s)?;
        s.put_payload(data);
        Ok(())
    }

    /// A ZERO record.
    pub fn zero<'a>(
        &mut self,
        addr: PageAddr,
        fill: u8,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        self.page_word(addr, RamFlags::ZERO, None, s)?;
        s.put(&[fill]);
        Ok(())
    }

    /// `count` ZERO records for the consecutive pages from `first`, the same bytes as
    /// `count` calls of [`zero`](Self::zero), formatted a few hundred at a time into one
    /// [`Sink::put`] each: what an engine sends for a run of pages the guest never wrote.
    ///
    /// ```
    /// use ramstream_codec::{Encoder, PageAddr, RamBlock};
    /// let blocks = [RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None }];
    /// let (mut one, mut run) = (Encoder::new(12), Encoder::new(12));
    /// let (mut a, mut b) = (Vec::new(), Vec::new());
    /// one.mem_size(&blocks, &mut a).unwrap();
    /// run.mem_size(&blocks, &mut b).unwrap();
    /// for p in 0..100u64 {
    ///     one.zero(PageAddr { block: 0, offset: 0x1000 * p }, 0, &mut a).unwrap();
    /// }
    /// run.zeros(PageAddr { block: 0, offset: 0 }, 100, 0, &mut b).unwrap();
    /// assert_eq!(a, b);
    /// ```
    pub fn zeros<'a>(
        &mut self,
        first: PageAddr,
        count: u64,
        fill: u8,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        /// Records formatted per `put`.
        const PER_PUT: usize = 448;
        if count == 0 {
            return Ok(());
        }
        let ps = 1u64 << self.page_bits;
        let last = count
            .checked_sub(1)
            .and_then(|n| n.checked_mul(ps))
            .and_then(|n| n.checked_add(first.offset))
            .ok_or_else(|| enc_err(format!("{count} pages from {:#x} overflow", first.offset)))?;
        // The first record carries the idstr when the block changes; the rest continue.
        self.zero(first, fill, s)?;
        let word_flags = RamFlags::ZERO | RamFlags::CONTINUE;
        const LEN: usize = ZERO_RECORD_CONTINUED_LEN;
        let mut buf = [0u8; PER_PUT * LEN];
        let mut offset = first.offset;
        while offset < last {
            let mut n = 0;
            while n < PER_PUT && offset < last {
                offset += ps;
                let rec = &mut buf[n * LEN..(n + 1) * LEN];
                rec[..LEN - 1].copy_from_slice(&join_record_word(offset, word_flags).to_be_bytes());
                rec[LEN - 1] = fill;
                n += 1;
            }
            s.put(&buf[..n * LEN]);
        }
        Ok(())
    }

    /// An XBZRLE record carrying `delta`.
    pub fn xbzrle<'a>(
        &mut self,
        addr: PageAddr,
        delta: &'a [u8],
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        self.xbzrle_inner(addr, delta, None, s)
    }

    fn xbzrle_inner<'a>(
        &mut self,
        addr: PageAddr,
        delta: &'a [u8],
        continued: Option<bool>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        if delta.len() > self.page_size() {
            return Err(enc_err("XBZRLE delta longer than a page"));
        }
        // A 64 KiB page's delta can be 65536 bytes, which the be16 length cannot carry.
        let len = u16::try_from(delta.len())
            .map_err(|_| enc_err("XBZRLE delta longer than 65535 bytes"))?;
        self.page_word(addr, RamFlags::XBZRLE, continued, s)?;
        s.put(&[ENCODING_FLAG_XBZRLE]);
        s.put(&len.to_be_bytes());
        s.put_payload(delta);
        Ok(())
    }

    /// An EOS record.
    pub fn eos<'a>(&mut self, s: &mut impl Sink<'a>) {
        s.put(&RamFlags::EOS.bits().to_be_bytes());
    }

    /// A FULL device section's header and body (its footer is written by [`Encoder::footer`]).
    /// Fails, writing nothing, when the idstr is longer than 255 bytes.
    pub fn device<'a>(
        &mut self,
        d: &DeviceSection<'a>,
        s: &mut impl Sink<'a>,
    ) -> Result<(), Error> {
        self.section_header(&d.header, s)?;
        s.put_payload(d.body);
        Ok(())
    }

    /// The EOF section.
    pub fn eof<'a>(&mut self, s: &mut impl Sink<'a>) {
        s.put(&[SectionType::EOF.0]);
    }

    /// The VMDESCRIPTION trailer.
    pub fn vmdesc<'a>(&mut self, json: &'a [u8], s: &mut impl Sink<'a>) -> Result<(), Error> {
        let len = u32::try_from(json.len()).map_err(|_| enc_err("vmdesc longer than 4 GiB"))?;
        s.put(&[SectionType::VMDESCRIPTION.0]);
        s.put(&len.to_be_bytes());
        s.put_payload(json);
        Ok(())
    }

    /// Writes a decoded event back, losslessly: CONTINUE as the event says, raw words kept.
    ///
    /// ```
    /// use ramstream_codec::{decode_all, DecoderOptions, Encoder};
    /// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
    /// let mut enc = Encoder::new(12);
    /// let mut out = Vec::new();
    /// for (_, ev) in decode_all(stream, DecoderOptions::default()).unwrap() {
    ///     enc.event(&ev, &mut out).unwrap();
    /// }
    /// assert_eq!(out, stream);
    /// ```
    pub fn event<'a>(&mut self, ev: &Event<'a>, s: &mut impl Sink<'a>) -> Result<(), Error> {
        match ev {
            Event::Header { version } => {
                s.put(&QEVM_MAGIC.to_be_bytes());
                s.put(&version.to_be_bytes());
            }
            Event::Configuration(c) => self.configuration(c, s)?,
            Event::Command(c) => self.command(c.command, c.payload, s)?,
            Event::SectionStart(h) => self.section_header(h, s)?,
            Event::SectionPart {
                section_type,
                section_id,
            } => self.section_part(*section_type, *section_id, s),
            Event::MemSize(ms) => self.mem_size_record(ms, s)?,
            Event::Page(p) => {
                self.page_word(p.addr, RamFlags::PAGE, Some(p.continued), s)?;
                s.put_payload(p.data);
            }
            Event::Zero(z) => {
                self.page_word(z.addr, RamFlags::ZERO, Some(z.continued), s)?;
                s.put(&[z.fill]);
            }
            Event::Xbzrle(x) => self.xbzrle_inner(x.addr, x.delta, Some(x.continued), s)?,
            Event::Eos(b) | Event::MultifdFlush(b) => s.put(&b.word.to_be_bytes()),
            Event::Balloon(b) => self.balloon_record(b, s)?,
            Event::Footer { section_id } => self.footer(*section_id, s),
            Event::Device(d) => self.device(d, s)?,
            Event::Eof => self.eof(s),
            Event::VmDescription(j) => self.vmdesc(j, s)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(idstr: String, used_length: u64) -> RamBlock {
        RamBlock {
            idstr,
            used_length,
            page_size: None,
            mr_addr: None,
        }
    }

    fn assert_encode_error(r: Result<(), Error>, needle: &str) {
        match r {
            Err(Error {
                kind: ErrorKind::Encode { reason },
                ..
            }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected an Encode error with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_zero_run_is_the_records_one_by_one_across_puts_and_block_changes() {
        let blocks = [
            block("pc.ram".into(), 1 << 30),
            block("ram1".into(), 1 << 20),
        ];
        let (mut one, mut run) = (Encoder::new(12), Encoder::new(12));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        one.mem_size(&blocks, &mut a).unwrap();
        run.mem_size(&blocks, &mut b).unwrap();
        // A run longer than one put's worth, after a record of another block (the first
        // record of the run carries its idstr), with a fill byte.
        for (block, first, count, fill) in
            [(1, 0, 3, 0), (0, 0x5000, 1000, 7), (0, 0x40_0000, 1, 0)]
        {
            for p in 0..count {
                one.zero(
                    PageAddr {
                        block,
                        offset: first + 0x1000 * p,
                    },
                    fill,
                    &mut a,
                )
                .unwrap();
            }
            run.zeros(
                PageAddr {
                    block,
                    offset: first,
                },
                count,
                fill,
                &mut b,
            )
            .unwrap();
        }
        assert_eq!(a, b);
        // Nothing for an empty run; a run past the address space is refused.
        run.zeros(
            PageAddr {
                block: 0,
                offset: 0,
            },
            0,
            0,
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_encode_error(
            run.zeros(
                PageAddr {
                    block: 0,
                    offset: !0xfff,
                },
                2,
                0,
                &mut b,
            ),
            "overflow",
        );
    }

    #[test]
    fn a_name_longer_than_255_bytes_is_refused_not_truncated() {
        let long = "x".repeat(256);
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        assert_encode_error(
            enc.mem_size(
                &[block("pc.ram".into(), 4096), block(long.clone(), 4096)],
                &mut out,
            ),
            "block idstr",
        );
        let header = SectionHeader {
            section_type: SectionType::FULL,
            section_id: 1,
            idstr: &long,
            instance_id: 0,
            version_id: 1,
        };
        assert_encode_error(enc.section_header(&header, &mut out), "section idstr");
        let cfg = Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: Some(vec!["xbzrle", &long]),
            uuid: None,
        };
        assert_encode_error(enc.configuration(&cfg, &mut out), "capability");
        assert!(out.is_empty(), "a refused record wrote {} bytes", out.len());
        // The failed MEM_SIZE announced nothing.
        let addr = PageAddr {
            block: 0,
            offset: 0,
        };
        assert_encode_error(enc.zero(addr, 0, &mut out), "not announced");

        // 255 bytes is the longest that fits, and it decodes back.
        let max = "y".repeat(255);
        enc.mem_size(&[block(max.clone(), 4096)], &mut out).unwrap();
        assert_eq!(out[8], 255);
        assert_eq!(&out[9..9 + 255], max.as_bytes());
    }

    #[test]
    fn a_mem_size_total_that_overflows_or_is_not_whole_pages_is_refused() {
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        assert_encode_error(
            enc.mem_size(
                &[block("a".into(), u64::MAX - 4095), block("b".into(), 8192)],
                &mut out,
            ),
            "more than 2^64",
        );
        assert_encode_error(
            enc.mem_size(&[block("a".into(), 4096 + 512)], &mut out),
            "whole number of pages",
        );
        assert!(out.is_empty());
    }
}
