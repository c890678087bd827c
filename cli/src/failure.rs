//! What a failed command prints: its message, where in the stream it failed (offset, record,
//! RAM block, multifd channel, when known), and a hint naming the flag that would fix it.
//! That is text on stderr; with `--json` also one JSON object on stdout (the same place the
//! command's result would have gone), so that stdout always holds exactly one JSON document.

use std::fmt;

use ramstream_codec::io::ReadError;
use ramstream_codec::ErrorKind as CodecKind;
use ramstream_reference_receiver::RecvErrorKind;
use ramstream_spec::config::capability;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::Dialect;
use serde::Serialize;

/// A failed command, described.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// Always `"failed"`.
    pub status: &'static str,
    /// The whole message, outermost context first.
    pub message: String,
    /// The stream offset (in a multifd channel: the channel's) of the refused record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The record being read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The RAM block idstr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// The multifd channel id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<u8>,
    /// The flag that would fix it, and how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A hint attached to an error as context (see [`retry_dialects`]): shown as the hint, not
/// as part of the message.
#[derive(Debug)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// When decoding a whole file with `decode`'s dialect failed: the other dialects that decode
/// it to the end are named in a [`Hint`] on the error. A balloon stream read as QEMU's
/// fails far from its cause (flag 0x200 read as a bare MULTIFD_FLUSH, its payload then
/// read as records), so the dialects are tried rather than guessed from the error.
pub fn retry_dialects(e: anyhow::Error, bytes: &[u8], decode: &crate::DecodeArgs) -> anyhow::Error {
    let decoding = e
        .chain()
        .any(|c| c.downcast_ref::<ramstream_codec::Error>().is_some());
    if !decoding {
        return e;
    }
    let fits: Vec<&str> = Dialect::ALL
        .into_iter()
        .filter(|&d| d != decode.dialect)
        .filter(|&d| {
            let mut opts = crate::input::file_options(decode);
            opts.dialect = d;
            ramstream_codec::decode_all(bytes, opts).is_ok()
        })
        .map(Dialect::name)
        .collect();
    match fits.first() {
        None => e,
        Some(first) => e.context(Hint(format!(
            "the stream decodes to its end with `--dialect {first}`{} (now --dialect {})",
            match &fits[1..] {
                [] => String::new(),
                more => format!(" (also: {})", more.join(", ")),
            },
            decode.dialect
        ))),
    }
}

/// Marks an error whose JSON object the command printed itself (with fields of its own):
/// `main` prints nothing more for it.
#[derive(Debug)]
pub struct Reported;

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reported")
    }
}

impl std::error::Error for Reported {}

/// The stream context found in an error chain.
#[derive(Default)]
struct Context {
    offset: Option<u64>,
    record: Option<String>,
    block: Option<String>,
    channel: Option<u8>,
    kind: Option<CodecKind>,
}

impl Context {
    fn codec(e: &ramstream_codec::Error) -> Self {
        Context {
            offset: Some(e.offset),
            record: e.record.map(|r| r.to_string()),
            block: e.block.clone(),
            channel: e.channel,
            kind: Some(e.kind.clone()),
        }
    }

    fn migrate(e: &ramstream_migrate::Error) -> Self {
        Context {
            offset: Some(e.offset),
            record: e.record.map(|r| r.to_string()),
            block: e.block.clone(),
            channel: e.channel(),
            kind: e.stream_kind().cloned(),
        }
    }

    fn at(offset: u64) -> Self {
        Context {
            offset: Some(offset),
            ..Default::default()
        }
    }

    /// The innermost error of the chain that knows where it happened.
    fn of(e: &anyhow::Error) -> Self {
        let mut found = Context::default();
        for cause in e.chain() {
            let here = if let Some(c) = cause.downcast_ref::<ramstream_codec::Error>() {
                Context::codec(c)
            } else if let Some(m) = cause.downcast_ref::<ramstream_migrate::Error>() {
                Context::migrate(m)
            } else if let Some(r) = cause.downcast_ref::<RecvErrorKind>() {
                match r {
                    RecvErrorKind::Load(m) | RecvErrorKind::EndedEarly(m) => Context::migrate(m),
                    RecvErrorKind::ItemTooLarge { offset, .. }
                    | RecvErrorKind::MachineType { offset, .. } => Context::at(*offset),
                    _ => continue,
                }
            } else if let Some(r) = cause.downcast_ref::<ReadError>() {
                Context::at(r.offset())
            } else {
                continue;
            };
            found = here;
        }
        found
    }
}

impl Failure {
    /// Describes `e`, the error of a command decoding with `dialect` (if it decodes).
    pub fn of(e: &anyhow::Error, dialect: Option<Dialect>) -> Self {
        let cx = Context::of(e);
        // A hint is the outermost context (`retry_dialects` adds it last).
        let tried = e.downcast_ref::<Hint>().map(|h| h.0.clone());
        let by_kind = cx.kind.as_ref().and_then(|k| dialect_hint(k, dialect));
        let hint = match (by_kind, tried.clone()) {
            (Some(k), Some(t)) => Some(format!("{k}; {t}")),
            (k, t) => k.or(t),
        };
        // The markers are the outermost context, and not part of the message.
        let marked = tried.is_some() || e.downcast_ref::<Reported>().is_some();
        let inner: Vec<String> = e
            .chain()
            .skip(marked.into())
            .map(|c| c.to_string())
            .collect();
        let message = inner.join(": ");
        Failure {
            status: "failed",
            message,
            offset: cx.offset,
            record: cx.record,
            block: cx.block,
            channel: cx.channel,
            hint,
        }
    }

    /// The JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| serde_json::json!({ "status": "failed", "message": self.message }))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\nhint: {h}")?;
        }
        Ok(())
    }
}

/// The `--dialect` to try when the decoder refused what another dialect reads (SPEC.md §9.1).
pub fn dialect_hint(kind: &CodecKind, dialect: Option<Dialect>) -> Option<String> {
    let in_force = dialect.map_or("the default".to_string(), |d| format!("--dialect {d}"));
    match kind {
        CodecKind::UnknownFlags { flags }
            if flags.without(RamFlags::CONTINUE) == RamFlags::X200 =>
        {
            Some(format!(
                "flag 0x200 is refused under {in_force}; --dialect chooses what it means: \
                 `--dialect qemu` (QEMU 8.1 to 11.1: MULTIFD_FLUSH), `--dialect kolhe-2016` or \
                 `--dialect ramstream-balloon-v1` (balloon records)"
            ))
        }
        CodecKind::UnknownCapability { name } if name == capability::RAMSTREAM_BALLOON_V1 => {
            Some(format!(
                "capability \"{name}\" is the ramstream balloon dialect's: decode with \
                 `--dialect ramstream-balloon-v1` (now {in_force})"
            ))
        }
        CodecKind::BalloonNotAnnounced => Some(format!(
            "a balloon record without capability \"{}\" is the older balloon dialect's: \
             decode with `--dialect kolhe-2016` (now {in_force})",
            capability::RAMSTREAM_BALLOON_V1
        )),
        CodecKind::DialectRejects { .. } => Some(format!(
            "the stream does not fit {in_force}: pick another with --dialect (qemu, qemu-7.2, \
             qemu-8.1+, kolhe-2016, ramstream-balloon-v1)"
        )),
        _ => None,
    }
}
