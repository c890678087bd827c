//! Entry point for the `receiver` fuzz target in `fuzz/` and for
//! `reference-receiver/tests/fuzz_corpus.rs`.
//!
//! [`receive_records`] splices the fuzz bytes into a real stream written by the reference
//! sender ([`real_stream`]: 8 MiB in two blocks, the balloon extension announced) and
//! receives the result into a [`CheckedDestination`]. It never panics on hostile input: any
//! `Ok` or `Err` is fine. It panics (naming the broken property) only when the receiver
//! breaks one of its contracts (SPEC.md §10.2, issue #8):
//!
//! - every page it writes or reads is inside a block of the layout it built the destination
//!   with, and is exactly one page (anything else would write outside guest memory);
//! - it builds a destination only for a layout within `max_ram_total`;
//! - a failed receive did not resume the guest, unless it failed verifying the resumed guest
//!   ([`RecvErrorKind::Verify`]); a successful one did.
//!
//! It is a plain function (not behind `cfg(fuzzing)`), so the committed corpus is replayed
//! by `cargo test` on a stable toolchain. One run is fast: no KVM, no sleeping, at most
//! 16 MiB of lazily touched memory.
//!
//! Input: `ctl, bytes…`. The bits of `ctl`:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–1 | where `bytes` go: 0 right after MEM_SIZE; 1 right after the first PART header of `ram`; 2 in place of MEM_SIZE; 3 before the first device section |
//! | 2 | append the rest of the real stream after `bytes` (from the splice point; for 2 from after MEM_SIZE) |
//! | 3 | the resumed guest fails its verification |
//! | 4–7 | read sizes: 0 reads as much as the receiver's buffer takes, otherwise a seed for reads of 1 to 4096 bytes |

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::time::Duration;

use ramstream_reference_receiver::{
    receive, Destination, ReceiveOptions, ReceiveReport, RecvError, RecvErrorKind,
};
use ramstream_reference_vmm::MemoryLayout;

use crate::real_stream::{real_stream, RAM};
use crate::CheckedDestination;

/// The largest guest the harness lets the receiver build (a MEM_SIZE may announce 8, 12
/// or 16 MiB; anything larger is refused by the decoder).
pub const MAX_RAM: u64 = 2 * RAM;

/// Where [`receive_records`] puts the fuzz bytes (`ctl` bits 0–1).
pub const AFTER_MEM_SIZE: u8 = 0;
/// See [`AFTER_MEM_SIZE`].
pub const AFTER_FIRST_PART: u8 = 1;
/// See [`AFTER_MEM_SIZE`].
pub const INSTEAD_OF_MEM_SIZE: u8 = 2;
/// See [`AFTER_MEM_SIZE`].
pub const BEFORE_DEVICES: u8 = 3;
/// `ctl` bit: append the rest of the real stream.
pub const WITH_TAIL: u8 = 1 << 2;
/// `ctl` bit: the resumed guest fails its verification.
pub const VERIFY_FAILS: u8 = 1 << 3;

/// The stream [`receive_records`] receives for `data` (`ctl, bytes…`); `None` for empty
/// input.
pub fn spliced_stream(data: &[u8]) -> Option<Vec<u8>> {
    let (&ctl, bytes) = data.split_first()?;
    let r = real_stream();
    let (cut, resume) = match ctl & 3 {
        AFTER_MEM_SIZE => (r.after_mem_size, r.after_mem_size),
        AFTER_FIRST_PART => (r.after_first_part, r.after_first_part),
        INSTEAD_OF_MEM_SIZE => (r.mem_size_at, r.after_mem_size),
        _ => (r.devices_at, r.devices_at),
    };
    let mut s = Vec::with_capacity(r.stream.len() + bytes.len());
    s.extend_from_slice(&r.stream[..cut]);
    s.extend_from_slice(bytes);
    if ctl & WITH_TAIL != 0 {
        s.extend_from_slice(&r.stream[resume..]);
    }
    Some(s)
}

/// The `receiver` target: see the module docs for the input and the properties checked.
pub fn receive_records(data: &[u8]) {
    let _ = receive_spliced(data);
}

/// [`receive_records`], returning what the receiver returned (`None` for empty input), so
/// tests can see which path an input reaches.
pub fn receive_spliced(data: &[u8]) -> Option<Result<ReceiveReport, RecvError>> {
    let stream = spliced_stream(data)?;
    let ctl = data[0];
    let resumed = Rc::new(Cell::new(false));
    let flag = Rc::clone(&resumed);
    let opts = ReceiveOptions {
        buffer_size: 64 * 1024,
        verify_timeout: Duration::from_millis(1),
        max_ram_total: MAX_RAM,
    };
    let input = Reads {
        data: &stream,
        seed: u64::from(ctl >> 4),
    };
    let make = move |l: &MemoryLayout| {
        assert!(
            l.total_bytes() <= MAX_RAM,
            "receiver bug: a destination of {} bytes, above max_ram_total {MAX_RAM}",
            l.total_bytes()
        );
        Ok(CheckedDestination::new(l, flag, ctl & VERIFY_FAILS != 0))
    };
    let r = receive(input, make, &opts);
    match &r {
        Ok((dest, report)) => assert!(
            resumed.get() && dest.resumed() && report.guest_resumed && ctl & VERIFY_FAILS == 0,
            "receiver bug: Ok without a verified resume ({report:?})"
        ),
        Err(e) => {
            assert_eq!(
                e.resumed,
                resumed.get(),
                "receiver bug: {e} misreports resuming"
            );
            assert!(
                !e.resumed || matches!(e.kind, RecvErrorKind::Verify(_)),
                "receiver bug: resumed the guest, then failed with {e}"
            );
        }
    }
    Some(r.map(|(_, report)| report))
}

/// The stream handed out in reads of seeded sizes (`seed` 0: as much as asked for).
struct Reads<'a> {
    data: &'a [u8],
    seed: u64,
}

impl Read for Reads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = buf.len();
        if self.seed != 0 {
            // xorshift64; sizes log-uniform in 1..=4096.
            let x = &mut self.seed;
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            let bits = (*x >> 60) % 13;
            n = n.min(1 + (*x as usize & ((1 << bits) - 1)));
        }
        n = n.min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
