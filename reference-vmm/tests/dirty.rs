//! Dirty logging: the guest's writes show up per region, merged with the VMM's own writes.

mod common;

use std::time::Duration;

use ramstream_reference_vmm::guest_abi::PAGE_SIZE;

#[test]
fn dirty_log_covers_the_working_set_in_both_regions() {
    let Some((layout, config, mut vm)) = common::busy_guest(1024, 16) else {
        return;
    };
    vm.wait_heartbeat_past(0, Duration::from_secs(10)).unwrap();

    assert!(vm.dirty_log(0).is_err(), "no log before logging is enabled");
    vm.start_dirty_log().unwrap();
    let before = vm.counters().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let logs = vm.dirty_logs().unwrap();
    let after = vm.counters().unwrap();

    let ws_first = config.working_set_first.unwrap();
    let ws = ws_first..ws_first + config.working_set_pages;
    let reserved = layout.reserved_pages();
    let mut in_ws = 0;
    for log in &logs {
        assert!(!log.is_empty(), "region {} has dirty pages", log.region());
        for addr in log.addrs() {
            let ram = layout.ram_page(addr).unwrap();
            assert!(
                ws.contains(&ram) || ram < reserved,
                "unexpected dirty RAM page {ram}"
            );
            in_ws += u64::from(ws.contains(&ram));
        }
    }
    let written = after.pages_written - before.pages_written;
    eprintln!(
        "dirty log: {} + {} pages dirty ({in_ws} in the working set) while the guest wrote {written} pages in ~300 ms",
        logs[0].count(),
        logs[1].count()
    );
    assert!(in_ws > 0);

    // The VMM's own writes are merged in; a second fetch of an idle region is empty of them.
    vm.pause().unwrap();
    vm.dirty_logs().unwrap();
    let spot = layout.regions[1].run().end() - 1;
    let addr = ramstream_migrate::PageAddr::of_page(1, spot, PAGE_SIZE);
    vm.memory().write_page(addr, &[7u8; PAGE_SIZE]).unwrap();
    let log = vm.dirty_log(1).unwrap();
    assert_eq!(log.addrs().collect::<Vec<_>>(), vec![addr]);
    assert!(vm.dirty_log(1).unwrap().is_empty(), "get-and-clear");

    vm.stop_dirty_log().unwrap();
    assert!(vm.dirty_log(1).is_err());
}
