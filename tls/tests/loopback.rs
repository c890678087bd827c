//! ramstream to ramstream over loopback TLS: the handshake with one shared credential
//! directory, a round trip, a clean and an unclean end of stream, and 64 MiB each way with
//! its throughput against plain TCP (printed; the ratio is a sanity figure, not a gate).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use ramstream_tls::{Acceptor, Authz, Connector, Credentials, Endpoint};
use support::{accept_one, connect, dn_of, listener, shared_dir};

#[test]
fn round_trip_between_acceptor_and_connector() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let server = Credentials::load(dir.path(), Endpoint::Server).unwrap();
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    assert_eq!(client.own_dn(), Some(dn_of("source").as_str()));
    let acceptor = Acceptor::new(&server)
        .unwrap()
        .with_authz(Authz::from_identities([dn_of("source")]))
        .unwrap();
    let (l, addr) = listener();
    let server = std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut tls = acceptor.accept(tcp).unwrap();
        assert_eq!(tls.peer_dn(), Some(dn_of("source").as_str()));
        let mut got = Vec::new();
        tls.read_to_end(&mut got).unwrap();
        assert!(
            tls.close_notify_received(),
            "the client ended with close_notify"
        );
        tls.write_all(&got.iter().rev().copied().collect::<Vec<u8>>())
            .unwrap();
        tls.shutdown().unwrap();
        tls.negotiated()
    });
    let mut tls = Connector::new(&client)
        .unwrap()
        .connect(connect(addr), "localhost")
        .unwrap();
    assert_eq!(tls.peer_dn(), Some(dn_of("destination").as_str()));
    tls.write_all(b"QEVM\0\0\0\x03 and more").unwrap();
    tls.shutdown().unwrap();
    let mut back = Vec::new();
    tls.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"erom dna \x03\0\0\0MVEQ");
    assert!(tls.close_notify_received());
    let negotiated = server.join().unwrap();
    assert!(negotiated.starts_with("TLSv1_3 TLS13_"), "{negotiated}");
    eprintln!("negotiated {negotiated}");
}

#[test]
fn an_ip_address_is_a_server_name() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let (l, addr) = listener();
    let server = accept_one(l, acceptor);
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let tls = Connector::new(&client)
        .unwrap()
        .connect(connect(addr), "127.0.0.1");
    assert!(tls.is_ok(), "{:?}", tls.err());
    assert!(server.join().unwrap().0.is_ok());
}

/// QEMU closes its main migration channel without close_notify: after data, that reads as
/// the end of the stream, and `close_notify_received` tells the two apart.
#[test]
fn eof_without_close_notify_after_data_is_the_end_of_stream() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let (l, addr) = listener();
    let server = accept_one(l, acceptor);
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let mut tls = Connector::new(&client)
        .unwrap()
        .connect(connect(addr), "localhost")
        .unwrap();
    tls.write_all(b"the whole stream").unwrap();
    tls.flush().unwrap();
    tls.tcp().shutdown(Shutdown::Both).unwrap();
    drop(tls);
    let mut server = server.join().unwrap().0.unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"the whole stream");
    assert!(!server.close_notify_received());
}

/// A peer that closes after the handshake without sending anything is an error, not an
/// empty stream.
#[test]
fn eof_without_close_notify_before_any_data_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let (l, addr) = listener();
    let server = accept_one(l, acceptor);
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let tls = Connector::new(&client)
        .unwrap()
        .connect(connect(addr), "localhost")
        .unwrap();
    let from = tls.tcp().local_addr().unwrap();
    tls.tcp().shutdown(Shutdown::Both).unwrap();
    drop(tls);
    let mut server = server.join().unwrap().0.unwrap();
    let err = server.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    assert_eq!(
        err.to_string(),
        format!("{from}: the peer closed the TLS session before sending any data")
    );
}

const LARGE: usize = 64 << 20;

/// A deterministic, incompressible byte pattern (xorshift64).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Sends `data` in 1 MiB writes, then half-closes.
fn send_all(mut w: impl Write, data: &[u8], end: impl FnOnce(&mut dyn Write)) {
    for chunk in data.chunks(1 << 20) {
        w.write_all(chunk).unwrap();
    }
    w.flush().unwrap();
    end(&mut w);
}

fn receive_all(mut r: impl Read) -> Vec<u8> {
    let mut got = Vec::with_capacity(LARGE);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// 64 MiB from client to server, then 64 MiB back, over TLS and over plain TCP; prints the
/// handshake time and both throughputs.
#[test]
fn sixty_four_mib_each_way_and_the_cost_against_plain_tcp() {
    let up = pattern(LARGE, 0x9e37_79b9_7f4a_7c15);
    let down = pattern(LARGE, 0x2545_f491_4f6c_dd1d);

    // TLS.
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let connector =
        Connector::new(&Credentials::load(dir.path(), Endpoint::Client).unwrap()).unwrap();
    let handshake = median_handshake(&acceptor, &connector);
    let (l, addr) = listener();
    let down_copy = down.clone();
    let server = std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        let mut tls = acceptor.accept(tcp).unwrap();
        let got = receive_all(&mut tls);
        let start = Instant::now();
        send_all(&mut tls, &down_copy, |_| {});
        tls.shutdown().unwrap();
        (got, start)
    });
    let mut tls = connector.connect(connect(addr), "localhost").unwrap();
    let start = Instant::now();
    send_all(&mut tls, &up, |_| {});
    tls.shutdown().unwrap();
    let back = receive_all(&mut tls);
    let (got, down_start) = server.join().unwrap();
    let tls_up = down_start.duration_since(start);
    let tls_down = down_start.elapsed();
    assert!(got == up, "upload arrived intact");
    assert!(back == down, "download arrived intact");

    // Plain TCP, the same way.
    let (l, addr) = listener();
    let down_copy = down.clone();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = l.accept().unwrap();
        let got = receive_all(&mut tcp);
        let start = Instant::now();
        send_all(&mut tcp, &down_copy, |_| {});
        tcp.shutdown(Shutdown::Write).unwrap();
        (got, start)
    });
    let mut tcp = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    send_all(&mut tcp, &up, |_| {});
    tcp.shutdown(Shutdown::Write).unwrap();
    let back = receive_all(&mut tcp);
    let (got, down_start) = server.join().unwrap();
    let tcp_up = down_start.duration_since(start);
    let tcp_down = down_start.elapsed();
    assert!(got == up && back == down);

    let connect_only = median_tcp_connect();
    let rate = |d: Duration| LARGE as f64 / (1 << 20) as f64 / d.as_secs_f64();
    eprintln!(
        "connect + handshake (median of 9, ECDSA P-256, TLS 1.3): {:.3} ms; TCP connect alone {:.3} ms; TLS/TCP {:.1}\n\
         64 MiB up:   TLS {:.0} MiB/s, TCP {:.0} MiB/s, TLS/TCP {:.2}\n\
         64 MiB down: TLS {:.0} MiB/s, TCP {:.0} MiB/s, TLS/TCP {:.2}",
        handshake.as_secs_f64() * 1e3,
        connect_only.as_secs_f64() * 1e3,
        handshake.as_secs_f64() / connect_only.as_secs_f64(),
        rate(tls_up),
        rate(tcp_up),
        rate(tls_up) / rate(tcp_up),
        rate(tls_down),
        rate(tcp_down),
        rate(tls_down) / rate(tcp_down),
    );
}

/// The median time of 9 loopback handshakes (connect to established, client side).
fn median_handshake(acceptor: &Acceptor, connector: &Connector) -> Duration {
    let (l, addr) = listener();
    let acceptor = acceptor.clone();
    let server = std::thread::spawn(move || {
        for _ in 0..9 {
            let (tcp, _) = l.accept().unwrap();
            let mut tls = acceptor.accept(tcp).unwrap();
            let mut one = [0u8; 1];
            tls.read_exact(&mut one).unwrap();
        }
    });
    let mut times: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            let mut tls = connector.connect(connect(addr), "localhost").unwrap();
            let took = start.elapsed();
            tls.write_all(b"x").unwrap();
            took
        })
        .collect();
    server.join().unwrap();
    times.sort();
    times[4]
}

/// The median time of 9 loopback TCP connects, the same way without TLS.
fn median_tcp_connect() -> Duration {
    let (l, addr) = listener();
    let server = std::thread::spawn(move || {
        for _ in 0..9 {
            let (mut tcp, _) = l.accept().unwrap();
            let mut one = [0u8; 1];
            tcp.read_exact(&mut one).unwrap();
        }
    });
    let mut times: Vec<Duration> = (0..9)
        .map(|_| {
            let start = Instant::now();
            let mut tcp = TcpStream::connect(addr).unwrap();
            let took = start.elapsed();
            tcp.write_all(b"x").unwrap();
            took
        })
        .collect();
    server.join().unwrap();
    times.sort();
    times[4]
}

/// A [`ramstream_tls::SharedTlsStream`] read on one thread while a clone writes on another
/// (a proxy's return path): 8 MiB echoed back through the same session, byte for byte,
/// with close_notify at the end, and a read timeout that leaves the session usable.
#[test]
fn a_shared_session_reads_and_writes_from_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let (l, addr) = listener();
    let server = accept_one(l, acceptor);
    let client = Credentials::load(dir.path(), Endpoint::Client).unwrap();
    let tls = Connector::new(&client)
        .unwrap()
        .connect(connect(addr), "127.0.0.1")
        .unwrap()
        .into_shared()
        .unwrap();
    let (server, _) = server.join().unwrap();
    let echo = server.unwrap().into_shared().unwrap();
    // The server echoes on two clones: one reads, the other writes.
    let echo_thread = {
        let (mut r, mut w) = (echo.clone(), echo);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                w.write_all(&buf[..n]).unwrap();
            }
            w.shutdown().unwrap();
            r.close_notify_received()
        })
    };
    // A read that times out leaves the session usable.
    let mut reader = tls.clone();
    tls.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let e = reader.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    tls.set_read_timeout(None).unwrap();
    let sent: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
    let writer = {
        let (mut w, sent) = (tls.clone(), sent.clone());
        std::thread::spawn(move || {
            for c in sent.chunks(100_003) {
                w.write_all(c).unwrap();
            }
            w.shutdown().unwrap();
        })
    };
    let mut back = Vec::new();
    reader.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        echo_thread.join().unwrap(),
        "the client ended with close_notify"
    );
    assert!(reader.close_notify_received());
    assert_eq!(back.len(), sent.len());
    assert!(back == sent, "the echo differs");
}
