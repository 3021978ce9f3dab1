//! Shutdown: SIGTERM or SIGINT becomes one future ([`signal`]); the drain signal fans out to
//! every listener and session ([`Drain`]); [`Tasks`] counts the sessions so the process can
//! wait for them under a grace period.

use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker as Tasks;

/// Receiving side of the drain signal.
#[derive(Debug, Clone)]
pub struct Drain {
    token: CancellationToken,
}

/// Sending side of the drain signal.
#[derive(Debug)]
pub struct DrainTrigger {
    token: CancellationToken,
}

/// A new drain signal.
pub fn drain() -> (DrainTrigger, Drain) {
    let token = CancellationToken::new();
    (
        DrainTrigger {
            token: token.clone(),
        },
        Drain { token },
    )
}

impl DrainTrigger {
    /// Starts draining.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// A receiver.
    pub fn subscribe(&self) -> Drain {
        Drain {
            token: self.token.clone(),
        }
    }
}

impl Drain {
    /// Completes once draining started.
    pub async fn signaled(&mut self) {
        self.token.cancelled().await;
    }

    /// Whether draining started.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// Completes on SIGTERM (what Kubernetes sends), SIGINT (Ctrl-C) or SIGHUP (reload); names
/// the signal.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        let hup = signal(SignalKind::hangup());
        match (term, int, hup) {
            (Ok(mut term), Ok(mut int), Ok(mut hup)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => "SIGHUP",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
