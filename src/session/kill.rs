//! SCRIPT KILL and FUNCTION KILL. A script running past Redis's busy threshold holds the reply
//! of its own connection, and every other command the proxy sends gets `-BUSY`. The kill must
//! not queue behind the script on a shared lane, nor need a handshake the busy node refuses:
//! it goes at once on a connection of its own (see [`send_once`]). Its reply still reaches the
//! client after the replies of the client's earlier commands.

use super::Session;
use crate::backend::once::{send_once, OnceError};
use crate::backend::PoolKey;
use crate::resp::reply::ClientError;
use crate::resp::Request;

impl Session {
    /// Sends a kill command to the master on a connection of its own.
    pub(super) async fn kill(&mut self, req: Request, silent: bool) {
        let Some(key) = self.shared_key_or_answer(&req, silent).await else {
            return;
        };
        match send_once(self.ctx.pool.dialer(), &key, &req).await {
            Ok(reply) => self.reply(&reply, silent).await,
            Err(OnceError::NotSent(_)) => self.reply_error(ClientError::NotSent, silent).await,
            Err(OnceError::Unknown(_)) => {
                self.reply_error(ClientError::OutcomeUnknown, silent).await
            }
        }
    }
}

impl Session {
    /// Whether `key`'s node is busy running a script (it refuses new connections then, and
    /// waiting for one would only end in a "connection failed" error at the hold timeout).
    pub(super) fn node_busy(&self, key: &PoolKey) -> bool {
        self.ctx
            .pool
            .liveness()
            .node(key.node.endpoint.addr)
            .is_busy()
    }
}
