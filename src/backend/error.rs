//! Errors of backend connections, each naming the deadline or the step that failed, so that
//! logs and metrics can tell a refused connection from a slow node from a wrong node.

use std::io;
use std::time::Duration;

use thiserror::Error;

/// Why a backend connection could not be opened or stopped working.
#[derive(Debug, Error)]
pub enum ConnError {
    /// TCP connect did not finish within the connect deadline.
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    /// TLS handshake failed.
    #[error("tls with {addr}: {reason}")]
    Tls { addr: String, reason: String },
    /// The Redis handshake (HELLO, AUTH, SELECT, identity) did not finish in time.
    #[error("handshake with {addr} timed out after {after:?}")]
    HandshakeTimeout { addr: String, after: Duration },
    /// The server refused a handshake command; `reply` is its error text.
    #[error("{addr} refused the handshake: {reply}")]
    Rejected { addr: String, reply: String },
    /// The server refused the proxy's own credentials, under which a connection for a
    /// client's user checks the node's identity; `reply` is its error text.
    #[error("{addr} refused the proxy's own credentials: {reply}")]
    OwnCredentialsRefused { addr: String, reply: String },
    /// The server is not the node the proxy expected (different run_id or not a master).
    #[error("{addr} is not the expected node: {why}")]
    Identity { addr: String, why: String },
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// A reply did not arrive within the reply deadline.
    #[error("no reply within {0:?}")]
    ReplyTimeout(Duration),
    /// The server sent bytes that are not RESP, or a reply nobody asked for.
    #[error("protocol desynchronised: {0}")]
    Protocol(&'static str),
    /// The connection was retired (its node is no longer the target).
    #[error("connection retired")]
    Retired,
    /// Another node became master: replies from this one are no longer awaited.
    #[error("another node became master")]
    Superseded,
    /// The node's health probes failed until it was declared down: replies are no longer
    /// awaited.
    #[error("the node stopped answering its health probes")]
    NodeDown,
}

impl ConnError {
    /// Short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ConnError::ConnectTimeout { .. } => "connect_timeout",
            ConnError::Connect { .. } => "connect",
            ConnError::Tls { .. } => "tls",
            ConnError::HandshakeTimeout { .. } => "handshake_timeout",
            ConnError::Rejected { .. } => "rejected",
            ConnError::OwnCredentialsRefused { .. } => "own_credentials",
            ConnError::Identity { .. } => "identity",
            ConnError::Io(_) => "io",
            ConnError::Closed => "closed",
            ConnError::ReplyTimeout(_) => "reply_timeout",
            ConnError::Protocol(_) => "protocol",
            ConnError::Retired => "retired",
            ConnError::Superseded => "superseded",
            ConnError::NodeDown => "node_down",
        }
    }
}
