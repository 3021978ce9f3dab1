//! Hostile TLS clients: handshakes that never finish, which hold a client slot until the
//! handshake timeout closes them, and bytes that are not TLS sent to the TLS port (and TLS to
//! the plaintext port), each failing only its own connection while the clients connected
//! beside it keep being served. Also `--check` naming an unusable TLS file. The plaintext
//! limits (frame timeout, output buffer, client limit) are in `tests/hostile.rs`.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use support::client::encode;
use support::hostile::{arrived, fill, proxy, read_until_close, tls_client, MAX_CLIENTS};
use support::rng::Rng;
use support::tls::{client_config, CertFiles, Pki};
use support::{Client, Frame, RedisServer};

const FAILURES: &str = "redis_failover_proxy_tls_handshake_failures_total";

/// The first half of a real ClientHello.
fn half_client_hello(config: &Arc<ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut conn = ClientConnection::new(Arc::clone(config), name).expect("client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("ClientHello");
    assert!(hello.len() > 100, "a ClientHello is a few hundred bytes");
    hello.truncate(hello.len() / 2);
    hello
}

/// Opens `n` connections to `addr` that stall a handshake after sending `first` (nothing,
/// or half a ClientHello). A connection the proxy answers at once (refused, because the slot
/// of an earlier client was not released yet) is replaced.
fn stall(addr: SocketAddr, n: usize, first: &[u8]) -> Vec<TcpStream> {
    fill(n, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        s.write_all(first).ok()?;
        thread::sleep(Duration::from_millis(200));
        (!arrived(&s)).then_some(s)
    })
}

/// `[tls] handshake_timeout = "1s"`:
/// 1. Six connections to the TLS port stall their handshake: three send nothing, three send
///    half a ClientHello.
/// 2. Meanwhile a TLS client and a plaintext client connect and are served.
/// 3. The proxy closes every stalled connection (read until close, 10 s deadline) without
///    a byte of RESP, counts six failures under reason="timeout", and logs the deadline.
#[test]
fn stalled_tls_handshakes_are_closed_at_the_handshake_timeout() {
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(&redis, &pki, "", "handshake_timeout = \"1s\"");
    let config = client_config(pki.ca(), None);
    let timeouts = [("side", "client"), ("reason", "timeout")];
    let before = proxy.metric(FAILURES, &timeouts);

    let mut stalled = stall(proxy.tls_addr(), 3, b"");
    stalled.extend(stall(proxy.tls_addr(), 3, &half_client_hello(&config)));
    let mut tls = tls_client(&proxy, &pki);
    assert_eq!(tls.cmd(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(proxy.client().cmd(&["GET", "k"]), Frame::bulk("v"));

    for (i, s) in stalled.iter_mut().enumerate() {
        let got = read_until_close(s, Duration::from_secs(10));
        let got = got.unwrap_or_else(|| panic!("stalled handshake {i} never closed"));
        assert!(
            got.is_empty() || got[0] == 0x15,
            "stalled handshake {i} got {got:?}, not nothing or a TLS alert"
        );
    }
    let until = Instant::now() + Duration::from_secs(10);
    while proxy.metric(FAILURES, &timeouts) < before + 6.0 {
        assert!(Instant::now() < until, "six handshake timeouts not counted");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.metric(FAILURES, &timeouts), before + 6.0);
    assert!(proxy
        .log()
        .contains("TLS handshake did not finish within 1s"));
    assert_eq!(tls.cmd(&["GET", "k"]), Frame::bulk("v"));
}

/// `max_clients = 4`, `[tls] handshake_timeout = "30s"` (longer than the test):
/// 1. A TLS client is served; three connections stall their handshake.
/// 2. A fifth connection is refused with `ERR max number of clients reached`: a handshake in
///    progress holds a client slot, so stalled handshakes are bounded by the client limit.
/// 3. The stalled connections leave; their slots come back and a new client is served.
#[test]
fn a_handshake_in_progress_holds_a_client_slot() {
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(
        &redis,
        &pki,
        "max_clients = 4",
        "handshake_timeout = \"30s\"",
    );
    let config = client_config(pki.ca(), None);
    let pong = Frame::Simple("PONG".into());
    let mut tls = fill(1, || {
        let mut c =
            Client::try_connect_tls(proxy.tls_addr(), Arc::clone(&config), "127.0.0.1").ok()?;
        c.send(&["PING"]);
        matches!(c.try_read(), Ok(f) if f == pong).then_some(c)
    });
    let mut stalled = stall(proxy.tls_addr(), 2, b"");
    stalled.extend(stall(proxy.tls_addr(), 1, &half_client_hello(&config)));

    let mut fifth = proxy.client();
    assert_eq!(fifth.read(), Frame::Error(MAX_CLIENTS.into()));
    assert!(
        fifth.closed(Duration::from_secs(5)),
        "refused client not closed"
    );
    assert_eq!(tls[0].cmd(&["PING"]), pong);

    drop(stalled);
    fill(3, || {
        let mut c = Client::try_connect(proxy.addr()).ok()?;
        c.send(&["PING"]);
        matches!(c.try_read(), Ok(f) if f == pong).then_some(c)
    });
}

/// `[tls] handshake_timeout = "1s"`, bytes that are not a ClientHello on the TLS port:
/// 1. `PING\r\n`, a RESP PING, an HTTP request, a TLS record header followed by noise, and
///    20 runs of random bytes (1 to 2 KB), each on its own connection.
/// 2. Each connection is closed by the proxy (10 s deadline) having received nothing or a
///    TLS alert, never a RESP reply; each counts as one failed client handshake.
/// 3. A TLS ClientHello sent to the plaintext port fails the client's handshake (no hang).
/// 4. A plaintext and a TLS client connected throughout keep working.
#[test]
fn bytes_that_are_not_tls_fail_only_their_own_handshake() {
    let pki = Pki::new("test CA");
    let redis = RedisServer::start();
    let proxy = proxy(
        &redis,
        &pki,
        "frame_timeout = \"1s\"",
        "handshake_timeout = \"1s\"",
    );
    let mut plain = proxy.client();
    let mut tls = tls_client(&proxy, &pki);
    let client_side = [("side", "client")];
    let before = proxy.metric(FAILURES, &client_side);

    let mut inputs: Vec<Vec<u8>> = vec![
        b"PING\r\n".to_vec(),
        encode(&[b"PING"]),
        b"GET / HTTP/1.1\r\nHost: proxy\r\n\r\n".to_vec(),
        [&[0x16, 0x03, 0x01, 0x00, 0x40][..], &[0xAB; 64]].concat(),
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20 {
        let len = 1 + (rng.next() % 2048) as usize;
        inputs.push(rng.bytes(len));
    }
    for (i, raw) in inputs.iter().enumerate() {
        let mut s =
            TcpStream::connect_timeout(&proxy.tls_addr(), Duration::from_secs(5)).expect("connect");
        // The proxy may close while the bytes still arrive.
        let _ = s.write_all(raw);
        let got = read_until_close(&mut s, Duration::from_secs(10));
        let got = got.unwrap_or_else(|| panic!("input {i} left open"));
        assert!(
            got.is_empty() || got[0] == 0x15,
            "input {i} got {:?}, not nothing or a TLS alert",
            String::from_utf8_lossy(&got)
        );
        if i % 6 == 0 {
            assert_eq!(plain.cmd(&["PING"]), Frame::Simple("PONG".into()));
            assert_eq!(tls.cmd(&["PING"]), Frame::Simple("PONG".into()));
        }
    }
    let want = before + inputs.len() as f64;
    let until = Instant::now() + Duration::from_secs(10);
    while proxy.metric(FAILURES, &client_side) < want {
        assert!(Instant::now() < until, "failed handshakes not counted");
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.metric(FAILURES, &client_side), want);
    assert!(proxy.log().contains("client TLS handshake failed"));

    let config = client_config(pki.ca(), None);
    let r = Client::try_connect_tls(proxy.addr(), config, "127.0.0.1");
    let e = r.expect_err("a TLS handshake with the plaintext port succeeded");
    assert!(
        !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "TLS to the plaintext port left hanging: {e}"
    );

    assert_eq!(plain.cmd(&["SET", "after", "1"]), Frame::ok());
    assert_eq!(tls.cmd(&["GET", "after"]), Frame::bulk("1"));
}

/// Runs `--check` with `args` (a plaintext node and the given TLS flags); returns the exit
/// code and stderr.
fn check(args: &[&Path]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_redis-failover-proxy"))
        .args(["--nodes", "127.0.0.1:1", "--check"])
        .args(args)
        .output()
        .expect("run the proxy binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check` with TLS files that cannot be used:
/// 1. Good files for the listener (with a client CA) and for the nodes (with a client
///    certificate) pass: exit code 0.
/// 2. Each of these exits with code 2 and names the file and the problem: a missing
///    certificate, a garbled certificate, a key file holding a certificate, a key that does
///    not match its certificate (listener and nodes), a garbled client CA, a missing node CA.
#[test]
fn check_names_the_tls_file_that_cannot_be_used() {
    let pki = Pki::new("test CA");
    let good = pki.server("good", &["127.0.0.1"]);
    let other = pki.server("other", &["127.0.0.1"]);
    let dir = pki.dir();
    let missing = dir.join("missing.crt");
    let garbled = dir.join("garbled.crt");
    std::fs::write(
        &garbled,
        "-----BEGIN CERTIFICATE-----\nthis is not base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let flag = |s: &'static str| -> &'static Path { Path::new(s) };
    let listener = |cert: &Path, key: &Path, ca: &Path| -> Vec<PathBuf> {
        [
            flag("--tls-cert"),
            cert,
            flag("--tls-key"),
            key,
            flag("--tls-client-ca"),
            ca,
        ]
        .map(Path::to_path_buf)
        .to_vec()
    };
    let nodes = |ca: &Path, cert: &CertFiles, key: &Path| -> Vec<PathBuf> {
        [
            flag("--backend-tls-ca"),
            ca,
            flag("--backend-tls-cert"),
            &cert.cert,
            flag("--backend-tls-key"),
            key,
        ]
        .map(Path::to_path_buf)
        .to_vec()
    };
    let run = |args: Vec<PathBuf>| check(&args.iter().map(PathBuf::as_path).collect::<Vec<_>>());

    let mut all = listener(&good.cert, &good.key, pki.ca());
    all.extend(nodes(pki.ca(), &good, &good.key));
    let (code, err) = run(all);
    assert_eq!(code, Some(0), "good files refused: {err}");

    let cases: Vec<(&str, Vec<PathBuf>, &Path, &str)> = vec![
        (
            "a missing certificate",
            listener(&missing, &good.key, pki.ca()),
            &missing,
            "cannot read",
        ),
        (
            "a garbled certificate",
            listener(&garbled, &good.key, pki.ca()),
            &garbled,
            "",
        ),
        (
            "a key file holding a certificate",
            listener(&good.cert, &other.cert, pki.ca()),
            &other.cert,
            "no private key",
        ),
        (
            "a key not matching the listener's certificate",
            listener(&good.cert, &other.key, pki.ca()),
            &other.key,
            "does not match the certificate",
        ),
        (
            "a garbled client CA",
            listener(&good.cert, &good.key, &garbled),
            &garbled,
            "",
        ),
        (
            "a missing node CA",
            nodes(&missing, &good, &good.key),
            &missing,
            "cannot read",
        ),
        (
            "a key not matching the client certificate for the nodes",
            nodes(pki.ca(), &good, &other.key),
            &other.key,
            "does not match the certificate",
        ),
    ];
    for (what, args, file, problem) in cases {
        let (code, err) = run(args);
        assert_eq!(code, Some(2), "{what}: exit code; stderr: {err}");
        assert!(
            err.contains(file.to_str().expect("path")) && err.contains(problem),
            "{what}: stderr does not name {} and {problem:?}: {err}",
            file.display()
        );
    }
}
