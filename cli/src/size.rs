//! Sizes on the command line: `4096`, `64K`, `512M`, `1.5G`, `1T`, `1GiB`, `512MiB`. Units are
//! binary as in QEMU (`1G` = `1GiB` = 2^30 bytes); a decimal unit (`1GB`) is refused rather
//! than read as 10^9, so that no size silently means something else than in QEMU. Byte
//! counts are printed in the same units ([`human`]).

use bytesize::ByteSize;
use parse_size::Config;

/// Parses a size (see the module docs).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let refuse = |why: &str| {
        format!("{s:?}: {why}; write a byte count or a number with a binary unit: 4096, 64K, 512M, 1.5G, 1GiB, 1T")
    };
    let upper = t.to_ascii_uppercase();
    if upper.ends_with('B') && !upper.ends_with("IB") && upper.len() > 1 {
        let digits = upper[..upper.len() - 1].trim_end();
        if digits.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(refuse("decimal units (KB, MB, GB, TB) are not accepted"));
        }
    }
    Config::new()
        .with_binary()
        .parse_size(t)
        .map_err(|e| refuse(&e.to_string()))
}

/// [`parse_size()`] for a size held in memory (`usize`).
pub fn parse_usize(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    usize::try_from(n).map_err(|_| format!("{s:?}: too large for this machine"))
}

/// A byte count for people, in binary units: `100 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human(n: u64) -> String {
    ByteSize::b(n).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_in_binary_units() {
        for (text, bytes) in [
            ("4096", 4096),
            ("64K", 64 << 10),
            ("512M", 512 << 20),
            ("512m", 512 << 20),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("1T", 1 << 40),
            ("1GiB", 1 << 30),
            ("512MiB", 512 << 20),
            (" 32M ", 32 << 20),
            ("0", 0),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        assert_eq!(parse_usize("1M"), Ok(1 << 20));
    }

    #[test]
    fn byte_counts_print_in_binary_units() {
        assert_eq!(human(100), "100 B");
        assert_eq!(human(4096), "4.0 KiB");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(parse_size(&human(512 << 20)), Ok(512 << 20));
    }

    #[test]
    fn errors_say_what_and_how() {
        for bad in ["", "abc", "12X", "-1", "1.5.5G", "99999999999E"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.starts_with(&format!("{bad:?}: ")), "{e}");
            assert!(e.contains("512M, 1.5G, 1GiB"), "{e}");
        }
        let e = parse_size("1GB").unwrap_err();
        assert!(e.contains("decimal units"), "{e}");
    }
}
