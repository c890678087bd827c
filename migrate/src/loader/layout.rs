//! Checking a MEM_SIZE record against the guest's blocks (SPEC.md §7.1), as QEMU's
//! `ram_load` does: every block the stream lists must be the guest's, with the same length.

use crate::error::LayoutMismatch;
use crate::guest::RamBlockLayout;

/// For each stream block, the index of the guest block of that idstr; or the first mismatch
/// and the idstr it concerns.
pub(crate) fn match_blocks(
    stream: &[RamBlockLayout],
    guest: &[RamBlockLayout],
    allow_unsent: bool,
) -> Result<Vec<usize>, LayoutMismatch> {
    let mut map = Vec::with_capacity(stream.len());
    for b in stream {
        let Some(g) = guest.iter().position(|g| g.idstr() == b.idstr()) else {
            return Err(LayoutMismatch::UnknownBlock {
                idstr: b.idstr().to_string(),
                used_length: b.used_length(),
            });
        };
        if guest[g].used_length() != b.used_length() {
            return Err(LayoutMismatch::LengthMismatch {
                idstr: b.idstr().to_string(),
                stream: b.used_length(),
                guest: guest[g].used_length(),
            });
        }
        map.push(g);
    }
    if !allow_unsent {
        if let Some(g) = guest
            .iter()
            .find(|g| !stream.iter().any(|b| b.idstr() == g.idstr()))
        {
            return Err(LayoutMismatch::BlockNotSent {
                idstr: g.idstr().to_string(),
            });
        }
    }
    Ok(map)
}

/// The idstr a mismatch names, for the error's block field.
pub(crate) fn mismatch_block(m: &LayoutMismatch) -> Option<&str> {
    match m {
        LayoutMismatch::UnknownBlock { idstr, .. }
        | LayoutMismatch::LengthMismatch { idstr, .. }
        | LayoutMismatch::BlockNotSent { idstr } => Some(idstr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(idstr: &str, used_length: u64) -> RamBlockLayout {
        RamBlockLayout::new(idstr, used_length)
    }

    #[test]
    fn maps_by_idstr_in_any_order() {
        let guest = [
            RamBlockLayout::new("pc.bios", 4096),
            RamBlockLayout::new("pc.ram", 8192),
        ];
        let stream = [block("pc.ram", 8192), block("pc.bios", 4096)];
        assert_eq!(match_blocks(&stream, &guest, false), Ok(vec![1, 0]));
    }

    #[test]
    fn refuses_unknown_resized_and_unsent_blocks() {
        let guest = [
            RamBlockLayout::new("pc.ram", 8192),
            RamBlockLayout::new("pc.rom", 4096),
        ];
        assert!(matches!(
            match_blocks(&[block("m0", 8192)], &guest, true),
            Err(LayoutMismatch::UnknownBlock { .. })
        ));
        assert!(matches!(
            match_blocks(&[block("pc.ram", 4096)], &guest, true),
            Err(LayoutMismatch::LengthMismatch {
                stream: 4096,
                guest: 8192,
                ..
            })
        ));
        assert_eq!(
            match_blocks(&[block("pc.ram", 8192)], &guest, false),
            Err(LayoutMismatch::BlockNotSent {
                idstr: "pc.rom".into()
            })
        );
        assert_eq!(
            match_blocks(&[block("pc.ram", 8192)], &guest, true),
            Ok(vec![0])
        );
    }
}
