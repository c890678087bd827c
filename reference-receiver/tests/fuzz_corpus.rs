//! Replays the committed seeds of the `receiver` fuzz target (`fuzz/corpus/receiver/`) and
//! every crash it ever found (`fuzz/regressions/receiver/`) through
//! `ramstream_test_support::fuzzing::receive_records`, the function the cargo-fuzz
//! target calls, so plain `cargo test` on stable covers them.
//!
//! The seeds are written by [`seeds`]; regenerate them with
//! `RAMSTREAM_WRITE_SEEDS=1 cargo test -p ramstream-reference-receiver --test fuzz_corpus committed_seeds_are_current`.

use std::fs;
use std::path::{Path, PathBuf};

use ramstream_codec::balloon::PageRun;
use ramstream_codec::{decode_all, DecoderOptions};
use ramstream_reference_receiver::{DestError, RecvErrorKind};
use ramstream_reference_vmm::Error as VmmError;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use ramstream_spec::Dialect;
use ramstream_test_support::fuzzing::receiver::{
    receive_records, receive_spliced, AFTER_FIRST_PART, AFTER_MEM_SIZE, BEFORE_DEVICES,
    INSTEAD_OF_MEM_SIZE, VERIFY_FAILS, WITH_TAIL,
};
use ramstream_test_support::real_stream::{real_stream, BLOCK, RAM};
use ramstream_test_support::records::{balloon_inflate, mem_size, record, xbzrle};

fn target_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("receiver")
}

#[test]
fn receiver() {
    let mut files: Vec<PathBuf> = ["corpus", "regressions"]
        .into_iter()
        .filter_map(|kind| fs::read_dir(target_dir(kind)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus for receiver");
    for f in files {
        eprintln!("replaying {}", f.display());
        receive_records(&fs::read(&f).unwrap());
    }
}

/// The seeds: the real stream whole and in pieces at each splice point, and the hostile
/// records of `tests/hostile.rs` right after MEM_SIZE.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let r = real_stream();
    let (page, zero, xbz) = (
        RamFlags::PAGE.bits(),
        RamFlags::ZERO.bits(),
        RamFlags::XBZRLE.bits(),
    );
    let pg = |b: u8| vec![b; PAGE_SIZE];
    let last = BLOCK - PAGE_SIZE as u64;
    let seed = |ctl: u8, bytes: &[u8]| [&[ctl][..], bytes].concat();
    // Hostile records after (or instead of) MEM_SIZE, then EOS, footer, EOF.
    let hostile = |ctl: u8, records: &[Vec<u8>]| {
        let cut = match ctl {
            INSTEAD_OF_MEM_SIZE => r.mem_size_at,
            _ => r.after_mem_size,
        };
        seed(ctl, &r.splice(cut, records).0[cut..])
    };
    let ms = &r.stream[r.mem_size_at..r.after_mem_size];
    // The first item boundary at least 4 KiB after the first PART header.
    let events = decode_all(
        &r.stream,
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
    )
    .unwrap();
    let part_end = events
        .iter()
        .map(|(at, _)| *at as usize)
        .find(|&at| at >= r.after_first_part + PAGE_SIZE)
        .unwrap();
    // The device sections with one byte of the last block digest flipped (the stream ends
    // with that digest, the section footer and EOF).
    let mut bad_digest = r.stream[r.devices_at..].to_vec();
    let n = bad_digest.len();
    bad_digest[n - 7] ^= 1;
    let six = 6 << 20;
    vec![
        ("whole", seed(AFTER_MEM_SIZE | WITH_TAIL, &[])),
        (
            "whole-verify-fails",
            seed(AFTER_MEM_SIZE | WITH_TAIL | VERIFY_FAILS, &[]),
        ),
        (
            "whole-small-reads",
            seed(AFTER_MEM_SIZE | WITH_TAIL | 0x50, &[]),
        ),
        ("mem-size", seed(INSTEAD_OF_MEM_SIZE | WITH_TAIL, ms)),
        (
            "ram-head",
            seed(
                AFTER_MEM_SIZE,
                &r.stream[r.after_mem_size..r.after_first_part],
            ),
        ),
        (
            "ram-part",
            seed(
                AFTER_FIRST_PART | WITH_TAIL,
                &r.stream[r.after_first_part..part_end],
            ),
        ),
        ("devices", seed(BEFORE_DEVICES, &r.stream[r.devices_at..])),
        ("devices-bad-digest", seed(BEFORE_DEVICES, &bad_digest)),
        (
            "hostile-last-pages",
            hostile(
                AFTER_MEM_SIZE,
                &[
                    record(page, last, Some("pc.ram"), &pg(0x40)),
                    record(zero, last, Some("ram1"), &[0xa5]),
                    xbzrle(last, None, &[0xfe, 0x1f, 0x02, 1, 2]),
                ],
            ),
        ),
        (
            "extra-page-then-tail",
            seed(
                AFTER_MEM_SIZE | WITH_TAIL,
                &record(page, 7 * PAGE_SIZE as u64, Some("ram1"), &pg(7)),
            ),
        ),
        (
            "hostile-page-at-block-end",
            hostile(
                AFTER_MEM_SIZE,
                &[record(page, BLOCK, Some("pc.ram"), &pg(1))],
            ),
        ),
        (
            "hostile-u64-offset",
            hostile(
                AFTER_MEM_SIZE,
                &[record(zero, !(PAGE_SIZE as u64 - 1), Some("ram1"), &[0xff])],
            ),
        ),
        (
            "hostile-xbzrle-past-page",
            hostile(
                AFTER_MEM_SIZE,
                &[xbzrle(last, Some("ram1"), &[0xff, 0x1f, 0x02, 9, 9])],
            ),
        ),
        (
            "hostile-continue-first",
            hostile(AFTER_MEM_SIZE, &[record(xbz, 0, None, &[1, 0, 2, 0, 1])]),
        ),
        (
            "hostile-block-change",
            hostile(
                AFTER_MEM_SIZE,
                &[
                    record(zero, 0, Some("ram1"), &[3]),
                    record(zero, PAGE_SIZE as u64, None, &[4]),
                    record(zero, BLOCK, None, &[5]),
                ],
            ),
        ),
        (
            "hostile-mem-size-grows",
            hostile(
                AFTER_MEM_SIZE,
                &[
                    mem_size(2 * RAM, &[("pc.ram", RAM), ("ram1", RAM)]),
                    record(zero, RAM - PAGE_SIZE as u64, Some("pc.ram"), &[6]),
                ],
            ),
        ),
        (
            "hostile-mem-size-12mib",
            hostile(
                INSTEAD_OF_MEM_SIZE,
                &[
                    mem_size(2 * six, &[("pc.ram", six), ("ram1", six)]),
                    record(zero, six - PAGE_SIZE as u64, Some("ram1"), &[8]),
                ],
            ),
        ),
        (
            "hostile-balloon-past-block",
            hostile(
                AFTER_MEM_SIZE,
                &[
                    record(zero, last, Some("ram1"), &[9]),
                    balloon_inflate("ram1", &[PageRun::new(1023, 1)]),
                    balloon_inflate("ram1", &[PageRun::new(1020, 5)]),
                ],
            ),
        ),
        (
            "hostile-ballooned-page",
            hostile(
                AFTER_MEM_SIZE,
                &[
                    balloon_inflate("pc.ram", &[PageRun::new(8, 4)]),
                    record(zero, 10 * PAGE_SIZE as u64, Some("pc.ram"), &[0x5a]),
                ],
            ),
        ),
    ]
}

/// The committed seeds are exactly what [`seeds`] makes (they cannot drift from the stream
/// the harness builds); with `RAMSTREAM_WRITE_SEEDS=1` it (re)writes them instead.
#[test]
fn committed_seeds_are_current() {
    let dir = target_dir("corpus");
    let write = std::env::var("RAMSTREAM_WRITE_SEEDS").as_deref() == Ok("1");
    if write {
        fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds() {
        let path = dir.join(format!("seed-{name}"));
        if write {
            fs::write(&path, &bytes).unwrap();
        } else {
            let committed = fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (regenerate with RAMSTREAM_WRITE_SEEDS=1)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} is stale (regenerate with RAMSTREAM_WRITE_SEEDS=1)",
                path.display()
            );
        }
    }
}

/// The seeds reach what they are named for: the real stream is received and resumed
/// whichever way it is spliced and read, and each hostile one is refused before resuming.
#[test]
fn seeds_reach_their_paths() {
    for (name, bytes) in seeds() {
        let r = receive_spliced(&bytes).unwrap();
        let refused = name.starts_with("hostile") || name.starts_with("ram-head");
        match (name, r) {
            ("whole-verify-fails", Err(e)) => {
                assert!(
                    e.resumed && matches!(e.kind, RecvErrorKind::Verify(_)),
                    "{e}"
                )
            }
            ("devices-bad-digest", Err(e)) => {
                assert!(
                    matches!(e.kind, RecvErrorKind::DigestMismatch { .. }),
                    "{e}"
                )
            }
            (_, Err(e)) if refused => assert!(!e.resumed, "{name}: {e}"),
            (_, Ok(report)) if !refused => assert!(report.guest_resumed, "{name}"),
            (_, r) => panic!("{name}: {:?}", r.map(|_| ())),
        }
    }
}

/// Found while writing this target (`regressions/receiver/vm-state-balloon-run-overflows`):
/// `FakeDestination::restore` computed a VM-state balloon run's end unchecked, so a run
/// ending past u64::MAX panicked (overflow) where the KVM destination refuses it. It is
/// refused; the guest is not resumed.
#[test]
fn vm_state_balloon_run_past_u64_is_refused() {
    let data = fs::read(target_dir("regressions").join("vm-state-balloon-run-overflows")).unwrap();
    let e = receive_spliced(&data).unwrap().unwrap_err();
    assert!(
        !e.resumed
            && matches!(
                e.kind,
                RecvErrorKind::Restore(DestError::Vmm(VmmError::PageOutOfRange { .. }))
            ),
        "{e}"
    );
}
