//! The configuration section (SPEC.md §3).

use ramstream_spec::config::{
    capability, SUBSECTION_CAPABILITIES, SUBSECTION_PREFIX, SUBSECTION_TARGET_PAGE_BITS,
    SUBSECTION_UUID, SUBSECTION_VERSION, UUID_LEN,
};
use ramstream_spec::ram::{TARGET_PAGE_BITS_MAX, TARGET_PAGE_BITS_MIN};
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;

use crate::cursor::{Cursor, PResult, Stop};
use crate::error::{Error, ErrorKind};
use crate::event::{Configuration, Event};
use crate::kind::RecordKind;
use crate::options::{DecoderOptions, MappedRam};

fn err(at: u64, kind: ErrorKind) -> Stop {
    Error::new(at, kind)
        .in_record(RecordKind::Configuration)
        .into()
}

/// Parses the configuration after its 0x07 byte. `input_complete` tells whether the end of
/// the input is the end of the stream (then no subsection can follow).
pub(crate) fn parse<'a>(
    c: &mut Cursor<'a>,
    opts: &DecoderOptions,
    input_complete: bool,
) -> PResult<Event<'a>> {
    let at = c.offset();
    let len = c.u32()?;
    if len > opts.limits.max_machine_type_len {
        return Err(err(
            at,
            ErrorKind::MachineTypeTooLong {
                len,
                limit: opts.limits.max_machine_type_len,
            },
        ));
    }
    let name = c.take(len as usize)?;
    let machine_type = core::str::from_utf8(name).map_err(|_| {
        err(
            at + 4,
            ErrorKind::NotUtf8 {
                what: "machine type",
            },
        )
    })?;
    let mut cfg = Configuration {
        machine_type,
        target_page_bits: None,
        capabilities: None,
        uuid: None,
    };
    loop {
        match c.peek_u8() {
            Err(Stop::Incomplete(_)) if input_complete => break,
            Err(e) => return Err(e),
            Ok(b) if b != SectionType::SUBSECTION.0 => break,
            Ok(_) => {}
        }
        let sub_at = c.offset();
        c.u8()?;
        let sub = c.counted_str("subsection name")?;
        if !sub.starts_with(SUBSECTION_PREFIX) {
            return Err(err(sub_at, ErrorKind::StraySubsection { name: sub.into() }));
        }
        let version = c.u32()?;
        let known = [
            SUBSECTION_TARGET_PAGE_BITS,
            SUBSECTION_CAPABILITIES,
            SUBSECTION_UUID,
        ];
        if !known.contains(&sub) {
            return Err(err(
                sub_at,
                ErrorKind::UnknownSubsection { name: sub.into() },
            ));
        }
        if version != SUBSECTION_VERSION {
            return Err(err(
                sub_at,
                ErrorKind::SubsectionVersion {
                    name: sub.into(),
                    version,
                },
            ));
        }
        if sub == SUBSECTION_TARGET_PAGE_BITS {
            let bits_at = c.offset();
            let bits = c.u32()?;
            if !(TARGET_PAGE_BITS_MIN..=TARGET_PAGE_BITS_MAX).contains(&bits) {
                return Err(err(bits_at, ErrorKind::BadPageBits { bits }));
            }
            cfg.target_page_bits = Some(bits);
        } else if sub == SUBSECTION_CAPABILITIES {
            let count_at = c.offset();
            let count = c.u32()?;
            if count > opts.limits.max_capabilities {
                return Err(err(count_at, ErrorKind::TooManyCapabilities { count }));
            }
            let mut caps = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let cap_at = c.offset();
                let cap = c.counted_str("capability name")?;
                check_capability(cap, opts).map_err(|k| err(cap_at, k))?;
                caps.push(cap);
            }
            cfg.capabilities = Some(caps);
        } else {
            let uuid = c.take(UUID_LEN)?;
            let mut u = [0u8; UUID_LEN];
            u.copy_from_slice(uuid);
            cfg.uuid = Some(u);
        }
    }
    Ok(Event::Configuration(cfg))
}

/// Whether this decoder accepts a stream announcing capability `name` (SPEC.md §3.3).
/// `mapped-ram` only when the options read mapped-ram files (SPEC.md §7.9).
pub(crate) fn check_capability(name: &str, opts: &DecoderOptions) -> Result<(), ErrorKind> {
    match name {
        capability::X_IGNORE_SHARED => Ok(()),
        capability::RAMSTREAM_BALLOON_V1 if opts.dialect == Dialect::RamstreamBalloonV1 => Ok(()),
        capability::MAPPED_RAM if opts.mapped_ram == MappedRam::Read => Ok(()),
        capability::MAPPED_RAM => Err(ErrorKind::UnsupportedCapability { name: name.into() }),
        // QEMU 7.2 accepts (and ignores) every capability name it knows.
        n if capability::QEMU_7_2_ALL.contains(&n) => Ok(()),
        _ => Err(ErrorKind::UnknownCapability { name: name.into() }),
    }
}
