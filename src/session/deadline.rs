//! Deadlines on a client's input. A command that was started must be completed within the
//! frame timeout: a client trickling one byte at a time (slowloris) holds a connection and a
//! buffer, and would otherwise do so forever. Separately, and only when configured (Redis
//! `timeout`), a client that sends nothing for the idle timeout is closed, except while it
//! waits for something it asked for: replies in flight, a subscription, MONITOR.

use tokio::time::Instant;

use super::{Dynamic, Session};
use crate::resp::ProtocolError;

/// Which input deadline fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// A started command was not completed in time.
    Frame,
    /// The client was idle for too long.
    Idle,
}

impl Session {
    /// Starts the frame clock when unprocessed bytes are the start of a command still being
    /// received, and stops it otherwise (complete input waiting behind in-flight commands is
    /// the proxy's doing, not the client's).
    pub(super) fn track_frame(&mut self) {
        let receiving =
            !self.rbuf.is_empty() && !self.closing() && self.stalled.is_none() && !self.saturated();
        match (receiving, self.frame_since) {
            (true, None) => self.frame_since = Some(Instant::now()),
            (false, Some(_)) => self.frame_since = None,
            _ => {}
        }
    }

    /// The next input deadline, if any.
    pub(super) fn input_deadline(&self, settings: &Dynamic) -> Option<(Instant, Expiry)> {
        if let Some(since) = self.frame_since {
            return Some((since + settings.frame_timeout, Expiry::Frame));
        }
        let idle = settings.idle_timeout;
        if idle.is_zero() || !self.idle_closable() {
            return None;
        }
        Some((self.info.last_input() + idle, Expiry::Idle))
    }

    /// Whether the client waits for nothing it asked for.
    fn idle_closable(&self) -> bool {
        let pinned_for_pushes = self
            .pins()
            .is_some_and(|p| p.monitor || p.pubsub || p.tracking);
        !self.closing()
            && self.inbox.in_flight() == 0
            && self.stalled.is_none()
            && !self.subs.any()
            && !pinned_for_pushes
    }

    /// A deadline fell.
    pub(super) async fn on_input_deadline(&mut self, which: Expiry) {
        match which {
            Expiry::Frame => {
                crate::metrics::hot().errors[crate::metrics::error_index("limit")].increment(1);
                self.protocol_error(ProtocolError::FrameTimeout).await;
            }
            Expiry::Idle => {
                // Redis closes idle clients without a word.
                tracing::debug!(client.id = self.id(), "closing idle client");
                self.close();
            }
        }
    }
}
