//! The server side: a migration destination accepting a TLS source.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::RootCertStore;

use crate::authz::Authz;
use crate::credentials::{Credentials, Endpoint, CA_CERT};
use crate::error::{Error, Role};
use crate::handshake::{self, Failure};
use crate::provider;
use crate::stream::TlsStream;
use crate::verify::{self, ClientCheck, Presented};

/// How long a peer may take to complete the handshake unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS migration sources on connected sockets: QEMU's `tls-creds` with
/// `endpoint=server`, plus `tls-authz`.
///
/// For each connection [`Acceptor::accept`]:
/// 1. looks at the first bytes without consuming them, and refuses plaintext
///    ([`Error::Plaintext`], naming a QEMU stream's `QEVM` or multifd's magic);
/// 2. runs the handshake within the handshake timeout ([`Error::HandshakeTimeout`]);
/// 3. with `verify_peer` (the default), requires a client certificate
///    ([`Error::NoClientCertificate`]) that chains to `ca-cert.pem`
///    ([`Error::UnknownIssuer`]), is within its validity period
///    ([`Error::CertificateExpired`], [`Error::CertificateNotYetValid`]) and is not revoked
///    by `ca-crl.pem` ([`Error::CertificateRevoked`]);
/// 4. with an [`Authz`], refuses a client whose DN it does not allow
///    ([`Error::NotAuthorised`]), sending the `access_denied` alert.
///
/// A refused client gets a TLS alert where the protocol allows one; nothing it sent is
/// returned. See the crate documentation for an example.
#[derive(Clone, Debug)]
pub struct Acceptor {
    credentials: Arc<Credentials>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    authz: Option<Arc<Authz>>,
    handshake_timeout: Duration,
}

impl Acceptor {
    /// An acceptor presenting `credentials`, which must be loaded for [`Endpoint::Server`].
    pub fn new(credentials: &Credentials) -> Result<Acceptor, Error> {
        if credentials.endpoint() != Endpoint::Server {
            return Err(Error::WrongEndpoint {
                dir: credentials.dir().to_path_buf(),
                expected: Endpoint::Server,
                found: credentials.endpoint(),
            });
        }
        let client_verifier = if credentials.verify_peer {
            let config_error = |detail: String| Error::Config {
                dir: credentials.dir().to_path_buf(),
                detail,
            };
            let mut roots = RootCertStore::empty();
            for ca in credentials.ca() {
                roots.add(ca.clone()).map_err(|e| {
                    config_error(format!("{CA_CERT}: not a usable CA certificate: {e}"))
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider::provider())
                    .with_crls(credentials.crls().iter().cloned())
                    // As GnuTLS: a CRL revokes what it lists; a chain it says nothing
                    // about (an intermediate CA without a CRL) is not refused for that.
                    .allow_unknown_revocation_status()
                    .build()
                    .map_err(|e| config_error(format!("CA certificate or CRL: {e}")))?;
            Some(verifier)
        } else {
            None
        };
        Ok(Acceptor {
            credentials: Arc::new(credentials.clone()),
            client_verifier,
            authz: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// Only clients whose certificate DN `authz` allows may connect (QEMU's `tls-authz`).
    /// Needs `verify_peer`: without it there is no verified DN ([`Error::AuthzWithoutVerifyPeer`]).
    pub fn with_authz(mut self, authz: Authz) -> Result<Acceptor, Error> {
        if self.client_verifier.is_none() {
            return Err(Error::AuthzWithoutVerifyPeer);
        }
        self.authz = Some(Arc::new(authz));
        Ok(self)
    }

    /// How long a connected peer may take from its first byte to the end of the handshake
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Acceptor {
        self.handshake_timeout = timeout;
        self
    }

    /// The credentials this acceptor presents.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Runs the server side of the handshake on `tcp`, a freshly accepted connection.
    /// On success the socket's read and write timeouts are cleared.
    pub fn accept(&self, mut tcp: TcpStream) -> Result<TlsStream, Error> {
        let peer = tcp.peer_addr().map_err(|source| Error::Io {
            peer: unknown_peer(),
            source,
        })?;
        let deadline = Instant::now() + self.handshake_timeout;
        let presented = Arc::new(Presented::default());
        let fail = |f: Failure| self.failure(f, peer, &presented);
        handshake::sniff(&tcp, deadline).map_err(fail)?;
        let config = self.config(&presented);
        let conn = ServerConnection::new(config).map_err(|source| Error::Tls { peer, source })?;
        let mut conn = rustls::Connection::Server(conn);
        handshake::complete(&mut conn, &mut tcp, deadline).map_err(fail)?;
        Ok(TlsStream::new(conn, tcp, peer))
    }

    /// A config for one connection: its verifier records what that client presented.
    fn config(&self, presented: &Arc<Presented>) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider::provider())
            .with_protocol_versions(provider::VERSIONS)
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match &self.client_verifier {
            Some(inner) => builder.with_client_cert_verifier(Arc::new(ClientCheck {
                inner: Arc::clone(inner),
                authz: self.authz.clone(),
                presented: Arc::clone(presented),
            })),
            None => builder.with_no_client_auth(),
        };
        let own = self
            .credentials
            .own()
            .expect("server credentials always hold a certificate");
        let mut config =
            builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(own))));
        // QEMU never resumes a migration's TLS session: send no session tickets.
        config.send_tls13_tickets = 0;
        Arc::new(config)
    }

    fn failure(&self, f: Failure, peer: std::net::SocketAddr, presented: &Presented) -> Error {
        match f {
            Failure::Timeout => Error::HandshakeTimeout {
                peer,
                timeout: self.handshake_timeout,
            },
            Failure::Closed => Error::ClosedDuringHandshake { peer },
            Failure::Plaintext(what) => Error::Plaintext { peer, what },
            Failure::Io(source) => Error::Io { peer, source },
            Failure::Tls(e) => verify::classify(e, peer, Role::Client, presented, None),
        }
    }
}

/// The address reported when even `peer_addr` fails (the peer already vanished).
fn unknown_peer() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 0))
}
