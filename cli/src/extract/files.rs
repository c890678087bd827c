//! Writing a single stream's pages straight into the image files: page bodies go from the
//! mapped input to the files with gathered `pwritev`s (adjacent pages in one call), no copy in
//! memory, so memory stays bounded whatever the guest size. A bitmap per block records which
//! pages hold data, so a ZERO record over data zeroes the page in the file, and one over a page
//! never written costs nothing (the file is sparse). The whole-block sha256s are hashed
//! alongside by [`FollowHasher`].

use std::fs::File;
use std::io::IoSlice;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ramstream_codec::{Error, ErrorKind, PageAddr, RamBlock, RecordKind};

use super::early_sync::EarlySync;
use super::follow_hash::{FollowHasher, Sums, Written};

/// The most bytes one gathered write carries.
const WRITE_RUN: usize = 4 << 20;
/// The most pages one gathered write carries (Linux's `IOV_MAX` is 1024).
const MAX_IOV: usize = 1024;

/// One block's image file.
pub struct BlockFile {
    /// The block's idstr.
    pub idstr: String,
    /// Its used length.
    pub used_length: u64,
    /// The file name inside the output directory.
    pub fname: String,
    file: File,
    /// One bit per page: whether the page holds data.
    data: Vec<u64>,
}

/// The RAM of a single stream, written into one sparse file per block as it is decoded.
pub struct FileImage<'a> {
    dir: PathBuf,
    page_size: usize,
    blocks: Vec<BlockFile>,
    hasher: Option<FollowHasher>,
    /// Writeback started while decoding.
    sync: Option<EarlySync>,
    /// Adjacent pages waiting for one write: block, offset of the first, the bodies
    /// borrowed from the input (empty when they are copied into `copied`).
    run: Option<(usize, u64, Vec<IoSlice<'a>>)>,
    run_bytes: usize,
    /// The bodies of the pending write, when the input's buffer is reused after each record
    /// (a socket): [`FileImage::page_copied`].
    copied: Vec<u8>,
    /// A page of scratch for XBZRLE and filled pages.
    page: Vec<u8>,
}

impl<'a> FileImage<'a> {
    /// Creates the image files of `blocks` in `dir` (which exists), each its used length and
    /// sparse; `hash` starts the sha256 thread.
    pub fn create(dir: &Path, page_size: usize, blocks: &[RamBlock], hash: bool) -> Result<Self> {
        let mut files = Vec::new();
        let mut used = std::collections::HashSet::new();
        for b in blocks {
            let base = super::file_name(&b.idstr, "ram");
            let mut fname = base.clone();
            let mut n = 1;
            while !used.insert(fname.clone()) {
                fname = format!("{base}.{n}");
                n += 1;
            }
            let path = dir.join(&fname);
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.set_len(b.used_length)
                .with_context(|| format!("cannot size {}", path.display()))?;
            let pages = b.used_length.div_ceil(page_size as u64);
            files.push(BlockFile {
                idstr: b.idstr.clone(),
                used_length: b.used_length,
                fname,
                file,
                data: vec![0; pages.div_ceil(64) as usize],
            });
        }
        let hasher = if hash {
            let handles = files
                .iter()
                .map(|b| Ok((b.file.try_clone()?, b.used_length)))
                .collect::<std::io::Result<Vec<_>>>()
                .context("cannot open the image files for hashing")?;
            Some(FollowHasher::start(handles, page_size)?)
        } else {
            None
        };
        let handles = files
            .iter()
            .map(|b| b.file.try_clone())
            .collect::<std::io::Result<Vec<_>>>()
            .context("cannot open the image files for writeback")?;
        let sync = Some(EarlySync::start(handles)?);
        Ok(FileImage {
            dir: dir.to_path_buf(),
            page_size,
            blocks: files,
            hasher,
            sync,
            run: None,
            run_bytes: 0,
            copied: Vec::new(),
            page: vec![0; page_size],
        })
    }

    /// Whether `blocks` is the list the files were made for (same idstrs and lengths).
    pub fn same_blocks(&self, blocks: &[RamBlock]) -> bool {
        self.blocks.len() == blocks.len()
            && self
                .blocks
                .iter()
                .zip(blocks)
                .all(|(f, b)| f.idstr == b.idstr && f.used_length == b.used_length)
    }

    /// A PAGE record: its body, borrowed from the input, joins the pending write.
    pub fn page(&mut self, addr: PageAddr, body: &'a [u8]) -> Result<()> {
        self.join_run(addr, body.len(), false)?;
        if let Some((_, _, iov)) = &mut self.run {
            iov.push(IoSlice::new(body));
        }
        Ok(())
    }

    /// A PAGE record whose body lives only until the next record (the input is a socket
    /// whose buffer is reused): the body is copied into the pending write.
    pub fn page_copied(&mut self, addr: PageAddr, body: &[u8]) -> Result<()> {
        self.join_run(addr, body.len(), true)?;
        self.copied.extend_from_slice(body);
        Ok(())
    }

    /// Checks a page of `len` bytes at `addr` and makes it the end of the pending run,
    /// writing the run first when the page does not follow it (or its bodies are held the
    /// other way: `copied`, or borrowed). The caller then adds the body.
    fn join_run(&mut self, addr: PageAddr, len: usize, copied: bool) -> Result<()> {
        self.check(addr, len)?;
        let follows = self.run.as_ref().is_some_and(|(b, start, iov)| {
            iov.is_empty() == copied
                && *b == addr.block
                && *start + self.run_bytes as u64 == addr.offset
                && self.run_bytes + len <= WRITE_RUN
                && iov.len() < MAX_IOV
        });
        if !follows {
            self.flush()?;
            self.run = Some((addr.block, addr.offset, Vec::new()));
        }
        self.run_bytes += len;
        self.mark(addr, true);
        Ok(())
    }

    /// A ZERO record: a page filled with `fill`. A zero fill over a page without data
    /// writes nothing.
    pub fn fill(&mut self, addr: PageAddr, fill: u8) -> Result<()> {
        self.check(addr, self.page_size)?;
        if fill == 0 && !self.holds(addr) {
            return Ok(());
        }
        self.flush()?;
        self.page.fill(fill);
        self.write_page(addr)?;
        self.mark(addr, fill != 0);
        Ok(())
    }

    /// An XBZRLE record: the delta applied to the page the file holds.
    pub fn xbzrle(&mut self, addr: PageAddr, delta: &[u8], at: u64) -> Result<()> {
        self.check(addr, self.page_size)?;
        self.flush()?;
        let f = &self.blocks[addr.block];
        use std::os::unix::fs::FileExt;
        f.file
            .read_exact_at(&mut self.page, addr.offset)
            .with_context(|| format!("cannot read back {}", self.dir.join(&f.fname).display()))?;
        ramstream_codec::xbzrle::decode(delta, &mut self.page)
            .map_err(|e| Error::new(at, ErrorKind::Xbzrle(e)).in_record(RecordKind::Xbzrle))?;
        self.write_page(addr)?;
        self.mark(addr, true);
        Ok(())
    }

    /// Writes what is pending, syncs every file and waits for the sha256s (`None` without
    /// hashing). Returns the block files.
    pub fn finish(mut self) -> Result<(Vec<BlockFile>, Option<Sums>)> {
        self.flush()?;
        if let Some(s) = self.sync.take() {
            s.finish();
        }
        for b in &self.blocks {
            b.file
                .sync_all()
                .with_context(|| format!("cannot sync {}", self.dir.join(&b.fname).display()))?;
        }
        let sums = match self.hasher.take() {
            Some(h) => Some(h.finish()?),
            None => None,
        };
        Ok((std::mem::take(&mut self.blocks), sums))
    }

    /// Reads back every page that holds data and hands it to `put` with its address, for a
    /// stream that leaves the files (a changed block list, or multifd channels): the caller
    /// then drops this image.
    pub fn read_back(mut self, mut put: impl FnMut(PageAddr, &[u8]) -> Result<()>) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.flush()?;
        let mut page = std::mem::take(&mut self.page);
        for (i, b) in self.blocks.iter().enumerate() {
            for p in 0..b.used_length.div_ceil(self.page_size as u64) {
                if b.data[(p / 64) as usize] & (1 << (p % 64)) == 0 {
                    continue;
                }
                let addr = PageAddr::new(i, p * self.page_size as u64);
                b.file
                    .read_exact_at(&mut page, addr.offset)
                    .with_context(|| format!("cannot read back {}", b.fname))?;
                put(addr, &page)?;
            }
        }
        Ok(())
    }

    /// Errors, instead of writing elsewhere, for a page outside its block's file.
    fn check(&self, addr: PageAddr, len: usize) -> Result<()> {
        let Some(b) = self.blocks.get(addr.block) else {
            bail!("page for block {} of {}", addr.block, self.blocks.len());
        };
        let end = addr.offset.checked_add(len as u64);
        if len != self.page_size || end.is_none_or(|e| e > b.used_length) {
            bail!(
                "block {}: a {len}-byte page at {:#x} is outside its {} bytes",
                b.idstr,
                addr.offset,
                b.used_length
            );
        }
        Ok(())
    }

    fn holds(&self, addr: PageAddr) -> bool {
        let p = addr.offset / self.page_size as u64;
        self.blocks[addr.block].data[(p / 64) as usize] & (1 << (p % 64)) != 0
    }

    fn mark(&mut self, addr: PageAddr, data: bool) {
        let p = addr.offset / self.page_size as u64;
        let word = &mut self.blocks[addr.block].data[(p / 64) as usize];
        if data {
            *word |= 1 << (p % 64);
        } else {
            *word &= !(1 << (p % 64));
        }
    }

    /// Writes the scratch page at `addr`.
    fn write_page(&mut self, addr: PageAddr) -> Result<()> {
        let page = std::mem::take(&mut self.page);
        let r = self.write_at(addr.block, addr.offset, &mut [IoSlice::new(&page)]);
        self.page = page;
        r
    }

    /// Writes the pending pages.
    fn flush(&mut self) -> Result<()> {
        if let Some((b, start, mut iov)) = self.run.take() {
            if iov.is_empty() {
                let copied = std::mem::take(&mut self.copied);
                let r = self.write_at(b, start, &mut [IoSlice::new(&copied)]);
                self.copied = copied;
                self.copied.clear();
                r?;
            } else {
                self.write_at(b, start, &mut iov)?;
            }
        }
        self.run_bytes = 0;
        Ok(())
    }

    /// Writes `iov` at `offset` of block `b`, then tells the hasher.
    fn write_at(&mut self, b: usize, offset: u64, iov: &mut [IoSlice<'_>]) -> Result<()> {
        let len: u64 = iov.iter().map(|s| s.len() as u64).sum();
        let f = &self.blocks[b];
        pwritev_all(&f.file, iov, offset)
            .with_context(|| format!("cannot write {}", self.dir.join(&f.fname).display()))?;
        if let Some(s) = &mut self.sync {
            s.wrote(b, len);
        }
        if let Some(h) = &self.hasher {
            h.send(Written {
                block: b,
                offset,
                len,
            });
        }
        Ok(())
    }
}

/// `pwritev` until every byte of `iov` is written at `offset`.
fn pwritev_all(file: &File, mut iov: &mut [IoSlice<'_>], mut offset: u64) -> std::io::Result<()> {
    while !iov.is_empty() {
        let n = match rustix::io::pwritev(file, &iov[..iov.len().min(MAX_IOV)], offset) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        offset += n as u64;
        IoSlice::advance_slices(&mut iov, n);
    }
    Ok(())
}
