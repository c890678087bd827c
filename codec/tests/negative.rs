//! Malformed streams, one class per test, each with its specific error (SPEC.md §12).

mod common;

use ramstream_codec::{
    apply_event, decode_all, DecoderOptions, ErrorKind, Event, Limits, RamImage, RecordKind,
    ZeroFill,
};
use ramstream_spec::stream::Command;
use ramstream_spec::Dialect;

const HEADER: &[u8] = b"QEVM\0\0\0\x03";
const CONFIG: &[u8] = b"\x07\0\0\0\x0dpc-i440fx-7.2";
const RAM_START: &[u8] = b"\x01\0\0\0\x02\x03ram\0\0\0\0\0\0\0\x04";

/// MEM_SIZE for one 64 KiB block `pc.ram`.
fn mem_size() -> Vec<u8> {
    let mut v = (0x10000u64 | 4).to_be_bytes().to_vec();
    v.push(6);
    v.extend_from_slice(b"pc.ram");
    v.extend_from_slice(&0x10000u64.to_be_bytes());
    v
}

/// Header, configuration, ram START with MEM_SIZE: the prefix of most cases.
fn prefix() -> Vec<u8> {
    [HEADER, CONFIG, RAM_START, &mem_size()].concat()
}

fn word(w: u64) -> Vec<u8> {
    w.to_be_bytes().to_vec()
}

fn err(bytes: &[u8]) -> ramstream_codec::Error {
    err_with(bytes, DecoderOptions::default())
}

fn err_with(bytes: &[u8], opts: DecoderOptions) -> ramstream_codec::Error {
    match decode_all(bytes, opts) {
        Ok(_) => panic!("decoded without error"),
        Err(e) => e,
    }
}

#[test]
fn truncation_at_every_offset() {
    let s = common::small_stream();
    let mut truncated = 0;
    let eof = s.len() - common::VMDESC.len() - 5;
    for cut in (0..s.len()).filter(|c| *c != eof) {
        let e = err(&s[..cut]);
        match e.kind {
            ErrorKind::Truncated { needed } => {
                assert!(needed >= 1);
                truncated += 1;
            }
            ErrorKind::EndedBeforeEof => {}
            other => panic!("cut at {cut}: unexpected {other:?}"),
        }
        assert!(
            e.offset <= cut as u64,
            "cut at {cut}: error at {:#x}",
            e.offset
        );
    }
    assert!(truncated > s.len() / 2);
    // The stream ends cleanly after EOF when the trailer is absent (suppress-vmdesc).
    assert!(decode_all(&s[..eof], DecoderOptions::default()).is_ok());
}

#[test]
fn bad_magic() {
    let e = err(b"QEVN\0\0\0\x03");
    assert_eq!(e.kind, ErrorKind::BadMagic { found: 0x5145_564E });
    assert_eq!(e.record, Some(RecordKind::Header));
}

#[test]
fn obsolete_and_unknown_versions() {
    assert_eq!(err(b"QEVM\0\0\0\x02").kind, ErrorKind::ObsoleteVersion);
    assert_eq!(
        err(b"QEVM\0\0\0\x04").kind,
        ErrorKind::UnsupportedVersion { found: 4 }
    );
}

#[test]
fn configuration_missing() {
    let s = [HEADER, b"\x00"].concat();
    assert_eq!(err(&s).kind, ErrorKind::ConfigurationMissing);
    let opts = DecoderOptions::default().with_require_configuration(false);
    assert!(decode_all(&s, opts).is_ok());
}

#[test]
fn machine_type_too_long() {
    let s = [HEADER, b"\x07\x00\x10\x00\x00"].concat();
    assert!(matches!(
        err(&s).kind,
        ErrorKind::MachineTypeTooLong { len: 0x100000, .. }
    ));
}

#[test]
fn unknown_and_bad_subsections() {
    let sub = |name: &str, version: u32, payload: &[u8]| {
        let mut v = [HEADER, CONFIG].concat();
        v.push(5);
        v.push(name.len() as u8);
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(payload);
        v.push(0);
        v
    };
    assert!(matches!(
        err(&sub("configuration/frobnicate", 1, b"")).kind,
        ErrorKind::UnknownSubsection { .. }
    ));
    assert!(matches!(
        err(&sub("configuration/uuid", 2, &[0; 16])).kind,
        ErrorKind::SubsectionVersion { version: 2, .. }
    ));
    assert!(matches!(
        err(&sub("timer/x", 1, b"")).kind,
        ErrorKind::StraySubsection { .. }
    ));
    assert_eq!(
        err(&sub(
            "configuration/target-page-bits",
            1,
            &9u32.to_be_bytes()
        ))
        .kind,
        ErrorKind::BadPageBits { bits: 9 }
    );
    // A valid uuid subsection decodes.
    assert!(decode_all(&sub("configuration/uuid", 1, &[7; 16]), Default::default()).is_ok());
}

fn caps(names: &[&str]) -> Vec<u8> {
    let mut v = [HEADER, CONFIG].concat();
    v.push(5);
    let n = "configuration/capabilities";
    v.push(n.len() as u8);
    v.extend_from_slice(n.as_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&(names.len() as u32).to_be_bytes());
    for c in names {
        v.push(c.len() as u8);
        v.extend_from_slice(c.as_bytes());
    }
    v.push(0);
    v
}

#[test]
fn capabilities() {
    assert!(decode_all(&caps(&["x-ignore-shared"]), Default::default()).is_ok());
    assert!(matches!(
        err(&caps(&["frobnicate"])).kind,
        ErrorKind::UnknownCapability { .. }
    ));
    // QEMU 7.2 ignores capability names it knows but does not validate.
    assert!(decode_all(&caps(&["xbzrle", "postcopy-ram"]), Default::default()).is_ok());
    assert!(matches!(
        err(&caps(&["mapped-ram"])).kind,
        ErrorKind::UnsupportedCapability { .. }
    ));
    // Our own extension is refused unless the reader speaks its dialect, like QEMU does.
    assert!(matches!(
        err(&caps(&["x-ramstream-balloon-v1"])).kind,
        ErrorKind::UnknownCapability { .. }
    ));
    assert!(decode_all(
        &caps(&["x-ramstream-balloon-v1"]),
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1)
    )
    .is_ok());
}

#[test]
fn too_many_capabilities() {
    let mut s = [HEADER, CONFIG].concat();
    s.extend_from_slice(b"\x05\x1aconfiguration/capabilities\0\0\0\x01\xff\xff\xff\xff");
    assert!(matches!(
        err(&s).kind,
        ErrorKind::TooManyCapabilities { .. }
    ));
}

#[test]
fn unknown_section_type() {
    let s = [HEADER, CONFIG, b"\x42"].concat();
    assert_eq!(err(&s).kind, ErrorKind::UnknownSectionType { byte: 0x42 });
    // After the configuration a 0x05 is a configuration subsection; elsewhere it is stray.
    let mut s = prefix();
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02\x05");
    assert!(matches!(
        err(&s).kind,
        ErrorKind::UnexpectedSectionType { .. }
    ));
    let s = [HEADER, CONFIG, b"\x06\0\0\0\x02{}"].concat();
    assert!(matches!(
        err(&s).kind,
        ErrorKind::UnexpectedSectionType { .. }
    ));
}

#[test]
fn part_of_unknown_section() {
    let s = [HEADER, CONFIG, b"\x02\0\0\0\x09"].concat();
    assert_eq!(err(&s).kind, ErrorKind::UnknownSectionId { section_id: 9 });
}

#[test]
fn unsupported_iterative_section() {
    let s = [HEADER, CONFIG, b"\x01\0\0\0\x03\x05block\0\0\0\0\0\0\0\x01"].concat();
    assert!(matches!(err(&s).kind, ErrorKind::UnsupportedSection { .. }));
}

#[test]
fn ram_section_version() {
    let s = [HEADER, CONFIG, b"\x01\0\0\0\x02\x03ram\0\0\0\0\0\0\0\x05"].concat();
    assert_eq!(
        err(&s).kind,
        ErrorKind::RamSectionVersion {
            version: 5,
            instance_id: 0
        }
    );
}

#[test]
fn duplicate_section_id() {
    let mut s = prefix();
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02");
    s.extend_from_slice(RAM_START);
    assert_eq!(
        err(&s).kind,
        ErrorKind::DuplicateSectionId { section_id: 2 }
    );
}

#[test]
fn footer_missing_or_mismatched() {
    let mut s = prefix();
    s.extend(word(0x10));
    s.extend_from_slice(b"\x02\0\0\0\x02");
    assert_eq!(
        err(&s).kind,
        ErrorKind::MissingFooter {
            section_id: 2,
            found: 2
        }
    );
    let mut s = prefix();
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x03");
    assert_eq!(
        err(&s).kind,
        ErrorKind::FooterMismatch {
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn commands() {
    let s = [HEADER, CONFIG, b"\x08\0\x63\0\0"].concat();
    assert!(matches!(
        err(&s).kind,
        ErrorKind::UnknownCommand {
            command: Command(0x63),
            ..
        }
    ));
    // SWITCHOVER_START is QEMU 10.0's: the default reads it, a 7.2 or 8.1-9.2 loader rejects
    // it, and it carries no payload.
    let s = [HEADER, CONFIG, b"\x08\0\x0b\0\0\x00"].concat();
    let events = decode_all(&s, Default::default()).unwrap();
    assert!(events.iter().any(|(_, e)| matches!(e,
        Event::Command(c) if c.command == Command::SWITCHOVER_START && c.payload.is_empty())));
    for d in [Dialect::Qemu7_2, Dialect::Qemu8_1] {
        let e = decode_all(&s, DecoderOptions::default().with_dialect(d)).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::UnknownCommand {
                command: Command::SWITCHOVER_START,
                len: 0
            },
            "{d}"
        );
        assert_eq!(e.offset, (HEADER.len() + CONFIG.len()) as u64, "{d}");
    }
    let s = [HEADER, CONFIG, b"\x08\0\x0b\0\x01x"].concat();
    assert_eq!(
        err(&s).kind,
        ErrorKind::CommandLength {
            command: Command::SWITCHOVER_START,
            len: 1
        }
    );
    let s = [HEADER, CONFIG, b"\x08\0\x02\0\x03abc"].concat();
    assert_eq!(
        err(&s).kind,
        ErrorKind::CommandLength {
            command: Command::PING,
            len: 3
        }
    );
    let s = [HEADER, CONFIG, b"\x08\0\x03\0\x08abcdefgh"].concat();
    assert!(matches!(err(&s).kind, ErrorKind::CommandLength { .. }));
    let s = [HEADER, CONFIG, b"\x08\0\x02\0\x04\0\0\0\x01\x00"].concat();
    assert!(decode_all(&s, Default::default()).is_ok());
}

/// A record inside the ram START section, after MEM_SIZE.
fn ram_record(rec: &[u8]) -> Vec<u8> {
    let mut s = prefix();
    s.extend_from_slice(rec);
    s
}

fn page_rec(flags: u64, offset: u64, name: Option<&str>, payload: &[u8]) -> Vec<u8> {
    let mut v = word(offset | flags);
    if let Some(n) = name {
        v.push(n.len() as u8);
        v.extend_from_slice(n.as_bytes());
    }
    v.extend_from_slice(payload);
    v
}

#[test]
fn unknown_flag_combinations() {
    for flags in [0x400u64, 0x800, 0x001, 0x018, 0x00c] {
        let s = ram_record(&page_rec(flags, 0, Some("pc.ram"), &[0; 4096]));
        let e = err(&s);
        assert!(
            matches!(e.kind, ErrorKind::UnknownFlags { flags: f } if f.bits() == flags),
            "{flags:#x}: {:?}",
            e.kind
        );
    }
}

#[test]
fn compressed_page_and_rdma_hook() {
    let s = ram_record(&page_rec(0x100, 0, Some("pc.ram"), &[0; 8]));
    assert_eq!(err(&s).kind, ErrorKind::UnexpectedCompressedPage);
    let s = ram_record(&word(0x80));
    assert_eq!(err(&s).kind, ErrorKind::RdmaHook);
}

#[test]
fn flag_0x200_under_each_qemu_dialect() {
    let mut s = ram_record(&word(0x200));
    let e = err_with(&s, DecoderOptions::default().with_dialect(Dialect::Qemu7_2));
    assert!(matches!(e.kind, ErrorKind::UnknownFlags { flags } if flags.bits() == 0x200));
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02\x00");
    // The default (any QEMU 7.2 to 11.1) and qemu-8.1+ read QEMU 8.1+'s MULTIFD_FLUSH.
    for opts in [
        DecoderOptions::default(),
        DecoderOptions::default().with_dialect(Dialect::Qemu8_1),
    ] {
        let events = decode_all(&s, opts).unwrap();
        assert!(events
            .iter()
            .any(|(_, e)| matches!(e, Event::MultifdFlush(_))));
    }
}

#[test]
fn continue_without_block() {
    let s = ram_record(&page_rec(0x22, 0, None, &[0]));
    let e = err(&s);
    assert_eq!(e.kind, ErrorKind::ContinueWithoutBlock);
    assert_eq!(e.record, Some(RecordKind::Zero));
}

#[test]
fn continue_survives_a_new_mem_size_only_if_the_block_does() {
    // QEMU keeps its last block across MEM_SIZE records; so do we while it is listed.
    let mut s = ram_record(&page_rec(0x02, 0, Some("pc.ram"), &[0]));
    s.extend(mem_size());
    s.extend(page_rec(0x22, 0x1000, None, &[0]));
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02\x00");
    assert!(decode_all(&s, Default::default()).is_ok());
    let mut other = word(0x1000 | 4);
    other.push(1);
    other.extend_from_slice(b"x");
    other.extend(word(0x1000));
    let mut s = ram_record(&page_rec(0x02, 0, Some("pc.ram"), &[0]));
    s.extend(other);
    s.extend(page_rec(0x22, 0, None, &[0]));
    assert_eq!(err(&s).kind, ErrorKind::ContinueWithoutBlock);
}

#[test]
fn unknown_block() {
    let s = ram_record(&page_rec(0x08, 0, Some("pc.rax"), &[0; 4096]));
    let e = err(&s);
    assert_eq!(
        e.kind,
        ErrorKind::UnknownBlock {
            idstr: "pc.rax".into()
        }
    );
    assert_eq!(e.block.as_deref(), Some("pc.rax"));
}

#[test]
fn offset_beyond_block() {
    let s = ram_record(&page_rec(0x02, 0x10000, Some("pc.ram"), &[0]));
    let e = err(&s);
    assert_eq!(
        e.kind,
        ErrorKind::OffsetBeyondBlock {
            offset: 0x10000,
            used_length: 0x10000
        }
    );
    assert_eq!(e.block.as_deref(), Some("pc.ram"));
    // The last page is fine.
    let mut s = ram_record(&page_rec(0x02, 0xf000, Some("pc.ram"), &[0]));
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02\x00");
    assert!(decode_all(&s, Default::default()).is_ok());
}

#[test]
fn mem_size_totals_that_do_not_add_up() {
    // Total says 0x10000 but the block is 0x20000.
    let mut ms = word(0x10000 | 4);
    ms.push(6);
    ms.extend_from_slice(b"pc.ram");
    ms.extend(word(0x20000));
    let s = [HEADER, CONFIG, RAM_START, &ms].concat();
    assert!(matches!(
        err(&s).kind,
        ErrorKind::MemSizeMismatch {
            total: 0x10000,
            sum: 0x20000
        }
    ));
}

#[test]
fn bad_used_lengths_and_duplicate_blocks() {
    let one = |name: &str, len: u64| {
        let mut v = vec![name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v.extend(word(len));
        v
    };
    let s = [
        HEADER,
        CONFIG,
        RAM_START,
        &word(0x2000 | 4),
        &one("a", 0x1800),
    ]
    .concat();
    assert!(matches!(err(&s).kind, ErrorKind::BadUsedLength { .. }));
    let s = [
        HEADER,
        CONFIG,
        RAM_START,
        &word(0x2000 | 4),
        &one("a", 0x1000),
        &one("a", 0x1000),
    ]
    .concat();
    assert!(matches!(err(&s).kind, ErrorKind::DuplicateBlock { .. }));
}

#[test]
fn block_count_and_ram_total_limits() {
    let opts = DecoderOptions::default().with_limits(
        Limits::default()
            .with_max_ram_blocks(1)
            .with_max_ram_total(0x20000),
    );
    let mut ms = word(0x2000 | 4);
    for n in ["a", "b"] {
        ms.push(1);
        ms.extend_from_slice(n.as_bytes());
        ms.extend(word(0x1000));
    }
    let s = [HEADER, CONFIG, RAM_START, &ms].concat();
    assert_eq!(
        err_with(&s, opts.clone()).kind,
        ErrorKind::TooManyBlocks { limit: 1 }
    );
    let s = [HEADER, CONFIG, RAM_START, &word((1 << 40) | 4)].concat();
    assert!(matches!(
        err_with(&s, opts).kind,
        ErrorKind::RamTotalTooLarge { .. }
    ));
}

#[test]
fn xbzrle_record_header_rejections() {
    let s = ram_record(&page_rec(0x40, 0, Some("pc.ram"), &[0x02, 0, 2, 1, 1]));
    assert_eq!(err(&s).kind, ErrorKind::XbzrleEncoding { found: 2 });
    let s = ram_record(&page_rec(0x40, 0, Some("pc.ram"), &[0x01, 0x10, 0x01]));
    assert_eq!(
        err(&s).kind,
        ErrorKind::XbzrleLength {
            len: 0x1001,
            page_size: 4096
        }
    );
}

#[test]
fn xbzrle_delta_rejections_when_applied() {
    // The fact sheet's verified rejections: each fails to apply with an XBZRLE error.
    for delta in [
        &[0x10, 0x00][..],
        &[0x00, 0x01, 0xAA, 0x00, 0x01, 0xBB],
        &[0xff, 0x1f, 0x02, 0xAA, 0xBB],
        &[0x10, 0x02, 0xAA, 0xBB, 0x05],
        &[0x05, 0x05],
    ] {
        let mut rec = vec![0x01];
        rec.extend_from_slice(&(delta.len() as u16).to_be_bytes());
        rec.extend_from_slice(delta);
        let mut s = ram_record(&page_rec(0x40, 0, Some("pc.ram"), &rec));
        s.extend(word(0x10));
        s.extend_from_slice(b"\x7e\0\0\0\x02\x00");
        let events = decode_all(&s, Default::default()).unwrap();
        let mut image = RamImage::new(4096);
        let mut failed = None;
        for (off, ev) in &events {
            if let Event::MemSize(ms) = ev {
                image.set_blocks(&ms.blocks);
            }
            if let Err(e) = apply_event(&mut image, ev, *off) {
                failed = Some(e);
            }
        }
        let e = failed.unwrap_or_else(|| panic!("{delta:02x?} applied"));
        assert!(matches!(e.kind, ErrorKind::Xbzrle(_)), "{e}");
        assert_eq!(e.record, Some(RecordKind::Xbzrle));
    }
}

#[test]
fn non_zero_fill_under_strict_policy() {
    let mut s = ram_record(&page_rec(0x02, 0, Some("pc.ram"), &[0x55]));
    s.extend(word(0x10));
    s.extend_from_slice(b"\x7e\0\0\0\x02\x00");
    assert!(
        decode_all(&s, Default::default()).is_ok(),
        "7.2 accepts any fill"
    );
    let opts = DecoderOptions::default().with_zero_fill(ZeroFill::RejectNonZero);
    assert_eq!(
        err_with(&s, opts).kind,
        ErrorKind::NonZeroFill { fill: 0x55 }
    );
}

#[test]
fn idstr_not_utf8() {
    let s = ram_record(
        &page_rec(0x02, 0, Some("\u{80}"), &[0])
            .iter()
            .map(|b| if *b == 0xc2 { 0xff } else { *b })
            .collect::<Vec<_>>(),
    );
    assert!(matches!(
        err(&s).kind,
        ErrorKind::NotUtf8 { .. } | ErrorKind::UnknownBlock { .. }
    ));
}

#[test]
fn device_section_unterminated() {
    let opts =
        DecoderOptions::default().with_limits(Limits::default().with_max_device_section_len(64));
    let mut s = [HEADER, CONFIG, b"\x04\0\0\0\x04\x05timer\0\0\0\0\0\0\0\x02"].concat();
    s.extend_from_slice(&[0xaa; 100]);
    assert_eq!(
        err_with(&s, opts).kind,
        ErrorKind::DeviceSectionUnterminated { limit: 64 }
    );
}

#[test]
fn device_sections_need_footers() {
    let opts = DecoderOptions::default().with_section_footers(false);
    let s = [
        HEADER,
        CONFIG,
        b"\x04\0\0\0\x04\x05timer\0\0\0\0\0\0\0\x02\x00",
    ]
    .concat();
    assert_eq!(
        err_with(&s, opts).kind,
        ErrorKind::DeviceSectionWithoutFooters
    );
}

#[test]
fn vmdesc_too_large_and_trailing_bytes() {
    let s = [HEADER, CONFIG, b"\x00\x06\xff\xff\xff\xff"].concat();
    assert!(matches!(err(&s).kind, ErrorKind::VmdescTooLarge { .. }));
    let s = [HEADER, CONFIG, b"\x00\x06\0\0\0\x02{}X"].concat();
    assert_eq!(err(&s).kind, ErrorKind::TrailingBytes { count: 1 });
    let s = [HEADER, CONFIG, b"\x00\x07"].concat();
    assert!(matches!(err(&s).kind, ErrorKind::TrailingBytes { .. }));
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let mut dec = ramstream_codec::Decoder::new(Default::default());
    assert!(dec.decode(b"QEVX\0\0\0\x03").is_err());
    assert_eq!(
        dec.decode(b"QEVM\0\0\0\x03").unwrap_err().kind,
        ErrorKind::Poisoned
    );
}

#[test]
fn errors_print_offset_record_and_block() {
    let s = ram_record(&page_rec(0x02, 0x10000, Some("pc.ram"), &[0]));
    let e = err(&s);
    assert_eq!(
        e.to_string(),
        format!(
            "at offset {:#x} (ram ZERO record, block \"pc.ram\"): page offset 0x10000 beyond block used length 0x10000",
            prefix().len()
        )
    );
}
