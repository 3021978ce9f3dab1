//! Accepting clients: one task per listening socket. A connection beyond the client limit is
//! answered with Redis's own error and closed at once (on a TLS listener, closed without a
//! word, as Redis does), without costing the clients already connected anything. Each
//! accepted client gets its own session task, tracked so that shutdown can wait for it; on a
//! TLS listener the task first runs the handshake under its deadline, holding the client's
//! slot, so a flood of handshakes that never finish is bounded by the client limit and the
//! deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::resp::reply::ClientError;
use crate::session::{Context, Session};
use crate::shutdown::{Drain, Tasks};
use crate::tls::{Acceptor, HandshakeError};

/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refused connection may take to receive its error.
const REFUSE_DEADLINE: Duration = Duration::from_secs(1);

/// Failed client handshakes are logged at most this often (the metric counts them all).
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(1);

/// Accepts until draining starts; `permits` is the client limit shared by every listener.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<Acceptor>>,
    ctx: Arc<Context>,
    permits: Arc<Semaphore>,
    mut drain: Drain,
    tasks: Tasks,
) {
    let log_limit = Arc::new(LogLimit::default());
    loop {
        let accepted = tokio::select! {
            _ = drain.signaled() => return,
            r = listener.accept() => r,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // The error is plaintext: a TLS client would read it as a corrupt record. Like
            // Redis, drop a TLS client over the limit without a word.
            if tls.is_none() {
                tasks.spawn(refuse(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let laddr = stream.local_addr().unwrap_or(addr);
        let fd = raw_fd(&stream);
        let (ctx, drain) = (Arc::clone(&ctx), drain.clone());
        let Some(tls) = tls.clone() else {
            tasks.spawn(async move {
                let session = Session::new(ctx, addr, laddr, fd);
                let (r, w) = stream.into_split();
                session.run(r, w, drain).await;
                drop(permit);
            });
            continue;
        };
        let log_limit = Arc::clone(&log_limit);
        tasks.spawn(async move {
            match tls.accept(stream).await {
                Ok(stream) => {
                    let session = Session::new(ctx, addr, laddr, fd);
                    let (r, w) = tokio::io::split(stream);
                    session.run(r, w, drain).await;
                }
                Err(e) => log_limit.handshake_failed(addr, &e),
            }
            drop(permit);
        });
    }
}

#[cfg(unix)]
fn raw_fd(s: &TcpStream) -> i64 {
    i64::from(std::os::fd::AsRawFd::as_raw_fd(s))
}

#[cfg(not(unix))]
fn raw_fd(_: &TcpStream) -> i64 {
    -1
}

/// Tells a client over the limit why it is refused, as Redis does, then closes.
async fn refuse(mut stream: TcpStream) {
    let reply = ClientError::MaxClients.to_bytes();
    let _ = tokio::time::timeout(REFUSE_DEADLINE, async {
        let _ = stream.write_all(&reply).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Keeps a storm of failed handshakes from flooding the log: one line per interval, with the
/// number left out since the last one.
#[derive(Debug, Default)]
struct LogLimit {
    last: Mutex<Option<Instant>>,
    skipped: AtomicU64,
}

impl LogLimit {
    fn handshake_failed(&self, addr: SocketAddr, e: &HandshakeError) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= HANDSHAKE_LOG_EVERY);
        if !due {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(Instant::now());
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        tracing::info!(client.addr = %addr, error = %e, similar_not_logged = skipped, "client TLS handshake failed");
    }
}
