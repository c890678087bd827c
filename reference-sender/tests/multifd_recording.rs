//! The reference sender with multifd (SPEC.md §14): a scripted guest sent by
//! `migrate_multifd` with one thread per channel into a multi-file recording (SPEC.md
//! §14.9), read back with the codec's decoders (default options: QEMU's rules of SPEC.md
//! §14.8), RAM rebuilt sync point by sync point and compared with the guest's; the
//! refusals; a channel that fails.

mod support;

use std::fs::File;
use std::io::{self, Write};
use std::num::NonZeroU8;
use std::time::Duration;

use ramstream_reference_sender::{
    migrate, migrate_multifd, GuestSource, SendErrorKind, SendOptions,
};
use support::*;

fn opts(channels: u8) -> SendOptions {
    SendOptions {
        downtime_limit: Duration::ZERO,
        max_iterations: 3,
        multifd_channels: NonZeroU8::new(channels),
        ..SendOptions::default()
    }
}

/// Data in both blocks, zero pages, a balloon, and pages dirtied at every sync.
fn guest() -> SharedGuest {
    let mut g = ScriptedGuest::new(
        layout(),
        vec![
            vec![w(0, 0, 300, 1)],
            vec![w(0, 10, 20, 2), w(1, 5, 3, 3)],
            vec![w(1, 500, 40, 4)],
            vec![w(0, 900, 100, 5)],
        ],
    );
    g.apply(&w(1, 100, 200, 6));
    g.apply(&ScriptStep::Inflate {
        block: 1,
        first: 600,
        count: 300,
    });
    g.steady = vec![w(0, 700, 16, 7)];
    SharedGuest::new(g)
}

#[test]
fn a_multi_file_recording_rebuilds_the_guest_with_one_sync_per_flush() {
    let dir = tempfile::tempdir().unwrap();
    for channels in [1u8, 2, 4] {
        let main = dir.path().join(format!("vm-{channels}.mig"));
        let mut g = guest();
        let files: Vec<File> = (0..channels)
            .map(|id| File::create(channel_path(&main, id)).unwrap())
            .collect();
        let r = migrate_multifd(
            &mut g,
            File::create(&main).unwrap(),
            files,
            &opts(channels),
            &mut |_| {},
        )
        .expect("migration");
        assert_eq!((r.status.as_str(), r.iterations), ("completed", 3));
        assert!(!g.is_running(), "paused after success");

        let rec = read_recording(&main, channels);
        // Setup, the bulk stage, three dirty iterations, stop-and-copy.
        assert_eq!(rec.flushes, 6);
        for (b, image) in rec.image.iter().enumerate() {
            assert!(*image == g.inner.block(b), "{channels} channels: block {b}");
        }
        // One uuid, the report's, random (version 4), on every channel.
        let m = r.multifd.as_ref().expect("multifd report");
        assert_eq!((m.channels, m.sync_points), (channels, 6));
        let uuid = rec.inits[0].uuid;
        assert!(rec.inits.iter().all(|i| i.uuid == uuid));
        assert_eq!(m.uuid.replace('-', ""), hex::encode(uuid));
        assert_eq!(uuid[6] >> 4, 4);
        // The figures are the files'.
        assert_eq!(r.ram.transferred, rec.lens.iter().sum::<u64>());
        assert_eq!(r.ram.multifd_bytes, rec.lens[1..].iter().sum::<u64>());
        for (c, (&len, &(normal, zero))) in m
            .per_channel
            .iter()
            .zip(rec.lens[1..].iter().zip(&rec.pages))
        {
            assert_eq!((c.bytes, c.normal, c.zero, c.syncs), (len, normal, zero, 6));
            assert!(normal > 0 && zero > 0, "channel {} carried both", c.id);
            assert_eq!(c.packets, rec.packets[usize::from(c.id)]);
        }
        let (normal, zero) = rec.pages.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
        assert_eq!((r.ram.normal, r.ram.duplicate), (normal, zero));
        // The balloon map is off with multifd: ballooned pages went as zero pages.
        assert_eq!((r.ram.balloon_records, r.ram.ballooned_skipped), (0, 0));
        assert!(zero >= 300);
    }
}

#[test]
fn multifd_is_refused_without_its_connections_a_page_reader_or_with_xbzrle() {
    let refusal = |r: Result<_, ramstream_reference_sender::SendError>| {
        let e = r.expect_err("refused");
        assert!(e.guest_running, "the guest keeps running");
        assert!(matches!(e.kind, SendErrorKind::Config(_)), "{e}");
        e.to_string()
    };
    let mut g = guest();
    let e = refusal(migrate(&mut g, io::sink(), &opts(2), &mut |_| {}));
    assert!(e.contains("migrate_multifd"), "{e}");
    let e = refusal(migrate_multifd(
        &mut g,
        io::sink(),
        vec![io::sink()],
        &opts(2),
        &mut |_| {},
    ));
    assert!(
        e.contains("2 channels asked for, 1 connections given"),
        "{e}"
    );
    let xbzrle = SendOptions {
        xbzrle: true,
        ..opts(1)
    };
    let e = refusal(migrate_multifd(
        &mut g,
        io::sink(),
        vec![io::sink()],
        &xbzrle,
        &mut |_| {},
    ));
    assert!(e.contains("Multifd is not compatible with xbzrle"), "{e}");
    // A guest whose pages no other thread can read.
    let mut plain = g.inner.clone();
    let e = refusal(migrate_multifd(
        &mut plain,
        io::sink(),
        vec![io::sink()],
        &opts(1),
        &mut |_| {},
    ));
    assert!(e.contains("page_reader"), "{e}");
}

/// A connection that breaks after `left` bytes.
struct Breaks {
    left: usize,
}

impl Write for Breaks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer gone"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_broken_channel_fails_the_migration_naming_it_and_the_guest_runs_again() {
    let mut g = guest();
    let channels = vec![Breaks { left: usize::MAX }, Breaks { left: 100_000 }];
    let e = migrate_multifd(&mut g, io::sink(), channels, &opts(2), &mut |_| {})
        .expect_err("channel 1 breaks");
    assert!(e.guest_running && g.is_running(), "{e}");
    let text = e.to_string();
    assert!(text.contains("multifd channel 1: peer gone"), "{text}");
    assert!(e.bytes_sent >= 100_000, "{text}");
}
