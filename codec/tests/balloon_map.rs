//! `BalloonMap` (SPEC.md §9.8) against a naive bit-per-page model, and applying records.

use proptest::prelude::*;
use ramstream_codec::balloon::{
    BalloonMap, BalloonMapError, BalloonMapKind, BalloonRecord, BalloonRunsV1, PageRun, RunList,
};
use ramstream_codec::RamBlock;

const PAGES: u64 = 300;

fn blocks() -> Vec<RamBlock> {
    vec![
        RamBlock {
            idstr: "pc.ram".into(),
            used_length: PAGES << 12,
            page_size: None,
            mr_addr: None,
        },
        RamBlock {
            idstr: "rom".into(),
            used_length: 8 << 12,
            page_size: None,
            mr_addr: None,
        },
    ]
}

/// Maximal runs of set bits.
fn model_runs(bits: &[bool]) -> Vec<PageRun> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bits.len() {
        if bits[i] {
            let s = i;
            while i < bits.len() && bits[i] {
                i += 1;
            }
            out.push(PageRun::new(s as u64, (i - s) as u64));
        } else {
            i += 1;
        }
    }
    out
}

fn model_unballooned(bits: &[bool], within: std::ops::Range<u64>) -> Vec<std::ops::Range<u64>> {
    let clear: Vec<bool> = bits.iter().map(|b| !b).collect();
    model_runs(&clear)
        .into_iter()
        .filter_map(|r| {
            let s = r.start.max(within.start);
            let e = r.end().min(within.end);
            (s < e).then_some(s..e)
        })
        .collect()
}

#[derive(Clone, Debug)]
enum Op {
    Inflate(u64, u64),
    Deflate(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    (any::<bool>(), 0..PAGES, 0..40u64).prop_map(|(inflate, s, n)| {
        let e = (s + n).min(PAGES);
        if inflate {
            Op::Inflate(s, e)
        } else {
            Op::Deflate(s, e)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn map_matches_a_bitset(ops in prop::collection::vec(op(), 0..60), a in 0..PAGES + 10, b in 0..PAGES + 10) {
        let mut map = BalloonMap::new(&blocks(), 12);
        let mut bits = vec![false; PAGES as usize];
        for o in &ops {
            match *o {
                Op::Inflate(s, e) => {
                    map.inflate(0, s..e).unwrap();
                    bits[s as usize..e as usize].iter_mut().for_each(|b| *b = true);
                }
                Op::Deflate(s, e) => {
                    map.deflate(0, s..e).unwrap();
                    bits[s as usize..e as usize].iter_mut().for_each(|b| *b = false);
                }
            }
        }
        let runs: Vec<PageRun> = map.runs(0).collect();
        prop_assert_eq!(&runs, &model_runs(&bits));
        prop_assert_eq!(map.run_count(0), runs.len());
        prop_assert_eq!(map.ballooned_pages(0), bits.iter().filter(|b| **b).count() as u64);
        for p in 0..PAGES {
            prop_assert_eq!(map.contains(0, p), bits[p as usize]);
        }
        prop_assert!(!map.contains(0, PAGES));
        let within = a.min(b)..a.max(b);
        let clipped = within.start.min(PAGES)..within.end.min(PAGES);
        prop_assert_eq!(
            map.unballooned_ranges(0, within).collect::<Vec<_>>(),
            model_unballooned(&bits, clipped)
        );
        // The other block is untouched.
        prop_assert_eq!(map.ballooned_pages(1), 0);
    }

    #[test]
    fn applying_v1_records_matches_a_bitset(
        full in prop::collection::btree_set(0..PAGES, 0..100),
        changes in prop::collection::vec((any::<bool>(), prop::collection::btree_set(0..PAGES, 0..60)), 0..6),
    ) {
        let mut map = BalloonMap::new(&blocks(), 12);
        let mut bits = vec![false; PAGES as usize];
        for &p in &full {
            bits[p as usize] = true;
        }
        let inflate = RunList::to_wire(&model_runs(&bits));
        let rec = BalloonRunsV1 {
            block: 0,
            continued: false,
            kind: BalloonMapKind::FullMap,
            inflate: RunList::from_wire(&inflate).unwrap(),
            deflate: RunList::EMPTY,
        };
        map.inflate(0, 0..PAGES).unwrap(); // a full map replaces whatever was there
        map.apply(&BalloonRecord::V1(rec)).unwrap();
        prop_assert_eq!(map.runs(0).collect::<Vec<_>>(), model_runs(&bits));

        for (set_first, pages) in changes {
            // Split the changed pages: some inflated, the rest deflated; disjoint by construction.
            let mut inf = vec![false; PAGES as usize];
            let mut def = vec![false; PAGES as usize];
            for (i, &p) in pages.iter().enumerate() {
                if (i % 2 == 0) == set_first {
                    inf[p as usize] = true;
                } else {
                    def[p as usize] = true;
                }
            }
            let iw = RunList::to_wire(&model_runs(&inf));
            let dw = RunList::to_wire(&model_runs(&def));
            let rec = BalloonRunsV1 {
                block: 0,
                continued: false,
                kind: BalloonMapKind::Incremental,
                inflate: RunList::from_wire(&iw).unwrap(),
                deflate: RunList::from_wire(&dw).unwrap(),
            };
            // The records it builds are valid v1 records.
            prop_assert!(rec.inflate.check(PAGES).is_ok());
            prop_assert!(rec.deflate.check(PAGES).is_ok());
            let released = map.apply(&BalloonRecord::V1(rec)).unwrap();
            prop_assert_eq!(released.len(), rec.inflate.len());
            for p in 0..PAGES as usize {
                if inf[p] {
                    bits[p] = true;
                }
                if def[p] {
                    bits[p] = false;
                }
            }
            prop_assert_eq!(map.runs(0).collect::<Vec<_>>(), model_runs(&bits));
        }
    }
}

#[test]
fn inflate_merges_adjacent_and_overlapping_runs() {
    let mut map = BalloonMap::new(&blocks(), 12);
    map.inflate(0, 10..20).unwrap();
    map.inflate(0, 30..40).unwrap();
    map.inflate(0, 20..30).unwrap();
    assert_eq!(map.runs(0).collect::<Vec<_>>(), [PageRun::new(10, 30)]);
    map.inflate(0, 5..12).unwrap();
    map.inflate(0, 38..45).unwrap();
    assert_eq!(map.runs(0).collect::<Vec<_>>(), [PageRun::new(5, 40)]);
    map.deflate(0, 0..300).unwrap();
    assert_eq!(map.run_count(0), 0);
    assert_eq!(map.ballooned_pages(0), 0);
}

#[test]
fn unballooned_ranges_start_inside_a_run_and_clip() {
    let mut map = BalloonMap::new(&blocks(), 12);
    map.inflate(0, 10..20).unwrap();
    map.inflate(0, 50..60).unwrap();
    assert_eq!(
        map.unballooned_ranges(0, 15..55).collect::<Vec<_>>(),
        [std::ops::Range { start: 20, end: 50 }]
    );
    assert_eq!(
        map.unballooned_ranges(0, 0..1000).collect::<Vec<_>>(),
        [0..10, 20..50, 60..300]
    );
    assert_eq!(map.unballooned_ranges(0, 12..18).count(), 0);
    assert_eq!(map.unballooned_ranges(7, 0..10).count(), 0);
}

#[test]
fn out_of_range_changes_are_refused() {
    let mut map = BalloonMap::new(&blocks(), 12);
    assert_eq!(
        map.inflate(1, 4..9),
        Err(BalloonMapError::OutOfRange {
            block: 1,
            pages: 4..9,
            size: 8
        })
    );
    assert_eq!(
        map.deflate(2, 0..1),
        Err(BalloonMapError::NoBlock { block: 2 })
    );
    let wire = RunList::to_wire(&[PageRun::new(0, 9)]);
    let rec = BalloonRecord::V1(BalloonRunsV1 {
        block: 1,
        continued: false,
        kind: BalloonMapKind::FullMap,
        inflate: RunList::from_wire(&wire).unwrap(),
        deflate: RunList::EMPTY,
    });
    assert!(map.apply(&rec).is_err());
    assert_eq!(map.total_ballooned_pages(), 0);
}

/// A huge map stays cheap: a 1 TiB block with a million runs, touched only by runs.
#[test]
fn counting_and_scanning_cost_runs_not_pages() {
    let pages = 1u64 << 28; // 1 TiB of 4 KiB pages
    let blocks = [RamBlock {
        idstr: "pc.ram".into(),
        used_length: pages << 12,
        page_size: None,
        mr_addr: None,
    }];
    let mut map = BalloonMap::new(&blocks, 12);
    // 90% ballooned in 2^16 runs.
    let step = pages >> 16;
    for i in 0..(1u64 << 16) {
        map.inflate(0, i * step..i * step + step * 9 / 10).unwrap();
    }
    assert_eq!(map.run_count(0), 1 << 16);
    assert_eq!(map.ballooned_pages(0), (step * 9 / 10) << 16);
    let unballooned: u64 = map
        .unballooned_ranges(0, 0..pages)
        .map(|r| r.end - r.start)
        .sum();
    assert_eq!(unballooned + map.ballooned_pages(0), pages);
}
