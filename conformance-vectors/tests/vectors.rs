//! Every golden vector against the codec: decode, QEMU's RAM, splits, byte-exact re-encoding.

use ramstream_codec::mapped_ram::{MappedRamFile, MappedRamSummary};
use ramstream_codec::summary::StreamSummary;
use ramstream_codec::transcode::{self, Mode};
use ramstream_codec::{decode_all, Decoder, DecoderOptions, Event, MappedRam, Status};
use ramstream_conformance_vectors::{all, Vector};

fn options(v: &Vector) -> DecoderOptions {
    let dialect = v.dialect().expect("manifest dialect");
    // mapped-ram files are read as such (SPEC.md §7.9); streams are unaffected.
    DecoderOptions::default()
        .with_dialect(dialect)
        .with_mapped_ram(if v.is_mapped_ram() {
            MappedRam::Read
        } else {
            MappedRam::Refuse
        })
}

fn vectors() -> Vec<(Vector, Vec<u8>)> {
    let vs = all().expect("vectors load");
    assert!(
        vs.len() >= 7,
        "expected the recorded vectors, found {}",
        vs.len()
    );
    vs.into_iter()
        .map(|v| {
            let s = v.stream().expect("stream matches its manifest");
            (v, s)
        })
        .collect()
}

fn summary(bytes: &[u8], opts: DecoderOptions) -> StreamSummary {
    let mut s = StreamSummary::default();
    for (o, e) in decode_all(bytes, opts).unwrap() {
        s.observe(o, &e);
    }
    s.stream_len = bytes.len() as u64;
    s
}

#[test]
fn every_vector_rebuilds_exactly_qemus_ram() {
    for (v, bytes) in vectors() {
        if v.manifest.multifd.is_some() {
            // The main stream of a multifd recording does not hold the RAM (the pages are in
            // its channel files); the multifd decoder's tests rebuild these vectors.
            continue;
        }
        let image = transcode::rebuild(&bytes, &options(&v))
            .unwrap_or_else(|e| panic!("{}: {e}", v.manifest.name));
        let s = summary(&bytes, options(&v));
        eprintln!(
            "{}: {} bytes, {} ram sections ({} PART), {} PAGE, {} ZERO, {} XBZRLE, {} CONTINUE, {} devices, {} blocks",
            v.manifest.name,
            bytes.len(),
            s.ram.sections,
            s.ram.part_sections,
            s.ram.records.page,
            s.ram.records.zero,
            s.ram.records.xbzrle,
            s.ram.records.continued,
            s.devices.len(),
            image.blocks().len()
        );
        if v.manifest.hand_built {
            continue;
        }
        assert!(
            !v.manifest.blocks.is_empty(),
            "{}: no blocks",
            v.manifest.name
        );
        let names: Vec<_> = image.blocks().iter().map(|b| b.idstr.clone()).collect();
        let expected: Vec<_> = v.manifest.blocks.iter().map(|b| b.idstr.clone()).collect();
        assert_eq!(names, expected, "{}: block list", v.manifest.name);
        for (i, b) in v.manifest.blocks.iter().enumerate() {
            assert_eq!(image.blocks()[i].used_length, b.used_length);
            assert_eq!(
                hex::encode(image.sha256(i)),
                b.sha256,
                "{}: block {} differs from QEMU's",
                v.manifest.name,
                b.idstr
            );
        }
        assert_eq!(
            s.vmdesc_len.is_some(),
            v.manifest.has_vmdesc.unwrap_or(true),
            "{}: vmdesc presence",
            v.manifest.name
        );
    }
}

#[test]
fn decode_then_encode_gives_back_the_input() {
    for (v, bytes) in vectors() {
        if v.is_mapped_ram() {
            // Not a stream: the bitmaps and pages are file regions, not records, so the
            // records cannot give the file back; re-encoding is refused (SPEC.md §7.9).
            let e = transcode::reencode(&bytes, Mode::Verbatim, &options(&v)).unwrap_err();
            assert!(
                e.to_string().contains("--from-ram"),
                "{}: {e}",
                v.manifest.name
            );
            eprintln!("{}: verbatim re-encoding refused: {e}", v.manifest.name);
            continue;
        }
        let out = transcode::reencode(&bytes, Mode::Verbatim, &options(&v)).unwrap();
        assert!(out == bytes, "{}: re-encoding differs", v.manifest.name);
    }
}

#[test]
fn recomputed_xbzrle_records_equal_qemus() {
    let mut records = 0;
    for (v, bytes) in vectors() {
        let s = summary(&bytes, options(&v));
        if s.ram.records.xbzrle == 0 {
            continue;
        }
        records += s.ram.records.xbzrle;
        let out = transcode::reencode(&bytes, Mode::RecomputeXbzrle, &options(&v))
            .unwrap_or_else(|e| panic!("{}: {e}", v.manifest.name));
        assert!(
            out == bytes,
            "{}: our XBZRLE bytes differ from QEMU's",
            v.manifest.name
        );
    }
    eprintln!("re-encoded {records} QEMU XBZRLE records byte for byte");
    assert!(
        records > 100,
        "the live vectors should carry XBZRLE records"
    );
}

#[test]
fn from_ram_reencoding_rebuilds_the_same_ram() {
    for (v, bytes) in vectors() {
        if v.manifest.hand_built {
            continue;
        }
        if v.manifest.multifd.is_some() {
            // A multifd main stream alone does not hold the RAM (rebuilding it is refused);
            // the multifd decoder's tests cover these vectors.
            continue;
        }
        let out = transcode::reencode(&bytes, Mode::FromRam, &options(&v)).unwrap();
        let a = transcode::rebuild(&bytes, &options(&v)).unwrap();
        let b = transcode::rebuild(&out, &options(&v)).unwrap();
        for i in 0..a.blocks().len() {
            assert_eq!(a.sha256(i), b.sha256(i), "{}", v.manifest.name);
        }
    }
}

/// An event with payloads replaced by their length and a cheap checksum.
fn fingerprint(e: &Event<'_>) -> String {
    let sum = |b: &[u8]| b.iter().fold(0u64, |a, x| a.rotate_left(5) ^ *x as u64);
    match e {
        Event::Page(p) => format!("Page {:?} {} {:x}", p.addr, p.continued, sum(p.data)),
        Event::Xbzrle(x) => format!("Xbzrle {:?} {} {:x}", x.addr, x.continued, sum(x.delta)),
        Event::Device(d) => format!("Device {:?} {} {:x}", d.header, d.body.len(), sum(d.body)),
        Event::VmDescription(j) => format!("VmDescription {} {:x}", j.len(), sum(j)),
        other => format!("{other:?}"),
    }
}

fn one_shot(bytes: &[u8], opts: DecoderOptions) -> Vec<String> {
    decode_all(bytes, opts)
        .unwrap()
        .iter()
        .map(|(o, e)| format!("{o} {}", fingerprint(e)))
        .collect()
}

fn fed(bytes: &[u8], opts: DecoderOptions, mut chunk: impl FnMut() -> usize) -> Vec<String> {
    let mut dec = Decoder::new(opts);
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::new();
    loop {
        let at = dec.offset();
        match dec.decode(&bytes[start..end]).unwrap() {
            Status::Event { event, consumed } => {
                out.push(format!("{at} {}", fingerprint(&event)));
                start += consumed;
            }
            Status::NeedMore { .. } => {
                assert!(end < bytes.len(), "wants more after the whole input");
                end = (end + chunk().max(1)).min(bytes.len());
                if end == bytes.len() {
                    dec.finish();
                }
            }
            Status::Done => break,
        }
    }
    assert_eq!(start, bytes.len());
    out
}

#[test]
fn every_byte_boundary_of_the_small_vectors() {
    let mut tested = 0;
    for (v, bytes) in vectors() {
        if bytes.len() > 2 << 20 {
            continue;
        }
        let expected = one_shot(&bytes, options(&v));
        assert_eq!(
            fed(&bytes, options(&v), || 1),
            expected,
            "{}",
            v.manifest.name
        );
        tested += 1;
    }
    eprintln!("fed {tested} vectors one byte at a time");
    assert!(tested >= 5);
}

#[test]
fn random_splits_of_every_vector() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut runs = 0;
    for (v, bytes) in vectors() {
        let expected = one_shot(&bytes, options(&v));
        for round in 0..8 {
            let max = [7usize, 100, 4096, 4200, 65536, 1 << 20, 13, 9000][round];
            // A mapped-ram file's MEM_SIZE record spans its block regions (64 to 134 MiB
            // here), which small chunks would feed in millions of calls; small splits of a
            // mapped-ram file are tested on hand-built files in codec/tests/mapped_ram.rs.
            if v.is_mapped_ram() && max < 65536 {
                continue;
            }
            let got = fed(&bytes, options(&v), || rng.random_range(1..=max));
            assert_eq!(got, expected, "{} round {round}", v.manifest.name);
            runs += 1;
        }
    }
    eprintln!("{runs} random-split decodes matched one-shot decoding");
}

/// A mapped-ram file's snapshot: the stream summary and the file's layout, as
/// `ramstream inspect --json` shows them.
#[derive(serde::Serialize)]
struct MappedRamSnapshot<'a> {
    #[serde(flatten)]
    summary: &'a StreamSummary,
    mapped_ram: MappedRamSummary,
}

#[test]
fn decoded_summaries_match_snapshots() {
    for (v, bytes) in vectors() {
        let s = summary(&bytes, options(&v));
        if v.is_mapped_ram() {
            let file = MappedRamFile::parse(&bytes, &options(&v)).unwrap();
            let snap = MappedRamSnapshot {
                summary: &s,
                mapped_ram: MappedRamSummary::of(file.blocks()),
            };
            insta::assert_json_snapshot!(v.manifest.name.clone(), snap);
            continue;
        }
        insta::assert_json_snapshot!(v.manifest.name.clone(), s);
    }
}

/// The mapped-ram recordings (QEMU 10.0 and 11.1, `migrate file:` with capability
/// mapped-ram) hold what SPEC.md §7.9 says QEMU writes, and read exactly: every block's
/// header, its 1 MiB-aligned regions, the seek to the next entry, no page record, and as
/// many pages present as the source sent (`normal`), the rest zero (`duplicate`).
#[test]
fn mapped_ram_files_are_read_as_qemu_wrote_them() {
    use ramstream_spec::mapped_ram::{bitmap_len, FILE_OFFSET_ALIGNMENT, HEADER_LEN};
    let mut files = 0;
    for (v, bytes) in vectors() {
        if !v.is_mapped_ram() {
            continue;
        }
        let name = &v.manifest.name;
        files += 1;
        // The stream decoder refuses it unless told it reads a file, and says how.
        let e = decode_all(&bytes, DecoderOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("ramstream inspect FILE"),
            "{name}: {e}"
        );
        let file = MappedRamFile::parse(&bytes, &options(&v)).unwrap();
        assert!(MappedRamFile::announced(&bytes, &Default::default()));
        let names: Vec<_> = file
            .blocks()
            .iter()
            .map(|b| b.block.idstr.clone())
            .collect();
        let expected: Vec<_> = v.manifest.blocks.iter().map(|b| b.idstr.clone()).collect();
        assert_eq!(names, expected, "{name}");
        let (mut present, mut absent) = (0, 0);
        let mut next_entry = None;
        for b in file.blocks() {
            let h = &b.header;
            assert_eq!(
                (h.version, h.page_size),
                (1, 4096),
                "{name} {}",
                b.block.idstr
            );
            if let Some(n) = next_entry {
                // The entry's header comes right after its idstr, used_length and mr_addr.
                let entry =
                    1 + b.block.idstr.len() as u64 + 8 + 8 * b.block.mr_addr.is_some() as u64;
                assert_eq!(h.offset, n + entry, "{name} {}", b.block.idstr);
            }
            next_entry = h.next_entry(b.block.used_length);
            if b.is_ignored() {
                // QEMU 11.0+: x-ignore-shared leaves the block out, offsets 0, no seek.
                assert_eq!((h.bitmap_offset, h.pages_offset), (0, 0));
                assert_eq!(next_entry, Some(h.offset + HEADER_LEN as u64));
                continue;
            }
            let pages = b.page_count();
            assert_eq!(h.bitmap_offset, h.offset + HEADER_LEN as u64, "{name}");
            assert_eq!(
                h.pages_offset,
                (h.bitmap_offset + bitmap_len(pages)).next_multiple_of(FILE_OFFSET_ALIGNMENT),
                "{name} {}",
                b.block.idstr
            );
            present += b.present_count();
            absent += pages - b.present_count();
        }
        let ram = &v.manifest.query_migrate["ram"];
        assert_eq!(
            Some(present),
            ram["normal"].as_u64(),
            "{name}: pages present"
        );
        assert_eq!(
            Some(absent),
            ram["duplicate"].as_u64(),
            "{name}: zero pages"
        );
        // No page record; the event after MEM_SIZE is where the last block's seek lands.
        let events = file.events();
        assert!(events.iter().all(|(_, e)| !matches!(
            e,
            Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_) | Event::MultifdFlush(_)
        )));
        let i = events
            .iter()
            .position(|(_, e)| matches!(e, Event::MemSize(_)))
            .unwrap();
        assert_eq!(Some(events[i + 1].0), next_entry, "{name}");
        eprintln!(
            "{name}: {} bytes, {} blocks, {present} pages present, {absent} zero, stream goes on at {:#x}",
            bytes.len(),
            file.blocks().len(),
            events[i + 1].0
        );
    }
    assert!(files >= 4, "{files} mapped-ram vectors");
}

#[test]
fn device_sections_match_their_vmdesc_layout() {
    use ramstream_codec::vmdesc::{check_splits, VmDescription};
    let mut checked = 0;
    for (v, bytes) in vectors() {
        let events = decode_all(&bytes, options(&v)).unwrap();
        let Some(json) = events.iter().find_map(|(_, e)| match e {
            Event::VmDescription(j) => Some(*j),
            _ => None,
        }) else {
            continue;
        };
        let desc = VmDescription::parse(json).unwrap();
        let devices: Vec<_> = events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Device(d) => Some(d),
                _ => None,
            })
            .collect();
        let check = check_splits(&desc, devices.iter().copied());
        assert_eq!(
            (check.confirmed, &check.disagreements, &check.unchecked),
            (devices.len(), &vec![], &vec![]),
            "{}",
            v.manifest.name
        );
        checked += check.confirmed;
        // The same sections split one byte early or one byte late are caught.
        for d in &devices {
            let mut early = **d;
            early.body = &d.body[..d.body.len().saturating_sub(1)];
            let start = d.body_offset as usize;
            let mut late = **d;
            late.body = &bytes[start..start + d.body.len() + 1];
            let wrongs = if d.body.is_empty() {
                vec![late]
            } else {
                vec![early, late]
            };
            for wrong in wrongs {
                let c = check_splits(&desc, [&wrong]);
                assert_eq!(
                    c.disagreements.len(),
                    1,
                    "{} {} {} {:?}",
                    v.manifest.name,
                    d.header.idstr,
                    wrong.body.len(),
                    c
                );
            }
        }
    }
    eprintln!("{checked} device sections matched their vmdesc layout exactly");
    assert!(checked > 100);
}

/// What a stream itself tells of its writer (SPEC.md §8.2) is exactly the QEMU version that
/// recorded each vector: its machine type, and for 10.0+ the SWITCHOVER_START command.
#[test]
fn the_writer_version_is_inferred_from_each_recorded_stream() {
    let mut checked = 0;
    for (v, bytes) in vectors() {
        let Some(q) = v.qemu() else {
            continue;
        };
        let s = summary(&bytes, options(&v));
        let w = s
            .min_writer_version()
            .unwrap_or_else(|| panic!("{}: no writer evidence", v.manifest.name));
        assert_eq!(
            format!("{}.{}", w.version.0, w.version.1),
            q.label(),
            "{}: {}",
            v.manifest.name,
            w.because
        );
        let switchover = s.commands.iter().any(|c| c.command == "SWITCHOVER_START");
        assert_eq!(switchover, q.label() != "7.2", "{}", v.manifest.name);
        checked += 1;
    }
    assert!(checked >= 27, "{checked}");
}
