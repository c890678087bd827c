//! The stream-level targets: whole streams, split streams, and records after a valid
//! prefix.

use ramstream_codec::{Configuration, DecoderOptions, Encoder, RamBlock, SectionHeader, ZeroFill};
use ramstream_spec::config::capability;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::Dialect;

use super::{
    assert_same_run, decode_in_chunks, decode_whole, exercise_stream, fuzz_limits,
    options_from_byte, split_sizes,
};

/// Target `stream_split`: `opts, split_seed, stream…`. A whole stream under the options of
/// [`options_from_byte`], fed in the chunks of [`split_sizes`], applied to an image and
/// re-encoded (see [`exercise_stream`]).
pub fn stream_split(data: &[u8]) {
    let [ctl, seed, stream @ ..] = data else {
        return;
    };
    exercise_stream(stream, &options_from_byte(*ctl), *seed);
}

/// Target `differential_split`: `opts, split_seed, stream…`. The incremental decoder fed
/// in seeded chunks, byte by byte (inputs up to 4 KiB) and whole-but-unfinished must agree
/// with one-shot decoding.
pub fn differential_split(data: &[u8]) {
    let [ctl, seed, stream @ ..] = data else {
        return;
    };
    let opts = options_from_byte(*ctl);
    let whole = decode_whole(stream, opts.clone());
    let split = decode_in_chunks(stream, opts.clone(), split_sizes(*seed | 1));
    assert_same_run(&whole, &split, "seeded split");
    let unfinished = decode_in_chunks(stream, opts.clone(), [usize::MAX]);
    assert_same_run(&whole, &unfinished, "whole input, finish late");
    if stream.len() <= 4096 {
        let bytewise = decode_in_chunks(stream, opts, std::iter::repeat(1));
        assert_same_run(&whole, &bytewise, "byte by byte");
    }
}

/// The RAM blocks of QEMU 7.2's `pc-i440fx-7.2` with 64 MiB, as the recorded vectors have
/// them, so that records cut from the vectors apply.
pub fn vector_blocks() -> Vec<RamBlock> {
    [
        ("pc.ram", 64 << 20),
        ("/rom@etc/acpi/tables", 128 << 10),
        ("pc.bios", 256 << 10),
        ("pc.rom", 128 << 10),
        ("/rom@etc/table-loader", 4 << 10),
        ("/rom@etc/acpi/rsdp", 4 << 10),
    ]
    .into_iter()
    .map(|(n, l)| RamBlock {
        idstr: n.into(),
        used_length: l,
        page_size: None,
        mr_addr: None,
    })
    .collect()
}

/// The stream prefix [`ram_records`] puts before the fuzz bytes: header, configuration,
/// `ram` START (section id 2) and MEM_SIZE with [`vector_blocks`]. `ctl` as in
/// [`ram_records`].
pub fn ram_records_prefix(ctl: u8) -> (Vec<u8>, DecoderOptions) {
    let dialect = super::options::FUZZ_DIALECTS[usize::from(ctl & 3)];
    let ignore_shared = ctl & 8 != 0;
    let mut caps = Vec::new();
    if ignore_shared {
        caps.push(capability::X_IGNORE_SHARED);
    }
    if dialect == Dialect::RamstreamBalloonV1 && ctl & 16 == 0 {
        caps.push(capability::RAMSTREAM_BALLOON_V1);
    }
    let opts = DecoderOptions::default()
        .with_dialect(dialect)
        .with_zero_fill(if ctl & 4 != 0 {
            ZeroFill::RejectNonZero
        } else {
            ZeroFill::AcceptAny
        })
        .with_limits(fuzz_limits());
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    enc.header(&mut out);
    enc.configuration(
        &Configuration {
            machine_type: "pc-i440fx-7.2",
            target_page_bits: None,
            capabilities: (!caps.is_empty()).then_some(caps),
            uuid: None,
        },
        &mut out,
    )
    .unwrap();
    enc.section_header(&SectionHeader::ram_start(2), &mut out)
        .unwrap();
    let mut blocks = vector_blocks();
    for (i, b) in blocks.iter_mut().enumerate() {
        b.mr_addr = ignore_shared.then_some(i as u64 * 0x1000_0000);
    }
    enc.mem_size(&blocks, &mut out).unwrap();
    (out, opts)
}

/// Target `ram_records`: `ctl, records…`. The records follow a valid prefix
/// ([`ram_records_prefix`]) inside the `ram` START section (id 2). `ctl`: bits 0–1 the
/// dialect (`qemu-7.2`, `qemu`, `kolhe-2016`, `ramstream-balloon-v1`), bit 2 strict
/// ZERO fill, bit 3 `x-ignore-shared` (MEM_SIZE with `mr_addr`), bit 4 do not announce
/// the balloon extension, bits 5–7 the split seed.
pub fn ram_records(data: &[u8]) {
    let [ctl, records @ ..] = data else {
        return;
    };
    let (mut stream, opts) = ram_records_prefix(*ctl);
    stream.extend_from_slice(records);
    exercise_stream(&stream, &opts, ctl & 0xe0);
}

/// Target `balloon_runs`: `ctl, payload…`. A balloon record (flag 0x200) inside the
/// [`ram_records`] prefix: `ctl` bit 0 clear is `ramstream-balloon-v1` (extension announced),
/// set is `kolhe-2016`; bit 1 set adds CONTINUE to the word (v1: the block of the previous
/// record, here none, so also the error path) — the fuzz bytes follow the record word (the
/// v1 idstr, or the kolhe bitmap header). Bit 2 strict ZERO fill, bits 5–7 the split seed.
/// Same checks as [`stream_split`], plus the balloon map.
pub fn balloon_runs(data: &[u8]) {
    let [ctl, payload @ ..] = data else {
        return;
    };
    let dialect = if ctl & 1 == 0 { 3 } else { 2 };
    let (mut stream, opts) = ram_records_prefix(dialect | (ctl & 4));
    let word = RamFlags::X200.bits()
        | if ctl & 2 != 0 {
            RamFlags::CONTINUE.bits()
        } else {
            0
        };
    stream.extend_from_slice(&word.to_be_bytes());
    stream.extend_from_slice(payload);
    exercise_stream(&stream, &opts, ctl & 0xe0);
}

/// Target `configuration`: the configuration payload (after `QEVM 3` and the `0x07`
/// byte) and whatever follows it, under the default and the balloon-v1 dialect.
pub fn configuration(data: &[u8]) {
    let mut stream = b"QEVM\0\0\0\x03\x07".to_vec();
    stream.extend_from_slice(data);
    for dialect in [Dialect::Qemu7_2, Dialect::RamstreamBalloonV1] {
        let opts = DecoderOptions::default()
            .with_dialect(dialect)
            .with_limits(fuzz_limits());
        exercise_stream(&stream, &opts, 0x81);
    }
}
