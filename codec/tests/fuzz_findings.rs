//! Codec bugs the fuzz targets found, pinned with the public API alone (the targets live in
//! `ramstream-test-support`; `test-support/tests/fuzz_corpus.rs` replays their corpus and
//! the crashing inputs under `fuzz/regressions/`).

/// Found by `stream_split` (fuzz/regressions/stream_split/done-before-finish-*): after the
/// VMDESCRIPTION an unfinished decoder said `Done` on empty input, so bytes arriving later
/// were never seen, while one-shot decoding reports them as trailing bytes. `Done` comes
/// only after `finish`.
#[test]
fn done_only_after_finish() {
    use ramstream_codec::{Decoder, ErrorKind, Status};
    let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00\x06\0\0\0\x02{}";
    let mut dec = Decoder::new(Default::default());
    let mut pos = 0;
    while pos < stream.len() {
        match dec.decode(&stream[pos..]).unwrap() {
            Status::Event { consumed, .. } => pos += consumed,
            other => panic!("{other:?} at {pos}"),
        }
    }
    assert_eq!(dec.decode(b"").unwrap(), Status::NeedMore { needed: 1 });
    assert_eq!(
        dec.clone().decode(b"X").unwrap_err().kind,
        ErrorKind::TrailingBytes { count: 1 }
    );
    dec.finish();
    assert_eq!(dec.decode(b"").unwrap(), Status::Done);
}

/// Found while writing `roundtrip_records` (64 KiB target pages): the encoder accepted a
/// 65536-byte XBZRLE delta and wrote its be16 length as 0, a corrupt record. It is refused.
#[test]
fn xbzrle_delta_of_65536_bytes_is_refused() {
    use ramstream_codec::{Encoder, ErrorKind, PageAddr, RamBlock};
    let mut enc = Encoder::new(16);
    let mut out = Vec::new();
    let block = RamBlock {
        idstr: "pc.ram".into(),
        used_length: 1 << 16,
        page_size: None,
        mr_addr: None,
    };
    enc.mem_size(&[block], &mut out).unwrap();
    let len = out.len();
    let delta = vec![1u8; 1 << 16];
    let e = enc
        .xbzrle(
            PageAddr {
                block: 0,
                offset: 0,
            },
            &delta,
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Encode { .. }));
    assert_eq!(out.len(), len, "nothing written");
    assert!(enc
        .xbzrle(
            PageAddr {
                block: 0,
                offset: 0
            },
            &delta[..65535],
            &mut out
        )
        .is_ok());
}
