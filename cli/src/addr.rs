//! The one address type of every `ramstream` endpoint, spelled as QEMU's `migrate` and
//! `-incoming` spell them: `tcp:HOST:PORT`, `unix:PATH`, `file:PATH`.
//!
//! Every command parses its addresses here ([`Addr`]'s `FromStr`, or [`Addr::parse_socket`]
//! for options that take a socket only), prints them with [`Addr`]'s `Display` in the same
//! form, and opens them here: [`Listener::bind`], [`Addr::connect`], [`Addr::open_to_send`],
//! [`Addr::open_to_receive`].
//!
//! | option                          | takes                                                      |
//! |---------------------------------|------------------------------------------------------------|
//! | `send TO`                       | `tcp:`, `unix:` (connects); `file:` (creates or truncates) |
//! | `receive --listen`              | `tcp:`, `unix:` (listens); `file:` (reads)                 |
//! | `receive --extract DIR --listen`| `tcp:`, `unix:` (listens); `file:` is refused, naming `ramstream extract FILE --out DIR`, which reads a stream file |
//! | `proxy --listen`, `--forward`   | `tcp:`, `unix:` (listens, connects); `file:` is refused when parsed (`--record FILE` keeps the stream) |
//! | `demo`, `bench-migrate`         | a receiver child on `tcp:127.0.0.1:0`, reached at the address of its listening line |
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
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

pub use crate::duplex::Duplex;

/// Where a migration stream goes or comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// `tcp:HOST:PORT`: a host name, an IPv4 address or a bracketed IPv6 address (`[::1]`),
    /// kept as written.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`, a Unix stream socket.
    Unix(PathBuf),
    /// `file:PATH`, a stream file.
    File(PathBuf),
}

/// Which address forms an option takes (named in parse errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forms {
    /// `tcp:HOST:PORT`, `unix:PATH` or `file:PATH`.
    Any,
    /// `tcp:HOST:PORT` or `unix:PATH`.
    Socket,
}

impl fmt::Display for Forms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forms::Any => "tcp:HOST:PORT, unix:PATH or file:PATH",
            Forms::Socket => "tcp:HOST:PORT or unix:PATH",
        })
    }
}

/// Why a string is not an address; every message quotes the input and says what form was
/// expected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrError {
    /// No `tcp:`, `unix:` or `file:` prefix.
    UnknownForm { input: String, accepted: Forms },
    /// `tcp:` without `:PORT`, or a PORT that is not a number from 0 to 65535.
    BadPort { input: String },
    /// `tcp::PORT`.
    EmptyHost { input: String },
    /// `tcp:::1:PORT`: an IPv6 host without brackets.
    UnbracketedIpv6 { input: String },
    /// `unix:` or `file:` without a path.
    EmptyPath { input: String },
    /// `file:PATH` where only a socket will do.
    NotASocket { input: String },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::UnknownForm { input, accepted } => {
                write!(f, "{input:?}: expected {accepted}")?;
                // `HOST:PORT` alone is the likeliest slip.
                if input.rsplit_once(':').is_some_and(|(h, p)| {
                    !h.is_empty()
                        && !h.contains('/')
                        && (!h.contains(':') || h.starts_with('['))
                        && p.parse::<u16>().is_ok()
                }) {
                    write!(f, " (did you mean tcp:{input}?)")?;
                }
                Ok(())
            }
            AddrError::BadPort { input } => write!(
                f,
                "{input:?}: expected tcp:HOST:PORT, with PORT a number from 0 to 65535"
            ),
            AddrError::EmptyHost { input } => write!(
                f,
                "{input:?}: expected tcp:HOST:PORT with a HOST (0.0.0.0 or [::] for every interface)"
            ),
            AddrError::UnbracketedIpv6 { input } => write!(
                f,
                "{input:?}: expected tcp:HOST:PORT with an IPv6 HOST in brackets, as in tcp:[::1]:4444"
            ),
            AddrError::EmptyPath { input } => {
                let scheme = input.split(':').next().unwrap_or_default();
                write!(f, "{input:?}: expected {scheme}:PATH with a PATH")
            }
            AddrError::NotASocket { input } => write!(
                f,
                "{input:?}: expected {} (a socket; a file: address is not accepted here)",
                Forms::Socket
            ),
        }
    }
}

impl std::error::Error for AddrError {}

impl FromStr for Addr {
    type Err = AddrError;

    /// Parses `tcp:HOST:PORT`, `unix:PATH` or `file:PATH`.
    fn from_str(s: &str) -> Result<Addr, AddrError> {
        parse(s, Forms::Any)
    }
}

impl Addr {
    /// Parses `tcp:HOST:PORT` or `unix:PATH`, refusing `file:PATH` (the value parser of the
    /// options that listen on or connect to a socket).
    pub fn parse_socket(s: &str) -> Result<Addr, AddrError> {
        parse(s, Forms::Socket)
    }

    /// Connects to a socket address.
    pub fn connect(&self) -> Result<Box<dyn Duplex>> {
        self.connect_tls(None)
    }

    /// Connects to a socket address; with `tls`, as a TLS client (over `tcp:` only).
    pub fn connect_tls(&self, tls: Option<&crate::tls::ClientTls>) -> Result<Box<dyn Duplex>> {
        if tls.is_some() {
            self.require_tcp_for_tls()?;
        }
        match self {
            Addr::Tcp { .. } => {
                let s = TcpStream::connect(self.tcp_target())
                    .with_context(|| format!("cannot connect to {self}"))?;
                s.set_nodelay(true)?;
                match (tls, self) {
                    (Some(t), Addr::Tcp { host, .. }) => t.connect(s, host, self),
                    _ => Ok(Box::new(s)),
                }
            }
            Addr::Unix(p) => Ok(Box::new(
                UnixStream::connect(p).with_context(|| format!("cannot connect to {self}"))?,
            )),
            Addr::File(_) => bail!("cannot connect to {self}: a file is not a socket"),
        }
    }

    /// The sending end of a stream: connects to a socket, or creates (truncates) a file.
    pub fn open_to_send(&self) -> Result<Box<dyn Write + Send>> {
        match self {
            Addr::File(p) => Ok(Box::new(
                std::fs::File::create(p).with_context(|| format!("cannot create {self}"))?,
            )),
            _ => Ok(Box::new(self.connect()?)),
        }
    }

    /// The receiving end of one stream: opens a file (`file:-`: standard input); or binds a socket (announcing it, see
    /// the module docs), accepts one connection and then removes a unix socket's path.
    pub fn open_to_receive(&self) -> Result<Box<dyn Read + Send>> {
        if let Addr::File(p) = self {
            if crate::input::is_stdin(p) {
                return Ok(Box::new(std::io::stdin()));
            }
            return Ok(Box::new(
                std::fs::File::open(p).with_context(|| format!("cannot open {self}"))?,
            ));
        }
        let listener = Listener::bind(self)?;
        let (conn, _peer) = listener
            .accept()
            .with_context(|| format!("cannot accept on {}", listener.bound()))?;
        if let Addr::Unix(p) = self {
            let _ = std::fs::remove_file(p);
        }
        Ok(Box::new(conn))
    }

    /// Refuses TLS (`--tls-creds`) on anything but a `tcp:` address.
    pub fn require_tcp_for_tls(&self) -> Result<()> {
        match self {
            Addr::Tcp { .. } => Ok(()),
            _ => bail!("{self}: TLS (--tls-creds) runs over tcp:HOST:PORT only"),
        }
    }

    /// `HOST:PORT` as `std::net` resolves it (brackets around an IPv6 host included).
    fn tcp_target(&self) -> String {
        match self {
            Addr::Tcp { host, port } => format!("{host}:{port}"),
            _ => unreachable!("tcp_target of a non-tcp address"),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Addr {
        let host = match a.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Addr::Tcp {
            host,
            port: a.port(),
        }
    }
}

fn parse(s: &str, accepted: Forms) -> Result<Addr, AddrError> {
    let input = || s.to_string();
    if let Some(rest) = s.strip_prefix("tcp:") {
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| AddrError::BadPort { input: input() })?;
        let port = port
            .parse::<u16>()
            .map_err(|_| AddrError::BadPort { input: input() })?;
        if host.is_empty() {
            return Err(AddrError::EmptyHost { input: input() });
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(AddrError::UnbracketedIpv6 { input: input() });
        }
        Ok(Addr::Tcp {
            host: host.to_string(),
            port,
        })
    } else if let Some(p) = s.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(AddrError::EmptyPath { input: input() });
        }
        Ok(Addr::Unix(p.into()))
    } else if let Some(p) = s.strip_prefix("file:") {
        if accepted == Forms::Socket {
            return Err(AddrError::NotASocket { input: input() });
        }
        if p.is_empty() {
            return Err(AddrError::EmptyPath { input: input() });
        }
        Ok(Addr::File(p.into()))
    } else {
        Err(AddrError::UnknownForm {
            input: input(),
            accepted,
        })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::File(p) => write!(f, "file:{}", p.display()),
        }
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
///
/// With [`Listener::with_tls`] every accepted connection is a TLS session, and a refused
/// handshake is what `accept` returns for it; with [`Listener::with_idle_timeout`] a peer
/// that sends nothing for that long is dropped with an error naming it.
pub struct Listener {
    socket: Socket,
    bound: Addr,
    /// With TLS: the connections whose handshake a background thread ran, in the order
    /// they connected.
    tls: Option<Receiver<Incoming>>,
    idle: Option<Duration>,
}

/// A connection as the TLS thread hands it over: the session and its peer, or the refusal.
type Incoming = Result<(Box<dyn Duplex>, String)>;

/// A connection as accepted, before TLS.
enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Accepted {
    fn into_duplex(self) -> Box<dyn Duplex> {
        match self {
            Accepted::Tcp(s) => Box::new(s),
            Accepted::Unix(s) => Box::new(s),
        }
    }
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
            Addr::Tcp { .. } => {
                let l = TcpListener::bind(addr.tcp_target())
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let bound = Addr::from(l.local_addr()?);
                (Socket::Tcp(l), bound)
            }
            Addr::Unix(p) => {
                // Only a socket (say, left behind by an earlier run) is removed, never a file.
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                    let _ = std::fs::remove_file(p);
                }
                let l =
                    UnixListener::bind(p).with_context(|| format!("cannot listen on {addr}"))?;
                (Socket::Unix(l), addr.clone())
            }
            Addr::File(_) => bail!("cannot listen on {addr}: a file is not a socket"),
        };
        announce(&bound)?;
        Ok(Listener {
            socket,
            bound,
            tls: None,
            idle: None,
        })
    }

    /// Makes every connection accepted from now on a TLS session with `acceptor` (none:
    /// plain). TLS runs over `tcp:` only.
    ///
    /// The handshakes run on a thread of their own, one connection after the other as they
    /// connect, whether or not the command accepts yet: a QEMU source completes the
    /// handshake of every multifd channel before it writes its main stream's first byte
    /// (`multifd_send_setup` waits for `channels_created`), so the destination must answer
    /// them while it waits for that byte. A stalled handshake holds the next for at most
    /// the handshake timeout.
    pub fn with_tls(mut self, acceptor: Option<ramstream_tls::Acceptor>) -> Result<Listener> {
        let Some(acceptor) = acceptor else {
            return Ok(self);
        };
        let Socket::Tcp(l) = &self.socket else {
            return self.bound.require_tcp_for_tls().map(|()| self);
        };
        let l = l.try_clone()?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let r = match l.accept() {
                Ok((s, peer)) => {
                    let peer = peer.to_string();
                    s.set_nodelay(true)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| crate::tls::accept(&acceptor, s, &peer))
                        .map(|conn| (conn, peer))
                }
                Err(e) => Err(anyhow::Error::from(e).context("cannot accept")),
            };
            if tx.send(r).is_err() {
                return;
            }
        });
        self.tls = Some(rx);
        Ok(self)
    }

    /// Drops a peer that sends nothing for `idle` (`--idle-timeout`; none: waits forever).
    pub fn with_idle_timeout(mut self, idle: Option<Duration>) -> Listener {
        self.idle = idle;
        self
    }

    /// The address actually bound (the picked port where `tcp:HOST:0` was asked for).
    pub fn bound(&self) -> &Addr {
        &self.bound
    }

    /// Accepts a connection that is already waiting, without blocking: `None` when there
    /// is none (a multifd source connects all its channels before its first sync point, so
    /// they are waiting by then).
    pub fn try_accept(&self) -> Result<Option<(Box<dyn Duplex>, String)>> {
        if let Some(rx) = &self.tls {
            return match rx.try_recv() {
                Ok(r) => r.and_then(|(conn, peer)| self.finish(conn, peer)).map(Some),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Disconnected) => {
                    bail!("the TLS acceptor of {} ended", self.bound)
                }
            };
        }
        self.set_nonblocking(true)?;
        let r = self.accept_raw();
        self.set_nonblocking(false)?;
        match r {
            Ok((conn, peer)) => {
                match &conn {
                    Accepted::Tcp(s) => s.set_nonblocking(false)?,
                    Accepted::Unix(s) => s.set_nonblocking(false)?,
                }
                Ok(Some(self.finish(conn.into_duplex(), peer)?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn set_nonblocking(&self, on: bool) -> Result<()> {
        match &self.socket {
            Socket::Tcp(l) => l.set_nonblocking(on)?,
            Socket::Unix(l) => l.set_nonblocking(on)?,
        }
        Ok(())
    }

    /// Accepts one connection (with TLS, completes its handshake); returns it with a
    /// description of the peer.
    pub fn accept(&self) -> Result<(Box<dyn Duplex>, String)> {
        if let Some(rx) = &self.tls {
            let (conn, peer) = rx
                .recv()
                .map_err(|_| anyhow!("the TLS acceptor of {} ended", self.bound))??;
            return self.finish(conn, peer);
        }
        let (conn, peer) = self.accept_raw()?;
        self.finish(conn.into_duplex(), peer)
    }

    fn accept_raw(&self) -> std::io::Result<(Accepted, String)> {
        match &self.socket {
            Socket::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Accepted::Tcp(s), peer.to_string()))
            }
            Socket::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Accepted::Unix(s), "a unix-socket peer".to_string()))
            }
        }
    }

    /// The idle timeout on an accepted connection.
    fn finish(&self, conn: Box<dyn Duplex>, peer: String) -> Result<(Box<dyn Duplex>, String)> {
        let conn = match self.idle {
            Some(t) => crate::idle::Idle::wrap(conn, &peer, t)?,
            None => conn,
        };
        Ok((conn, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Addr {
        Addr::Tcp {
            host: host.into(),
            port,
        }
    }

    fn err(s: &str) -> String {
        s.parse::<Addr>().unwrap_err().to_string()
    }

    #[test]
    fn every_form_parses_and_prints_as_written() {
        for (s, a) in [
            ("tcp:127.0.0.1:4444", tcp("127.0.0.1", 4444)),
            ("tcp:localhost:0", tcp("localhost", 0)),
            ("tcp:[::1]:65535", tcp("[::1]", 65535)),
            ("tcp:[::]:0", tcp("[::]", 0)),
            (
                "unix:/run/vm/migrate.sock",
                Addr::Unix("/run/vm/migrate.sock".into()),
            ),
            ("unix:relative.sock", Addr::Unix("relative.sock".into())),
            ("file:/var/tmp/vm.mig", Addr::File("/var/tmp/vm.mig".into())),
            // A path may hold colons: only the prefix is the form.
            ("file:a:b", Addr::File("a:b".into())),
        ] {
            assert_eq!(s.parse::<Addr>(), Ok(a.clone()), "{s}");
            assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn a_socket_option_takes_tcp_and_unix_and_refuses_file() {
        assert_eq!(Addr::parse_socket("tcp:h:1"), Ok(tcp("h", 1)));
        assert_eq!(Addr::parse_socket("unix:s"), Ok(Addr::Unix("s".into())));
        assert_eq!(
            Addr::parse_socket("file:/x").unwrap_err().to_string(),
            r#""file:/x": expected tcp:HOST:PORT or unix:PATH (a socket; a file: address is not accepted here)"#
        );
        assert_eq!(
            Addr::parse_socket("/x").unwrap_err().to_string(),
            r#""/x": expected tcp:HOST:PORT or unix:PATH"#
        );
    }

    #[test]
    fn bad_forms_say_what_was_expected() {
        let port = "expected tcp:HOST:PORT, with PORT a number from 0 to 65535";
        for (s, want) in [
            ("", r#""": expected tcp:HOST:PORT, unix:PATH or file:PATH"#.to_string()),
            (
                "/tmp/s.sock",
                r#""/tmp/s.sock": expected tcp:HOST:PORT, unix:PATH or file:PATH"#.into(),
            ),
            (
                "exec:cat",
                r#""exec:cat": expected tcp:HOST:PORT, unix:PATH or file:PATH"#.into(),
            ),
            (
                "127.0.0.1:4444",
                r#""127.0.0.1:4444": expected tcp:HOST:PORT, unix:PATH or file:PATH (did you mean tcp:127.0.0.1:4444?)"#.into(),
            ),
            ("TCP:h:1", r#""TCP:h:1": expected tcp:HOST:PORT, unix:PATH or file:PATH"#.into()),
            ("tcp:127.0.0.1", format!(r#""tcp:127.0.0.1": {port}"#)),
            ("tcp:h:", format!(r#""tcp:h:": {port}"#)),
            ("tcp:h:65536", format!(r#""tcp:h:65536": {port}"#)),
            ("tcp:h:http", format!(r#""tcp:h:http": {port}"#)),
            ("tcp:h:-1", format!(r#""tcp:h:-1": {port}"#)),
            (
                "tcp::4444",
                r#""tcp::4444": expected tcp:HOST:PORT with a HOST (0.0.0.0 or [::] for every interface)"#.into(),
            ),
            (
                "tcp:::1:4444",
                r#""tcp:::1:4444": expected tcp:HOST:PORT with an IPv6 HOST in brackets, as in tcp:[::1]:4444"#.into(),
            ),
            ("unix:", r#""unix:": expected unix:PATH with a PATH"#.into()),
            ("file:", r#""file:": expected file:PATH with a PATH"#.into()),
        ] {
            assert_eq!(err(s), want, "{s:?}");
        }
    }

    #[test]
    fn a_bound_socket_address_prints_in_the_tcp_form() {
        let v4: SocketAddr = "127.0.0.1:43817".parse().unwrap();
        assert_eq!(Addr::from(v4).to_string(), "tcp:127.0.0.1:43817");
        let v6: SocketAddr = "[::1]:43817".parse().unwrap();
        assert_eq!(Addr::from(v6).to_string(), "tcp:[::1]:43817");
        assert_eq!("tcp:[::1]:43817".parse::<Addr>(), Ok(Addr::from(v6)));
    }

    #[test]
    fn port_zero_binds_a_port_the_kernel_picked() {
        let l = Listener::bind(&tcp("127.0.0.1", 0)).unwrap();
        let Addr::Tcp { host, port } = l.bound() else {
            panic!("{}", l.bound());
        };
        assert_eq!(host, "127.0.0.1");
        assert_ne!(*port, 0);
        let conn = l.bound().connect().unwrap();
        l.accept().unwrap();
        drop(conn);
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

    #[test]
    fn a_file_is_written_and_read_but_never_listened_on_or_connected_to() {
        let tmp = tempfile::tempdir().unwrap();
        let f = Addr::File(tmp.path().join("vm.mig"));
        f.open_to_send().unwrap().write_all(b"stream").unwrap();
        let mut back = Vec::new();
        f.open_to_receive().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, b"stream");
        let no = format!("{f}: a file is not a socket");
        assert_eq!(
            Listener::bind(&f).err().unwrap().to_string(),
            format!("cannot listen on {no}")
        );
        assert_eq!(
            f.connect().err().unwrap().to_string(),
            format!("cannot connect to {no}")
        );
    }
}
