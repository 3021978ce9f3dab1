//! redis-failover-proxy: a Redis-protocol proxy that gives applications one address for a
//! Redis deployment spread over sites, and moves them to the new master when a site is lost.
//!
//! # The path of a request
//!
//! [`listener`] accepts a client under the connection limit and starts a [`session`]. The
//! session reads frames ([`resp::scan`]), classifies each command ([`resp::command`]), answers
//! the ones that concern only the client's own state, and sends the rest to a [`backend`]
//! connection to the current master: a shared, pipelined lane for ordinary commands, a
//! dedicated connection while the client holds server-side state. Replies come back through
//! the session's inbox in request order.
//!
//! # Who decides where the master is
//!
//! [`topology::health`] probes every node on its own connection; [`failover`] (the only
//! writer) turns the reports into an immutable [`topology::Topology`] snapshot, which sessions
//! read once per command.
//!
//! # Tasks
//!
//! One accept task, one task per client session, one probe task per node, one failover task.
//! [`app`] starts them and runs the shutdown sequence ([`shutdown`]).
#![deny(clippy::unwrap_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::panic))]

pub mod admin;
pub mod app;
pub mod auth;
pub mod backend;
pub mod config;
pub mod failover;
pub mod listener;
pub mod metrics;
pub mod resp;
pub mod session;
pub mod shutdown;
pub mod tls;
pub mod topology;
pub mod workers;
