//! Decoding a multifd channel without loading it, to count what it carries and refuse what
//! ramstream refuses: the proxy's view of a channel as it forwards it, and `inspect`'s of a
//! recorded one.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use anyhow::Result;
use ramstream_codec::multifd::{
    BlockTable, ChannelDecoder, ChannelEvent, ChannelOptions, ChannelSet, ChannelStatus,
};
use ramstream_codec::{Limits, RamBlock};
use serde::Serialize;

/// What one channel carried.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelCounts {
    /// The id of its initial packet, once read.
    pub id: Option<u8>,
    /// The uuid of its initial packet, hex.
    pub uuid: Option<String>,
    /// Bytes, the initial packet included.
    pub bytes: u64,
    /// Packets, SYNC packets included.
    pub packets: u64,
    /// Normal pages.
    pub pages: u64,
    /// Zero pages (QEMU 9.0+ with `zero-page-detection=multifd`).
    pub zero_pages: u64,
    /// SYNC packets.
    pub syncs: u64,
}

/// The main stream's facts a channel decoder needs: its page bits and MEM_SIZE blocks
/// (known once the main stream's MEM_SIZE is decoded), and the admission of every channel
/// through one [`ChannelSet`].
#[derive(Default)]
pub struct MainFacts {
    blocks: Mutex<Option<(u32, BlockTable, Limits)>>,
    known: Condvar,
    set: Mutex<Option<ChannelSet>>,
    uuid: Mutex<Option<[u8; 16]>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MainFacts {
    pub fn new() -> Arc<MainFacts> {
        Arc::new(MainFacts::default())
    }

    /// The main stream's MEM_SIZE (the first; later ones repeat it).
    pub fn set_blocks(&self, page_bits: u32, blocks: &[RamBlock], limits: &Limits) {
        let mut b = lock(&self.blocks);
        if b.is_none() {
            *b = Some((page_bits, BlockTable::new(blocks), limits.clone()));
            self.known.notify_all();
        }
    }

    /// The main stream's `configuration/uuid`: every channel must carry it.
    pub fn set_uuid(&self, uuid: [u8; 16]) {
        *lock(&self.uuid) = Some(uuid);
    }

    fn blocks(&self) -> Option<(u32, BlockTable, Limits)> {
        lock(&self.blocks).clone()
    }

    fn admit(
        &self,
        init: &ramstream_codec::multifd::InitPacket,
    ) -> Result<(), ramstream_codec::Error> {
        let uuid = *lock(&self.uuid);
        lock(&self.set)
            .get_or_insert_with(|| ChannelSet::new(None, uuid))
            .admit(init)
    }
}

/// One channel's decoder, fed the bytes as they pass: it buffers them until the main
/// stream's MEM_SIZE is known (the packets' length follows its page size), then decodes.
pub struct ChannelTap {
    facts: Arc<MainFacts>,
    decoder: Option<ChannelDecoder>,
    pending: Vec<u8>,
    finished: bool,
    pub counts: ChannelCounts,
}

impl ChannelTap {
    pub fn new(facts: Arc<MainFacts>) -> ChannelTap {
        ChannelTap {
            facts,
            decoder: None,
            pending: Vec::new(),
            finished: false,
            counts: ChannelCounts::default(),
        }
    }

    /// Takes the next bytes of the channel and decodes what it can. With nothing left over
    /// from earlier bytes, it decodes `bytes` where they are and keeps only an unfinished
    /// packet's bytes: a whole recorded channel is never copied.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ramstream_codec::Error> {
        if !self.pending.is_empty() || !self.make_decoder() {
            self.pending.extend_from_slice(bytes);
            return self.decode();
        }
        let dec = self.decoder.as_mut().expect("made above");
        let (used, r) = decode_into(dec, &mut self.counts, &self.facts, bytes);
        self.pending.extend_from_slice(&bytes[used..]);
        r
    }

    /// The channel ended: what is left must be whole packets. With the main stream's blocks
    /// still unknown, waits for them (the main stream's thread sets them).
    pub fn finish(&mut self) -> Result<(), ramstream_codec::Error> {
        self.finished = true;
        if self.decoder.is_none() {
            let mut b = lock(&self.facts.blocks);
            while b.is_none() {
                b = self
                    .facts
                    .known
                    .wait_timeout(b, std::time::Duration::from_secs(30))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if b.is_none() {
                    // The main stream never got to MEM_SIZE: nothing to decode against.
                    return Ok(());
                }
            }
        }
        self.decode()
    }

    /// Makes the decoder once the main stream's blocks are known; whether there is one.
    fn make_decoder(&mut self) -> bool {
        if self.decoder.is_none() {
            let Some((page_bits, table, limits)) = self.facts.blocks() else {
                return false;
            };
            let mut d = ChannelDecoder::new(
                ChannelOptions::default()
                    .with_page_bits(page_bits)
                    .with_limits(limits),
            );
            d.set_blocks(table);
            self.decoder = Some(d);
        }
        true
    }

    fn decode(&mut self) -> Result<(), ramstream_codec::Error> {
        if !self.make_decoder() {
            return Ok(());
        }
        let dec = self.decoder.as_mut().expect("made above");
        if self.finished {
            dec.finish();
        }
        let (used, r) = decode_into(dec, &mut self.counts, &self.facts, &self.pending);
        self.pending.drain(..used);
        r
    }
}

/// Decodes the events at the front of `input` into `counts`, until the decoder needs more
/// bytes or fails; how many bytes it used, and the error that stopped it.
fn decode_into(
    dec: &mut ChannelDecoder,
    counts: &mut ChannelCounts,
    facts: &MainFacts,
    input: &[u8],
) -> (usize, Result<(), ramstream_codec::Error>) {
    let mut pos = 0;
    let r = loop {
        match dec.decode(&input[pos..]) {
            Err(e) => break Err(e),
            Ok(ChannelStatus::Event { event, consumed }) => {
                pos += consumed;
                counts.bytes += consumed as u64;
                match event {
                    ChannelEvent::Init(init) => {
                        counts.id = Some(init.id);
                        counts.uuid = Some(hex::encode(init.uuid));
                        if let Err(e) = facts.admit(&init) {
                            break Err(e);
                        }
                    }
                    ChannelEvent::Packet(_) => counts.packets += 1,
                    ChannelEvent::Page { .. } => counts.pages += 1,
                    ChannelEvent::Zero { .. } => counts.zero_pages += 1,
                    ChannelEvent::Sync => counts.syncs += 1,
                    ChannelEvent::PacketEnd => {}
                }
            }
            Ok(_) => break Ok(()),
        }
    };
    (pos, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramstream_codec::{DecoderOptions, Event, Events};

    fn vector(name: &str, file: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conformance-vectors/vectors")
            .join(name)
            .join(file);
        zstd::stream::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap()
    }

    /// The facts of a vector's main stream: its first MEM_SIZE, page bits and uuid.
    fn facts_of(main: &[u8]) -> Arc<MainFacts> {
        let facts = MainFacts::new();
        let mut events = Events::new(main, DecoderOptions::default());
        while let Some(item) = events.next() {
            match item.unwrap().1 {
                Event::Configuration(c) => {
                    if let Some(u) = c.uuid {
                        facts.set_uuid(u);
                    }
                }
                Event::MemSize(ms) => {
                    let bits = events.decoder().page_bits();
                    facts.set_blocks(bits, &ms.blocks, &Limits::default());
                    break;
                }
                _ => {}
            }
        }
        facts
    }

    #[test]
    fn a_whole_channel_is_decoded_in_place_and_counts_as_fed_in_pieces() {
        let name = "10.0-multifd-4";
        let main = vector(name, "stream.bin.zst");
        for id in 0..4 {
            let chan = vector(name, &format!("channel-{id}.bin.zst"));
            // Whole, as `inspect` feeds a recorded channel: nothing kept back.
            let mut whole = ChannelTap::new(facts_of(&main));
            whole.feed(&chan).unwrap();
            assert!(whole.pending.is_empty(), "channel {id}");
            whole.finish().unwrap();
            // In pieces, as the proxy feeds what it reads: an unfinished packet waits.
            let mut pieces = ChannelTap::new(facts_of(&main));
            for part in chan.chunks(1000) {
                pieces.feed(part).unwrap();
                assert!(pieces.pending.len() < chan.len(), "channel {id}");
            }
            pieces.finish().unwrap();
            let (a, b) = (&whole.counts, &pieces.counts);
            assert_eq!(a.id, Some(id));
            assert_eq!(a.bytes, chan.len() as u64, "channel {id}");
            assert!(a.packets > 0 && a.syncs > 0, "channel {id}: {a:?}");
            assert_eq!(
                (
                    a.id,
                    &a.uuid,
                    a.bytes,
                    a.packets,
                    a.pages,
                    a.zero_pages,
                    a.syncs
                ),
                (
                    b.id,
                    &b.uuid,
                    b.bytes,
                    b.packets,
                    b.pages,
                    b.zero_pages,
                    b.syncs
                ),
                "channel {id}"
            );
        }
    }

    #[test]
    fn a_channel_cut_short_is_an_error_at_finish() {
        let name = "10.0-multifd-4";
        let main = vector(name, "stream.bin.zst");
        let chan = vector(name, "channel-0.bin.zst");
        let mut tap = ChannelTap::new(facts_of(&main));
        tap.feed(&chan[..chan.len() - 3]).unwrap();
        // The unfinished packet is kept, not the channel.
        assert!(!tap.pending.is_empty() && tap.pending.len() < chan.len());
        assert!(tap.finish().is_err());
    }
}
