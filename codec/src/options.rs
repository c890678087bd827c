//! Decoder options: the out-of-band settings a QEMU destination has locally.

use ramstream_spec::{limits, ram, Dialect};

/// What a ZERO record's fill byte may be (SPEC.md §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ZeroFill {
    /// QEMU 7.2: any fill byte is accepted and the page is filled with it.
    #[default]
    AcceptAny,
    /// QEMU 8.2+: a non-zero fill byte is an error.
    RejectNonZero,
}

/// Limits on untrusted input (SPEC.md §10). Defaults come from `ramstream_spec::limits`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most RAM blocks in a MEM_SIZE list.
    pub max_ram_blocks: usize,
    /// Largest MEM_SIZE total (the destination's configured guest size, if known).
    pub max_ram_total: u64,
    /// Longest machine type name.
    pub max_machine_type_len: u32,
    /// Most capabilities in the capabilities subsection.
    pub max_capabilities: u32,
    /// Largest VMDESCRIPTION JSON.
    pub max_vmdesc_len: u32,
    /// Largest FULL device section body.
    pub max_device_section_len: usize,
    /// Most runs in one balloon record.
    pub max_balloon_runs: u64,
    /// Most pages one multifd packet may hold, so most page offsets a
    /// [`multifd::ChannelDecoder`](crate::multifd::ChannelDecoder) buffers (SPEC.md §14.3).
    pub max_multifd_packet_pages: u32,
}

impl Limits {
    /// These limits with [`max_ram_blocks`](Self::max_ram_blocks) set to `v`.
    #[must_use]
    pub fn with_max_ram_blocks(mut self, v: usize) -> Self {
        self.max_ram_blocks = v;
        self
    }

    /// These limits with [`max_ram_total`](Self::max_ram_total) set to `v`.
    #[must_use]
    pub fn with_max_ram_total(mut self, v: u64) -> Self {
        self.max_ram_total = v;
        self
    }

    /// These limits with [`max_machine_type_len`](Self::max_machine_type_len) set to `v`.
    #[must_use]
    pub fn with_max_machine_type_len(mut self, v: u32) -> Self {
        self.max_machine_type_len = v;
        self
    }

    /// These limits with [`max_capabilities`](Self::max_capabilities) set to `v`.
    #[must_use]
    pub fn with_max_capabilities(mut self, v: u32) -> Self {
        self.max_capabilities = v;
        self
    }

    /// These limits with [`max_vmdesc_len`](Self::max_vmdesc_len) set to `v`.
    #[must_use]
    pub fn with_max_vmdesc_len(mut self, v: u32) -> Self {
        self.max_vmdesc_len = v;
        self
    }

    /// These limits with [`max_device_section_len`](Self::max_device_section_len) set to `v`.
    #[must_use]
    pub fn with_max_device_section_len(mut self, v: usize) -> Self {
        self.max_device_section_len = v;
        self
    }

    /// These limits with [`max_balloon_runs`](Self::max_balloon_runs) set to `v`.
    #[must_use]
    pub fn with_max_balloon_runs(mut self, v: u64) -> Self {
        self.max_balloon_runs = v;
        self
    }

    /// These limits with [`max_multifd_packet_pages`](Self::max_multifd_packet_pages) set to `v`.
    #[must_use]
    pub fn with_max_multifd_packet_pages(mut self, v: u32) -> Self {
        self.max_multifd_packet_pages = v;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ram_blocks: limits::MAX_RAM_BLOCKS,
            max_ram_total: limits::MAX_RAM_TOTAL,
            max_machine_type_len: limits::MAX_MACHINE_TYPE_LEN,
            max_capabilities: limits::MAX_CAPABILITIES,
            max_vmdesc_len: limits::MAX_VMDESC_LEN,
            max_device_section_len: limits::MAX_DEVICE_SECTION_LEN,
            max_balloon_runs: limits::MAX_BALLOON_RUNS,
            max_multifd_packet_pages: ramstream_spec::multifd::MAX_PACKET_PAGES,
        }
    }
}

/// Whether an optional MEM_SIZE field is present (SPEC.md §7.1). QEMU decides this from
/// local settings, not from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldPresence {
    /// Decide from the stream where it can tell (the configuration's capabilities).
    #[default]
    Auto,
    /// Always present.
    Present,
    /// Never present.
    Absent,
}

/// Whether the decoder reads mapped-ram files (SPEC.md §7.9).
///
/// A mapped-ram file (QEMU 9.0+, `migrate file:PATH` with capability `mapped-ram`) is not a
/// stream: after each MEM_SIZE block entry and its header, the writer seeks past the
/// block's bitmap and pages regions, and the pages never appear as records. A reader that
/// only looks at page records would rebuild zero RAM from it, so reading one is opt-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MappedRam {
    /// Refuse a configuration announcing `mapped-ram` (`UnsupportedCapability`): the right
    /// setting for a receiver, whose input is a socket, not a file.
    #[default]
    Refuse,
    /// Read a mapped-ram file: MEM_SIZE reads each block's header into
    /// [`MemSize::mapped_ram`](crate::MemSize::mapped_ram) and consumes the regions up to the
    /// next block entry, so the MEM_SIZE event spans (nearly) the whole file. The pages are
    /// then read from the input with [`mapped_ram`](crate::mapped_ram).
    Read,
}

/// The decoder's settings. `Default` is a QEMU 7.2 x86 destination with default machine
/// properties (configuration section and section footers on).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderOptions {
    /// What flag 0x200 means (SPEC.md §6.2, §9).
    pub dialect: Dialect,
    /// Target page bits when the configuration carries no `target-page-bits` subsection.
    pub default_page_bits: u32,
    /// Whether the configuration section must be present (`send-configuration`).
    pub require_configuration: bool,
    /// Whether sections carry footers (`send-section-footer`).
    pub section_footers: bool,
    /// The ZERO fill policy.
    pub zero_fill: ZeroFill,
    /// MEM_SIZE `mr_addr` fields (x-ignore-shared); `Auto` follows the capabilities subsection.
    pub mr_addr: FieldPresence,
    /// MEM_SIZE `page_size` fields (postcopy-ram with a block page size different from the
    /// host's); `Auto` means absent, as on x86 with ordinary RAM.
    pub block_page_size: FieldPresence,
    /// Input limits.
    pub limits: Limits,
    /// Whether mapped-ram files are read (SPEC.md §7.9); refused by default.
    pub mapped_ram: MappedRam,
    /// The file offset of the input's first byte (`N` of `file:PATH,offset=N`; 0 by default).
    /// Every offset the decoder reports counts from the start of the file, as the absolute
    /// offsets in a mapped-ram header do.
    pub file_offset: u64,
}

impl DecoderOptions {
    /// These options with [`dialect`](Self::dialect) set to `v`.
    ///
    /// ```
    /// use ramstream_codec::DecoderOptions;
    /// use ramstream_spec::Dialect;
    /// let opts = DecoderOptions::default().with_dialect(Dialect::Qemu8_1);
    /// assert_eq!(opts.dialect, Dialect::Qemu8_1);
    /// ```
    #[must_use]
    pub fn with_dialect(mut self, v: Dialect) -> Self {
        self.dialect = v;
        self
    }

    /// These options with [`default_page_bits`](Self::default_page_bits) set to `v`.
    #[must_use]
    pub fn with_default_page_bits(mut self, v: u32) -> Self {
        self.default_page_bits = v;
        self
    }

    /// These options with [`require_configuration`](Self::require_configuration) set to `v`.
    #[must_use]
    pub fn with_require_configuration(mut self, v: bool) -> Self {
        self.require_configuration = v;
        self
    }

    /// These options with [`section_footers`](Self::section_footers) set to `v`.
    #[must_use]
    pub fn with_section_footers(mut self, v: bool) -> Self {
        self.section_footers = v;
        self
    }

    /// These options with [`zero_fill`](Self::zero_fill) set to `v`.
    #[must_use]
    pub fn with_zero_fill(mut self, v: ZeroFill) -> Self {
        self.zero_fill = v;
        self
    }

    /// These options with [`mr_addr`](Self::mr_addr) set to `v`.
    #[must_use]
    pub fn with_mr_addr(mut self, v: FieldPresence) -> Self {
        self.mr_addr = v;
        self
    }

    /// These options with [`block_page_size`](Self::block_page_size) set to `v`.
    #[must_use]
    pub fn with_block_page_size(mut self, v: FieldPresence) -> Self {
        self.block_page_size = v;
        self
    }

    /// These options with [`limits`](Self::limits) set to `v`.
    #[must_use]
    pub fn with_limits(mut self, v: Limits) -> Self {
        self.limits = v;
        self
    }

    /// These options with [`mapped_ram`](Self::mapped_ram) set to `v`.
    #[must_use]
    pub fn with_mapped_ram(mut self, v: MappedRam) -> Self {
        self.mapped_ram = v;
        self
    }

    /// These options with [`file_offset`](Self::file_offset) set to `v`.
    #[must_use]
    pub fn with_file_offset(mut self, v: u64) -> Self {
        self.file_offset = v;
        self
    }
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            dialect: Dialect::default(),
            default_page_bits: ram::TARGET_PAGE_BITS_X86,
            require_configuration: true,
            section_footers: true,
            zero_fill: ZeroFill::default(),
            mr_addr: FieldPresence::Auto,
            block_page_size: FieldPresence::Auto,
            limits: Limits::default(),
            mapped_ram: MappedRam::Refuse,
            file_offset: 0,
        }
    }
}
