//! Telling a device section apart as one of ramstream's extension sections (SPEC.md §13).

use ramstream_spec::extension::{digest as digest_ids, reference};

use super::digest::DigestSection;
use super::error::ExtensionError;
use super::state::decode_state_body;
use crate::DeviceSection;

/// A FULL section of SPEC.md §13, its body decoded (state blobs borrowed from the input).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionSection<'a> {
    /// `ramstream/ram-digest` (SPEC.md §13.2).
    Digest(DigestSection),
    /// `ramstream/vcpu`: the vCPU state blob (SPEC.md §13.6).
    Vcpu(&'a [u8]),
    /// `ramstream/vm`: the VM state blob (clock, interrupt controllers, balloon runs).
    Vm(&'a [u8]),
    /// `ramstream/memory-layout`: the reference machine's memory layout as JSON.
    MemoryLayout(&'a [u8]),
}

impl<'a> ExtensionSection<'a> {
    /// Decodes `section` if its idstr is one of SPEC.md §13's: `Ok(None)` for any other
    /// section; an error for a version id above the one implemented (SPEC.md §13.3) or a
    /// malformed body.
    pub fn from_device(section: &DeviceSection<'a>) -> Result<Option<Self>, ExtensionError> {
        let h = &section.header;
        Self::decode(h.idstr, h.version_id, section.body)
    }

    /// [`from_device`](Self::from_device) from a section's parts: its idstr, version id and
    /// body, for callers that hold a device blob rather than the decoder's
    /// [`DeviceSection`] (a destination engine's device events).
    pub fn decode(
        idstr: &str,
        version_id: u32,
        body: &'a [u8],
    ) -> Result<Option<Self>, ExtensionError> {
        let (idstr, supported) = match idstr {
            digest_ids::DIGEST_SECTION_IDSTR => (
                digest_ids::DIGEST_SECTION_IDSTR,
                digest_ids::DIGEST_SECTION_VERSION,
            ),
            reference::VCPU_SECTION_IDSTR => {
                (reference::VCPU_SECTION_IDSTR, reference::SECTION_VERSION)
            }
            reference::VM_SECTION_IDSTR => {
                (reference::VM_SECTION_IDSTR, reference::SECTION_VERSION)
            }
            reference::LAYOUT_SECTION_IDSTR => {
                (reference::LAYOUT_SECTION_IDSTR, reference::SECTION_VERSION)
            }
            _ => return Ok(None),
        };
        if version_id > supported {
            return Err(ExtensionError::SectionVersion {
                idstr,
                found: version_id,
                supported,
            });
        }
        Ok(Some(match idstr {
            digest_ids::DIGEST_SECTION_IDSTR => {
                ExtensionSection::Digest(DigestSection::decode(body)?)
            }
            reference::VCPU_SECTION_IDSTR => ExtensionSection::Vcpu(decode_state_body(body)?),
            reference::VM_SECTION_IDSTR => ExtensionSection::Vm(decode_state_body(body)?),
            _ => ExtensionSection::MemoryLayout(decode_state_body(body)?),
        }))
    }

    /// The section's idstr.
    pub fn idstr(&self) -> &'static str {
        match self {
            ExtensionSection::Digest(_) => digest_ids::DIGEST_SECTION_IDSTR,
            ExtensionSection::Vcpu(_) => reference::VCPU_SECTION_IDSTR,
            ExtensionSection::Vm(_) => reference::VM_SECTION_IDSTR,
            ExtensionSection::MemoryLayout(_) => reference::LAYOUT_SECTION_IDSTR,
        }
    }
}
