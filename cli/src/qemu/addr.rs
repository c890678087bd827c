//! Transport addresses (`tcp:HOST:PORT`, `unix:PATH`, `file:PATH`), and the listening socket
//! that says which address it bound.
//!
//! # The listening line
//!
//! As soon as `ramstream receive` or `ramstream proxy` has bound its `--listen` address, and
//! before it accepts a connection, it writes exactly one line to stderr and flushes it:
//!
//! ```text
//! ramstream: listening on tcp:127.0.0.1:43817
//! ramstream: listening on tcp:[::1]:43817
//! ramstream: listening on unix:/run/vm/migrate.sock
//! ```
//!
//! That is [`LISTENING_PREFIX`] followed by the address actually bound, in the form
//! `--listen`, `--forward` and QEMU's `migrate` take: with `tcp:HOST:0` the kernel picks a free
//! port and the line names it. A script (and ramstream's own tests and `ramstream demo`)
//! starts ramstream on port 0 and reads this line, instead of choosing a port beforehand that
//! another process may take in the meantime.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A transport address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `file:PATH`.
    File(PathBuf),
}

impl FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
            {
                return Err(format!(
                    "{s:?}: expected tcp:HOST:PORT (port 0 picks a free port)"
                ));
            }
            Ok(Addr::Tcp(a.to_string()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(Addr::Unix(p.into()))
        } else if let Some(p) = s.strip_prefix("file:") {
            Ok(Addr::File(p.into()))
        } else {
            Err(format!(
                "{s:?}: expected tcp:HOST:PORT, unix:PATH or file:PATH"
            ))
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp:{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A connected byte stream in both directions.
pub trait Duplex: Read + Write + Send {
    /// A second handle to the same connection (for the other direction).
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>>;
    /// Shuts both directions down, waking a reader blocked on another handle.
    fn shutdown_both(&self);
    /// Bounds how long a read may block (`None`: forever).
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()>;
}

impl Duplex for TcpStream {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        Ok(TcpStream::set_read_timeout(self, t)?)
    }
}

impl Duplex for UnixStream {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shutdown_both(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> Result<()> {
        Ok(UnixStream::set_read_timeout(self, t)?)
    }
}

/// What starts the line announcing a bound listener (see the module docs).
pub const LISTENING_PREFIX: &str = "ramstream: listening on ";

/// Writes the listening line for `bound` to stderr in one piece and flushes it.
fn announce(bound: &Addr) -> Result<()> {
    let line = format!("{LISTENING_PREFIX}{bound}\n");
    let mut err = std::io::stderr().lock();
    err.write_all(line.as_bytes())?;
    err.flush()?;
    Ok(())
}

/// A bound listening socket. Kept open after the first connection so that a source which
/// opens more connections (multifd) is noticed instead of refused.
pub struct Listener {
    socket: Socket,
    bound: Addr,
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr` (`tcp:HOST:0` picks a free port; a socket already at a unix path is
    /// replaced, as QEMU does) and announces the bound address on stderr (see the module docs).
    pub fn bind(addr: &Addr) -> Result<Listener> {
        let (socket, bound) = match addr {
            Addr::Tcp(a) => {
                let l =
                    TcpListener::bind(a).with_context(|| format!("cannot listen on tcp:{a}"))?;
                let bound = Addr::Tcp(l.local_addr()?.to_string());
                (Socket::Tcp(l), bound)
            }
            Addr::Unix(p) => {
                // Only a socket (say, left behind by an earlier run) is removed, never a file.
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                    let _ = std::fs::remove_file(p);
                }
                let l = UnixListener::bind(p)
                    .with_context(|| format!("cannot listen on unix:{}", p.display()))?;
                (Socket::Unix(l), addr.clone())
            }
            Addr::File(_) => bail!("cannot listen on a file: address"),
        };
        announce(&bound)?;
        Ok(Listener { socket, bound })
    }

    /// The address actually bound (the picked port where `tcp:HOST:0` was asked for).
    pub fn bound(&self) -> &Addr {
        &self.bound
    }

    /// Accepts one connection; returns it with a description of the peer.
    pub fn accept(&self) -> Result<(Box<dyn Duplex>, String)> {
        match &self.socket {
            Socket::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Box::new(s), peer.to_string()))
            }
            Socket::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Box::new(s), "a unix-socket peer".to_string()))
            }
        }
    }
}

/// Connects to `addr`.
pub fn connect(addr: &Addr) -> Result<Box<dyn Duplex>> {
    match addr {
        Addr::Tcp(a) => {
            let s = TcpStream::connect(a).with_context(|| format!("cannot connect to tcp:{a}"))?;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
        Addr::Unix(p) => {
            Ok(Box::new(UnixStream::connect(p).with_context(|| {
                format!("cannot connect to unix:{}", p.display())
            })?))
        }
        Addr::File(_) => bail!("cannot connect to a file: address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_address_needs_a_port() {
        assert!("tcp:127.0.0.1".parse::<Addr>().is_err());
        assert!("tcp:127.0.0.1:65536".parse::<Addr>().is_err());
        assert_eq!(
            "tcp:[::1]:0".parse::<Addr>(),
            Ok(Addr::Tcp("[::1]:0".into()))
        );
    }

    #[test]
    fn port_zero_binds_a_port_the_kernel_picked() {
        let l = Listener::bind(&Addr::Tcp("127.0.0.1:0".into())).unwrap();
        let Addr::Tcp(bound) = l.bound() else {
            panic!("{}", l.bound());
        };
        let bound: std::net::SocketAddr = bound.parse().unwrap();
        assert_ne!(bound.port(), 0);
        TcpStream::connect(bound).unwrap();
        l.accept().unwrap();
    }

    #[test]
    fn a_unix_listener_replaces_a_stale_socket_but_no_other_file() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("s.sock");
        drop(UnixListener::bind(&sock).unwrap());
        let l = Listener::bind(&Addr::Unix(sock.clone())).unwrap();
        assert_eq!(l.bound(), &Addr::Unix(sock));
        let file = tmp.path().join("data");
        std::fs::write(&file, b"keep").unwrap();
        assert!(Listener::bind(&Addr::Unix(file.clone())).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }
}
