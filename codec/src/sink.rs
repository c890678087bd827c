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
