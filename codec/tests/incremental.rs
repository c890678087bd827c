//! Any split of the input gives the same events (SPEC.md §11).

mod common;

use ramstream_codec::{Decoder, DecoderOptions, Status};

/// Feeds `bytes` in chunks whose sizes come from `next_chunk`, returning the events.
fn feed(bytes: &[u8], mut next_chunk: impl FnMut() -> usize) -> Vec<String> {
    let mut dec = Decoder::new(DecoderOptions::default());
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut events = Vec::new();
    loop {
        let at = dec.offset();
        match dec.decode(&buf).unwrap() {
            Status::Event { event, consumed } => {
                events.push(format!("{at}: {event:?}"));
                buf.drain(..consumed);
            }
            Status::NeedMore { needed } => {
                assert!(needed >= 1);
                assert!(
                    fed < bytes.len(),
                    "decoder wants more after the whole input"
                );
                let n = next_chunk().max(1).min(bytes.len() - fed);
                buf.extend_from_slice(&bytes[fed..fed + n]);
                fed += n;
                if fed == bytes.len() {
                    dec.finish();
                }
            }
            Status::Done => break,
        }
    }
    assert!(buf.is_empty());
    events
}

#[test]
fn one_byte_at_a_time_matches_one_shot() {
    let s = common::small_stream();
    let expected = common::event_strings(&s, DecoderOptions::default());
    assert_eq!(expected.len(), 27);
    assert_eq!(feed(&s, || 1), expected);
}

#[test]
fn every_two_way_split_matches_one_shot() {
    let s = common::small_stream();
    let expected = common::event_strings(&s, DecoderOptions::default());
    for cut in 0..=s.len() {
        let mut first = true;
        let got = feed(&s, || {
            if first {
                first = false;
                cut
            } else {
                usize::MAX
            }
        });
        assert_eq!(got, expected, "split at {cut}");
    }
}

#[test]
fn random_splits_match_one_shot() {
    use rand::{RngExt, SeedableRng};
    let s = common::small_stream();
    let expected = common::event_strings(&s, DecoderOptions::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let max = rng.random_range(1..6000);
        assert_eq!(feed(&s, || rng.random_range(1..=max)), expected);
    }
}

#[test]
fn need_more_never_consumes_or_changes_state() {
    let s = common::small_stream();
    let mut dec = Decoder::new(DecoderOptions::default());
    // Offer a prefix, then the whole input: the first event is the same either way.
    assert!(matches!(
        dec.decode(&s[..5]).unwrap(),
        Status::NeedMore { needed: 3 }
    ));
    assert_eq!(dec.offset(), 0);
    assert!(matches!(
        dec.decode(&s).unwrap(),
        Status::Event { consumed: 8, .. }
    ));
}
