//! Hostile streams against the reference receiver, with guest memory between guard pages.
//!
//! The destination's RAM blocks live in one anonymous mapping laid out as
//!
//! ```text
//! | guard | pc.ram (used_length) | guard | ram1 (used_length) | slack page | guard |
//! ```
//!
//! where every guard is `PROT_NONE`. [`GuardedRam`], the memory of the tests' destination
//! (test-support's `FakeDestination` over it), writes a page exactly where the
//! receiver tells it to, without a bounds check of its own: a page the receiver writes past
//! `pc.ram`'s used length hits a guard and kills this test process with SIGSEGV, and one past
//! `ram1`'s lands in the slack page, which [`assert_memory`] checks is still zero. After each
//! hostile stream the test asserts the typed error (with its stream offset, record and block)
//! and that every byte of both blocks and the slack is what the valid records before the
//! hostile one wrote, and nothing else. SPEC.md §10.2 lists the classes and their errors.
//! The refusals of the stream itself come from the loader the receiver runs on
//! (`RecvErrorKind::Load`, a `ramstream_migrate::Error`).

use std::ptr::NonNull;
use std::rc::Rc;

use ramstream_codec::{ErrorKind, PageAddr, RecordKind};
use ramstream_migrate::{ErrorKind as LoadKind, GuestRam, LayoutMismatch, PageRun, RamBlockLayout};
use ramstream_reference_receiver::dest::ram_blocks;
use ramstream_reference_receiver::{
    receive, DestError, LayoutRefusal, ReceiveOptions, RecvError, RecvErrorKind,
};
use ramstream_reference_vmm::{Error as VmmError, MemoryLayout};
use ramstream_spec::config::SUBSECTION_TARGET_PAGE_BITS;
use ramstream_spec::extension::reference;
use ramstream_spec::limits;
use ramstream_spec::ram::RamFlags;
use ramstream_spec::ram::TARGET_PAGE_SIZE_X86 as PAGE_SIZE;
use ramstream_spec::stream::SectionType;
use ramstream_spec::xbzrle::ENCODING_FLAG_XBZRLE;
use ramstream_test_support::real_stream::{layout, real_stream as real, source_guest, BLOCK, RAM};
use ramstream_test_support::records::{balloon_inflate, mem_size, record, xbzrle};
use ramstream_test_support::FakeDestination;

const BLOCK_PAGES: u64 = PageRun::of_block(BLOCK, PAGE_SIZE).count;
/// Guard size on each side of a block.
const GUARD: usize = 16 * PAGE_SIZE;
/// Readable and writable bytes mapped after `ram1`'s used length, before its guard.
const SLACK: usize = PAGE_SIZE;

// Record flags (SPEC.md §6.2), from the spec crate.
const ZERO: u64 = RamFlags::ZERO.bits();
const PAGE: u64 = RamFlags::PAGE.bits();
const XBZRLE: u64 = RamFlags::XBZRLE.bits();

/// One anonymous mapping: guards `PROT_NONE`, block windows read-write.
struct GuardedMemory {
    base: NonNull<u8>,
    len: usize,
    /// Per block: (offset of its first byte in the mapping, used length, mapped length).
    windows: Vec<(usize, usize, usize)>,
}

impl GuardedMemory {
    /// `pc.ram` with no slack, `ram1` with [`SLACK`] bytes after its used length.
    fn new() -> Rc<Self> {
        let used = BLOCK as usize;
        let w0 = (GUARD, used, used);
        let w1 = (GUARD + used + GUARD, used, used + SLACK);
        let len = w1.0 + w1.2 + GUARD;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        for &(start, _, mapped) in &[w0, w1] {
            // SAFETY: the range lies inside the mapping just created, at page granularity.
            let r = unsafe {
                libc::mprotect(
                    p.cast::<u8>().add(start).cast(),
                    mapped,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            assert_eq!(r, 0, "mprotect");
        }
        Rc::new(GuardedMemory {
            base: NonNull::new(p.cast()).unwrap(),
            len,
            windows: vec![w0, w1],
        })
    }

    /// The byte offset in the mapping of `page` of `block`, if a whole page there lies inside
    /// the mapping (guards included). `None` means the receiver asked for memory that is not
    /// even near the block: writing it would not be caught by a guard, so it is refused.
    fn page_at(&self, block: usize, page: u64, len: usize) -> Option<usize> {
        let (start, _, mapped) = *self.windows.get(block)?;
        let off = usize::try_from(page).ok()?.checked_mul(PAGE_SIZE)?;
        (len == PAGE_SIZE && off + PAGE_SIZE <= mapped + GUARD).then_some(start + off)
    }

    /// Block `b`'s readable bytes: its used length and any slack after it.
    fn window(&self, b: usize) -> &[u8] {
        let (start, _, mapped) = self.windows[b];
        // SAFETY: the window is mapped read-write for the life of `self`, and no `&mut` to it
        // exists (writes go through raw pointers and never overlap a live shared slice: the
        // receiver is done before a test reads a window).
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), mapped) }
    }
}

impl Drop for GuardedMemory {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no slice into it outlives self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Guest memory over [`GuardedMemory`] that writes where it is told (see the module docs);
/// the tests' destination is a [`FakeDestination`] over it.
struct GuardedRam {
    blocks: Vec<RamBlockLayout>,
    mem: Rc<GuardedMemory>,
}

impl GuardedRam {
    /// The mapping offset of the page at `addr`, or a refusal naming the access.
    fn page_at(&self, addr: PageAddr, len: usize) -> Result<usize, DestError> {
        let page = addr.page_index(PAGE_SIZE);
        addr.is_page_aligned(PAGE_SIZE)
            .then(|| self.mem.page_at(addr.block, page, len))
            .flatten()
            .ok_or(DestError::Vmm(VmmError::PageOutOfRange {
                region: addr.block.to_string(),
                first: page,
                count: 1,
                pages: BLOCK_PAGES,
            }))
    }
}

impl GuestRam for GuardedRam {
    type Error = DestError;

    fn layout(&self) -> &[RamBlockLayout] {
        &self.blocks
    }

    fn write_page(&self, addr: PageAddr, data: &[u8]) -> Result<(), DestError> {
        let at = self.page_at(addr, data.len())?;
        // SAFETY: `at..at + PAGE_SIZE` lies inside the mapping. If it is in a guard the
        // process dies with SIGSEGV, which is the point of the guard.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.mem.base.as_ptr().add(at), PAGE_SIZE)
        };
        Ok(())
    }

    fn read_page(&self, addr: PageAddr, dst: &mut [u8]) -> Result<(), DestError> {
        let at = self.page_at(addr, dst.len())?;
        // SAFETY: as in `write_page`; a read of a guard also faults.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.mem.base.as_ptr().add(at),
                dst.as_mut_ptr(),
                PAGE_SIZE,
            )
        };
        Ok(())
    }
}

fn recv_opts() -> ReceiveOptions {
    ReceiveOptions {
        buffer_size: 64 * 1024,
        ..Default::default()
    }
}

/// Receives `stream` into fresh guarded memory; returns the result and the memory. Every
/// stream is also received over a loopback TLS session (`ramstream_tls`, as `ramstream
/// receive --tls-creds` reads it), into memory of its own between guard pages: the same
/// result, the same memory.
fn recv_with(stream: &[u8], opts: &ReceiveOptions) -> (Result<(), RecvError>, Rc<GuardedMemory>) {
    let (plain, mem) = recv_from(stream, opts);
    let (tls, tls_mem) = recv_from(over_tls::Session::send(stream.to_vec()), opts);
    // The same error, at the same stream offset; how many bytes the receiver had read
    // by then depends on the transport's read sizes.
    let what = |r: &Result<(), RecvError>| -> Result<(), String> {
        r.as_ref().map(|&()| ()).map_err(|e| {
            let s = e.to_string();
            s.split_once(" bytes: ")
                .map_or(s.clone(), |(_, w)| w.to_string())
        })
    };
    assert_eq!(what(&tls), what(&plain), "over TLS");
    for b in 0..2 {
        assert!(tls_mem.window(b) == mem.window(b), "block {b} over TLS");
    }
    (plain, mem)
}

#[path = "../../tls/tests/support/mod.rs"]
mod certs;

/// Streams over a loopback TLS session with certificates made for the test.
mod over_tls {
    use super::certs;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::thread::JoinHandle;

    use ramstream_tls::{Acceptor, Connector, Credentials, Endpoint, SharedTlsStream};

    /// The receiving end of a session whose sender writes a stream and ends it.
    pub struct Session {
        tls: SharedTlsStream,
        sender: Option<JoinHandle<()>>,
        _dir: tempfile::TempDir,
    }

    impl Session {
        /// A session carrying `stream`.
        pub fn send(stream: Vec<u8>) -> Session {
            let dir = tempfile::tempdir().unwrap();
            certs::shared_dir(dir.path());
            let acceptor =
                Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
            let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
            let (l, addr) = certs::listener();
            let sender = std::thread::spawn(move || {
                let mut tls = Connector::new(&client)
                    .unwrap()
                    .connect(TcpStream::connect(addr).unwrap(), "127.0.0.1")
                    .unwrap();
                // A receiver that refused the stream stops reading: fine here.
                if tls.write_all(&stream).is_ok() {
                    let _ = tls.shutdown();
                }
            });
            let (tcp, _) = l.accept().unwrap();
            let tls = acceptor.accept(tcp).unwrap().into_shared().unwrap();
            Session {
                tls,
                sender: Some(sender),
                _dir: dir,
            }
        }
    }

    impl Read for Session {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.tls.read(buf)
        }
    }

    impl Drop for Session {
        fn drop(&mut self) {
            let _ = self.tls.shutdown_socket(std::net::Shutdown::Both);
            if let Some(s) = self.sender.take() {
                let _ = s.join();
            }
        }
    }
}

/// Receives from `input` into fresh guarded memory.
fn recv_from(
    input: impl std::io::Read,
    opts: &ReceiveOptions,
) -> (Result<(), RecvError>, Rc<GuardedMemory>) {
    let mem = GuardedMemory::new();
    let m = Rc::clone(&mem);
    let r = receive(
        input,
        move |l: &MemoryLayout| {
            if *l != layout() {
                // The test maps only the 8 MiB layout.
                return Err(DestError::Vmm(VmmError::InvalidLayout(format!("{l:?}"))));
            }
            let ram = GuardedRam {
                blocks: ram_blocks(l),
                mem: m,
            };
            Ok(FakeDestination::with_ram(l, ram))
        },
        opts,
    );
    (r.map(|_| ()), mem)
}

/// Asserts that both blocks and the slack hold exactly `pages` (block, page, content) and
/// zero everywhere else.
fn assert_memory(mem: &GuardedMemory, pages: &[(usize, u64, Vec<u8>)]) {
    for b in 0..2 {
        let w = mem.window(b);
        for (p, got) in w.chunks(PAGE_SIZE).enumerate() {
            let want = pages
                .iter()
                .rev()
                .find(|(pb, pp, _)| *pb == b && *pp == p as u64)
                .map(|(_, _, c)| &c[..]);
            let ok = match want {
                Some(c) => got == c,
                None => got.iter().all(|&x| x == 0),
            };
            let what = if p as u64 >= BLOCK_PAGES {
                "slack past used_length"
            } else {
                "page"
            };
            assert!(
                ok,
                "block {b} {what} {p} differs from what valid records wrote"
            );
        }
    }
}

/// A page of recognisable content.
fn content(seed: u8) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// The real stream up to and including MEM_SIZE, then `records`, then EOS, footer and EOF.
/// Returns the stream and the offset of each of `records`.
fn after_mem_size(records: &[Vec<u8>]) -> (Vec<u8>, Vec<u64>) {
    real().splice(real().after_mem_size, records)
}

/// Receives a hostile stream: it must fail before resuming, and memory must hold exactly
/// `pages`. Returns the error.
fn refused(stream: &[u8], pages: &[(usize, u64, Vec<u8>)]) -> RecvErrorKind {
    refused_with(stream, pages, &recv_opts())
}

fn refused_with(
    stream: &[u8],
    pages: &[(usize, u64, Vec<u8>)],
    opts: &ReceiveOptions,
) -> RecvErrorKind {
    let (r, mem) = recv_with(stream, opts);
    let err = r.expect_err("a hostile stream must be refused");
    assert!(!err.resumed, "{err}");
    assert_memory(&mem, pages);
    err.kind
}

/// The loader's refusal, which must be at `offset`, in `record`, naming `block`.
fn load_error(
    kind: RecvErrorKind,
    offset: u64,
    record: RecordKind,
    block: Option<&str>,
) -> LoadKind {
    let RecvErrorKind::Load(e) = kind else {
        panic!("expected the loader's refusal, got {kind}");
    };
    assert_eq!(e.offset, offset, "{e}");
    assert_eq!(e.record, Some(record), "{e}");
    assert_eq!(e.block.as_deref(), block, "{e}");
    e.kind
}

/// The decoder's error (through the loader), which must be at `offset`, in `record`, naming
/// `block`.
fn decode_error(
    kind: RecvErrorKind,
    offset: u64,
    record: RecordKind,
    block: Option<&str>,
) -> ErrorKind {
    match load_error(kind, offset, record, block) {
        LoadKind::Stream(k) => k,
        k => panic!("expected a decode error, got {k}"),
    }
}

/// The decoder's error (through the loader), wherever it is.
fn stream_error(kind: RecvErrorKind) -> ramstream_migrate::Error {
    match kind {
        RecvErrorKind::Load(e) if e.stream_kind().is_some() => e,
        k => panic!("expected a decode error, got {k}"),
    }
}

/// The last valid page of `pc.ram`, right before its guard: written in the preamble of
/// several cases to show that the writable area ends exactly at the guard.
fn last_page_of_pc_ram() -> (Vec<u8>, (usize, u64, Vec<u8>)) {
    let c = content(0x40);
    let rec = record(PAGE, BLOCK - PAGE_SIZE as u64, Some("pc.ram"), &c);
    (rec, (0, BLOCK_PAGES - 1, c))
}

#[test]
fn positive_control_last_page_of_each_block_is_received() {
    // The reference sender's stream writes the last page of pc.ram (next to its guard) and
    // of ram1 (next to the slack) and resumes.
    let (r, mem) = recv_with(&real().stream, &recv_opts());
    r.expect("the reference stream must be received");
    let g = source_guest();
    for b in 0..2 {
        assert_eq!(&mem.window(b)[..BLOCK as usize], g.block(b), "block {b}");
        assert!(g.block(b)[(BLOCK as usize - PAGE_SIZE)..]
            .iter()
            .any(|&x| x != 0));
    }
    assert!(mem.window(1)[BLOCK as usize..].iter().all(|&x| x == 0));
    // Hand-made: PAGE, ZERO with a fill and XBZRLE each on a last page; the stream has no
    // device sections, so it ends early, but every write lands right before a guard.
    let (last, expect) = last_page_of_pc_ram();
    let fill = vec![0xa5; PAGE_SIZE];
    let mut patched = fill.clone();
    patched[PAGE_SIZE - 2..].copy_from_slice(&[1, 2]);
    // zrun 4094, nzrun 2: the delta ends exactly at the page end.
    let delta = [0xfe, 0x1f, 0x02, 1, 2];
    let (s, _) = after_mem_size(&[
        last,
        record(ZERO, BLOCK - PAGE_SIZE as u64, Some("ram1"), &[0xa5]),
        xbzrle(BLOCK - PAGE_SIZE as u64, None, &delta),
    ]);
    let kind = refused(&s, &[expect, (1, BLOCK_PAGES - 1, patched)]);
    assert!(
        matches!(
            kind,
            RecvErrorKind::MissingSection {
                idstr: reference::VCPU_SECTION_IDSTR
            }
        ),
        "{kind}"
    );
}

#[test]
fn page_offset_at_the_block_end() {
    let (last, expect) = last_page_of_pc_ram();
    for (name, b) in [("pc.ram", 0usize), ("ram1", 1)] {
        let (s, at) = after_mem_size(&[
            last.clone(),
            record(PAGE, BLOCK, Some(name), &content(b as u8)),
        ]);
        let k = decode_error(
            refused(&s, std::slice::from_ref(&expect)),
            at[1],
            RecordKind::Page,
            Some(name),
        );
        assert_eq!(
            k,
            ErrorKind::OffsetBeyondBlock {
                offset: BLOCK,
                used_length: BLOCK
            }
        );
    }
}

#[test]
fn page_offset_one_page_past_the_block_end() {
    let (s, at) = after_mem_size(&[record(
        PAGE,
        BLOCK + PAGE_SIZE as u64,
        Some("pc.ram"),
        &content(1),
    )]);
    let k = decode_error(refused(&s, &[]), at[0], RecordKind::Page, Some("pc.ram"));
    assert_eq!(
        k,
        ErrorKind::OffsetBeyondBlock {
            offset: BLOCK + PAGE_SIZE as u64,
            used_length: BLOCK
        }
    );
}

#[test]
fn misaligned_offsets_are_flag_bits() {
    // An offset is a page number shifted left by the page bits: the low bits of a
    // "misaligned" offset are flags, and these combinations are not valid ones.
    for low in [1u64, 0x800, 0xfff] {
        let off = BLOCK - PAGE_SIZE as u64 + low;
        let (s, at) = after_mem_size(&[record(PAGE, off, Some("pc.ram"), &content(1))]);
        let e = stream_error(refused(&s, &[]));
        assert_eq!(e.offset, at[0]);
        let kind = e.stream_kind().unwrap();
        if low & 0x100 != 0 {
            // QEMU checks the compressed-page bit before any other.
            assert_eq!(*kind, ErrorKind::UnexpectedCompressedPage, "{low:#x}");
        } else {
            assert!(
                matches!(kind, ErrorKind::UnknownFlags { flags } if flags.bits() == low | PAGE),
                "{low:#x}: {e}"
            );
        }
    }
}

#[test]
fn u64_overflowing_offsets() {
    let top = !(PAGE_SIZE as u64 - 1);
    for (flags, payload, kind) in [
        (PAGE, content(1), RecordKind::Page),
        (ZERO, vec![0xff], RecordKind::Zero),
        (XBZRLE, vec![1, 0, 2, 0x01, 0x07], RecordKind::Xbzrle),
    ] {
        let (s, at) = after_mem_size(&[record(flags, top, Some("ram1"), &payload)]);
        let k = decode_error(refused(&s, &[]), at[0], kind, Some("ram1"));
        assert_eq!(
            k,
            ErrorKind::OffsetBeyondBlock {
                offset: top,
                used_length: BLOCK
            }
        );
    }
}

#[test]
fn zero_and_xbzrle_offsets_past_the_end() {
    let (last, expect) = last_page_of_pc_ram();
    for (rec, kind) in [
        (
            record(ZERO, BLOCK, Some("pc.ram"), &[0x5a]),
            RecordKind::Zero,
        ),
        (
            xbzrle(BLOCK, Some("pc.ram"), &[0, 1, 0x77]),
            RecordKind::Xbzrle,
        ),
    ] {
        let (s, at) = after_mem_size(&[last.clone(), rec]);
        let k = decode_error(
            refused(&s, std::slice::from_ref(&expect)),
            at[1],
            kind,
            Some("pc.ram"),
        );
        assert_eq!(
            k,
            ErrorKind::OffsetBeyondBlock {
                offset: BLOCK,
                used_length: BLOCK
            }
        );
    }
}

#[test]
fn xbzrle_delta_running_past_the_page() {
    // On the last page of ram1 (the slack follows it): zrun 4095, then a 2-byte literal.
    let last = BLOCK - PAGE_SIZE as u64;
    let (s, at) = after_mem_size(&[xbzrle(last, Some("ram1"), &[0xff, 0x1f, 0x02, 9, 9])]);
    let e = stream_error(refused(&s, &[]));
    assert_eq!((e.offset, e.record), (at[0], Some(RecordKind::Xbzrle)));
    assert!(
        matches!(
            e.stream_kind(),
            Some(ErrorKind::Xbzrle(
                ramstream_codec::xbzrle::XbzrleError::LiteralRunPastPage { .. }
            ))
        ),
        "{e}"
    );
    // A delta longer than a page is refused from its header, before any byte of it is read.
    let mut long = vec![ENCODING_FLAG_XBZRLE];
    long.extend_from_slice(&(PAGE_SIZE as u16 + 1).to_be_bytes());
    let (s, at) = after_mem_size(&[record(XBZRLE, last, Some("ram1"), &long)]);
    let k = decode_error(
        refused(&s, &[]),
        at[0] + 8 + 5 + 1,
        RecordKind::Xbzrle,
        Some("ram1"),
    );
    assert_eq!(
        k,
        ErrorKind::XbzrleLength {
            len: PAGE_SIZE as u16 + 1,
            page_size: PAGE_SIZE
        }
    );
}

#[test]
fn continue_before_any_block() {
    let (s, at) = after_mem_size(&[record(PAGE, 0, None, &content(1))]);
    let k = decode_error(refused(&s, &[]), at[0], RecordKind::Page, None);
    assert_eq!(k, ErrorKind::ContinueWithoutBlock);
}

#[test]
fn continue_after_a_block_change_resolves_to_the_new_block() {
    // pc.ram's last page, then ram1 page 0, then CONTINUE pages: they belong to ram1, and
    // CONTINUE at ram1's end is refused with ram1 named (not pc.ram, where the stream began).
    let (last, expect) = last_page_of_pc_ram();
    let (a, b) = (content(1), content(2));
    let (s, at) = after_mem_size(&[
        last,
        record(PAGE, 0, Some("ram1"), &a),
        record(PAGE, PAGE_SIZE as u64, None, &b),
        record(PAGE, BLOCK, None, &content(3)),
    ]);
    let k = decode_error(
        refused(&s, &[expect, (1, 0, a), (1, 1, b)]),
        at[3],
        RecordKind::Page,
        Some("ram1"),
    );
    assert_eq!(
        k,
        ErrorKind::OffsetBeyondBlock {
            offset: BLOCK,
            used_length: BLOCK
        }
    );
}

#[test]
fn page_record_before_mem_size() {
    let r = real();
    // The ram START header, then a page record instead of MEM_SIZE.
    let (s, at) = r.splice(
        r.mem_size_at,
        &[record(PAGE, 0, Some("pc.ram"), &content(1))],
    );
    let k = decode_error(
        refused(&s, &[]),
        at[0] + 8,
        RecordKind::Page,
        Some("pc.ram"),
    );
    assert_eq!(
        k,
        ErrorKind::UnknownBlock {
            idstr: "pc.ram".into()
        }
    );
}

/// Replaces the stream's first MEM_SIZE by `ms`; asserts the layout refusal at its offset.
fn layout_refused(ms: Vec<u8>) -> LayoutRefusal {
    let r = real();
    let (s, at) = r.splice(r.mem_size_at, &[ms]);
    match refused(&s, &[]) {
        RecvErrorKind::LayoutMismatch { offset, reason, .. } => {
            assert_eq!(offset, at[0]);
            reason
        }
        k => panic!("expected LayoutMismatch, got {k}"),
    }
}

#[test]
fn mem_size_that_disagrees_with_the_destination_layout() {
    let not_reference = |ms| {
        let reason = layout_refused(ms);
        assert!(
            matches!(reason, LayoutRefusal::NotReferenceLayout { ref expected }
                if *expected == ram_blocks(&layout())),
            "{reason}"
        );
    };
    // Unknown block name.
    not_reference(mem_size(RAM, &[("pc.ram", BLOCK), ("evil", BLOCK)]));
    // Other used lengths (same total).
    not_reference(mem_size(
        RAM,
        &[("pc.ram", BLOCK / 2), ("ram1", BLOCK + BLOCK / 2)],
    ));
    // Blocks in another order.
    not_reference(mem_size(RAM, &[("ram1", BLOCK), ("pc.ram", BLOCK)]));
    // An extra block (12 MiB: the reference machine lays that out as two blocks).
    let reason = layout_refused(mem_size(
        RAM + BLOCK,
        &[("pc.ram", BLOCK), ("ram1", BLOCK), ("extra", BLOCK)],
    ));
    assert!(
        matches!(reason, LayoutRefusal::NotReferenceLayout { .. }),
        "{reason}"
    );
    // A missing block (4 MiB: too small for the reference machine).
    let reason = layout_refused(mem_size(BLOCK, &[("pc.ram", BLOCK)]));
    assert!(
        matches!(
            reason,
            LayoutRefusal::Unplaceable(VmmError::InvalidLayout(_))
        ),
        "{reason}"
    );
    // A total the reference machine cannot lay out at all (above its 16 GiB of page tables).
    let reason = layout_refused(mem_size(1 << 40, &[("pc.ram", 1 << 39), ("ram1", 1 << 39)]));
    assert!(
        matches!(
            reason,
            LayoutRefusal::Unplaceable(VmmError::InvalidLayout(_))
        ),
        "{reason}"
    );
    assert!(
        reason.to_string().contains("cannot be laid out"),
        "{reason}"
    );
    // A second MEM_SIZE growing both blocks: valid for the reference machine, but not the
    // layout the destination was built with; without this check the decoder would accept
    // pages up to 8 MiB into each 4 MiB block. The loader refuses it.
    let (s, at) = after_mem_size(&[mem_size(2 * RAM, &[("pc.ram", RAM), ("ram1", RAM)])]);
    let k = load_error(refused(&s, &[]), at[0], RecordKind::MemSize, None);
    assert!(
        matches!(k, LoadKind::Layout(LayoutMismatch::Changed)),
        "{k}"
    );
}

#[test]
fn mem_size_total_against_the_configured_guest_size() {
    let r = real();
    // Default: the codec's limit, 16 TiB.
    let huge = 1u64 << 62;
    let (s, at) = r.splice(r.mem_size_at, &[mem_size(huge, &[("pc.ram", huge)])]);
    let k = decode_error(refused(&s, &[]), at[0], RecordKind::MemSize, None);
    assert_eq!(
        k,
        ErrorKind::RamTotalTooLarge {
            total: huge,
            limit: limits::MAX_RAM_TOTAL
        }
    );
    // A destination configured for 8 MiB refuses 16 MiB, a size it could otherwise lay out.
    let opts = ReceiveOptions {
        max_ram_total: RAM,
        ..recv_opts()
    };
    let (s, at) = r.splice(
        r.mem_size_at,
        &[mem_size(2 * RAM, &[("pc.ram", RAM), ("ram1", RAM)])],
    );
    let k = decode_error(
        refused_with(&s, &[], &opts),
        at[0],
        RecordKind::MemSize,
        None,
    );
    assert_eq!(
        k,
        ErrorKind::RamTotalTooLarge {
            total: 2 * RAM,
            limit: RAM
        }
    );
    // And its own 8 MiB passes.
    let (res, _) = recv_with(&r.stream, &opts);
    res.expect("the configured size itself is accepted");
}

#[test]
fn balloon_runs_past_the_block() {
    // Write ram1's last page, balloon it (the receiver gives it back: zero), then a run
    // that passes the block's end, and one whose end overflows u64.
    let c = content(7);
    let last = BLOCK_PAGES - 1;
    for (start, count) in [(BLOCK_PAGES - 4, 5), (u64::MAX - 1, 3)] {
        let (s, at) = after_mem_size(&[
            record(
                PAGE,
                PageRun::new(last, 1).byte_range(PAGE_SIZE).start,
                Some("ram1"),
                &c,
            ),
            balloon_inflate("ram1", &[PageRun::new(last, 1)]),
            balloon_inflate("ram1", &[PageRun::new(start, count)]),
        ]);
        // Each run is 16 bytes after the 8-byte word, the idstr and the 10-byte header.
        let run_at = at[2] + 8 + 5 + 10;
        let k = decode_error(refused(&s, &[]), run_at, RecordKind::Balloon, Some("ram1"));
        assert_eq!(
            k,
            ErrorKind::BalloonRunOutOfRange {
                start,
                count,
                pages: BLOCK_PAGES
            }
        );
    }
}

#[test]
fn configuration_with_another_page_size() {
    // target-page-bits 16: page records would be 64 KiB; the destination's pages are 4 KiB.
    let r = real();
    let mut s = r.stream[..r.config_at].to_vec();
    s.push(SectionType::CONFIGURATION.0);
    s.extend_from_slice(&(reference::MACHINE_TYPE.len() as u32).to_be_bytes());
    s.extend_from_slice(reference::MACHINE_TYPE.as_bytes());
    let sub = SUBSECTION_TARGET_PAGE_BITS;
    s.push(SectionType::SUBSECTION.0);
    s.push(sub.len() as u8);
    s.extend_from_slice(sub.as_bytes());
    s.extend_from_slice(&1u32.to_be_bytes());
    s.extend_from_slice(&16u32.to_be_bytes());
    s.extend_from_slice(&r.stream[r.after_config..]);
    let k = load_error(
        refused(&s, &[]),
        r.config_at as u64,
        RecordKind::Configuration,
        None,
    );
    assert!(
        matches!(
            k,
            LoadKind::PageSizeMismatch {
                stream: 0x10000,
                guest: 4096
            }
        ),
        "{k}"
    );
}

#[test]
fn page_records_for_a_ballooned_page_are_refused() {
    // Balloon pages 8..12 of pc.ram, then send one of them as PAGE, ZERO (non-zero fill) and
    // XBZRLE: each is refused before anything is written, naming the record and the page.
    let c = content(9);
    let delta = [0x00, 0x01, 0xAA]; // unchanged 0, then 1 literal byte
    for (flags, payload, kind) in [
        (PAGE, c.clone(), RecordKind::Page),
        (ZERO, vec![0x5a], RecordKind::Zero),
        (XBZRLE, vec![], RecordKind::Xbzrle),
    ] {
        let rec = if kind == RecordKind::Xbzrle {
            xbzrle(10 * PAGE_SIZE as u64, Some("pc.ram"), &delta)
        } else {
            record(flags, 10 * PAGE_SIZE as u64, Some("pc.ram"), &payload)
        };
        let (s, at) = after_mem_size(&[balloon_inflate("pc.ram", &[PageRun::new(8, 4)]), rec]);
        let k = load_error(refused(&s, &[]), at[1], kind, Some("pc.ram"));
        assert!(
            matches!(k, LoadKind::PageOfBallooned { page: 10 }),
            "{kind}: expected PageOfBallooned, got {k}"
        );
    }
    // The page right after the ballooned run is accepted (it is written).
    let (s, _) = after_mem_size(&[
        balloon_inflate("pc.ram", &[PageRun::new(8, 4)]),
        record(PAGE, 12 * PAGE_SIZE as u64, Some("pc.ram"), &c),
    ]);
    let (r, mem) = recv_with(&s, &recv_opts());
    assert!(
        !matches!(r, Err(ref e) if matches!(
            e.kind,
            RecvErrorKind::Load(ref l) if matches!(l.kind, LoadKind::PageOfBallooned { .. })
        )),
        "{r:?}"
    );
    assert_memory(&mem, &[(0, 12, c)]);
}
