//! "A reader accepts everything its writer writes": every path of the 2016 patch's writer
//! through the kolhe-2016 decoder (SPEC.md §9.6), and of ramstream's own v1 writer through
//! the v1 decoder (SPEC.md §9.5).
//!
//! [`PatchedQemu`] is a small Rust model of the patch's `balloon.c` state and of every
//! function that changes it, following the C of the patch (seed `000_33fb27c5f18e5678`) step
//! by step, with the same variable names: `qemu_add_balloon_handler`,
//! `qemu_balloon_bitmap_extend` (called from exec.c's `ram_block_add`),
//! `qemu_balloon_bitmap_update` (from `virtio_balloon_handle_output`),
//! `qemu_balloon_reset_bitmap_data` (from the migration-failed notifier),
//! `qemu_balloon_bitmap_setup` (from `ram_save_setup`) and `qemu_balloon_bitmap_save` (from
//! `ram_save_iterate` and `virtio_balloon_save_device`). Each test drives one writer path,
//! builds the stream around the bytes the model writes (never the codec's encoder for the
//! balloon record), and decodes it. The last part shows, for each rejection that remains, a
//! byte sequence no path of the model writes.

mod balloon_support;

use balloon_support as bs;
use ramstream_codec::balloon::{
    BalloonMap, BalloonMapKind, BalloonRecord, KolheBalloon, KolheBitmap, PageRun, RunList,
};
use ramstream_codec::{
    decode_all, Decoder, DecoderOptions, Encoder, Error, ErrorKind, Event, RamBlock, RecordKind,
    Status,
};
use ramstream_spec::stream::SectionType;
use ramstream_spec::Dialect;

const K: Dialect = Dialect::Kolhe2016;

// ---------------------------------------------------------------------------------------
// The writer: the patch's C, in Rust
// ---------------------------------------------------------------------------------------

/// migration/ram.c: `#define RAM_SAVE_FLAG_BALLOON 0x200`.
const RAM_SAVE_FLAG_BALLOON: u64 = 0x200;
/// balloon.c: `#define BALLOON_BITMAP_DISABLE_FLAG -1UL`.
const BALLOON_BITMAP_DISABLE_FLAG: u64 = u64::MAX;
/// virtio-balloon: one bit per `1 << VIRTIO_BALLOON_PFN_SHIFT` bytes.
const VIRTIO_BALLOON_PFN_SHIFT: u32 = 12;
/// x86.
const TARGET_PAGE_BITS: u32 = 12;

/// balloon.c's `BalloonBitmapDisableState` (spelling as in the patch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BalloonBitmapDisableState {
    /// The static's initial 0 before any handler registers: none of the enum's values (it
    /// starts at 1).
    Zero,
    None,
    Current,
    Pernament,
}

/// One RAMBlock as exec.c lays it out in `ram_addr` space.
#[derive(Clone, Debug)]
struct Block {
    idstr: String,
    offset: u64,
    used_length: u64,
    max_length: u64,
}

/// What one `qemu_balloon_bitmap_save` call wrote after the flag word.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Written {
    /// `qemu_put_be64(f, BALLOON_BITMAP_DISABLE_FLAG)`.
    Disabled,
    /// Size, start, limit and the pairs, terminator included; `set` is the bitmap at the
    /// time, as runs.
    Bitmap {
        pages: u64,
        start: u64,
        limit: u64,
        pairs: Vec<(u64, u64)>,
        set: Vec<PageRun>,
    },
    /// `atomic_rcu_read(&balloon_bitmap_rcu)->bmap` with no balloon device: a NULL
    /// dereference right after the three header words.
    Crashed,
}

/// The patch's writer state. Fields named as balloon.c's statics.
#[derive(Clone, Debug)]
struct PatchedQemu {
    balloon_bitmap_pages: u64,
    balloon_bitmap_pfn_shift: u32,
    balloon_min_bitmap_offset: u64,
    balloon_max_bitmap_offset: u64,
    balloon_bitmap_disable_state: BalloonBitmapDisableState,
    balloon_bitmap_xfered: bool,
    /// `balloon_bitmap_rcu->bmap`; `None` while `balloon_bitmap_rcu` is NULL.
    balloon_bitmap_rcu: Option<Vec<bool>>,
    /// exec.c's `ram_list.blocks`, in list order (biggest `max_length` first).
    ram_list: Vec<Block>,
    /// `migrate_postcopy_ram()` and `migrate_skip_balloon()` for the next migration.
    postcopy_ram: bool,
    skip_balloon: bool,
}

/// lib/bitmap: the first set bit in `[offset, size)`, or `size`.
fn find_next_bit(bitmap: &[bool], size: u64, offset: u64) -> u64 {
    (offset..size).find(|&i| bitmap[i as usize]).unwrap_or(size)
}

/// lib/bitmap: the first clear bit in `[offset, size)`, or `size`.
fn find_next_zero_bit(bitmap: &[bool], size: u64, offset: u64) -> u64 {
    (offset..size)
        .find(|&i| !bitmap[i as usize])
        .unwrap_or(size)
}

fn put_be64(f: &mut Vec<u8>, v: u64) {
    f.extend_from_slice(&v.to_be_bytes());
}

impl PatchedQemu {
    /// A QEMU process before any RAM: balloon.c's statics are zero.
    fn new() -> Self {
        PatchedQemu {
            balloon_bitmap_pages: 0,
            balloon_bitmap_pfn_shift: 0,
            balloon_min_bitmap_offset: 0,
            balloon_max_bitmap_offset: 0,
            balloon_bitmap_disable_state: BalloonBitmapDisableState::Zero,
            balloon_bitmap_xfered: false,
            balloon_bitmap_rcu: None,
            ram_list: Vec::new(),
            postcopy_ram: false,
            skip_balloon: true,
        }
    }

    /// A pc machine as QEMU 2.6 builds it: `pc.ram` (`pc_memory_init`), then the balloon
    /// device is realized (`qemu_add_balloon_handler` sizes the bitmap to
    /// `last_ram_offset()`), then at machine-done the ACPI tables ROM, resizable: `used`
    /// pages used of `max` reserved in `ram_addr` space (`rom_set_mr` →
    /// `memory_region_init_resizeable_ram`), which `qemu_balloon_bitmap_extend` adds.
    fn pc(ram_pages: u64, acpi_used: u64, acpi_max: u64) -> Self {
        let mut q = PatchedQemu::new();
        q.ram_block_add("pc.ram", ram_pages, ram_pages);
        q.qemu_add_balloon_handler();
        if acpi_max > 0 {
            q.ram_block_add("/rom@etc/acpi/tables", acpi_used, acpi_max);
        }
        q
    }

    /// exec.c `last_ram_offset()`: the end of the highest block's `max_length`.
    fn last_ram_offset(&self) -> u64 {
        self.ram_list
            .iter()
            .map(|b| b.offset + b.max_length)
            .max()
            .unwrap_or(0)
    }

    /// exec.c `ram_block_add` with the patch's hunk. `find_ram_offset` returns the end of
    /// `ram_addr` space here (no block is ever freed in these tests, so there is no gap).
    fn ram_block_add(&mut self, idstr: &str, used_pages: u64, max_pages: u64) {
        let old_ram_size = self.last_ram_offset() >> TARGET_PAGE_BITS;
        let offset = self.last_ram_offset();
        let new_block = Block {
            idstr: idstr.into(),
            offset,
            used_length: used_pages << TARGET_PAGE_BITS,
            max_length: max_pages << TARGET_PAGE_BITS,
        };
        let new_ram_size =
            old_ram_size.max((new_block.offset + new_block.max_length) >> TARGET_PAGE_BITS);
        if new_ram_size > old_ram_size {
            self.qemu_balloon_bitmap_extend(
                old_ram_size << TARGET_PAGE_BITS,
                new_ram_size << TARGET_PAGE_BITS,
            );
        }
        // "Keep the list sorted from biggest to smallest block."
        let at = self
            .ram_list
            .iter()
            .position(|b| b.max_length < new_block.max_length)
            .unwrap_or(self.ram_list.len());
        self.ram_list.insert(at, new_block);
    }

    /// The MEM_SIZE record's blocks (`ram_save_setup`): list order, used lengths.
    fn mem_size_blocks(&self) -> Vec<RamBlock> {
        self.ram_list
            .iter()
            .map(|b| RamBlock {
                idstr: b.idstr.clone(),
                used_length: b.used_length,
                page_size: None,
                mr_addr: None,
            })
            .collect()
    }

    /// balloon.c `qemu_add_balloon_handler` (virtio-balloon realize).
    fn qemu_add_balloon_handler(&mut self) {
        self.balloon_bitmap_disable_state = BalloonBitmapDisableState::None;
        self.balloon_bitmap_pfn_shift = VIRTIO_BALLOON_PFN_SHIFT;
        self.balloon_bitmap_pages = self.last_ram_offset() >> self.balloon_bitmap_pfn_shift;
        self.balloon_bitmap_rcu = Some(vec![false; self.balloon_bitmap_pages as usize]);
    }

    /// balloon.c `qemu_balloon_bitmap_extend`: "Handle Ram hotplug case, only called in
    /// case old < new".
    fn qemu_balloon_bitmap_extend(&mut self, old: u64, new: u64) -> i32 {
        let Some(old_bitmap) = &self.balloon_bitmap_rcu else {
            return -1;
        };
        let old_offset = old >> self.balloon_bitmap_pfn_shift;
        let new_offset = new >> self.balloon_bitmap_pfn_shift;
        // bitmap_new(new_offset); bitmap_clear(.., pages + new - old); bitmap_copy(.., old_offset)
        let len = new_offset.max(self.balloon_bitmap_pages + new_offset - old_offset);
        let mut bitmap = vec![false; len as usize];
        bitmap[..old_offset as usize].copy_from_slice(&old_bitmap[..old_offset as usize]);
        self.balloon_bitmap_rcu = Some(bitmap);
        self.balloon_bitmap_pages += new_offset - old_offset;
        0
    }

    /// balloon.c `qemu_balloon_bitmap_update`, as `virtio_balloon_handle_output` calls it:
    /// `addr` is `section.offset_within_region`, the byte offset of the page in its
    /// memory region (not its `ram_addr`).
    fn qemu_balloon_bitmap_update(&mut self, addr: u64, deflate: bool) -> i32 {
        let shift = self.balloon_bitmap_pfn_shift;
        let xfered = self.balloon_bitmap_xfered;
        let Some(bitmap) = &mut self.balloon_bitmap_rcu else {
            return -1;
        };
        let offset = addr >> shift;
        if xfered {
            if offset < self.balloon_min_bitmap_offset {
                self.balloon_min_bitmap_offset = offset;
            }
            if offset > self.balloon_max_bitmap_offset {
                self.balloon_max_bitmap_offset = offset;
            }
        }
        bitmap[offset as usize] = !deflate;
        0
    }

    /// The guest inflates (`deflate` false) or deflates the 4 KiB pages `pages` of a
    /// memory region: one `qemu_balloon_bitmap_update` per pfn, in order.
    fn virtio_balloon_handle_output(
        &mut self,
        pages: impl IntoIterator<Item = u64>,
        deflate: bool,
    ) {
        for p in pages {
            self.qemu_balloon_bitmap_update(p << VIRTIO_BALLOON_PFN_SHIFT, deflate);
        }
    }

    /// virtio-balloon's migration notifier: `if (migration_has_failed(mig))
    /// qemu_balloon_reset_bitmap_data()` (failed or cancelled).
    fn qemu_balloon_reset_bitmap_data(&mut self) {
        self.balloon_bitmap_xfered = false;
    }

    /// balloon.c `qemu_balloon_bitmap_setup` (end of `ram_save_setup`).
    fn qemu_balloon_bitmap_setup(&mut self) {
        use BalloonBitmapDisableState as S;
        if self.postcopy_ram {
            self.balloon_bitmap_disable_state = S::Pernament;
        } else if (self.balloon_bitmap_rcu.is_none() || !self.skip_balloon)
            && self.balloon_bitmap_disable_state != S::Pernament
        {
            self.balloon_bitmap_disable_state = S::Current;
        }
    }

    /// balloon.c `qemu_balloon_bitmap_save`, line by line.
    fn qemu_balloon_bitmap_save(&mut self, f: &mut Vec<u8>) -> Written {
        let offset: u64 = 0;
        let tmpoffset: u64;
        let tmplimit: u64;

        if self.balloon_bitmap_disable_state == BalloonBitmapDisableState::Pernament {
            put_be64(f, BALLOON_BITMAP_DISABLE_FLAG);
            return Written::Disabled;
        }

        // qemu_mutex_lock_balloon_bitmap();
        if self.balloon_bitmap_xfered {
            tmpoffset = self.balloon_min_bitmap_offset;
            tmplimit = self.balloon_max_bitmap_offset;
        } else {
            self.balloon_bitmap_xfered = true;
            tmpoffset = offset;
            tmplimit = self.balloon_bitmap_pages;
        }

        self.balloon_min_bitmap_offset = self.balloon_bitmap_pages;
        self.balloon_max_bitmap_offset = 0;

        put_be64(f, self.balloon_bitmap_pages);
        put_be64(f, tmpoffset);
        put_be64(f, tmplimit);
        // rcu_read_lock(); bitmap = atomic_rcu_read(&balloon_bitmap_rcu)->bmap;
        let Some(bitmap) = &self.balloon_bitmap_rcu else {
            return Written::Crashed;
        };
        let pages = self.balloon_bitmap_pages;
        let (start, limit) = (tmpoffset, tmplimit);
        let mut tmpoffset = tmpoffset;
        let mut pairs = Vec::new();
        while tmpoffset < tmplimit {
            let mut next_set_bit = find_next_bit(bitmap, pages, tmpoffset);
            let start_set_bit = next_set_bit;
            if next_set_bit == pages {
                let len = 0;
                let next = start_set_bit;
                put_be64(f, next);
                put_be64(f, len);
                pairs.push((next, len));
                break;
            }
            next_set_bit += 1;
            next_set_bit = find_next_zero_bit(bitmap, pages, next_set_bit);
            let len = next_set_bit - start_set_bit;
            let next = start_set_bit;
            put_be64(f, next);
            put_be64(f, len);
            pairs.push((next, len));
            tmpoffset = next + len;
        }
        Written::Bitmap {
            pages,
            start,
            limit,
            pairs,
            set: runs_of_bits(&bitmap[..pages as usize]),
        }
    }

    /// migration/ram.c `ram_save_iterate`: the flag word, then the payload, first thing.
    fn ram_save_iterate(&mut self, f: &mut Vec<u8>) -> Written {
        put_be64(f, RAM_SAVE_FLAG_BALLOON);
        self.qemu_balloon_bitmap_save(f)
    }

    /// hw/virtio/virtio-balloon.c `virtio_balloon_save_device`: `num_pages`, `actual`, and
    /// the bitmap again, inside the device section. The bytes are not in the `ram` section;
    /// the call matters for the state it changes.
    fn virtio_balloon_save_device(&mut self) -> Written {
        let mut device_state = vec![0u8; 8];
        self.qemu_balloon_bitmap_save(&mut device_state)
    }
}

/// The set bits as maximal runs.
fn runs_of_bits(bits: &[bool]) -> Vec<PageRun> {
    let mut out: Vec<PageRun> = Vec::new();
    for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
        let i = i as u64;
        match out.last_mut() {
            Some(r) if r.end() == i => r.count += 1,
            _ => out.push(PageRun::new(i, 1)),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// A migration stream around the model's records
// ---------------------------------------------------------------------------------------

/// One outgoing migration: the stream so far and what each balloon record wrote.
struct Migration {
    enc: Encoder,
    out: Vec<u8>,
    blocks: Vec<RamBlock>,
    written: Vec<Written>,
}

impl Migration {
    /// `ram_save_setup`: header, configuration, `ram` START with MEM_SIZE; then
    /// `qemu_balloon_bitmap_setup()`; EOS.
    fn setup(q: &mut PatchedQemu) -> Self {
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        let blocks = q.mem_size_blocks();
        bs::prelude(&mut enc, &mut out, None, &blocks);
        q.qemu_balloon_bitmap_setup();
        bs::end_section(&mut enc, &mut out);
        Migration {
            enc,
            out,
            blocks,
            written: Vec::new(),
        }
    }

    /// `ram_save_iterate`: a PART whose first record is the balloon record.
    fn iterate(&mut self, q: &mut PatchedQemu) -> Written {
        self.enc
            .section_part(SectionType::PART, bs::RAM_ID, &mut self.out);
        let w = q.ram_save_iterate(&mut self.out);
        self.written.push(w.clone());
        bs::end_section(&mut self.enc, &mut self.out);
        w
    }

    /// `ram_save_complete` (END, no balloon record), then the device sections, whose
    /// virtio-balloon state carries one more `qemu_balloon_bitmap_save`. The source may run
    /// on afterwards (`cont`), keeping the state.
    fn complete(mut self, q: &mut PatchedQemu) -> Migration {
        self.enc
            .section_part(SectionType::END, bs::RAM_ID, &mut self.out);
        bs::end_section(&mut self.enc, &mut self.out);
        q.virtio_balloon_save_device();
        self.enc.eof(&mut self.out);
        self
    }

    /// The migration fails or is cancelled: the stream is cut, the notifier resets.
    fn fail(self, q: &mut PatchedQemu) {
        q.qemu_balloon_reset_bitmap_data();
    }
}

// ---------------------------------------------------------------------------------------
// The reader side: decode, compare, round trip, apply
// ---------------------------------------------------------------------------------------

fn kolhe_records<'a>(events: &[(u64, Event<'a>)]) -> Vec<KolheBalloon<'a>> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Balloon(BalloonRecord::Kolhe(k)) => Some(*k),
            _ => None,
        })
        .collect()
}

/// The events of `bytes` fed one byte at a time (SPEC.md §11), as strings.
fn decode_bytewise(bytes: &[u8]) -> Vec<String> {
    let mut dec = Decoder::new(DecoderOptions::default().with_dialect(K));
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut events = Vec::new();
    loop {
        let at = dec.offset();
        match dec.decode(&buf).unwrap() {
            Status::Event { event, consumed } => {
                events.push(format!("{at}: {event:?}"));
                buf.drain(..consumed);
            }
            Status::NeedMore { .. } => {
                buf.push(bytes[fed]);
                fed += 1;
                if fed == bytes.len() {
                    dec.finish();
                }
            }
            Status::Done => return events,
        }
    }
}

/// The destination's `qemu_balloon_bitmap_load`, bits as a set of global indices; `None`
/// once DISABLE was read.
fn load(dest: &mut Option<std::collections::BTreeSet<u64>>, w: &Written) {
    match w {
        Written::Disabled => *dest = None,
        Written::Bitmap { pairs, .. } => {
            if let Some(d) = dest {
                for &(next, len) in pairs {
                    if len == 0 {
                        break;
                    }
                    d.extend(next..next + len);
                }
            }
        }
        Written::Crashed => unreachable!(),
    }
}

/// Decodes a complete stream of the model and checks it against what the model wrote:
/// the same records, the same events fed byte by byte, the same bytes re-encoded, the
/// codec's model of the writer (`kolhe_balloon_from_runs`) giving the same record, and the
/// balloon map the same pages as the patch's loader.
fn check(m: &Migration) -> Vec<KolheBalloon<'_>> {
    let events = bs::decode(&m.out, K).unwrap_or_else(|e| panic!("{e}\n{:?}", m.written));
    let recs = kolhe_records(&events);
    assert_eq!(recs.len(), m.written.len());

    let whole: Vec<String> = events
        .iter()
        .map(|(at, e)| format!("{at}: {e:?}"))
        .collect();
    assert_eq!(decode_bytewise(&m.out), whole);

    let mut enc = Encoder::new(12);
    let mut again = Vec::new();
    for (_, e) in &events {
        enc.event(e, &mut again).unwrap();
    }
    assert!(again == m.out, "re-encoding differs");

    let mut enc = Encoder::new(12);
    enc.mem_size(&m.blocks, &mut Vec::new()).unwrap();
    let mut map = BalloonMap::new(&m.blocks, 12);
    let mut dest = Some(std::collections::BTreeSet::new());
    for (rec, w) in recs.iter().zip(&m.written) {
        match (rec, w) {
            (KolheBalloon::Disabled, Written::Disabled) => {}
            (
                KolheBalloon::Bitmap(b),
                Written::Bitmap {
                    pages,
                    start,
                    limit,
                    pairs,
                    set,
                },
            ) => {
                assert_eq!((b.bitmap_pages, b.start, b.limit), (*pages, *start, *limit));
                let terminated = pairs.last().is_some_and(|p| p.1 == 0);
                assert_eq!(b.terminated, terminated);
                let runs: Vec<(u64, u64)> = b.runs.iter().map(|r| (r.start, r.count)).collect();
                assert_eq!(runs[..], pairs[..pairs.len() - usize::from(terminated)]);
                assert_eq!(b.is_unchanged(), start > limit);
                let mut mine = Vec::new();
                enc.kolhe_balloon_from_runs(*pages, *start, *limit, set, &mut mine)
                    .unwrap();
                let mut theirs = RAM_SAVE_FLAG_BALLOON.to_be_bytes().to_vec();
                for v in [*pages, *start, *limit] {
                    put_be64(&mut theirs, v);
                }
                for &(s, l) in pairs {
                    put_be64(&mut theirs, s);
                    put_be64(&mut theirs, l);
                }
                assert_eq!(
                    mine, theirs,
                    "kolhe_balloon_from_runs differs from the patch"
                );
            }
            _ => panic!("decoded {rec:?}, written {w:?}"),
        }
        map.apply(&BalloonRecord::Kolhe(*rec)).unwrap();
        load(&mut dest, w);
        match &dest {
            None => assert!(map.is_disabled() && map.total_ballooned_pages() == 0),
            Some(d) => {
                // Blocks end to end in MEM_SIZE order, 4 KiB pages (SPEC.md §9.6).
                let mut base = 0;
                for (i, b) in m.blocks.iter().enumerate() {
                    let n = b.used_length >> 12;
                    for p in 0..n {
                        assert_eq!(map.contains(i, p), d.contains(&(base + p)), "{i}:{p}");
                    }
                    base += n;
                }
            }
        }
    }
    recs
}

fn bitmap<'a>(rec: &KolheBalloon<'a>) -> KolheBitmap<'a> {
    match rec {
        KolheBalloon::Bitmap(b) => *b,
        KolheBalloon::Disabled => panic!("DISABLE"),
    }
}

fn pairs(w: &Written) -> Vec<(u64, u64)> {
    match w {
        Written::Bitmap { pairs, .. } => pairs.clone(),
        _ => panic!("{w:?}"),
    }
}

fn header(w: &Written) -> (u64, u64, u64) {
    match w {
        Written::Bitmap {
            pages,
            start,
            limit,
            ..
        } => (*pages, *start, *limit),
        _ => panic!("{w:?}"),
    }
}

/// A pc machine as the tests use it: `pc.ram` 12 pages, the ACPI tables ROM 4 pages used of
/// 8 reserved. MEM_SIZE says 16 pages; the patch's bitmap has 20.
fn pc() -> PatchedQemu {
    PatchedQemu::pc(12, 4, 8)
}

// ---------------------------------------------------------------------------------------
// Writer paths
// ---------------------------------------------------------------------------------------

/// First transfer (`balloon_bitmap_xfered` false): `[0, size)`, maximal runs over the
/// whole bitmap, the terminator when no set bit is left. The size is `last_ram_offset()`
/// in pages, which counts the ROM's reserved `max_length`: 20 pages against MEM_SIZE's 16.
#[test]
fn first_transfer_covers_the_whole_bitmap() {
    let mut q = pc();
    assert_eq!(q.balloon_bitmap_pages, 20);
    q.virtio_balloon_handle_output([2, 3, 4, 9, 10, 11], false);
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 0, 20));
    assert_eq!(pairs(&w), [(2, 3), (9, 3), (20, 0)]);
    let m = m.complete(&mut q);
    let recs = check(&m);
    assert!(bitmap(&recs[0]).bitmap_pages > 16, "above MEM_SIZE's total");
}

/// The bug of issue 12 item 7: after a transfer the patch resets
/// `balloon_min_bitmap_offset` to the bitmap size and `balloon_max_bitmap_offset` to 0, so
/// a transfer with no balloon change since writes `start = size, limit = 0` and no pair.
/// Accepted as "unchanged": no run, nothing applied; any split of the input agrees.
#[test]
fn later_transfer_without_change_is_unchanged() {
    let mut q = pc();
    q.virtio_balloon_handle_output([5, 6], false);
    let mut m = Migration::setup(&mut q);
    m.iterate(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 20, 0));
    assert!(pairs(&w).is_empty());
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 20, 0));
    let m = m.complete(&mut q);
    let recs = check(&m);
    for r in &recs[1..] {
        let b = bitmap(r);
        assert!(b.is_unchanged() && !b.terminated);
        let mut map = BalloonMap::new(&m.blocks, 12);
        assert_eq!(map.apply(&BalloonRecord::Kolhe(*r)).unwrap(), []);
        assert_eq!(map.total_ballooned_pages(), 0);
    }
    assert!(!bitmap(&recs[0]).is_unchanged());
}

/// Later transfer with changes: `[min, max]` of the offsets `qemu_balloon_bitmap_update`
/// saw since the previous transfer, deflates included. Runs come from the whole bitmap: the
/// first is clipped at its front to `start`, a run may start at or past `limit`, and a run
/// may run on past `limit`; each ends the loop normally.
#[test]
fn later_transfer_covers_the_touched_range() {
    let mut q = pc();
    q.virtio_balloon_handle_output([2, 3, 4, 5, 9, 10, 11], false);
    let mut m = Migration::setup(&mut q);
    m.iterate(&mut q);
    // Touch 4 (deflate) and 7 (inflate): [4, 7]; 5 is still set, so the first run is 5+1,
    // then 7+1, then 9+3 past the limit ends the loop.
    q.virtio_balloon_handle_output([4], true);
    q.virtio_balloon_handle_output([7], false);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 4, 7));
    assert_eq!(pairs(&w), [(5, 1), (7, 1)]);
    // Touch 10 and 3 (both already set): [3, 10]; 3 is inside the run 2..4, clipped to 3+1.
    q.virtio_balloon_handle_output([10], false);
    q.virtio_balloon_handle_output([3], false);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 3, 10));
    assert_eq!(pairs(&w), [(3, 1), (5, 1), (7, 1), (9, 3)]);
    // Deflate 0 and 1 (never set): [0, 1]; the first set bit is 2, past the limit.
    q.virtio_balloon_handle_output([0, 1], true);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 0, 1));
    assert_eq!(pairs(&w), [(2, 2)]);
    // Deflate everything from 5 on, touching [5, 11]: no set bit left at or after 5.
    q.virtio_balloon_handle_output([5, 7, 9, 10, 11], true);
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 5, 11));
    assert_eq!(pairs(&w), [(20, 0)]);
    check(&m.complete(&mut q));
}

/// A change of one page only (`min == max`): `start == limit`, so no pair is ever sent for
/// it (the patch's off-by-one). Also a touch of page 0 alone: `[0, 0]`.
#[test]
fn one_page_change_sends_no_pair() {
    let mut q = pc();
    let mut m = Migration::setup(&mut q);
    m.iterate(&mut q);
    q.virtio_balloon_handle_output([6], false);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((20, 6, 6), vec![]));
    q.virtio_balloon_handle_output([0], false);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((20, 0, 0), vec![]));
    let m = m.complete(&mut q);
    let recs = check(&m);
    assert!(!bitmap(&recs[1]).is_unchanged() && !bitmap(&recs[2]).is_unchanged());
}

/// Nothing ballooned: the first transfer is the terminator alone.
#[test]
fn empty_bitmap_sends_the_terminator_alone() {
    let mut q = pc();
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((20, 0, 20), vec![(20, 0)]));
    check(&m.complete(&mut q));
}

/// A run that reaches the bitmap's end: `find_next_zero_bit` returns the size, the position
/// becomes the size, which is at least the limit, and the loop ends without a terminator.
/// (A machine without the resizable ROM, so the guest's pages reach the end.)
#[test]
fn run_at_the_bitmap_end_has_no_terminator() {
    let mut q = PatchedQemu::pc(16, 0, 0);
    q.virtio_balloon_handle_output([0, 12, 13, 14, 15], false);
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!(
        (header(&w), pairs(&w)),
        ((16, 0, 16), vec![(0, 1), (12, 4)])
    );
    // Later: touch [13, 14] inside the last run: clipped to 13+3, ends at the size.
    q.virtio_balloon_handle_output([14, 13], false);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((16, 13, 14), vec![(13, 3)]));
    let m = m.complete(&mut q);
    let recs = check(&m);
    assert!(!bitmap(&recs[0]).terminated && !bitmap(&recs[1]).terminated);
}

/// Units: `qemu_balloon_bitmap_update` gets the byte offset of the page in its memory
/// region and shifts it by `VIRTIO_BALLOON_PFN_SHIFT` (12); every field is in 4 KiB pages.
/// For `pc.ram` (at `ram_addr` 0, first in MEM_SIZE) that is the block's page.
#[test]
fn units_are_4k_pages() {
    let mut q = pc();
    q.qemu_balloon_bitmap_update(0x5000, false);
    q.qemu_balloon_bitmap_update(0x6fff, false);
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!(pairs(&w), [(5, 2), (20, 0)]);
    let m = m.complete(&mut q);
    let recs = check(&m);
    let mut map = BalloonMap::new(&m.blocks, 12);
    map.apply(&BalloonRecord::Kolhe(recs[0])).unwrap();
    assert_eq!(map.runs(0).collect::<Vec<_>>(), [PageRun::new(5, 2)]);
}

/// A failed or cancelled migration: the notifier calls `qemu_balloon_reset_bitmap_data`,
/// so the next migration's first transfer is a full one again.
#[test]
fn failed_migration_resets_to_a_full_transfer() {
    let mut q = pc();
    q.virtio_balloon_handle_output([1, 2], false);
    let mut m = Migration::setup(&mut q);
    m.iterate(&mut q);
    m.iterate(&mut q);
    m.fail(&mut q);
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!(
        (header(&w), pairs(&w)),
        ((20, 0, 20), vec![(1, 2), (20, 0)])
    );
    check(&m.complete(&mut q));
}

/// A completed migration (or a `savevm`) leaves `balloon_bitmap_xfered` true, and the
/// device-state copy of the bitmap reset min and max once more. If the source runs on and
/// migrates again, that stream's *first* record is a later-transfer one: unchanged, or the
/// range touched since.
#[test]
fn next_migration_starts_with_a_later_transfer() {
    let mut q = pc();
    q.virtio_balloon_handle_output([3], false);
    let m = Migration::setup(&mut q);
    check(&m.complete(&mut q));
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((20, 20, 0), vec![]));
    let m = m.complete(&mut q);
    check(&m);
    q.virtio_balloon_handle_output([8, 7], false);
    let mut m = Migration::setup(&mut q);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((20, 7, 8), vec![(7, 2)]));
    check(&m.complete(&mut q));
}

/// `skip-balloon` off (or no balloon device registered) sets
/// `BALLOON_BITMAP_DISABLE_CURRENT`, which only `qemu_balloon_bitmap_test` looks at:
/// `qemu_balloon_bitmap_save` writes the same records as when it is on.
#[test]
fn skip_balloon_off_still_writes_bitmaps() {
    let mut q = pc();
    q.skip_balloon = false;
    q.virtio_balloon_handle_output([4], false);
    let mut m = Migration::setup(&mut q);
    assert_eq!(
        q.balloon_bitmap_disable_state,
        BalloonBitmapDisableState::Current
    );
    let w = m.iterate(&mut q);
    assert_eq!(
        (header(&w), pairs(&w)),
        ((20, 0, 20), vec![(4, 1), (20, 0)])
    );
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (20, 20, 0));
    check(&m.complete(&mut q));
}

/// Postcopy sets `BALLOON_BITMAP_DISABLE_PERNAMENT`: every transfer is the DISABLE word
/// alone, in that migration and every later one (the state never leaves it).
#[test]
fn postcopy_writes_disable_for_good() {
    let mut q = pc();
    q.virtio_balloon_handle_output([4], false);
    q.postcopy_ram = true;
    let mut m = Migration::setup(&mut q);
    assert_eq!(m.iterate(&mut q), Written::Disabled);
    assert_eq!(m.iterate(&mut q), Written::Disabled);
    check(&m.complete(&mut q));
    q.postcopy_ram = false;
    let mut m = Migration::setup(&mut q);
    assert_eq!(m.iterate(&mut q), Written::Disabled);
    let m = m.complete(&mut q);
    let recs = check(&m);
    assert_eq!(recs, [KolheBalloon::Disabled]);
}

/// RAM hot-plugged between migrations (`ram_block_add` → `qemu_balloon_bitmap_extend`):
/// the bitmap grows, but `balloon_min_bitmap_offset` still holds the size at the previous
/// transfer, so the next unchanged header has `start` below the size (here also below the
/// new MEM_SIZE total).
#[test]
fn hotplug_between_migrations_grows_the_bitmap() {
    let mut q = pc();
    q.virtio_balloon_handle_output([1], false);
    let m = Migration::setup(&mut q);
    check(&m.complete(&mut q));
    q.ram_block_add("dimm0", 8, 8);
    assert_eq!(q.balloon_bitmap_pages, 28);
    let mut m = Migration::setup(&mut q);
    assert_eq!(
        m.blocks.iter().map(|b| b.used_length >> 12).sum::<u64>(),
        24
    );
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((28, 20, 0), vec![]));
    let w = m.iterate(&mut q);
    assert_eq!(header(&w), (28, 28, 0));
    check(&m.complete(&mut q));
}

/// RAM hot-plugged during a migration: the bitmap grows under a MEM_SIZE that does not
/// know the block. The patch indexes a balloon in the new block by its offset in that
/// block's region, which can lie past MEM_SIZE's pages: the run decodes (it is inside the
/// bitmap) and applies to no block. (The real stream would later carry page records of a
/// block MEM_SIZE did not list; the balloon records themselves decode.)
#[test]
fn hotplug_during_migration() {
    let mut q = pc();
    let mut m = Migration::setup(&mut q);
    m.iterate(&mut q);
    q.ram_block_add("dimm0", 32, 32);
    assert_eq!(q.balloon_bitmap_pages, 52);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((52, 20, 0), vec![]));
    q.virtio_balloon_handle_output([20, 21], false);
    let w = m.iterate(&mut q);
    assert_eq!((header(&w), pairs(&w)), ((52, 20, 21), vec![(20, 2)]));
    let m = m.complete(&mut q);
    let recs = check(&m);
    let mut map = BalloonMap::new(&m.blocks, 12);
    for r in &recs {
        map.apply(&BalloonRecord::Kolhe(*r)).unwrap();
    }
    assert_eq!(map.total_ballooned_pages(), 0);
}

/// No balloon device: `qemu_balloon_bitmap_setup` sets CURRENT (`!balloon_bitmap_rcu`),
/// and the first `qemu_balloon_bitmap_save` writes `0, 0, 0` (all statics still zero) and
/// then dereferences the NULL bitmap: the source dies with the record unflushed, so no
/// complete stream carries it. A size of 0 is below any MEM_SIZE total.
#[test]
fn no_balloon_device_never_completes_a_record() {
    let mut q = PatchedQemu::new();
    q.ram_block_add("pc.ram", 16, 16);
    let mut m = Migration::setup(&mut q);
    assert_eq!(
        q.balloon_bitmap_disable_state,
        BalloonBitmapDisableState::Current
    );
    assert_eq!(m.iterate(&mut q), Written::Crashed);
    let e = kolhe_err(&[0, 0, 0]);
    assert_eq!(
        e.kind,
        ErrorKind::KolheBitmapSize {
            bitmap_pages: 0,
            ram_pages: 16
        }
    );
}

/// Random runs of the writer: guest inflates and deflates, transfers, completed and failed
/// migrations, RAM hot-plugged between migrations, postcopy now and then. Every stream
/// decodes to what was written (see [`check`]), and every record keeps the relations the
/// decoder checks (SPEC.md §9.6).
#[test]
fn random_writer_runs() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let (mut records, mut unchanged) = (0, 0);
    for _ in 0..60 {
        let mut q = PatchedQemu::pc(12 + rnd(20), 1 + rnd(3), 4 + rnd(4));
        let ram = q.ram_list[0].used_length >> 12;
        let mut dimms = 0;
        for _ in 0..4 {
            q.postcopy_ram = rnd(8) == 0;
            q.skip_balloon = rnd(4) != 0;
            let mut m = Migration::setup(&mut q);
            let ram_pages: u64 = m.blocks.iter().map(|b| b.used_length >> 12).sum();
            for _ in 0..1 + rnd(6) {
                for _ in 0..rnd(4) {
                    let from = rnd(ram);
                    let n = 1 + rnd(4u64.min(ram - from));
                    q.virtio_balloon_handle_output(from..from + n, rnd(3) == 0);
                }
                let w = m.iterate(&mut q);
                if let Written::Bitmap {
                    pages,
                    start,
                    limit,
                    pairs,
                    ..
                } = &w
                {
                    records += 1;
                    assert!(*pages >= ram_pages);
                    assert!(limit <= pages);
                    assert!(start <= limit || (*limit == 0 && start <= pages));
                    unchanged += usize::from(start > limit);
                    assert!(pairs.iter().all(|&(s, l)| l > 0 || s == *pages));
                }
            }
            match rnd(3) {
                0 => m.fail(&mut q),
                _ => {
                    check(&m.complete(&mut q));
                }
            }
            if rnd(3) == 0 && dimms < 2 {
                dimms += 1;
                q.ram_block_add(&format!("dimm{dimms}"), 4, 4);
            }
        }
    }
    assert!(records > 200 && unchanged > 20, "{records} {unchanged}");
}

// ---------------------------------------------------------------------------------------
// What the writer cannot write: every kolhe-2016 rejection left
// ---------------------------------------------------------------------------------------

/// Decodes `0x200` and the be64 `fields` after MEM_SIZE of 12 + 4 pages (16).
fn kolhe_err(fields: &[u64]) -> Error {
    let s = bs::with_record(&bs::kolhe_record(fields), false, &bs::kolhe_blocks());
    let e = bs::decode_err(&s, K);
    assert_eq!(e.record, Some(RecordKind::Balloon), "{e}");
    e
}

/// Each rejection with bytes no path of [`PatchedQemu`] writes, the offset from the record
/// word, and why the patch cannot write them.
#[test]
fn rejections_are_bytes_the_writer_cannot_write() {
    use ErrorKind::*;
    let base = bs::record_offset(false, &bs::kolhe_blocks());
    let cases: &[(&[u64], ErrorKind, u64, &str)] = &[
        (
            &[15, 0, 15, 15, 0],
            KolheBitmapSize {
                bitmap_pages: 15,
                ram_pages: 16,
            },
            8,
            "the size is last_ram_offset() in pages and only grows: never below the blocks",
        ),
        (
            &[16, 5, 3],
            KolheStartAfterLimit { start: 5, limit: 3 },
            16,
            "a limit above 0 means an update since the last transfer: min <= max",
        ),
        (
            &[16, 17, 0],
            KolheStartAfterLimit {
                start: 17,
                limit: 0,
            },
            16,
            "an unchanged start is the size at the previous transfer: not above today's",
        ),
        (
            &[16, 0, 17],
            KolheLimitBeyondBitmap {
                limit: 17,
                bitmap_pages: 16,
            },
            24,
            "the limit is the size or an offset inside the bitmap",
        ),
        (
            &[16, 4, 16, 2, 1],
            BalloonRunOrder {
                start: 2,
                previous_end: 4,
            },
            32,
            "find_next_bit searches from the position",
        ),
        (
            &[16, 0, 16, 5, 2, 3, 1],
            BalloonRunOrder {
                start: 3,
                previous_end: 7,
            },
            48,
            "the position moves to the run's end",
        ),
        (
            &[16, 0, 16, 1, 1, 2, 1],
            BalloonRunsAdjacent { start: 2 },
            48,
            "a run ends at a clear bit (find_next_zero_bit), so the next starts later",
        ),
        (
            &[16, 0, 16, 14, 3],
            BalloonRunOutOfRange {
                start: 14,
                count: 3,
                pages: 16,
            },
            32,
            "find_next_zero_bit stops at the size",
        ),
        (
            &[16, 0, 16, 5, 0],
            KolheTerminator {
                start: 5,
                bitmap_pages: 16,
            },
            32,
            "a length 0 is only written with find_next_bit's 'none': the size",
        ),
        (
            &[16, 0, 16, 1, 1, 5, 0],
            KolheTerminator {
                start: 5,
                bitmap_pages: 16,
            },
            48,
            "no empty run in the middle either",
        ),
    ];
    for (fields, kind, at, why) in cases {
        let e = kolhe_err(fields);
        assert_eq!(&e.kind, kind, "{fields:?}: {why}");
        assert_eq!(e.offset, base + at, "{fields:?}: {why}");
    }
    // The word: ram_save_iterate writes the bare flag.
    for word in [0x220u64, 0x1200] {
        let mut rec = bs::kolhe_record(&[16, 0, 16, 16, 0]);
        rec[..8].copy_from_slice(&word.to_be_bytes());
        let s = bs::with_record(&rec, false, &bs::kolhe_blocks());
        assert_eq!(bs::decode_err(&s, K).kind, BalloonWord { word });
    }
}

/// An unchanged header has no pair: bytes after it are the next record, exactly as the
/// patch's loader reads them (`while (tmpoffset < tmplimit)` never runs). Here `2` is not a
/// valid record word.
#[test]
fn pairs_after_an_unchanged_header_are_not_part_of_it() {
    let base = bs::record_offset(false, &bs::kolhe_blocks());
    let s = bs::with_record(
        &bs::kolhe_record(&[16, 16, 0, 2, 1]),
        false,
        &bs::kolhe_blocks(),
    );
    let e = bs::decode_err(&s, K);
    assert_ne!(e.record, Some(RecordKind::Balloon), "{e}");
    assert!(e.offset >= base + 32, "{e}");
    // Without the stray pair it decodes.
    let s = bs::with_record(&bs::kolhe_record(&[16, 16, 0]), false, &bs::kolhe_blocks());
    bs::decode(&s, K).unwrap();
}

/// The codec's own kolhe-2016 writer writes only what its reader reads back as the same
/// record: the unchanged header yes, records the loader's loop would read differently no.
#[test]
fn encoder_writes_only_what_the_decoder_reads_back() {
    let mut enc = Encoder::new(12);
    let mut out = Vec::new();
    let rec = |start, limit, runs: &'static [u8], terminated| {
        KolheBalloon::Bitmap(KolheBitmap {
            bitmap_pages: 16,
            start,
            limit,
            runs: RunList::from_wire(runs).unwrap(),
            terminated,
        })
    };
    let one_run: &'static [u8] = &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3];
    assert!(enc
        .kolhe_balloon(&rec(16, 0, &[], false), &mut out)
        .is_err());
    enc.mem_size(&bs::kolhe_blocks(), &mut out).unwrap();
    let ok = [
        rec(16, 0, &[], false),
        rec(6, 6, &[], false),
        rec(0, 16, one_run, true),
        rec(0, 3, one_run, false),
    ];
    for r in ok {
        out.clear();
        enc.kolhe_balloon(&r, &mut out).unwrap();
        let s = bs::with_record(&out, false, &bs::kolhe_blocks());
        let events = bs::decode(&s, K).unwrap();
        assert_eq!(kolhe_records(&events), [r]);
    }
    let bad = [
        rec(17, 0, &[], false),     // unchanged start above the size
        rec(5, 3, &[], false),      // start after a non-zero limit
        rec(0, 2, one_run, true),   // the loop stops after the run: terminator never read
        rec(0, 16, one_run, false), // the loop reads on: terminator missing
        rec(0, 0, one_run, false),  // the loop never starts: the run is never read
        rec(3, 16, one_run, true),  // the run starts before `start`
    ];
    for r in bad {
        assert!(enc.kolhe_balloon(&r, &mut out).is_err(), "{r:?}");
    }
    let disable_size = KolheBalloon::Bitmap(KolheBitmap {
        bitmap_pages: u64::MAX,
        start: 0,
        limit: 0,
        runs: RunList::EMPTY,
        terminated: false,
    });
    assert!(enc.kolhe_balloon(&disable_size, &mut out).is_err());
    // kolhe_balloon_from_runs: the unchanged header, and not what the writer cannot write.
    out.clear();
    enc.kolhe_balloon_from_runs(20, 20, 0, &[PageRun::new(2, 3)], &mut out)
        .unwrap();
    assert_eq!(out, bs::kolhe_record(&[20, 20, 0]));
    assert!(enc
        .kolhe_balloon_from_runs(20, 21, 0, &[], &mut out)
        .is_err());
    assert!(enc
        .kolhe_balloon_from_runs(15, 0, 15, &[], &mut out)
        .is_err());
}

// ---------------------------------------------------------------------------------------
// ramstream-balloon-v1: the reference writer against the v1 decoder
// ---------------------------------------------------------------------------------------

/// `Encoder::balloon_v1` is the v1 writer (the reference sender writes each block's whole
/// map with it). Every v1 check but one is the encoder's own check (`check_v1` shares
/// `check_runs` and `first_common_page` with the decoder); the run limit is the reader's
/// (`Limits::max_balloon_runs`), so the writer splits a map with more runs into a record
/// of the same kind and incremental records with the rest (SPEC.md §9.5 rule 5). Applied
/// in order they give the same map as one record.
#[test]
fn v1_writer_splits_at_the_readers_run_limit() {
    let blocks = bs::v1_blocks();
    let inflate: Vec<PageRun> = (0..7).map(|i| PageRun::new(i * 10, 3)).collect();
    let deflate: Vec<PageRun> = (0..4).map(|i| PageRun::new(100 + i * 10, 2)).collect();
    let write = |kind, deflate: &[PageRun], max_runs| {
        let mut enc = Encoder::new(12);
        let mut out = Vec::new();
        bs::prelude(
            &mut enc,
            &mut out,
            Some(vec!["x-ramstream-balloon-v1"]),
            &blocks,
        );
        let n = enc
            .balloon_v1_records(0, kind, &inflate, deflate, max_runs, &mut out)
            .unwrap();
        bs::end_section(&mut enc, &mut out);
        enc.eof(&mut out);
        (n, out)
    };
    let decode = |s: &[u8], limit| {
        let mut opts = DecoderOptions::default().with_dialect(Dialect::RamstreamBalloonV1);
        opts.limits.max_balloon_runs = limit;
        let events = decode_all(s, opts)?;
        let mut map = BalloonMap::new(&blocks, 12);
        map.inflate(0, 200..210).unwrap();
        map.deflate(0, 0..1).unwrap();
        let mut kinds = Vec::new();
        for (_, e) in &events {
            if let Event::Balloon(r) = e {
                kinds.push(r.kind_name());
                map.apply(r).unwrap();
            }
        }
        Ok::<_, Error>((kinds, map))
    };
    for (kind, deflate, records, kinds) in [
        (
            BalloonMapKind::FullMap,
            &[][..],
            3,
            vec!["full-map", "incremental", "incremental"],
        ),
        (
            BalloonMapKind::Incremental,
            &deflate[..],
            4,
            vec!["incremental"; 4],
        ),
    ] {
        let (n, one) = write(kind, deflate, u64::MAX);
        assert_eq!(n, 1);
        let e = decode(&one, 3).unwrap_err();
        assert!(matches!(
            e.kind,
            ErrorKind::BalloonTooManyRuns { limit: 3, .. }
        ));
        let (_, want) = decode(&one, 100).unwrap();
        let (n, split) = write(kind, deflate, 3);
        assert_eq!(n, records);
        let (got_kinds, got) = decode(&split, 3).unwrap();
        assert_eq!(got_kinds, kinds);
        assert_eq!(got, want);
    }
    let mut enc = Encoder::new(12);
    enc.mem_size(&blocks, &mut Vec::new()).unwrap();
    let e = enc.balloon_v1_records(
        0,
        BalloonMapKind::FullMap,
        &inflate,
        &[],
        0,
        &mut Vec::new(),
    );
    assert!(e.is_err());
}
