//! Transport addresses: `tcp:HOST:PORT`, `unix:PATH`, `file:PATH`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
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

/// A bound listening socket. Kept open after the first connection so that a source which
/// opens more connections (multifd) is noticed instead of refused.
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A unix-socket listener.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr` and prints the bound address to stderr.
    pub fn bind(addr: &Addr) -> Result<Listener> {
        match addr {
            Addr::Tcp(a) => {
                let l =
                    TcpListener::bind(a).with_context(|| format!("cannot listen on tcp:{a}"))?;
                eprintln!("listening on tcp:{}", l.local_addr()?);
                Ok(Listener::Tcp(l))
            }
            Addr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                let l = UnixListener::bind(p)
                    .with_context(|| format!("cannot listen on unix:{}", p.display()))?;
                eprintln!("listening on unix:{}", p.display());
                Ok(Listener::Unix(l))
            }
            Addr::File(_) => bail!("cannot listen on a file: address"),
        }
    }

    /// Accepts one connection; returns it with a description of the peer.
    pub fn accept(&self) -> Result<(Box<dyn Duplex>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix(l) => {
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
