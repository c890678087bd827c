//! Migration URIs as QEMU spells them: `tcp:HOST:PORT`, `unix:PATH`, `file:PATH`.

use std::io::{self, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a migration stream goes (sender) or comes from (receiver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `unix:PATH`, a Unix stream socket.
    Unix(PathBuf),
    /// `file:PATH`, a stream file.
    File(PathBuf),
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!("{s:?}: expected tcp:HOST:PORT"));
            }
            Ok(Endpoint::Tcp(a.to_string()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            Ok(Endpoint::Unix(p.into()))
        } else if let Some(p) = s.strip_prefix("file:") {
            Ok(Endpoint::File(p.into()))
        } else {
            Err(format!(
                "{s:?}: expected tcp:HOST:PORT, unix:PATH or file:PATH"
            ))
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

impl Endpoint {
    /// Opens the endpoint for sending.
    pub fn connect(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
            Endpoint::Unix(p) => Box::new(UnixStream::connect(p)?),
            Endpoint::File(p) => Box::new(std::fs::File::create(p)?),
        })
    }
}
