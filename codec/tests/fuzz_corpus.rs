//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every crash ever found
//! (`fuzz/regressions/<target>/`) through the same `ramstream_codec::fuzzing` entry points
//! the cargo-fuzz targets call, so plain `cargo test` on stable covers them.

use std::fs;
use std::path::{Path, PathBuf};

use ramstream_codec::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `entry` on every file under `fuzz/{corpus,regressions}/<target>/`; returns how many.
fn replay(target: &str, entry: impl Fn(&[u8])) -> usize {
    let mut n = 0;
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.is_file()) {
            let data = fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| entry(&data)));
            assert!(r.is_ok(), "{target}: {} fails", f.display());
            n += 1;
        }
    }
    n
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let n = replay(stringify!($target), fuzzing::$target);
            assert!(n > 0, "no corpus for {}", stringify!($target));
        }
    )*};
}

replay_tests!(
    stream_split,
    differential_split,
    ram_records,
    configuration,
    xbzrle_decode,
    roundtrip_xbzrle,
    roundtrip_records,
    balloon_runs,
    mapped_ram,
);

#[test]
fn vmdesc() {
    let json = fs::read(fuzz_dir().join("data/vmdesc.json")).unwrap();
    let n = replay("vmdesc", |d| fuzzing::vmdesc(&json, d));
    assert!(n > 0);
}

/// Every directory of corpus or regressions belongs to a target replayed above, or to
/// `receiver`, which `reference-receiver/tests/fuzz_corpus.rs` replays.
#[test]
fn every_target_is_replayed() {
    let known = [
        "stream_split",
        "differential_split",
        "ram_records",
        "configuration",
        "xbzrle_decode",
        "roundtrip_xbzrle",
        "roundtrip_records",
        "vmdesc",
        "balloon_runs",
        "mapped_ram",
        "receiver",
    ];
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                known.contains(&name.as_str()),
                "{kind}/{name} is not replayed"
            );
        }
    }
}

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
