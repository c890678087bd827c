//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and every crash ever found
//! (`fuzz/regressions/<target>/`) of the codec's targets through the same
//! `ramstream_test_support::fuzzing` entry points the cargo-fuzz targets call, so plain
//! `cargo test` on stable covers them. The codec bugs they found are pinned without the
//! harnesses in `codec/tests/fuzz_findings.rs`.

use std::fs;
use std::path::{Path, PathBuf};

use ramstream_test_support::fuzzing;

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
fn multifd_channel() {
    let n = replay("multifd_channel", fuzzing::multifd::multifd_channel);
    assert!(n > 0, "no corpus for multifd_channel");
}

#[test]
fn multifd_roundtrip() {
    let n = replay("multifd_roundtrip", fuzzing::multifd::multifd_roundtrip);
    assert!(n > 0, "no corpus for multifd_roundtrip");
}

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
        "multifd_channel",
        "multifd_roundtrip",
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
