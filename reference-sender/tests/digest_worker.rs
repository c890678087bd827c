//! The sha256-chunked digest hashed by the sender's digest worker thread (SPEC.md §13.7):
//! a guest whose memory another thread can read has its chunks hashed there, and the digest
//! sent is the guest's memory at stop, the same as the engine's in-line hashing gives for a
//! guest without a page reader.

mod support;

use std::time::Duration;

use ramstream_codec::extension::digest::chunked_block;
use ramstream_codec::PageAddr;
use ramstream_reference_sender::{migrate, GuestSource, SendOptions};
use support::*;

fn opts() -> SendOptions {
    SendOptions {
        downtime_limit: Duration::ZERO,
        max_iterations: 3,
        ..SendOptions::default()
    }
}

/// Data in both blocks, a balloon, and pages rewritten at every sync.
fn scripted() -> ScriptedGuest {
    let mut g = ScriptedGuest::new(
        layout(),
        vec![
            vec![w(0, 0, 300, 1)],
            vec![w(0, 10, 20, 2), w(1, 5, 3, 3)],
            vec![w(1, 500, 40, 4)],
            vec![w(0, 900, 100, 5)],
        ],
    );
    g.apply(&w(1, 100, 200, 6));
    g.apply(&ScriptStep::Inflate {
        block: 1,
        first: 600,
        count: 300,
    });
    g.steady = vec![w(0, 700, 16, 7)];
    g
}

/// Every block's sha256-chunked digest of `g`'s memory, ballooned pages as zero, in hex.
fn memory_digests(g: &ScriptedGuest) -> Vec<String> {
    let runs = g.ballooned_runs();
    (0..g.layout().regions.len())
        .map(|b| {
            let pages = g.layout().regions[b].pages();
            let sum = chunked_block(pages, PAGE, &runs[b], |p, buf| {
                GuestSource::read_page(g, PageAddr::of_page(b, p, PAGE), buf)
            })
            .unwrap();
            hex::encode(sum)
        })
        .collect()
}

#[test]
fn the_worker_hashes_the_chunks_and_the_digest_is_the_memorys_and_the_in_line_ones() {
    let mut shared = SharedGuest::new(scripted());
    let r = migrate(&mut shared, Vec::new(), &opts(), &mut |_| {}).expect("migration");
    assert_eq!(r.iterations, 3);
    assert!(
        r.digest_chunks_offloaded > 0,
        "a page reader: the worker hashed chunks ({r:?})"
    );
    let sent: Vec<String> = r.digests.iter().map(|(_, h)| h.clone()).collect();
    assert_eq!(sent, memory_digests(&shared.inner));

    let mut plain = scripted();
    let inline = migrate(&mut plain, Vec::new(), &opts(), &mut |_| {}).expect("migration");
    assert_eq!(inline.digest_chunks_offloaded, 0, "no page reader: in line");
    assert_eq!(inline.digests, r.digests);
}
