//! The sha256-chunked digest hashed out of line (SPEC.md §13.7): a driver takes
//! `DigestWork` out of the `Source`, runs it when it likes and hands the results back late,
//! out of order or never; the digest sent is still the memory's at stop, and the same as
//! the engine's own in-line hashing gives.

mod source_support;
mod support;

use std::time::Duration;

use ramstream_codec::extension::digest::chunked_block;
use ramstream_codec::PageAddr;
use ramstream_migrate::{
    DigestDone, DigestPolicy, DigestWork, GuestRam, LoaderOptions, PageRun, Phase, Source,
    SourceOptions, Transmit,
};
use source_support::*;

fn iterating(max_iterations: u32) -> SourceOptions {
    SourceOptions::default()
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(max_iterations)
}

/// A guest with data in both blocks whose script rewrites pages at every sync.
fn busy_guest() -> ScriptedGuest {
    let mut g = guest(vec![
        vec![w(0, 0, 100, 1)],
        vec![w(0, 10, 20, 2), w(1, 5, 3, 3)],
        vec![w(0, 50, 5, 4), w(0, 120, 40, 7)],
        vec![w(1, 60, 4, 5)],
        vec![w(0, 200, 8, 6)],
    ]);
    g.apply(&w(0, 100, 50, 9));
    g.apply(&w(1, 0, 64, 10));
    g
}

/// When the driver runs works and hands results back.
#[derive(Clone, Copy, Default)]
struct Worker {
    /// Results are handed back only after the next dirty sync was handed in (they were
    /// computed before the guest's writes it reports).
    back_after_sync: bool,
    /// Results are handed back newest first.
    reverse: bool,
    /// Every n-th result is lost.
    lose_every: Option<usize>,
}

/// Drives a source over `guest` like `migrate`, its digest hashed by `worker`: before each
/// poll it takes every work due (run at once, on the memory as it is then).
fn migrate_offloaded(guest: &mut ScriptedGuest, opts: SourceOptions, worker: Worker) -> Source {
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let mut source = Source::new(&layout(), opts).unwrap();
    let mut stream = Vec::new();
    let mut pending: Vec<DigestDone> = Vec::new();
    let mut taken = 0;
    let hand_back = |source: &mut Source, pending: &mut Vec<DigestDone>| {
        if worker.reverse {
            pending.reverse();
        }
        for done in pending.drain(..) {
            source.handle_digest_done(done);
        }
    };
    loop {
        while let Some(work) = source.take_digest_work(24) {
            taken += 1;
            let done = work.run(&*guest).expect("the work reads the guest");
            if worker.lose_every.is_none_or(|n| taken % n != 0) {
                pending.push(done);
            }
        }
        if !worker.back_after_sync {
            hand_back(&mut source, &mut pending);
        }
        clock.now += clock.tick;
        match source
            .poll_transmit(clock.now, &*guest, &mut stream)
            .unwrap()
        {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::Wait(until) => clock.now = until - clock.tick,
            Transmit::SyncDirty => {
                guest.run_until_sync();
                source.sync_dirty(clock.now, &mut *guest).unwrap();
                hand_back(&mut source, &mut pending);
            }
            Transmit::StopGuest => {
                guest.stop();
                source.handle_stopped(clock.now, &mut devices()).unwrap();
            }
            Transmit::Done => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(source.phase(), Phase::Completed);
    // The stream is accepted by a loader that checks the digest.
    let require = LoaderOptions::default().with_digest(DigestPolicy::Require);
    let (dest, _) = load_with(&stream, require);
    assert_same_memory(guest, &dest);
    source
}

/// The sha256-chunked digest of every block of `g`'s memory.
fn memory_digests(g: &ScriptedGuest) -> Vec<[u8; 32]> {
    (0..layout().len())
        .map(|block| {
            let pages = PageRun::of_block(layout()[block].used_length(), PAGE).count;
            chunked_block(pages, PAGE, &[], |p, buf| {
                g.read_page(PageAddr::of_page(block, p, PAGE), buf)
            })
            .unwrap()
        })
        .collect()
}

fn sent_digests(s: &Source) -> Vec<[u8; 32]> {
    let d = s.digest().expect("a digest section");
    d.blocks.iter().map(|b| b.sha256).collect()
}

#[test]
fn results_computed_before_their_chunk_was_dirtied_are_dropped_and_the_digest_is_the_memorys() {
    let mut g = busy_guest();
    let worker = Worker {
        back_after_sync: true,
        ..Worker::default()
    };
    let s = migrate_offloaded(&mut g, iterating(3), worker);
    let st = s.stats();
    assert!(st.digest_chunks_dropped > 0, "{st:?}");
    assert!(st.digest_chunks_offloaded > 0, "{st:?}");
    assert_eq!(sent_digests(&s), memory_digests(&g));
}

#[test]
fn results_handed_back_out_of_order_or_never_still_give_the_memorys_digest() {
    for lose in [2, 3, 1] {
        let mut g = busy_guest();
        let worker = Worker {
            back_after_sync: true,
            reverse: true,
            lose_every: Some(lose),
        };
        let s = migrate_offloaded(&mut g, iterating(3), worker);
        assert_eq!(sent_digests(&s), memory_digests(&g), "every {lose}-th lost");
        if lose == 1 {
            assert_eq!(s.stats().digest_chunks_offloaded, 0);
        }
    }
}

#[test]
fn the_worker_path_and_the_in_line_path_give_the_same_digests() {
    let mut inline = busy_guest();
    let m = migrate(&mut inline, iterating(3));
    assert_eq!(m.source.stats().digest_chunks_offloaded, 0);
    let mut worked = busy_guest();
    let s = migrate_offloaded(&mut worked, iterating(3), Worker::default());
    assert_eq!(sent_digests(&s), sent_digests(&m.source));
    assert_eq!(sent_digests(&s), memory_digests(&worked));
    let st = s.stats();
    assert_eq!(st.digest_chunks_dropped, 0, "results handed back at once");
    // Nothing is left for the stop that the in-line hashing would not leave.
    let inline_at_stop = m.source.stats().digest_chunks_at_stop;
    assert!(st.digest_chunks_at_stop <= inline_at_stop, "{st:?}");
}

#[test]
fn no_work_before_the_setup_sync_nor_once_the_guest_stopped() {
    let mut g = busy_guest();
    let mut source = Source::new(&layout(), iterating(1)).unwrap();
    assert!(
        source.take_digest_work(64).is_none(),
        "before the setup sync"
    );
    let mut stream = Vec::new();
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let mut works: Vec<DigestWork> = Vec::new();
    loop {
        clock.now += clock.tick;
        match source.poll_transmit(clock.now, &g, &mut stream).unwrap() {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::SyncDirty => {
                g.run_until_sync();
                source.sync_dirty(clock.now, &mut g).unwrap();
                works.extend(source.take_digest_work(64));
            }
            Transmit::StopGuest => {
                g.stop();
                source.handle_stopped(clock.now, &mut devices()).unwrap();
                assert!(
                    source.take_digest_work(64).is_none(),
                    "the guest is stopped"
                );
            }
            Transmit::Done => break,
            Transmit::Wait(until) => clock.now = until - clock.tick,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!works.is_empty());
    // Results handed back after the end change nothing.
    let before = sent_digests(&source);
    for w in &works {
        assert_eq!(source.handle_digest_done(w.run(&g).unwrap()), 0);
    }
    assert_eq!(sent_digests(&source), before);
    assert_eq!(before, memory_digests(&g));
}
