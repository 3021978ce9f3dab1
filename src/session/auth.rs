//! AUTH and HELLO AUTH: who the client is, and so which credentials its commands run under.
//!
//! In the default mode the proxy checks the credentials against its own users. In passthrough
//! mode (`[auth] mode = "passthrough"`) it has none: the client's `AUTH` goes, as the first
//! command of a connection of its own, to the master, whose answer is the client's answer.
//! Accepted credentials become the client's backend user, so its commands run as that Redis
//! user on connections pooled per user, and every new connection (on a new master after a
//! failover too) authenticates with them in its handshake. Failures count against the
//! client's address in both modes, so the proxy does not become a way around the limit.

use std::sync::Arc;

use super::route::Unroutable;
use super::Session;
use crate::auth::{AuthError, User};
use crate::backend::once::check_auth;
use crate::backend::Endpoint;
use crate::resp::reply::{ClientError, OK};
use crate::resp::Request;

/// What came of a credential check.
enum Verdict {
    /// These credentials are good: the client is now this user.
    Accepted(Arc<User>),
    /// Refused with this error.
    Refused(ClientError),
    /// The client was answered already, or its command stalled until a master is known (it
    /// runs again then).
    Answered,
}

impl Session {
    /// AUTH [user] password.
    pub(super) async fn auth(&mut self, req: &Request, silent: bool) {
        let args = req.args();
        let (user, password) = match args.len() {
            2 => (None, args[1]),
            3 => (Some(args[1]), args[2]),
            _ => return self.reply_error(ClientError::Syntax, silent).await,
        };
        if let Some(u) = self.authenticate(req, user, password, silent).await {
            self.state.user = Some(u);
            self.reply(OK, silent).await;
        }
    }

    /// Checks credentials for AUTH and HELLO AUTH, under the per-address limit on failures.
    /// Returns the user they open; `None` once the client was answered (refused) or its
    /// command stalled.
    pub(super) async fn authenticate(
        &mut self,
        req: &Request,
        user: Option<&[u8]>,
        password: &[u8],
        silent: bool,
    ) -> Option<Arc<User>> {
        let ip = self.info.addr.ip();
        if let Err(wait) = self.ctx.auth_limiter.check(ip) {
            let e = ClientError::AuthRateLimited {
                retry_after_secs: wait.as_secs().max(1),
            };
            self.reply_error(e, silent).await;
            return None;
        }
        let by_master = self.ctx.dynamic.load().users.checked_by_master();
        let verdict = if by_master {
            self.check_on_master(req, user, password, silent).await
        } else {
            self.check_here(user, password)
        };
        match verdict {
            Verdict::Accepted(u) => Some(u),
            Verdict::Answered => None,
            Verdict::Refused(e) => {
                if wrong_credentials(&e) {
                    self.ctx.auth_limiter.failed(ip);
                    crate::metrics::hot().auth_failures.increment(1);
                    tracing::debug!(client.id = self.id(), client.addr = %self.info.addr, "authentication failed");
                }
                self.reply_error(e, silent).await;
                None
            }
        }
    }

    /// The proxy's own users.
    fn check_here(&self, user: Option<&[u8]>, password: &[u8]) -> Verdict {
        match self.ctx.dynamic.load().users.authenticate(user, password) {
            Ok(u) => Verdict::Accepted(u),
            Err(AuthError::WrongPass) => Verdict::Refused(ClientError::WrongPass),
            Err(AuthError::NotConfigured) => Verdict::Refused(ClientError::AuthNotConfigured),
        }
    }

    /// Passthrough: the master's verdict on the same `AUTH`.
    async fn check_on_master(
        &mut self,
        req: &Request,
        user: Option<&[u8]>,
        password: &[u8],
        silent: bool,
    ) -> Verdict {
        let Some(candidate) = self.ctx.dynamic.load().users.from_master(user, password) else {
            return Verdict::Refused(ClientError::PassthroughNotText);
        };
        let ep = match self.auth_node() {
            Ok(ep) => ep,
            Err(u) => {
                let route = self.unroutable(u);
                self.routed(route, req, silent).await;
                return Verdict::Answered;
            }
        };
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        args.extend(user);
        args.push(password);
        match check_auth(self.ctx.pool.dialer(), &ep, &Request::from_args(&args)).await {
            Ok(reply) => match reply.as_error() {
                None => Verdict::Accepted(candidate),
                Some(e) => Verdict::Refused(ClientError::MasterAuth {
                    reply: e.to_string(),
                }),
            },
            Err(_) => Verdict::Refused(ClientError::NotSent),
        }
    }

    /// The node that checks credentials: the last verified master, even while its write
    /// lease is lapsed (checking a password writes nothing); with none known, the client
    /// waits as its commands would.
    fn auth_node(&self) -> Result<Endpoint, Unroutable> {
        if let Some(m) = &self.ctx.topology.load().master {
            return Ok(m.node.endpoint.clone());
        }
        self.target().map(|t| t.key.node.endpoint.clone())
    }
}

/// Whether `e` says the credentials were wrong (and so counts against the address).
fn wrong_credentials(e: &ClientError) -> bool {
    match e {
        ClientError::WrongPass => true,
        ClientError::MasterAuth { reply } => reply.trim_start_matches('-').starts_with("WRONGPASS"),
        _ => false,
    }
}
