//! The manifest's whole-block sha256s, hashed on a second thread that follows the writer
//! through the image files while the stream is decoded, so that at the end of the stream only
//! the tail is left to hash.
//!
//! The writer tells the thread of every write, *after* it completed ([`Written`]). The thread
//! hashes a block up to the end of the highest write so far; it reads pages that were written
//! with `pread` (the kernel orders it against the writer's `pwrite`s; no memory is shared) and
//! takes pages never written as zeros without reading them (the files are sparse). It keeps a
//! `Sha256` state checkpoint every [`CHECKPOINT`] bytes, and on a write at offset `o` below
//! what it has hashed (a later round, an XBZRLE delta, a ZERO record over data, a page filling
//! a gap) rolls back to the last checkpoint at or below `o`.
//!
//! Why the sum is that of the final file: a chunk is read either after a write to it completed
//! (then it reads the new bytes) or before; in the second case the write's message was sent
//! after the read began, so the thread takes it after the chunk was hashed and rolls back below
//! it. Chunks never straddle a checkpoint, so the rollback drops the whole chunk. A page taken
//! as zeros had no write announced when it was hashed; a later write to it rolls back the same
//! way.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// Bytes hashed between two checkpoints of the hash state.
pub const CHECKPOINT: u64 = 8 << 20;
/// Bytes read and hashed at a time (divides [`CHECKPOINT`]).
const CHUNK: u64 = 1 << 20;

/// The sha256 of each block, in block order.
pub type Sums = Vec<[u8; 32]>;

/// What the writer tells the hashing thread: a write of `len` bytes at `offset` of block
/// `block` completed.
#[derive(Debug)]
pub struct Written {
    /// The block index.
    pub block: usize,
    /// The first byte written.
    pub offset: u64,
    /// How many bytes.
    pub len: u64,
}

/// The writer's handle on the hashing thread.
pub struct FollowHasher {
    tx: Option<Sender<Written>>,
    thread: Option<JoinHandle<Result<Vec<[u8; 32]>>>>,
    /// Set when the handle is dropped without [`FollowHasher::finish`]: the thread stops.
    abandoned: Arc<AtomicBool>,
}

/// One block as the thread sees it.
struct Block {
    file: File,
    len: u64,
    page_size: u64,
    /// One bit per page: whether a write to it was announced (the others are holes).
    data: Vec<u64>,
    /// The end of the highest write announced.
    ready: u64,
    /// How far it is hashed.
    pos: u64,
    state: Sha256,
    /// `(offset, state after hashing [0, offset))`, ascending; the first at 0.
    checkpoints: Vec<(u64, Sha256)>,
}

impl FollowHasher {
    /// Starts the thread over `files`: for each block, a read handle on its image file and
    /// the block's length, in pages of `page_size` bytes.
    pub fn start(files: Vec<(File, u64)>, page_size: usize) -> Result<Self> {
        let (tx, rx) = channel();
        let page_size = page_size as u64;
        let blocks = files
            .into_iter()
            .map(|(file, len)| Block {
                file,
                len,
                page_size,
                data: vec![0; len.div_ceil(page_size).div_ceil(64) as usize],
                ready: 0,
                pos: 0,
                state: Sha256::new(),
                checkpoints: vec![(0, Sha256::new())],
            })
            .collect();
        let abandoned = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&abandoned);
        let thread = std::thread::Builder::new()
            .name("extract-sha256".into())
            .spawn(move || follow(blocks, rx, &stop))
            .context("cannot start the sha256 thread")?;
        Ok(FollowHasher {
            tx: Some(tx),
            thread: Some(thread),
            abandoned,
        })
    }

    /// Tells the thread `msg`. A thread that stopped early (a read error) is reported by
    /// [`FollowHasher::finish`].
    pub fn send(&self, msg: Written) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }

    /// Waits for the thread to hash every block to its end; the sha256 of each block file.
    /// Call it once every write completed.
    pub fn finish(mut self) -> Result<Sums> {
        self.tx = None;
        let thread = self.thread.take().context("the sha256 thread was joined")?;
        thread
            .join()
            .map_err(|_| anyhow!("the sha256 thread panicked"))?
    }
}

impl Drop for FollowHasher {
    fn drop(&mut self) {
        // An error path: the thread stops at its next chunk, and is not waited for.
        self.abandoned.store(true, Ordering::Relaxed);
        self.tx = None;
    }
}

/// The thread: takes every message waiting, hashes one chunk, again; once the writer is
/// gone, hashes every block to its end.
fn follow(
    mut blocks: Vec<Block>,
    rx: Receiver<Written>,
    abandoned: &AtomicBool,
) -> Result<Vec<[u8; 32]>> {
    let mut buf = vec![0u8; CHUNK as usize];
    let zeros = vec![0u8; CHUNK as usize];
    let mut open = true;
    while open {
        if abandoned.load(Ordering::Relaxed) {
            bail!("abandoned");
        }
        loop {
            match rx.try_recv() {
                Ok(m) => take(&mut blocks, m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !open {
            break;
        }
        match blocks.iter_mut().enumerate().find(|(_, b)| b.pos < b.ready) {
            Some((i, b)) => b
                .step(&mut buf, &zeros)
                .with_context(|| format!("block {i}"))?,
            None => match rx.recv() {
                Ok(m) => take(&mut blocks, m),
                Err(_) => open = false,
            },
        }
    }
    blocks
        .iter_mut()
        .enumerate()
        .map(|(i, b)| {
            b.ready = b.len;
            while b.pos < b.len {
                if abandoned.load(Ordering::Relaxed) {
                    bail!("abandoned");
                }
                b.step(&mut buf, &zeros)
                    .with_context(|| format!("block {i}"))?;
            }
            Ok(b.state.clone().finalize().into())
        })
        .collect()
}

/// Applies one message. Indexes and offsets come from the writer, which checked them.
fn take(blocks: &mut [Block], m: Written) {
    let Some(b) = blocks.get_mut(m.block) else {
        return;
    };
    let end = m.offset.saturating_add(m.len).min(b.len);
    let mut p = m.offset / b.page_size;
    while p * b.page_size < end {
        b.data[(p / 64) as usize] |= 1 << (p % 64);
        p += 1;
    }
    b.ready = b.ready.max(end);
    b.rollback(m.offset);
}

impl Block {
    /// Hashes the next chunk below `ready`, not past the next checkpoint: runs of pages
    /// written are read from the file, runs of holes are `zeros`.
    fn step(&mut self, buf: &mut [u8], zeros: &[u8]) -> Result<()> {
        let end = self.ready.min((self.pos / CHUNK + 1) * CHUNK);
        while self.pos < end {
            let written = self.written(self.pos);
            let mut to = (self.pos / self.page_size + 1) * self.page_size;
            while to < end && self.written(to) == written {
                to += self.page_size;
            }
            let n = (to.min(end) - self.pos) as usize;
            if written {
                self.file
                    .read_exact_at(&mut buf[..n], self.pos)
                    .with_context(|| {
                        format!("cannot read the image at {:#x} to hash it", self.pos)
                    })?;
                self.state.update(&buf[..n]);
            } else {
                self.state.update(&zeros[..n]);
            }
            self.pos += n as u64;
        }
        if self.pos.is_multiple_of(CHECKPOINT)
            && self.checkpoints.last().map(|c| c.0) != Some(self.pos)
        {
            self.checkpoints.push((self.pos, self.state.clone()));
        }
        Ok(())
    }

    /// Whether a write to the page holding byte `at` was announced.
    fn written(&self, at: u64) -> bool {
        let p = at / self.page_size;
        self.data[(p / 64) as usize] & (1 << (p % 64)) != 0
    }

    /// Forgets what was hashed at or above `offset`'s checkpoint.
    fn rollback(&mut self, offset: u64) {
        if offset >= self.pos {
            return;
        }
        while self.checkpoints.len() > 1 && self.checkpoints.last().is_some_and(|c| c.0 > offset) {
            self.checkpoints.pop();
        }
        let (at, state) = &self.checkpoints[self.checkpoints.len() - 1];
        self.pos = *at;
        self.state = state.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    /// Writes, announces and rewrites in a scripted order, racing the thread: the sum is
    /// always the final file's.
    #[test]
    fn the_sum_is_the_final_files_after_rewrites_below_the_frontier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.ram");
        let len = 3 * CHECKPOINT + 4096;
        let f = File::create(&path).unwrap();
        f.set_len(len).unwrap();
        let h = FollowHasher::start(vec![(File::open(&path).unwrap(), len)], 4096).unwrap();
        let mut want = vec![0u8; len as usize];
        let mut put = |off: u64, byte: u8, h: &FollowHasher| {
            let page = vec![byte; 4096];
            f.write_all_at(&page, off).unwrap();
            want[off as usize..off as usize + 4096].copy_from_slice(&page);
            h.send(Written {
                block: 0,
                offset: off,
                len: 4096,
            });
        };
        // Every page but a gap of holes at 64 KiB.
        for i in (0..(2 * CHECKPOINT / 4096)).filter(|i| !(16..32).contains(i)) {
            put(i * 4096, (i % 251) as u8 | 1, &h);
        }
        // Give the thread time to hash past the early pages, then rewrite them, fill a
        // hole, and zero a page that held data.
        std::thread::sleep(std::time::Duration::from_millis(50));
        put(4096, 0xee, &h);
        put(20 * 4096, 0xab, &h);
        put(CHECKPOINT + 8192, 0xdd, &h);
        put(3 * CHECKPOINT, 0xcc, &h);
        put(0, 0, &h);
        let sums = h.finish().unwrap();
        assert_eq!(sums, vec![sha(&want)]);
        assert_eq!(sha(&std::fs::read(&path).unwrap()), sha(&want));
    }

    /// A rollback returns to the checkpoint at or below the offset, and none above what was
    /// hashed.
    #[test]
    fn rollback_returns_to_the_checkpoint_below() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.ram");
        let len = 2 * CHECKPOINT + CHUNK;
        File::create(&path).unwrap().set_len(len).unwrap();
        let mut b = Block {
            file: File::open(&path).unwrap(),
            len,
            page_size: 4096,
            data: vec![0; (len / 4096).div_ceil(64) as usize],
            ready: len,
            pos: 0,
            state: Sha256::new(),
            checkpoints: vec![(0, Sha256::new())],
        };
        let mut buf = vec![0u8; CHUNK as usize];
        let zeros = vec![0u8; CHUNK as usize];
        while b.pos < len {
            b.step(&mut buf, &zeros).unwrap();
        }
        assert_eq!(b.checkpoints.len(), 3);
        b.rollback(len);
        assert_eq!(b.pos, len, "an offset not yet hashed keeps the state");
        b.rollback(CHECKPOINT + 4096);
        assert_eq!(b.pos, CHECKPOINT);
        b.rollback(4096);
        assert_eq!((b.pos, b.checkpoints.len()), (0, 1));
    }
}
