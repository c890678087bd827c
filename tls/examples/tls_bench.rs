//! What TLS costs a migration on loopback, against plain TCP measured in the same run:
//! the connection setup (TCP connect and accept, plus the TLS handshake with client
//! certificates both ways) and the throughput of one connection (plain TCP, [`TlsStream`],
//! and [`SharedTlsStream`], which `ramstream receive/proxy/send --tls-creds` use). Prints
//! ratios; not a test.
//!
//! ```text
//! cargo run -p ramstream-tls --example tls_bench [MiB] [connections]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use ramstream_tls::{Acceptor, Connector, Credentials, Endpoint};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(512, |a| a.parse().expect("MiB"));
    let conns: u32 = args.next().map_or(200, |a| a.parse().expect("connections"));
    let dir = tempfile::tempdir().unwrap();
    support::shared_dir(dir.path());
    let acceptor =
        Acceptor::new(&Credentials::load(dir.path(), Endpoint::Server).unwrap()).unwrap();
    let connector =
        Connector::new(&Credentials::load(dir.path(), Endpoint::Client).unwrap()).unwrap();

    // Connection setup.
    let tcp_ms = per_connection(conns, None, &connector);
    let tls_ms = per_connection(conns, Some(&acceptor), &connector);
    println!(
        "connection setup, {conns} connections: TCP {tcp_ms:.3} ms, TCP + TLS handshake {tls_ms:.3} ms (ratio {:.1})",
        tls_ms / tcp_ms
    );

    // Throughput of one connection, 1 MiB writes.
    let bytes = mib << 20;
    let tcp = throughput(bytes, Mode::Tcp, &acceptor, &connector);
    let tls = throughput(bytes, Mode::Tls, &acceptor, &connector);
    let shared = throughput(bytes, Mode::Shared, &acceptor, &connector);
    println!("throughput, {mib} MiB over loopback:");
    println!("  plain TCP          {tcp:>8.0} MiB/s (1.00)");
    println!(
        "  TlsStream          {tls:>8.0} MiB/s ({:.2} of TCP)",
        tls / tcp
    );
    println!(
        "  SharedTlsStream    {shared:>8.0} MiB/s ({:.2} of TCP)",
        shared / tcp
    );
}

/// Milliseconds per connection: connect, accept (with `tls`: both handshakes), one byte
/// each way.
fn per_connection(n: u32, tls: Option<&Acceptor>, connector: &Connector) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tls.cloned();
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (tcp, _) = l.accept().unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut b = [0u8; 1];
            match &acceptor {
                Some(a) => {
                    let mut s = a.accept(tcp).unwrap();
                    s.read_exact(&mut b).unwrap();
                    s.write_all(&b).unwrap();
                }
                None => {
                    let mut s = tcp;
                    s.read_exact(&mut b).unwrap();
                    s.write_all(&b).unwrap();
                }
            }
        }
    });
    let start = Instant::now();
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut b = [7u8; 1];
        if tls.is_some() {
            let mut s = connector.connect(tcp, "127.0.0.1").unwrap();
            s.write_all(&b).unwrap();
            s.read_exact(&mut b).unwrap();
        } else {
            let mut s = tcp;
            s.write_all(&b).unwrap();
            s.read_exact(&mut b).unwrap();
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
    server.join().unwrap();
    ms
}

/// What ends a session after the last write (close_notify), where dropping does not.
type Ending = Box<dyn FnOnce()>;

#[derive(Clone, Copy)]
enum Mode {
    Tcp,
    Tls,
    Shared,
}

/// MiB/s of `bytes` written in 1 MiB writes over one connection and read to the end.
fn throughput(bytes: usize, mode: Mode, acceptor: &Acceptor, connector: &Connector) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = acceptor.clone();
    let server = std::thread::spawn(move || -> usize {
        let (tcp, _) = l.accept().unwrap();
        let mut r: Box<dyn Read> = match mode {
            Mode::Tcp => Box::new(tcp),
            Mode::Tls => Box::new(acceptor.accept(tcp).unwrap()),
            Mode::Shared => Box::new(acceptor.accept(tcp).unwrap().into_shared().unwrap()),
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match r.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let tcp = TcpStream::connect(addr).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    // The handshake is not part of the measured time.
    let (mut w, tls): (Box<dyn Write>, Option<Ending>) = match mode {
        Mode::Tcp => (Box::new(tcp), None),
        Mode::Tls => {
            let s = connector.connect(tcp, "127.0.0.1").unwrap();
            (Box::new(s), None)
        }
        Mode::Shared => {
            let s = connector
                .connect(tcp, "127.0.0.1")
                .unwrap()
                .into_shared()
                .unwrap();
            let end = s.clone();
            (Box::new(s), Some(Box::new(move || end.shutdown().unwrap())))
        }
    };
    let start = Instant::now();
    for _ in 0..bytes >> 20 {
        w.write_all(&chunk).unwrap();
    }
    w.flush().unwrap();
    if let Some(end) = tls {
        end();
    }
    drop(w);
    let got = server.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(got, bytes);
    bytes as f64 / (1 << 20) as f64 / secs
}
