//! The precopy source end to end on a scripted guest: setup, the bulk pass, three dirty
//! iterations and stop-and-copy into a `Vec<u8>`, then the stream decoded by the codec and
//! loaded by the `Loader` into a second guest with the same memory.

mod source_support;
mod support;

use std::time::{Duration, Instant};

use ramstream_codec::extension::digest::{chunked_block, digest_block, DigestAlgorithm};
use ramstream_codec::{DecoderOptions, PageAddr, Vectored};
use ramstream_migrate::{
    DigestPolicy, GuestRam, LoaderOptions, PageRun, Phase, SourceOptions, Transmit,
};
use source_support::*;

fn iterating(max_iterations: u32) -> SourceOptions {
    SourceOptions::default()
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(max_iterations)
}

/// A guest with data in both blocks whose script dirties pages at every sync.
fn busy_guest() -> ScriptedGuest {
    let mut g = guest(vec![
        // At the setup sync: before the bulk pass reads them.
        vec![w(0, 0, 100, 1)],
        // After the bulk pass, and after each dirty iteration.
        vec![w(0, 10, 20, 2), w(1, 5, 3, 3)],
        vec![
            w(0, 50, 5, 4),
            ScriptStep::Zero {
                block: 0,
                first: 0,
                count: 2,
            },
        ],
        vec![w(1, 60, 4, 5)],
        // At the sync that decides to stop: these go in the END section.
        vec![w(0, 200, 8, 6)],
    ]);
    g.apply(&w(0, 100, 50, 9));
    g.apply(&w(1, 0, 64, 10));
    g
}

#[test]
fn bulk_pass_three_dirty_rounds_and_stop_and_copy_arrive_intact() {
    let mut g = busy_guest();
    let m = migrate(&mut g, iterating(3));
    let s = m.source.stats();
    assert_eq!(m.source.phase(), Phase::Completed);
    assert_eq!((s.iterations, s.converged), (3, false));
    assert_eq!(
        s.dirty_sync_count, 6,
        "setup, after bulk, 3 iterations, final"
    );
    let pages: Vec<u64> = s.rounds.iter().map(|r| r.pages).collect();
    assert_eq!(pages, [320, 23, 7, 4]);
    assert_eq!(
        s.rounds[3].dirty_after, 8,
        "the stop decision saw 8 dirty pages"
    );
    assert_eq!(s.produced, m.stream.len() as u64);
    assert_eq!(s.sent, s.produced);
    assert_eq!(s.remaining, 0);
    assert_eq!(s.pages_visited, 320 + 23 + 7 + 4 + 8);
    assert!(s.duplicate > 100 && s.normal > 100, "{s:?}");
    assert_eq!(s.xbzrle_pages, 0, "no XBZRLE unless asked for");

    // The codec decodes it (what `ramstream inspect` does) in QEMU's section order.
    let kinds = kinds(&m.stream, DecoderOptions::default());
    let names: Vec<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    let count = |k: &str| names.iter().filter(|n| **n == k).count();
    assert_eq!((count("START"), count("PART"), count("END")), (1, 4, 1));
    let after_ram: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| n.starts_with("DEVICE") || *n == "EOF")
        .collect();
    assert_eq!(
        after_ram,
        [
            "DEVICE timer",
            "DEVICE cpu",
            "DEVICE ramstream/ram-digest",
            "EOF"
        ]
    );
    assert_eq!(
        count("PAGE") + count("ZERO"),
        (320 + 23 + 7 + 4 + 8) as usize
    );

    // The Loader rebuilds the same memory and hands back the device state.
    let (dest, blobs) = load(&m.stream, DecoderOptions::default());
    assert_same_memory(&g, &dest);
    dest.check_guards();
    assert_eq!(&blobs[..2], &devices()[..]);

    // The digest section describes the final memory (SPEC.md §13.2): the Loader checks it
    // at EOF when asked to require one, and here by hand.
    let require = LoaderOptions::default().with_digest(DigestPolicy::Require);
    let (checked, _) = load_with(&m.stream, require);
    assert_same_memory(&g, &checked);
    let digest = m.source.digest().expect("a digest section");
    assert_eq!(digest.algorithm, DigestAlgorithm::Sha256Chunked);
    for (block, entry) in digest.blocks.iter().enumerate() {
        let pages = PageRun::of_block(layout()[block].used_length(), PAGE).count;
        let sum = chunked_block(pages, PAGE, &[], |p, buf| {
            dest.read_page(PageAddr::of_page(block, p, PAGE), buf)
        })
        .unwrap();
        assert_eq!(entry.sha256, sum, "block {block}");
    }
    // Kept during the precopy (SPEC.md §13.7): at stop time only the chunk of the 8 pages
    // dirtied at the final sync (pc.ram pages 200..208, chunk 12) was hashed again.
    assert_eq!(s.digest_chunks_at_stop, 1, "{s:?}");
}

#[test]
fn the_sha256_sparse_digest_is_still_sent_when_asked_for() {
    let mut g = busy_guest();
    let opts = (iterating(2)).with_digest_algorithm(DigestAlgorithm::Sha256Sparse);
    let m = migrate(&mut g, opts);
    let require = LoaderOptions::default().with_digest(DigestPolicy::Require);
    let (dest, _) = load_with(&m.stream, require);
    assert_same_memory(&g, &dest);
    let digest = m.source.digest().expect("a digest section");
    assert_eq!(digest.algorithm, DigestAlgorithm::Sha256Sparse);
    let pages = PageRun::of_block(layout()[0].used_length(), PAGE).count;
    let sum = digest_block(pages, PAGE, &[], |p, buf| {
        dest.read_page(PageAddr::of_page(0, p, PAGE), buf)
    })
    .unwrap();
    assert_eq!(digest.blocks[0].sha256, sum);
    assert_eq!(m.source.stats().digest_chunks_at_stop, 0);
}

#[test]
fn xbzrle_only_after_the_bulk_pass() {
    // The same 32 pages change a little at every sync.
    let touches = (0..8)
        .map(|i| {
            vec![ScriptStep::Touch {
                block: 0,
                first: 0,
                count: 32,
                seed: 100 + i,
            }]
        })
        .collect();
    let xbzrle = |o: SourceOptions| o.with_xbzrle_cache_size(Some(1 << 20));
    let mut g = guest(touches);
    g.apply(&w(0, 0, 64, 1));
    let m = migrate(&mut g, xbzrle(iterating(4)));
    let kinds = kinds(&m.stream, DecoderOptions::default());
    let first_xbzrle = kinds
        .iter()
        .find(|(_, k)| k == "XBZRLE")
        .map(|(at, _)| *at as usize)
        .expect("XBZRLE records");
    // Pass 1 (bulk) sends PAGE; pass 2 misses the cache and sends PAGE again, filling it;
    // XBZRLE from pass 3 on (SPEC.md §7.7).
    assert!(first_xbzrle > m.syncs_at[1], "XBZRLE in the bulk pass");
    assert!(
        first_xbzrle > m.syncs_at[2],
        "XBZRLE before the cache held the page"
    );
    let s = m.source.stats();
    let x = m.source.xbzrle_stats().expect("cache figures");
    assert!(s.xbzrle_pages >= 32 * 2, "{s:?}");
    assert!(x.cache_miss >= 32 && x.pages >= s.xbzrle_pages);
    assert!(
        x.bytes < s.xbzrle_pages * 64,
        "deltas of an 8-byte change are tiny"
    );
    let (dest, _) = load(&m.stream, DecoderOptions::default());
    assert_same_memory(&g, &dest);

    // Converging right after the bulk pass: the cache never held a page, no XBZRLE.
    let mut g = guest(vec![]);
    g.apply(&w(0, 0, 64, 1));
    g.steady = vec![ScriptStep::Touch {
        block: 0,
        first: 0,
        count: 32,
        seed: 7,
    }];
    let m = migrate(
        &mut g,
        xbzrle(SourceOptions::default().with_downtime_limit(Duration::from_secs(3600))),
    );
    assert_eq!(m.source.stats().iterations, 0);
    assert_eq!(m.source.stats().xbzrle_pages, 0);
    let (dest, _) = load(&m.stream, DecoderOptions::default());
    assert_same_memory(&g, &dest);
}

/// A vectored sink gets the same bytes as a `Vec<u8>`, with page payloads referenced.
#[test]
fn a_vectored_sink_gets_the_same_stream() {
    let plain = migrate(&mut busy_guest(), iterating(3)).stream;
    let mut g = busy_guest();
    let mut source = ramstream_migrate::Source::new(&layout(), iterating(3)).unwrap();
    let (mut stream, mut now) = (Vec::new(), Instant::now());
    let mut most_slices = 0;
    loop {
        now += Duration::from_millis(1);
        let mut v = Vectored::default();
        let t = source.poll_transmit(now, &g, &mut v).unwrap();
        most_slices = most_slices.max(v.io_slices().len());
        stream.extend_from_slice(&v.to_vec());
        drop(v);
        match t {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::SyncDirty => {
                g.run_until_sync();
                source.sync_dirty(now, &mut g).unwrap();
            }
            Transmit::StopGuest => {
                g.stop();
                source.handle_stopped(now, &mut devices()).unwrap();
            }
            Transmit::Done => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stream, plain);
    assert!(most_slices > 64, "payloads are slices of their own");
}
