//! The idle timeout of an accepted connection: a peer that connects and then sends nothing
//! for `--idle-timeout` seconds is dropped with an error naming it, instead of holding the
//! listener (and its one migration) forever.

use std::cell::Cell;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use anyhow::Result;

use crate::duplex::Duplex;

/// How long an accepted peer may send nothing unless `--idle-timeout` says otherwise.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

/// An accepted connection whose reads wait at most the idle timeout (or a shorter one a
/// reader asks for) and then fail with an error naming the peer and the wait.
pub struct Idle {
    inner: Box<dyn Duplex>,
    peer: String,
    idle: Duration,
    /// The read timeout in force (`set_read_timeout(None)` restores `idle`).
    current: Cell<Duration>,
}

impl Idle {
    /// Wraps `inner`, accepted from `peer`, and arms its idle timeout.
    pub fn wrap(inner: Box<dyn Duplex>, peer: &str, idle: Duration) -> Result<Box<dyn Duplex>> {
        inner.set_read_timeout(Some(idle))?;
        Ok(Box::new(Idle {
            inner,
            peer: peer.to_string(),
            idle,
            current: Cell::new(idle),
        }))
    }
}

impl Read for Idle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let t = self.current.get();
                let flag = if t == self.idle {
                    " (--idle-timeout)"
                } else {
                    ""
                };
                Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "{} sent nothing for {} s{flag}; dropped",
                        self.peer,
                        t.as_secs_f64()
                    ),
                ))
            }
            r => r,
        }
    }
}

impl Write for Idle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Duplex for Idle {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(Idle {
            inner: self.inner.try_clone_box()?,
            peer: self.peer.clone(),
            idle: self.idle,
            current: Cell::new(self.current.get()),
        }))
    }
    fn shutdown_both(&self) {
        self.inner.shutdown_both();
    }
    fn shutdown_write(&self) {
        self.inner.shutdown_write();
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        let t = t.map_or(self.idle, |t| t.min(self.idle));
        self.current.set(t);
        self.inner.set_read_timeout(Some(t))
    }
}
