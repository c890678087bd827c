//! The receiver's error type: what was refused or failed, with the stream offset where the
//! stream is to blame. Refusals of the stream itself come from the loader
//! ([`ramstream_migrate::Error`]: offset, record, block).

use std::io;

use ramstream_codec::balloon::BalloonMapError;
use ramstream_codec::extension::ExtensionError;
use ramstream_migrate::{BlockDigestCheck, RamBlockLayout};

use crate::dest::{DestError, Verification};

/// What went wrong; in every case the destination guest was not resumed (except
/// [`RecvErrorKind::Verify`], which happens after resuming).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvErrorKind {
    /// Reading failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// Reading a multifd channel failed.
    #[error("multifd channel {}: connection: {source}", channel.map_or("?".to_string(), |c| c.to_string()))]
    ChannelIo {
        /// The channel id, once its initial packet was read.
        channel: Option<u8>,
        /// The reader's error.
        #[source]
        source: io::Error,
    },
    /// The loader refused the stream: malformed (the codec's kind, in
    /// [`ramstream_migrate::ErrorKind::Stream`]), another target page size, a MEM_SIZE that
    /// changes the first, a page record for a ballooned page, a bad balloon record, or guest
    /// memory refused a write. Nothing was written for the refused record.
    #[error("stream: {0}")]
    Load(ramstream_migrate::Error),
    /// The input closed inside a record or section, or before the EOF section (the loader's
    /// error says where).
    #[error("stream ended early ({0}); refusing to resume the guest")]
    EndedEarly(ramstream_migrate::Error),
    /// An item starting at `offset` does not fit in the read buffer.
    #[error("the item at offset {offset} is larger than the {buffer}-byte read buffer")]
    ItemTooLarge {
        /// Stream offset of the item.
        offset: u64,
        /// The buffer's size.
        buffer: usize,
    },
    /// The configuration at `offset` names another machine type than the reference
    /// machine's.
    #[error("configuration at offset {offset}: machine type {found:?} is not {expected:?}")]
    MachineType {
        /// Stream offset of the configuration section.
        offset: u64,
        /// The stream's machine type.
        found: String,
        /// The reference machine's.
        expected: &'static str,
    },
    /// The MEM_SIZE record at `offset` announces blocks the reference machine cannot be
    /// built with. Nothing was mapped or written for it. (A later MEM_SIZE that changes the
    /// first is the loader's refusal: [`RecvErrorKind::Load`].)
    #[error("MEM_SIZE at offset {offset}: blocks {announced:?} {reason}")]
    LayoutMismatch {
        /// Stream offset of the MEM_SIZE record.
        offset: u64,
        /// The `(idstr, used_length)` list the record announced.
        announced: Vec<(String, u64)>,
        /// What does not fit.
        reason: LayoutRefusal,
    },
    /// A device section at `offset` the reference machine does not have.
    #[error("unknown device section {idstr:?} instance {instance_id} at offset {offset}")]
    UnknownSection {
        /// Stream offset of the section.
        offset: u64,
        /// Its idstr.
        idstr: String,
        /// Its instance id.
        instance_id: u32,
    },
    /// An extension section of SPEC.md §13 (the digest, or a reference state section) whose
    /// body starts at stream offset `offset` is malformed or newer than known.
    #[error("section {idstr:?} with its body at offset {offset}: {source}")]
    Extension {
        /// Stream offset of the section body's first byte.
        offset: u64,
        /// The section's idstr.
        idstr: String,
        /// What is wrong, with the offset inside the body.
        #[source]
        source: ExtensionError,
    },
    /// The stream reached EOF without this section (SPEC.md §13.4, §13.6).
    #[error("no {idstr} section before EOF; refusing to resume the guest")]
    MissingSection {
        /// The missing section's idstr.
        idstr: &'static str,
    },
    /// The stream reached EOF without a MEM_SIZE record: there is no guest to resume.
    #[error("no MEM_SIZE record before EOF; refusing to resume the guest")]
    NoMemSize,
    /// The memory layout section whose body starts at `offset` is not valid JSON for a
    /// layout.
    #[error("memory layout section at offset {offset}: {source}")]
    LayoutSection {
        /// Stream offset of the section body.
        offset: u64,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The memory layout section whose body starts at `offset` is not the layout MEM_SIZE
    /// gave (SPEC.md §13.6).
    #[error("memory layout section at offset {offset} does not match MEM_SIZE")]
    LayoutSectionMismatch {
        /// Stream offset of the section body.
        offset: u64,
    },
    /// The stream's balloon records and the VM state disagree on the ballooned pages.
    #[error("the balloon map of the ram section ({stream_pages} pages) differs from the VM state's ({state_pages} pages)")]
    BalloonMismatch {
        /// Pages the stream's balloon records leave ballooned.
        stream_pages: u64,
        /// Pages the VM state's balloon runs hold.
        state_pages: u64,
    },
    /// A balloon run of the VM state lies outside the blocks.
    #[error("VM state balloon run: {0}")]
    StateBalloon(BalloonMapError),
    /// The digest section does not fit the stream's blocks, or guest memory could not be
    /// read to check it (the loader's error).
    #[error("RAM digest: {0}; refusing to resume the guest")]
    Digest(ramstream_migrate::Error),
    /// The RAM digest does not match the memory received.
    #[error("RAM digest mismatch in {0}; refusing to resume the guest")]
    DigestMismatch(BlockDigestCheck),
    /// The destination guest could not be built for the layout.
    #[error("building the destination guest: {0}")]
    Build(#[source] DestError),
    /// The vCPU or VM state could not be restored.
    #[error("restoring the device state: {0}")]
    Restore(#[source] DestError),
    /// The guest could not be resumed.
    #[error("resuming the guest: {0}")]
    Resume(#[source] DestError),
    /// The resumed guest did not prove that it runs intact.
    #[error("verification after resume: {0}")]
    Verify(VerifyError),
}

/// Why a MEM_SIZE record cannot be the reference machine's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutRefusal {
    /// The total cannot be laid out by the reference machine.
    #[error("cannot be laid out by the reference machine: {0}")]
    Unplaceable(#[source] ramstream_reference_vmm::Error),
    /// The blocks (names, lengths, order) are not the reference machine's for that total.
    #[error("are not the reference machine's layout for that total, {expected:?}")]
    NotReferenceLayout {
        /// The blocks the reference machine has for that total.
        expected: Vec<RamBlockLayout>,
    },
}

/// Why the resumed guest failed its verification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Asking the guest failed.
    #[error("{0}")]
    Guest(#[source] DestError),
    /// The guest answered: its heartbeat did not advance or its self-check failed.
    #[error("the guest failed its check: {0:?}")]
    Failed(Verification),
}

/// A failed receive.
#[derive(Debug, thiserror::Error)]
#[error("receive failed after {bytes_received} bytes: {kind}")]
pub struct RecvError {
    /// Bytes read before the failure.
    pub bytes_received: u64,
    /// Whether the destination guest was resumed (false for every error before resuming).
    pub resumed: bool,
    /// The cause.
    #[source]
    pub kind: RecvErrorKind,
}
