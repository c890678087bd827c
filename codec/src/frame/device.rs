//! Finding the end of a FULL device section (SPEC.md §5.2).
//!
//! Device state is not length-prefixed. With section footers on, the body ends at the first
//! `0x7E be32(section_id)` that is followed by a plausible next top-level item: a section
//! header whose fields are well formed, a command QEMU accepts, or EOF followed by the end
//! of the stream or a VMDESCRIPTION. When the stream has a VMDESCRIPTION, the split is
//! cross-checked against the device's described layout by `vmdesc` (see the inspect tool).

use ramstream_spec::stream::{SectionType, FOOTER_LEN};

use crate::frame::command::check_len;
use ramstream_spec::stream::Command;

/// The verdict on the bytes after a candidate footer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plausible {
    Yes,
    No,
    /// At least this many more bytes are needed to decide.
    NeedMore(usize),
}

/// What the scanner knows about the rest of the stream.
pub(crate) struct ScanContext<'s> {
    /// Section ids of live (iterative) sections started so far.
    pub live_ids: &'s [u32],
    /// Whether the input ends where the stream ends.
    pub input_complete: bool,
    /// The vmdesc length limit.
    pub max_vmdesc_len: u32,
}

fn need(have: &[u8], n: usize, ctx: &ScanContext<'_>) -> Option<Plausible> {
    if have.len() >= n {
        None
    } else if ctx.input_complete {
        Some(Plausible::No)
    } else {
        Some(Plausible::NeedMore(n - have.len()))
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Judges whether `next` (the bytes right after a candidate footer) starts a valid item.
pub(crate) fn plausible_next(next: &[u8], ctx: &ScanContext<'_>) -> Plausible {
    if let Some(p) = need(next, 1, ctx) {
        return p;
    }
    match SectionType(next[0]) {
        SectionType::EOF => {
            if next.len() == 1 && ctx.input_complete {
                return Plausible::Yes;
            }
            if let Some(p) = need(next, 2, ctx) {
                return p;
            }
            if next[1] != SectionType::VMDESCRIPTION.0 {
                return Plausible::No;
            }
            if let Some(p) = need(next, 6, ctx) {
                return p;
            }
            let len = be32(&next[2..6]);
            if len > ctx.max_vmdesc_len {
                return Plausible::No;
            }
            if len == 0 {
                return Plausible::Yes;
            }
            if let Some(p) = need(next, 7, ctx) {
                return p;
            }
            if next[6] != b'{' {
                return Plausible::No;
            }
            Plausible::Yes
        }
        SectionType::START | SectionType::FULL => {
            if let Some(p) = need(next, 6, ctx) {
                return p;
            }
            let len = next[5] as usize;
            if len == 0 {
                return Plausible::No;
            }
            if let Some(p) = need(next, 6 + len + 8, ctx) {
                return p;
            }
            let idstr = &next[6..6 + len];
            if !idstr.iter().all(|b| (0x20..0x7f).contains(b)) {
                return Plausible::No;
            }
            let instance = be32(&next[6 + len..]);
            let version = be32(&next[10 + len..]);
            if instance > 0xffff || version > 0xffff {
                return Plausible::No;
            }
            Plausible::Yes
        }
        SectionType::PART | SectionType::END => {
            if let Some(p) = need(next, 5, ctx) {
                return p;
            }
            if ctx.live_ids.contains(&be32(&next[1..5])) {
                Plausible::Yes
            } else {
                Plausible::No
            }
        }
        SectionType::COMMAND => {
            if let Some(p) = need(next, 5, ctx) {
                return p;
            }
            let cmd = Command(u16::from_be_bytes([next[1], next[2]]));
            let len = u16::from_be_bytes([next[3], next[4]]);
            if check_len(cmd, len).is_ok() {
                Plausible::Yes
            } else {
                Plausible::No
            }
        }
        _ => Plausible::No,
    }
}

/// The result of scanning a device body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The body is `body[..len]`; the footer starts at `len`.
    Found(usize),
    /// More input is needed; positions before `resume` are ruled out.
    NeedMore { needed: usize, resume: usize },
    /// No footer within `limit` bytes.
    TooLong,
}

/// Scans `rest` (the bytes after a FULL header) for the body's end, starting at `from`.
pub(crate) fn scan(
    rest: &[u8],
    section_id: u32,
    from: usize,
    limit: usize,
    ctx: &ScanContext<'_>,
) -> Scan {
    let id = section_id.to_be_bytes();
    let mut i = from;
    loop {
        if i > limit {
            return Scan::TooLong;
        }
        let Some(p) = rest[i.min(rest.len())..]
            .iter()
            .position(|&b| b == SectionType::FOOTER.0)
        else {
            if rest.len() > limit {
                return Scan::TooLong;
            }
            return Scan::NeedMore {
                needed: 1,
                resume: rest.len().max(i),
            };
        };
        i += p;
        if i > limit {
            return Scan::TooLong;
        }
        if rest.len() < i + FOOTER_LEN {
            return Scan::NeedMore {
                needed: i + FOOTER_LEN - rest.len(),
                resume: i,
            };
        }
        if rest[i + 1..i + FOOTER_LEN] == id {
            match plausible_next(&rest[i + FOOTER_LEN..], ctx) {
                Plausible::Yes => return Scan::Found(i),
                Plausible::NeedMore(needed) => return Scan::NeedMore { needed, resume: i },
                Plausible::No => {}
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(complete: bool) -> ScanContext<'static> {
        ScanContext {
            live_ids: &[2],
            input_complete: complete,
            max_vmdesc_len: 1 << 20,
        }
    }

    #[test]
    fn finds_footer_before_eof_at_end() {
        let body = [1u8, 0x7e, 0, 0, 0, 9, 0]; // a fake footer for id 9 inside the body
        let mut s = body.to_vec();
        s.extend_from_slice(&[0x7e, 0, 0, 0, 5, 0x00]);
        assert_eq!(scan(&s, 5, 0, 1 << 20, &ctx(true)), Scan::Found(body.len()));
        // Without the end of input the EOF could still be followed by a trailer.
        assert!(matches!(
            scan(&s, 5, 0, 1 << 20, &ctx(false)),
            Scan::NeedMore { .. }
        ));
    }

    #[test]
    fn rejects_implausible_followers() {
        // Footer-like bytes followed by a bogus section byte are body bytes.
        let s = [0x7e, 0, 0, 0, 5, 0x42, 0x7e, 0, 0, 0, 5, 0x03, 0, 0, 0, 2];
        assert_eq!(scan(&s, 5, 0, 1 << 20, &ctx(false)), Scan::Found(6));
        // PART of an unknown live section is not plausible.
        let s = [0x7e, 0, 0, 0, 5, 0x02, 0, 0, 0, 7];
        assert!(matches!(
            scan(&s, 5, 0, 1 << 20, &ctx(false)),
            Scan::NeedMore { .. }
        ));
    }

    #[test]
    fn limit_is_enforced() {
        let s = vec![0u8; 100];
        assert_eq!(scan(&s, 5, 0, 10, &ctx(false)), Scan::TooLong);
    }
}
