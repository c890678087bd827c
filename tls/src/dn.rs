//! A certificate's subject distinguished name as the string QEMU compares with its
//! authorisation identities.
//!
//! QEMU's `qcrypto_tls_session_check_certificate` (crypto/tlssession.c) takes the peer
//! certificate's subject with GnuTLS's `gnutls_x509_crt_get_dn` and hands that string to
//! `qauthz_is_allowed_by_id`, which `authz-simple` compares with `g_str_equal` and
//! `authz-list` with `g_str_equal` or `g_pattern_match_simple`. So an identity matches only
//! if it is byte for byte what GnuTLS prints:
//!
//! - the relative distinguished names **in the order the certificate encodes them**
//!   (`gnutls_x509_crt_get_dn` keeps GnuTLS's pre-3.5.6 "compat" order; it does not reverse
//!   them as RFC 4514 does), joined by `,`; the attributes of a multi-valued RDN joined by
//!   `+`;
//! - each attribute as `NAME=value` with GnuTLS's short names (`C`, `ST`, `L`, `O`, `OU`,
//!   `CN`, `DC`, `UID`, `EMAIL`, ...), an unknown attribute as its dotted OID and `#` with the
//!   hex of its DER value;
//! - values escaped as GnuTLS does: a `\` before `,` `+` `"` `\` `<` `>` `;`, before a
//!   leading `#` or space, and before a trailing space.
//!
//! A certificate whose subject was written `O=Example,CN=client.example` (the usual order:
//! most significant first) gives `O=Example,CN=client.example`. The interop tests check
//! this against real QEMU 7.2, 10.0 and 11.1 (`tls/tests/qemu_tls.rs`).
//!
//! ```
//! # let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
//! # p.distinguished_name = rcgen::DistinguishedName::new();
//! # p.distinguished_name.push(rcgen::DnType::OrganizationName, "Example, Inc.");
//! # p.distinguished_name.push(rcgen::DnType::CommonName, "source.example");
//! # let cert = p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
//! // `cert` is an rcgen certificate whose subject was pushed O first, then CN.
//! let dn = ramstream_tls::dn::subject(cert.der()).unwrap();
//! assert_eq!(dn, r"O=Example\, Inc.,CN=source.example");
//! ```

use std::fmt::Write as _;

use x509_parser::der_parser::asn1_rs::{Any, Class, Tag};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The subject DN of a DER certificate in QEMU's (GnuTLS's) format; `None` if `der` is not a
/// certificate.
pub fn subject(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(format_name(cert.subject()))
}

/// A parsed name in GnuTLS's `gnutls_x509_crt_get_dn` format.
pub(crate) fn format_name(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for (i, rdn) in name.iter().enumerate() {
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            } else if i > 0 {
                out.push(',');
            }
            let oid = atv.attr_type().to_id_string();
            let value = atv.attr_value();
            match (short_name(&oid), decode_string(value)) {
                (Some(short), Some(text)) => {
                    out.push_str(short);
                    out.push('=');
                    escape_into(&mut out, &text);
                }
                (short, _) => {
                    out.push_str(short.unwrap_or(&oid));
                    out.push_str("=#");
                    for b in der_of(value) {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    out
}

/// GnuTLS's short names (lib/x509/common.c `_oid2str`) for the attributes certificates use.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.6" => "C",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.5" => "serialNumber",
        "2.5.4.12" => "title",
        "2.5.4.17" => "postalCode",
        "2.5.4.41" => "name",
        "2.5.4.42" => "givenName",
        "2.5.4.4" => "surName",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAIL",
        _ => return None,
    })
}

/// The text of a directory string, or `None` for a value that is not one.
fn decode_string(value: &Any<'_>) -> Option<String> {
    if value.class() != Class::Universal {
        return None;
    }
    let data = value.data;
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => std::str::from_utf8(data).ok().map(str::to_string),
        // T.61 as Latin-1, as GnuTLS's `_gnutls_x509_dn_to_string` passes it through.
        Tag::TeletexString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString => {
            if !data.len().is_multiple_of(2) {
                return None;
            }
            let units = data.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::UniversalString => {
            if !data.len().is_multiple_of(4) {
                return None;
            }
            data.chunks(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        _ => None,
    }
}

/// RFC 4514 escaping as GnuTLS's `str_escape` does it.
fn escape_into(out: &mut String, text: &str) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The DER encoding (tag, length, contents) of a short-form-tag value.
fn der_of(value: &Any<'_>) -> Vec<u8> {
    let data = value.data;
    let class = match value.class() {
        Class::Universal => 0x00,
        Class::Application => 0x40,
        Class::ContextSpecific => 0x80,
        Class::Private => 0xc0,
    };
    let constructed = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    let mut out = vec![class | constructed | (value.tag().0 as u8 & 0x1f)];
    let len = data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_gnutls() {
        let mut s = String::new();
        escape_into(&mut s, "#a,b+c\"d\\e<f>g;h ");
        assert_eq!(s, r##"\#a\,b\+c\"d\\e\<f\>g\;h\ "##);
        let mut s = String::new();
        escape_into(&mut s, " x#");
        assert_eq!(s, r"\ x#");
    }
}
