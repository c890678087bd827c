//! Section headers and footers (SPEC.md §2.3, §2.4).

use ramstream_spec::stream::{SectionType, FOOTER_LEN};

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::SectionHeader;
use crate::kind::RecordKind;

/// Parses the rest of a START/FULL header after its type byte.
pub(crate) fn parse_full_header<'a>(
    c: &mut Cursor<'a>,
    section_type: SectionType,
) -> PResult<SectionHeader<'a>> {
    let section_id = c.u32()?;
    let idstr = c.counted_str("section idstr")?;
    let instance_id = c.u32()?;
    let version_id = c.u32()?;
    Ok(SectionHeader {
        section_type,
        section_id,
        idstr,
        instance_id,
        version_id,
    })
}

/// Parses a footer that must name `expected`.
pub(crate) fn parse_footer(c: &mut Cursor<'_>, expected: u32) -> PResult<u32> {
    let at = c.offset();
    if !c.has(FOOTER_LEN) {
        // Report the missing-footer error as early as the first byte allows.
        let b = c.peek_u8()?;
        if b != SectionType::FOOTER.0 {
            return Err(missing(at, expected, b).into());
        }
    }
    let b = c.u8()?;
    if b != SectionType::FOOTER.0 {
        return Err(missing(at, expected, b).into());
    }
    let found = c.u32()?;
    if found != expected {
        return Err(
            Error::new(at, ErrorKind::FooterMismatch { expected, found })
                .in_record(RecordKind::Footer)
                .into(),
        );
    }
    Ok(found)
}

fn missing(at: u64, section_id: u32, found: u8) -> Error {
    Error::new(at, ErrorKind::MissingFooter { section_id, found }).in_record(RecordKind::Footer)
}
