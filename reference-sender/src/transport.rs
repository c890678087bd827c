//! The writer under a migration's connection, counting every byte it accepted.

use std::io::{self, Write};

use ramstream_codec::Vectored;

/// A transport, counting every byte it accepted.
pub(crate) struct Transport<W> {
    pub(crate) inner: W,
    pub(crate) written: u64,
}

impl<W: Write> Transport<W> {
    pub(crate) fn new(inner: W) -> Self {
        Transport { inner, written: 0 }
    }

    /// Writes all of `v`, `writev` by `writev`, with no allocation.
    pub(crate) fn write_vectored_all(&mut self, v: &Vectored<'_>) -> io::Result<()> {
        v.write_all_with(|slices| {
            let n = self.inner.write_vectored(slices)?;
            self.written += n as u64;
            Ok(n)
        })
    }
}
