//! `--timeline t.svg` on `send`, `demo`, `receive --extract` and `proxy`: a migration over
//! time, one bar per round: pages and bytes, bandwidth, the expected downtime against the
//! limit, and the stop-and-copy window shaded.
//!
//! A sender knows its rounds (the bulk pass and each dirty iteration, with the expected
//! downtime it computed: [`Timeline::of_report`]). A watcher of the stream (`receive`,
//! `proxy`) cannot see where QEMU's dirty iterations begin; it sees `ram` sections, each
//! one `ram_save_iterate` call, and times them as they arrive ([`SectionClock`]): its
//! rounds are sections, the stop-and-copy window runs from the `ram` END section to EOF,
//! and the expected downtime is not shown (the stream does not carry it).
//!
//! With multifd (SPEC.md §14) the pages travel on the channel connections, not on the main
//! stream whose sections make the rounds. Each channel's thread tells the clock what its
//! channel carried through a [`ChannelMeter`]: once per batch of packets it decoded (never
//! per page), the bytes and pages since its last report, stamped with the instant it
//! started decoding them (taken on the same clock as the main stream's events). The clock
//! puts each report in the round open at that instant: a channel's pages and bytes count in
//! the `ram` section during which they arrived. Reports come in late (the main stream's
//! thread takes them when it handles its next event, or when the timeline is drawn), so they
//! are placed by their stamp, not by when they are read. Before the first `ram` section (a
//! channel's initial packet) they count in the first round, after EOF in the last.
//!
//! Arrival, not the sync epoch (§14.5), because an epoch does not name a section: in the
//! per-round mode (QEMU 8.1+) one MULTIFD_FLUSH epoch spans every section of a pass over
//! RAM. In `receive --extract` arrival stays consistent with the epochs: its main stream
//! waits at each sync point until every channel passed its SYNC packet, and a channel
//! stamps its pages before it reports that SYNC, so every page of epoch k counts no later
//! than the round holding sync point k. `proxy` holds no stream at a sync point (it forwards
//! each connection as it comes), so there a channel's pages count where they passed, even
//! if the main stream ran a section ahead.

use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ramstream_codec::Event;
use ramstream_reference_sender::MigrationReport;
use ramstream_spec::stream::SectionType;
use svg::node::element::{Group, Line, Rectangle, Text};
use svg::Document;

/// Plot width in pixels (the time axis).
const PLOT: f64 = 900.0;
/// Left margin (axis labels).
const LEFT: f64 = 90.0;
/// Right margin (the limit's label, the last time label).
const RIGHT: f64 = 76.0;
/// Bars narrower than this (pixels) do not set a panel's scale: a stop-and-copy round of
/// 1 ms at 1 GB/s would flatten every round the reader can see. Such a bar, when above the
/// scale, is drawn to the top and labelled with its value.
const MIN_SCALE_PX: f64 = 3.0;
/// Height of one panel.
const PANEL: f64 = 120.0;
/// Space between panels (its title).
const GAP: f64 = 46.0;
/// Rounds shorter than this (ms) get no bandwidth bar: e.g. a watcher's END section,
/// closed by EOF a fraction of a millisecond after it began.
const MIN_RATE_MS: f64 = 1.0;

/// One round: the bulk pass or a dirty iteration (sender), or one `ram` section (watcher).
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    /// Start, in ms from the start of the migration.
    pub start_ms: f64,
    /// Duration in ms.
    pub duration_ms: f64,
    /// Pages sent (sender: looked at) in the round.
    pub pages: u64,
    /// Bytes sent in the round.
    pub bytes: u64,
    /// Of `pages`, those a watcher saw arrive on multifd channels (0 in a sender's rounds,
    /// which count every page wherever it went).
    pub multifd_pages: u64,
    /// Of `bytes`, those a watcher saw arrive on multifd channels (0 in a sender's rounds).
    pub multifd_bytes: u64,
    /// The expected downtime computed after the round, when known.
    pub expected_downtime_ms: Option<f64>,
}

impl Round {
    /// Bandwidth in MB/s (10^6 bytes); `None` for a round shorter than
    /// [`MIN_RATE_MS`], whose rate would be noise.
    pub fn mb_per_s(&self) -> Option<f64> {
        (self.duration_ms >= MIN_RATE_MS).then(|| self.bytes as f64 / 1e3 / self.duration_ms)
    }
}

/// A migration's rounds and stop-and-copy window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// What the picture shows (command and peer).
    pub title: String,
    /// What a round is: `iteration` (sender) or `ram section` (watcher).
    pub round_name: &'static str,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// The downtime limit, when known (sender).
    pub downtime_limit_ms: Option<f64>,
    /// Stop-and-copy: start and duration in ms.
    pub stop_copy: Option<(f64, f64)>,
    /// The whole migration, ms.
    pub total_ms: f64,
}

impl Timeline {
    /// A sender's timeline from its report: setup, then the rounds back to back, then the
    /// downtime (guest paused to EOF) as the stop-and-copy window.
    pub fn of_report(title: &str, r: &MigrationReport, limit: Duration) -> Self {
        let mut t = r.setup_time_ms;
        let rounds = r
            .rounds
            .iter()
            .map(|i| {
                let round = Round {
                    start_ms: t,
                    duration_ms: i.duration_ms,
                    pages: i.pages,
                    bytes: i.bytes,
                    multifd_pages: 0,
                    multifd_bytes: 0,
                    expected_downtime_ms: Some(i.expected_downtime_ms),
                };
                t += i.duration_ms;
                round
            })
            .collect();
        let total = r.total_time_ms.max(t + r.downtime_ms);
        Timeline {
            title: title.to_string(),
            round_name: "iteration",
            rounds,
            downtime_limit_ms: Some(limit.as_secs_f64() * 1e3),
            stop_copy: Some((total - r.downtime_ms, r.downtime_ms)),
            total_ms: total,
        }
    }

    /// Draws the timeline.
    pub fn draw(&self) -> Document {
        let panels = 4.0;
        // The legend: three lines, and one for the multifd channels' share.
        let legend_lines = if self.multifd_bytes() > 0 { 4.0 } else { 3.0 };
        let height = 60.0 + panels * (PANEL + GAP) + 10.0 + 20.0 * legend_lines;
        let width = LEFT + PLOT + RIGHT;
        let total = self.total_ms.max(1e-3);
        let x = |ms: f64| LEFT + PLOT * (ms / total).clamp(0.0, 1.0);
        let mut doc = Document::new()
            .set("xmlns", "http://www.w3.org/2000/svg")
            .set("width", width)
            .set("height", height)
            .set("viewBox", (0, 0, width, height))
            .set("font-family", "sans-serif")
            .set("font-size", 12)
            .add(
                Rectangle::new()
                    .set("width", "100%")
                    .set("height", "100%")
                    .set("fill", "white"),
            )
            .add(
                Text::new(format!(
                    "{}: {}, {:.1} ms",
                    self.title,
                    self.rounds_in_words(),
                    self.total_ms
                ))
                .set("x", 20)
                .set("y", 24)
                .set("font-size", 16)
                .set("font-weight", "bold"),
            );
        let series: [(&str, &str, Vec<Option<f64>>); 4] = [
            (
                "pages",
                "pages per round",
                self.rounds.iter().map(|r| Some(r.pages as f64)).collect(),
            ),
            (
                "bytes",
                "MB per round",
                self.rounds
                    .iter()
                    .map(|r| Some(r.bytes as f64 / 1e6))
                    .collect(),
            ),
            (
                "bandwidth",
                "bandwidth, MB/s",
                self.rounds.iter().map(Round::mb_per_s).collect(),
            ),
            (
                "expected-downtime",
                "expected downtime, ms",
                self.rounds.iter().map(|r| r.expected_downtime_ms).collect(),
            ),
        ];
        for (i, (key, label, values)) in series.into_iter().enumerate() {
            let top = 60.0 + i as f64 * (PANEL + GAP);
            let limit = (key == "expected-downtime")
                .then_some(self.downtime_limit_ms)
                .flatten();
            doc = doc.add(self.panel(key, label, &values, limit, top, &x));
        }
        doc.add(self.legend(60.0 + panels * (PANEL + GAP)))
    }

    /// "9 round(s): the bulk pass and 8 dirty iteration(s)", "120 ram section(s)".
    fn rounds_in_words(&self) -> String {
        let n = self.rounds.len();
        if self.round_name == "iteration" && n > 0 {
            format!(
                "{n} round(s): the bulk pass and {} dirty iteration(s)",
                n - 1
            )
        } else {
            format!("{n} {}(s)", self.round_name)
        }
    }

    /// One panel: a bar per round (width its duration), the stop-and-copy window shaded,
    /// an optional dashed limit line.
    fn panel(
        &self,
        key: &str,
        label: &str,
        values: &[Option<f64>],
        limit: Option<f64>,
        top: f64,
        x: &dyn Fn(f64) -> f64,
    ) -> Group {
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        let bar_px = |r: &Round| x(r.start_ms + r.duration_ms) - x(r.start_ms);
        let wide: Vec<f64> = self
            .rounds
            .iter()
            .zip(values)
            .filter(|(r, _)| bar_px(r) >= MIN_SCALE_PX)
            .filter_map(|(_, v)| *v)
            .collect();
        let max = if wide.is_empty() { &known } else { &wide }
            .iter()
            .copied()
            .chain(limit)
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let bottom = top + PANEL;
        let y = |v: f64| bottom - PANEL * (v / max).clamp(0.0, 1.0);
        let mut g = Group::new()
            .set("class", "panel")
            .set("data-series", key)
            .add(
                Text::new(label)
                    .set("x", LEFT)
                    .set("y", top - 8.0)
                    .set("font-weight", "bold"),
            );
        if let Some((start, dur)) = self.stop_copy {
            g = g.add(
                Rectangle::new()
                    .set("class", "stop-copy")
                    .set("x", x(start))
                    .set("y", top)
                    .set("width", (x(start + dur) - x(start)).max(2.0))
                    .set("height", PANEL)
                    .set("fill", "#f4c7c3"),
            );
        }
        for (n, (r, v)) in self.rounds.iter().zip(values).enumerate() {
            let Some(v) = v else { continue };
            let width = (x(r.start_ms + r.duration_ms) - x(r.start_ms)).max(1.5);
            g = g.add(
                Rectangle::new()
                    .set("class", "round")
                    .set("data-value", *v)
                    .set("x", x(r.start_ms))
                    .set("y", y(*v))
                    .set("width", width)
                    .set("height", bottom - y(*v))
                    .set("fill", "#1f77b4")
                    .set("stroke", "white")
                    .set("stroke-width", 1.5),
            );
            if *v > max {
                // Above the scale (a narrow bar): its value says how far.
                g = g.add(
                    Text::new(format!("{} \u{2191}", round_label(*v)))
                        .set("class", "off-scale")
                        .set("x", x(r.start_ms) + width)
                        .set("y", top + 12.0)
                        .set("text-anchor", "end")
                        .set("fill", "#1f77b4"),
                );
            }
            // The round's number where its bar is wide enough.
            if width > 24.0 && bottom - y(*v) > 16.0 {
                g = g.add(
                    Text::new(n.to_string())
                        .set("x", x(r.start_ms) + width / 2.0)
                        .set("y", bottom - 4.0)
                        .set("text-anchor", "middle")
                        .set("fill", "white"),
                );
            }
        }
        if let (Some((start, _)), "pages") = (self.stop_copy, key) {
            // Named once, above the first panel, ending at the window.
            g = g.add(
                Text::new("stop-and-copy \u{2192}")
                    .set("x", x(start))
                    .set("y", top - 8.0)
                    .set("text-anchor", "end")
                    .set("fill", "#b03a2e"),
            );
        }
        if key == "pages" && known.iter().all(|v| *v == 0.0) && !known.is_empty() {
            g = g.add(
                Text::new("no pages in these rounds")
                    .set("x", LEFT + 10.0)
                    .set("y", top + PANEL / 2.0)
                    .set("fill", "#777"),
            );
        }
        if known.is_empty() {
            g = g.add(
                Text::new(format!(
                    "not observed: a {} does not carry it",
                    self.round_name
                ))
                .set("x", LEFT + 10.0)
                .set("y", top + PANEL / 2.0)
                .set("fill", "#777"),
            );
        }
        if let Some(l) = limit {
            g = g
                .add(
                    Line::new()
                        .set("class", "limit")
                        .set("x1", LEFT)
                        .set("x2", LEFT + PLOT)
                        .set("y1", y(l))
                        .set("y2", y(l))
                        .set("stroke", "#d62728")
                        .set("stroke-dasharray", "6 4"),
                )
                .add(
                    // In the right margin: the left one holds the scale, whose top value
                    // is often the limit itself, and bars may cover the plot's right end.
                    Text::new(format!("limit {l:.0}"))
                        .set("x", LEFT + PLOT + 4.0)
                        .set("y", y(l) + 4.0)
                        .set("text-anchor", "start")
                        .set("fill", "#d62728"),
                );
        }
        // Axes: the value scale on the left, time along the bottom.
        g.add(
            Line::new()
                .set("x1", LEFT)
                .set("x2", LEFT + PLOT)
                .set("y1", bottom)
                .set("y2", bottom)
                .set("stroke", "#333"),
        )
        .add(
            Line::new()
                .set("x1", LEFT)
                .set("x2", LEFT)
                .set("y1", top)
                .set("y2", bottom)
                .set("stroke", "#333"),
        )
        .add(
            Text::new(round_label(max))
                .set("x", LEFT - 6.0)
                .set("y", top + 10.0)
                .set("text-anchor", "end"),
        )
        .add(
            Text::new("0")
                .set("x", LEFT - 6.0)
                .set("y", bottom)
                .set("text-anchor", "end"),
        )
        .add(ticks(self.total_ms, bottom, x))
    }

    fn legend(&self, top: f64) -> Group {
        let pages: u64 = self.rounds.iter().map(|r| r.pages).sum();
        let bytes: u64 = self.rounds.iter().map(|r| r.bytes).sum();
        let multifd_pages: u64 = self.rounds.iter().map(|r| r.multifd_pages).sum();
        let multifd_bytes = self.multifd_bytes();
        let stop = self.stop_copy.map_or("not observed".to_string(), |(s, d)| {
            format!("{d:.1} ms from {s:.1} ms")
        });
        let mut g = Group::new()
            .set("class", "legend")
            .set("data-rounds", self.rounds.len())
            .set("data-pages", pages)
            .set("data-bytes", bytes)
            .set("data-multifd-pages", multifd_pages)
            .set("data-multifd-bytes", multifd_bytes)
            .add(swatch(top, "#1f77b4", &format!(
                "one bar per round = {} (width: its duration): {} round(s), {pages} pages, {bytes} bytes in all",
                self.round_name,
                self.rounds.len(),
            )));
        let mut y = top + 20.0;
        if multifd_bytes > 0 {
            g = g.add(
                Text::new(format!(
                    "of which on multifd channels: {multifd_pages} pages, {multifd_bytes} bytes (each in the round during which it arrived)"
                ))
                .set("x", LEFT + 22.0)
                .set("y", y + 12.0),
            );
            y += 20.0;
        }
        g.add(swatch(
            y,
            "#f4c7c3",
            &format!("stop-and-copy (guest paused): {stop}"),
        ))
        .add(swatch(
            y + 20.0,
            "#d62728",
            &match self.downtime_limit_ms {
                Some(l) => format!("downtime limit: {l:.0} ms (dashed)"),
                None => "downtime limit: not known here".to_string(),
            },
        ))
    }

    /// The bytes the rounds' multifd channels carried.
    fn multifd_bytes(&self) -> u64 {
        self.rounds.iter().map(|r| r.multifd_bytes).sum()
    }

    /// Writes the SVG to `out`.
    pub fn save(&self, out: &Path) -> Result<()> {
        svg::save(out, &self.draw()).with_context(|| format!("cannot write {}", out.display()))
    }
}

/// Time ticks along a panel's bottom: 0, each quarter, the end, in ms.
fn ticks(total_ms: f64, bottom: f64, x: &dyn Fn(f64) -> f64) -> Group {
    let mut g = Group::new().set("class", "time-axis");
    for q in 0..=4 {
        let ms = total_ms * q as f64 / 4.0;
        let anchor = match q {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        g = g
            .add(
                Line::new()
                    .set("x1", x(ms))
                    .set("x2", x(ms))
                    .set("y1", bottom)
                    .set("y2", bottom + 4.0)
                    .set("stroke", "#333"),
            )
            .add(
                Text::new(format!("{ms:.0} ms"))
                    .set("x", x(ms))
                    .set("y", bottom + 15.0)
                    .set("text-anchor", anchor),
            );
    }
    g
}

fn swatch(y: f64, colour: &str, text: &str) -> Group {
    Group::new()
        .set("class", "legend-entry")
        .add(
            Rectangle::new()
                .set("x", LEFT)
                .set("y", y)
                .set("width", 14)
                .set("height", 14)
                .set("fill", colour),
        )
        .add(Text::new(text).set("x", LEFT + 22.0).set("y", y + 12.0))
}

/// An axis maximum, briefly.
fn round_label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `--timeline` of `send` and `demo`: writes the sender's timeline to `out`, if asked.
pub fn save_report(
    out: Option<&Path>,
    title: &str,
    r: &MigrationReport,
    guest: &crate::guest::GuestArgs,
) -> Result<()> {
    match out {
        Some(out) => {
            Timeline::of_report(title, r, Duration::from_millis(guest.downtime_limit)).save(out)
        }
        None => Ok(()),
    }
}

/// Times a stream's `ram` sections as a watcher sees them arrive (`receive`, `proxy`), with
/// what a multifd migration's channels carried meanwhile ([`SectionClock::channel_meter`]).
#[derive(Debug)]
pub struct SectionClock {
    timeline: Timeline,
    open: Option<Round>,
    /// When the first event came: the timeline's 0.
    origin: Option<Duration>,
    /// The channels' reports, and the sender the meters are made from.
    arrivals: mpsc::Receiver<Arrival>,
    meters: mpsc::Sender<Arrival>,
}

impl SectionClock {
    /// A clock for the stream of `title`.
    pub fn new(title: &str) -> Self {
        let (meters, arrivals) = mpsc::channel();
        SectionClock {
            timeline: Timeline {
                title: title.to_string(),
                round_name: "ram section",
                ..Timeline::default()
            },
            open: None,
            origin: None,
            arrivals,
            meters,
        }
    }

    /// A meter for one multifd channel's thread, stamping on the clock whose instant
    /// `epoch` is the `at` zero of [`SectionClock::observe`] (the caller passes
    /// `epoch.elapsed()` there). Another channel's is [`ChannelMeter::another_channel`].
    pub fn channel_meter(&self, epoch: Instant) -> ChannelMeter {
        ChannelMeter {
            to: self.meters.clone(),
            epoch,
            bytes: 0,
            pages: 0,
        }
    }

    /// Notes one event of `len` stream bytes, seen at `at` (any fixed origin: the first
    /// event is the timeline's 0), and places the channels' reports that came in since.
    pub fn observe(&mut self, event: &Event<'_>, len: usize, at: Duration) {
        let origin = *self.origin.get_or_insert(at);
        let ms = at.saturating_sub(origin).as_secs_f64() * 1e3;
        self.timeline.total_ms = ms;
        // Before a section boundary moves the open round on: what arrived up to now
        // belongs to the rounds before it.
        self.place_arrivals();
        match event {
            Event::SectionStart(h) if h.section_type == SectionType::START => self.open_round(ms),
            Event::SectionPart { section_type, .. } => {
                self.open_round(ms);
                if *section_type == SectionType::END {
                    self.timeline.stop_copy = Some((ms, 0.0));
                }
            }
            Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_) => {
                if let Some(r) = self.open.as_mut() {
                    r.pages += 1;
                }
            }
            Event::Eof => {
                self.close_round(ms);
                if let Some((s, _)) = self.timeline.stop_copy {
                    self.timeline.stop_copy = Some((s, ms - s));
                }
            }
            _ => {}
        }
        if let Some(r) = self.open.as_mut() {
            r.bytes += len as u64;
            r.duration_ms = ms - r.start_ms;
        }
    }

    fn open_round(&mut self, ms: f64) {
        self.close_round(ms);
        self.open = Some(Round {
            start_ms: ms,
            duration_ms: 0.0,
            pages: 0,
            bytes: 0,
            multifd_pages: 0,
            multifd_bytes: 0,
            expected_downtime_ms: None,
        });
    }

    fn close_round(&mut self, ms: f64) {
        if let Some(mut r) = self.open.take() {
            r.duration_ms = ms - r.start_ms;
            self.timeline.rounds.push(r);
        }
    }

    /// Adds the channels' reports that came in to the rounds open when they arrived. Until
    /// the first round opens they wait in the queue (and then count in it).
    fn place_arrivals(&mut self) {
        let Some(origin) = self.origin else { return };
        if self.open.is_none() && self.timeline.rounds.is_empty() {
            return;
        }
        while let Ok(a) = self.arrivals.try_recv() {
            let ms = a.at.saturating_sub(origin).as_secs_f64() * 1e3;
            if let Some(r) = self.round_at(ms) {
                r.pages += a.pages;
                r.bytes += a.bytes;
                r.multifd_pages += a.pages;
                r.multifd_bytes += a.bytes;
            }
        }
    }

    /// The round open at `ms`: the last to start by then (the open one from its start on;
    /// the first before it; the last after EOF), if a round opened yet.
    fn round_at(&mut self, ms: f64) -> Option<&mut Round> {
        let rounds = &mut self.timeline.rounds;
        let before = rounds.partition_point(|r| r.start_ms <= ms);
        match self.open.as_mut() {
            Some(open) if ms >= open.start_ms || rounds.is_empty() => Some(open),
            _ => rounds.get_mut(before.saturating_sub(1)),
        }
    }

    /// The timeline so far (an open section included, and every channel report made by
    /// now).
    pub fn timeline(&mut self) -> Timeline {
        self.place_arrivals();
        let mut t = self.timeline.clone();
        t.rounds.extend(self.open.clone());
        t
    }
}

/// One report of a multifd channel's thread: `bytes` and `pages` more, which began to
/// arrive `at` (from the [`SectionClock::channel_meter`]'s epoch).
#[derive(Clone, Copy, Debug)]
struct Arrival {
    at: Duration,
    bytes: u64,
    pages: u64,
}

/// A multifd channel's side of a [`SectionClock`], owned by the channel's thread: it takes
/// the channel's running totals and sends what they grew by, stamped, to the clock (a
/// message per batch of packets, never one per page).
#[derive(Debug)]
pub struct ChannelMeter {
    to: mpsc::Sender<Arrival>,
    epoch: Instant,
    /// The totals reported so far.
    bytes: u64,
    pages: u64,
}

impl ChannelMeter {
    /// A meter for another channel of the same clock, starting from nothing.
    pub fn another_channel(&self) -> ChannelMeter {
        ChannelMeter {
            to: self.to.clone(),
            epoch: self.epoch,
            bytes: 0,
            pages: 0,
        }
    }

    /// Says that by now the channel carried `bytes` and `pages` in all, the part not
    /// reported yet having begun to arrive at `since` (e.g. when the read that brought it
    /// returned, or when the decoder was handed it). A clock already gone is no error: the
    /// migration goes on without a timeline.
    pub fn reached(&mut self, since: Instant, bytes: u64, pages: u64) {
        let (more_bytes, more_pages) = (
            bytes.saturating_sub(self.bytes),
            pages.saturating_sub(self.pages),
        );
        if more_bytes == 0 && more_pages == 0 {
            return;
        }
        (self.bytes, self.pages) = (bytes.max(self.bytes), pages.max(self.pages));
        let _ = self.to.send(Arrival {
            at: since.saturating_duration_since(self.epoch),
            bytes: more_bytes,
            pages: more_pages,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramstream_codec::SectionHeader;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn part(section_type: SectionType) -> Event<'static> {
        Event::SectionPart {
            section_type,
            section_id: 2,
        }
    }

    #[test]
    fn channel_pages_count_in_the_section_during_which_they_arrived() {
        let epoch = Instant::now();
        let mut clock = SectionClock::new("receive");
        let mut a = clock.channel_meter(epoch);
        let mut b = a.another_channel();
        // Channel a's initial packet, before the first ram section: it counts in the first.
        a.reached(epoch + ms(1), 25, 0);
        clock.observe(&Event::Header { version: 3 }, 8, ms(0));
        clock.observe(
            &Event::SectionStart(SectionHeader::ram_start(2)),
            19,
            ms(10),
        );
        a.reached(epoch + ms(15), 1000, 3);
        clock.observe(&part(SectionType::PART), 5, ms(20));
        // Channel b reports during the second section what arrived during the first, then
        // what arrived during the second.
        b.reached(epoch + ms(18), 500, 2);
        b.reached(epoch + ms(25), 900, 4);
        // Totals that did not grow send nothing.
        b.reached(epoch + ms(26), 900, 4);
        clock.observe(&part(SectionType::END), 5, ms(30));
        a.reached(epoch + ms(32), 1100, 5);
        clock.observe(&Event::Eof, 1, ms(40));
        // After EOF (a channel's last bytes): the last round.
        b.reached(epoch + ms(50), 950, 4);
        let t = clock.timeline();
        let got: Vec<_> = t
            .rounds
            .iter()
            .map(|r| {
                (
                    r.start_ms,
                    r.pages,
                    r.bytes,
                    r.multifd_pages,
                    r.multifd_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (10.0, 5, 19 + 1000 + 500, 5, 1500),
                (20.0, 2, 5 + 400, 2, 400),
                (30.0, 2, 5 + 100 + 50, 2, 150),
            ]
        );
        assert_eq!(t.stop_copy, Some((30.0, 10.0)));
        let svg = t.draw().to_string();
        assert!(svg.contains(r#"data-multifd-pages="9""#), "{svg}");
        assert!(svg.contains(r#"data-multifd-bytes="2050""#), "{svg}");
    }

    #[test]
    fn channel_reports_without_a_ram_section_are_left_out() {
        let epoch = Instant::now();
        let mut clock = SectionClock::new("proxy");
        let mut a = clock.channel_meter(epoch);
        a.reached(epoch + ms(1), 25, 0);
        clock.observe(&Event::Header { version: 3 }, 8, ms(0));
        clock.observe(&Event::Eof, 1, ms(2));
        assert!(clock.timeline().rounds.is_empty());
    }

    #[test]
    fn a_narrow_fast_round_does_not_flatten_the_bandwidth_panel() {
        let round = |start_ms: f64, duration_ms: f64, bytes: u64| Round {
            start_ms,
            duration_ms,
            pages: bytes / 4096,
            bytes,
            multifd_pages: 0,
            multifd_bytes: 0,
            expected_downtime_ms: Some(10.0),
        };
        // Two throttled rounds at 20 and 10 MB/s, then a 1 ms stop-and-copy round at
        // 1,000 MB/s: a bar under a pixel wide.
        let t = Timeline {
            title: "t".into(),
            round_name: "iteration",
            rounds: vec![
                round(0.0, 1000.0, 20_000_000),
                round(1000.0, 1000.0, 10_000_000),
                round(2000.0, 1.0, 1_000_000),
            ],
            downtime_limit_ms: Some(300.0),
            stop_copy: Some((2000.0, 1.0)),
            total_ms: 2001.0,
        };
        let svg = t.draw().to_string();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let panel = doc
            .descendants()
            .find(|n| n.attribute("data-series") == Some("bandwidth"))
            .unwrap();
        let texts: Vec<&str> = panel
            .descendants()
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        // The scale's top is the widest rounds' 20 MB/s, not 1000.
        assert!(texts.contains(&"20.0"), "{texts:?}");
        assert!(!texts.contains(&"1000"), "{texts:?}");
        let off: Vec<_> = panel
            .descendants()
            .filter(|n| n.attribute("class") == Some("off-scale"))
            .map(|n| n.text().unwrap_or("").trim())
            .collect::<Vec<_>>();
        assert_eq!(off, ["1000 \u{2191}"]);
        // The first round fills the panel; the second is half as tall.
        let heights: Vec<f64> = panel
            .descendants()
            .filter(|n| n.attribute("class") == Some("round"))
            .map(|n| n.attribute("height").unwrap().parse().unwrap())
            .collect();
        assert_eq!(heights[0], PANEL);
        assert!((heights[1] - PANEL / 2.0).abs() < 1e-9, "{heights:?}");
        assert_eq!(heights[2], PANEL, "the off-scale bar is drawn to the top");
    }
}
