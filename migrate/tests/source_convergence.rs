//! The source's decision to stop and its bandwidth limit, from the instants the caller
//! passes and the bytes it reports, on a fake clock: deterministic, no sleeping.

mod source_support;
mod support;

use std::time::Duration;

use ramstream_migrate::SourceOptions;
use source_support::*;

/// A guest that dirties the same 10 pages (40 KiB) before every sync.
fn steady_guest() -> ScriptedGuest {
    let mut g = guest(vec![]);
    g.apply(&w(0, 0, 200, 1));
    g.steady = vec![w(0, 0, 10, 2)];
    g
}

fn opts(downtime_limit: Duration) -> SourceOptions {
    SourceOptions::default()
        .with_downtime_limit(downtime_limit)
        .with_max_iterations(5)
}

fn run(limit: Duration, tick: Duration, report_sent: bool) -> Migrated {
    let mut clock = FakeClock::new(tick);
    migrate_with(&mut steady_guest(), opts(limit), &mut clock, report_sent).unwrap()
}

#[test]
fn the_stop_is_decided_from_passed_instants_and_reported_bytes() {
    let limit = Duration::from_millis(100);
    // 1 ms per poll: the bulk pass (5 batches of 64 pages) takes 6 ms from the setup sync
    // to the next; at that bandwidth 40 KiB take far less than the limit.
    let fast = run(limit, Duration::from_millis(1), true);
    let s = fast.source.stats();
    let bulk = &s.rounds[0];
    assert_eq!(bulk.duration, Duration::from_millis(6));
    assert_eq!(bulk.bytes as usize, fast.syncs_at[1] - fast.syncs_at[0]);
    assert_eq!(bulk.dirty_after, 10);
    let bandwidth = bulk.bytes as f64 / 0.006;
    let expected = Duration::from_secs_f64(10.0 * 4096.0 / bandwidth);
    assert!(s.expected_downtime.abs_diff(expected) < Duration::from_micros(1));
    assert_eq!((s.converged, s.iterations), (true, 0));

    // The same bytes over 1 s per poll: 40 KiB take longer than 100 ms; never converges.
    let slow = run(limit, Duration::from_secs(1), true);
    let s = slow.source.stats();
    assert_eq!(s.rounds[0].duration, Duration::from_secs(6));
    assert_eq!((s.converged, s.iterations), (false, 5));
    assert!(s.expected_downtime > limit);

    // Bytes never reported sent: no bandwidth, no convergence.
    let unreported = run(limit, Duration::from_millis(1), false);
    let s = unreported.source.stats();
    assert_eq!((s.sent, s.converged, s.iterations), (0, false, 5));

    // Deterministic to the nanosecond: the limit at the expected downtime converges, one
    // nanosecond under it does not.
    let e = fast.source.stats().expected_downtime;
    let at = run(e, Duration::from_millis(1), true);
    assert!(at.source.stats().converged);
    assert_eq!(at.stream, fast.stream);
    let under = run(e - Duration::from_nanos(1), Duration::from_millis(1), true);
    assert!(!under.source.stats().converged);
    assert_eq!(under.source.stats().iterations, 5);
}

#[test]
fn the_bandwidth_limit_is_a_not_before_instant() {
    let mut g = steady_guest();
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let start = clock.now;
    let o = SourceOptions::default()
        .with_max_bandwidth(Some(1_000_000))
        .with_downtime_limit(Duration::from_secs(3600));
    let m = migrate_with(&mut g, o, &mut clock, true).unwrap();
    // 100 000 bytes per 100 ms window, give or take a page and the record headers.
    assert!(!m.waits.is_empty());
    for &(now, until) in &m.waits {
        assert!(until > now && until - now <= Duration::from_millis(100));
    }
    let bulk_bytes = (m.syncs_at[1] - m.syncs_at[0]) as u64;
    let windows = bulk_bytes / (100_000 + 2 * 4096);
    assert!(windows >= 5, "{bulk_bytes}");
    assert!(m.waits.len() as u64 >= windows, "{} waits", m.waits.len());
    let took = clock.now - start;
    assert!(
        took >= Duration::from_millis(100 * windows),
        "{bulk_bytes} bytes in {took:?}"
    );
    // Unlimited, the same migration takes a few fake milliseconds and the same bytes.
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let free = migrate_with(
        &mut steady_guest(),
        opts(Duration::from_secs(3600)),
        &mut clock,
        true,
    )
    .unwrap();
    assert!(free.waits.is_empty());
    assert_eq!(free.stream, m.stream);
}

#[test]
fn stop_and_copy_is_not_rate_limited() {
    // A big END section: 200 pages dirtied at the sync that decides to stop.
    let mut g = guest(vec![vec![], vec![w(0, 0, 200, 3)]]);
    g.apply(&w(0, 0, 200, 1));
    let o = SourceOptions::default()
        .with_max_bandwidth(Some(1_000_000))
        .with_downtime_limit(Duration::ZERO)
        .with_max_iterations(0);
    let mut clock = FakeClock::new(Duration::from_millis(1));
    let m = migrate_with(&mut g, o, &mut clock, true).unwrap();
    let stopped_at = *m.syncs_at.last().unwrap();
    assert!(m.stream.len() - stopped_at > 200 * 4096);
    let s = m.source.stats();
    assert_eq!(s.iterations, 0);
    // The final pass took one poll per batch of 64 pages, and then one for the devices.
    assert_eq!(s.downtime, Duration::from_millis(1 + 4 + 1));
}
