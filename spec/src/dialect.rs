//! Dialects: what flag 0x200 means in a `ram` section (SPEC.md §6.2, §9).

use core::fmt;
use core::str::FromStr;

/// Which meaning flag 0x200 has, and which commands are known. Chosen by the caller or by
/// negotiation, never guessed from the bytes (SPEC.md §9.1).
///
/// The default, [`Dialect::Qemu`], reads what every upstream QEMU from 7.2 to 11.1 writes, so a
/// stream from real QEMU needs no option. [`Dialect::Qemu7_2`] and [`Dialect::Qemu8_1`] are
/// stricter: they accept only what those versions' destinations load (SPEC.md §2.6, §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// Upstream QEMU, any version from 7.2 to 11.1: 0x200 is `MULTIFD_FLUSH` (written by 8.1+
    /// only), and every command up to `SWITCHOVER_START` (10.0+) is known.
    #[default]
    Qemu,
    /// What a QEMU 7.2 destination loads: 0x200 is an error ("Unknown combination of
    /// migration flags"), and so is `SWITCHOVER_START` ("MIG_CMD 0xb unknown").
    Qemu7_2,
    /// What a QEMU 8.1 to 9.2 destination loads: 0x200 is `MULTIFD_FLUSH`, a record with no
    /// payload; `SWITCHOVER_START` is unknown.
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
    pub const ALL: [Dialect; 5] = [
        Dialect::Qemu,
        Dialect::Qemu7_2,
        Dialect::Qemu8_1,
        Dialect::Kolhe2016,
        Dialect::RamstreamBalloonV1,
    ];

    /// The dialect's name as the command line and JSON output spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Dialect::Qemu => "qemu",
            Dialect::Qemu7_2 => "qemu-7.2",
            Dialect::Qemu8_1 => "qemu-8.1+",
            Dialect::Kolhe2016 => "kolhe-2016",
            Dialect::RamstreamBalloonV1 => "ramstream-balloon-v1",
        }
    }

    /// Whether this dialect's loader knows `SWITCHOVER_START` (QEMU 10.0+). The out-of-tree
    /// balloon dialects accept every command upstream QEMU writes.
    pub const fn knows_switchover_start(self) -> bool {
        !matches!(self, Dialect::Qemu7_2 | Dialect::Qemu8_1)
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
            "unknown dialect {:?} (expected one of: qemu, qemu-7.2, qemu-8.1+, kolhe-2016, ramstream-balloon-v1)",
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
