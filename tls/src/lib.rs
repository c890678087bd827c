//! # ramstream-tls
//!
//! TLS for QEMU migration streams, with rustls, interoperable with QEMU's GnuTLS x509
//! credentials: a destination that accepts a QEMU source configured with
//! `migrate-set-parameters tls-creds=...`, and a source that a QEMU destination with
//! `tls-creds` (and `tls-authz`) accepts. Blocking `std::net` IO; the stream inside is the
//! same bytes as without TLS.
//!
//! | QEMU | here |
//! |---|---|
//! | `-object tls-creds-x509,dir=DIR,endpoint=server` | [`Credentials::load`]`(DIR, `[`Endpoint::Server`]`)`, [`Acceptor`] |
//! | `-object tls-creds-x509,dir=DIR,endpoint=client` | [`Credentials::load`]`(DIR, `[`Endpoint::Client`]`)`, [`Connector`] |
//! | `verify-peer=on` (default) / `off` | [`Credentials::verify_peer`] (default `true`) |
//! | `sanity-check=off` | [`Credentials::load_unchecked`] |
//! | `tls-hostname` (else the URI's host) | the `server_name` of [`Connector::connect`] |
//! | `tls-authz` with `authz-simple` / `authz-list` | [`Acceptor::with_authz`] with [`Authz::from_identities`] / [`Authz::list`] |
//! | the peer DN, `gnutls_x509_crt_get_dn` | [`TlsStream::peer_dn`], [`dn::subject`], [`Credentials::own_dn`] |
//!
//! The directory holds `ca-cert.pem`, `server-cert.pem` and `server-key.pem` (server),
//! `client-cert.pem` and `client-key.pem` (client, optional), optionally `ca-crl.pem`
//! (server); `dh-params.pem` is not needed (see [`credentials::DH_PARAMS`]). One directory
//! holding all of them serves both endpoints.
//!
//! Every refusal is an [`Error`] variant naming the peer, whose certificate, its DN and the
//! check that failed: plaintext at a TLS listener, a certificate from another CA, an expired
//! or not yet valid certificate, a revoked one, a wrong server name, a DN not in the
//! authorisation list, a handshake that stalls.
//!
//! [`TlsStream::into_shared`] makes a [`SharedTlsStream`], whose clones read and write the
//! same session from different threads.
//!
//! [`TlsStream`] reads a TCP EOF without `close_notify` as the end of the stream, because
//! QEMU ends its main migration channel that way; the migration stream's framing says
//! whether it was complete (see [`TlsStream`]).
//!
//! ## A destination and a source over loopback
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::{TcpListener, TcpStream};
//! use ramstream_tls::{Acceptor, Authz, Connector, Credentials, Endpoint};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A CA, a server certificate for 127.0.0.1 and a client certificate, in QEMU's layout.
//! # let dir = tempfile::tempdir()?;
//! # let ca_key = rcgen::KeyPair::generate()?;
//! # let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
//! # ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
//! # ca.distinguished_name.push(rcgen::DnType::CommonName, "Example CA");
//! # std::fs::write(dir.path().join("ca-cert.pem"), ca.self_signed(&ca_key)?.pem())?;
//! # let issuer = rcgen::Issuer::new(ca, ca_key);
//! # for (role, san, cn) in [("server", "127.0.0.1", "destination"), ("client", "source", "source")] {
//! #     let key = rcgen::KeyPair::generate()?;
//! #     let mut p = rcgen::CertificateParams::new(vec![san.to_string()])?;
//! #     p.distinguished_name = rcgen::DistinguishedName::new();
//! #     p.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
//! #     p.distinguished_name.push(rcgen::DnType::CommonName, cn);
//! #     std::fs::write(dir.path().join(format!("{role}-cert.pem")), p.signed_by(&key, &issuer)?.pem())?;
//! #     std::fs::write(dir.path().join(format!("{role}-key.pem")), key.serialize_pem())?;
//! # }
//! # let dir = dir.path();
//! // `dir` holds ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem.
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//!
//! let server = Credentials::load(dir, Endpoint::Server)?;
//! let acceptor = Acceptor::new(&server)?
//!     .with_authz(Authz::from_identities(["O=Example,CN=source"]))?;
//! let destination = std::thread::spawn(move || -> Result<Vec<u8>, ramstream_tls::Error> {
//!     let (tcp, _) = listener.accept().expect("accept");
//!     let mut tls = acceptor.accept(tcp)?;
//!     assert_eq!(tls.peer_dn(), Some("O=Example,CN=source"));
//!     let mut stream = Vec::new();
//!     tls.read_to_end(&mut stream).expect("read");
//!     Ok(stream)
//! });
//!
//! let client = Credentials::load(dir, Endpoint::Client)?;
//! let mut tls = Connector::new(&client)?.connect(TcpStream::connect(addr)?, "127.0.0.1")?;
//! tls.write_all(b"QEVM\0\0\0\x03")?;
//! tls.shutdown()?;
//! assert_eq!(destination.join().unwrap()?, b"QEVM\0\0\0\x03");
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod acceptor;
mod authz;
mod connector;
pub mod credentials;
pub mod dn;
mod endpoint;
mod error;
mod handshake;
mod provider;
mod shared;
mod stream;
mod validity;
mod verify;

pub use acceptor::{Acceptor, DEFAULT_HANDSHAKE_TIMEOUT};
pub use authz::{Authz, Match, Policy, Rule};
pub use connector::Connector;
pub use credentials::{Credentials, Endpoint};
pub use error::{Error, Plaintext, Role};
pub use shared::SharedTlsStream;
pub use stream::TlsStream;
