//! Which node executed each write: one MONITOR connection per Redis node for the whole run,
//! reconnected after [`RECONNECT_AFTER`] whenever it fails (Sentinel kills normal clients,
//! MONITOR included, on every node it reconfigures; a killed node drops it too). Each ledger
//! `SET` of this run is kept as an [`Exec`] with the node's own timestamp. A replica shows the
//! commands it replicates too, sent by its master's address: lines from a client whose address
//! is one of the nodes are skipped, so an [`Exec`] is a write a client made on that node. The
//! time each connection was down is kept, since writes executed meanwhile are not seen.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::net::Dialer;
use crate::worker::Clock;
use crate::workload::{Workload, WriteId};

/// Wait before reconnecting a failed MONITOR connection.
pub(crate) const RECONNECT_AFTER: Duration = Duration::from_millis(20);
/// Deadline of the MONITOR command's `+OK`.
const MONITOR_OK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one read of MONITOR output may wait before the stop flag is looked at again.
const READ_SLICE: Duration = Duration::from_secs(1);

/// A ledger write a node executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exec {
    /// Index of the node in --nodes.
    pub(crate) node: usize,
    /// When the node executed it, µs since the start of the run (its clock).
    pub(crate) at_us: i64,
    /// The key.
    pub(crate) key: u32,
    /// The write.
    pub(crate) id: WriteId,
}

/// What one node's MONITOR saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    /// Ledger writes executed there.
    pub(crate) execs: Vec<Exec>,
    /// Connections re-established.
    pub(crate) reconnects: u64,
    /// Time without a MONITOR connection after the first one, ms.
    pub(crate) blind_ms: u64,
}

/// One node to watch.
#[derive(Debug, Clone)]
pub(crate) struct Watch {
    /// Index in --nodes.
    pub(crate) node: usize,
    /// Its address.
    pub(crate) addr: String,
    /// Every node's address, to recognise replication traffic.
    pub(crate) node_addrs: HashSet<SocketAddr>,
    /// How to connect.
    pub(crate) dialer: Dialer,
    /// Whose writes to keep.
    pub(crate) workload: std::sync::Arc<Workload>,
    /// Time base.
    pub(crate) clock: Clock,
}

impl Watch {
    /// Watches the node until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) -> Seen {
        let mut seen = Seen::default();
        let mut lost_at: Option<Instant> = None;
        while !stop.is_cancelled() {
            let connected = tokio::select! {
                r = self.dialer.connect(&self.addr) => r,
                _ = stop.cancelled() => break,
            };
            let mut conn = match connected {
                Ok(c) => c,
                Err(_) => {
                    lost_at.get_or_insert_with(Instant::now);
                    pause(&stop).await;
                    continue;
                }
            };
            match conn.call(&["MONITOR"], MONITOR_OK_TIMEOUT).await {
                Ok(r) if r.as_error().is_none() => {}
                _ => {
                    lost_at.get_or_insert_with(Instant::now);
                    pause(&stop).await;
                    continue;
                }
            }
            if let Some(t) = lost_at.take() {
                seen.reconnects += 1;
                seen.blind_ms += t.elapsed().as_millis() as u64;
            }
            loop {
                let line = tokio::select! {
                    r = conn.reply(Instant::now() + READ_SLICE) => r,
                    _ = stop.cancelled() => return seen,
                };
                match line {
                    Ok(frame) => self.keep(&frame, &mut seen),
                    Err(crate::net::NetError::Timeout) => {}
                    Err(_) => break,
                }
            }
            lost_at = Some(Instant::now());
            pause(&stop).await;
        }
        seen
    }

    fn keep(&self, frame: &[u8], seen: &mut Seen) {
        let Some(line) = parse_line(frame) else {
            return;
        };
        if line.args.len() < 3 || !line.args[0].eq_ignore_ascii_case(b"SET") {
            return;
        }
        let replicated = line
            .client
            .parse::<SocketAddr>()
            .is_ok_and(|a| self.node_addrs.contains(&a));
        if replicated {
            return;
        }
        let (Some(key), Some(id)) = (
            self.workload.key_number(&line.args[1]),
            self.workload.parse_value(&line.args[2]),
        ) else {
            return;
        };
        seen.execs.push(Exec {
            node: self.node,
            at_us: self.clock.us_of_unix(line.unix_us),
            key,
            id,
        });
    }
}

async fn pause(stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(RECONNECT_AFTER) => {}
        _ = stop.cancelled() => {}
    }
}

/// One MONITOR line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// When the node executed the command, µs since the Unix epoch.
    pub(crate) unix_us: i64,
    /// The client's address (`ip:port`, `lua`, `unix:/path`).
    pub(crate) client: String,
    /// The command and its arguments.
    pub(crate) args: Vec<Vec<u8>>,
}

/// Parses `+1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "v"` (the frame, CRLF included).
pub(crate) fn parse_line(frame: &[u8]) -> Option<Line> {
    let body = frame.strip_prefix(b"+")?;
    let body = body.strip_suffix(b"\r\n").unwrap_or(body);
    let text = std::str::from_utf8(body).ok()?;
    let (stamp, rest) = text.split_once(' ')?;
    let (secs, micros) = stamp.split_once('.')?;
    let unix_us = secs.parse::<i64>().ok()? * 1_000_000 + micros.parse::<i64>().ok()?;
    let rest = rest.strip_prefix('[')?;
    let (inside, args) = rest.split_once("] ")?;
    let client = inside.split_once(' ')?.1.to_string();
    Some(Line {
        unix_us,
        client,
        args: parse_args(args.as_bytes())?,
    })
}

/// The quoted arguments of a MONITOR line, unescaped (Redis's `sdscatrepr` escapes).
fn parse_args(mut s: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    while let Some(rest) = s.strip_prefix(b"\"") {
        let mut arg = Vec::new();
        let mut i = 0;
        loop {
            match *rest.get(i)? {
                b'"' => break,
                b'\\' => {
                    let (byte, used) = unescape(&rest[i + 1..])?;
                    arg.push(byte);
                    i += 1 + used;
                }
                b => {
                    arg.push(b);
                    i += 1;
                }
            }
        }
        args.push(arg);
        s = rest[i + 1..].strip_prefix(b" ").unwrap_or(&rest[i + 1..]);
    }
    Some(args)
}

/// One escape after its backslash: the byte and how many bytes it took.
fn unescape(s: &[u8]) -> Option<(u8, usize)> {
    Some(match *s.first()? {
        b'n' => (b'\n', 1),
        b'r' => (b'\r', 1),
        b't' => (b'\t', 1),
        b'a' => (7, 1),
        b'b' => (8, 1),
        b'x' => {
            let hex = std::str::from_utf8(s.get(1..3)?).ok()?;
            (u8::from_str_radix(hex, 16).ok()?, 3)
        }
        other => (other, 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_monitor_lines() {
        let l = parse_line(
            b"+1795276585.099881 [0 127.0.0.1:58214] \"set\" \"foo\" \"a\\\"b\\\\c\\x01\"\r\n",
        )
        .unwrap();
        assert_eq!(l.unix_us, 1_795_276_585_099_881);
        assert_eq!(l.client, "127.0.0.1:58214");
        assert_eq!(
            l.args,
            vec![b"set".to_vec(), b"foo".to_vec(), b"a\"b\\c\x01".to_vec()]
        );
        let l = parse_line(b"+1.000002 [3 lua] \"GET\" \"\"\r\n").unwrap();
        assert_eq!(l.unix_us, 1_000_002);
        assert_eq!(l.client, "lua");
        assert_eq!(l.args, vec![b"GET".to_vec(), Vec::new()]);
        assert_eq!(parse_line(b"+OK\r\n"), None);
        assert_eq!(parse_line(b"+1.5 [0 x] \"unterminated\r\n"), None);
    }
}
