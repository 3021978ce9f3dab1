//! Protocol errors found while scanning frames. The `Display` text of the client-side variants is
//! the text `redis-server` sends for the same input, after `Protocol error: `, so that a client
//! sees the same failure through the proxy as without it.

use thiserror::Error;

/// A frame that cannot be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Multibulk header not a number, or above the argument limit.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// Bulk header not a number, negative, or above the bulk limit.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk command did not start with `$`.
    #[error("expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// A multibulk header line longer than an inline command may be.
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    /// A bulk header line longer than an inline command may be.
    #[error("too big bulk count string")]
    TooBigBulkCount,
    /// An inline command longer than 64 KiB.
    #[error("too big inline request")]
    TooBigInline,
    /// An inline command with an unterminated quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More than 10 arguments before the client authenticated.
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk string over 16 KiB before the client authenticated.
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// The client's unprocessed input exceeded its query buffer limit.
    #[error("query buffer limit exceeded")]
    QueryBufferLimit,
    /// A command was started but not completed within the frame deadline (a client trickling
    /// bytes to hold a connection open). The proxy's own: Redis has no such deadline.
    #[error("command not completed within the frame timeout")]
    FrameTimeout,
    /// A backend sent bytes that are not RESP (never sent to a client as such).
    #[error("malformed reply from the server")]
    BadReply,
}
