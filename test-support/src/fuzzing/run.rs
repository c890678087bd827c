//! Feeding a decoder in chunks, and comparing what two decodings of the same stream made
//! of it.

use ramstream_codec::{Decoder, DecoderOptions, Error, ErrorKind, Event, Status, ZeroPage};

/// Chunk sizes for feeding a decoder, from a one-byte seed: seed 0 gives one chunk of
/// everything; otherwise sizes come from a small PRNG, 1..=8 bytes when bit 7 is set, else
/// 1..=4096.
pub fn split_sizes(seed: u8) -> impl Iterator<Item = usize> {
    let mut x = u32::from(seed).wrapping_mul(0x9E37_79B9) | 1;
    let max = if seed & 0x80 != 0 { 8 } else { 4096 };
    std::iter::from_fn(move || {
        if seed == 0 {
            return Some(usize::MAX);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        Some(1 + (x as usize) % max)
    })
}

/// What a decoder made of a stream: the events, then how it ended.
#[derive(Debug)]
pub struct Run<'a> {
    /// `(offset, event)` pairs, in order.
    pub events: Vec<(u64, Event<'a>)>,
    /// `Ok` when the decoder reached `Done`, else the error that stopped it.
    pub end: Result<(), Error>,
}

/// Decodes `stream` fed in chunks of `sizes`, calling `finish` only once everything was
/// fed, and checks the `Decoder` contract on every call.
pub fn decode_in_chunks<'a>(
    stream: &'a [u8],
    opts: DecoderOptions,
    sizes: impl IntoIterator<Item = usize>,
) -> Run<'a> {
    let mut sizes = sizes.into_iter();
    let mut dec = Decoder::new(opts);
    let mut events = Vec::new();
    let (mut pos, mut avail, mut finished) = (0usize, 0usize, false);
    loop {
        let at = dec.offset();
        assert_eq!(at, pos as u64, "decoder offset drifted from bytes consumed");
        match dec.decode(&stream[pos..avail]) {
            Ok(Status::Event { event, consumed }) => {
                assert!(consumed > 0, "an event consumed nothing: {event:?}");
                assert!(pos + consumed <= avail, "consumed more than given");
                pos += consumed;
                events.push((at, event));
            }
            Ok(Status::NeedMore { needed }) => {
                assert!(!finished, "NeedMore after finish");
                assert!(needed >= 1, "NeedMore of 0 bytes");
                if avail == stream.len() {
                    dec.finish();
                    finished = true;
                } else {
                    let n = sizes.next().unwrap_or(usize::MAX);
                    avail = avail.saturating_add(n.max(1)).min(stream.len());
                }
            }
            Ok(Status::Done) => {
                assert!(finished && pos == stream.len(), "Done before the end");
                assert!(dec.is_done());
                return Run {
                    events,
                    end: Ok(()),
                };
            }
            Err(e) => {
                assert_eq!(
                    dec.decode(&stream[pos..avail])
                        .map(|_| ())
                        .unwrap_err()
                        .kind,
                    ErrorKind::Poisoned,
                    "a failed decoder must stay failed"
                );
                return Run {
                    events,
                    end: Err(e),
                };
            }
        }
    }
}

/// Decodes `stream` in one piece with `finish` called first (what
/// [`decode_all`](ramstream_codec::decode_all) does, keeping the events before an error).
pub fn decode_whole(stream: &[u8], opts: DecoderOptions) -> Run<'_> {
    // With runs of at most 0 records, every record is decoded as itself.
    decode_with_zero_runs(stream, opts, 0)
}

/// Decodes `stream` in one piece as a loader does, taking each run of ZERO records the
/// decoder finds ([`Decoder::peek_zero_run`], at most `max_run` at a time) in one step and
/// writing it out as the [`Event::Zero`] events it stands for: the same run as
/// [`decode_whole`] gives, or the shortcut is wrong.
pub fn decode_with_zero_runs(stream: &[u8], opts: DecoderOptions, max_run: u64) -> Run<'_> {
    let mut dec = Decoder::new(opts);
    dec.finish();
    let mut events = Vec::new();
    let mut pos = 0;
    loop {
        if let Some(run) = dec.peek_zero_run(&stream[pos..], max_run) {
            assert!(run.pages() >= 1 && run.pages() <= max_run, "{run:?}");
            // Half of it, then the rest: a run may be taken in parts.
            let first = run.pages().div_ceil(2);
            for i in 0..run.pages() {
                let zero = ZeroPage {
                    addr: run.page(i),
                    continued: true,
                    fill: 0,
                };
                events.push((run.offset_of(i), Event::Zero(zero)));
            }
            pos += dec.consume_zero_run(&run, first).expect("a fresh run");
            if first < run.pages() {
                let rest = dec
                    .peek_zero_run(&stream[pos..], max_run)
                    .expect("the rest");
                assert_eq!(rest.first(), run.page(first));
                assert!(rest.pages() >= run.pages() - first);
                pos += dec
                    .consume_zero_run(&rest, run.pages() - first)
                    .expect("a fresh run");
            }
            continue;
        }
        let at = dec.offset();
        match dec.decode(&stream[pos..]) {
            Ok(Status::Event { event, consumed }) => {
                pos += consumed;
                events.push((at, event));
            }
            Ok(Status::NeedMore { .. }) => panic!("a finished decoder asked for more"),
            Ok(Status::Done) => {
                return Run {
                    events,
                    end: Ok(()),
                }
            }
            Err(e) => {
                return Run {
                    events,
                    end: Err(e),
                }
            }
        }
    }
}

/// Errors that may legitimately depend on where the input was split: the count of
/// trailing bytes is what had arrived when the decoder saw them.
fn normalise(e: &Error) -> Error {
    let mut e = e.clone();
    if let ErrorKind::TrailingBytes { count } = &mut e.kind {
        *count = 0;
    }
    e
}

/// Asserts that two runs of the same stream agree: same events at the same offsets, and
/// the same error (kind, offset, record, block) or both done.
pub fn assert_same_run(whole: &Run<'_>, split: &Run<'_>, what: &str) {
    assert_eq!(whole.events, split.events, "{what}: events differ");
    match (&whole.end, &split.end) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => assert_eq!(normalise(a), normalise(b), "{what}: errors differ"),
        (a, b) => panic!("{what}: one-shot ended {a:?}, split ended {b:?}"),
    }
}
