//! Regenerates `fuzz/corpus/*/seed-*`, `fuzz/data/vmdesc.json` and the libFuzzer dictionary
//! `fuzz/data/stream.dict` (from the spec crate's constants and the vectors' block names)
//! from the recorded QEMU vectors. Run from the repository root: `cargo run --manifest-path fuzz/make-seeds/Cargo.toml`
//! (`-- multifd` writes only the seeds of the multifd targets).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use ramstream_codec::mapped_ram::MappedRamFile;
use ramstream_codec::vmdesc::VmDescription;
use ramstream_codec::{decode_all, DecoderOptions, Encoder, Event};
use ramstream_spec::config::{
    capability, SUBSECTION_CAPABILITIES, SUBSECTION_TARGET_PAGE_BITS, SUBSECTION_UUID,
    SUBSECTION_VERSION,
};
use ramstream_spec::extension::digest::DIGEST_SECTION_IDSTR;
use ramstream_spec::ram::{RamFlags, SECTION_IDSTR, SECTION_VERSION};
use ramstream_spec::stream::{SectionType, FILE_VERSION, QEVM_MAGIC};
use ramstream_spec::Dialect;

const VECTORS: &str = "conformance-vectors/vectors";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Seeds of the multifd targets: each recorded channel's start, and its initial packet with
/// its first packet of pages that fits, cut by the harness's own function; then the
/// encoder-made seeds.
fn multifd() {
    use ramstream_test_support::fuzzing::multifd::{multifd_channel_seed, multifd_seeds};
    const MAX: usize = 32 << 10;
    let mut names: Vec<String> = fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let dir = Path::new(VECTORS).join(&name);
        let Ok(m) = fs::read(dir.join("manifest.json")) else {
            continue;
        };
        let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
        let Some(files) = m["multifd"]["channel_files"].as_array() else {
            continue;
        };
        for f in files {
            let id = f["id"].as_u64().unwrap();
            let z = fs::read(dir.join(f["file"].as_str().unwrap())).unwrap();
            let ch = zstd::decode_all(&z[..]).unwrap();
            let seed = id as u8 | 0x80;
            write(
                "multifd_channel",
                &format!("{name}-{id}-start"),
                &multifd_channel_seed(&ch, seed, MAX),
            );
            // The initial packet and the first packet with pages that fits.
            let hdr = 1344;
            let mut p = 64;
            while p + hdr <= ch.len() {
                let normal = u32::from_be_bytes(ch[p + 16..p + 20].try_into().unwrap()) as usize;
                let zero = u32::from_be_bytes(ch[p + 32..p + 36].try_into().unwrap()) as usize;
                let end = p + hdr + normal * 4096;
                if normal + zero > 0 && p > 64 && end - p + 64 <= MAX {
                    let one = cat(&[&ch[..64], &ch[p..end]]);
                    write(
                        "multifd_channel",
                        &format!("{name}-{id}-pages"),
                        &multifd_channel_seed(&one, 0, MAX),
                    );
                    break;
                }
                p = end;
            }
        }
    }
    for (target, name, bytes) in multifd_seeds() {
        write(target, name, &bytes);
    }
}

fn main() {
    if std::env::args().any(|a| a == "multifd") {
        return multifd();
    }
    let mut names: Vec<String> = fs::read_dir(VECTORS)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| Path::new(VECTORS).join(n).join("stream.bin.zst").exists())
        .collect();
    names.sort();
    let mut xbzrle_seen = 0;
    let mut idstrs = BTreeSet::new();
    for name in &names {
        let z = fs::read(Path::new(VECTORS).join(name).join("stream.bin.zst")).unwrap();
        let stream = zstd::decode_all(&z[..]).unwrap();
        // mapped-ram files (SPEC.md §7.9) are tens of MiB of regions around a few records:
        // the `mapped_ram` target gets small hand-built files instead (below).
        if MappedRamFile::announced(&stream, &DecoderOptions::default()) {
            continue;
        }
        let events = decode_all(&stream, DecoderOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let end = |i: usize| {
            events
                .get(i + 1)
                .map(|(o, _)| *o as usize)
                .unwrap_or(stream.len())
        };
        let small = stream.len() < 2 << 20;
        for (_, ev) in &events {
            match ev {
                Event::MemSize(m) => idstrs.extend(m.blocks.iter().map(|b| b.idstr.clone())),
                Event::SectionStart(h) => {
                    idstrs.insert(h.idstr.to_string());
                }
                _ => {}
            }
        }

        // stream_split / differential_split: the start of each stream, and a stream made of
        // everything but the ram records (devices, commands, EOF, vmdesc).
        if small {
            write(
                "stream_split",
                &format!("{name}-head"),
                &cat(&[&[0, 0], &stream[..16 << 10]]),
            );
            write(
                "differential_split",
                &format!("{name}-head"),
                &cat(&[&[0, 0x81], &stream[..3 << 10]]),
            );
        }
        let mut enc = Encoder::new(12);
        let mut skel = Vec::new();
        let mut in_ram = false;
        for (_, ev) in &events {
            match ev {
                Event::SectionStart(_) | Event::SectionPart { .. } => in_ram = true,
                Event::Footer { .. } if in_ram => in_ram = false,
                _ if in_ram => {}
                Event::VmDescription(_) => {}
                ev => enc.event(ev, &mut skel).unwrap(),
            }
        }
        if small {
            write(
                "stream_split",
                &format!("{name}-devices"),
                &cat(&[&[0, 0], &skel]),
            );
        }
        // The same with ram START + MEM_SIZE + the first 24 records + EOS + footer.
        {
            let mut enc = Encoder::new(12);
            let mut s = Vec::new();
            let mut n = 0;
            let mut in_ram = false;
            for (_, ev) in &events {
                match ev {
                    Event::Header { .. } | Event::Configuration(_) => {
                        enc.event(ev, &mut s).unwrap()
                    }
                    Event::SectionStart(_) => {
                        in_ram = true;
                        enc.event(ev, &mut s).unwrap()
                    }
                    Event::Eos(_) | Event::Footer { .. } if in_ram => {
                        enc.event(ev, &mut s).unwrap();
                        if matches!(ev, Event::Footer { .. }) {
                            break;
                        }
                    }
                    _ if in_ram && n < 24 => {
                        n += 1;
                        enc.event(ev, &mut s).unwrap()
                    }
                    _ => {}
                }
            }
            s.push(0);
            write(
                "stream_split",
                &format!("{name}-ram24"),
                &cat(&[&[0, 0x85], &s]),
            );
            write(
                "differential_split",
                &format!("{name}-ram24"),
                &cat(&[&[0, 0x83], &s[..s.len().min(4096)]]),
            );
            if name == "idle-noos" {
                for d in 1..4u8 {
                    write(
                        "stream_split",
                        &format!("{name}-ram24-dialect{d}"),
                        &cat(&[&[d, 7], &s]),
                    );
                }
            }
        }

        // configuration: the payload after 0x07 and the next 64 bytes.
        for (i, (o, ev)) in events.iter().enumerate() {
            if let Event::Configuration(_) = ev {
                let from = *o as usize + 1;
                let to = (end(i) + 64).min(stream.len());
                write("configuration", name, &stream[from..to]);
            }
        }

        // ram_records: runs of 32 consecutive ram records from a few places of the stream.
        let ctl: u8 = if name == "x-ignore-shared" { 8 } else { 0 };
        let ram_idx: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, (_, e))| e.ram_flags().is_some() && !matches!(e, Event::MemSize(_)))
            .map(|(i, _)| i)
            .collect();
        for (k, frac) in [0usize, 3, 7].iter().enumerate() {
            let Some(&first) = ram_idx.get(ram_idx.len() * frac / 10) else {
                continue;
            };
            let last = (first + 32).min(events.len() - 1);
            let from = events[first].0 as usize;
            let to = end(last).min(from + (48 << 10));
            write(
                "ram_records",
                &format!("{name}-{k}"),
                &cat(&[&[ctl | (k as u8) << 5], &stream[from..to]]),
            );
        }

        // xbzrle_decode: individual deltas, page seed 0 (zero page) and another.
        for (_, ev) in &events {
            if let Event::Xbzrle(x) = ev {
                if xbzrle_seen % 97 == 0 && xbzrle_seen < 97 * 24 {
                    let seed = (xbzrle_seen / 97) as u8 * 11;
                    write(
                        "xbzrle_decode",
                        &format!("{name}-{xbzrle_seen}"),
                        &cat(&[&[0, seed], x.delta]),
                    );
                }
                xbzrle_seen += 1;
            }
        }

        // vmdesc: device bodies against the q35-noos description, and small JSONs.
        if name == "q35-noos" {
            let json = events
                .iter()
                .find_map(|(_, e)| match e {
                    Event::VmDescription(j) => Some(*j),
                    _ => None,
                })
                .unwrap();
            fs::create_dir_all("fuzz/data").unwrap();
            fs::write("fuzz/data/vmdesc.json", json).unwrap();
            let desc = VmDescription::parse(json).unwrap();
            let mut k = 0;
            for (_, ev) in &events {
                if let Event::Device(d) = ev {
                    if let Some(idx) = desc.devices.iter().position(|dd| {
                        dd.name == d.header.idstr && dd.instance_id == d.header.instance_id
                    }) {
                        if d.body.len() <= 8192 {
                            write(
                                "vmdesc",
                                &format!("device-{k:02}"),
                                &cat(&[&[1, idx as u8], d.body]),
                            );
                        }
                        k += 1;
                    }
                }
            }
            // Each device's description as a one-device JSON (mode 0 parses it).
            for (i, _) in desc.devices.iter().enumerate().step_by(4) {
                let v: serde_json::Value = serde_json::from_slice(json).unwrap();
                let mut one = v.clone();
                one["devices"] = serde_json::Value::Array(vec![v["devices"][i].clone()]);
                let s = serde_json::to_vec(&one).unwrap();
                if s.len() < 8192 {
                    write("vmdesc", &format!("json-{i:02}"), &cat(&[&[0], &s]));
                }
            }
        }
    }

    // balloon_runs: each balloon record's bytes after its word, from the balloon vectors.
    for name in [
        "balloon-v1",
        "balloon-kolhe-2016",
        "balloon-kolhe-2016-disabled",
    ] {
        let dir = Path::new(VECTORS).join(name);
        let stream = match fs::read(dir.join("stream.bin")) {
            Ok(s) => s,
            Err(_) => zstd::decode_all(&fs::read(dir.join("stream.bin.zst")).unwrap()[..]).unwrap(),
        };
        let kolhe = name.contains("kolhe");
        let dialect = if kolhe {
            Dialect::Kolhe2016
        } else {
            Dialect::RamstreamBalloonV1
        };
        let events = decode_all(&stream, DecoderOptions::default().with_dialect(dialect))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, (o, ev)) in events.iter().enumerate() {
            if let Event::Balloon(_) = ev {
                let o = *o as usize;
                let end = events
                    .get(i + 1)
                    .map(|(e, _)| *e as usize)
                    .unwrap_or(stream.len());
                let word = u64::from_be_bytes(stream[o..o + 8].try_into().unwrap());
                let ctl = u8::from(kolhe) | if word & 0x20 != 0 { 2 } else { 0 };
                write(
                    "balloon_runs",
                    &format!("{name}-{i}"),
                    &cat(&[&[ctl], &stream[o + 8..end.min(o + 8 + 4096)]]),
                );
            }
        }
    }

    // Hand-made seeds.
    for (name, bytes) in ramstream_test_support::fuzzing::mapped_ram_seeds() {
        write("mapped_ram", name, &bytes);
    }
    write("configuration", "minimal", b"\0\0\0\x0dpc-i440fx-7.2\x00");
    write(
        "configuration",
        "all-subsections",
        &cat(&[
            b"\0\0\0\x03q35",
            b"\x05\x1econfiguration/target-page-bits\0\0\0\x01\0\0\0\x0c",
            b"\x05\x1aconfiguration/capabilities\0\0\0\x01\0\0\0\x02\x0fx-ignore-shared\x16x-ramstream-balloon-v1",
            b"\x05\x12configuration/uuid\0\0\0\x01",
            &[0x11; 16],
            b"\x00",
        ]),
    );
    for (i, d) in [
        &[0x10, 0x00][..],
        &[0x00, 0x01, 0xAA, 0x00, 0x01, 0xBB],
        &[0xff, 0x1f, 0x02, 0xAA, 0xBB],
        &[0x10, 0x02, 0xAA, 0xBB, 0x05],
        &[0x05, 0x05],
        &[0x00, 0x81, 0x01, 0x55],
        &[0xff, 0x1f, 0x01, 0x01],
    ]
    .iter()
    .enumerate()
    {
        write("xbzrle_decode", &format!("edge-{i}"), &cat(&[&[0, 0], d]));
    }
    for (i, len) in [16usize, 64, 256, 1024, 4096].iter().enumerate() {
        let bytes: Vec<u8> = (0..*len)
            .map(|k| (k as u32).wrapping_mul(2654435761).to_be_bytes()[0])
            .collect();
        write("roundtrip_xbzrle", &format!("prng-{i}"), &bytes);
        write("roundtrip_records", &format!("prng-{i}"), &bytes);
    }
    write(
        "vmdesc",
        "json-empty",
        b"\0{\"page_size\": 4096, \"devices\": []}",
    );
    dictionary(&idstrs);
    multifd();
}

/// One libFuzzer dictionary entry: the bytes, escaped.
fn entry(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out.push_str("\"\n");
}

/// A counted name as it stands on the wire: one length byte, then the bytes.
fn counted(name: &str) -> Vec<u8> {
    cat(&[&[name.len() as u8], name.as_bytes()])
}

/// `fuzz/data/stream.dict`: the tokens of the stream format, for the byte-stream targets.
fn dictionary(idstrs: &BTreeSet<String>) {
    let mut d = String::from(
        "# libFuzzer dictionary for the byte-stream targets; written by fuzz/make-seeds.\n",
    );
    entry(
        &mut d,
        &cat(&[&QEVM_MAGIC.to_be_bytes(), &FILE_VERSION.to_be_bytes()]),
    );
    for st in [
        SectionType::EOF,
        SectionType::START,
        SectionType::PART,
        SectionType::END,
        SectionType::FULL,
        SectionType::SUBSECTION,
        SectionType::VMDESCRIPTION,
        SectionType::CONFIGURATION,
        SectionType::COMMAND,
        SectionType::FOOTER,
    ] {
        entry(&mut d, &[st.0]);
    }
    for sub in [
        SUBSECTION_TARGET_PAGE_BITS,
        SUBSECTION_CAPABILITIES,
        SUBSECTION_UUID,
    ] {
        entry(
            &mut d,
            &cat(&[
                &[SectionType::SUBSECTION.0],
                &counted(sub),
                &SUBSECTION_VERSION.to_be_bytes(),
            ]),
        );
    }
    for cap in capability::QEMU_7_2_ALL
        .iter()
        .chain(&[capability::MAPPED_RAM, capability::RAMSTREAM_BALLOON_V1])
    {
        entry(&mut d, &counted(cap));
    }
    entry(
        &mut d,
        &cat(&[
            &counted(SECTION_IDSTR),
            &0u32.to_be_bytes(),
            &SECTION_VERSION.to_be_bytes(),
        ]),
    );
    entry(&mut d, &counted(DIGEST_SECTION_IDSTR));
    for id in idstrs {
        entry(&mut d, &counted(id));
    }
    for f in [
        RamFlags::ZERO,
        RamFlags::MEM_SIZE,
        RamFlags::PAGE,
        RamFlags::EOS,
        RamFlags::XBZRLE,
        RamFlags::X200,
        RamFlags::ZERO | RamFlags::CONTINUE,
        RamFlags::PAGE | RamFlags::CONTINUE,
        RamFlags::XBZRLE | RamFlags::CONTINUE,
        RamFlags::X200 | RamFlags::CONTINUE,
    ] {
        entry(&mut d, &f.bits().to_be_bytes());
    }
    fs::write("fuzz/data/stream.dict", d).unwrap();
}
