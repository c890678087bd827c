//! Validity periods: the load-time check of our own certificates, and times as RFC 3339.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Error;

/// Refuses a certificate of ours (or a CA certificate) outside its validity period, as
/// QEMU's `qcrypto_tls_creds_check_cert_times` does when it loads credentials.
pub(crate) fn check_own(file: &Path, der: &[u8]) -> Result<(), Error> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Err(Error::BadFile {
            file: file.to_path_buf(),
            detail: "holds a CERTIFICATE that is not an X.509 certificate".into(),
        });
    };
    let now = unix_now();
    let v = cert.validity();
    let dn = crate::dn::format_name(cert.subject());
    if v.not_after.timestamp() < now {
        return Err(Error::CredentialExpired {
            file: file.to_path_buf(),
            dn,
            not_after: rfc3339(v.not_after.timestamp()),
        });
    }
    if v.not_before.timestamp() > now {
        return Err(Error::CredentialNotYetValid {
            file: file.to_path_buf(),
            dn,
            not_before: rfc3339(v.not_before.timestamp()),
        });
    }
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_609_459_199), "2020-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
