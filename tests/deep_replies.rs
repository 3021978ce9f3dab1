//! Replies Redis can produce that are unusual in shape must pass through the proxy exactly,
//! without costing other clients their shared connection: a Lua table that contains itself is
//! answered with thousands of nested one-element arrays that end in an error.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Frame, Proxy, RedisServer};

const RECURSIVE: &str = "local a = {}; local b = {a}; a[1] = b; return a";

/// Sends one EVAL of `script` and reads until the reply's final error line arrives.
fn raw_eval(addr: SocketAddr, script: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let cmd = format!(
        "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
        script.len()
    );
    s.write_all(cmd.as_bytes()).expect("send");
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    let until = Instant::now() + Duration::from_secs(10);
    while !out.ends_with(b"stack limit\r\n") {
        assert!(
            Instant::now() < until,
            "no complete reply: {} bytes",
            out.len()
        );
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed after {} bytes", out.len());
        out.extend_from_slice(&chunk[..n]);
    }
    out
}

/// 1. Redis answers the recursive table directly; the proxy (one shared lane) gives the client
///    the very same bytes.
/// 2. Meanwhile another client's commands on the same lane are answered normally, before and
///    after, and nobody gets "may have been applied".
#[test]
fn recursive_lua_table_passes_unchanged() {
    let redis = RedisServer::start();
    let proxy = Proxy::builder()
        .config(&format!(
            "[backend]\npool_size = 1\n[[sites]]\nnodes = [\"{}\"]\n",
            redis.addr_str()
        ))
        .start();
    let direct = raw_eval(redis.addr(), RECURSIVE);
    let depth = direct.windows(4).filter(|w| w == b"*1\r\n").count();
    assert!(depth > 1000, "Redis nested only {depth} levels");
    let mut other = proxy.client();
    assert_eq!(other.cmd(&["SET", "deep:k", "1"]), Frame::ok());
    let through = raw_eval(proxy.addr(), RECURSIVE);
    assert_eq!(through, direct, "the proxy changed the reply");
    assert_eq!(other.cmd(&["INCR", "deep:k"]), Frame::Int(2));
    assert!(
        !proxy.log().contains("backend connection lost"),
        "{}",
        proxy.log()
    );
    eprintln!("[deep replies] {depth} nested arrays passed unchanged");
}
