//! Every input limit of SPEC.md §10 at its boundary: the limit itself is accepted, one more is
//! refused with its `ErrorKind`, at the offset of the field that announced it.

use ramstream_codec::xbzrle::XbzrleError;
use ramstream_codec::{
    apply_event, decode_all, DecoderOptions, Error, ErrorKind, Event, Limits, RamImage, RecordKind,
};
use ramstream_spec::limits;

const HEADER: &[u8] = b"QEVM\0\0\0\x03";
const CONFIG: &[u8] = b"\x07\0\0\0\x0dpc-i440fx-7.2";
/// Offset of the first byte after the configuration's machine type.
const CONFIG_END: u64 = 26;
/// `ram` START, section id 2.
const RAM_START: &[u8] = b"\x01\0\0\0\x02\x03ram\0\0\0\0\0\0\0\x04";
/// Offset of the MEM_SIZE word after `HEADER`, `CONFIG`, `RAM_START`.
const MEM_SIZE_AT: u64 = CONFIG_END + 17;

fn word(w: u64) -> Vec<u8> {
    w.to_be_bytes().to_vec()
}

/// EOS, the `ram` section's footer, EOF.
fn tail() -> Vec<u8> {
    let mut v = word(0x10);
    v.extend_from_slice(b"\x7e\0\0\0\x02\x00");
    v
}

fn mem_size(total: u64, blocks: &[(&str, u64)]) -> Vec<u8> {
    let mut v = word(total | 4);
    for (n, len) in blocks {
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
        v.extend(word(*len));
    }
    v
}

/// A `ram` section holding `records`, complete.
fn ram(records: &[&[u8]]) -> Vec<u8> {
    let mut s = [HEADER, CONFIG, RAM_START].concat();
    for r in records {
        s.extend_from_slice(r);
    }
    s.extend(tail());
    s
}

fn opts(limits: Limits) -> DecoderOptions {
    DecoderOptions::default().with_limits(limits)
}

fn ok(s: &[u8], o: DecoderOptions) {
    if let Err(e) = decode_all(s, o) {
        panic!("at the limit, refused: {e}");
    }
}

fn refused(s: &[u8], o: DecoderOptions, offset: u64, record: RecordKind) -> ErrorKind {
    let e = decode_all(s, o).expect_err("past the limit, accepted");
    assert_eq!((e.offset, e.record), (offset, Some(record)), "{e}");
    e.kind
}

#[test]
fn max_ram_blocks() {
    let o = || opts(Limits::default().with_max_ram_blocks(2));
    ok(
        &ram(&[&mem_size(0x2000, &[("a", 0x1000), ("b", 0x1000)])]),
        o(),
    );
    let s = ram(&[&mem_size(
        0x3000,
        &[("a", 0x1000), ("b", 0x1000), ("c", 0x1000)],
    )]);
    // Refused where the third block's entry starts, before it is read.
    let third = MEM_SIZE_AT + 8 + 2 * (1 + 1 + 8);
    assert_eq!(
        refused(&s, o(), third, RecordKind::MemSize),
        ErrorKind::TooManyBlocks { limit: 2 }
    );
}

#[test]
fn max_ram_total_as_the_configured_guest_size() {
    // A destination configured for 128 KiB of guest RAM.
    let guest = 0x20000;
    let o = || opts(Limits::default().with_max_ram_total(guest));
    ok(&ram(&[&mem_size(guest, &[("pc.ram", guest)])]), o());
    let more = guest + 0x1000;
    let s = ram(&[&mem_size(more, &[("pc.ram", more)])]);
    assert_eq!(
        refused(&s, o(), MEM_SIZE_AT, RecordKind::MemSize),
        ErrorKind::RamTotalTooLarge {
            total: more,
            limit: guest
        }
    );
}

#[test]
fn max_ram_total_default() {
    let max = limits::MAX_RAM_TOTAL;
    // Nothing is allocated for the announced size: 16 TiB decodes.
    ok(
        &ram(&[&mem_size(max, &[("pc.ram", max)])]),
        Default::default(),
    );
    let s = ram(&[&mem_size(max + 0x1000, &[("pc.ram", max + 0x1000)])]);
    assert_eq!(
        refused(&s, Default::default(), MEM_SIZE_AT, RecordKind::MemSize),
        ErrorKind::RamTotalTooLarge {
            total: max + 0x1000,
            limit: max
        }
    );
}

fn config_with_machine_type(len: usize) -> Vec<u8> {
    let mut s = HEADER.to_vec();
    s.push(0x07);
    s.extend_from_slice(&(len as u32).to_be_bytes());
    s.extend(std::iter::repeat_n(b'a', len));
    s.push(0x00);
    s
}

#[test]
fn max_machine_type_len() {
    let max = limits::MAX_MACHINE_TYPE_LEN;
    ok(&config_with_machine_type(max as usize), Default::default());
    let s = config_with_machine_type(max as usize + 1);
    // At the length field, after the section byte.
    assert_eq!(
        refused(&s, Default::default(), 9, RecordKind::Configuration),
        ErrorKind::MachineTypeTooLong {
            len: max + 1,
            limit: max
        }
    );
}

fn subsection(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = [HEADER, CONFIG].concat();
    v.push(0x05);
    v.push(name.len() as u8);
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0x00);
    v
}

#[test]
fn max_capabilities() {
    let caps = |names: &[&str]| {
        let mut p = (names.len() as u32).to_be_bytes().to_vec();
        for n in names {
            p.push(n.len() as u8);
            p.extend_from_slice(n.as_bytes());
        }
        subsection("configuration/capabilities", &p)
    };
    let o = || opts(Limits::default().with_max_capabilities(2));
    ok(&caps(&["xbzrle", "postcopy-ram"]), o());
    let s = caps(&["xbzrle", "postcopy-ram", "x-ignore-shared"]);
    // At the count, after `05`, the 26-byte name and the version.
    let count_at = CONFIG_END + 1 + 1 + 26 + 4;
    assert_eq!(
        refused(&s, o(), count_at, RecordKind::Configuration),
        ErrorKind::TooManyCapabilities { count: 3 }
    );
    // The default limit, with a count no stream could back.
    let s = caps(&[]);
    let mut s = s[..s.len() - 5].to_vec();
    s.extend_from_slice(&(limits::MAX_CAPABILITIES + 1).to_be_bytes());
    assert_eq!(
        refused(&s, Default::default(), count_at, RecordKind::Configuration),
        ErrorKind::TooManyCapabilities {
            count: limits::MAX_CAPABILITIES + 1
        }
    );
}

#[test]
fn target_page_bits_range() {
    use ramstream_spec::ram::{TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};
    let sub = |bits: u32| subsection("configuration/target-page-bits", &bits.to_be_bytes());
    for bits in [TARGET_PAGE_BITS_MIN, TARGET_PAGE_BITS_MAX] {
        ok(&sub(bits), Default::default());
    }
    let bits_at = CONFIG_END + 1 + 1 + 30 + 4;
    for bits in [TARGET_PAGE_BITS_MIN - 1, TARGET_PAGE_BITS_MAX + 1, u32::MAX] {
        assert_eq!(
            refused(
                &sub(bits),
                Default::default(),
                bits_at,
                RecordKind::Configuration
            ),
            ErrorKind::BadPageBits { bits }
        );
    }
}

#[test]
fn block_idstr_is_at_most_255_bytes() {
    // The length is a u8: 255 bytes is the longest name that can be written, and decodes.
    let long = "b".repeat(255);
    let ms = mem_size(0x1000, &[(&long, 0x1000)]);
    let mut page = word(0x08);
    page.push(255);
    page.extend_from_slice(long.as_bytes());
    page.extend_from_slice(&[0x11; 4096]);
    ok(&ram(&[&ms, &page]), Default::default());
    // Another 255-byte name is an unknown block, reported at its length byte.
    let other = "c".repeat(255);
    let mut page = word(0x08);
    page.push(255);
    page.extend_from_slice(other.as_bytes());
    page.extend_from_slice(&[0x11; 4096]);
    let s = ram(&[&ms, &page]);
    let name_at = MEM_SIZE_AT + 8 + 1 + 255 + 8 + 8;
    let e = decode_all(&s, Default::default()).unwrap_err();
    assert_eq!(
        (e.offset, e.record),
        (name_at, Some(RecordKind::Page)),
        "{e}"
    );
    assert_eq!(e.kind, ErrorKind::UnknownBlock { idstr: other });
}

fn xbzrle_record(len: u16, delta: &[u8]) -> Vec<u8> {
    let mut v = word(0x40);
    v.push(6);
    v.extend_from_slice(b"pc.ram");
    v.push(0x01);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(delta);
    v
}

#[test]
fn xbzrle_encoded_length_is_at_most_a_page() {
    let ms = mem_size(0x1000, &[("pc.ram", 0x1000)]);
    // The decoder checks the length, not the delta: a page of bytes passes it.
    ok(
        &ram(&[&ms, &xbzrle_record(4096, &[0; 4096])]),
        Default::default(),
    );
    let s = ram(&[&ms, &xbzrle_record(4097, &[0; 4097])]);
    let rec_at = MEM_SIZE_AT + 8 + 1 + 6 + 8;
    // At the length field, after the word, the idstr and the encoding byte.
    let e = decode_all(&s, Default::default()).unwrap_err();
    assert_eq!(
        (e.offset, e.record),
        (rec_at + 8 + 7 + 1, Some(RecordKind::Xbzrle))
    );
    assert_eq!(e.block.as_deref(), Some("pc.ram"));
    assert_eq!(
        e.kind,
        ErrorKind::XbzrleLength {
            len: 4097,
            page_size: 4096
        }
    );
}

/// Applies every event of `s` to an image; the first error.
fn apply_all(s: &[u8]) -> Result<RamImage, Error> {
    let mut image = RamImage::new(4096);
    for (off, ev) in decode_all(s, Default::default()).unwrap() {
        if let Event::MemSize(ms) = &ev {
            image.set_blocks(&ms.blocks);
        }
        apply_event(&mut image, &ev, off)?;
    }
    Ok(image)
}

#[test]
fn xbzrle_decoded_length_is_at_most_a_page() {
    let ms = mem_size(0x1000, &[("pc.ram", 0x1000)]);
    let rec_at = MEM_SIZE_AT + 8 + 1 + 6 + 8;
    // zrun 4094, nzrun 2: ends exactly at the page end.
    let fits = [0xfe, 0x1f, 0x02, 7, 9];
    let image = apply_all(&ram(&[&ms, &xbzrle_record(5, &fits)])).unwrap();
    assert_eq!(&image.to_dense(0)[4094..], &[7, 9]);
    // zrun 4095, nzrun 2: one byte past.
    let past = [0xff, 0x1f, 0x02, 7, 9];
    let e = apply_all(&ram(&[&ms, &xbzrle_record(5, &past)])).unwrap_err();
    assert_eq!((e.offset, e.record), (rec_at, Some(RecordKind::Xbzrle)));
    assert_eq!(
        e.kind,
        ErrorKind::Xbzrle(XbzrleError::LiteralRunPastPage {
            at: 2,
            page_offset: 4095,
            run: 2,
            page_len: 4096
        })
    );
    // zrun 4097: a zero run alone past the page.
    let e = apply_all(&ram(&[&ms, &xbzrle_record(2, &[0x81, 0x20])])).unwrap_err();
    assert_eq!((e.offset, e.record), (rec_at, Some(RecordKind::Xbzrle)));
    assert!(
        matches!(
            e.kind,
            ErrorKind::Xbzrle(XbzrleError::ZeroRunPastPage {
                run: 4097,
                page_len: 4096,
                ..
            })
        ),
        "{e}"
    );
}

fn vmdesc(len: u32, json: &[u8]) -> Vec<u8> {
    let mut s = [HEADER, CONFIG, b"\x00\x06"].concat();
    s.extend_from_slice(&len.to_be_bytes());
    s.extend_from_slice(json);
    s
}

#[test]
fn max_vmdesc_len() {
    let o = || opts(Limits::default().with_max_vmdesc_len(2));
    ok(&vmdesc(2, b"{}"), o());
    // At the `06` byte after EOF.
    assert_eq!(
        refused(
            &vmdesc(3, b"{ }"),
            o(),
            CONFIG_END + 1,
            RecordKind::VmDescription
        ),
        ErrorKind::VmdescTooLarge { len: 3, limit: 2 }
    );
    let max = limits::MAX_VMDESC_LEN;
    assert_eq!(
        refused(
            &vmdesc(max + 1, b""),
            Default::default(),
            CONFIG_END + 1,
            RecordKind::VmDescription
        ),
        ErrorKind::VmdescTooLarge {
            len: max + 1,
            limit: max
        }
    );
}

fn device(body: &[u8]) -> Vec<u8> {
    let mut s = [HEADER, CONFIG, b"\x04\0\0\0\x04\x05timer\0\0\0\0\0\0\0\x02"].concat();
    s.extend_from_slice(body);
    s.extend_from_slice(b"\x7e\0\0\0\x04\x00");
    s
}

#[test]
fn max_device_section_len() {
    let o = || opts(Limits::default().with_max_device_section_len(8));
    let at_limit = device(&[0xaa; 8]);
    let events = decode_all(&at_limit, o()).unwrap();
    assert!(events
        .iter()
        .any(|(_, e)| matches!(e, Event::Device(d) if d.body.len() == 8)));
    // At the section byte.
    assert_eq!(
        refused(&device(&[0xaa; 9]), o(), CONFIG_END, RecordKind::Device),
        ErrorKind::DeviceSectionUnterminated { limit: 8 }
    );
}

#[test]
fn a_new_start_replaces_the_live_section_id() {
    // Many `ram` STARTs with fresh ids: the decoder keeps one live id, not one per START.
    let mut s = [HEADER, CONFIG].concat();
    for id in 10u32..2010 {
        s.push(0x01);
        s.extend_from_slice(&id.to_be_bytes());
        s.extend_from_slice(b"\x03ram\0\0\0\0\0\0\0\x04");
        s.extend(word(0x10));
        s.push(0x7e);
        s.extend_from_slice(&id.to_be_bytes());
    }
    let mut last = s.clone();
    last.extend_from_slice(b"\x03\0\0\x07\xd9");
    last.extend(word(0x10));
    last.extend_from_slice(b"\x7e\0\0\x07\xd9\x00");
    ok(&last, Default::default());
    // A PART for an id whose START was replaced is unknown, as in QEMU.
    let part_at = s.len() as u64;
    s.extend_from_slice(b"\x02\0\0\0\x0a");
    assert_eq!(
        refused(&s, Default::default(), part_at, RecordKind::SectionHeader),
        ErrorKind::UnknownSectionId { section_id: 10 }
    );
}
