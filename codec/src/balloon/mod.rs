//! Balloon records under flag 0x200 (SPEC.md §9): the 2016 dialect and ramstream's v1.

pub(crate) mod wire;

/// A balloon record as it appeared on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonRecord<'a> {
    /// The raw record word.
    pub word: u64,
    /// The payload after the word, borrowed.
    pub payload: &'a [u8],
}
