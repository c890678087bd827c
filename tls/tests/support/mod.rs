//! Certificates made by the tests (rcgen), written in QEMU's `tls-creds-x509` layout, and
//! loopback helpers. Nothing here is committed: every test makes its own in a temp dir.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;

use ramstream_tls::{Acceptor, Error, TlsStream};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};

/// The organisation every test certificate names.
pub const ORG: &str = "ramstream tests";

/// The names the destination's certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Valid {
    /// rcgen's default period, 1975 to 4096.
    Now,
    /// 2000-01-01 to 2001-01-01.
    Expired,
    /// 2090-01-01 to 2099-01-01.
    NotYet,
}

/// A certificate authority: its PEM certificate and the issuer that signs with its key.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A fresh CA named `CN=<name>`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert_pem = p.self_signed(&key).unwrap().pem();
        Ca {
            cert_pem,
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate for [`SERVER_NAMES`], subject `O=ramstream tests,CN=<cn>`.
    pub fn server(&self, cn: &str, valid: Valid) -> Issued {
        self.issue(
            cn,
            &SERVER_NAMES,
            ExtendedKeyUsagePurpose::ServerAuth,
            valid,
            1,
        )
    }

    /// A client certificate, subject `O=ramstream tests,CN=<cn>`, with serial `serial`.
    pub fn client(&self, cn: &str, valid: Valid, serial: u64) -> Issued {
        self.issue(cn, &[], ExtendedKeyUsagePurpose::ClientAuth, valid, serial)
    }

    fn issue(
        &self,
        cn: &str,
        names: &[&str],
        purpose: ExtendedKeyUsagePurpose,
        valid: Valid,
        serial: u64,
    ) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, ORG);
        name.push(DnType::CommonName, cn);
        p.distinguished_name = name;
        p.serial_number = Some(SerialNumber::from(serial));
        // What QEMU's `qcrypto_tls_creds_check_cert_key_usage` wants of a critical key
        // usage, and the purpose GnuTLS's certtool gives a tls_www_server / tls_www_client.
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![purpose];
        match valid {
            Valid::Now => {}
            Valid::Expired => {
                p.not_before = date_time_ymd(2000, 1, 1);
                p.not_after = date_time_ymd(2001, 1, 1);
            }
            Valid::NotYet => {
                p.not_before = date_time_ymd(2090, 1, 1);
                p.not_after = date_time_ymd(2099, 1, 1);
            }
        }
        Issued {
            cert_pem: p.signed_by(&key, &self.issuer).unwrap().pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A CRL revoking the certificates with these serials.
    pub fn crl(&self, revoked: &[u64]) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// The DN QEMU (and [`ramstream_tls::dn`]) prints for a test certificate named `cn`.
pub fn dn_of(cn: &str) -> String {
    format!("O={ORG},CN={cn}")
}

/// Writes a credential directory: `ca-cert.pem`, and the server's and client's
/// certificate and key where given.
pub fn write_dir(dir: &Path, ca: &Ca, server: Option<&Issued>, client: Option<&Issued>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), &ca.cert_pem).unwrap();
    if let Some(s) = server {
        std::fs::write(dir.join("server-cert.pem"), &s.cert_pem).unwrap();
        std::fs::write(dir.join("server-key.pem"), &s.key_pem).unwrap();
    }
    if let Some(c) = client {
        std::fs::write(dir.join("client-cert.pem"), &c.cert_pem).unwrap();
        std::fs::write(dir.join("client-key.pem"), &c.key_pem).unwrap();
    }
}

/// One directory with a CA and a valid server (`CN=destination`) and client
/// (`CN=source`, serial 2) certificate: what both ends of a migration can share.
pub fn shared_dir(dir: &Path) -> Ca {
    let ca = Ca::new("ramstream test CA");
    let server = ca.server("destination", Valid::Now);
    let client = ca.client("source", Valid::Now, 2);
    write_dir(dir, &ca, Some(&server), Some(&client));
    ca
}

/// A listener on 127.0.0.1 and a free port, and its address.
pub fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Accepts one connection on `listener` with `acceptor` in a thread; the thread returns the
/// TLS stream (or the refusal) and the client's address as the server saw it.
pub fn accept_one(
    listener: TcpListener,
    acceptor: Acceptor,
) -> JoinHandle<(Result<TlsStream, Error>, SocketAddr)> {
    std::thread::spawn(move || {
        let (tcp, from) = listener.accept().unwrap();
        (acceptor.accept(tcp), from)
    })
}

/// A TCP connection to `addr`.
pub fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).unwrap()
}
