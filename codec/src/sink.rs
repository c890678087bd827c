//! Where encoded bytes go: a caller's buffer, or a vectored list that references page
//! payloads instead of copying them (SPEC.md §2).

use std::io::IoSlice;
use std::ops::Range;

use bytes::BufMut;

/// Where encoded bytes go. Small headers are `put`; page payloads and device bodies are
/// `put_payload`, which a vectored sink records by reference.
pub trait Sink<'a> {
    /// Appends bytes the encoder formatted (headers, lengths).
    fn put(&mut self, bytes: &[u8]);
    /// Appends a payload that lives as long as `'a` (page data, deltas, device bodies).
    fn put_payload(&mut self, payload: &'a [u8]) {
        self.put(payload)
    }
}

impl<'a> Sink<'a> for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl<'a> Sink<'a> for bytes::BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.put_slice(bytes);
    }
}

/// Adapts any [`BufMut`] (a caller's socket buffer) into a [`Sink`]. Payloads are copied
/// once, into that buffer.
#[derive(Debug)]
pub struct BufSink<B>(pub B);

impl<'a, B: BufMut> Sink<'a> for BufSink<B> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
}

#[derive(Clone, Debug)]
enum Segment<'a> {
    Arena(Range<usize>),
    Borrowed(&'a [u8]),
}

/// A vectored sink: headers go into a small arena, payloads are kept as references, ready
/// for `write_vectored`. No page payload is copied.
///
/// ```
/// use ramstream_codec::{Encoder, PageAddr, RamBlock, Vectored};
/// let page = vec![0xabu8; 4096];
/// let mut enc = Encoder::new(12);
/// let mut out = Vectored::default();
/// enc.mem_size(&[RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None }], &mut out);
/// enc.page(PageAddr { block: 0, offset: 0x1000 }, &page, &mut out).unwrap();
/// // The page is referenced, not copied: the last slice is the page itself.
/// let slices = out.io_slices();
/// assert_eq!(slices.last().unwrap().as_ptr(), page.as_ptr());
/// assert_eq!(out.len(), 8 + 1 + 6 + 8 + 8 + 1 + 6 + 4096);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Vectored<'a> {
    arena: Vec<u8>,
    segments: Vec<Segment<'a>>,
    len: usize,
}

impl<'a> Vectored<'a> {
    /// Total bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes as slices for `write_vectored`.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Arena(r) => IoSlice::new(&self.arena[r.clone()]),
                Segment::Borrowed(b) => IoSlice::new(b),
            })
            .collect()
    }

    /// Copies everything into one buffer (for tests and small outputs).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for s in self.io_slices() {
            v.extend_from_slice(&s);
        }
        v
    }

    /// Forgets everything written, keeping the arena's allocation.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.segments.clear();
        self.len = 0;
    }

    /// Starts an empty sink on the allocations of an earlier one ([`Vectored::recycle`]):
    /// a send loop whose payloads borrow guest memory afresh each poll keeps one arena and
    /// one segment list instead of allocating them per poll.
    ///
    /// ```
    /// use ramstream_codec::{Sink, Vectored, VectoredBuffers};
    /// let mut buffers = VectoredBuffers::default();
    /// for round in 0..3u8 {
    ///     let page = vec![round; 4096]; // borrowed for this round only
    ///     let mut out = Vectored::with_buffers(buffers);
    ///     out.put(b"header");
    ///     out.put_payload(&page);
    ///     assert_eq!(out.len(), 6 + 4096);
    ///     buffers = out.recycle();
    /// }
    /// ```
    pub fn with_buffers(buffers: VectoredBuffers) -> Self {
        let VectoredBuffers { arena, segments } = buffers;
        Vectored {
            arena,
            segments: relifetime(segments),
            len: 0,
        }
    }

    /// Ends this sink, keeping its allocations (emptied) for [`Vectored::with_buffers`]; the
    /// borrowed payloads are released.
    pub fn recycle(self) -> VectoredBuffers {
        let Vectored {
            mut arena,
            segments,
            ..
        } = self;
        arena.clear();
        VectoredBuffers {
            arena,
            segments: relifetime(segments),
        }
    }

    /// Calls `write` with the bytes as up to [`IO_SLICES`] slices at a time, from the
    /// first byte not yet written: `write` returns how many bytes it took (a short
    /// `writev`), 0 for none (then this fails with [`std::io::ErrorKind::WriteZero`]).
    /// No allocation.
    ///
    /// ```
    /// use ramstream_codec::{Sink, Vectored};
    /// let page = vec![7u8; 4096];
    /// let mut out = Vectored::default();
    /// out.put(b"head");
    /// out.put_payload(&page);
    /// let mut got = Vec::new();
    /// // A writer that takes at most 1000 bytes per call.
    /// out.write_all_with(|slices| {
    ///     let mut room = 1000;
    ///     for s in slices {
    ///         let n = s.len().min(room);
    ///         got.extend_from_slice(&s[..n]);
    ///         room -= n;
    ///     }
    ///     Ok(1000 - room)
    /// })
    /// .unwrap();
    /// assert_eq!(got, out.to_vec());
    /// ```
    pub fn write_all_with(
        &self,
        mut write: impl FnMut(&[IoSlice<'_>]) -> std::io::Result<usize>,
    ) -> std::io::Result<()> {
        let bytes = |s: &Segment<'a>| -> &[u8] {
            match s {
                Segment::Arena(r) => &self.arena[r.clone()],
                Segment::Borrowed(b) => b,
            }
        };
        let (mut seg, mut skip) = (0usize, 0usize);
        loop {
            // Empty segments (an empty payload) ahead are passed over: a call starts with a
            // byte to write.
            while seg < self.segments.len() && bytes(&self.segments[seg]).len() == skip {
                seg += 1;
                skip = 0;
            }
            if seg == self.segments.len() {
                return Ok(());
            }
            let mut slices = [IoSlice::new(&[]); IO_SLICES];
            let mut n = 0;
            for (i, s) in self.segments[seg..].iter().take(IO_SLICES).enumerate() {
                let b = bytes(s);
                slices[i] = IoSlice::new(if i == 0 { &b[skip..] } else { b });
                n = i + 1;
            }
            let mut took = match write(&slices[..n]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(took) => took,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Advance past what was taken: whole segments, then into one.
            while seg < self.segments.len() {
                let left = bytes(&self.segments[seg]).len() - skip;
                if took < left {
                    skip += took;
                    break;
                }
                took -= left;
                seg += 1;
                skip = 0;
            }
        }
    }
}

/// Slices handed to one call of [`Vectored::write_all_with`] at most: Linux's `UIO_MAXIOV`,
/// the most one `writev` takes.
pub const IO_SLICES: usize = 1024;

/// The allocations of a [`Vectored`] between two uses, with no borrow held
/// ([`Vectored::recycle`], [`Vectored::with_buffers`]).
#[derive(Debug, Default)]
pub struct VectoredBuffers {
    arena: Vec<u8>,
    segments: Vec<Segment<'static>>,
}

/// Empties `v` and gives its allocation another lifetime: `Segment<'a>` and `Segment<'b>`
/// have the same layout, so the standard library's in-place collect keeps the buffer.
fn relifetime<'b>(mut v: Vec<Segment<'_>>) -> Vec<Segment<'b>> {
    v.clear();
    v.into_iter().map(|_| Segment::Arena(0..0)).collect()
}

impl<'a> Sink<'a> for Vectored<'a> {
    fn put(&mut self, bytes: &[u8]) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.len += bytes.len();
        if let Some(Segment::Arena(r)) = self.segments.last_mut() {
            if r.end == start {
                r.end = self.arena.len();
                return;
            }
        }
        self.segments.push(Segment::Arena(start..self.arena.len()));
    }

    fn put_payload(&mut self, payload: &'a [u8]) {
        self.len += payload.len();
        self.segments.push(Segment::Borrowed(payload));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, IoSlice};

    use super::*;

    /// A sink of headers, payloads and empty payloads, and the bytes it holds.
    fn sample<'a>(pages: &'a [Vec<u8>], empty: &'a [u8]) -> Vectored<'a> {
        let mut v = Vectored::default();
        for (i, p) in pages.iter().enumerate() {
            v.put(&[i as u8; 9]);
            v.put_payload(empty);
            v.put_payload(p);
        }
        v.put(b"end");
        v
    }

    #[test]
    fn write_all_with_survives_every_short_write() {
        let pages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i ^ 0x5a; 100 + i as usize]).collect();
        let v = sample(&pages, &[]);
        let want = v.to_vec();
        for limit in [1, 2, 7, 9, 10, 99, 100, 101, 1000, usize::MAX] {
            let mut got = Vec::new();
            let mut interrupted = false;
            v.write_all_with(|slices| {
                // An interruption first, to check the call is repeated with the same bytes.
                if !interrupted {
                    interrupted = true;
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let mut room = limit;
                for s in slices {
                    let n = s.len().min(room);
                    got.extend_from_slice(&s[..n]);
                    room -= n;
                }
                Ok(limit.min(slices.iter().map(|s| s.len()).sum()))
            })
            .unwrap();
            assert_eq!(got, want, "writer taking {limit} bytes per call");
        }
    }

    #[test]
    fn write_all_with_splits_at_the_iov_limit_and_skips_empty_slices() {
        let page = vec![3u8; 16];
        let mut v = Vectored::default();
        for _ in 0..(IO_SLICES * 2 + 5) {
            v.put_payload(&page);
            v.put_payload(&[]);
        }
        let (mut calls, mut got) = (Vec::new(), Vec::new());
        v.write_all_with(|slices: &[IoSlice<'_>]| {
            assert!(
                !slices[0].is_empty(),
                "a call must start with a byte to write"
            );
            calls.push(slices.len());
            let n: usize = slices.iter().map(|s| s.len()).sum();
            slices.iter().for_each(|s| got.extend_from_slice(s));
            Ok(n)
        })
        .unwrap();
        assert_eq!(got, v.to_vec());
        assert!(calls.iter().all(|&n| n <= IO_SLICES), "{calls:?}");
        // An all-empty sink writes nothing and succeeds.
        let mut empty = Vectored::default();
        empty.put_payload(&[]);
        empty
            .write_all_with(|_| panic!("nothing to write"))
            .unwrap();
    }

    #[test]
    fn write_all_with_refuses_a_writer_that_takes_nothing() {
        let page = vec![1u8; 8];
        let mut v = Vectored::default();
        v.put_payload(&page);
        let err = v.write_all_with(|_| Ok(0)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
        let err = v
            .write_all_with(|_| Err(io::ErrorKind::BrokenPipe.into()))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn recycled_buffers_keep_their_allocations_and_forget_the_bytes() {
        let pages: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 64]).collect();
        let v = sample(&pages, &[]);
        let (arena_cap, seg_cap) = (v.arena.capacity(), v.segments.capacity());
        let buffers = v.recycle();
        assert_eq!(buffers.arena.capacity(), arena_cap);
        assert_eq!(buffers.segments.capacity(), seg_cap);
        let page = vec![9u8; 10];
        let mut again = Vectored::with_buffers(buffers);
        assert!(again.is_empty());
        again.put(b"h");
        again.put_payload(&page);
        let mut want = b"h".to_vec();
        want.extend_from_slice(&page);
        assert_eq!(again.to_vec(), want);
        assert_eq!(again.arena.capacity(), arena_cap);
    }
}
