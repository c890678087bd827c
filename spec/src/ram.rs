//! The `ram` section, version 4: record word, flags and page geometry (SPEC.md §6–§7).

use core::fmt;
use core::ops::{BitAnd, BitOr};

/// The idstr of the RAM section (SPEC.md §6).
pub const SECTION_IDSTR: &str = "ram";

/// The instance id of the RAM section (SPEC.md §6).
pub const SECTION_INSTANCE_ID: u32 = 0;

/// The only `ram` section version QEMU has loaded since 0.13 (SPEC.md §6).
pub const SECTION_VERSION: u32 = 4;

/// Target page bits of x86 (and every target ramstream has tested) (SPEC.md §6.1).
pub const TARGET_PAGE_BITS_X86: u32 = 12;

/// Target page size of x86: 4096 bytes (SPEC.md §6.1).
pub const TARGET_PAGE_SIZE_X86: usize = 1 << TARGET_PAGE_BITS_X86;

/// The smallest target page bits of any QEMU target that migrates (32-bit ARM, 1 KiB pages).
/// Every flag must stay below `1 << TARGET_PAGE_BITS_MIN` (SPEC.md §6.2).
pub const TARGET_PAGE_BITS_MIN: u32 = 10;

/// The largest target page bits ramstream accepts from a `target-page-bits` subsection.
pub const TARGET_PAGE_BITS_MAX: u32 = 16;

/// The first flag value no record may ever use: `1 << TARGET_PAGE_BITS_MIN` (SPEC.md §6.2).
pub const FLAG_LIMIT: u64 = 1 << TARGET_PAGE_BITS_MIN;

/// Length of the record word (SPEC.md §6.1).
pub const RECORD_WORD_LEN: usize = 8;

/// Length of a ZERO record with CONTINUE: the record word and the fill byte, no idstr
/// (SPEC.md §7.4).
pub const ZERO_RECORD_CONTINUED_LEN: usize = RECORD_WORD_LEN + 1;

/// The low bits of a `ram` record word: a set of `RAM_SAVE_FLAG_*` values (SPEC.md §6.2).
///
/// An open newtype: bits this version does not name are kept and printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RamFlags(pub u64);

macro_rules! ram_flags {
    ($( $(#[$m:meta])* $name:ident = $v:expr, )*) => {
        impl RamFlags {
            $( $(#[$m])* pub const $name: RamFlags = RamFlags($v); )*
            const NAMED: &'static [(&'static str, u64)] = &[ $( (stringify!($name), $v), )* ];
        }
    };
}

ram_flags! {
    /// 0x001 `RAM_SAVE_FLAG_FULL`: obsolete since 2009, never sent; QEMU rejects it.
    FULL = 0x001,
    /// 0x002 `RAM_SAVE_FLAG_ZERO` (formerly COMPRESS): a page filled with one byte.
    ZERO = 0x002,
    /// 0x004 `RAM_SAVE_FLAG_MEM_SIZE`: the RAM block list (setup).
    MEM_SIZE = 0x004,
    /// 0x008 `RAM_SAVE_FLAG_PAGE`: a raw target page follows.
    PAGE = 0x008,
    /// 0x010 `RAM_SAVE_FLAG_EOS`: end of this `ram` section part.
    EOS = 0x010,
    /// 0x020 `RAM_SAVE_FLAG_CONTINUE`: same block as the previous page record; no idstr.
    CONTINUE = 0x020,
    /// 0x040 `RAM_SAVE_FLAG_XBZRLE`: a delta against the page the destination holds.
    XBZRLE = 0x040,
    /// 0x080 `RAM_SAVE_FLAG_HOOK`: RDMA only.
    HOOK = 0x080,
    /// 0x100 `RAM_SAVE_FLAG_COMPRESS_PAGE`: zlib page, QEMU 2.4–9.0, removed in 9.1.
    COMPRESS_PAGE = 0x100,
    /// 0x200: `RAM_SAVE_FLAG_MULTIFD_FLUSH` in QEMU 8.1+, the 2016 balloon patch's
    /// `RAM_SAVE_FLAG_BALLOON`, and ramstream's negotiated balloon record. Its meaning is
    /// chosen by the [`Dialect`](crate::Dialect), never guessed (SPEC.md §6.2, §9).
    X200 = 0x200,
}

impl RamFlags {
    /// The empty set.
    pub const NONE: RamFlags = RamFlags(0);
    /// `RAM_SAVE_FLAG_MULTIFD_FLUSH` (QEMU 8.1+), an alias of [`RamFlags::X200`].
    pub const MULTIFD_FLUSH: RamFlags = RamFlags::X200;
    /// `RAM_SAVE_FLAG_BALLOON` (2016 patch, ramstream balloon v1), an alias of
    /// [`RamFlags::X200`].
    pub const BALLOON: RamFlags = RamFlags::X200;

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: RamFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set in `self`.
    pub const fn intersects(self, other: RamFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: RamFlags) -> RamFlags {
        RamFlags(self.0 & !other.0)
    }

    /// Whether the flags name a page record that resolves a RAM block (ZERO, PAGE, XBZRLE,
    /// COMPRESS_PAGE), the records QEMU resolves a block for (SPEC.md §6.4).
    pub const fn is_page_record(self) -> bool {
        self.intersects(RamFlags(
            Self::ZERO.0 | Self::PAGE.0 | Self::XBZRLE.0 | Self::COMPRESS_PAGE.0,
        ))
    }
}

impl BitOr for RamFlags {
    type Output = RamFlags;
    fn bitor(self, rhs: RamFlags) -> RamFlags {
        RamFlags(self.0 | rhs.0)
    }
}

impl BitAnd for RamFlags {
    type Output = RamFlags;
    fn bitand(self, rhs: RamFlags) -> RamFlags {
        RamFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for RamFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::flags::fmt_flags(f, self.0, Self::NAMED.iter().copied())
    }
}

impl fmt::Display for RamFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Splits a record word into (offset, flags) for a target with `page_bits` page bits
/// (SPEC.md §6.1).
pub const fn split_record_word(word: u64, page_bits: u32) -> (u64, RamFlags) {
    let mask = (1u64 << page_bits) - 1;
    (word & !mask, RamFlags(word & mask))
}

/// Joins an offset and flags into a record word (SPEC.md §6.1). The offset must be page
/// aligned and the flags below the page size; this is the caller's contract.
pub const fn join_record_word(offset: u64, flags: RamFlags) -> u64 {
    offset | flags.0
}
