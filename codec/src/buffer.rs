//! [`StreamBuffer`]: the input buffer of a receiver whose stream arrives in pieces, sans-IO.

use core::fmt;

use ramstream_spec::extension::BALLOON_RUN_LEN;

use crate::options::Limits;

/// The buffer a streaming receiver reads into and decodes from: the unread window, dropped
/// from the front as the decoder consumes it, compacted and grown (up to a cap) when more
/// must be read.
///
/// Sans-IO: the caller reads into [`StreamBuffer::spare`] and reports how much it got with
/// [`StreamBuffer::filled`]; it decodes from [`StreamBuffer::window`] and drops what was
/// used with [`StreamBuffer::consume`]. The buffer counts the bytes read and the most bytes
/// it held at once. Page payloads the decoder hands out borrow the window until the next
/// `consume`/`spare`. With the `io` feature, `io::StreamReader` drives it from a
/// `std::io::Read`.
///
/// ```
/// use ramstream_codec::{Decoder, Event, Status, StreamBuffer};
///
/// // Header, configuration, EOF, arriving in pieces of 5 bytes into a 16-byte buffer.
/// let stream = b"QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2\x00";
/// let mut pieces = stream.chunks(5);
/// let mut buf = StreamBuffer::new(8, 64);
/// let mut dec = Decoder::new(Default::default());
/// let mut kinds = Vec::new();
/// loop {
///     match dec.decode(buf.window()).unwrap() {
///         Status::Event { event, consumed } => {
///             kinds.push(format!("{:?}", event.kind()));
///             buf.consume(consumed);
///         }
///         Status::NeedMore { .. } => match pieces.next() {
///             Some(piece) => {
///                 buf.spare(piece.len()).unwrap()[..piece.len()].copy_from_slice(piece);
///                 buf.filled(piece.len());
///             }
///             None => dec.finish(),
///         },
///         Status::Done => break,
///     }
/// }
/// assert_eq!(kinds, ["Header", "Configuration", "Eof"]);
/// assert_eq!((buf.offset(), buf.bytes_read()), (27, 27));
/// assert!(buf.high_water() <= 19); // the configuration section, and what came with it
///
/// // An item larger than the cap: the buffer says which, and how large the cap is.
/// let mut small = StreamBuffer::new(4, 4);
/// small.spare(1).unwrap().copy_from_slice(b"QEVM");
/// small.filled(4);
/// let err = small.spare(1).unwrap_err();
/// assert_eq!((err.offset, err.cap), (0, 4));
/// ```
#[derive(Clone, Debug)]
pub struct StreamBuffer {
    buf: Vec<u8>,
    /// The window is `buf[start..end]`.
    start: usize,
    end: usize,
    cap: usize,
    /// The stream offset of `buf[start]`: every byte consumed so far.
    offset: u64,
    bytes_read: u64,
    high_water: usize,
}

/// Room for what accompanies the largest item [`StreamBuffer::max_item_len`] counts: a
/// section header with the longest idstr, a footer and the look-ahead the device-section
/// framing needs, a configuration section, a command.
const ITEM_SLACK: usize = 1 << 20;

/// The longest MEM_SIZE block entry: idstr length byte, idstr, `used_length`, `mr_addr`,
/// block page size, and a mapped-ram header (SPEC.md §7.1, §7.9).
const MEM_SIZE_ENTRY_MAX: usize = 1 + 255 + 8 + 8 + 8 + 28;

impl StreamBuffer {
    /// A buffer of `initial` bytes that grows, when an item needs it, up to `cap` bytes
    /// (`initial` is at most `cap`; `cap` is at least 1). `StreamBuffer::new(n, n)` is a
    /// fixed buffer.
    pub fn new(initial: usize, cap: usize) -> Self {
        let cap = cap.max(1);
        StreamBuffer {
            buf: vec![0; initial.min(cap)],
            start: 0,
            end: 0,
            cap,
            offset: 0,
            bytes_read: 0,
            high_water: 0,
        }
    }

    /// A buffer of 1 MiB that grows up to [`StreamBuffer::max_item_len`] of `limits`: every
    /// item a decoder with these limits accepts fits.
    pub fn for_limits(limits: &Limits) -> Self {
        StreamBuffer::new(1 << 20, Self::max_item_len(limits))
    }

    /// An upper bound on the bytes a [`Decoder`](crate::Decoder) with these limits needs
    /// in its input at once for one item of a stream: the largest device section, the
    /// VMDESCRIPTION, a balloon record with the most runs, a MEM_SIZE record with the most
    /// blocks, with room for headers and look-ahead. (Not for a mapped-ram file read with
    /// [`MappedRam::Read`](crate::MappedRam::Read), whose MEM_SIZE spans the block regions.)
    ///
    /// ```
    /// use ramstream_codec::{Limits, StreamBuffer};
    /// let limits = Limits::default();
    /// assert!(StreamBuffer::max_item_len(&limits) > limits.max_device_section_len);
    /// ```
    pub fn max_item_len(limits: &Limits) -> usize {
        let runs = usize::try_from(limits.max_balloon_runs).unwrap_or(usize::MAX);
        let vmdesc = usize::try_from(limits.max_vmdesc_len).unwrap_or(usize::MAX);
        [
            limits.max_device_section_len,
            vmdesc,
            runs.saturating_mul(BALLOON_RUN_LEN),
            limits.max_ram_blocks.saturating_mul(MEM_SIZE_ENTRY_MAX),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
        .saturating_add(ITEM_SLACK)
    }

    /// The unread bytes: what was read and not yet consumed.
    pub fn window(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The stream offset of the window's first byte: the bytes consumed so far, counted from
    /// the first byte read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Drops `n` bytes from the front of the window (the bytes a decoder consumed).
    ///
    /// # Panics
    ///
    /// If `n` is larger than the window.
    pub fn consume(&mut self, n: usize) {
        let len = self.end - self.start;
        assert!(n <= len, "consumed {n} bytes of a {len}-byte window");
        self.start += n;
        self.offset += n as u64;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Room to read into, after the window: moves the window to the front of the buffer,
    /// then grows the buffer (doubling, up to the cap) if fewer than `min` bytes, and at
    /// least one, are free. Write what was read at the start of the returned slice and
    /// report it with [`StreamBuffer::filled`]. The slice may be shorter than `min` once
    /// the buffer is at its cap.
    ///
    /// Fails when the window already fills the cap: the item starting at
    /// [`StreamBuffer::offset`] is larger than the buffer may grow.
    pub fn spare(&mut self, min: usize) -> Result<&mut [u8], ItemTooLarge> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let min = min.max(1);
        if self.buf.len() - self.end < min && self.buf.len() < self.cap {
            let want = self
                .end
                .saturating_add(min)
                .max(self.buf.len().saturating_mul(2));
            self.buf.resize(want.min(self.cap), 0);
        }
        if self.end == self.buf.len() {
            return Err(ItemTooLarge {
                offset: self.offset,
                cap: self.cap,
            });
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Says that `n` bytes were written at the start of the last [`StreamBuffer::spare`]:
    /// they join the window.
    ///
    /// # Panics
    ///
    /// If `n` is larger than the spare room.
    pub fn filled(&mut self, n: usize) {
        let room = self.buf.len() - self.end;
        assert!(n <= room, "filled {n} bytes of {room} spare");
        self.end += n;
        self.bytes_read += n as u64;
        self.high_water = self.high_water.max(self.end - self.start);
    }

    /// Every byte read into the buffer so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The most bytes the window held at once.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// The largest the buffer may grow.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The buffer's current size.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// The unread bytes fill a [`StreamBuffer`] up to its cap and the decoder needs more: the
/// item starting at `offset` is larger than the buffer may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemTooLarge {
    /// The stream offset of the item (the window's first byte).
    pub offset: u64,
    /// The buffer's cap in bytes.
    pub cap: usize,
}

impl fmt::Display for ItemTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at offset {:#x}: the item is larger than the {}-byte read buffer",
            self.offset, self.cap
        )
    }
}

impl std::error::Error for ItemTooLarge {}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(b: &mut StreamBuffer, bytes: &[u8]) {
        let spare = b.spare(bytes.len()).unwrap();
        let n = bytes.len().min(spare.len());
        spare[..n].copy_from_slice(&bytes[..n]);
        b.filled(n);
    }

    #[test]
    fn compacts_before_growing() {
        let mut b = StreamBuffer::new(8, 8);
        fill(&mut b, b"abcdefgh");
        b.consume(6);
        assert_eq!((b.window(), b.offset()), (&b"gh"[..], 6));
        fill(&mut b, b"ijklmn");
        assert_eq!(b.window(), b"ghijklmn");
        assert_eq!((b.capacity(), b.bytes_read(), b.high_water()), (8, 14, 8));
    }

    #[test]
    fn grows_up_to_the_cap_then_refuses() {
        let mut b = StreamBuffer::new(2, 5);
        fill(&mut b, b"ab");
        fill(&mut b, b"c");
        assert_eq!(b.capacity(), 4, "doubled");
        fill(&mut b, b"dxyz");
        assert_eq!((b.window(), b.capacity()), (&b"abcdx"[..], 5), "capped");
        b.consume(1);
        assert_eq!(b.spare(9).unwrap().len(), 1, "what the cap leaves");
        b.filled(0);
        fill(&mut b, b"y");
        assert_eq!(b.spare(1).unwrap_err(), ItemTooLarge { offset: 1, cap: 5 });
    }

    #[test]
    fn grows_at_once_for_a_large_need() {
        let mut b = StreamBuffer::new(4, 1 << 20);
        assert_eq!(b.spare(1000).unwrap().len(), 1000);
    }

    #[test]
    #[should_panic(expected = "consumed 3 bytes of a 2-byte window")]
    fn consuming_more_than_the_window_panics() {
        let mut b = StreamBuffer::new(4, 4);
        fill(&mut b, b"ab");
        b.consume(3);
    }

    #[test]
    fn default_limits_fit_every_item() {
        let l = Limits::default();
        let cap = StreamBuffer::max_item_len(&l);
        assert!(cap >= l.max_vmdesc_len as usize + ITEM_SLACK);
        assert!(cap >= l.max_balloon_runs as usize * BALLOON_RUN_LEN);
    }
}
