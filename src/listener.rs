//! Accepting clients: one task per listening socket. A connection beyond the client limit is
//! answered with Redis's own error and closed at once, without costing the clients already
//! connected anything. Each accepted client gets its own session task, tracked so that
//! shutdown can wait for it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::resp::reply::ClientError;
use crate::session::{Context, Session};
use crate::shutdown::{Drain, Tasks};

/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a refused connection may take to receive its error.
const REFUSE_DEADLINE: Duration = Duration::from_secs(1);

/// Accepts until draining starts; `permits` is the client limit shared by every listener.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Context>,
    permits: Arc<Semaphore>,
    mut drain: Drain,
    tasks: Tasks,
) {
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
            tasks.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let laddr = stream.local_addr().unwrap_or(addr);
        let session = Session::new(Arc::clone(&ctx), addr, laddr, raw_fd(&stream));
        let drain = drain.clone();
        tasks.spawn(async move {
            let (r, w) = stream.into_split();
            session.run(r, w, drain).await;
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
