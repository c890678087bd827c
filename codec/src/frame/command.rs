//! Command sections (SPEC.md §2.6): `u8 0x08, be16 cmd, be16 len, len bytes`.

use ramstream_spec::stream::{Command, CommandLen};
use ramstream_spec::Dialect;

use crate::cursor::{Cursor, PResult};
use crate::error::{Error, ErrorKind};
use crate::event::{CommandRecord, Event};
use crate::kind::RecordKind;

/// Parses a command after its section byte; `at` is the offset of the section byte.
pub(crate) fn parse<'a>(c: &mut Cursor<'a>, at: u64, dialect: Dialect) -> PResult<Event<'a>> {
    let command = Command(c.u16()?);
    let len = c.u16()?;
    let known = command != Command::SWITCHOVER_START || dialect.knows_switchover_start();
    let checked = if known {
        check_len(command, len)
    } else {
        Err(ErrorKind::UnknownCommand { command, len })
    };
    checked.map_err(|kind| Error::new(at, kind).in_record(RecordKind::Command))?;
    let payload = c.take(len as usize)?;
    Ok(Event::Command(CommandRecord { command, payload }))
}

/// QEMU's acceptance rule for a command and its length (any version up to 11.1).
pub(crate) fn check_len(command: Command, len: u16) -> Result<(), ErrorKind> {
    match command.len_rule() {
        None => Err(ErrorKind::UnknownCommand { command, len }),
        Some(CommandLen::Fixed(n)) if n != len => Err(ErrorKind::CommandLength { command, len }),
        Some(CommandLen::OneOf(ok)) if !ok.contains(&len) => {
            Err(ErrorKind::CommandLength { command, len })
        }
        Some(_) => Ok(()),
    }
}
