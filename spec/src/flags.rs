//! How a flag word prints: its named bits joined by `|`, then any unnamed rest in hex
//! (`NONE` for no bit), so that an unknown bit survives into a log or an error message.

use core::fmt;

/// Writes `bits` as the names of `named` it contains, then the unnamed rest as hex.
pub(crate) fn fmt_flags(
    f: &mut fmt::Formatter<'_>,
    bits: u64,
    named: impl IntoIterator<Item = (&'static str, u64)>,
) -> fmt::Result {
    if bits == 0 {
        return f.write_str("NONE");
    }
    let mut rest = bits;
    let mut first = true;
    for (name, v) in named {
        if rest & v != 0 {
            if !first {
                f.write_str("|")?;
            }
            f.write_str(name)?;
            rest &= !v;
            first = false;
        }
    }
    if rest != 0 {
        if !first {
            f.write_str("|")?;
        }
        write!(f, "{rest:#x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::multifd::PacketFlags;
    use crate::ram::RamFlags;

    #[test]
    fn named_bits_then_the_unnamed_rest_in_hex() {
        assert_eq!(format!("{:?}", RamFlags(0)), "NONE");
        assert_eq!(format!("{:?}", RamFlags(0x012)), "ZERO|EOS");
        assert_eq!(format!("{}", RamFlags(0x8000_0012)), "ZERO|EOS|0x80000000");
        assert_eq!(format!("{:?}", RamFlags(0x8000_0000)), "0x80000000");
        assert_eq!(format!("{:?}", PacketFlags(0)), "NONE");
        assert_eq!(format!("{}", PacketFlags(1 | 0x100)), "SYNC|0x100");
    }
}
