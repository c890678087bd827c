//! What a dirty sync does: the setup sync starts the bulk pass, a sync after a round
//! decides between another iteration and stopping (QEMU's `migration_iteration_run`), and the
//! sync after the guest stopped starts the last pass.

use std::time::{Duration, Instant};

use super::meter::{bandwidth, seconds};
use super::page_set::PageSet;
use super::round::{Round, RoundKind};
use super::stats::RoundStats;
use super::{Phase, Source, Stage};
use crate::error::Error;

impl Source {
    /// A dirty sync is complete: the pages handed in since the previous one
    /// ([`handle_dirty`](Source::handle_dirty), [`handle_dirty_bitmap`](Source::handle_dirty_bitmap))
    /// and the balloon ([`handle_balloon`](Source::handle_balloon)) are what the guest did
    /// up to `now`. Only after [`Transmit::SyncDirty`](crate::Transmit::SyncDirty).
    pub fn handle_sync(&mut self, now: Instant) -> Result<(), Error> {
        let stage = self.stage;
        if !matches!(stage, Stage::SetupSync | Stage::Sync | Stage::FinalSync) {
            return Err(self.unexpected("handle_sync"));
        }
        self.stats.dirty_sync_count += 1;
        if let Some(c) = &mut self.cache {
            c.set_generation(self.stats.dirty_sync_count);
        }
        match stage {
            Stage::SetupSync => self.setup_synced(now),
            Stage::Sync => self.round_synced(now),
            _ => {
                let carry = self.carry.take();
                let pages = self.take_dirty(carry);
                self.start_round(now, RoundKind::Final, pages);
            }
        }
        Ok(())
    }

    /// The setup sync only clears the log: the bulk pass reads every page after it.
    fn setup_synced(&mut self, now: Instant) {
        self.pending.clear();
        self.balloon.apply();
        let mut pages = PageSet::full(&self.block_pages);
        self.stats.ballooned_skipped += self.balloon.remove_from(&mut pages);
        let first = *self.clock.first_poll.get_or_insert(now);
        self.stats.setup_time = now.saturating_duration_since(first);
        self.phase = Phase::Bulk;
        self.start_round(now, RoundKind::Bulk, pages);
    }

    /// The end of the bulk pass or a dirty iteration: measure, then go on or stop.
    fn round_synced(&mut self, now: Instant) {
        let start = self.clock.round_start.unwrap_or(now);
        let elapsed = now
            .saturating_duration_since(start)
            .max(Duration::from_millis(1));
        let bytes = self.meter.sent - self.clock.round_sent;
        let bw = bandwidth(bytes, elapsed);
        if let (Some(c), Some(last)) = (&mut self.cache, self.clock.last_rate_update) {
            if now.saturating_duration_since(last) >= Duration::from_secs(1) {
                c.update_rates();
                self.clock.last_rate_update = Some(now);
            }
        }
        let dirty = self.take_dirty(None);
        let n = dirty.count();
        let remaining = n * self.opts.page_size as u64;
        let expected = seconds(remaining as f64 / bw.max(1.0));
        self.stats.remaining = remaining;
        self.stats.dirty_pages_rate = (n as f64 / elapsed.as_secs_f64()) as u64;
        self.stats.mbps = bw * 8.0 / 1e6;
        self.stats.expected_downtime = expected;
        if let Some(last) = self.stats.rounds.last_mut() {
            last.bytes = bytes;
            last.duration = elapsed;
            last.dirty_after = n;
            last.expected_downtime = expected;
        }
        let converged = expected <= self.opts.downtime_limit;
        if converged || self.iteration >= self.opts.max_iterations {
            self.stats.converged = converged;
            self.stats.iterations = self.iteration;
            self.carry = Some(dirty);
            self.stage = Stage::Stop;
            self.phase = Phase::StopAndCopy;
        } else {
            self.iteration += 1;
            self.phase = Phase::Iterate;
            self.start_round(now, RoundKind::Dirty, dirty);
        }
    }

    /// The pages handed in since the last sync (and `carry`), without the ballooned ones;
    /// the balloon handed in is put into force first.
    fn take_dirty(&mut self, carry: Option<PageSet>) -> PageSet {
        self.balloon.apply();
        let empty = PageSet::empty(&self.block_pages);
        let mut pages = std::mem::replace(&mut self.pending, empty);
        if let Some(c) = carry {
            pages.union(&c);
        }
        self.stats.ballooned_skipped += self.balloon.remove_from(&mut pages);
        pages
    }

    fn start_round(&mut self, now: Instant, kind: RoundKind, pages: PageSet) {
        let round = Round::new(kind, pages);
        if kind != RoundKind::Final {
            self.stats.rounds.push(RoundStats {
                iteration: self.iteration,
                pages: round.total,
                ..RoundStats::default()
            });
        }
        self.batch.new_round();
        self.round = Some(round);
        self.clock.round_start = Some(now);
        self.clock.round_sent = self.meter.sent;
        self.stage = Stage::Round;
    }
}
