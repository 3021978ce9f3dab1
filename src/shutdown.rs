//! Shutdown: SIGTERM or SIGINT becomes one future ([`signal`]); the drain signal fans out to
//! every listener and session ([`Drain`]); [`Tasks`] counts the sessions so the process can
//! wait for them under a grace period.

use tokio::sync::watch;
pub use tokio_util::task::TaskTracker as Tasks;

/// Receiving side of the drain signal.
#[derive(Debug, Clone)]
pub struct Drain {
    rx: watch::Receiver<bool>,
}

/// Sending side of the drain signal.
#[derive(Debug)]
pub struct DrainTrigger {
    tx: watch::Sender<bool>,
}

/// A new drain signal.
pub fn drain() -> (DrainTrigger, Drain) {
    let (tx, rx) = watch::channel(false);
    (DrainTrigger { tx }, Drain { rx })
}

impl DrainTrigger {
    /// Starts draining.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A receiver.
    pub fn subscribe(&self) -> Drain {
        Drain {
            rx: self.tx.subscribe(),
        }
    }
}

impl Drain {
    /// Completes once draining started (never, if the trigger is gone without firing).
    pub async fn signaled(&mut self) {
        if self.rx.wait_for(|d| *d).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether draining started.
    pub fn is_draining(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C); names the signal.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
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
