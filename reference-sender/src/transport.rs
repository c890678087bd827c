//! The writer under a migration's connection, counting every byte it accepted.

use std::io::{self, IoSlice, Write};

/// A transport, counting every byte it accepted.
pub(crate) struct Transport<W> {
    pub(crate) inner: W,
    pub(crate) written: u64,
}

impl<W: Write> Transport<W> {
    pub(crate) fn new(inner: W) -> Self {
        Transport { inner, written: 0 }
    }

    pub(crate) fn write_all_vectored(&mut self, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut slices, 0);
        while !slices.is_empty() {
            match self.inner.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
