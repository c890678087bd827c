//! Sender errors: what failed, in which phase, after how many bytes.

use std::fmt;

/// An error of the guest (KVM or fake) while migrating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuestError {
    /// The reference VMM failed.
    #[error(transparent)]
    Vmm(#[from] ramstream_reference_vmm::Error),
    /// Anything else (fake guests, layout serialisation).
    #[error("{0}")]
    Other(String),
}

/// The phase of a migration, as QEMU's `query-migrate` would name the moment: the engine's
/// [`ramstream_migrate::Phase`] and, before it, connecting to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Connecting to the destination.
    Connect,
    /// Header, configuration, `ram` START with MEM_SIZE.
    Setup,
    /// The first pass over all RAM.
    Bulk,
    /// A dirty-page iteration (PART sections).
    Iterate,
    /// Guest paused: the last pages (END), device state, digest, EOF.
    StopAndCopy,
    /// The migration finished.
    Completed,
}

impl Phase {
    /// The engine's phase, `None` for [`Phase::Connect`] (before the engine runs).
    pub fn engine(self) -> Option<ramstream_migrate::Phase> {
        use ramstream_migrate::Phase as P;
        Some(match self {
            Phase::Connect => return None,
            Phase::Setup => P::Setup,
            Phase::Bulk => P::Bulk,
            Phase::Iterate => P::Iterate,
            Phase::StopAndCopy => P::StopAndCopy,
            Phase::Completed => P::Completed,
        })
    }
}

impl From<ramstream_migrate::Phase> for Phase {
    fn from(p: ramstream_migrate::Phase) -> Self {
        use ramstream_migrate::Phase as P;
        match p {
            P::Setup => Phase::Setup,
            P::Bulk => Phase::Bulk,
            P::Iterate => Phase::Iterate,
            P::StopAndCopy => Phase::StopAndCopy,
            _ => Phase::Completed,
        }
    }
}

/// The engine's names (`bulk stage`, `dirty iteration`, ...), and `connect`.
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.engine() {
            Some(p) => p.fmt(f),
            None => f.write_str("connect"),
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// Writing to the destination failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The guest failed.
    #[error("guest: {0}")]
    Guest(#[from] GuestError),
    /// The encoder refused a record (a bug).
    #[error("encoder: {0}")]
    Encode(#[from] ramstream_codec::Error),
    /// An extension section body (SPEC.md §13) could not be written: an idstr or a state
    /// blob too long for its length field.
    #[error("extension section: {0}")]
    Extension(#[from] ramstream_codec::extension::ExtensionError),
    /// An option was invalid.
    #[error("{0}")]
    Config(String),
    /// The precopy engine refused a call or its input (a bug in the shell).
    #[error("engine: {0}")]
    Engine(ramstream_migrate::Error),
}

/// A guest read failure comes back as the guest's own error; anything else as the engine's.
impl From<ramstream_migrate::Error> for SendErrorKind {
    fn from(e: ramstream_migrate::Error) -> Self {
        let ramstream_migrate::Error {
            offset,
            record,
            block,
            kind,
        } = e;
        let kind = match kind {
            ramstream_migrate::ErrorKind::Guest { addr, source } => {
                match source.downcast::<GuestError>() {
                    Ok(g) => return SendErrorKind::Guest(*g),
                    Err(source) => ramstream_migrate::ErrorKind::Guest { addr, source },
                }
            }
            ramstream_migrate::ErrorKind::Stream(k) => {
                let mut e = ramstream_codec::Error::new(offset, k);
                (e.record, e.block) = (record, block);
                return SendErrorKind::Encode(e);
            }
            ramstream_migrate::ErrorKind::Extension(x) => return SendErrorKind::Extension(x),
            other => other,
        };
        SendErrorKind::Engine(ramstream_migrate::Error {
            offset,
            record,
            block,
            kind,
        })
    }
}

/// A failed migration: the phase, the iteration, the bytes sent so far, and whether the
/// source guest was left running (it always is when it was running before).
#[derive(Debug)]
pub struct SendError {
    /// The phase that failed.
    pub phase: Phase,
    /// The dirty iteration (0 = bulk stage).
    pub iteration: u32,
    /// Bytes written to the destination before the failure.
    pub bytes_sent: u64,
    /// Whether the source guest runs again after the failure.
    pub guest_running: bool,
    /// The cause.
    pub kind: SendErrorKind,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "migration failed in {} (iteration {}) after {} bytes sent: {}; source guest {}",
            self.phase,
            self.iteration,
            self.bytes_sent,
            self.kind,
            if self.guest_running {
                "keeps running"
            } else {
                "is NOT running"
            }
        )
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}
