//! The loader's running sha256-chunked digest (SPEC.md §13.7, `Loader::hash_ahead`): chunks
//! hashed while the stream loads, every later write re-hashed at the check, and the result
//! equal to the from-scratch digest on a recorded migration with XBZRLE and balloon changes.

mod source_support;
mod support;

use std::time::{Duration, Instant};

use ramstream_codec::balloon::{BalloonMap, BalloonMapKind, PageRun};
use ramstream_codec::extension::digest::{
    chunked_block, BlockDigest, DigestAlgorithm, DigestSection,
};
use ramstream_codec::RamBlock;
use ramstream_migrate::{
    DigestError, DigestPolicy, Error, ErrorKind, Loader, LoaderEvent, LoaderOptions, Source,
    SourceOptions, Transmit,
};
use ramstream_spec::config::capability;
use ramstream_spec::extension::digest::DIGEST_SECTION_IDSTR;
use source_support::*;
use support::{StreamBuilder, VecRam};

/// Loads `stream` fed `step` bytes at a time, calling `hash_ahead(budget)` whenever the
/// loader needs more input, as a receiver does while it waits for the network. Returns the
/// result, the loader, and how many chunks were hashed ahead.
fn load_hashing(
    stream: &[u8],
    opts: LoaderOptions,
    step: usize,
    budget: u64,
) -> (Result<(), Error>, Loader<VecRam>, u64) {
    let mut loader = Loader::without_ram(opts);
    let (mut pos, mut end, mut hashed) = (0, 0, 0);
    let r = loop {
        let p = match loader.handle(&stream[pos..end]) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        pos += p.consumed;
        match p.event {
            Some(LoaderEvent::RamNeeded(blocks)) => {
                loader.provide_ram(VecRam::new(&blocks)).unwrap();
            }
            Some(LoaderEvent::Done) => break Ok(()),
            Some(_) => {}
            None => {
                match loader.hash_ahead(budget) {
                    Ok(n) => hashed += n,
                    Err(e) => break Err(e),
                }
                end = (end + step).min(stream.len());
                if end == stream.len() {
                    loader.finish();
                }
            }
        }
    };
    (r, loader, hashed)
}

const PAGE: usize = ramstream_spec::ram::TARGET_PAGE_SIZE_X86;
/// `pc.ram`: 64 pages, 4 chunks.
const RAM: (&str, u64) = ("pc.ram", 64 * PAGE as u64);

/// The sha256-chunked section for one block holding `mem`.
fn section_for(mem: &[u8]) -> DigestSection {
    DigestSection {
        algorithm: DigestAlgorithm::Sha256Chunked,
        blocks: vec![BlockDigest {
            idstr: RAM.0.into(),
            used_length: RAM.1,
            sha256: chunked_block(RAM.1 / PAGE as u64, PAGE, &[], |p, buf| {
                let at = p as usize * PAGE;
                buf.copy_from_slice(&mem[at..at + PAGE]);
                Ok::<_, ()>(())
            })
            .unwrap(),
        }],
    }
}

/// A stream writing page 5 (`first`), then after a device section that gives the loader a
/// chance to hash everything, page 5 again (`second`), then the digest of `digested`.
fn rewriting_stream(first: u8, second: u8, digested: &[u8]) -> Vec<u8> {
    let mut s = StreamBuilder::new(Some(vec![capability::RAMSTREAM_BALLOON_V1]), None);
    s.ram_start(&[support::block(RAM.0, RAM.1)])
        .page(0, 5, &[first; PAGE])
        .page(0, 40, &[7; PAGE])
        .end_part()
        .device(3, "timer", &[0; 8])
        .part()
        .page(0, 5, &[second; PAGE])
        .end_part();
    let mut body = Vec::new();
    section_for(digested).encode(&mut body).unwrap();
    s.device(4, DIGEST_SECTION_IDSTR, &body).eof();
    s.bytes()
}

fn opts() -> LoaderOptions {
    let mut o = LoaderOptions::default().with_digest(DigestPolicy::Verify);
    o.decoder.dialect = ramstream_spec::Dialect::RamstreamBalloonV1;
    o
}

/// Memory with page 5 filled with `p5` and page 40 with 7.
fn memory(p5: u8) -> Vec<u8> {
    let mut m = vec![0u8; 64 * PAGE];
    m[5 * PAGE..6 * PAGE].fill(p5);
    m[40 * PAGE..41 * PAGE].fill(7);
    m
}

#[test]
fn a_chunk_written_after_it_was_hashed_is_hashed_again() {
    // Page 5 changes after the whole block was hashed ahead: the check sees the new page.
    let stream = rewriting_stream(1, 2, &memory(2));
    let (r, loader, hashed) = load_hashing(&stream, opts(), 512, u64::MAX);
    r.expect("the final memory matches the digest");
    assert!(
        hashed >= 4,
        "every chunk hashed ahead at least once: {hashed}"
    );
    assert!(loader.digest_report().is_some_and(|r| r.is_match()));
    assert_eq!(loader.stale_digest_chunks(), Some(0));

    // The digest of memory before the rewrite (what an early hash saw) is refused, naming
    // the block: a wrong page written after the early hash is never skipped.
    let stream = rewriting_stream(1, 2, &memory(1));
    let (r, _, hashed) = load_hashing(&stream, opts(), 512, u64::MAX);
    assert!(hashed >= 4);
    let e = r.expect_err("memory differs from the digest");
    assert!(
        matches!(&e.kind, ErrorKind::Digest(DigestError::Mismatch(c)) if c.idstr == "pc.ram"),
        "{e}"
    );
    assert!(e.to_string().contains("pc.ram"), "{e}");
}

#[test]
fn a_zeroed_or_ballooned_page_after_the_early_hash_is_seen() {
    // Page 40 is zeroed by a ZERO record, page 5 given to the balloon, after the early hash.
    let mut s = StreamBuilder::new(Some(vec![capability::RAMSTREAM_BALLOON_V1]), None);
    s.ram_start(&[support::block(RAM.0, RAM.1)])
        .page(0, 5, &[1; PAGE])
        .page(0, 40, &[7; PAGE])
        .end_part()
        .device(3, "timer", &[0; 8])
        .part()
        .zero(0, 40, 0)
        .balloon(0, BalloonMapKind::FullMap, &[PageRun::new(5, 1)])
        .end_part();
    let want = vec![0u8; 64 * PAGE];
    let mut body = Vec::new();
    section_for(&want).encode(&mut body).unwrap();
    s.device(4, DIGEST_SECTION_IDSTR, &body).eof();
    let (r, loader, hashed) = load_hashing(&s.bytes(), opts(), 512, u64::MAX);
    r.expect("zeroed and ballooned pages are hashed as zero");
    assert!(hashed >= 4 && loader.digest_report().is_some_and(|r| r.is_match()));
}

/// A migration of a guest whose pages change a little at every sync (XBZRLE) and whose
/// balloon inflates over written pages and deflates during the precopy.
fn recorded_migration() -> (Vec<u8>, SourceOptions) {
    let touches = (0..6)
        .map(|i| {
            vec![
                ScriptStep::Touch {
                    block: 0,
                    first: 0,
                    count: 40,
                    seed: 100 + i,
                },
                w(1, 3 * i, 2, 50 + i),
            ]
        })
        .collect();
    let mut g = guest(touches);
    g.apply(&w(0, 0, 256, 1));
    g.apply(&w(1, 0, 64, 2));
    let opts = SourceOptions::default()
        .with_balloon(true)
        .with_xbzrle_cache_size(Some(1 << 20))
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(5);
    let mut source = Source::new(&layout(), opts.clone()).unwrap();
    let blocks: Vec<RamBlock> = layout()
        .iter()
        .map(|b| RamBlock {
            idstr: b.idstr().into(),
            used_length: b.used_length(),
            page_size: None,
            mr_addr: None,
        })
        .collect();
    let mut map = BalloonMap::new(&blocks, 12);
    map.inflate(0, 100..150).unwrap();
    source.update_balloon(&map).unwrap();
    let (mut stream, mut now, mut syncs) = (Vec::new(), Instant::now(), 0);
    loop {
        now += Duration::from_millis(1);
        match source.poll_transmit(now, &g, &mut stream).unwrap() {
            Transmit::Send { bytes } => source.handle_sent(bytes),
            Transmit::SyncDirty => {
                syncs += 1;
                if syncs == 3 {
                    // Written pages go into the balloon (the loader zeroes them), others
                    // come out of it zeroed.
                    map.inflate(0, 200..220).unwrap();
                    map.deflate(0, 140..150).unwrap();
                    g.apply(&ScriptStep::Zero {
                        block: 0,
                        first: 140,
                        count: 10,
                    });
                }
                g.run_until_sync();
                source.update_balloon(&map).unwrap();
                source.sync_dirty(now, &mut g).unwrap();
            }
            Transmit::StopGuest => source.handle_stopped(now, &mut devices()).unwrap(),
            Transmit::Done => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(source.stats().xbzrle_pages > 0, "{:?}", source.stats());
    (stream, opts)
}

#[test]
fn the_running_digest_equals_the_digest_from_scratch_on_a_recorded_migration() {
    let (stream, sopts) = recorded_migration();
    let lopts = LoaderOptions::default()
        .with_digest(DigestPolicy::Require)
        .with_decoder(decoder(&sopts));
    // From scratch: no hashing ahead, every block read at EOF.
    let (r, scratch, hashed) = load_hashing(&stream, lopts.clone(), 4096, 0);
    r.expect("from scratch");
    assert_eq!((hashed, scratch.stale_digest_chunks()), (0, None));
    let want = scratch.digest_report().expect("checked").clone();
    assert!(want.is_match());
    assert!(scratch.stats().xbzrle > 0 && scratch.stats().balloon_records > 1);
    // Running, with small budgets and feeds: the same digests.
    for (step, budget) in [(512, 16), (4096, 64), (1 << 16, 1 << 20)] {
        let (r, running, hashed) = load_hashing(&stream, lopts.clone(), step, budget);
        r.unwrap_or_else(|e| panic!("step {step} budget {budget}: {e}"));
        assert!(hashed > 0, "step {step} budget {budget}");
        assert_eq!(running.digest_report(), Some(&want), "step {step}");
        assert_eq!(
            running.ram().unwrap().digests(),
            scratch.ram().unwrap().digests()
        );
    }
}

/// Loads `stream` fed `step` bytes at a time; whenever the loader needs more input it takes
/// every digest work due (`max_pages` pages each) and runs it on the loader's memory as it
/// is then, handing the results back at once or (`late`) all together, newest first, just
/// before the last feed. Returns the result, the loader and the results kept.
fn load_with_digest_works(
    stream: &[u8],
    opts: LoaderOptions,
    step: usize,
    max_pages: u64,
    late: bool,
) -> (Result<(), Error>, Loader<VecRam>, u64) {
    let mut loader = Loader::without_ram(opts);
    let (mut pos, mut end, mut kept) = (0, 0, 0);
    let mut pending: Vec<ramstream_migrate::DigestDone> = Vec::new();
    let r = loop {
        let p = match loader.handle(&stream[pos..end]) {
            Ok(p) => p,
            Err(e) => break Err(e),
        };
        pos += p.consumed;
        match p.event {
            Some(LoaderEvent::RamNeeded(blocks)) => {
                loader.provide_ram(VecRam::new(&blocks)).unwrap();
            }
            Some(LoaderEvent::Done) => break Ok(()),
            Some(_) => {}
            None => {
                while let Some(work) = loader.take_digest_work(max_pages) {
                    let done = work.run(loader.ram().unwrap()).unwrap();
                    if late {
                        pending.push(done);
                    } else {
                        kept += loader.handle_digest_done(done);
                    }
                }
                end = (end + step).min(stream.len());
                if end == stream.len() {
                    for done in std::mem::take(&mut pending).into_iter().rev() {
                        kept += loader.handle_digest_done(done);
                    }
                    loader.finish();
                }
            }
        }
    };
    (r, loader, kept)
}

#[test]
fn digest_work_hashed_out_of_line_gives_the_digest_from_scratch() {
    let (stream, sopts) = recorded_migration();
    let lopts = LoaderOptions::default()
        .with_digest(DigestPolicy::Require)
        .with_decoder(decoder(&sopts));
    let (r, scratch, _) = load_hashing(&stream, lopts.clone(), 4096, 0);
    r.expect("from scratch");
    let want = scratch.digest_report().expect("checked").clone();
    for (step, max_pages, late) in [(512, 16, false), (4096, 64, true), (1 << 16, 1024, true)] {
        let (r, worked, kept) =
            load_with_digest_works(&stream, lopts.clone(), step, max_pages, late);
        r.unwrap_or_else(|e| panic!("step {step} late {late}: {e}"));
        assert!(kept > 0, "step {step} late {late}");
        assert_eq!(
            worked.digest_report(),
            Some(&want),
            "step {step} late {late}"
        );
    }
}

#[test]
fn a_work_result_from_before_a_rewrite_is_dropped_and_the_wrong_digest_refused() {
    // Page 5 is rewritten after a work read it, the result handed back late: dropped, so
    // the check reads page 5 again and refuses the digest of the memory the work saw.
    let stream = rewriting_stream(1, 2, &memory(1));
    let (r, _, kept) = load_with_digest_works(&stream, opts(), 512, 64, true);
    assert!(kept > 0);
    let e = r.expect_err("memory differs from the digest");
    assert!(
        matches!(&e.kind, ErrorKind::Digest(DigestError::Mismatch(c)) if c.idstr == "pc.ram"),
        "{e}"
    );
    let stream = rewriting_stream(1, 2, &memory(2));
    let (r, loader, _) = load_with_digest_works(&stream, opts(), 512, 64, true);
    r.expect("the final memory matches the digest");
    assert_eq!(loader.stale_digest_chunks(), Some(0));
}
