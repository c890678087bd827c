//! In-process precopy migration: full copy, dirty rounds, final paused round, state blobs;
//! the guest continues on the destination with 0 differing pages and a passing self-check.

mod common;

use std::time::{Duration, Instant};

use ramstream_migrate::{PageAddr, PageRun};
use ramstream_reference_vmm::guest_abi::PAGE_SIZE;
use ramstream_reference_vmm::{MemoryLayout, VcpuState, Vm, VmState};

/// Copies the pages at `pages` from `src` to `dst`; returns pages copied.
fn copy_pages(src: &Vm, dst: &Vm, pages: impl Iterator<Item = PageAddr>) -> u64 {
    let mut buf = [0u8; PAGE_SIZE];
    let mut n = 0;
    for addr in pages {
        src.memory().read_page(addr, &mut buf).unwrap();
        dst.memory().write_page(addr, &buf).unwrap();
        n += 1;
    }
    n
}

fn dirty_round(src: &Vm, dst: &Vm) -> u64 {
    let logs = src.dirty_logs().unwrap();
    copy_pages(src, dst, logs.iter().flat_map(|l| l.addrs()))
}

/// Every page address of `layout`, region by region.
fn every_page(layout: &MemoryLayout) -> impl Iterator<Item = PageAddr> + '_ {
    (layout.regions.iter().enumerate())
        .flat_map(|(region, spec)| spec.run().addrs(region, PAGE_SIZE))
}

#[test]
fn precopy_migration_in_process() {
    if !common::kvm_usable() {
        return;
    }
    let layout = common::small_layout();
    let mut config = common::straddling_config(&layout, 1024);
    config.pages_per_loop = 4;
    config.delay_loops = 0;
    let mut src = common::start(&layout, &config);
    while src.counters().unwrap().generation < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ws_first = config.working_set_first.unwrap();
    src.balloon_inflate(PageRun::new(ws_first + 500, 40))
        .unwrap();

    // The destination is built from the layout as the receiver would get it.
    let wire_layout: MemoryLayout =
        serde_json::from_str(&serde_json::to_string(src.layout()).unwrap()).unwrap();
    let mut dst = Vm::new_destination(&wire_layout).unwrap();

    // Round 0: everything that is not zero (the destination starts zeroed).
    src.start_dirty_log().unwrap();
    let mut buf = [0u8; PAGE_SIZE];
    let mut full = 0;
    for addr in every_page(&layout) {
        src.memory().read_page(addr, &mut buf).unwrap();
        if buf.iter().any(|&b| b != 0) {
            dst.memory().write_page(addr, &buf).unwrap();
            full += 1;
        }
    }
    // Dirty rounds, with a balloon inflate in the middle: its discards must reach the
    // destination too (they are VMM changes, merged into the dirty log).
    let mut rounds = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(20));
        if round == 1 {
            src.balloon_inflate(PageRun::new(ws_first + 700, 24))
                .unwrap();
        }
        rounds.push(dirty_round(&src, &dst));
    }

    // Final round with the source paused (after giving the guest time to dirty some more).
    std::thread::sleep(Duration::from_millis(20));
    let downtime = Instant::now();
    src.pause().unwrap();
    let last = dirty_round(&src, &dst);
    let vcpu_blob = src.save_vcpu_state().unwrap().to_bytes();
    let vm_blob = src.save_vm_state().unwrap().to_bytes();
    let src_counters = src.counters().unwrap();

    let vcpu_state = VcpuState::from_bytes(&vcpu_blob).unwrap();
    assert_eq!(vcpu_state.to_bytes(), vcpu_blob);
    dst.restore_vm_state(&VmState::from_bytes(&vm_blob).unwrap())
        .unwrap();
    dst.restore_vcpu_state(&vcpu_state).unwrap();
    let downtime = downtime.elapsed();

    // Before the destination runs, its memory must equal the paused source's.
    let mut a = [0u8; PAGE_SIZE];
    let mut differing = 0;
    for addr in every_page(&layout) {
        src.memory().read_page(addr, &mut a).unwrap();
        dst.memory().read_page(addr, &mut buf).unwrap();
        differing += u64::from(a != buf);
    }
    assert_eq!(differing, 0, "pages differ between source and destination");
    assert_eq!(dst.balloon_runs(), src.balloon_runs());
    assert_eq!(dst.save_vcpu_state().unwrap().regs, vcpu_state.regs);

    dst.resume().unwrap();
    eprintln!(
        "migration: full round {full} pages, dirty rounds {rounds:?}, final round {last} pages, \
         vCPU blob {} B, VM blob {} B, downtime {downtime:?} (pause to state restored), \
         source heartbeat {}, {differing} differing pages",
        vcpu_blob.len(),
        vm_blob.len(),
        src_counters.heartbeat
    );

    let v = dst.verify_guest(Duration::from_secs(10)).unwrap();
    eprintln!("destination verification: {v:?}");
    assert!(v.heartbeat_before >= src_counters.heartbeat);
    assert!(v.heartbeat_after > v.heartbeat_before);
    assert!(v.check.passed(), "{v:?}");
    assert_eq!(v.check.ballooned_pages, 64);
    assert!(v.check.ok_pages > 0);
    let c = dst.counters().unwrap();
    assert!(
        c.pages_written > src_counters.pages_written,
        "the destination guest keeps writing"
    );
}
