//! The in-memory pair: the reference sender and receiver state machines joined by an
//! in-memory pipe, with a scripted fake guest on one side and a fake destination on the other.
//! Convergence, XBZRLE after the bulk stage, balloon inflate/deflate during migration, and
//! every failure path (connection drops, corrupted digest, corrupted page, early end).

use std::io::{self, Read, Write};
use std::time::Duration;

use ramstream_codec::{decode_all, DecoderOptions, Event};
use ramstream_reference_receiver::{receive, ReceiveOptions, ReceiveReport, RecvErrorKind};
use ramstream_reference_sender::{migrate, GuestSource, MigrationReport, Phase, SendOptions};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use ramstream_spec::Dialect;
use ramstream_test_support::{FakeDestination, ScriptStep, ScriptedGuest};

/// 8 MiB: `pc.ram` and `ram1`, 1024 pages each.
fn layout() -> MemoryLayout {
    MemoryLayout::with_ram_size(8 << 20).unwrap()
}

fn w(block: usize, first: u64, count: u64, seed: u64) -> ScriptStep {
    ScriptStep::Write {
        block,
        first,
        count,
        seed,
    }
}

/// A guest with data in both blocks and a steady dirtying pattern.
fn guest(steady: Vec<ScriptStep>) -> ScriptedGuest {
    let mut g = ScriptedGuest::new(layout(), vec![]);
    g.apply(&w(0, 0, 300, 1));
    g.apply(&w(1, 100, 200, 2));
    g.steady = steady;
    g
}

fn opts() -> SendOptions {
    SendOptions {
        downtime_limit: Duration::from_secs(3600),
        ..SendOptions::default()
    }
}

fn send(g: &mut ScriptedGuest, o: &SendOptions) -> (MigrationReport, Vec<u8>) {
    let mut out = Vec::new();
    let r = migrate(g, &mut out, o, &mut |_| {}).expect("migration");
    (r, out)
}

/// A reader that hands out the stream in irregular small pieces.
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    n: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.n = (self.n * 7 + 13) % 9001 + 1;
        let k = self.n.min(buf.len()).min(self.data.len() - self.pos);
        buf[..k].copy_from_slice(&self.data[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

fn recv(
    stream: &[u8],
) -> Result<(FakeDestination, ReceiveReport), ramstream_reference_receiver::RecvError> {
    let o = ReceiveOptions {
        buffer_size: 64 * 1024,
        ..Default::default()
    };
    receive(
        Trickle {
            data: stream,
            pos: 0,
            n: 0,
        },
        |l| Ok(FakeDestination::new(l)),
        &o,
    )
}

/// The destination's memory equals the source's (ballooned pages are zero on both).
fn assert_same_memory(g: &ScriptedGuest, d: &FakeDestination) {
    for b in 0..2 {
        let (a, c) = (g.block(b), d.block(b));
        for (p, (x, y)) in a.chunks(PAGE_SIZE).zip(c.chunks(PAGE_SIZE)).enumerate() {
            assert!(x == y, "block {b} page {p} differs");
        }
    }
}

#[test]
fn converges_and_arrives_intact() {
    let mut g = guest(vec![w(0, 10, 20, 7)]);
    let (r, stream) = send(&mut g, &opts());
    assert_eq!(r.status, "completed");
    assert!(r.converged);
    assert_eq!(
        r.iterations, 0,
        "a huge downtime limit converges after the bulk stage"
    );
    assert!(!g.is_running(), "the source stays paused after success");
    let (d, rep) = recv(&stream).unwrap();
    assert!(rep.digest_verified && rep.guest_resumed);
    assert!(rep.max_buffered <= 64 * 1024 && stream.len() > 1 << 20);
    assert_same_memory(&g, &d);
    // Zero pages that are already zero are not touched.
    assert_eq!(d.writes(), rep.pages + rep.zero_written + rep.xbzrle);
    assert!(rep.zero_skipped > 1000);
    assert_eq!(r.ram.transferred, stream.len() as u64);
}

#[test]
fn iterates_until_max_iterations_when_not_converging() {
    let mut g = guest(vec![w(0, 400, 100, 9), w(1, 0, 50, 9)]);
    let o = SendOptions {
        downtime_limit: Duration::ZERO,
        max_iterations: 3,
        ..SendOptions::default()
    };
    let (r, stream) = send(&mut g, &o);
    assert!(!r.converged);
    assert_eq!(r.iterations, 3);
    assert_eq!(r.rounds.len(), 4);
    assert_eq!(r.rounds[1].pages, 150);
    assert_eq!(
        r.ram.dirty_sync_count, 6,
        "setup, after bulk, 3 iterations, final"
    );
    let (d, rep) = recv(&stream).unwrap();
    assert!(rep.guest_resumed);
    assert_same_memory(&g, &d);
}

#[test]
fn xbzrle_only_after_the_bulk_stage() {
    let touch = ScriptStep::Touch {
        block: 0,
        first: 0,
        count: 64,
        seed: 5,
    };
    // Converging right after the bulk stage: the cache was never filled, no XBZRLE.
    let mut g = guest(vec![touch.clone()]);
    let (r, _) = send(
        &mut g,
        &SendOptions {
            xbzrle: true,
            xbzrle_cache_size: 1 << 20,
            ..opts()
        },
    );
    assert_eq!(r.ram.xbzrle_pages, 0);
    // With dirty iterations the second touch of a page is a delta.
    let mut g;
    let o = SendOptions {
        xbzrle: true,
        xbzrle_cache_size: 1 << 20,
        downtime_limit: Duration::ZERO,
        max_iterations: 4,
        ..SendOptions::default()
    };
    let mut gen = 0u64;
    let mut out = Vec::new();
    // Change the touched value every sync so pages really change.
    let r = {
        let mut steps = Vec::new();
        for i in 0..12 {
            steps.push(vec![ScriptStep::Touch {
                block: 0,
                first: 0,
                count: 64,
                seed: 100 + i,
            }]);
        }
        g = ScriptedGuest::new(layout(), steps);
        g.apply(&w(0, 0, 300, 1));
        gen += 1;
        migrate(&mut g, &mut out, &o, &mut |_| {}).unwrap()
    };
    assert_eq!(gen, 1);
    let x = r.xbzrle_cache.expect("xbzrle stats");
    assert!(r.ram.xbzrle_pages >= 64, "{r:?}");
    assert!(x.pages >= 64 && x.cache_miss >= 64);
    // Deltas of an 8-byte change are tiny.
    assert!(x.bytes < r.ram.xbzrle_pages * 64);
    let (d, rep) = recv(&out).unwrap();
    assert_eq!(rep.xbzrle, r.ram.xbzrle_pages);
    assert_same_memory(&g, &d);
}

#[test]
fn balloon_inflate_and_deflate_during_migration() {
    let mut g = ScriptedGuest::new(
        layout(),
        vec![
            vec![],
            // After the bulk stage: inflate pages that were sent, deflate and reuse others.
            vec![
                ScriptStep::Inflate {
                    block: 0,
                    first: 100,
                    count: 50,
                },
                ScriptStep::Deflate {
                    block: 1,
                    first: 500,
                    count: 20,
                },
                w(1, 500, 10, 77),
            ],
            vec![ScriptStep::Deflate {
                block: 1,
                first: 600,
                count: 10,
            }],
        ],
    );
    g.apply(&w(0, 0, 300, 1));
    g.apply(&w(1, 0, 1024, 3));
    g.apply(&ScriptStep::Inflate {
        block: 1,
        first: 400,
        count: 300,
    });
    let o = SendOptions {
        downtime_limit: Duration::ZERO,
        max_iterations: 3,
        ..SendOptions::default()
    };
    let (r, stream) = send(&mut g, &o);
    assert_eq!(
        g.ballooned_pages_read(),
        0,
        "ballooned pages are never read"
    );
    assert!(r.ram.ballooned_skipped >= 300);
    assert!(r.ram.pages_visited <= g.pages_read());
    let (d, rep) = recv(&stream).unwrap();
    assert!(rep.digest_verified);
    assert_eq!(rep.ballooned_pages, 50 + 300 - 30);
    // The ram section carried the map: a full map per block at START, then the changes.
    assert!(r.ram.balloon_records >= 4, "{:?}", r.ram);
    assert_eq!(rep.balloon_records, r.ram.balloon_records);
    assert_same_memory(&g, &d);
    // Without the balloon map every page is read (and the ballooned ones sent as zero).
    let mut g2 = guest(vec![]);
    g2.apply(&ScriptStep::Inflate {
        block: 1,
        first: 0,
        count: 512,
    });
    let (r2, s2) = send(
        &mut g2,
        &SendOptions {
            skip_ballooned: false,
            ..opts()
        },
    );
    assert!(g2.ballooned_pages_read() >= 512);
    assert_eq!(r2.ram.ballooned_skipped, 0);
    assert_eq!(r2.ram.balloon_records, 0, "no map, no balloon records");
    assert!(recv(&s2).unwrap().1.digest_verified);
}

/// A connection that breaks after `limit` bytes.
struct Breaks {
    limit: usize,
    written: Vec<u8>,
}

impl Write for Breaks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit - self.written.len();
        if room == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer gone"));
        }
        let n = buf.len().min(room);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn connection_drop_anywhere_keeps_source_running_and_destination_stopped() {
    let o = SendOptions {
        downtime_limit: Duration::ZERO,
        max_iterations: 2,
        ..SendOptions::default()
    };
    let mk = || guest(vec![w(0, 10, 30, 4)]);
    let (_, full) = send(&mut mk(), &o);
    let n = full.len();
    let mut cuts: Vec<usize> = (0..40).map(|i| i * n / 40).collect();
    cuts.extend([1, 7, 8, 20, 40, n - 40, n - 7, n - 6, n - 2, n - 1]);
    let mut phases = std::collections::BTreeSet::new();
    for cut in cuts {
        let mut g = mk();
        let mut pipe = Breaks {
            limit: cut,
            written: Vec::new(),
        };
        let e = migrate(&mut g, &mut pipe, &o, &mut |_| {}).expect_err("the connection broke");
        assert!(e.guest_running && g.is_running(), "cut {cut}: {e}");
        assert_eq!(e.bytes_sent, cut as u64, "cut {cut}");
        assert!(e.to_string().contains("bytes sent"), "{e}");
        if e.phase == Phase::StopAndCopy {
            assert!(g.resumes >= 1, "paused source resumed after the failure");
        }
        phases.insert(format!("{:?}", e.phase));
        let err = recv(&pipe.written).expect_err("a truncated stream must be refused");
        assert!(!err.resumed, "cut {cut}: destination resumed");
        assert!(
            matches!(err.kind, RecvErrorKind::EndedEarly(_)),
            "cut {cut}: {err}"
        );
    }
    assert!(phases.len() >= 4, "{phases:?}");
}

/// Stream offset of the first PAGE payload and of the digest section's last sha256 byte.
fn offsets(stream: &[u8]) -> (usize, usize) {
    let events = decode_all(
        stream,
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
    )
    .unwrap();
    let page = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Page(p) => Some(p.data.as_ptr() as usize - stream.as_ptr() as usize),
            _ => None,
        })
        .unwrap();
    let digest_end = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Device(d) if d.header.idstr == "ramstream/ram-digest" => {
                Some(d.body.as_ptr() as usize - stream.as_ptr() as usize + d.body.len() - 1)
            }
            _ => None,
        })
        .unwrap();
    (page, digest_end)
}

#[test]
fn corrupted_digest_or_page_is_refused() {
    let (_, stream) = send(&mut guest(vec![]), &opts());
    let (page, digest) = offsets(&stream);
    for at in [page + 100, digest] {
        let mut bad = stream.clone();
        bad[at] ^= 0x40;
        let err = recv(&bad).expect_err("corruption must be refused");
        assert!(!err.resumed);
        assert!(
            matches!(err.kind, RecvErrorKind::DigestMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("refusing to resume"));
    }
    // A stream without the digest section is refused too.
    let events = decode_all(
        &stream,
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
    )
    .unwrap();
    let (start, _) = events
        .iter()
        .find(|(_, e)| matches!(e, Event::Device(d) if d.header.idstr == "ramstream/ram-digest"))
        .unwrap();
    let mut cut = stream[..*start as usize].to_vec();
    cut.push(0); // EOF right after the layout section
    let err = recv(&cut).expect_err("no digest");
    assert!(!err.resumed);
    assert!(err.to_string().contains("ram-digest"), "{err}");
}

/// A digest section newer than known, or a state body whose length prefix lies, is refused
/// before resuming with the codec's typed error and the body's stream offset (SPEC.md §13.3,
/// §13.6).
#[test]
fn malformed_extension_sections_are_refused_with_their_offset() {
    use ramstream_codec::extension::ExtensionError;
    let (_, stream) = send(&mut guest(vec![]), &opts());
    let events = decode_all(
        &stream,
        DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
    )
    .unwrap();
    let body_at = |idstr: &str| {
        events
            .iter()
            .find_map(|(_, e)| match e {
                Event::Device(d) if d.header.idstr == idstr => Some(d.body_offset as usize),
                _ => None,
            })
            .unwrap()
    };
    // The version id is the header's last be32, right before the body.
    let digest = body_at("ramstream/ram-digest");
    let mut newer = stream.clone();
    newer[digest - 1] = 2;
    // The vCPU body's prefix announces one byte more than follows.
    let vcpu = body_at("ramstream/vcpu");
    let mut lying = stream.clone();
    lying[vcpu + 3] += 1;
    for (bad, at, idstr) in [
        (newer, digest, "ramstream/ram-digest"),
        (lying, vcpu, "ramstream/vcpu"),
    ] {
        let err = recv(&bad).expect_err("refused");
        assert!(!err.resumed);
        match &err.kind {
            RecvErrorKind::Extension {
                offset,
                idstr: got,
                source,
            } => {
                assert_eq!((*offset, got.as_str()), (at as u64, idstr), "{err}");
                assert!(matches!(
                    source,
                    ExtensionError::SectionVersion { found: 2, .. }
                        | ExtensionError::StateLength { .. }
                ));
            }
            _ => panic!("{err}"),
        }
    }
}
