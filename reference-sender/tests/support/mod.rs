//! The multifd sender tests' guest and reader: test-support's `ScriptedGuest` with its
//! memory mirrored where the channel threads can read it, and a reader of multi-file
//! recordings (SPEC.md §14.9) that checks them against SPEC.md §14 and rebuilds RAM.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use ramstream_codec::multifd::{
    decode_channel, BlockTable, ChannelEvent, ChannelOptions, InitPacket,
};
use ramstream_codec::{decode_all, DecoderOptions, Event, PageAddr, RamBlock};
use ramstream_reference_sender::{GuestError, GuestSource, PageReader, StateBlobs};
use ramstream_reference_vmm::{DirtyBitmap, MemoryLayout};
use ramstream_spec::multifd::RECORDING_CHANNEL_SUFFIX;
pub use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE;
pub use ramstream_test_support::{ScriptStep, ScriptedGuest};

/// A scripted guest whose memory the channel threads read from a mirror, refreshed at
/// every dirty sync (the only time a scripted guest changes): a page a channel reads
/// before the refresh is dirty in the log that sync returned, and goes again.
pub struct SharedGuest {
    pub inner: ScriptedGuest,
    mirror: Arc<Mirror>,
}

/// The guest's memory as the channel threads see it.
struct Mirror(RwLock<Vec<Vec<u8>>>);

impl PageReader for Mirror {
    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError> {
        let mem = self.0.read().expect("mirror lock");
        let at = addr.offset as usize;
        let page = mem
            .get(addr.block)
            .and_then(|b| b.get(at..at + dst.len()))
            .ok_or_else(|| GuestError::Other(format!("no page at {addr:?}")))?;
        dst.copy_from_slice(page);
        Ok(())
    }
}

impl SharedGuest {
    pub fn new(inner: ScriptedGuest) -> Self {
        let mirror = Arc::new(Mirror(RwLock::new(Vec::new())));
        let g = SharedGuest { inner, mirror };
        g.refresh();
        g
    }

    fn refresh(&self) {
        let n = self.inner.layout().regions.len();
        *self.mirror.0.write().expect("mirror lock") =
            (0..n).map(|b| self.inner.block(b).to_vec()).collect();
    }
}

impl GuestSource for SharedGuest {
    fn layout(&self) -> &MemoryLayout {
        self.inner.layout()
    }
    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), GuestError> {
        GuestSource::read_page(&self.inner, addr, dst)
    }
    fn start_dirty_log(&mut self) -> Result<(), GuestError> {
        self.inner.start_dirty_log()
    }
    fn stop_dirty_log(&mut self) -> Result<(), GuestError> {
        self.inner.stop_dirty_log()
    }
    fn sync_dirty(&mut self) -> Result<Vec<DirtyBitmap>, GuestError> {
        let maps = self.inner.sync_dirty()?;
        self.refresh();
        Ok(maps)
    }
    fn ballooned_runs(&self) -> Vec<Vec<ramstream_codec::balloon::PageRun>> {
        self.inner.ballooned_runs()
    }
    fn pause(&mut self) -> Result<(), GuestError> {
        self.inner.pause()
    }
    fn resume(&mut self) -> Result<(), GuestError> {
        self.inner.resume()
    }
    fn is_running(&mut self) -> bool {
        self.inner.is_running()
    }
    fn state_blobs(&mut self) -> Result<StateBlobs, GuestError> {
        self.inner.state_blobs()
    }
    fn page_reader(&self) -> Option<Arc<dyn PageReader>> {
        Some(self.mirror.clone())
    }
}

/// 8 MiB: `pc.ram` and `ram1`, 1024 pages each.
pub fn layout() -> MemoryLayout {
    MemoryLayout::with_ram_size(8 << 20).unwrap()
}

/// The guest writes a new pattern (seeded) into `count` pages from `first`.
pub fn w(block: usize, first: u64, count: u64, seed: u64) -> ScriptStep {
    ScriptStep::Write {
        block,
        first,
        count,
        seed,
    }
}

/// `F.multifd-<id>` beside recording `F`.
pub fn channel_path(main: &Path, id: u8) -> std::path::PathBuf {
    let mut name = main.as_os_str().to_owned();
    name.push(format!("{RECORDING_CHANNEL_SUFFIX}{id}"));
    name.into()
}

/// A multifd recording read back and checked.
pub struct Recording {
    /// The main stream's blocks (MEM_SIZE).
    pub blocks: Vec<RamBlock>,
    /// MULTIFD_FLUSH records on the main stream.
    pub flushes: usize,
    /// Each channel's initial packet, by id.
    pub inits: Vec<InitPacket>,
    /// Each channel's normal and zero pages.
    pub pages: Vec<(u64, u64)>,
    /// Each channel's packets (RAM and SYNC; not the initial packet).
    pub packets: Vec<u64>,
    /// RAM rebuilt: every channel's pages applied sync point by sync point.
    pub image: Vec<Vec<u8>>,
    /// Each file's length, the main stream first.
    pub lens: Vec<u64>,
}

/// One channel's pages between two SYNC packets: contents, or `None` for a zero page.
type Epoch<'a> = Vec<(PageAddr, Option<&'a [u8]>)>;

/// Reads the recording `main` with `channels` channel files: the main stream with the
/// codec's decoder (default options: dialect qemu), each channel with the channel decoder
/// (default options, which enforce SPEC.md §14.8's rules; then with the migration's
/// channel count and the first channel's uuid). Panics, naming what, unless the main
/// stream holds no page record, every channel starts with its initial packet and has one
/// SYNC packet per MULTIFD_FLUSH and no page after its last, and no page is sent twice
/// within one epoch.
pub fn read_recording(main: &Path, channels: u8) -> Recording {
    let stream = std::fs::read(main).expect("main stream file");
    let events = decode_all(&stream, DecoderOptions::default()).expect("main stream decodes");
    let mut blocks = Vec::new();
    let mut flushes = 0;
    for (i, (at, e)) in events.iter().enumerate() {
        match e {
            Event::MemSize(m) => blocks = m.blocks.clone(),
            Event::Page(_) | Event::Zero(_) | Event::Xbzrle(_) | Event::Balloon(_) => {
                panic!("a page record on the main stream at {at:#x}")
            }
            Event::MultifdFlush(_) => {
                flushes += 1;
                assert!(matches!(events[i + 1].1, Event::Eos(_)), "FLUSH then EOS");
            }
            _ => {}
        }
    }
    assert!(
        !channel_path(main, channels).exists(),
        "no extra channel file"
    );
    let files: Vec<Vec<u8>> = (0..channels)
        .map(|id| std::fs::read(channel_path(main, id)).expect("channel file"))
        .collect();
    let table = BlockTable::new(&blocks);
    let mut inits = Vec::new();
    let mut pages = Vec::new();
    let mut packets = Vec::new();
    let mut epochs: Vec<Vec<Epoch<'_>>> = Vec::new();
    for (id, bytes) in files.iter().enumerate() {
        decode_channel(bytes, ChannelOptions::default(), &table)
            .unwrap_or_else(|e| panic!("channel {id}, default options: {e}"));
        let first = decode_channel(&bytes[..64], ChannelOptions::default(), &table).unwrap();
        let ChannelEvent::Init(init) = first[0].1 else {
            panic!("channel {id} does not start with its initial packet")
        };
        let opts = ChannelOptions::default()
            .with_channels(Some(channels))
            .with_uuid(Some(
                inits.first().map_or(init.uuid, |i: &InitPacket| i.uuid),
            ));
        let events = decode_channel(bytes, opts, &table).expect("channel decodes");
        assert_eq!(init.id as usize, id, "the file of channel {id}");
        inits.push(init);
        let (mut normal, mut zero, mut epoch, mut mine) = (0, 0, Vec::new(), Vec::new());
        for (_, e) in &events[1..] {
            match *e {
                ChannelEvent::Page { addr, data } => {
                    normal += 1;
                    epoch.push((addr, Some(data)));
                }
                ChannelEvent::Zero { addr } => {
                    zero += 1;
                    epoch.push((addr, None));
                }
                ChannelEvent::Sync => mine.push(std::mem::take(&mut epoch)),
                ChannelEvent::Init(_) => panic!("channel {id}: a second initial packet"),
                _ => {}
            }
        }
        assert!(epoch.is_empty(), "channel {id}: pages after its last SYNC");
        assert_eq!(mine.len(), flushes, "channel {id}: one SYNC per sync point");
        pages.push((normal, zero));
        packets.push(
            events
                .iter()
                .filter(|(_, e)| matches!(e, ChannelEvent::Packet(_)))
                .count() as u64,
        );
        epochs.push(mine);
    }
    let mut image: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| vec![0; b.used_length as usize])
        .collect();
    for k in 0..flushes {
        let mut seen = BTreeSet::new();
        for ch in &epochs {
            for &(addr, data) in &ch[k] {
                assert!(seen.insert(addr), "{addr:?} twice before sync point {k}");
                let at = addr.offset as usize;
                let page = &mut image[addr.block][at..at + PAGE];
                match data {
                    Some(d) => page.copy_from_slice(d),
                    None => page.fill(0),
                }
            }
        }
    }
    let mut lens = vec![stream.len() as u64];
    lens.extend(files.iter().map(|f| f.len() as u64));
    Recording {
        blocks,
        flushes,
        inits,
        pages,
        packets,
        image,
        lens,
    }
}
