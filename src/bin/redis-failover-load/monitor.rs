//! Which node executed each write: one MONITOR connection per Redis node for the whole run,
//! reconnected after [`RECONNECT_AFTER`] whenever it fails (Sentinel kills normal clients,
//! MONITOR included, on every node it reconfigures; a killed node drops it too). Each ledger
//! `SET` of this run is kept as an [`Exec`] with the node's own timestamp. A replica shows the
//! commands it replicates too, sent by its master's address: lines from a client whose address
//! is one of the nodes are skipped, so an [`Exec`] is a write a client made on that node. The
//! time each connection was down is kept, since writes executed meanwhile are not seen. The
//! lines are read by [`crate::monitor_line`], the parser the tests use too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ledger::WriteId;
use crate::monitor_line::parse_line;
use crate::net::Dialer;
use crate::worker::Clock;
use crate::workload::Workload;

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
