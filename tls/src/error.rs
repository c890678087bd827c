//! The one error type: every variant says which file, which peer and which check.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::endpoint::Endpoint;

/// The end of a TLS session a certificate belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The migration source, QEMU's `endpoint=client`.
    Client,
    /// The migration destination, QEMU's `endpoint=server`.
    Server,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Server => "server",
        })
    }
}

/// What arrived at a TLS listener instead of a TLS handshake record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plaintext {
    /// A plain QEMU migration stream: its file magic `QEVM` (SPEC.md §2.1). The source has no
    /// `tls-creds` set.
    QemuStream,
    /// A plain multifd channel: QEMU's multifd magic `0x11223344`. The source has no
    /// `tls-creds` set.
    MultifdChannel,
    /// Some other bytes (the first ones received, at most four).
    Other(Vec<u8>),
}

impl fmt::Display for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plaintext::QemuStream => {
                f.write_str("a plaintext QEMU migration stream (file magic \"QEVM\")")
            }
            Plaintext::MultifdChannel => {
                f.write_str("a plaintext multifd channel (magic 0x11223344)")
            }
            Plaintext::Other(bytes) => {
                f.write_str("bytes")?;
                for b in bytes {
                    write!(f, " {b:02x}")?;
                }
                f.write_str(", not a TLS handshake record")
            }
        }
    }
}

/// Everything that can go wrong loading credentials or setting up a TLS session.
///
/// Handshake errors name the peer address; certificate errors also name whose certificate
/// it was ([`Role`]) and its subject DN in QEMU's format (see [`crate::dn`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A credential file could not be read (a required file is missing, or unreadable).
    #[error("cannot read {}: {source}", file.display())]
    ReadFile {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A credential file does not hold what it should (no PEM certificate, a key that is
    /// encrypted or of an unknown kind, a certificate that does not parse).
    #[error("{}: {detail}", file.display())]
    BadFile {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// One of our own certificates, or a CA certificate, is past its validity period (QEMU's
    /// `qcrypto_tls_creds_check_cert_times` refuses to load it too).
    #[error("{}: the certificate \"{dn}\" expired at {not_after}", file.display())]
    CredentialExpired {
        /// The file.
        file: PathBuf,
        /// The certificate's subject.
        dn: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// One of our own certificates, or a CA certificate, is not valid yet.
    #[error("{}: the certificate \"{dn}\" is not valid before {not_before}", file.display())]
    CredentialNotYetValid {
        /// The file.
        file: PathBuf,
        /// The certificate's subject.
        dn: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
    },
    /// Credentials loaded for one endpoint were given to the other's constructor.
    #[error(
        "{}: credentials loaded for a {found} endpoint, a {expected} endpoint needs its own",
        dir.display()
    )]
    WrongEndpoint {
        /// The credential directory.
        dir: PathBuf,
        /// The endpoint the constructor needs.
        expected: Endpoint,
        /// The endpoint the credentials were loaded for.
        found: Endpoint,
    },
    /// rustls refused the credentials (a key that does not match its certificate, a CA
    /// certificate that is no trust anchor, an unusable CRL).
    #[error("{}: {detail}", dir.display())]
    Config {
        /// The credential directory.
        dir: PathBuf,
        /// What rustls said.
        detail: String,
    },
    /// An authorisation list was given with `verify_peer` off: without a verified client
    /// certificate there is no DN to check (QEMU skips its `tls-authz` check then; we refuse
    /// the combination instead).
    #[error(
        "an authorisation list needs verify_peer: without a verified client certificate there is no DN to check"
    )]
    AuthzWithoutVerifyPeer,
    /// The name to check the server's certificate against is neither a DNS name nor an IP
    /// address.
    #[error("\"{name}\" is not a DNS name or IP address to check a server certificate against")]
    InvalidServerName {
        /// The name given.
        name: String,
    },
    /// The peer did not complete the handshake in time.
    #[error("TLS handshake with {peer}: no handshake within {timeout:?}")]
    HandshakeTimeout {
        /// The peer.
        peer: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
    /// The peer sent something that is not TLS.
    #[error(
        "TLS handshake with {peer}: the peer sent {what}; is the source's migration parameter tls-creds set?"
    )]
    Plaintext {
        /// The peer.
        peer: SocketAddr,
        /// What it sent.
        what: Plaintext,
    },
    /// The peer closed the connection before the handshake completed.
    #[error("TLS handshake with {peer}: the peer closed the connection during the handshake")]
    ClosedDuringHandshake {
        /// The peer.
        peer: SocketAddr,
    },
    /// The client presented no certificate, and `verify_peer` requires one.
    #[error(
        "TLS handshake with {peer}: the client presented no certificate, and verify_peer requires one"
    )]
    NoClientCertificate {
        /// The peer.
        peer: SocketAddr,
    },
    /// The peer's certificate does not chain to our CA certificate (issued by another CA, or
    /// self-signed).
    #[error(
        "TLS handshake with {peer}: {role} certificate \"{dn}\" is not issued by our CA (ca-cert.pem)"
    )]
    UnknownIssuer {
        /// The peer.
        peer: SocketAddr,
        /// Whose certificate.
        role: Role,
        /// Its subject.
        dn: String,
    },
    /// A certificate of the peer's chain is past its validity period.
    #[error(
        "TLS handshake with {peer}: {role} certificate \"{dn}\" expired at {not_after} (now {now})"
    )]
    CertificateExpired {
        /// The peer.
        peer: SocketAddr,
        /// Whose certificate.
        role: Role,
        /// The end-entity certificate's subject.
        dn: String,
        /// The notAfter of the expired certificate, RFC 3339.
        not_after: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// A certificate of the peer's chain is not valid yet.
    #[error(
        "TLS handshake with {peer}: {role} certificate \"{dn}\" is not valid before {not_before} (now {now})"
    )]
    CertificateNotYetValid {
        /// The peer.
        peer: SocketAddr,
        /// Whose certificate.
        role: Role,
        /// The end-entity certificate's subject.
        dn: String,
        /// The notBefore of that certificate, RFC 3339.
        not_before: String,
        /// The time of the check, RFC 3339.
        now: String,
    },
    /// The peer's certificate is revoked by our `ca-crl.pem`.
    #[error("TLS handshake with {peer}: {role} certificate \"{dn}\" is revoked (ca-crl.pem)")]
    CertificateRevoked {
        /// The peer.
        peer: SocketAddr,
        /// Whose certificate.
        role: Role,
        /// Its subject.
        dn: String,
    },
    /// The server's certificate does not name the host we expected (QEMU's `tls-hostname`,
    /// or the host of the migration URI).
    #[error(
        "TLS handshake with {peer}: server certificate \"{dn}\" is not valid for \"{expected}\" (it names: {})",
        presented.join(", ")
    )]
    NameMismatch {
        /// The peer.
        peer: SocketAddr,
        /// The certificate's subject.
        dn: String,
        /// The name we checked.
        expected: String,
        /// The DNS names and IP addresses the certificate names.
        presented: Vec<String>,
    },
    /// The client's certificate is valid, but its DN is not in the authorisation list
    /// (QEMU's `tls-authz`).
    #[error(
        "TLS handshake with {peer}: client certificate DN \"{dn}\" is not in the authorisation list"
    )]
    NotAuthorised {
        /// The peer.
        peer: SocketAddr,
        /// The client certificate's subject, in QEMU's format.
        dn: String,
    },
    /// The peer's certificate failed another check (a bad signature, a key purpose that
    /// forbids this use, an unsupported algorithm...).
    #[error("TLS handshake with {peer}: {role} certificate \"{dn}\" refused: {reason}")]
    CertificateRejected {
        /// The peer.
        peer: SocketAddr,
        /// Whose certificate.
        role: Role,
        /// Its subject.
        dn: String,
        /// What rustls said.
        reason: String,
    },
    /// The peer refused the handshake with a TLS alert (it did not accept our certificate,
    /// or our name for it, or it shares no protocol version or cipher suite with us).
    #[error("TLS handshake with {peer}: the peer refused the handshake with alert {alert}")]
    PeerRefused {
        /// The peer.
        peer: SocketAddr,
        /// The alert, as rustls names it (`CertificateExpired`, `UnknownCA`, `AccessDenied`...).
        alert: String,
    },
    /// Any other TLS protocol failure.
    #[error("TLS handshake with {peer}: {source}")]
    Tls {
        /// The peer.
        peer: SocketAddr,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A socket error during the handshake.
    #[error("TLS handshake with {peer}: {source}")]
    Io {
        /// The peer.
        peer: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
}

impl Error {
    /// The peer address of a handshake error; `None` for credential errors.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self {
            Error::HandshakeTimeout { peer, .. }
            | Error::Plaintext { peer, .. }
            | Error::ClosedDuringHandshake { peer }
            | Error::NoClientCertificate { peer }
            | Error::UnknownIssuer { peer, .. }
            | Error::CertificateExpired { peer, .. }
            | Error::CertificateNotYetValid { peer, .. }
            | Error::CertificateRevoked { peer, .. }
            | Error::NameMismatch { peer, .. }
            | Error::NotAuthorised { peer, .. }
            | Error::CertificateRejected { peer, .. }
            | Error::PeerRefused { peer, .. }
            | Error::Tls { peer, .. }
            | Error::Io { peer, .. } => Some(*peer),
            _ => None,
        }
    }
}
