//! What the harness says to a server before its first command: `AUTH [user] password` when
//! the run has [`Credentials`], nothing otherwise. It sends no HELLO (it speaks RESP2, every
//! server's default) and no SELECT (its keys are in database 0), so AUTH is the whole
//! handshake.
//!
//! The load harness's connections ([`crate::net`]) and the tests' clients
//! (`tests/support/client.rs`, which includes this file through `tests/support/harness.rs`)
//! both authenticate with [`Credentials::command`], so the two cannot drift apart in how an
//! ACL user or a bare password is sent. Nothing here depends on the rest of the harness.

/// Credentials for AUTH.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// ACL user, or none for `AUTH <password>`.
    pub(crate) user: Option<String>,
    /// The password.
    pub(crate) password: String,
}

// By hand, so that the password never reaches a log or a panic message.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// The AUTH command: `AUTH <user> <password>` with an ACL user, `AUTH <password>` without
    /// (the form servers before Redis 6 understand too).
    pub(crate) fn command(&self) -> Vec<&str> {
        let mut args = vec!["AUTH"];
        args.extend(self.user.as_deref());
        args.push(&self.password);
        args
    }
}
