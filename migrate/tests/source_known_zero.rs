//! Pages the guest memory knows to be zero (`GuestRam::known_zero_pages`: never backed by
//! the host) are sent as ZERO records without being read, and the stream is the one a source
//! that reads every page writes, byte for byte.

mod source_support;
mod support;

use std::time::{Duration, Instant};

use ramstream_codec::DecoderOptions;
use ramstream_migrate::{RamBlockLayout, Source, SourceOptions, Transmit};
use source_support::*;

/// A guest with a few written and zeroed pages that dirties more at every sync.
fn sparse_guest() -> ScriptedGuest {
    let mut g = guest(vec![
        vec![w(0, 0, 10, 1)],
        vec![
            w(0, 20, 5, 2),
            ScriptStep::Zero {
                block: 1,
                first: 3,
                count: 2,
            },
        ],
        vec![w(1, 40, 4, 3)],
    ]);
    g.apply(&w(0, 100, 16, 9));
    g.apply(&w(1, 0, 8, 10));
    g
}

fn iterating(xbzrle: bool) -> SourceOptions {
    SourceOptions::default()
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(2)
        .with_xbzrle_cache_size(xbzrle.then_some(1 << 20))
}

#[test]
fn never_backed_pages_are_sent_as_zero_without_being_read() {
    for xbzrle in [false, true] {
        let mut reading = sparse_guest();
        let read_all = migrate(&mut reading, iterating(xbzrle));
        let mut knowing = sparse_guest().knowing_unbacked();
        let skipped = migrate(&mut knowing, iterating(xbzrle));

        assert_eq!(
            skipped.stream, read_all.stream,
            "the same stream (xbzrle {xbzrle})"
        );
        let (a, b) = (read_all.source.stats(), skipped.source.stats());
        assert_eq!(a.pages_visited, b.pages_visited);
        assert_eq!(a.pages_known_zero, 0);
        // Backed when the bulk pass visits all 320 pages: 10 + 16 + 8; the dirty rounds
        // visit at most 11 more that may not be backed yet.
        let bulk_backed = 10 + 16 + 8;
        assert!(
            b.pages_known_zero >= 320 - bulk_backed - 11,
            "{} known zero",
            b.pages_known_zero
        );
        // Neither sending nor the RAM digest (sha256-chunked, kept during precopy) reads a
        // page the memory knows to be zero; the source that reads all does.
        assert_eq!(knowing.unbacked_pages_read(), 0, "xbzrle {xbzrle}");
        assert!(reading.unbacked_pages_read() >= 320 - bulk_backed - 11);
        assert!(
            knowing.pages_read() < reading.pages_read() - b.pages_known_zero,
            "{} pages read knowing, {} reading all",
            knowing.pages_read(),
            reading.pages_read()
        );
        let (dest, _) = load(&skipped.stream, DecoderOptions::default());
        assert_same_memory(&knowing, &dest);
    }
}

/// Send polls of the bulk pass over one 128 MiB block with `written` runs of pages backed.
fn bulk_polls(knowing: bool) -> (usize, Vec<u8>) {
    let pages = 32_768u64;
    let layout = vec![RamBlockLayout::new("pc.ram", pages * PAGE as u64)];
    let mut g = ScriptedGuest::with_blocks(&layout, vec![]);
    g.apply(&w(0, 0, 10, 1));
    g.apply(&w(0, 20_000, 16, 2));
    if knowing {
        g = g.knowing_unbacked();
    }
    let mut source = Source::new(&layout, SourceOptions::default()).expect("source");
    let (mut stream, mut syncs, mut bulk_sends) = (Vec::new(), 0, 0);
    let now = Instant::now();
    loop {
        match source.poll_transmit(now, &g, &mut stream).expect("poll") {
            Transmit::Send { bytes } => {
                source.handle_sent(bytes);
                if syncs == 1 {
                    bulk_sends += 1;
                }
            }
            Transmit::SyncDirty => {
                syncs += 1;
                source.sync_dirty(now, &mut g).expect("sync");
            }
            Transmit::StopGuest => {
                g.stop();
                source.handle_stopped(now, &mut devices()).expect("stop");
            }
            Transmit::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    (bulk_sends, stream)
}

#[test]
fn a_run_of_never_backed_pages_goes_out_in_few_polls() {
    let (reading, stream_reading) = bulk_polls(false);
    let (knowing, stream_knowing) = bulk_polls(true);
    assert_eq!(stream_knowing, stream_reading, "the same stream");
    // Reading every page: one poll per 64 pages. Knowing: a poll per 8,192-page section
    // of ZERO records, and one per group of 64 pages around the 26 backed ones.
    assert!(reading >= 32_768 / 64, "{reading} polls reading every page");
    assert!(knowing <= 4 + 2 * 2 + 2, "{knowing} polls knowing");
}
