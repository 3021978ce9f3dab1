//! The one path every command takes, from the parser to its handling.
//!
//! [`Session::next_input`] parses the front of the input, applies the query buffer limit,
//! classifies the command and runs the checks every command passes ([`Gate`]) exactly once.
//! The common case, an ordinary read or write that can join the batch on the connection in
//! use, ends there: it is batched without any future being created. Everything else is
//! handed over as a [`Looked`] command to [`Session::handle`], which starts from that same
//! classification and gate. [`Session::process_now`] and [`Session::process`] are the
//! synchronous and the general loop over this one step.

use super::route::Route;
use super::Session;
use crate::resp::command::{classify, Classified, Kind, Local};
use crate::resp::reply::{ClientError, Proto};
use crate::resp::{ProtocolError, Request};

/// A parsed command, classified and gated once.
pub(super) struct Looked {
    pub(super) req: Request,
    pub(super) cls: Classified,
    pub(super) gate: Gate,
}

/// What the front of the input turned out to be.
pub(super) enum Next {
    /// An ordinary command joined the batch (the fast case, finished).
    Batched,
    /// A command for the general path.
    Command(Looked),
    /// No complete frame, and what is buffered is within the query buffer limit.
    Incomplete,
    /// A malformed frame, or input beyond the query buffer limit.
    Malformed(ProtocolError),
}

/// Outcome of [`Session::process_now`].
pub(super) enum Step {
    /// Everything handled and sent.
    Done,
    /// The rest needs [`Session::process`], starting with this input if any.
    Slow(Option<Next>),
}

impl Session {
    /// Takes the next command off the input: parsed, limited, classified and gated, and
    /// batched at once when nothing about it needs waiting or an answer from the proxy.
    fn next_input(&mut self) -> Next {
        let parsed = self
            .parser
            .next(&mut self.rbuf, !self.state.authenticated());
        let limit = self.ctx.limits.query_buffer;
        let req = match parsed {
            Ok(Some(req)) if req.bytes().len() > limit => {
                return Next::Malformed(ProtocolError::QueryBufferLimit)
            }
            Ok(Some(req)) => req,
            Ok(None) if self.rbuf.len() > limit => {
                return Next::Malformed(ProtocolError::QueryBufferLimit)
            }
            Ok(None) => return Next::Incomplete,
            Err(e) => return Next::Malformed(e),
        };
        let looked = self.look(req);
        crate::metrics::hot().commands[looked.cls.kind.class_index()].increment(1);
        if self.batches_now(&looked) {
            self.note_script(&looked.req, looked.cls.kind);
            self.batch_add(&looked.req, looked.cls.kind, false);
            return Next::Batched;
        }
        Next::Command(looked)
    }

    /// Classifies and gates a command, and shows it in `CLIENT LIST`.
    pub(super) fn look(&self, req: Request) -> Looked {
        let cls = classify(&req);
        self.info.note_cmd(cls.spec);
        let gate = self.gate(&req, &cls);
        Looked { req, cls, gate }
    }

    /// The checks every command passes before its kind is looked at, in Redis's order.
    fn gate(&self, req: &Request, cls: &Classified) -> Gate {
        if self.pins().is_some_and(|p| p.monitor) {
            return Gate::Monitor;
        }
        if !self.state.authenticated() && !no_auth(cls.kind) {
            return Gate::Refuse(ClientError::NoAuth);
        }
        if self.needs_arity_check(cls.kind) && !cls.arity_ok(req.argc()) {
            let command = cls.acl_name(req);
            return Gate::Refuse(ClientError::Arity { command });
        }
        if !self.permitted(req, cls) {
            let command = cls.acl_name(req);
            return Gate::Refuse(ClientError::NoPerm { command });
        }
        if self.tx.is_some() {
            return Gate::Tx;
        }
        if self.subscribed_resp2() && !allowed_subscribed(cls.kind) {
            let command = cls.acl_name(req);
            return Gate::Refuse(ClientError::SubscribedContext { command });
        }
        Gate::Pass
    }

    /// The proxy interprets these commands' arguments, so it checks their arity as Redis
    /// would; everything else is left for Redis to judge.
    fn needs_arity_check(&self, kind: Kind) -> bool {
        !matches!(
            kind,
            Kind::Read
                | Kind::Write
                | Kind::Blocking
                | Kind::Kill
                | Kind::Guarded
                | Kind::Unsupported
        )
    }

    /// RESP2 clients with subscriptions may only run pub/sub commands, PING, QUIT and RESET.
    fn subscribed_resp2(&self) -> bool {
        self.state.proto == Proto::Resp2 && self.subs.any()
    }

    /// Whether the user's permissions include the command.
    fn permitted(&self, req: &Request, cls: &Classified) -> bool {
        self.state
            .user
            .as_ref()
            .is_none_or(|u| u.permissions.allows(req, cls))
    }

    /// Whether a command is ordinary enough to be batched without the general path: a read
    /// or write that passed its gate, whose reply the client wants, and whose route is the
    /// connection in use. [`Session::handle`] would do exactly the same with it.
    fn batches_now(&self, looked: &Looked) -> bool {
        matches!(looked.cls.kind, Kind::Read | Kind::Write)
            && matches!(looked.gate, Gate::Pass)
            && !self.silent()
            && self.batch_takes(false)
            && matches!(
                self.route_current(looked.cls.kind == Kind::Read),
                Some(Route::Go)
            )
    }

    /// The synchronous loop: batches ordinary commands and sends the batch, as long as
    /// nothing needs waiting. Stops at the first input that needs more, and hands it over.
    /// Kept free of futures: each `async` layer on this path would cost a copy of its state
    /// per command.
    pub(super) fn process_now(&mut self) -> Step {
        if self.stalled.is_some() || self.phase != super::Phase::Serving {
            return Step::Slow(None);
        }
        while !self.saturated() {
            match self.next_input() {
                Next::Batched => {}
                Next::Incomplete => break,
                other => return Step::Slow(Some(other)),
            }
        }
        if self.try_flush_batch() {
            Step::Done
        } else {
            Step::Slow(None)
        }
    }

    /// The general loop: handles buffered commands until input runs out, a command must
    /// wait, or enough is in flight; `pending` is what [`process_now`](Self::process_now)
    /// handed over, handled first.
    pub(super) async fn process(&mut self, mut pending: Option<Next>) {
        if let Some(req) = self.stalled.take() {
            // `process_now` takes nothing while a command is stalled. The stalled command is
            // gated again: what it waited for may have changed the client's state.
            debug_assert!(pending.is_none());
            let looked = self.look(req);
            self.handle(looked).await;
        }
        while !self.closing() && self.stalled.is_none() {
            let next = match pending.take() {
                Some(next) => next,
                None if self.saturated() => break,
                None => self.next_input(),
            };
            match next {
                Next::Batched => {}
                Next::Command(looked) => self.handle(looked).await,
                Next::Incomplete => {
                    if self.phase == super::Phase::Draining {
                        // Every complete command received before the drain is handled;
                        // nothing more is read.
                        self.close();
                    }
                    break;
                }
                Next::Malformed(e) => self.protocol_error(e).await,
            }
        }
        self.flush_batch().await;
    }

    /// Redis answers a malformed frame with an error and closes the connection.
    pub(super) async fn protocol_error(&mut self, e: ProtocolError) {
        tracing::debug!(client.id = self.id(), error = %e, "protocol error");
        self.flush_batch().await;
        self.inbox.push_local(&ClientError::Protocol(e).to_bytes());
        self.rbuf.clear();
        self.close();
    }
}

/// Commands allowed before authentication (as in Redis).
fn no_auth(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Local(Local::Auth | Local::Hello | Local::Quit | Local::Reset)
    )
}

/// Where the checks before a command's own handling send it.
pub(super) enum Gate {
    /// The client is in MONITOR mode (only QUIT and RESET are taken).
    Monitor,
    /// Refused with this error.
    Refuse(ClientError),
    /// Queued in the open transaction.
    Tx,
    /// On to the handling of its kind.
    Pass,
}

/// Commands a RESP2 client may run while subscribed.
fn allowed_subscribed(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Subscribe(_)
            | Kind::Unsubscribe(_)
            | Kind::Local(Local::Ping | Local::Quit | Local::Reset)
    )
}
