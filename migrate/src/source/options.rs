//! What a source decides before it starts: machine type, page size, XBZRLE, bandwidth,
//! downtime, the balloon and digest extensions, multifd.

use std::time::Duration;

use ramstream_codec::extension::digest::DigestAlgorithm;
use ramstream_spec::extension::reference;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86;

/// Options of a [`Source`](crate::Source), named after QEMU's migration parameters.
///
/// ```
/// use std::time::Duration;
/// use ramstream_migrate::SourceOptions;
/// let opts = SourceOptions::default()
///     .with_xbzrle_cache_size(Some(64 << 20)) // XBZRLE after the bulk pass
///     .with_max_bandwidth(Some(128 << 20)) // bytes per second
///     .with_downtime_limit(Duration::from_millis(300));
/// assert_eq!(opts.page_size, 4096);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceOptions {
    /// The configuration section's machine type. A QEMU destination refuses any other than
    /// its own; the default is the reference machine's, `ramstream-ref-v1`.
    pub machine_type: String,
    /// The target page size in bytes (4096 on x86); another is announced in the
    /// configuration's `target-page-bits`.
    pub page_size: usize,
    /// XBZRLE with a cache of this many bytes (a power of two, QEMU `xbzrle-cache-size`),
    /// used from the first dirty iteration on (SPEC.md §7.7); `None`: no XBZRLE.
    pub xbzrle_cache_size: Option<u64>,
    /// Bandwidth limit in bytes per second (QEMU `max-bandwidth`), enforced in 100 ms
    /// windows as QEMU's rate limiter does, lifted for stop-and-copy; `None`: unlimited.
    pub max_bandwidth: Option<u64>,
    /// Ask for the guest to stop once the remaining dirty bytes can be sent within this at
    /// the measured bandwidth (QEMU `downtime-limit`).
    pub downtime_limit: Duration,
    /// Ask for the guest to stop after this many dirty iterations even if not converged.
    pub max_iterations: u32,
    /// The balloon extension (SPEC.md §9): announce `x-ramstream-balloon-v1`, send the
    /// ballooned runs as full maps, and never read, test or send a ballooned page. A QEMU
    /// destination refuses such a stream at its configuration. Off by default.
    pub balloon: bool,
    /// End the device state with the RAM digest section (SPEC.md §13), so the destination
    /// can refuse to resume on memory that differs. A QEMU destination refuses such a
    /// stream ("Unknown savevm section"). On by default.
    pub digest: bool,
    /// The digest's algorithm (SPEC.md §13.2, §13.7). The default, sha256-chunked, is kept
    /// up to date during the precopy, so the stop-time cost follows the dirty pages;
    /// sha256-sparse hashes every resident page with the guest stopped.
    pub digest_algorithm: DigestAlgorithm,
    /// QEMU's capability `multifd` (SPEC.md §14): RAM pages travel on this many channels
    /// beside the main stream, written like QEMU 9.2 to 11.1 (see
    /// [`MultifdSendOptions`](crate::MultifdSendOptions)). Refused with `xbzrle_cache_size`
    /// (as QEMU 8.2+ refuses it) and with `balloon` (both use flag 0x200). Off by default.
    pub multifd: Option<crate::MultifdSendOptions>,
}

impl SourceOptions {
    /// These options with [`machine_type`](Self::machine_type) set to `v`.
    #[must_use]
    pub fn with_machine_type(mut self, v: String) -> Self {
        self.machine_type = v;
        self
    }

    /// These options with [`page_size`](Self::page_size) set to `v`.
    #[must_use]
    pub fn with_page_size(mut self, v: usize) -> Self {
        self.page_size = v;
        self
    }

    /// These options with [`xbzrle_cache_size`](Self::xbzrle_cache_size) set to `v`.
    #[must_use]
    pub fn with_xbzrle_cache_size(mut self, v: Option<u64>) -> Self {
        self.xbzrle_cache_size = v;
        self
    }

    /// These options with [`max_bandwidth`](Self::max_bandwidth) set to `v`.
    #[must_use]
    pub fn with_max_bandwidth(mut self, v: Option<u64>) -> Self {
        self.max_bandwidth = v;
        self
    }

    /// These options with [`downtime_limit`](Self::downtime_limit) set to `v`.
    #[must_use]
    pub fn with_downtime_limit(mut self, v: Duration) -> Self {
        self.downtime_limit = v;
        self
    }

    /// These options with [`max_iterations`](Self::max_iterations) set to `v`.
    #[must_use]
    pub fn with_max_iterations(mut self, v: u32) -> Self {
        self.max_iterations = v;
        self
    }

    /// These options with [`balloon`](Self::balloon) set to `v`.
    #[must_use]
    pub fn with_balloon(mut self, v: bool) -> Self {
        self.balloon = v;
        self
    }

    /// These options with [`digest`](Self::digest) set to `v`.
    #[must_use]
    pub fn with_digest(mut self, v: bool) -> Self {
        self.digest = v;
        self
    }

    /// These options with [`digest_algorithm`](Self::digest_algorithm) set to `v`.
    #[must_use]
    pub fn with_digest_algorithm(mut self, v: DigestAlgorithm) -> Self {
        self.digest_algorithm = v;
        self
    }

    /// These options with [`multifd`](Self::multifd) set to `v`.
    #[must_use]
    pub fn with_multifd(mut self, v: Option<crate::MultifdSendOptions>) -> Self {
        self.multifd = v;
        self
    }
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            machine_type: reference::MACHINE_TYPE.to_string(),
            page_size: TARGET_PAGE_SIZE_X86,
            xbzrle_cache_size: None,
            max_bandwidth: None,
            downtime_limit: Duration::from_millis(300),
            max_iterations: 30,
            balloon: false,
            digest: true,
            digest_algorithm: DigestAlgorithm::Sha256Chunked,
            multifd: None,
        }
    }
}
