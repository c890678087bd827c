//! Limits and decoder options for the harness, chosen so that no input makes it allocate
//! without bound.

use ramstream_codec::{DecoderOptions, FieldPresence, Limits, ZeroFill};
use ramstream_spec::Dialect;

/// Limits for fuzzing: small enough that no input makes the harness allocate without bound.
pub fn fuzz_limits() -> Limits {
    Limits::default()
        .with_max_ram_blocks(64)
        .with_max_ram_total(1 << 30)
        .with_max_vmdesc_len(1 << 20)
        .with_max_device_section_len(1 << 20)
        .with_max_balloon_runs(1 << 16)
}

/// Most pages a harness [`RamImage`](ramstream_codec::RamImage) may hold; further page records are
/// decoded but not applied (`RamImage` allocates lazily, one page per written page, so this
/// bounds memory).
pub const MAX_RESIDENT_PAGES: usize = 2048;

/// The dialects a control byte's bits 0–1 choose: the strict QEMU 7.2 loader, the default
/// (any upstream QEMU), and the two balloon dialects. (`qemu-8.1+` differs from the default
/// only by refusing `SWITCHOVER_START`, which the command tests pin.)
pub const FUZZ_DIALECTS: [Dialect; 4] = [
    Dialect::Qemu7_2,
    Dialect::Qemu,
    Dialect::Kolhe2016,
    Dialect::RamstreamBalloonV1,
];

/// Decoder options chosen by one control byte: bits 0–1 dialect ([`FUZZ_DIALECTS`]), bit 2 strict ZERO fill,
/// bit 3 configuration optional, bit 4 no section footers, bits 5–6 `mr_addr` presence,
/// bit 7 `page_size` fields present. `0` is the default (QEMU 7.2) destination.
pub fn options_from_byte(ctl: u8) -> DecoderOptions {
    DecoderOptions::default()
        .with_dialect(FUZZ_DIALECTS[usize::from(ctl & 3)])
        .with_zero_fill(if ctl & 4 != 0 {
            ZeroFill::RejectNonZero
        } else {
            ZeroFill::AcceptAny
        })
        .with_require_configuration(ctl & 8 == 0)
        .with_section_footers(ctl & 16 == 0)
        .with_mr_addr(match (ctl >> 5) & 3 {
            1 => FieldPresence::Present,
            2 => FieldPresence::Absent,
            _ => FieldPresence::Auto,
        })
        .with_block_page_size(if ctl & 0x80 != 0 {
            FieldPresence::Present
        } else {
            FieldPresence::Auto
        })
        .with_limits(fuzz_limits())
}
