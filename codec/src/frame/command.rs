//! Command sections (SPEC.md §2.6): `u8 0x08, be16 cmd, be16 len, len bytes`.

use ramstream_spec::stream::{Command, CommandLen};

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::{CommandRecord, Event, RecordKind};

/// Parses a command after its section byte; `at` is the offset of the section byte.
pub(crate) fn parse<'a>(c: &mut Cursor<'a>, at: u64) -> PResult<Event<'a>> {
    let command = Command(c.u16()?);
    let len = c.u16()?;
    check_len(command, len).map_err(|kind| Error::new(at, kind).in_record(RecordKind::Command))?;
    let payload = c.take(len as usize)?;
    Ok(Event::Command(CommandRecord { command, payload }))
}

/// QEMU 7.2's acceptance rule for a command and its length.
pub(crate) fn check_len(command: Command, len: u16) -> Result<(), ErrorKind> {
    match command.len_rule_qemu_7_2() {
        None => Err(ErrorKind::UnknownCommand { command, len }),
        Some(CommandLen::Fixed(n)) if n != len => Err(ErrorKind::CommandLength { command, len }),
        Some(CommandLen::OneOf(ok)) if !ok.contains(&len) => {
            Err(ErrorKind::CommandLength { command, len })
        }
        Some(_) => Ok(()),
    }
}
