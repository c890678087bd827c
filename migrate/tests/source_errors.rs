//! The source's refusals: a failed guest read surfaces typed with its address and block and
//! leaves the source unusable; calls out of order, runs outside a block and unusable
//! options are refused with what was wrong.

mod source_support;
mod support;

use std::time::{Duration, Instant};

use ramstream_codec::{PageAddr, RecordKind};
use ramstream_migrate::{
    DirtyPageSource, ErrorKind, GuestRam, PageRun, Phase, RamBlockLayout, Source, SourceOptions,
    Transmit,
};
use source_support::*;
use support::VecRamError;

/// Guest memory whose read of one page fails.
struct FailingRead<'a> {
    ram: &'a ScriptedGuest,
    at: PageAddr,
}

impl GuestRam for FailingRead<'_> {
    type Error = VecRamError;
    fn layout(&self) -> &[RamBlockLayout] {
        self.ram.layout()
    }
    fn read_page(&self, addr: PageAddr, buf: &mut [u8]) -> Result<(), VecRamError> {
        if addr == self.at {
            return Err(VecRamError::Injected(addr));
        }
        (self.ram.read_page(addr, buf)).map_err(|_| VecRamError::OutOfBlock(addr, buf.len()))
    }
    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), VecRamError> {
        (self.ram.write_page(addr, data)).map_err(|_| VecRamError::OutOfBlock(addr, data.len()))
    }
}

#[test]
fn a_guest_read_error_surfaces_typed() {
    let g = guest(vec![]);
    let at = PageAddr::of_page(1, 7, PAGE);
    let ram = FailingRead { ram: &g, at };
    let mut source = Source::new(&layout(), SourceOptions::default()).unwrap();
    let (mut out, mut now) = (Vec::new(), Instant::now());
    let err = loop {
        now += Duration::from_millis(1);
        match source.poll_transmit(now, &ram, &mut out) {
            Ok(Transmit::Send { bytes }) => source.handle_sent(bytes),
            Ok(Transmit::SyncDirty) => source.handle_sync(now).unwrap(),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    let ErrorKind::Guest {
        addr,
        source: cause,
    } = &err.kind
    else {
        panic!("{err}");
    };
    assert_eq!(*addr, at);
    assert_eq!(
        cause.downcast_ref::<VecRamError>(),
        Some(&VecRamError::Injected(at))
    );
    assert_eq!(err.block.as_deref(), Some("ram1"));
    assert_eq!(err.record, Some(RecordKind::Page));
    assert_eq!(err.offset, out.len() as u64, "the bytes produced before it");
    assert_eq!(source.phase(), Phase::Bulk);
    assert!(
        err.to_string()
            .contains("guest memory at block 1 offset 0x7000: Injected"),
        "{err}"
    );
    // The source is unusable afterwards.
    let again = source.poll_transmit(now, &g, &mut out).unwrap_err();
    assert!(matches!(again.kind, ErrorKind::Poisoned), "{again}");
}

/// A dirty log that fails.
struct BrokenLog;

#[derive(Debug)]
struct LogGone;

impl std::fmt::Display for LogGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dirty log gone")
    }
}

impl std::error::Error for LogGone {}

impl DirtyPageSource for BrokenLog {
    type Error = LogGone;
    fn take_dirty(&mut self, _: usize, _: &mut dyn FnMut(PageRun)) -> Result<(), LogGone> {
        Err(LogGone)
    }
}

#[test]
fn calls_out_of_order_and_bad_input_are_refused() {
    let g = guest(vec![]);
    let mut source = Source::new(&layout(), SourceOptions::default()).unwrap();
    let now = Instant::now();
    let kind = |r: Result<(), ramstream_migrate::Error>| r.unwrap_err().kind;
    assert!(matches!(
        kind(source.handle_stopped(now, &mut devices())),
        ErrorKind::UnexpectedCall {
            call: "handle_stopped",
            phase: Phase::Setup
        }
    ));
    assert!(matches!(
        kind(source.handle_sync(now)),
        ErrorKind::UnexpectedCall {
            call: "handle_sync",
            ..
        }
    ));
    assert!(matches!(
        kind(source.handle_digests(vec![[0; 32]; 2])),
        ErrorKind::UnexpectedCall { .. }
    ));
    assert!(matches!(
        kind(source.handle_dirty(2, &[PageRun::new(0, 1)])),
        ErrorKind::NoSuchBlock { block: 2 }
    ));
    let e = source
        .handle_dirty(1, &[PageRun::new(0, 1), PageRun::new(60, 5)])
        .unwrap_err();
    assert_eq!(e.block.as_deref(), Some("ram1"));
    assert!(
        matches!(e.kind, ErrorKind::RunOutOfRange { block: 1, run, pages: 64 } if run == PageRun::new(60, 5))
    );
    assert!(matches!(
        kind(source.handle_balloon(0, &[PageRun::new(u64::MAX, 2)])),
        ErrorKind::RunOutOfRange { .. }
    ));
    // Refused input changes nothing: the stream goes on.
    let mut out = Vec::new();
    assert!(matches!(
        source.poll_transmit(now, &g, &mut out),
        Ok(Transmit::Send { .. })
    ));
    assert!(matches!(
        source.poll_transmit(now, &g, &mut out),
        Ok(Transmit::SyncDirty)
    ));
    let e = source.sync_dirty(now, &mut BrokenLog).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::DirtyLog(_)));
    assert!(e.to_string().ends_with("dirty log: dirty log gone"), "{e}");
}

#[test]
fn unusable_options_are_refused() {
    let bad = |layout: &[RamBlockLayout], o: SourceOptions| Source::new(layout, o).unwrap_err();
    let e = bad(&layout(), SourceOptions::default().with_page_size(3000));
    assert!(matches!(
        e.kind,
        ErrorKind::InvalidPageSize { page_size: 3000 }
    ));
    let e = bad(
        &[RamBlockLayout::new("pc.ram", 4096 * 3 + 512)],
        SourceOptions::default(),
    );
    assert!(matches!(
        e.kind,
        ErrorKind::BlockNotWholePages { block: 0, .. }
    ));
    assert_eq!(e.block.as_deref(), Some("pc.ram"));
    let e = bad(
        &layout(),
        SourceOptions::default().with_xbzrle_cache_size(Some(3 << 20)),
    );
    assert!(matches!(e.kind, ErrorKind::XbzrleCache(_)), "{e}");
}
