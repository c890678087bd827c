//! An established TLS session over a `TcpStream`, as `Read + Write`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

/// An established TLS session: a blocking `Read + Write` byte stream over its `TcpStream`.
///
/// **End of stream.** A clean end is the peer's `close_notify` alert followed by TCP EOF.
/// QEMU does not always send one: its main migration channel is closed without
/// `gnutls_bye` by every version we test (7.2, 10.0, 11.1), and only from 10.0 on does a
/// source end its multifd channels with `gnutls_bye` (`migration_tls_channel_end`, with the
/// `multifd-clean-tls-termination` compat property for older sources). So a TCP EOF without
/// `close_notify` after the handshake reads here as a plain end of stream (`Ok(0)`), and
/// [`TlsStream::close_notify_received`] says which it was.
///
/// Reading to EOF therefore does not by itself prove that the stream is complete: an
/// attacker on the path can cut a TCP connection where it likes. The migration stream's own
/// framing must, and does: a QEMU stream ends with its `QEMU_VM_EOF` section (SPEC.md §2.7),
/// and ramstream's with the RAM digest and EOF (SPEC.md §13); a decoder that reaches EOF of
/// input before those reports a truncated stream. A peer that closes before sending any
/// application data at all is reported as an `UnexpectedEof` error instead.
///
/// Writes go out as TLS records as they are written: [`Write::flush`] has nothing left to do
/// but flush the socket. [`TlsStream::shutdown`] sends `close_notify` and shuts the socket's
/// write side; dropping the stream just closes the socket.
#[derive(Debug)]
pub struct TlsStream {
    conn: rustls::Connection,
    tcp: TcpStream,
    peer: SocketAddr,
    peer_dn: Option<String>,
    received: u64,
    clean_eof: bool,
}

impl TlsStream {
    pub(crate) fn new(conn: rustls::Connection, tcp: TcpStream, peer: SocketAddr) -> TlsStream {
        let peer_dn = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| crate::dn::subject(cert));
        TlsStream {
            conn,
            tcp,
            peer,
            peer_dn,
            received: 0,
            clean_eof: false,
        }
    }

    /// The subject DN of the peer's certificate in QEMU's format (what a destination's
    /// authorisation list is checked against); `None` if it presented none (a server with
    /// `verify_peer` off does not ask for one).
    pub fn peer_dn(&self) -> Option<&str> {
        self.peer_dn.as_deref()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The negotiated protocol version and cipher suite, e.g.
    /// `TLSv1_3 TLS13_AES_256_GCM_SHA384`, for logs.
    pub fn negotiated(&self) -> String {
        let version = self
            .conn
            .protocol_version()
            .map_or_else(|| "?".to_string(), |v| format!("{v:?}"));
        let suite = self
            .conn
            .negotiated_cipher_suite()
            .map_or_else(|| "?".to_string(), |s| format!("{:?}", s.suite()));
        format!("{version} {suite}")
    }

    /// Whether the peer ended the session with `close_notify` (only meaningful once a read
    /// returned `Ok(0)`).
    pub fn close_notify_received(&self) -> bool {
        self.clean_eof
    }

    /// The underlying socket, e.g. to set an idle read timeout on it.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Sends `close_notify` and shuts down the write side of the socket; reading the peer's
    /// remaining data (and its `close_notify`) still works.
    pub fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls()?;
        self.tcp.shutdown(Shutdown::Write)
    }

    /// The session, its socket, the peer, its DN, the bytes read so far and whether
    /// `close_notify` was read (for [`crate::SharedTlsStream`]).
    pub(crate) fn into_parts(
        self,
    ) -> (
        rustls::Connection,
        TcpStream,
        SocketAddr,
        Option<String>,
        u64,
        bool,
    ) {
        (
            self.conn,
            self.tcp,
            self.peer,
            self.peer_dn,
            self.received,
            self.clean_eof,
        )
    }

    /// Writes every pending TLS record to the socket.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut tcp_eof = false;
        loop {
            match self.conn.reader().read(buf) {
                Ok(0) => {
                    self.clean_eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.received += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && tcp_eof => {
                    // Not expected of rustls after a TCP EOF; never spin on it.
                    return Err(io::Error::new(ErrorKind::UnexpectedEof, e));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    if self.received == 0 {
                        return Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            format!(
                                "{}: the peer closed the TLS session before sending any data",
                                self.peer
                            ),
                        ));
                    }
                    // No close_notify after data: QEMU's usual way to end (see the type's
                    // documentation); the stream's framing says whether it was complete.
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
            // Whatever the session has to say first (a key update's answer, an alert).
            self.flush_tls()?;
            if self.conn.read_tls(&mut self.tcp)? == 0 {
                // TCP EOF: rustls now reports close_notify (Ok(0)) or UnexpectedEof.
                tcp_eof = true;
                continue;
            }
            if let Err(e) = self.conn.process_new_packets() {
                let _ = self.flush_tls();
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.conn.writer().write(buf)?;
            self.flush_tls()?;
            if n > 0 {
                return Ok(n);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()?;
        self.tcp.flush()
    }
}
