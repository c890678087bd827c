//! Balloon: inflated pages are discarded (read zero) and never written; deflated pages come
//! back zero and are used again.

mod common;

use std::time::Duration;

use ramstream_migrate::PageRun;
use ramstream_reference_vmm::guest_abi::PAGE_SIZE;
use ramstream_reference_vmm::Error;

#[test]
fn inflate_and_deflate_across_regions() {
    let Some((layout, config, mut vm)) = common::busy_guest(1024, 16) else {
        return;
    };
    while vm.counters().unwrap().generation < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ws_first = config.working_set_first.unwrap();
    let low_pages = layout.regions[0].pages();
    let (first, count) = (ws_first + 100, 600); // 412 pages in pc.ram, 188 in ram1

    vm.start_dirty_log().unwrap();
    vm.balloon_inflate(PageRun::new(first, count)).unwrap();
    let runs = vm.balloon_runs();
    assert_eq!(
        runs,
        vec![
            vec![PageRun::new(first, low_pages - first)],
            vec![PageRun::new(0, count - (low_pages - first))],
        ]
    );
    assert_eq!(vm.counters().unwrap().balloon_pages, count);
    // The discard itself is a VMM change: it shows up once in the merged log.
    let logs = vm.dirty_logs().unwrap();
    assert!(logs[0].is_dirty(first) && logs[1].is_dirty(0));

    std::thread::sleep(Duration::from_millis(300));
    vm.pause().unwrap();
    let logs = vm.dirty_logs().unwrap();
    for (region, runs) in runs.iter().enumerate() {
        for addr in runs.iter().flat_map(|r| r.addrs(region, PAGE_SIZE)) {
            assert!(
                !logs[region].is_dirty(addr.page_index(PAGE_SIZE)),
                "ballooned page {addr:?} written"
            );
            assert!(vm.memory().is_zero_page(addr).unwrap());
        }
    }
    let written: u64 = logs.iter().map(|l| l.count()).sum();
    assert!(
        written > 0,
        "the guest kept writing the rest of its working set"
    );
    vm.resume().unwrap();

    let check = vm.self_check().unwrap();
    assert!(check.passed(), "{check:?}");
    assert_eq!(check.ballooned_pages, count);

    // Bad ranges are refused by the guest (reserved pages) or the VMM (beyond RAM).
    assert!(matches!(
        vm.balloon_inflate(PageRun::new(0, 1)),
        Err(Error::CommandRejected { status: 2, .. })
    ));
    assert!(vm
        .balloon_inflate(PageRun::new(layout.total_pages(), 1))
        .is_err());

    // Deflate with the writer stopped: the pages come back zero.
    vm.set_rate(0, 0).unwrap();
    vm.balloon_deflate(PageRun::new(first, count)).unwrap();
    assert!(vm.balloon_runs().iter().all(Vec::is_empty));
    assert_eq!(vm.counters().unwrap().balloon_pages, 0);
    let check = vm.self_check().unwrap();
    assert!(check.passed(), "{check:?}");
    assert_eq!(check.zero_pages, count);

    // And the guest writes them again.
    vm.set_rate(16, 0).unwrap();
    let gen = vm.counters().unwrap().generation;
    while vm.counters().unwrap().generation < gen + 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let check = vm.self_check().unwrap();
    assert!(check.passed() && check.ok_pages == 1024, "{check:?}");
}

#[test]
fn inflate_by_percent_takes_the_top_of_ram() {
    if !common::kvm_usable() {
        return;
    }
    let layout = common::small_layout();
    let config = common::straddling_config(&layout, 256);
    let mut vm = common::start(&layout, &config);
    let runs = vm.balloon_inflate_percent(25).unwrap();
    let total = layout.total_pages();
    assert_eq!(
        runs,
        vec![
            vec![],
            vec![PageRun::new(
                layout.regions[1].pages() - total / 4,
                total / 4
            )]
        ]
    );
    vm.balloon_deflate_all().unwrap();
    assert!(vm.balloon_runs().iter().all(Vec::is_empty));
    assert!(vm.self_check().unwrap().passed());
}
