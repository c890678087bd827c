//! Bytes against the instants the caller passed: QEMU's rate limiter (100 ms windows of
//! `max-bandwidth / 10` bytes, counting what the source handed out, as QEMU counts what it
//! queued), and each round's bandwidth (counting what the caller reported sent).

use std::time::{Duration, Instant};

/// QEMU's rate-limit window (`BUFFER_DELAY`).
const WINDOW: Duration = Duration::from_millis(100);

/// The bytes reported sent, and the bytes handed out in the current rate-limit window.
#[derive(Clone, Debug, Default)]
pub(crate) struct Meter {
    /// All bytes reported sent.
    pub(crate) sent: u64,
    window_start: Option<Instant>,
    window_bytes: u64,
}

impl Meter {
    /// Counts `n` bytes reported sent.
    pub(crate) fn sent(&mut self, n: u64) {
        self.sent += n;
    }

    /// Counts `n` bytes handed out.
    pub(crate) fn produced(&mut self, n: u64) {
        self.window_bytes += n;
    }

    /// With a limit of `limit` bytes per second, what the current window still allows.
    pub(crate) fn budget(&self, limit: Option<u64>) -> Option<u64> {
        limit.map(|l| (l / 10).saturating_sub(self.window_bytes))
    }

    /// With a limit of `limit` bytes per second: `None` if more may be sent at `now`, or
    /// the instant the current window ends if it is used up.
    pub(crate) fn not_before(&mut self, now: Instant, limit: Option<u64>) -> Option<Instant> {
        let limit = limit?;
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= WINDOW {
            self.window_start = Some(now);
            self.window_bytes = 0;
            return None;
        }
        (self.window_bytes >= limit / 10).then_some(start + WINDOW)
    }
}

/// A round's throughput: `bytes` over `elapsed` (at least 1 ms), in bytes per second.
pub(crate) fn bandwidth(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.max(Duration::from_millis(1)).as_secs_f64()
}

/// `secs` seconds as a duration, saturating (an unmeasurable bandwidth gives a huge one).
pub(crate) fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_window_says_when_it_ends() {
        let t0 = Instant::now();
        let mut m = Meter::default();
        assert_eq!(m.not_before(t0, None), None);
        assert_eq!(m.not_before(t0, Some(1000)), None);
        m.produced(99);
        assert_eq!(m.budget(Some(1000)), Some(1));
        assert_eq!(m.not_before(t0 + WINDOW / 2, Some(1000)), None);
        m.produced(1);
        assert_eq!(m.not_before(t0 + WINDOW / 2, Some(1000)), Some(t0 + WINDOW));
        assert_eq!(m.not_before(t0 + WINDOW, Some(1000)), None);
        assert_eq!(m.budget(Some(1000)), Some(100));
        m.sent(5);
        assert_eq!(m.sent, 5);
    }
}
