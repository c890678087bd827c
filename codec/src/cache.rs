//! The sender's XBZRLE page cache and page decision, with QEMU 7.2's semantics.
//!
//! # The cache (QEMU `migration/page_cache.c`)
//!
//! Direct-mapped: `cache_size / page_size` slots (a power of two), slot index
//! `(key / page_size) & (slots - 1)`. The key is a global page address the caller makes
//! unique across RAM blocks (QEMU: `block->offset + offset`, a `ram_addr_t`). Each slot
//! remembers the key it holds and its *age*, the dirty-sync generation it was last used in
//! (set by the caller with [`XbzrleCache::set_generation`], QEMU's `dirty_sync_count`).
//! A hit refreshes the age. Inserting over a slot that holds a *different* key is refused
//! while `old_age + CACHED_PAGE_LIFETIME > generation`; an empty slot or the same key is
//! always (over)written.
//!
//! # The page decision (QEMU `ram_save_target_page` / `save_xbzrle_page`)
//!
//! ```text
//!   zero page? ──yes──> Zero            (XBZRLE active: zero page into the slot, if allowed)
//!      │no
//!   XBZRLE active (first pass over RAM done)? ──no──> Page(new)
//!      │yes
//!   cached? ──no──> cache_miss += 1; last stage: Page(new)
//!      │yes                          else insert: ok → Page(cache copy), refused → Page(new)
//!   pages += 1; encode against the cached copy
//!      ├─ unchanged ──> Unchanged (nothing sent, cache untouched)
//!      ├─ overflow ───> overflow += 1, bytes += page size; Page(cache copy updated to new,
//!      │                or new in the last stage)
//!      └─ delta ──────> bytes += 3 + delta length; Xbzrle(delta); cache updated to new
//!                       (not in the last stage)
//! ```
//!
//! The cache thereby mirrors what the destination holds. QEMU sends the *cache copy* for a
//! PAGE after an insert because the guest may change its RAM meanwhile; in Rust the caller's
//! `&[u8]` cannot change during the call, so the bytes are equal either way.
//!
//! # Counters (QMP `query-migrate` → `xbzrle-cache`)
//!
//! See [`XbzrleCacheStats`]. The rates are computed per *period* like QEMU's
//! `migration_update_rates`: the caller calls [`XbzrleCache::update_rates`] where QEMU does,
//! at a dirty-bitmap sync when at least one second has passed since the previous update.

use crate::xbzrle::{self, Encoded};
use crate::zero::is_zero_page;
use core::fmt;
use ramstream_spec::xbzrle::{CACHED_PAGE_LIFETIME, RECORD_HEADER_LEN};

/// Why an [`XbzrleCache`] cannot be built with the given sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheConfigError {
    /// The page size is 0 or not a power of two.
    BadPageSize {
        /// The page size asked for.
        page_size: usize,
    },
    /// The cache size is not a power of two, or smaller than one page (QEMU: "a power of two
    /// no less than the target page size"), or does not fit this machine's address space.
    BadCacheSize {
        /// The cache size asked for.
        cache_size: u64,
        /// The page size.
        page_size: usize,
    },
}

impl fmt::Display for CacheConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheConfigError::BadPageSize { page_size } => {
                write!(
                    f,
                    "XBZRLE cache: page size {page_size} is not a power of two"
                )
            }
            CacheConfigError::BadCacheSize {
                cache_size,
                page_size,
            } => write!(
                f,
                "XBZRLE cache: size {cache_size} must be a power of two no less than the page \
                 size {page_size}"
            ),
        }
    }
}

impl std::error::Error for CacheConfigError {}

/// A page handed to [`XbzrleCache::decide`] is not one page long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageSizeMismatch {
    /// Length of the page given.
    pub len: usize,
    /// The cache's page size.
    pub page_size: usize,
}

impl fmt::Display for PageSizeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "XBZRLE cache: page of {} bytes, expected {}",
            self.len, self.page_size
        )
    }
}

impl std::error::Error for PageSizeMismatch {}

/// What the sender does with one dirty page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageDecision<'a> {
    /// The page is all zero: send a ZERO record (fill byte 0).
    Zero,
    /// The page equals the copy the destination holds: send nothing.
    Unchanged,
    /// Send an XBZRLE record whose delta is these bytes (borrowed from the cache's encode
    /// buffer).
    Xbzrle {
        /// The delta (the record's payload after the encoding byte and be16 length).
        delta: &'a [u8],
    },
    /// Send a PAGE record with these bytes (after a cache insert or an overflow, the cache's
    /// copy, as QEMU does).
    Page {
        /// The page contents to send.
        bytes: &'a [u8],
    },
}

/// The `xbzrle-cache` counters of QMP `query-migrate`; serialized with QMP's kebab-case
/// names (`cache-size`, `cache-miss-rate`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub struct XbzrleCacheStats {
    /// `cache-size`: the cache size in bytes.
    pub cache_size: u64,
    /// `bytes`: [`RECORD_HEADER_LEN`] (3) + delta length per XBZRLE record, plus the page size
    /// per overflow. QEMU also counts a record's idstr bytes (length byte + name) when the
    /// record is sent without CONTINUE; the cache cannot know, so the caller adds them with
    /// [`XbzrleCache::add_idstr_bytes`].
    pub bytes: u64,
    /// `pages`: cache hits, including pages sent as nothing (unchanged) and overflows.
    pub pages: u64,
    /// `cache-miss`: non-zero pages not found in the cache while XBZRLE is active.
    pub cache_miss: u64,
    /// `cache-miss-rate`: cache misses in the last period ÷ pages *sent* in that period (a
    /// ZERO, PAGE or XBZRLE record; unchanged pages send nothing and do not count).
    pub cache_miss_rate: f64,
    /// `encoding-rate`: (hits in the last period × page size) ÷ `bytes` added in that period;
    /// 0 when the period had no hit or no bytes.
    pub encoding_rate: f64,
    /// `overflow`: hits whose delta did not fit one page.
    pub overflow: u64,
}

/// Counter values at the start of the current rate period.
#[derive(Debug, Clone, Copy, Default)]
struct PeriodStart {
    cache_miss: u64,
    pages: u64,
    bytes: u64,
    sent_pages: u64,
}

/// One cache slot's bookkeeping (its data lives in [`XbzrleCache::data`]).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    filled: bool,
    key: u64,
    age: u64,
}

/// QEMU's sender-side XBZRLE cache plus the per-page decision. See the module docs.
#[derive(Debug)]
pub struct XbzrleCache {
    page_size: usize,
    slot_mask: u64,
    slots: Vec<Slot>,
    /// `slots.len() * page_size` bytes, zero-initialised (lazily backed by the OS).
    data: Vec<u8>,
    encoded: Vec<u8>,
    generation: u64,
    started: bool,
    stats: XbzrleCacheStats,
    sent_pages: u64,
    period: PeriodStart,
}

impl XbzrleCache {
    /// A cache of `cache_size` bytes for pages of `page_size` bytes (QEMU's default is
    /// `ramstream_spec::xbzrle::DEFAULT_CACHE_SIZE` and the target page size).
    pub fn new(cache_size: u64, page_size: usize) -> Result<Self, CacheConfigError> {
        if !page_size.is_power_of_two() {
            return Err(CacheConfigError::BadPageSize { page_size });
        }
        let bad = CacheConfigError::BadCacheSize {
            cache_size,
            page_size,
        };
        let bytes = usize::try_from(cache_size).map_err(|_| bad)?;
        if !bytes.is_power_of_two() || bytes < page_size {
            return Err(bad);
        }
        let slots = bytes / page_size;
        Ok(XbzrleCache {
            page_size,
            slot_mask: slots as u64 - 1,
            slots: vec![Slot::default(); slots],
            data: vec![0; bytes],
            encoded: vec![0; page_size],
            generation: 0,
            started: false,
            stats: XbzrleCacheStats {
                cache_size,
                ..XbzrleCacheStats::default()
            },
            sent_pages: 0,
            period: PeriodStart::default(),
        })
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of slots (`cache_size / page_size`).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Sets the current generation: QEMU's `dirty_sync_count`, incremented at each
    /// dirty-bitmap sync.
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Signals that the first complete pass over RAM is done (QEMU sets `xbzrle_enabled`
    /// when the dirty-page scan first wraps around). Before this, no page uses the cache.
    pub fn end_of_first_pass(&mut self) {
        self.started = true;
    }

    /// Whether XBZRLE is in use ([`end_of_first_pass`](Self::end_of_first_pass) was called).
    pub fn is_active(&self) -> bool {
        self.started
    }

    /// The counters.
    pub fn stats(&self) -> XbzrleCacheStats {
        self.stats
    }

    /// Adds the idstr bytes of an XBZRLE record sent without CONTINUE (1 + name length) to
    /// [`XbzrleCacheStats::bytes`], as QEMU counts them.
    pub fn add_idstr_bytes(&mut self, n: u64) {
        self.stats.bytes += n;
    }

    /// Whether `key` is cached (without refreshing its age).
    pub fn contains(&self, key: u64) -> bool {
        let slot = &self.slots[self.index(key)];
        slot.filled && slot.key == key
    }

    /// The cached copy of `key`'s page, if any.
    pub fn get(&self, key: u64) -> Option<&[u8]> {
        let i = self.index(key);
        self.contains(key).then(|| self.slot_data(i))
    }

    /// Ends a rate period as QEMU's `migration_update_rates` does: with `n` = pages sent in
    /// the period, `cache_miss_rate = Δcache_miss / n` and `encoding_rate = Δpages × page
    /// size / Δbytes` (0 if `Δpages` or `Δbytes` is 0). If no page was sent in the period,
    /// nothing changes and the period goes on.
    pub fn update_rates(&mut self) {
        let sent = self.sent_pages - self.period.sent_pages;
        if sent == 0 {
            return;
        }
        let misses = self.stats.cache_miss - self.period.cache_miss;
        self.stats.cache_miss_rate = misses as f64 / sent as f64;
        let pages = self.stats.pages - self.period.pages;
        let bytes = self.stats.bytes - self.period.bytes;
        self.stats.encoding_rate = if pages == 0 || bytes == 0 {
            0.0
        } else {
            (pages * self.page_size as u64) as f64 / bytes as f64
        };
        self.period = PeriodStart {
            cache_miss: self.stats.cache_miss,
            pages: self.stats.pages,
            bytes: self.stats.bytes,
            sent_pages: self.sent_pages,
        };
    }

    /// Decides how to send the dirty page at `key` whose current contents are `page`, and
    /// updates the cache and counters as QEMU 7.2 does. `last_stage` is QEMU's
    /// `rs->last_stage` (the final pass with the guest stopped): the cache is then no longer
    /// updated. See the module docs for the full flow.
    pub fn decide<'a>(
        &'a mut self,
        key: u64,
        page: &'a [u8],
        last_stage: bool,
    ) -> Result<PageDecision<'a>, PageSizeMismatch> {
        if page.len() != self.page_size {
            return Err(PageSizeMismatch {
                len: page.len(),
                page_size: self.page_size,
            });
        }
        if is_zero_page(page) {
            if self.started {
                // Refusal is fine: a stale entry of another address is simply left alone.
                let _ = self.insert(key, None);
            }
            self.sent_pages += 1;
            return Ok(PageDecision::Zero);
        }
        if !self.started {
            self.sent_pages += 1;
            return Ok(PageDecision::Page { bytes: page });
        }
        let i = self.index(key);
        let slot = &mut self.slots[i];
        if !(slot.filled && slot.key == key) {
            self.stats.cache_miss += 1;
            self.sent_pages += 1;
            if !last_stage {
                if let Some(i) = self.insert(key, Some(page)) {
                    return Ok(PageDecision::Page {
                        bytes: self.slot_data(i),
                    });
                }
            }
            return Ok(PageDecision::Page { bytes: page });
        }
        slot.age = self.generation;
        self.stats.pages += 1;
        let range = i * self.page_size..(i + 1) * self.page_size;
        let cached = &mut self.data[range];
        let encoded = xbzrle::encode(cached, page, &mut self.encoded);
        match encoded {
            Ok(Encoded::Unchanged) => Ok(PageDecision::Unchanged),
            Ok(Encoded::Delta(len)) => {
                self.sent_pages += 1;
                self.stats.bytes += (RECORD_HEADER_LEN + len) as u64;
                if !last_stage {
                    cached.copy_from_slice(page);
                }
                Ok(PageDecision::Xbzrle {
                    delta: &self.encoded[..len],
                })
            }
            // `encode` cannot fail here: both slices are one page long.
            Ok(Encoded::Overflow) | Err(_) => {
                self.sent_pages += 1;
                self.stats.overflow += 1;
                self.stats.bytes += self.page_size as u64;
                if last_stage {
                    Ok(PageDecision::Page { bytes: page })
                } else {
                    cached.copy_from_slice(page);
                    Ok(PageDecision::Page { bytes: cached })
                }
            }
        }
    }

    fn index(&self, key: u64) -> usize {
        // The slot count fits in usize, so the masked value does too.
        ((key / self.page_size as u64) & self.slot_mask) as usize
    }

    fn slot_data(&self, i: usize) -> &[u8] {
        &self.data[i * self.page_size..(i + 1) * self.page_size]
    }

    /// QEMU's `cache_insert`: stores `page` (or a zero page) for `key` unless the slot holds
    /// another key that is still fresh. Returns the slot index on success.
    fn insert(&mut self, key: u64, page: Option<&[u8]>) -> Option<usize> {
        let i = self.index(key);
        let slot = &mut self.slots[i];
        if slot.filled
            && slot.key != key
            && slot.age.saturating_add(CACHED_PAGE_LIFETIME) > self.generation
        {
            return None;
        }
        *slot = Slot {
            filled: true,
            key,
            age: self.generation,
        };
        let dst = &mut self.data[i * self.page_size..(i + 1) * self.page_size];
        match page {
            Some(page) => dst.copy_from_slice(page),
            None => dst.fill(0),
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
    use ramstream_spec::xbzrle::DEFAULT_CACHE_SIZE;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE]
    }

    #[test]
    fn config_checks() {
        assert_eq!(
            XbzrleCache::new(DEFAULT_CACHE_SIZE, PAGE).unwrap().slots(),
            16384
        );
        assert_eq!(XbzrleCache::new(PAGE as u64, PAGE).unwrap().slots(), 1);
        for bad in [0u64, 2048, 3 * 4096, 4096 * 1000] {
            assert!(matches!(
                XbzrleCache::new(bad, PAGE),
                Err(CacheConfigError::BadCacheSize { .. })
            ));
        }
        assert!(matches!(
            XbzrleCache::new(1 << 20, 3000),
            Err(CacheConfigError::BadPageSize { .. })
        ));
        let mut c = XbzrleCache::new(1 << 20, PAGE).unwrap();
        assert_eq!(
            c.decide(0, &[1; 100], false),
            Err(PageSizeMismatch {
                len: 100,
                page_size: PAGE
            })
        );
    }

    /// Pass 1 (bulk stage) sends PAGE without touching the cache; pass 2 misses and inserts;
    /// pass 3 sends XBZRLE.
    #[test]
    fn three_passes() {
        let mut c = XbzrleCache::new(1 << 20, PAGE).unwrap();
        let keys: Vec<u64> = (0..8).map(|k| k * PAGE as u64).collect();
        let mut pages: Vec<Vec<u8>> = (0..8).map(|k| page(k as u8 + 1)).collect();

        c.set_generation(1);
        for (k, p) in keys.iter().zip(&pages) {
            assert_eq!(
                c.decide(*k, p, false).unwrap(),
                PageDecision::Page { bytes: p }
            );
            assert!(!c.contains(*k));
        }
        c.end_of_first_pass();
        c.set_generation(2);
        for (k, p) in keys.iter().zip(&pages) {
            assert_eq!(
                c.decide(*k, p, false).unwrap(),
                PageDecision::Page { bytes: p }
            );
            assert_eq!(c.get(*k), Some(&p[..]));
        }
        assert_eq!(c.stats().cache_miss, 8);
        assert_eq!(c.stats().pages, 0);

        c.set_generation(3);
        for (n, (k, p)) in keys.iter().zip(&mut pages).enumerate() {
            p[4095] = 0xee;
            let d = c.decide(*k, p, false).unwrap();
            assert_eq!(
                d,
                PageDecision::Xbzrle {
                    delta: &[0xff, 0x1f, 0x01, 0xee]
                },
                "{n}"
            );
            assert_eq!(c.get(*k), Some(&p[..]));
        }
        // Unchanged since: nothing sent.
        for (k, p) in keys.iter().zip(&pages) {
            assert_eq!(c.decide(*k, p, false).unwrap(), PageDecision::Unchanged);
        }
        let s = c.stats();
        assert_eq!((s.cache_miss, s.pages, s.overflow), (8, 16, 0));
        assert_eq!(s.bytes, 8 * 7);
    }

    #[test]
    fn overflow_updates_cache_and_counts_a_page() {
        let mut c = XbzrleCache::new(1 << 16, PAGE).unwrap();
        c.end_of_first_pass();
        let a = page(1);
        let b: Vec<u8> = (0..PAGE).map(|i| (i % 251) as u8 + 2).collect();
        c.decide(0, &a, false).unwrap();
        assert_eq!(
            c.decide(0, &b, false).unwrap(),
            PageDecision::Page { bytes: &b }
        );
        assert_eq!(c.get(0), Some(&b[..]));
        let s = c.stats();
        assert_eq!((s.overflow, s.pages, s.bytes), (1, 1, PAGE as u64));
    }

    #[test]
    fn last_stage_does_not_touch_the_cache() {
        let mut c = XbzrleCache::new(1 << 16, PAGE).unwrap();
        c.end_of_first_pass();
        let a = page(1);
        let mut b = a.clone();
        b[0] = 9;
        // Miss in the last stage: not inserted.
        assert_eq!(
            c.decide(0, &a, true).unwrap(),
            PageDecision::Page { bytes: &a }
        );
        assert!(!c.contains(0));
        c.decide(0, &a, false).unwrap();
        assert_eq!(
            c.decide(0, &b, true).unwrap(),
            PageDecision::Xbzrle {
                delta: &[0x00, 0x01, 0x09]
            }
        );
        assert_eq!(c.get(0), Some(&a[..]));
    }

    #[test]
    fn lifetime_rule() {
        // One slot: every key collides.
        let mut c = XbzrleCache::new(PAGE as u64, PAGE).unwrap();
        c.end_of_first_pass();
        let (k1, k2) = (0u64, 7 * PAGE as u64);
        c.set_generation(5);
        c.decide(k1, &page(1), false).unwrap();
        // Generation 6: 5 + 2 > 6, k2 is refused and sent from its own bytes.
        c.set_generation(6);
        let p2 = page(2);
        assert_eq!(
            c.decide(k2, &p2, false).unwrap(),
            PageDecision::Page { bytes: &p2 }
        );
        assert!(c.contains(k1) && !c.contains(k2));
        // A hit at generation 6 refreshes k1's age to 6 ...
        let mut p1 = page(1);
        p1[10] = 3;
        assert!(matches!(
            c.decide(k1, &p1, false).unwrap(),
            PageDecision::Xbzrle { .. }
        ));
        // ... so at 7 k2 is still refused, at 8 it takes the slot.
        c.set_generation(7);
        c.decide(k2, &p2, false).unwrap();
        assert!(c.contains(k1));
        c.set_generation(8);
        c.decide(k2, &p2, false).unwrap();
        assert!(c.contains(k2) && !c.contains(k1));
        assert_eq!(c.stats().cache_miss, 4);
    }

    #[test]
    fn zero_pages_refresh_the_slot() {
        let mut c = XbzrleCache::new(1 << 16, PAGE).unwrap();
        let z = page(0);
        // Bulk stage: ZERO, cache untouched.
        assert_eq!(c.decide(0, &z, false).unwrap(), PageDecision::Zero);
        assert!(!c.contains(0));
        c.end_of_first_pass();
        c.decide(0, &page(4), false).unwrap();
        assert_eq!(c.get(0), Some(&page(4)[..]));
        // A zero page replaces the cached copy, so the next delta is against zeros.
        assert_eq!(c.decide(0, &z, false).unwrap(), PageDecision::Zero);
        assert_eq!(c.get(0), Some(&z[..]));
        let mut p = z.clone();
        p[1] = 5;
        assert_eq!(
            c.decide(0, &p, false).unwrap(),
            PageDecision::Xbzrle {
                delta: &[0x01, 0x01, 0x05]
            }
        );
        // A zero page of a fresh different key is refused silently.
        let other = 16 * PAGE as u64; // same slot in a 16-slot cache
        assert_eq!(c.decide(other, &z, false).unwrap(), PageDecision::Zero);
        assert!(c.contains(0) && !c.contains(other));
    }

    #[test]
    fn rates_per_period() {
        let mut c = XbzrleCache::new(1 << 16, PAGE).unwrap();
        c.end_of_first_pass();
        // Period 1: 4 misses (4 pages sent).
        for k in 0..4u64 {
            c.decide(k * PAGE as u64, &page(1), false).unwrap();
        }
        c.update_rates();
        let s = c.stats();
        assert_eq!((s.cache_miss_rate, s.encoding_rate), (1.0, 0.0));
        // Period 2: 2 deltas of 4 bytes, 2 unchanged (sent: 2).
        for k in 0..4u64 {
            let mut p = page(1);
            if k < 2 {
                p[4095] = 2;
            }
            c.decide(k * PAGE as u64, &p, false).unwrap();
        }
        c.update_rates();
        let s = c.stats();
        assert_eq!(s.cache_miss_rate, 0.0);
        assert_eq!(s.encoding_rate, (4 * PAGE) as f64 / 14.0);
        // An empty period changes nothing.
        c.update_rates();
        assert_eq!(c.stats(), s);
    }
}
