//! The state a multifd migration's main stream and channels share: the block table the
//! channels' pages resolve against, which channels were admitted, and how far each one and
//! the main stream got in their sync points (SPEC.md §14.5, §14.6).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use ramstream_codec::multifd::{BlockTable, ChannelSet, InitPacket};
use ramstream_codec::{Limits, RamBlock};

use super::error::MultifdError;
use crate::loader::{WrittenPages, ZeroPages};

/// What the main stream's MEM_SIZE record fixed for the channels.
#[derive(Debug)]
pub(crate) struct Bound {
    /// The target page bits (the main stream's).
    pub page_bits: u32,
    /// The stream's blocks by name (stream numbering).
    pub table: BlockTable,
    /// Stream block index to the guest's.
    pub to_guest: Vec<usize>,
    /// Written pages, shared with the main stream's loader.
    pub written: Arc<WrittenPages>,
    /// The decoder limits (`max_multifd_packet_pages`).
    pub limits: Limits,
}

/// One admitted channel's progress.
#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    /// SYNC packets passed.
    syncs: u64,
    /// Whether its input ended (cleanly).
    ended: bool,
    /// Pages it wrote after its last SYNC, when it ended.
    pending: u64,
}

#[derive(Debug, Default)]
struct State {
    /// The number of channels, once known.
    channels: Option<u8>,
    /// The main stream's `configuration/uuid`, once seen.
    uuid: Option<[u8; 16]>,
    /// Every admission goes through one set (one uuid, each id once).
    set: Option<ChannelSet>,
    admitted: BTreeMap<u8, Channel>,
    /// Sync points the main stream reached.
    reached: u64,
    /// Sync points the main stream released (every channel had reached them).
    released: u64,
    /// The main stream's sync points, once it ended.
    last: Option<u64>,
    aborted: bool,
    /// Counts changes, for the `io` waits (a change between a check and a wait is seen).
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    zero_pages: ZeroPages,
    bound: OnceLock<Bound>,
    state: Mutex<State>,
    changed: Condvar,
}

/// The shared state of one multifd migration (SPEC.md §14): its main stream and its
/// channels, each loaded by its own engine on its own thread. Cheap to clone (one `Arc`).
///
/// Sans-IO like the engines: it never blocks in the methods below; the `io` feature adds the
/// blocking waits a threaded receiver needs (`wait_bound`, `wait_channels`,
/// `wait_released`). What it holds:
///
/// - the block table, bound once from the main stream's MEM_SIZE record
///   ([`Loader`](crate::Loader) does it; a tool reading a recording calls
///   [`MultifdSession::bind_blocks`]); until then a [`ChannelLoader`](super::ChannelLoader) decodes nothing;
/// - admission: every channel's initial packet goes through one
///   [`ChannelSet`] (the main stream's `configuration/uuid`, or the first channel's; each id
///   once; ids below the number of channels);
/// - the sync counts: how many SYNC packets each channel passed, the sync points the main
///   stream reached and released, and, once it ended, its last one. From them it decides
///   when the main stream may pass sync point k ([`MultifdSession::ready`]) and when a
///   channel may pass its k-th SYNC ([`MultifdSession::may_continue`]), and refuses a
///   channel that ends short of a sync point or holds pages after the last.
///
/// ```
/// use ramstream_codec::RamBlock;
/// use ramstream_migrate::multifd::MultifdSession;
/// use ramstream_migrate::ZeroPages;
///
/// let session = MultifdSession::new(Some(2), ZeroPages::Always);
/// let block = RamBlock { idstr: "pc.ram".into(), used_length: 1 << 20, page_size: None, mr_addr: None };
/// assert!(!session.is_bound());
/// session.bind_blocks(12, &[block], Default::default()).unwrap();
/// session.main_reached(1);
/// // No channel has reached its first SYNC yet: the main stream must wait.
/// assert_eq!(session.ready(1), Ok(false));
/// ```
#[derive(Clone, Debug)]
pub struct MultifdSession {
    shared: Arc<Shared>,
}

impl MultifdSession {
    /// A session for a migration with `channels` channels (QEMU's `multifd-channels`; `None`:
    /// given later with [`MultifdSession::set_channels`], before the first sync point is
    /// released), applying channels' zero pages under `zero_pages` (SPEC.md §7.4).
    pub fn new(channels: Option<u8>, zero_pages: ZeroPages) -> Self {
        MultifdSession {
            shared: Arc::new(Shared {
                zero_pages,
                bound: OnceLock::new(),
                state: Mutex::new(State {
                    channels,
                    ..State::default()
                }),
                changed: Condvar::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes every waiter (`io` feature) after a change. Called without the lock held.
    fn notify(&self) {
        self.state().generation += 1;
        self.shared.changed.notify_all();
    }

    /// Binds the block table for a tool that writes pages where the stream numbers them
    /// (guest block `i` is stream block `i`), e.g. an image rebuilt from a recording:
    /// `page_bits` and `blocks` are the main stream's, `limits` its decoder's. A second
    /// binding is refused ([`MultifdError::AlreadyBound`]).
    pub fn bind_blocks(
        &self,
        page_bits: u32,
        blocks: &[RamBlock],
        limits: Limits,
    ) -> Result<(), MultifdError> {
        let written = WrittenPages::new(
            blocks.iter().map(|b| b.used_length),
            1usize << page_bits.min(31),
        );
        self.bind(Bound {
            page_bits,
            table: BlockTable::new(blocks),
            to_guest: (0..blocks.len()).collect(),
            written: Arc::new(written),
            limits,
        })
    }

    pub(crate) fn bind(&self, bound: Bound) -> Result<(), MultifdError> {
        self.shared
            .bound
            .set(bound)
            .map_err(|_| MultifdError::AlreadyBound)?;
        self.notify();
        Ok(())
    }

    pub(crate) fn bound(&self) -> Option<&Bound> {
        self.shared.bound.get()
    }

    /// Whether the block table is bound (the main stream's MEM_SIZE record was loaded).
    pub fn is_bound(&self) -> bool {
        self.shared.bound.get().is_some()
    }

    pub(crate) fn zero_pages(&self) -> ZeroPages {
        self.shared.zero_pages
    }

    /// Gives the main stream's `configuration/uuid` (SPEC.md §3.2): every channel must carry
    /// it. Call it before channels are admitted (a [`Loader`](crate::Loader) does, at the
    /// configuration section, which precedes the MEM_SIZE record that lets channels decode).
    pub fn set_migration_uuid(&self, uuid: [u8; 16]) {
        let mut s = self.state();
        if s.set.is_none() {
            s.uuid = Some(uuid);
        }
    }

    /// Fixes the number of channels when [`MultifdSession::new`] left it open: the
    /// channels that connected by the main stream's first sync point (SPEC.md §14.6: QEMU
    /// connects all of them before it writes that point). Refused once fixed to another
    /// number, or if an admitted channel's id is not below it. `0` means no channel: the
    /// migration does not use multifd after all.
    pub fn set_channels(&self, channels: u8) -> Result<(), MultifdError> {
        let mut s = self.state();
        match s.channels {
            Some(n) if n != channels => {
                return Err(MultifdError::ChannelCount {
                    configured: n,
                    given: channels,
                })
            }
            _ => {}
        }
        if let Some((&id, _)) = s.admitted.iter().find(|(&id, _)| id >= channels) {
            return Err(MultifdError::ChannelOutOfRange { id, channels });
        }
        s.channels = Some(channels);
        drop(s);
        self.notify();
        Ok(())
    }

    /// The number of channels, once known.
    pub fn channels(&self) -> Option<u8> {
        self.state().channels
    }

    /// The ids admitted so far, ascending.
    pub fn admitted(&self) -> Vec<u8> {
        self.state().admitted.keys().copied().collect()
    }

    /// Admits a channel's initial packet (rules 4–6 of SPEC.md §14.8): the codec's
    /// `MultifdUuid`, `MultifdChannelId` or `MultifdDuplicateChannel` error otherwise.
    pub(crate) fn admit(&self, init: &InitPacket) -> Result<(), ramstream_codec::Error> {
        let mut s = self.state();
        let (channels, uuid) = (s.channels, s.uuid);
        s.set
            .get_or_insert_with(|| ChannelSet::new(channels, uuid))
            .admit(init)?;
        if let Some(n) = channels {
            // A set made before the count was fixed does not check the range.
            if init.id >= n {
                return Err(ramstream_codec::Error::new(
                    ramstream_spec::multifd::INIT_ID_OFFSET as u64,
                    ramstream_codec::ErrorKind::MultifdChannelId {
                        id: init.id,
                        channels: n,
                    },
                )
                .in_channel(init.id));
            }
        }
        s.admitted.insert(init.id, Channel::default());
        drop(s);
        self.notify();
        Ok(())
    }

    /// The main stream reached its sync point `k` (counted from 1).
    pub fn main_reached(&self, k: u64) {
        let mut s = self.state();
        s.reached = s.reached.max(k);
    }

    /// Whether the main stream may pass its sync point `k`: every channel `0 ..= N - 1` was
    /// admitted and passed its k-th SYNC. `Ok(false)`: not yet (wait for the channels);
    /// an error when that cannot happen any more: a channel ended before its k-th SYNC
    /// ([`MultifdError::ChannelEnded`]), or the number of channels is not known
    /// ([`MultifdError::ChannelsUnknown`]).
    pub fn ready(&self, k: u64) -> Result<bool, MultifdError> {
        let s = self.state();
        Self::ready_in(&s, k)
    }

    fn ready_in(s: &State, k: u64) -> Result<bool, MultifdError> {
        let n = s.channels.ok_or(MultifdError::ChannelsUnknown)?;
        let mut all = true;
        for id in 0..n {
            match s.admitted.get(&id) {
                Some(c) if c.syncs >= k => {}
                Some(c) if c.ended => {
                    return Err(MultifdError::ChannelEnded {
                        channel: id,
                        syncs: c.syncs,
                        needed: k,
                    })
                }
                _ => all = false,
            }
        }
        Ok(all)
    }

    /// Lets the main stream and the channels past sync point `k`; refused unless
    /// [`MultifdSession::ready`] says so ([`MultifdError::NotReached`] names a channel
    /// that has not reached it, or never connected).
    pub fn release(&self, k: u64) -> Result<(), MultifdError> {
        let mut s = self.state();
        if !Self::ready_in(&s, k)? {
            let n = s.channels.unwrap_or(0);
            let (channel, syncs) = (0..n)
                .map(|id| (id, s.admitted.get(&id).map(|c| c.syncs)))
                .find(|(_, syncs)| syncs.is_none_or(|n| n < k))
                .unwrap_or((0, None));
            return Err(MultifdError::NotReached {
                channel,
                syncs,
                needed: k,
            });
        }
        s.released = s.released.max(k);
        drop(s);
        self.notify();
        Ok(())
    }

    /// The main stream ended (its EOF section) after its last sync point: channels may go
    /// past SYNC packets that pair with none (QEMU 9.1–9.2 send one at completion), but no
    /// page may follow the last. Refuses a channel that already ended holding such pages
    /// ([`MultifdError::PagesAfterLastSync`]).
    pub fn main_ended(&self) -> Result<(), MultifdError> {
        let mut s = self.state();
        let last = s.reached;
        s.last = Some(last);
        let bad = s
            .admitted
            .iter()
            .find(|(_, c)| c.ended && c.pending > 0 && c.syncs >= last)
            .map(|(&id, c)| (id, c.pending));
        drop(s);
        self.notify();
        match bad {
            Some((channel, pages)) => Err(MultifdError::PagesAfterLastSync {
                channel,
                pages,
                last,
            }),
            None => Ok(()),
        }
    }

    /// The main stream's number of sync points, once it ended.
    pub fn last_sync_point(&self) -> Option<u64> {
        self.state().last
    }

    /// Stops the migration: every blocking wait (`io` feature) returns. Called by whoever
    /// failed first, so that the others stop too.
    pub fn abort(&self) {
        self.state().aborted = true;
        self.notify();
    }

    /// Whether [`MultifdSession::abort`] was called.
    pub fn is_aborted(&self) -> bool {
        self.state().aborted
    }

    /// Channel `id` passed its k-th SYNC.
    pub(crate) fn channel_synced(&self, id: u8, k: u64) {
        let mut s = self.state();
        if let Some(c) = s.admitted.get_mut(&id) {
            c.syncs = c.syncs.max(k);
        }
        drop(s);
        self.notify();
    }

    /// Whether a channel stopped at its k-th SYNC may go on: the main stream released sync
    /// point k, or ended before it (a SYNC that pairs with no sync point).
    pub fn may_continue(&self, k: u64) -> bool {
        let s = self.state();
        s.released >= k || s.last.is_some_and(|last| last < k)
    }

    /// Whether a channel that passed `syncs` SYNC packets is past the main stream's last
    /// sync point (so that a page now is refused).
    pub(crate) fn past_last(&self, syncs: u64) -> bool {
        self.state().last.is_some_and(|last| syncs >= last)
    }

    /// Channel `id` ended cleanly after `syncs` SYNC packets, with `pending` pages after the
    /// last one.
    pub(crate) fn channel_ended(
        &self,
        id: u8,
        syncs: u64,
        pending: u64,
    ) -> Result<(), MultifdError> {
        let mut s = self.state();
        let (reached, last) = (s.reached, s.last);
        if let Some(c) = s.admitted.get_mut(&id) {
            c.ended = true;
            c.pending = pending;
            c.syncs = c.syncs.max(syncs);
        }
        drop(s);
        self.notify();
        if syncs < reached {
            return Err(MultifdError::ChannelEnded {
                channel: id,
                syncs,
                needed: reached,
            });
        }
        match last {
            Some(last) if pending > 0 && syncs >= last => Err(MultifdError::PagesAfterLastSync {
                channel: id,
                pages: pending,
                last,
            }),
            _ => Ok(()),
        }
    }

    /// For the `io` waits: blocks while `blocked` holds (it is evaluated without the lock
    /// held, and again after every change), at most `timeout`. Returns whether it stopped
    /// holding; `false` after [`MultifdSession::abort`] or the timeout.
    #[cfg(feature = "io")]
    pub(crate) fn wait_while(
        &self,
        timeout: Option<std::time::Duration>,
        mut blocked: impl FnMut(&MultifdSession) -> bool,
    ) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let generation = self.state().generation;
            if !blocked(self) {
                return true;
            }
            let mut s = self.state();
            while s.generation == generation {
                if s.aborted {
                    return false;
                }
                match deadline {
                    None => {
                        s = self
                            .shared
                            .changed
                            .wait(s)
                            .unwrap_or_else(|e| e.into_inner())
                    }
                    Some(d) => {
                        let now = std::time::Instant::now();
                        if now >= d {
                            return false;
                        }
                        s = self
                            .shared
                            .changed
                            .wait_timeout(s, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            if s.aborted {
                return false;
            }
        }
    }
}

impl MultifdSession {
    /// The channels (id, SYNC packets passed if admitted) that have not reached sync point
    /// `k`, for a timeout's message.
    #[cfg(feature = "io")]
    pub(crate) fn waiting_for(&self, k: u64) -> Vec<(u8, Option<u64>)> {
        let s = self.state();
        (0..s.channels.unwrap_or(0))
            .map(|id| (id, s.admitted.get(&id).map(|c| c.syncs)))
            .filter(|(_, syncs)| syncs.is_none_or(|n| n < k))
            .collect()
    }
}
