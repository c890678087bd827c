//! After the stream: the reference machine's device sections (SPEC.md §13.6) collected as
//! they arrive, then restored; the balloon cross-check, the digest check (SPEC.md §13.4),
//! resume and verification.

use std::time::{Duration, Instant};

use ramstream_codec::extension::digest::DigestSection;
use ramstream_codec::extension::ExtensionSection;
use ramstream_migrate::{DeviceBlob, Loader, PageRun};
use ramstream_reference_vmm::MemoryLayout;
use ramstream_spec::extension::{digest, reference};

use crate::dest::Destination;
use crate::error::{RecvErrorKind, VerifyError};
use crate::options::ReceiveReport;

/// The device sections of the reference machine, as they arrived.
#[derive(Default)]
pub(crate) struct DeviceSections {
    vcpu: Option<Vec<u8>>,
    vm: Option<Vec<u8>>,
    /// The layout JSON and its body's stream offset.
    layout: Option<(Vec<u8>, u64)>,
    digest: Option<DigestSection>,
}

impl DeviceSections {
    /// Keeps `d`, a section at stream offset `offset` whose body starts at `body_offset`;
    /// refuses a section the reference machine does not have, or a malformed one.
    pub(crate) fn take(
        &mut self,
        d: &DeviceBlob<'_>,
        offset: u64,
        body_offset: u64,
    ) -> Result<(), RecvErrorKind> {
        let section =
            ExtensionSection::decode(d.idstr, d.version_id, d.body).map_err(|source| {
                RecvErrorKind::Extension {
                    offset: body_offset,
                    idstr: d.idstr.to_string(),
                    source,
                }
            })?;
        match section {
            Some(ExtensionSection::Vcpu(b)) => self.vcpu = Some(b.to_vec()),
            Some(ExtensionSection::Vm(b)) => self.vm = Some(b.to_vec()),
            Some(ExtensionSection::MemoryLayout(b)) => {
                self.layout = Some((b.to_vec(), body_offset))
            }
            Some(ExtensionSection::Digest(digest)) => self.digest = Some(digest),
            _ => {
                return Err(RecvErrorKind::UnknownSection {
                    offset,
                    idstr: d.idstr.to_string(),
                    instance_id: d.instance_id,
                })
            }
        }
        Ok(())
    }
}

/// The stream is loaded: restores the device state, checks the balloon and the digest,
/// resumes the guest and verifies it. `report.resume_ms` counts from `eof`.
pub(crate) fn finish<D: Destination>(
    loader: &mut Loader<D>,
    sections: DeviceSections,
    report: &mut ReceiveReport,
    verify_timeout: Duration,
    eof: Instant,
) -> Result<(), RecvErrorKind> {
    let missing = |idstr| RecvErrorKind::MissingSection { idstr };
    let vcpu = sections
        .vcpu
        .ok_or_else(|| missing(reference::VCPU_SECTION_IDSTR))?;
    let vm = sections
        .vm
        .ok_or_else(|| missing(reference::VM_SECTION_IDSTR))?;
    let (layout, layout_at) = sections
        .layout
        .ok_or_else(|| missing(reference::LAYOUT_SECTION_IDSTR))?;
    let digest = sections
        .digest
        .ok_or_else(|| missing(digest::DIGEST_SECTION_IDSTR))?;
    let dest = loader.ram_mut().ok_or(RecvErrorKind::NoMemSize)?;
    let layout: MemoryLayout =
        serde_json::from_slice(&layout).map_err(|source| RecvErrorKind::LayoutSection {
            offset: layout_at,
            source,
        })?;
    if layout != *dest.memory_layout() {
        return Err(RecvErrorKind::LayoutSectionMismatch { offset: layout_at });
    }
    let runs = dest.restore(&vcpu, &vm).map_err(RecvErrorKind::Restore)?;
    report.ballooned_pages = runs.iter().map(|(_, r)| r.count).sum();
    // The digest counts every ballooned page as zero: the stream's and the VM state's.
    let ballooned = ballooned_pages(loader, &runs)?;
    let t = Instant::now();
    let check = D::verify_digest(loader, &digest, &ballooned).map_err(RecvErrorKind::Digest)?;
    report.digest_ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(bad) = check.first_mismatch() {
        return Err(RecvErrorKind::DigestMismatch(bad.clone()));
    }
    report.digest_verified = true;
    let dest = loader.ram_mut().ok_or(RecvErrorKind::NoMemSize)?;
    dest.resume().map_err(RecvErrorKind::Resume)?;
    report.resume_ms = eof.elapsed().as_secs_f64() * 1e3;
    report.guest_resumed = true;
    let t = Instant::now();
    let v = dest
        .verify(verify_timeout)
        .map_err(|e| RecvErrorKind::Verify(VerifyError::Guest(e)))?;
    report.verify_ms = t.elapsed().as_secs_f64() * 1e3;
    if !v.passed() {
        return Err(RecvErrorKind::Verify(VerifyError::Failed(v)));
    }
    report.verification = v;
    report.status = "completed".into();
    Ok(())
}

/// The stream's balloon map with the VM state's `runs` (`(guest region, run)`) added, after
/// checking that the two agree when the stream carries balloon records. Both count 4 KiB
/// target pages from the block's start; only the block numbering differs.
fn ballooned_pages<D: Destination>(
    loader: &Loader<D>,
    runs: &[(usize, PageRun)],
) -> Result<ramstream_codec::balloon::BalloonMap, RecvErrorKind> {
    let wire = loader.balloon();
    let state_pages = runs.iter().map(|(_, r)| r.count).sum();
    // Stream block `s` is guest region `loader.guest_block_of(s)`.
    let stream_block =
        |region| (0..wire.block_count()).find(|&s| loader.guest_block_of(s) == Some(region));
    if loader.stats().balloon_records > 0 {
        let mut listed: Vec<(usize, PageRun)> = (0..wire.block_count())
            .flat_map(|s| wire.runs(s).map(move |r| (s, r)))
            .collect();
        let mut state: Vec<(usize, PageRun)> = runs
            .iter()
            .map(|&(region, r)| (stream_block(region).unwrap_or(usize::MAX), r))
            .collect();
        listed.sort_unstable();
        state.sort_unstable();
        if listed != state {
            return Err(RecvErrorKind::BalloonMismatch {
                stream_pages: wire.total_ballooned_pages(),
                state_pages,
            });
        }
    }
    let mut map = wire.clone();
    for &(region, r) in runs {
        let block = stream_block(region).unwrap_or(usize::MAX);
        map.inflate(block, r.range())
            .map_err(RecvErrorKind::StateBalloon)?;
    }
    Ok(map)
}
