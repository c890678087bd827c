//! Confirming the decoder's device-section splits with the VMDESCRIPTION (SPEC.md §5.2).
//!
//! The streaming decoder ends a FULL section's body at the first footer whose follower is
//! plausible; that rule can in principle split too early. Once the trailer has arrived, each
//! body can be walked with its description: a body the description consumes exactly is a
//! confirmed split.

use super::{decode_device, DeviceDescription, VmDescription, VmdescError};
use crate::event::DeviceSection;

/// What [`check_splits`] found, section by section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SplitCheck {
    /// Sections whose body the description consumed exactly.
    pub confirmed: usize,
    /// Sections whose body the description ends before or after: the split (or the
    /// stream) is wrong.
    pub disagreements: Vec<SplitFinding>,
    /// Sections that could not be checked: no description for them, or the walker could
    /// not follow the description (an error other than a length disagreement).
    pub unchecked: Vec<SplitFinding>,
}

impl SplitCheck {
    /// True when no section disagrees with its description.
    pub fn is_consistent(&self) -> bool {
        self.disagreements.is_empty()
    }
}

/// One section that was not confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SplitFinding {
    /// The section's idstr.
    pub idstr: String,
    /// Its instance id.
    pub instance_id: u32,
    /// Stream offset of its body.
    pub body_offset: u64,
    /// Its body length as split by the decoder.
    pub body_len: usize,
    /// Why it is not confirmed.
    pub reason: String,
}

/// Walks every device section (in stream order) with the next unused description for its
/// `(idstr, instance_id)` and sorts the sections into confirmed, disagreeing and unchecked.
///
/// ```
/// use ramstream_codec::vmdesc::{check_splits, VmDescription};
/// use ramstream_codec::{DeviceSection, SectionHeader};
/// use ramstream_spec::stream::SectionType;
///
/// let desc = VmDescription::parse(br#"{"page_size": 4096, "devices": [
///     {"name": "timer", "instance_id": 0, "vmsd_name": "timer", "version": 2,
///      "fields": [{"name": "ticks", "type": "int64", "size": 8}]}]}"#).unwrap();
/// let header = SectionHeader {
///     section_type: SectionType::FULL,
///     section_id: 3,
///     idstr: "timer",
///     instance_id: 0,
///     version_id: 2,
/// };
/// let good = DeviceSection { header, body_offset: 100, body: &[0; 8] };
/// assert_eq!(check_splits(&desc, [&good]).confirmed, 1);
/// // A body cut 3 bytes early (a split in the wrong place) disagrees.
/// let early = DeviceSection { header, body_offset: 100, body: &[0; 5] };
/// assert!(!check_splits(&desc, [&early]).is_consistent());
/// ```
pub fn check_splits<'s, 'a: 's>(
    desc: &VmDescription,
    sections: impl IntoIterator<Item = &'s DeviceSection<'a>>,
) -> SplitCheck {
    let mut used = vec![false; desc.devices.len()];
    let mut check = SplitCheck::default();
    for s in sections {
        let finding = |reason: String| SplitFinding {
            idstr: s.header.idstr.to_string(),
            instance_id: s.header.instance_id,
            body_offset: s.body_offset,
            body_len: s.body.len(),
            reason,
        };
        let next = desc.devices.iter().enumerate().find(|(i, d)| {
            !used[*i] && d.name == s.header.idstr && d.instance_id == s.header.instance_id
        });
        let Some((i, d)) = next else {
            check
                .unchecked
                .push(finding("the VMDESCRIPTION does not describe it".into()));
            continue;
        };
        used[i] = true;
        match walk(d, s.body) {
            Ok(()) => check.confirmed += 1,
            Err(e) if ends_elsewhere(&e) => check.disagreements.push(finding(e.to_string())),
            Err(e) => check.unchecked.push(finding(e.to_string())),
        }
    }
    check
}

/// Errors that say the body ends somewhere other than where its description does (too
/// short for a field, an array or a subsection, or bytes left over), as opposed to a
/// description the walker cannot follow.
fn ends_elsewhere(e: &VmdescError) -> bool {
    matches!(
        e,
        VmdescError::TrailingBytes { .. }
            | VmdescError::Truncated { .. }
            | VmdescError::ArrayTooLong { .. }
            | VmdescError::SizeMismatch { .. }
            | VmdescError::MissingSubsection { .. }
            | VmdescError::UnknownSubsection { .. }
    )
}

fn walk(d: &DeviceDescription, body: &[u8]) -> Result<(), VmdescError> {
    decode_device(d, body).map(drop)
}
