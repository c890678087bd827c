//! Transport addresses: `tcp:HOST:PORT`, `unix:PATH`, `file:PATH`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;

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
}

impl Duplex for TcpStream {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl Duplex for UnixStream {
    fn try_clone_box(&self) -> Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
}

/// Listens on `addr`, prints the bound address to stderr, and accepts one connection.
pub fn accept_one(addr: &Addr) -> Result<Box<dyn Duplex>> {
    match addr {
        Addr::Tcp(a) => {
            let l = TcpListener::bind(a).with_context(|| format!("cannot listen on tcp:{a}"))?;
            eprintln!("listening on tcp:{}", l.local_addr()?);
            let (s, peer) = l.accept()?;
            s.set_nodelay(true)?;
            eprintln!("connection from {peer}");
            Ok(Box::new(s))
        }
        Addr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p)
                .with_context(|| format!("cannot listen on unix:{}", p.display()))?;
            eprintln!("listening on unix:{}", p.display());
            let (s, _) = l.accept()?;
            Ok(Box::new(s))
        }
        Addr::File(_) => bail!("cannot listen on a file: address"),
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
