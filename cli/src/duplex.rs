//! The connected byte stream every command reads and writes: a TCP or Unix socket, or a
//! TLS session over TCP (see `tls.rs`), with what the commands do to it beside reading and
//! writing.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Result;

/// A connected byte stream in both directions.
pub trait Duplex: Read + Write + Send {
    /// A second handle to the same connection (for the other direction).
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>>;
    /// Shuts both directions down, waking a reader blocked on another handle.
    fn shutdown_both(&self);
    /// Shuts the writing direction down: the peer reads the end of the stream.
    fn shutdown_write(&self);
    /// Bounds how long a read may block (`None`: forever).
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()>;
}

/// `Duplex` for a standard socket type: its own `try_clone`, `shutdown` and
/// `set_read_timeout`.
macro_rules! socket_duplex {
    ($($t:ty),*) => {$(
        impl Duplex for $t {
            fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn shutdown_both(&self) {
                let _ = self.shutdown(Shutdown::Both);
            }
            fn shutdown_write(&self) {
                let _ = self.shutdown(Shutdown::Write);
            }
            fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
                Ok(<$t>::set_read_timeout(self, t)?)
            }
        }
    )*};
}

socket_duplex!(TcpStream, UnixStream);
