//! The 8-byte stream header (SPEC.md §2.1).

use ramstream_spec::stream::{FILE_VERSION, FILE_VERSION_OBSOLETE, QEVM_MAGIC};

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::kind::RecordKind;

pub(crate) fn parse<'a>(c: &mut Cursor<'a>) -> PResult<Event<'a>> {
    let at = c.offset();
    let magic = c.u32()?;
    if magic != QEVM_MAGIC {
        return Err(Error::new(at, ErrorKind::BadMagic { found: magic })
            .in_record(RecordKind::Header)
            .into());
    }
    let version = c.u32()?;
    let kind = match version {
        FILE_VERSION => return Ok(Event::Header { version }),
        FILE_VERSION_OBSOLETE => ErrorKind::ObsoleteVersion,
        found => ErrorKind::UnsupportedVersion { found },
    };
    Err(Error::new(at + 4, kind)
        .in_record(RecordKind::Header)
        .into())
}
