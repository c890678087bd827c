//! A TLS session that several threads use at once: one reads while another writes.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use crate::stream::TlsStream;

/// How many bytes of ciphertext one socket read takes in: one full TLS record and its
/// header. With rustls' own buffers (a record being decrypted, 16 KiB of plaintext not yet
/// read) it bounds what a session holds on the receiving side.
const READ_CHUNK: usize = 16 * 1024 + 5 + 256;

/// A TLS session shared between clones: a migration reads the stream on one thread while
/// another writes the return path (or shuts the connection down to stop it).
///
/// Made by [`TlsStream::into_shared`]. Every clone is the same session: a reader blocks on
/// the socket without holding the session, so a writer on another clone goes ahead; records
/// are encrypted under a short lock and written to the socket in order. A read timeout set
/// with [`SharedTlsStream::set_read_timeout`] makes a read that waits longer fail with
/// `WouldBlock` or `TimedOut`, and the session stays usable.
///
/// The end of stream reads as for [`TlsStream`]: `close_notify`, or a TCP EOF after some
/// data (QEMU's way), is `Ok(0)`; a TCP EOF before any data is an `UnexpectedEof` error.
#[derive(Clone, Debug)]
pub struct SharedTlsStream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<rustls::Connection>,
    read: Mutex<ReadSide>,
    write: Mutex<WriteSide>,
    /// For socket options and shutdown, never read or written.
    tcp: TcpStream,
    peer: SocketAddr,
    peer_dn: Option<String>,
}

#[derive(Debug)]
struct ReadSide {
    tcp: TcpStream,
    /// Ciphertext read from the socket and not yet given to the session.
    pending: Vec<u8>,
    received: u64,
    clean_eof: bool,
    tcp_eof: bool,
}

#[derive(Debug)]
struct WriteSide {
    tcp: TcpStream,
    /// Records encrypted by the session, on their way to the socket (reused).
    out: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TlsStream {
    /// This session as a [`SharedTlsStream`], whose clones may read and write from
    /// different threads.
    pub fn into_shared(self) -> io::Result<SharedTlsStream> {
        let (conn, tcp, peer, peer_dn, received, clean_eof) = self.into_parts();
        Ok(SharedTlsStream {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                read: Mutex::new(ReadSide {
                    tcp: tcp.try_clone()?,
                    pending: Vec::new(),
                    received,
                    clean_eof,
                    tcp_eof: false,
                }),
                write: Mutex::new(WriteSide {
                    tcp: tcp.try_clone()?,
                    out: Vec::new(),
                }),
                tcp,
                peer,
                peer_dn,
            }),
        })
    }
}

impl SharedTlsStream {
    /// The subject DN of the peer's certificate in QEMU's format (see
    /// [`TlsStream::peer_dn`]).
    pub fn peer_dn(&self) -> Option<&str> {
        self.inner.peer_dn.as_deref()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// Bounds how long a read waits for the peer (`None`: forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner.tcp.set_read_timeout(t)
    }

    /// Shuts the socket down without a TLS alert (to stop a migration: a read blocked on
    /// another clone returns).
    pub fn shutdown_socket(&self, how: Shutdown) -> io::Result<()> {
        self.inner.tcp.shutdown(how)
    }

    /// Sends `close_notify` and shuts the socket's write side; reading still works.
    pub fn shutdown(&self) -> io::Result<()> {
        let mut w = lock(&self.inner.write);
        lock(&self.inner.conn).send_close_notify();
        self.flush_records(&mut w)?;
        w.tcp.shutdown(Shutdown::Write)
    }

    /// Whether the peer ended the session with `close_notify` (once a read returned `Ok(0)`).
    pub fn close_notify_received(&self) -> bool {
        lock(&self.inner.read).clean_eof
    }

    /// Writes every record the session has ready to the socket, in order.
    fn flush_records(&self, w: &mut WriteSide) -> io::Result<()> {
        let WriteSide { tcp, out } = w;
        out.clear();
        {
            let mut conn = lock(&self.inner.conn);
            while conn.wants_write() {
                conn.write_tls(out)?;
            }
        }
        tcp.write_all(out)
    }

    /// Writes what the session wants to say after a read (a key update's answer, an alert)
    /// unless a writer holds the socket: it writes them with its next records.
    fn flush_after_read(&self) -> io::Result<()> {
        if !lock(&self.inner.conn).wants_write() {
            return Ok(());
        }
        match self.inner.write.try_lock() {
            Ok(mut w) => self.flush_records(&mut w),
            Err(TryLockError::Poisoned(p)) => self.flush_records(&mut p.into_inner()),
            Err(TryLockError::WouldBlock) => Ok(()),
        }
    }

    fn encrypt<F>(&self, put: F) -> io::Result<usize>
    where
        F: FnOnce(&mut rustls::Connection) -> io::Result<usize>,
    {
        let mut w = lock(&self.inner.write);
        let n = put(&mut lock(&self.inner.conn))?;
        self.flush_records(&mut w)?;
        Ok(n)
    }
}

impl Read for SharedTlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut r = lock(&self.inner.read);
        loop {
            {
                let mut conn = lock(&self.inner.conn);
                match conn.reader().read(buf) {
                    Ok(0) => {
                        r.clean_eof = true;
                        return Ok(0);
                    }
                    Ok(n) => {
                        r.received += n as u64;
                        return Ok(n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if r.tcp_eof && r.pending.is_empty() {
                            return Err(io::Error::new(ErrorKind::UnexpectedEof, e));
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                        if r.received == 0 {
                            return Err(io::Error::new(
                                ErrorKind::UnexpectedEof,
                                format!(
                                    "{}: the peer closed the TLS session before sending any data",
                                    self.inner.peer
                                ),
                            ));
                        }
                        // No close_notify after data: QEMU's usual way to end.
                        return Ok(0);
                    }
                    Err(e) => return Err(e),
                }
                if !r.pending.is_empty() {
                    let mut rest = &r.pending[..];
                    let fed = conn.read_tls(&mut rest)?;
                    r.pending.drain(..fed);
                    if let Err(e) = conn.process_new_packets() {
                        drop(conn);
                        let _ = self.flush_after_read();
                        return Err(io::Error::new(ErrorKind::InvalidData, e));
                    }
                    drop(conn);
                    self.flush_after_read()?;
                    continue;
                }
            }
            // Wait for the peer without holding the session.
            let ReadSide { tcp, pending, .. } = &mut *r;
            pending.resize(READ_CHUNK, 0);
            let n = match tcp.read(pending) {
                Ok(n) => n,
                Err(e) => {
                    pending.clear();
                    return Err(e);
                }
            };
            pending.truncate(n);
            if n == 0 {
                // Tell the session: it reports close_notify (Ok(0)) or UnexpectedEof.
                r.tcp_eof = true;
                let mut conn = lock(&self.inner.conn);
                conn.read_tls(&mut io::empty())?;
                if let Err(e) = conn.process_new_packets() {
                    return Err(io::Error::new(ErrorKind::InvalidData, e));
                }
            }
        }
    }
}

impl Write for SharedTlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.encrypt(|c| c.writer().write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.encrypt(|c| c.writer().write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut w = lock(&self.inner.write);
        self.flush_records(&mut w)?;
        w.tcp.flush()
    }
}
