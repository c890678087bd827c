//! Progress bars on stderr for long work (decoding a file, receiving or relaying a stream,
//! sending a guest): drawn only when stderr is a terminal and the command prints no JSON.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether progress is drawn: stderr is a terminal and the output is not JSON.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// Progress through a known number of bytes (a file being decoded), or through an
/// open-ended stream (a socket) when `total` is `None`. Updates are cheap: the position is
/// passed on at most once per [`Bytes::STEP`] bytes.
pub struct Bytes {
    bar: ProgressBar,
    shown: u64,
}

impl Bytes {
    /// Bytes between two updates of the bar.
    pub const STEP: u64 = 1 << 20;

    /// A bar labelled `what` ("decoding", "receiving", ...), hidden unless [`wanted`].
    pub fn new(what: &str, total: Option<u64>, json: bool) -> Self {
        let bar = if !wanted(json) {
            ProgressBar::hidden()
        } else if let Some(len) = total {
            ProgressBar::new(len).with_style(style(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            ))
        } else {
            let bar = ProgressBar::new_spinner().with_style(style(
                "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec}",
            ));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        };
        bar.set_message(what.to_string());
        Bytes { bar, shown: 0 }
    }

    /// `at` bytes done so far.
    pub fn at(&mut self, at: u64) {
        if at >= self.shown.saturating_add(Self::STEP) || at < self.shown {
            self.shown = at;
            self.bar.set_position(at);
        }
    }

    /// Replaces the bar's label (figures beside the byte count).
    pub fn say(&self, what: String) {
        self.bar.set_message(what);
    }

    /// Whether the bar is drawn.
    pub fn is_drawn(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// `inner`, moving this bar by every byte read through it: several readers (a multifd
    /// migration's main stream and channels) may share one bar, which shows their sum.
    pub fn reader<R>(&self, inner: R) -> Reading<R> {
        Reading {
            inner,
            bar: self.bar.clone(),
        }
    }
}

/// A reader that moves a bar ([`Bytes::reader`]).
pub struct Reading<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: std::io::Read> std::io::Read for Reading<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The bar of a live migration's pages (the sender's rounds), hidden when stderr is not a
/// terminal unless `force`.
pub fn pages(force: bool) -> ProgressBar {
    let pb = if std::io::stderr().is_terminal() || force {
        ProgressBar::new(1)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(style(
        "{spinner} {msg:32} [{bar:30}] {pos}/{len} pages  {prefix}",
    ));
    pb
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_draws_no_bar() {
        let mut b = Bytes::new("decoding", Some(10 << 20), true);
        assert!(!b.is_drawn());
        for at in (0..3000).map(|i| i * 1000) {
            b.at(at);
        }
        // Passed on at 1 049 000 and 2 098 000 only: at least a STEP apart.
        assert_eq!(b.shown, 2_098_000);
        assert_eq!(b.bar.position(), 2_098_000);
    }

    #[test]
    fn readers_sharing_a_bar_move_it_by_their_sum() {
        use std::io::Read;
        let bar = Bytes::new("receiving", None, true);
        let (a, b) = (vec![1u8; 3 << 20], vec![2u8; 5000]);
        let (mut ra, mut rb) = (bar.reader(&a[..]), bar.reader(&b[..]));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        ra.read_to_end(&mut x).unwrap();
        rb.read_to_end(&mut y).unwrap();
        assert_eq!((x, y), (a.clone(), b.clone()));
        assert_eq!(bar.bar.position(), (a.len() + b.len()) as u64);
    }
}
