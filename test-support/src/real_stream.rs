//! The real stream that hostile bytes are spliced into: the reference sender's migration of
//! a small [`ScriptedGuest`], and where its pieces are.

use std::sync::OnceLock;
use std::time::Duration;

use ramstream_codec::{decode_all, DecoderOptions, Event};
use ramstream_reference_sender::{migrate, SendOptions};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::config::capability;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;

use crate::records::word;
use crate::{ScriptStep, ScriptedGuest};

/// Guest RAM of the real stream: 8 MiB, the smallest the reference machine lays out.
pub const RAM: u64 = 8 << 20;
/// Each of its two blocks (`pc.ram` and `ram1`): 4 MiB, 1024 pages.
pub const BLOCK: u64 = RAM / 2;

/// The reference machine's layout for [`RAM`].
pub fn layout() -> MemoryLayout {
    MemoryLayout::with_ram_size(RAM).expect("the reference machine lays out 8 MiB")
}

/// The guest the real stream migrates: data in both blocks, including the last page of
/// each, and 8 ballooned pages of `ram1` (so the stream carries a balloon run in its
/// balloon map and in its VM state).
pub fn source_guest() -> ScriptedGuest {
    let mut g = ScriptedGuest::new(layout(), vec![]);
    for (block, first, count, seed) in [(0, 0, 64, 1), (0, 1023, 1, 2), (1, 1000, 24, 3)] {
        g.apply(&ScriptStep::Write {
            block,
            first,
            count,
            seed,
        });
    }
    g.apply(&ScriptStep::Inflate {
        block: 1,
        first: 200,
        count: 8,
    });
    g
}

/// A stream written by the reference sender from [`source_guest`] (the balloon extension
/// announced), and where its pieces are.
#[derive(Debug)]
pub struct RealStream {
    /// The whole stream.
    pub stream: Vec<u8>,
    /// Offset of the configuration section.
    pub config_at: usize,
    /// Offset of the first item after the configuration.
    pub after_config: usize,
    /// Offset of the MEM_SIZE record.
    pub mem_size_at: usize,
    /// Offset of the record after MEM_SIZE.
    pub after_mem_size: usize,
    /// Offset of the first item after the first PART section header of `ram`.
    pub after_first_part: usize,
    /// Offset of the first device section (after the last `ram` section).
    pub devices_at: usize,
    /// The `ram` section id.
    pub ram_id: u32,
}

/// The real stream, written once per process.
pub fn real_stream() -> &'static RealStream {
    static REAL: OnceLock<RealStream> = OnceLock::new();
    REAL.get_or_init(|| {
        let opts = SendOptions {
            downtime_limit: Duration::from_secs(3600),
            ..SendOptions::default()
        };
        let mut stream = Vec::new();
        migrate(&mut source_guest(), &mut stream, &opts, &mut |_| {}).expect("migrate");
        let events = decode_all(
            &stream,
            DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1),
        )
        .expect("the reference sender's stream decodes");
        let pos =
            |f: &dyn Fn(&Event<'_>) -> bool| events.iter().position(|(_, e)| f(e)).expect("event");
        let c = pos(&|e| matches!(e, Event::Configuration(_)));
        let m = pos(&|e| matches!(e, Event::MemSize(_)));
        let p = pos(&|e| matches!(e, Event::SectionPart { .. }));
        let d = pos(&|e| matches!(e, Event::Device(_)));
        let Event::Configuration(cfg) = &events[c].1 else {
            unreachable!()
        };
        assert!(
            cfg.has_capability(capability::RAMSTREAM_BALLOON_V1),
            "balloon records need the extension announced"
        );
        let ram_id = events
            .iter()
            .find_map(|(_, e)| match e {
                Event::SectionStart(h) => Some(h.section_id),
                _ => None,
            })
            .expect("a ram section");
        let at = |i: usize| events[i].0 as usize;
        RealStream {
            config_at: at(c),
            after_config: at(c + 1),
            mem_size_at: at(m),
            after_mem_size: at(m + 1),
            after_first_part: at(p + 1),
            devices_at: at(d),
            ram_id,
            stream: stream.clone(),
        }
    })
}

impl RealStream {
    /// The stream up to `cut`, then `records`, then [`RealStream::ram_end`]. Returns the
    /// stream and the offset of each of `records`.
    pub fn splice(&self, cut: usize, records: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
        let mut s = self.stream[..cut].to_vec();
        let mut at = Vec::new();
        for rec in records {
            at.push(s.len() as u64);
            s.extend_from_slice(rec);
        }
        s.extend(self.ram_end());
        (s, at)
    }

    /// EOS, the `ram` section's footer and EOF: what ends a stream cut inside a `ram`
    /// section (it then lacks the device sections, so a receiver refuses it).
    pub fn ram_end(&self) -> Vec<u8> {
        let mut s = word(RamFlags::EOS.bits());
        s.push(SectionType::FOOTER.0);
        s.extend_from_slice(&self.ram_id.to_be_bytes());
        s.push(SectionType::EOF.0);
        s
    }
}
