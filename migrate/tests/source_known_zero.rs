//! Pages the guest memory knows to be zero (`GuestRam::known_zero_pages`: never backed by
//! the host) are sent as ZERO records without being read, and the stream is the one a source
//! that reads every page writes, byte for byte.

mod source_support;
mod support;

use std::time::Duration;

use ramstream_codec::DecoderOptions;
use ramstream_migrate::SourceOptions;
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
