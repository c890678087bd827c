//! The connections a migration writes: the main stream's and, with multifd, the channels'
//! (SPEC.md §14), to a socket or into a multi-file recording.

use std::io::Write;
use std::num::NonZeroU8;

use anyhow::{Context, Result};

use crate::addr::Addr;
use crate::multifd::recording::channel_path;
use crate::tls::ClientTls;

/// A connection (or file) a migration writes.
pub type Writer = Box<dyn Write + Send>;

/// The connections of a migration to `to`: the main stream's and, with multifd, the
/// channels', in QEMU's order (the main stream, then channels 0 to N-1, each to the same
/// address: `socket_send_channel_create()`). For `file:F`, the recording's files: `F` and
/// `F.multifd-<id>` (SPEC.md §14.9); channel files of an earlier recording at `F` that
/// this one does not write are removed, so that a reader never mixes two recordings.
/// With `tls`, every connection is a TLS session (as QEMU handshakes each channel).
pub fn open_connections(
    to: &Addr,
    channels: Option<NonZeroU8>,
    tls: Option<&ClientTls>,
) -> Result<(Writer, Option<Vec<Writer>>)> {
    let n = channels.map_or(0, NonZeroU8::get);
    if let Addr::File(f) = to {
        for id in n..=u8::MAX {
            let stale = channel_path(f, id);
            if std::fs::remove_file(&stale).is_err() {
                break;
            }
        }
    }
    let main: Writer = match (to, tls) {
        (Addr::File(_), None) => to.open_to_send()?,
        (Addr::File(_), Some(_)) => {
            anyhow::bail!("{to}: TLS (--tls-creds) protects a connection; a file is not one")
        }
        _ => Box::new(to.connect_tls(tls)?),
    };
    let Some(channels) = channels else {
        return Ok((main, None));
    };
    let channels = (0..channels.get())
        .map(|id| -> Result<Writer> {
            match to {
                Addr::File(f) => {
                    let p = channel_path(f, id);
                    let file = std::fs::File::create(&p)
                        .with_context(|| format!("cannot create {}", p.display()))?;
                    Ok(Box::new(file))
                }
                _ => Ok(Box::new(
                    to.connect_tls(tls)
                        .with_context(|| format!("multifd channel {id}"))?,
                )),
            }
        })
        .collect::<Result<_>>()?;
    Ok((main, Some(channels)))
}
