//! The source's view of the balloon (SPEC.md §9): the runs the caller handed in, the runs in
//! force for the current round, and the runs last announced to the destination.

use ramstream_codec::balloon::{BalloonMapKind, PageRun};
use ramstream_codec::{Encoder, Sink};

use super::page_set::PageSet;

/// Ballooned runs per block, sorted and merged (the encoder's canonical form).
#[derive(Clone, Debug)]
pub(crate) struct BalloonRuns {
    /// Whether the extension is on; if not, nothing is kept.
    enabled: bool,
    /// The latest runs handed in.
    next: Vec<Vec<PageRun>>,
    /// The runs in force since the last [`BalloonRuns::apply`].
    current: Vec<Vec<PageRun>>,
    /// What the destination was last told, per block (`None`: nothing yet).
    announced: Vec<Option<Vec<PageRun>>>,
    /// Bumped whenever the runs in force change.
    version: u64,
}

/// Sorts `runs`, drops empty ones and merges touching or overlapping ones.
pub(crate) fn normalize(mut runs: Vec<PageRun>) -> Vec<PageRun> {
    runs.retain(|r| r.count > 0);
    runs.sort_unstable();
    let mut out: Vec<PageRun> = Vec::with_capacity(runs.len());
    for r in runs {
        match out.last_mut() {
            Some(last) if r.start <= last.end() => {
                last.count = last.count.max(r.end() - last.start);
            }
            _ => out.push(r),
        }
    }
    out
}

impl BalloonRuns {
    pub(crate) fn new(enabled: bool, blocks: usize) -> Self {
        BalloonRuns {
            enabled,
            next: vec![Vec::new(); blocks],
            current: vec![Vec::new(); blocks],
            announced: vec![None; blocks],
            version: 0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Sets the ballooned runs of `block` (already checked and normalized); in force from
    /// the next [`BalloonRuns::apply`].
    pub(crate) fn set(&mut self, block: usize, runs: Vec<PageRun>) {
        if self.enabled {
            self.next[block] = runs;
        }
    }

    /// Puts the runs handed in into force (at a sync: the round that follows is filtered
    /// and announced with them).
    pub(crate) fn apply(&mut self) {
        if self.current != self.next {
            self.current.clone_from(&self.next);
            self.version += 1;
        }
    }

    /// Changes whenever the runs in force change (a caller holding a copy of them compares
    /// this instead of the runs).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The runs in force for `block`.
    pub(crate) fn runs(&self, block: usize) -> &[PageRun] {
        &self.current[block]
    }

    /// Removes the ballooned pages from `set`; returns how many it held.
    pub(crate) fn remove_from(&self, set: &mut PageSet) -> u64 {
        let mut n = 0;
        for (b, runs) in self.current.iter().enumerate() {
            for r in runs {
                n += set.remove(b, r.range());
            }
        }
        n
    }

    /// Writes a full-map record for every block whose runs in force differ from what was
    /// last announced; returns how many records.
    pub(crate) fn announce<'a>(
        &mut self,
        enc: &mut Encoder,
        out: &mut impl Sink<'a>,
    ) -> Result<u64, ramstream_codec::Error> {
        let mut records = 0;
        if !self.enabled {
            return Ok(0);
        }
        for (b, runs) in self.current.iter().enumerate() {
            if self.announced[b].as_ref() == Some(runs) {
                continue;
            }
            enc.balloon_v1(b, BalloonMapKind::FullMap, runs, &[], out)?;
            self.announced[b] = Some(runs.clone());
            records += 1;
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_sorted_and_merged() {
        let r = |s, c| PageRun::new(s, c);
        assert_eq!(
            normalize(vec![
                r(10, 5),
                r(0, 2),
                r(2, 3),
                r(12, 1),
                r(20, 0),
                r(15, 1)
            ]),
            [r(0, 5), r(10, 6)]
        );
    }
}
