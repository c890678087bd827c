//! Certificate verification: rustls's webpki verifiers, wrapped so that a refusal can name
//! the certificate the peer presented, the authorisation check, and the mapping of rustls's
//! errors to ours.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::authz::Authz;
use crate::error::{Error, Role};
use crate::validity::rfc3339;

/// The subject of the certificate the peer presented in this handshake, kept by the
/// verifier so that a refusal can say whose certificate it refused.
#[derive(Debug, Default)]
pub(crate) struct Presented(Mutex<Option<String>>);

impl Presented {
    fn record(&self, cert: &CertificateDer<'_>) {
        let dn = crate::dn::subject(cert).unwrap_or_else(|| "<unparsable certificate>".into());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(dn);
    }

    fn dn(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "<no certificate>".into())
    }
}

/// The handshake-signature checks of a wrapping verifier, handed to its `inner` verifier:
/// the wrapper changes which certificates are accepted, never how signatures are checked.
macro_rules! signatures_checked_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}

/// The server's check of the client certificate: webpki's chain, validity and CRL checks,
/// then the authorisation list. A DN not in the list is refused during the handshake with
/// the `access_denied` alert (rustls's `ApplicationVerificationFailure`).
#[derive(Debug)]
pub(crate) struct ClientCheck {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) authz: Option<Arc<Authz>>,
    pub(crate) presented: Arc<Presented>,
}

impl ClientCertVerifier for ClientCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.presented.record(end_entity);
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if let Some(authz) = &self.authz {
            if !authz.allows(&self.presented.dn()) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(verified)
    }

    signatures_checked_by_inner!();
}

/// The client's check of the server certificate: webpki's chain, validity and name checks
/// (the name is QEMU's `tls-hostname`), recording what the server presented.
#[derive(Debug)]
pub(crate) struct ServerCheck {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) presented: Arc<Presented>,
}

impl ServerCertVerifier for ServerCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.presented.record(end_entity);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    signatures_checked_by_inner!();
}

/// `verify-peer=no` on a client: any server certificate is accepted (QEMU then skips
/// `qcrypto_tls_session_check_certificate` altogether); the handshake signatures are still
/// checked, so the server holds the key of the certificate it sent.
#[derive(Debug)]
pub(crate) struct AnyServer {
    pub(crate) provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Our error for a rustls handshake error. `role` says whose certificate we were checking;
/// `expected` is the server name a client checked.
pub(crate) fn classify(
    err: rustls::Error,
    peer: SocketAddr,
    role: Role,
    presented: &Presented,
    expected: Option<&str>,
) -> Error {
    let dn = || presented.dn();
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => Error::UnknownIssuer {
                peer,
                role,
                dn: dn(),
            },
            CertificateError::ExpiredContext { time, not_after } => Error::CertificateExpired {
                peer,
                role,
                dn: dn(),
                not_after: rfc3339(not_after.as_secs() as i64),
                now: rfc3339(time.as_secs() as i64),
            },
            CertificateError::Expired => Error::CertificateExpired {
                peer,
                role,
                dn: dn(),
                not_after: "(unknown)".into(),
                now: rfc3339(UnixTime::now().as_secs() as i64),
            },
            CertificateError::NotValidYetContext { time, not_before } => {
                Error::CertificateNotYetValid {
                    peer,
                    role,
                    dn: dn(),
                    not_before: rfc3339(not_before.as_secs() as i64),
                    now: rfc3339(time.as_secs() as i64),
                }
            }
            CertificateError::NotValidYet => Error::CertificateNotYetValid {
                peer,
                role,
                dn: dn(),
                not_before: "(unknown)".into(),
                now: rfc3339(UnixTime::now().as_secs() as i64),
            },
            CertificateError::Revoked => Error::CertificateRevoked {
                peer,
                role,
                dn: dn(),
            },
            CertificateError::NotValidForNameContext {
                expected: name,
                presented: names,
            } => Error::NameMismatch {
                peer,
                dn: dn(),
                expected: expected.map_or_else(|| server_name_text(&name), str::to_string),
                presented: names.iter().map(|n| plain_name(n)).collect(),
            },
            CertificateError::NotValidForName => Error::NameMismatch {
                peer,
                dn: dn(),
                expected: expected.unwrap_or("").to_string(),
                presented: Vec::new(),
            },
            CertificateError::ApplicationVerificationFailure if role == Role::Client => {
                Error::NotAuthorised { peer, dn: dn() }
            }
            other => Error::CertificateRejected {
                peer,
                role,
                dn: dn(),
                reason: other.to_string(),
            },
        },
        rustls::Error::NoCertificatesPresented => Error::NoClientCertificate { peer },
        rustls::Error::AlertReceived(alert) => Error::PeerRefused {
            peer,
            alert: format!("{alert:?}"),
        },
        source => Error::Tls { peer, source },
    }
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// `localhost` and `127.0.0.1` for rustls's `DnsName("localhost")` and
/// `IpAddress(127.0.0.1)`.
fn plain_name(presented: &str) -> String {
    presented
        .strip_prefix("DnsName(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .or_else(|| {
            presented
                .strip_prefix("IpAddress(")
                .and_then(|s| s.strip_suffix(')'))
        })
        .unwrap_or(presented)
        .to_string()
}
