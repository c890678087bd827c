//! Decoding a stream as it arrives from a reader, with bounded memory.

use std::io::Read;

use anyhow::{bail, Context, Result};
use ramstream_codec::{Decoder, Event, Status};

/// How much the read buffer holds before it grows for a single large item (a device
/// section or the VMDESCRIPTION; the decoder's limits bound those).
pub const READ_CHUNK: usize = 1 << 20;

/// Reads `r` to the end of the stream, decoding as bytes arrive. For every event calls
/// `on_event(offset, event, raw)` where `raw` are the event's bytes on the wire. Memory is
/// one read buffer: never the whole stream.
pub fn pump(
    r: &mut dyn Read,
    dec: &mut Decoder,
    mut on_event: impl FnMut(u64, &Event<'_>, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    loop {
        let at = dec.offset();
        match dec.decode(&buf[start..end])? {
            Status::Event { event, consumed } => {
                on_event(at, &event, &buf[start..start + consumed])?;
                start += consumed;
            }
            Status::Done => return Ok(()),
            Status::NeedMore { needed } => {
                if eof {
                    bail!("internal: decoder wants more after end of input");
                }
                // Compact, then make room for at least `needed` more bytes.
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                if buf.len() - end < needed.max(1) {
                    let grow = (end + needed).max(buf.len() * 2);
                    buf.resize(grow, 0);
                }
                let n = r
                    .read(&mut buf[end..])
                    .with_context(|| format!("read error at stream offset {:#x}", dec.offset()))?;
                if n == 0 {
                    eof = true;
                    dec.finish();
                } else {
                    end += n;
                }
            }
        }
    }
}
