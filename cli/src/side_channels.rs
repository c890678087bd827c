//! Connections that arrive after a migration's connections were counted: the main stream,
//! and the multifd channels that had connected by its first sync point (SPEC.md §14.6). A
//! QEMU source connects every channel before that point, so a later connection is not part
//! of the migration: it stops it, naming the peer.

use std::sync::Arc;

use anyhow::anyhow;

use crate::addr::Listener;
use crate::multifd::incoming::{Conn, Kind, FIRST_BYTES_TIMEOUT};
use crate::multifd::stop::Stop;

/// Watches `listener` in the background once the migration's `channels` multifd channels
/// were counted; the first later connection fails the migration through `stop`.
pub fn watch(listener: Listener, channels: usize, stop: Arc<Stop>) {
    std::thread::spawn(move || {
        let (conn, peer) = loop {
            match listener.accept() {
                Ok(c) => break c,
                // A peer refused before it was a connection (a failed TLS handshake) is
                // no part of the migration: say so and keep watching.
                Err(e) if e.downcast_ref::<ramstream_tls::Error>().is_some() => {
                    eprintln!("ramstream: {e:#}");
                }
                Err(_) => return,
            }
        };
        let what = match Conn::classify(conn, peer.clone(), Some(FIRST_BYTES_TIMEOUT)) {
            Ok(c) if c.kind == Kind::Channel && channels == 0 => format!(
                "a multifd channel from {peer} connected after the main stream's first sync point, when no channel had: the source uses capability multifd but its channels did not connect in time (QEMU connects them first; pass --multifd-channels N to wait for N)"
            ),
            Ok(c) if c.kind == Kind::Channel => format!(
                "a multifd channel from {peer} connected after the migration's {channels} channel(s) were counted at the main stream's first sync point: one more than the source's (another migration?)"
            ),
            Ok(_) => format!(
                "a second migration stream (QEVM) from {peer} while one is being received"
            ),
            Err(e) => format!("{e:#}"),
        };
        stop.fail(anyhow!(what));
    });
}

/// Refuses, in the background, every connection to `listener` while the one migration it
/// accepted runs (a migration without multifd has one connection): each is closed at once
/// and logged on stderr, naming the peer.
pub fn refuse_others(listener: Listener) {
    std::thread::spawn(move || loop {
        match listener.accept() {
            Ok((conn, peer)) => {
                conn.shutdown_both();
                eprintln!(
                    "ramstream: refused a connection from {peer}: a migration is being received"
                );
            }
            Err(e) if e.downcast_ref::<ramstream_tls::Error>().is_some() => {
                eprintln!("ramstream: {e:#}");
            }
            Err(_) => return,
        }
    });
}
