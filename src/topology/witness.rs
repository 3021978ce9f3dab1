//! Witnesses: voting members of an orchestrator's group that hold no data (a Raft witness in a
//! third site). The proxy only needs to know whether it reaches them, for the `nodes`
//! authority's write lease: one task per address opens a TCP connection on every interval
//! and reports whether it succeeded, with when it was tried.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One reachability check.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// The witness.
    pub addr: SocketAddr,
    /// When the connection attempt started.
    pub sent: Instant,
    /// Whether it connected within the deadline.
    pub reached: bool,
}

/// A running witness check (stops when dropped).
#[derive(Debug)]
pub struct Witness {
    stop: CancellationToken,
}

impl Witness {
    /// Checks `addr` every `interval`, each attempt bounded by `timeout`.
    pub fn spawn(
        addr: SocketAddr,
        interval: Duration,
        timeout: Duration,
        tx: mpsc::Sender<Check>,
    ) -> Self {
        let stop = CancellationToken::new();
        let cancel = stop.clone();
        tokio::spawn(async move {
            loop {
                let sent = Instant::now();
                let reached = matches!(
                    tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                if tx
                    .send(Check {
                        addr,
                        sent,
                        reached,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        });
        Self { stop }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
