//! Connections to Redis nodes: opening them ([`handshake`]), driving one pipelined socket
//! ([`conn`]), sharing and dedicating them by key ([`pool`]), and handing replies back to the
//! client sessions in request order ([`inbox`]).

pub mod conn;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake;
pub mod handshake;
pub mod inbox;
mod key;
mod lane;
pub mod lease;
pub mod liveness;
pub mod once;
pub mod pool;
mod supersede;

pub use conn::{Outgoing, ReplyMode};
pub use error::ConnError;
pub use handshake::{BackendAuth, Dialer, Endpoint};
pub use inbox::{Dispatch, Fault, FaultKind, Inbox, ReplyTo, Resolution, Sent, Tail, Taken};
pub use key::{LaneUse, NodeId, PoolConfig, PoolKey};
pub use lane::{Lane, LaneState};
pub use lease::{Lease, LeaseBoard};
pub use liveness::{Liveness, NodeLiveness};
pub use pool::{Dedicated, DedicatedError, Pool, Pools};

#[cfg(test)]
mod pool_tests;
