//! Driving a handshake over a blocking `TcpStream` against a deadline, and recognising
//! plaintext before it starts.

use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::time::Instant;

use crate::error::Plaintext;

/// The first byte of every TLS record that starts a handshake (content type `handshake`).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The first four bytes of a plain QEMU migration stream, `QEMU_VM_FILE_MAGIC` (SPEC.md §2.1).
/// Written here rather than taken from `ramstream-spec`: this crate depends on no other
/// ramstream crate, and only recognises the value to name it in an error.
const QEMU_FILE_MAGIC: [u8; 4] = *b"QEVM";

/// The first four bytes of a plain multifd channel, QEMU's `MULTIFD_MAGIC` (big endian).
const MULTIFD_MAGIC: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// Why a handshake did not complete.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The deadline passed.
    Timeout,
    /// The peer closed the connection.
    Closed,
    /// Plaintext instead of TLS.
    Plaintext(Plaintext),
    /// A socket error.
    Io(io::Error),
    /// rustls refused (a certificate, an alert from the peer, a protocol error).
    Tls(rustls::Error),
}

fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure::Timeout,
        ErrorKind::UnexpectedEof => Failure::Closed,
        _ => Failure::Io(e),
    }
}

/// Sets the socket's read and write timeouts to what is left until `deadline`.
fn arm(tcp: &TcpStream, deadline: Instant) -> Result<(), Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Timeout);
    }
    tcp.set_read_timeout(Some(left)).map_err(Failure::Io)?;
    tcp.set_write_timeout(Some(left)).map_err(Failure::Io)?;
    Ok(())
}

/// Looks at the first bytes the client sent, without consuming them: a TLS connection starts
/// with a handshake record; anything else is plaintext, named if it is a QEMU stream.
pub(crate) fn sniff(tcp: &TcpStream, deadline: Instant) -> Result<(), Failure> {
    let mut head = [0u8; 4];
    loop {
        arm(tcp, deadline)?;
        let n = match tcp.peek(&mut head) {
            Ok(0) => return Err(Failure::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failure(e)),
        };
        if head[0] == TLS_HANDSHAKE_RECORD {
            return Ok(());
        }
        let what = if head == QEMU_FILE_MAGIC {
            Plaintext::QemuStream
        } else if head == MULTIFD_MAGIC {
            Plaintext::MultifdChannel
        } else {
            Plaintext::Other(head[..n].to_vec())
        };
        return Err(Failure::Plaintext(what));
    }
}

/// Runs the handshake to its end (and sends what it leaves to send), or fails at
/// `deadline`. On a rustls error the alert rustls queued is sent before returning.
pub(crate) fn complete(
    conn: &mut rustls::Connection,
    tcp: &mut TcpStream,
    deadline: Instant,
) -> Result<(), Failure> {
    while conn.is_handshaking() {
        if conn.wants_write() {
            arm(tcp, deadline)?;
            conn.write_tls(tcp).map_err(io_failure)?;
            continue;
        }
        arm(tcp, deadline)?;
        match conn.read_tls(tcp) {
            Ok(0) => return Err(Failure::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_failure(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            while conn.wants_write() && arm(tcp, deadline).is_ok() {
                if conn.write_tls(tcp).is_err() {
                    break;
                }
            }
            return Err(Failure::Tls(e));
        }
    }
    while conn.wants_write() {
        arm(tcp, deadline)?;
        conn.write_tls(tcp).map_err(io_failure)?;
    }
    tcp.set_read_timeout(None).map_err(Failure::Io)?;
    tcp.set_write_timeout(None).map_err(Failure::Io)?;
    Ok(())
}
