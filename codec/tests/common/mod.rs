//! A small, complete stream built with the encoder, shaped like QEMU 7.2's output.

#![allow(dead_code)]

use ramstream_codec::{
    decode_all, Configuration, DecoderOptions, DeviceSection, Encoder, Event, PageAddr, RamBlock,
    SectionHeader,
};
use ramstream_spec::stream::SectionType;

pub const RAM_ID: u32 = 2;

pub fn blocks() -> Vec<RamBlock> {
    vec![
        RamBlock {
            idstr: "pc.ram".into(),
            used_length: 16 * 4096,
            page_size: None,
            mr_addr: None,
        },
        RamBlock {
            idstr: "/rom@etc/acpi/tables".into(),
            used_length: 4 * 4096,
            page_size: None,
            mr_addr: None,
        },
    ]
}

pub fn page(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
        .collect()
}

/// Device bodies that contain footer-like bytes, to exercise the device framing.
pub fn device_body(id: u32) -> Vec<u8> {
    let mut b = vec![1, 2, 3, 0x7e];
    b.extend_from_slice(&id.to_be_bytes());
    b.push(0x42); // not a plausible section start: still body
    b.extend_from_slice(&[0x7e, 0, 0, 0]);
    b
}

pub const VMDESC: &[u8] = br#"{"page_size": 4096, "devices": []}"#;

/// The stream, with the byte offset where the first PART section starts.
pub fn small_stream() -> Vec<u8> {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    enc.header(&mut out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: None,
            uuid: None,
        },
        &mut out,
    )
    .unwrap();
    enc.section_header(&SectionHeader::ram_start(RAM_ID), &mut out)
        .unwrap();
    enc.mem_size(&blocks(), &mut out).unwrap();
    enc.eos(&mut out);
    enc.footer(RAM_ID, &mut out);

    let p1 = page(3);
    let p2 = page(5);
    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    enc.page(
        PageAddr {
            block: 0,
            offset: 0,
        },
        &p1,
        &mut out,
    )
    .unwrap();
    enc.zero(
        PageAddr {
            block: 0,
            offset: 0x1000,
        },
        0,
        &mut out,
    )
    .unwrap();
    enc.page(
        PageAddr {
            block: 1,
            offset: 0x2000,
        },
        &p2,
        &mut out,
    )
    .unwrap();
    enc.eos(&mut out);
    enc.footer(RAM_ID, &mut out);

    enc.section_part(SectionType::PART, RAM_ID, &mut out);
    // A delta onto block 1 page 0x2000: change bytes 16..20 to 0xee.
    enc.xbzrle(
        PageAddr {
            block: 1,
            offset: 0x2000,
        },
        &[16, 4, 0xee, 0xee, 0xee, 0xee],
        &mut out,
    )
    .unwrap();
    enc.zero(
        PageAddr {
            block: 1,
            offset: 0x3000,
        },
        0,
        &mut out,
    )
    .unwrap();
    enc.eos(&mut out);
    enc.footer(RAM_ID, &mut out);

    enc.section_part(SectionType::END, RAM_ID, &mut out);
    enc.page(
        PageAddr {
            block: 0,
            offset: 0xf000,
        },
        &p2,
        &mut out,
    )
    .unwrap();
    enc.eos(&mut out);
    enc.footer(RAM_ID, &mut out);

    for (id, name) in [(4u32, "timer"), (5, "cpu")] {
        let body = device_body(id);
        enc.device(
            &DeviceSection {
                header: SectionHeader {
                    section_type: SectionType::FULL,
                    section_id: id,
                    idstr: name,
                    instance_id: 0,
                    version_id: 2,
                },
                body_offset: 0,
                body: &body,
            },
            &mut out,
        )
        .unwrap();
        enc.footer(id, &mut out);
    }
    enc.eof(&mut out);
    enc.vmdesc(VMDESC, &mut out).unwrap();
    out
}

/// The events of `bytes` as debug strings (payloads included), decoded in one go.
pub fn event_strings(bytes: &[u8], opts: DecoderOptions) -> Vec<String> {
    decode_all(bytes, opts)
        .unwrap()
        .into_iter()
        .map(|(o, e)| format!("{o}: {e:?}"))
        .collect()
}

pub fn kinds(events: &[(u64, Event<'_>)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| format!("{:?}", e.kind()))
        .collect()
}
