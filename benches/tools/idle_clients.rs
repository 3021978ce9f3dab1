//! Opens many client connections to a Redis-protocol server and holds them open, idle, for
//! `scripts/bench`'s idle-connections test.
//!
//! Usage: `idle_clients HOST:PORT COUNT [BATCH]`
//!
//! Connects in batches of BATCH (default 500): each connection of a batch sends one PING (as a
//! RESP array, which every target understands), then every reply of the batch is read and must
//! be `+PONG`. When all COUNT connections have answered, prints `ready COUNT` on stdout and
//! sleeps until killed; the kernel closes the connections then. Any failure is reported on
//! stderr with the number of connections that had answered, and the exit status is 1.
//!
//! Needs an open-files limit above COUNT (`ulimit -n`); `scripts/bench` raises it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";
const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [addr, count] => parse(addr, count, "500"),
        [addr, count, batch] => parse(addr, count, batch),
        _ => Err("usage: idle_clients HOST:PORT COUNT [BATCH]".to_owned()),
    };
    let (addr, count, batch) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("idle_clients: {e}");
            return ExitCode::from(2);
        }
    };

    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while held.len() < count {
        let n = batch.min(count - held.len());
        if let Err(e) = open_batch(addr, n, &mut held) {
            eprintln!(
                "idle_clients: {addr}: {e} ({} connections had answered PONG)",
                held.len()
            );
            return ExitCode::FAILURE;
        }
    }

    println!("ready {}", held.len());
    let _ = io::stdout().flush();
    loop {
        std::thread::park();
    }
}

fn parse(addr: &str, count: &str, batch: &str) -> Result<(SocketAddr, usize, usize), String> {
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address '{addr}': {e}"))?;
    let count = count
        .parse()
        .map_err(|e| format!("bad count '{count}': {e}"))?;
    let batch: usize = batch
        .parse()
        .map_err(|e| format!("bad batch size '{batch}': {e}"))?;
    Ok((addr, count, batch.max(1)))
}

/// Connects `n` clients, sends a PING on each, then reads every reply; appends them to `held`.
fn open_batch(addr: SocketAddr, n: usize, held: &mut Vec<TcpStream>) -> io::Result<()> {
    let mut batch = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.write_all(PING)?;
        batch.push(s);
    }
    for s in &mut batch {
        let mut reply = [0u8; PONG.len()];
        s.read_exact(&mut reply)?;
        if reply != PONG {
            return Err(io::Error::other(format!(
                "unexpected reply {:?}",
                String::from_utf8_lossy(&reply)
            )));
        }
    }
    held.append(&mut batch);
    Ok(())
}
