//! The load harness's modules that the tests share, included from `src/bin/redis-failover-load/`
//! as they are: one implementation of each, used by the `redis-failover-load` binary and by
//! these tests alike.
//!
//! - [`ledger`]: whether a write was lost or applied though refused (the tests' numbered
//!   writers judge their list elements with it, in [`super::writer`]);
//! - [`outcome`]: what an error reply says of a write, the proxy's failover errors included;
//! - [`monitor_line`]: one MONITOR line, with Redis's escapes undone (the tests' recorder in
//!   [`super::failover`]);
//! - [`handshake`]: the AUTH command a client sends first ([`super::client`]).
//!
//! They live with the harness rather than in the proxy's library, which carries no test
//! code; each depends only on the others listed here (through `super::`), which is what lets
//! them be included here. Their unit tests live beside them in the binary
//! (`shared_tests`), so they run once rather than in every test target.

#[path = "../../src/bin/redis-failover-load/handshake.rs"]
pub mod handshake;
#[path = "../../src/bin/redis-failover-load/ledger.rs"]
pub mod ledger;
#[path = "../../src/bin/redis-failover-load/monitor_line.rs"]
pub mod monitor_line;
#[path = "../../src/bin/redis-failover-load/outcome.rs"]
pub mod outcome;
