//! Writing a [`Plan`] with the canonical [`Encoder`] methods and checking what the decoder
//! makes of it.

use std::collections::BTreeMap;

use ramstream_codec::xbzrle::{self, Encoded};
use ramstream_codec::{
    apply_event, decode_all, BareRecord, Configuration, DecoderOptions, DeviceSection, Encoder,
    Event, PageAddr, RamBlock, RamImage, SectionHeader,
};
use ramstream_spec::config::capability;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::stream::SectionType;

use super::{Item, Plan};
use crate::fuzzing::{assert_same_run, decode_in_chunks, decode_whole, fuzz_limits, split_sizes};

impl Plan {
    pub(super) fn check(&self) {
        let ps = 1usize << self.page_bits;
        let caps = self
            .ignore_shared
            .then(|| vec![capability::X_IGNORE_SHARED]);
        let config = Configuration {
            machine_type: &self.machine_type,
            target_page_bits: self.send_page_bits.then_some(self.page_bits),
            capabilities: caps,
            uuid: self.uuid,
        };
        let ram_header = SectionHeader::ram_start(self.ram_id);
        let mut enc = Encoder::new(self.page_bits);
        let mut out = Vec::new();
        let mut expected: Vec<Event<'_>> = Vec::new();
        let mut deltas: Vec<Vec<u8>> = Vec::new();
        enc.header(&mut out);
        expected.push(Event::Header { version: 3 });
        enc.configuration(&config, &mut out).unwrap();
        expected.push(Event::Configuration(config.clone()));
        enc.section_header(&ram_header, &mut out).unwrap();
        expected.push(Event::SectionStart(ram_header));
        // First pass: make the deltas (owned), so events can borrow them after.
        for item in &self.items {
            if let Item::Xbzrle(_, old, new) = item {
                let mut d = vec![0u8; ps];
                match xbzrle::encode(old, new, &mut d).unwrap() {
                    // A delta the be16 length cannot carry is sent as a whole page too.
                    Encoded::Delta(n) if n <= usize::from(u16::MAX) => d.truncate(n),
                    Encoded::Delta(_) => d.clear(),
                    Encoded::Unchanged | Encoded::Overflow => d.clear(),
                }
                deltas.push(d);
            }
        }
        let mut deltas_it = deltas.iter();
        let mut last_block = None;
        let mut announced: Vec<String> = Vec::new();
        let cont = |last: &mut Option<usize>, addr: PageAddr| {
            let c = *last == Some(addr.block);
            *last = Some(addr.block);
            c
        };
        for item in &self.items {
            match item {
                Item::MemSize(blocks) => {
                    enc.mem_size(blocks, &mut out).unwrap();
                    let total: u64 = blocks.iter().map(|b| b.used_length).sum();
                    expected.push(Event::MemSize(ramstream_codec::MemSize {
                        word: total | RamFlags::MEM_SIZE.bits(),
                        blocks: blocks.clone(),
                        mapped_ram: Vec::new(),
                    }));
                    // The last block survives a new MEM_SIZE when its name is still
                    // announced (SPEC.md §6: CONTINUE keeps naming it).
                    last_block = last_block
                        .and_then(|i: usize| announced.get(i).cloned())
                        .and_then(|n: String| blocks.iter().position(|b| b.idstr == n));
                    announced = blocks.iter().map(|b| b.idstr.clone()).collect();
                }
                Item::Page(addr, data) => {
                    enc.page(*addr, data, &mut out).unwrap();
                    expected.push(Event::Page(ramstream_codec::PageRecord {
                        addr: *addr,
                        continued: cont(&mut last_block, *addr),
                        data,
                    }));
                }
                Item::Zero(addr, fill) => {
                    enc.zero(*addr, *fill, &mut out).unwrap();
                    expected.push(Event::Zero(ramstream_codec::ZeroPage {
                        addr: *addr,
                        continued: cont(&mut last_block, *addr),
                        fill: *fill,
                    }));
                }
                Item::Xbzrle(addr, _, new) => {
                    let d = deltas_it.next().unwrap();
                    if d.is_empty() {
                        // Unchanged or overflow: QEMU sends the page whole.
                        enc.page(*addr, new, &mut out).unwrap();
                        expected.push(Event::Page(ramstream_codec::PageRecord {
                            addr: *addr,
                            continued: cont(&mut last_block, *addr),
                            data: new,
                        }));
                    } else {
                        enc.xbzrle(*addr, d, &mut out).unwrap();
                        expected.push(Event::Xbzrle(ramstream_codec::XbzrleDelta {
                            addr: *addr,
                            continued: cont(&mut last_block, *addr),
                            delta: d,
                        }));
                    }
                }
                Item::MultifdFlush => {
                    let b = BareRecord {
                        word: RamFlags::X200.bits(),
                    };
                    enc.event(&Event::MultifdFlush(b), &mut out).unwrap();
                    expected.push(Event::MultifdFlush(b));
                }
                Item::Part(t) => {
                    enc.section_part(*t, self.ram_id, &mut out);
                    expected.push(Event::SectionPart {
                        section_type: *t,
                        section_id: self.ram_id,
                    });
                }
                Item::EndRam => {
                    enc.eos(&mut out);
                    expected.push(Event::Eos(BareRecord {
                        word: RamFlags::EOS.bits(),
                    }));
                    enc.footer(self.ram_id, &mut out);
                    expected.push(Event::Footer {
                        section_id: self.ram_id,
                    });
                }
                Item::Device {
                    section_id,
                    idstr,
                    instance_id,
                    version_id,
                    body,
                } => {
                    let header = SectionHeader {
                        section_type: SectionType::FULL,
                        section_id: *section_id,
                        idstr,
                        instance_id: *instance_id,
                        version_id: *version_id,
                    };
                    let d = DeviceSection {
                        header,
                        body_offset: 0,
                        body,
                    };
                    enc.device(&d, &mut out).unwrap();
                    enc.footer(*section_id, &mut out);
                    expected.push(Event::Device(d));
                    expected.push(Event::Footer {
                        section_id: *section_id,
                    });
                }
                Item::Command(c, payload) => {
                    enc.command(*c, payload, &mut out).unwrap();
                    expected.push(Event::Command(ramstream_codec::CommandRecord {
                        command: *c,
                        payload,
                    }));
                }
            }
        }
        enc.eof(&mut out);
        expected.push(Event::Eof);
        if let Some(j) = &self.vmdesc {
            enc.vmdesc(j, &mut out).unwrap();
            expected.push(Event::VmDescription(j));
        }

        let opts = DecoderOptions::default()
            .with_dialect(self.dialect)
            .with_limits(fuzz_limits());
        let events = decode_all(&out, opts.clone())
            .unwrap_or_else(|e| panic!("encoded stream does not decode: {e}"));
        let got: Vec<Event<'_>> = events
            .iter()
            .map(|(_, e)| match e {
                Event::Device(d) => Event::Device(DeviceSection {
                    body_offset: 0,
                    ..*d
                }),
                e => e.clone(),
            })
            .collect();
        assert_events_eq(
            &got,
            &expected,
            "decoded events differ from the records written",
        );
        for (at, e) in &events {
            if let Event::Device(d) = e {
                assert!(d.body_offset > *at);
            }
        }
        // Same events in chunks, and the bytes again from the decoded events.
        let split = decode_in_chunks(&out, opts.clone(), split_sizes(0x05));
        assert_same_run(&decode_whole(&out, opts.clone()), &split, "split");
        let again = ramstream_codec::transcode::reencode(
            &out,
            ramstream_codec::transcode::Mode::Verbatim,
            &opts,
        )
        .expect("verbatim re-encode");
        assert!(again == out, "verbatim re-encode differs");

        // The RAM the records build is the model's.
        let mut image = RamImage::new(ps);
        for (at, ev) in &events {
            if let Event::MemSize(ms) = ev {
                image.set_blocks(&ms.blocks);
            }
            if matches!(ev, Event::MultifdFlush(_)) {
                // Refused by design (its pages travel on other channels); nothing to build.
                continue;
            }
            apply_event(&mut image, ev, *at).expect("own XBZRLE delta does not apply");
        }
        let mut blocks_now = Vec::<RamBlock>::new();
        let mut state: BTreeMap<(String, u64), Vec<u8>> = BTreeMap::new();
        for item in &self.items {
            let (a, page) = match item {
                Item::MemSize(b) => {
                    blocks_now = b.clone();
                    state.retain(|(n, off), _| {
                        blocks_now
                            .iter()
                            .any(|b| &b.idstr == n && *off < b.used_length)
                    });
                    continue;
                }
                Item::Page(a, d) => (a, d.clone()),
                Item::Zero(a, f) => (a, vec![*f; ps]),
                Item::Xbzrle(a, _, n) => (a, n.clone()),
                _ => continue,
            };
            state.insert((blocks_now[a.block].idstr.clone(), a.offset), page);
        }
        for (bi, b) in image.blocks().iter().enumerate() {
            for (off, page) in b.pages() {
                let want = state
                    .get(&(b.idstr.clone(), off))
                    .cloned()
                    .unwrap_or_else(|| vec![0; ps]);
                assert!(
                    page == &want[..],
                    "block {bi} page {off:#x} differs from the model"
                );
            }
        }
        for ((name, off), want) in &state {
            let Some(bi) = image.blocks().iter().position(|b| &b.idstr == name) else {
                continue;
            };
            let got = image.page(PageAddr {
                block: bi,
                offset: *off,
            });
            assert!(
                got[..] == want[..],
                "{name} page {off:#x} differs from the model"
            );
        }
    }
}

/// Panics with the first differing event (each shown in at most 400 characters) when the two
/// lists differ: a whole stream's events are too long to read in a fuzzer's log.
fn assert_events_eq(got: &[Event<'_>], expected: &[Event<'_>], what: &str) {
    if got == expected {
        return;
    }
    let short = |e: Option<&Event<'_>>| {
        let mut s = format!("{e:?}");
        if s.len() > 400 {
            let mut cut = 400;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push_str("...");
        }
        s
    };
    let i = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    panic!(
        "{what}: {} events decoded, {} written; first difference at event {i}:\n  decoded: {}\n  written: {}",
        got.len(),
        expected.len(),
        short(got.get(i)),
        short(expected.get(i)),
    );
}
