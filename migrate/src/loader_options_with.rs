//! Chainable constructors of [`LoaderOptions`], kept apart from its definition so callers
//! outside the crate can build the `#[non_exhaustive]` struct field by field.

use ramstream_codec::DecoderOptions;

use crate::{DigestPolicy, LoaderOptions, Multifd, ZeroPages};

impl LoaderOptions {
    /// These options with [`decoder`](Self::decoder) set to `v`.
    #[must_use]
    pub fn with_decoder(mut self, v: DecoderOptions) -> Self {
        self.decoder = v;
        self
    }

    /// These options with [`page_size`](Self::page_size) set to `v`.
    #[must_use]
    pub fn with_page_size(mut self, v: usize) -> Self {
        self.page_size = v;
        self
    }

    /// These options with [`zero_pages`](Self::zero_pages) set to `v`.
    #[must_use]
    pub fn with_zero_pages(mut self, v: ZeroPages) -> Self {
        self.zero_pages = v;
        self
    }

    /// These options with [`allow_unsent_blocks`](Self::allow_unsent_blocks) set to `v`.
    #[must_use]
    pub fn with_allow_unsent_blocks(mut self, v: bool) -> Self {
        self.allow_unsent_blocks = v;
        self
    }

    /// These options with [`digest`](Self::digest) set to `v`.
    #[must_use]
    pub fn with_digest(mut self, v: DigestPolicy) -> Self {
        self.digest = v;
        self
    }

    /// These options with [`multifd`](Self::multifd) set to `v`.
    #[must_use]
    pub fn with_multifd(mut self, v: Multifd) -> Self {
        self.multifd = v;
        self
    }
}
