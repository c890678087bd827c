//! Telling a source's connections apart (SPEC.md §14.6): the main stream starts with the
//! file magic `QEVM`, a multifd channel with its initial packet's magic `11 22 33 44`.

use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ramstream_spec::multifd::MAGIC as CHANNEL_MAGIC;
use ramstream_spec::stream::QEVM_MAGIC;

use crate::addr::{Duplex, Listener};

/// How long a connection may take to send its first four bytes (QEMU writes them as soon
/// as it connects).
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A migration stream (`QEVM`).
    Main,
    /// A multifd channel (`11 22 33 44`).
    Channel,
}

/// An accepted connection whose first four bytes were read to classify it.
pub struct Conn {
    pub stream: Box<dyn Duplex>,
    pub peer: String,
    first: [u8; 4],
    pub kind: Kind,
}

impl Conn {
    /// Reads the first four bytes of `stream` (at most `timeout`) and classifies it; any
    /// other magic is refused, naming the peer and the bytes.
    pub fn classify(
        mut stream: Box<dyn Duplex>,
        peer: String,
        timeout: Option<Duration>,
    ) -> Result<Conn> {
        stream.set_read_timeout(timeout)?;
        let mut first = [0u8; 4];
        stream.read_exact(&mut first).with_context(|| {
            format!("a connection from {peer} sent no first bytes to tell what it is")
        })?;
        stream.set_read_timeout(None)?;
        let kind = match u32::from_be_bytes(first) {
            QEVM_MAGIC => Kind::Main,
            CHANNEL_MAGIC => Kind::Channel,
            _ => bail!(
                "a connection from {peer} is neither a migration stream (QEVM) nor a multifd channel (magic {CHANNEL_MAGIC:#010x}): first bytes {}",
                hex::encode(first)
            ),
        };
        Ok(Conn {
            stream,
            peer,
            first,
            kind,
        })
    }

    /// A second handle on the connection, to shut it down from another thread.
    pub fn handle(&self) -> Result<Box<dyn Duplex>> {
        self.stream.try_clone_box()
    }

    /// Everything the peer sends, the four classified bytes included.
    pub fn into_reader(self) -> impl Read + Send {
        Cursor::new(self.first).chain(self.stream)
    }
}

/// Accepts connections until the main stream's: channels that connect before it (a
/// source that does not connect the main stream first) are kept and returned with it.
pub fn accept_main(listener: &Listener) -> Result<(Conn, Vec<Conn>)> {
    let mut early = Vec::new();
    loop {
        let (stream, peer) = listener.accept()?;
        eprintln!("connection from {peer}");
        // The main stream's first bytes may take as long as the source likes.
        let conn = Conn::classify(stream, peer, None)?;
        match conn.kind {
            Kind::Main => return Ok((conn, early)),
            Kind::Channel => early.push(conn),
        }
    }
}

/// The channels of a multifd migration, gathered at the main stream's first sync point
/// (SPEC.md §14.6): QEMU connects every channel, and writes its initial packet and its
/// first SYNC packet, before it writes that point, so they are waiting by then. With
/// `expected` (`--multifd-channels N`), waits up to `timeout` for exactly N; otherwise
/// takes those already waiting. `have` are those that connected before the main stream.
pub fn gather_channels(
    listener: &Listener,
    mut have: Vec<Conn>,
    expected: Option<u8>,
    timeout: Duration,
) -> Result<Vec<Conn>> {
    let deadline = Instant::now() + timeout;
    loop {
        // Every connection already waiting, then (with `expected`) the rest as they come.
        let next = match listener.try_accept() {
            Ok(Some(c)) => Some(c),
            // A peer refused in the TLS handshake is no channel of this migration (it sent
            // nothing the migration reads): say so and go on gathering.
            Err(e) if e.downcast_ref::<ramstream_tls::Error>().is_some() => {
                eprintln!("ramstream: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
            Ok(None) => match expected {
                Some(n) if have.len() < usize::from(n) => {
                    if Instant::now() >= deadline {
                        bail!(
                            "{} of {n} multifd channel(s) connected by the main stream's first sync point (waited {} s)",
                            have.len(),
                            timeout.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                _ => None,
            },
        };
        let Some((stream, peer)) = next else {
            if let Some(n) = expected {
                if have.len() > usize::from(n) {
                    bail!(
                        "{} multifd channels connected; the migration has {n} (--multifd-channels)",
                        have.len()
                    );
                }
            }
            return Ok(have);
        };
        let conn = Conn::classify(stream, peer, Some(FIRST_BYTES_TIMEOUT))?;
        if conn.kind == Kind::Main {
            bail!(
                "a second migration stream (QEVM) from {} while one is being received",
                conn.peer
            );
        }
        eprintln!("multifd channel connection from {}", conn.peer);
        have.push(conn);
        if have.len() > usize::from(ramstream_spec::multifd::MAX_CHANNELS) {
            bail!(
                "more than {} multifd channels",
                ramstream_spec::multifd::MAX_CHANNELS
            );
        }
    }
}
