//! A sink that counts the bytes passing through to the caller's sink.

use ramstream_codec::Sink;

/// The caller's sink, and how many bytes were written into it.
pub(crate) struct Counted<'o, S> {
    inner: &'o mut S,
    /// Bytes written so far.
    pub(crate) n: usize,
}

impl<'o, S> Counted<'o, S> {
    pub(crate) fn new(inner: &'o mut S) -> Self {
        Counted { inner, n: 0 }
    }
}

impl<'a, S: Sink<'a>> Sink<'a> for Counted<'_, S> {
    fn put(&mut self, bytes: &[u8]) {
        self.n += bytes.len();
        self.inner.put(bytes);
    }

    fn put_payload(&mut self, payload: &'a [u8]) {
        self.n += payload.len();
        self.inner.put_payload(payload);
    }
}
