//! Dialects: what flag 0x200 means in a `ram` section (SPEC.md §6.2, §9).

use core::fmt;
use core::str::FromStr;

/// Which meaning flag 0x200 has. Chosen by the caller or by negotiation, never guessed from
/// the bytes (SPEC.md §9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// QEMU 7.2 and earlier: 0x200 is an error ("Unknown combination of migration flags").
    #[default]
    Qemu7_2,
    /// QEMU 8.1 and later: 0x200 is `MULTIFD_FLUSH`, a record with no payload.
    Qemu8_1,
    /// The 2016 balloon patch (Kolhe): 0x200 is `RAM_SAVE_FLAG_BALLOON` with a global
    /// bitmap-run payload (SPEC.md §9.6).
    Kolhe2016,
    /// ramstream balloon extension v1: 0x200 is a block-relative balloon run record, only
    /// valid when the stream announced the extension (SPEC.md §9).
    RamstreamBalloonV1,
}

impl Dialect {
    /// Every dialect, in the order documentation lists them.
    pub const ALL: [Dialect; 4] = [
        Dialect::Qemu7_2,
        Dialect::Qemu8_1,
        Dialect::Kolhe2016,
        Dialect::RamstreamBalloonV1,
    ];

    /// The dialect's name as the command line and JSON output spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Qemu7_2 => "qemu-7.2",
            Dialect::Qemu8_1 => "qemu-8.1+",
            Dialect::Kolhe2016 => "kolhe-2016",
            Dialect::RamstreamBalloonV1 => "ramstream-balloon-v1",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a dialect name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownDialect(pub String);

impl fmt::Display for UnknownDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown dialect {:?} (expected one of: qemu-7.2, qemu-8.1+, kolhe-2016, ramstream-balloon-v1)",
            self.0
        )
    }
}

impl std::error::Error for UnknownDialect {}

impl FromStr for Dialect {
    type Err = UnknownDialect;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDialect(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in Dialect::ALL {
            assert_eq!(d.name().parse::<Dialect>().unwrap(), d);
        }
        assert!("qemu-9".parse::<Dialect>().is_err());
    }
}
