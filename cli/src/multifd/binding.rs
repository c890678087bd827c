//! What a multifd receiver takes from the main stream before its channels can load: the
//! migration's uuid (configuration section) and the block table (first MEM_SIZE record).

use anyhow::{anyhow, Result};
use ramstream_codec::{Event, Limits};
use ramstream_migrate::multifd::MultifdSession;

use super::image::SharedImage;

/// Takes main-stream `event` (at `offset`, page bits `page_bits`) for the channels: the
/// configuration's uuid into `session`, and at the first MEM_SIZE record its blocks into
/// `image` and `session` (decoder limits `limits`). Other events are left alone.
pub fn bind_from_main(
    session: &MultifdSession,
    image: &SharedImage,
    limits: &Limits,
    event: &Event<'_>,
    offset: u64,
    page_bits: u32,
) -> Result<()> {
    match event {
        Event::Configuration(c) => {
            if let Some(uuid) = c.uuid {
                session.set_migration_uuid(uuid);
            }
        }
        Event::MemSize(ms) if !session.is_bound() => {
            image.set_blocks(1 << page_bits, &ms.blocks);
            session
                .bind_blocks(page_bits, &ms.blocks, limits.clone())
                .map_err(|e| anyhow!("at offset {offset:#x}: {e}"))?;
        }
        _ => {}
    }
    Ok(())
}
