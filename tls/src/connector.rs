//! The client side: a migration source connecting to a TLS destination.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ClientConfig, ClientConnection, WebPkiServerVerifier};
use rustls::pki_types::ServerName;
use rustls::sign::SingleCertAndKey;
use rustls::RootCertStore;

use crate::acceptor::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::credentials::{Credentials, Endpoint, CA_CERT};
use crate::error::{Error, Role};
use crate::handshake::{self, Failure};
use crate::provider;
use crate::stream::TlsStream;
use crate::verify::{self, AnyServer, Presented, ServerCheck};

/// Connects to TLS migration destinations: QEMU's `tls-creds` with `endpoint=client`.
///
/// [`Connector::connect`] checks the server's certificate chain against `ca-cert.pem` and its
/// validity period, and the name it was given against the certificate's subject alternative
/// names: QEMU checks `tls-hostname` if set, else the host of the migration URI, and so
/// should a caller (a DNS name, or an IP address, which must then be an IP address SAN).
/// It presents `client-cert.pem` if the directory has one. With `verify_peer` off nothing
/// about the server's certificate is checked.
///
/// The server checks our certificate (and its authorisation list) when it receives it. In
/// TLS 1.3 that is after our side of the handshake is complete, so a refusal by the server
/// shows up on the first read or write of the [`TlsStream`] as an error naming the alert
/// (`AccessDenied`, `CertificateExpired`, `UnknownCA`...), or, from a QEMU destination,
/// which checks only after its handshake and then just closes the connection, as a reset
/// or broken pipe; the reason is then in QEMU's log.
///
/// See the crate documentation for an example.
#[derive(Clone, Debug)]
pub struct Connector {
    credentials: Arc<Credentials>,
    server_verifier: Arc<dyn ServerCertVerifier>,
    handshake_timeout: Duration,
}

impl Connector {
    /// A connector presenting `credentials`, which must be loaded for [`Endpoint::Client`].
    pub fn new(credentials: &Credentials) -> Result<Connector, Error> {
        if credentials.endpoint() != Endpoint::Client {
            return Err(Error::WrongEndpoint {
                dir: credentials.dir().to_path_buf(),
                expected: Endpoint::Client,
                found: credentials.endpoint(),
            });
        }
        let server_verifier: Arc<dyn ServerCertVerifier> = if credentials.verify_peer {
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
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider::provider())
                .build()
                .map_err(|e| config_error(format!("CA certificate: {e}")))?
        } else {
            Arc::new(AnyServer {
                provider: provider::provider(),
            })
        };
        Ok(Connector {
            credentials: Arc::new(credentials.clone()),
            server_verifier,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// How long the server may take to complete the handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Connector {
        self.handshake_timeout = timeout;
        self
    }

    /// The credentials this connector presents.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Runs the client side of the handshake on `tcp`, a connected socket, checking that the
    /// server's certificate is valid for `server_name` (QEMU's `tls-hostname`: a DNS name or
    /// an IP address). On success the socket's read and write timeouts are cleared.
    pub fn connect(&self, mut tcp: TcpStream, server_name: &str) -> Result<TlsStream, Error> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            Error::InvalidServerName {
                name: server_name.to_string(),
            }
        })?;
        let peer = tcp.peer_addr().map_err(|source| Error::Io {
            peer: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let deadline = Instant::now() + self.handshake_timeout;
        let presented = Arc::new(Presented::default());
        let conn = ClientConnection::new(self.config(&presented), name)
            .map_err(|source| Error::Tls { peer, source })?;
        let mut conn = rustls::Connection::Client(conn);
        handshake::complete(&mut conn, &mut tcp, deadline).map_err(|f| match f {
            Failure::Timeout => Error::HandshakeTimeout {
                peer,
                timeout: self.handshake_timeout,
            },
            Failure::Closed => Error::ClosedDuringHandshake { peer },
            Failure::Plaintext(what) => Error::Plaintext { peer, what },
            Failure::Io(source) => Error::Io { peer, source },
            Failure::Tls(e) => {
                verify::classify(e, peer, Role::Server, &presented, Some(server_name))
            }
        })?;
        Ok(TlsStream::new(conn, tcp, peer))
    }

    /// A config for one connection: its verifier records what that server presented.
    fn config(&self, presented: &Arc<Presented>) -> Arc<ClientConfig> {
        let builder = ClientConfig::builder_with_provider(provider::provider())
            .with_protocol_versions(provider::VERSIONS)
            .expect("ring supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerCheck {
                inner: Arc::clone(&self.server_verifier),
                presented: Arc::clone(presented),
            }));
        let mut config = match self.credentials.own() {
            Some(own) => {
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(own))))
            }
            None => builder.with_no_client_auth(),
        };
        // Each migration is a fresh session: no resumption, so no session cache to keep.
        config.resumption = rustls::client::Resumption::disabled();
        Arc::new(config)
    }
}
