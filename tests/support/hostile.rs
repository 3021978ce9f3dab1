//! Shared by the hostile-client tests (`tests/hostile.rs`, `tests/hostile_tls.rs`): a proxy
//! serving plaintext and TLS with the limits under test, TLS clients of it, and raw
//! connections watched without a RESP client: whether the peer answered, filling the client
//! slots, reading until the proxy closes.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::client::TlsStream;
use super::tls::{client_config, wait_ready_tls, Pki};
use super::{Client, Proxy, RedisServer};

pub const MAX_CLIENTS: &str = "ERR max number of clients reached";

/// A proxy in front of `redis` serving plaintext on `--listen` and TLS (certificate of `pki`)
/// on `--tls-listen`, with `[limits]` and `[tls]` extra lines and the admin endpoint.
pub fn proxy(redis: &RedisServer, pki: &Pki, limits: &str, tls: &str) -> Proxy {
    let cert = pki.server("proxy", &["127.0.0.1"]);
    let path = |p: &Path| p.to_str().expect("path").to_string();
    let config = format!(
        "[limits]\n{limits}\n[tls]\ncert = {:?}\nkey = {:?}\n{tls}\n",
        path(&cert.cert),
        path(&cert.key)
    );
    let proxy = Proxy::builder()
        .config(&config)
        .nodes(&[redis])
        .args(&[
            "--tls-cert",
            &path(&cert.cert),
            "--tls-key",
            &path(&cert.key),
        ])
        .tls_listen()
        .admin()
        .start();
    wait_ready_tls(&proxy, proxy.tls_addr(), &client_config(pki.ca(), None));
    proxy
}

pub fn tls_client(proxy: &Proxy, pki: &Pki) -> Client<TlsStream> {
    Client::connect_tls(proxy.tls_addr(), client_config(pki.ca(), None), "127.0.0.1")
}

/// Whether the peer sent something or closed (without consuming it).
pub fn arrived(sock: &TcpStream) -> bool {
    sock.set_nonblocking(true).expect("nonblocking");
    let r = sock.peek(&mut [0u8; 1]);
    sock.set_nonblocking(false).expect("blocking");
    match r {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Connects until `n` clients are served (earlier attempts may still hold the slot of the
/// start-up check); returns them.
pub fn fill<C>(n: usize, mut connect: impl FnMut() -> Option<C>) -> Vec<C> {
    let until = Instant::now() + Duration::from_secs(15);
    let mut held = Vec::new();
    while held.len() < n {
        assert!(Instant::now() < until, "only {} clients served", held.len());
        match connect() {
            Some(c) => held.push(c),
            None => thread::sleep(Duration::from_millis(50)),
        }
    }
    held
}

/// A connection that reads everything until the peer closes (deadline `within`); returns the
/// bytes, or `None` when the peer kept it open.
pub fn read_until_close(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}
