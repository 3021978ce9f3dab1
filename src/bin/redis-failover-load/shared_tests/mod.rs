//! Unit tests of the modules the integration tests include as they are
//! (`tests/support/harness.rs`). They live here, beside those modules rather than inside
//! them, so that they run once, in this binary's tests, and not again in every test target
//! that includes the modules.

mod handshake;
mod ledger;
mod monitor_line;
mod outcome;
