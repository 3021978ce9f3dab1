//! A scripted in-process Redis for unit tests of the backend and for the session fuzz target
//! (test builds and the `fuzzing` feature only). It listens on
//! a loopback port and answers the handshake (`HELLO`, `INFO server`, `ROLE`, `SELECT`,
//! `RESET`, `AUTH`) and a few data commands (`PING`, `SET`, `GET`, `INCR`), as a real server
//! would, with what the test scripted: its run_id and role, a delay before each reply, an
//! error for every data command (a refusal such as `-READONLY`), and a connection cut after
//! it has received a given number of bytes. It counts the data commands it executed, so a test
//! can tell "never ran" from "ran, reply lost".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::resp::{FrameLimits, RequestParser};

/// What the fake does; changed by the test while it runs.
#[derive(Debug, Clone)]
pub struct Script {
    /// `run_id` in `INFO server`.
    pub run_id: String,
    /// `master` or `slave` (in `ROLE`, `INFO` and `HELLO`).
    pub role: &'static str,
    /// Wait this long before each reply.
    pub delay: Duration,
    /// Answer every data command with this error line (e.g. `READONLY You can't write...`).
    pub refuse: Option<String>,
    /// Close a connection once it has received more than this many bytes (handshake
    /// included), without answering what those bytes carried.
    pub cut_after: Option<usize>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            run_id: "fake-run-id".into(),
            role: "master",
            delay: Duration::ZERO,
            refuse: None,
            cut_after: None,
        }
    }
}

/// A running fake server.
#[derive(Debug)]
pub struct FakeRedis {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    script: Mutex<Script>,
    data: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    executed: Mutex<Vec<String>>,
}

impl FakeRedis {
    /// Starts one on a free loopback port.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            ..Shared::default()
        });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, Arc::clone(&s)));
            }
        });
        Self { addr, shared, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the script for what follows.
    pub fn script(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.shared.script.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The data commands it executed, in order (`SET k`, `GET k`, ...).
    pub fn executed(&self) -> Vec<String> {
        self.shared
            .executed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut sock: TcpStream, shared: Arc<Shared>) {
    let mut parser = RequestParser::new(FrameLimits {
        max_bulk: 1 << 20,
        max_args: 1024,
    });
    let mut buf = BytesMut::with_capacity(4096);
    let mut received = 0usize;
    loop {
        let n = match sock.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        received += n;
        let script = shared
            .script
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if script.cut_after.is_some_and(|limit| received > limit) {
            return;
        }
        let mut out = Vec::new();
        while let Ok(Some(req)) = parser.next(&mut buf, false) {
            let args: Vec<Vec<u8>> = req.args().iter().map(|a| a.to_vec()).collect();
            out.extend(answer(&args, &script, &shared));
        }
        if !script.delay.is_zero() {
            tokio::time::sleep(script.delay).await;
        }
        if sock.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The reply to one command.
fn answer(args: &[Vec<u8>], script: &Script, shared: &Shared) -> Vec<u8> {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match name.as_str() {
        "HELLO" => format!(
            "*6\r\n$2\r\nid\r\n:7\r\n$4\r\nrole\r\n${}\r\n{}\r\n$5\r\nproto\r\n:2\r\n",
            script.role.len(),
            script.role
        )
        .into_bytes(),
        "INFO" => bulk(
            format!(
                "run_id:{}\r\nredis_version:7.0.15\r\nrole:{}\r\n",
                script.run_id, script.role
            )
            .as_bytes(),
        ),
        "ROLE" => format!(
            "*3\r\n${}\r\n{}\r\n:0\r\n*0\r\n",
            script.role.len(),
            script.role
        )
        .into_bytes(),
        "SELECT" | "AUTH" => b"+OK\r\n".to_vec(),
        "RESET" => b"+RESET\r\n".to_vec(),
        _ if script.refuse.is_some() => {
            format!("-{}\r\n", script.refuse.as_deref().unwrap_or_default()).into_bytes()
        }
        _ => {
            let key = String::from_utf8_lossy(&arg(1)).into_owned();
            shared
                .executed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{name} {key}").trim_end().to_string());
            data(&name, args, shared)
        }
    }
}

fn data(name: &str, args: &[Vec<u8>], shared: &Shared) -> Vec<u8> {
    let mut data = shared.data.lock().unwrap_or_else(|e| e.into_inner());
    match (name, args) {
        ("PING", _) => b"+PONG\r\n".to_vec(),
        ("SET", [_, k, v, ..]) => {
            data.insert(k.clone(), v.clone());
            b"+OK\r\n".to_vec()
        }
        ("GET", [_, k]) => data.get(k).map_or(b"$-1\r\n".to_vec(), |v| bulk(v)),
        ("INCR", [_, k]) => {
            let n = data
                .get(k)
                .and_then(|v| String::from_utf8_lossy(v).parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            data.insert(k.clone(), n.to_string().into_bytes());
            format!(":{n}\r\n").into_bytes()
        }
        _ => format!("-ERR unknown command '{name}'\r\n").into_bytes(),
    }
}

fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}
