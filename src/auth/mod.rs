//! Proxy-side users: who may talk to the proxy. In the default mode they are checked by the
//! proxy itself and a client's password is never forwarded to Redis; in passthrough mode the
//! proxy has no users of its own and [`Users::from_master`] makes one from credentials the
//! master accepted (see `session::passthrough`). A default password works like Redis's
//! `requirepass`; named users work like ACL users. Passwords are kept only as SHA-256 digests
//! and compared in constant time. Each user names the backend credentials its commands run
//! under (by default the proxy's own), which is why backend pools are keyed by backend user,
//! and what it may run ([`Permissions`]). Failed attempts are rate-limited per client address
//! ([`AuthLimiter`]).

mod limiter;
mod permissions;

pub use limiter::AuthLimiter;
pub use permissions::Permissions;

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backend::BackendAuth;
use crate::config::Durability;

/// A proxy user.
#[derive(Debug)]
pub struct User {
    /// Name (`default` for the default user).
    pub name: String,
    /// SHA-256 of the password; `None` means no password (`nopass`).
    digest: Option<[u8; 32]>,
    /// Credentials used on Redis for this user's commands.
    pub backend: Arc<BackendAuth>,
    /// What the user may run.
    pub permissions: Permissions,
    /// Durable writes for this user's commands (`None`: off).
    pub durability: Option<Durability>,
}

impl User {
    /// A user with a password given in clear (hashed at once).
    pub fn with_password(name: &str, password: &str, backend: Arc<BackendAuth>) -> Self {
        Self {
            name: name.to_string(),
            digest: Some(sha256(password.as_bytes())),
            backend,
            permissions: Permissions::All,
            durability: None,
        }
    }

    /// A user with a password given as its SHA-256 hex digest.
    pub fn with_digest(name: &str, hex: &str, backend: Arc<BackendAuth>) -> Result<Self, String> {
        Ok(Self {
            name: name.to_string(),
            digest: Some(parse_hex_digest(hex)?),
            backend,
            permissions: Permissions::All,
            durability: None,
        })
    }

    /// A user without password.
    pub fn open(name: &str, backend: Arc<BackendAuth>) -> Self {
        Self {
            name: name.to_string(),
            digest: None,
            backend,
            permissions: Permissions::All,
            durability: None,
        }
    }

    /// The same user with these permissions.
    pub fn with_permissions(self, permissions: Permissions) -> Self {
        Self {
            permissions,
            ..self
        }
    }

    /// The same user with writes made durable by `durability` (`None`, or 0 replicas: off).
    pub fn with_durability(self, durability: Option<Durability>) -> Self {
        Self {
            durability: durability.and_then(Durability::enabled),
            ..self
        }
    }

    fn accepts(&self, password: &[u8]) -> bool {
        let given = sha256(password);
        match &self.digest {
            Some(d) => bool::from(d.ct_eq(&given)),
            None => true,
        }
    }
}

/// Why an authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Unknown user or wrong password.
    WrongPass,
    /// `AUTH <password>` while the default user has no password.
    NotConfigured,
}

/// All proxy users.
#[derive(Debug)]
pub struct Users {
    default: Arc<User>,
    named: HashMap<String, Arc<User>>,
    /// Passthrough mode: the master checks credentials; `default` is what a client runs as
    /// before its `AUTH` (Redis's `default` user, with no password of the proxy's).
    passthrough: bool,
}

impl Users {
    /// Users from a default user and named users.
    pub fn new(default: User, named: Vec<User>) -> Self {
        Self {
            default: Arc::new(default),
            named: named
                .into_iter()
                .map(|u| (u.name.clone(), Arc::new(u)))
                .collect(),
            passthrough: false,
        }
    }

    /// Passthrough mode: no users of the proxy's own. Clients start as Redis's `default`
    /// user without a password (a master that requires one answers their commands
    /// `NOAUTH`); `template` gives every client its permissions and durability.
    pub fn passthrough(template: User) -> Self {
        let default = User {
            name: "default".into(),
            digest: None,
            backend: Arc::new(BackendAuth::default()),
            ..template
        };
        Self {
            default: Arc::new(default),
            named: HashMap::new(),
            passthrough: true,
        }
    }

    /// Whether the master, not the proxy, checks credentials.
    pub fn checked_by_master(&self) -> bool {
        self.passthrough
    }

    /// Passthrough mode: the user for `AUTH [user] password` once the master accepted it. Its
    /// commands run on the master as that user, with those credentials. `None` when they are
    /// not UTF-8 text (the handshake could not carry them).
    pub fn from_master(&self, user: Option<&[u8]>, password: &[u8]) -> Option<Arc<User>> {
        let name = user
            .map(|u| std::str::from_utf8(u).ok())
            .unwrap_or(Some("default"))?;
        let password = std::str::from_utf8(password).ok()?;
        Some(Arc::new(User {
            name: name.to_string(),
            digest: None,
            backend: Arc::new(BackendAuth {
                user: user.map(|_| name.to_string()),
                password: Some(crate::config::Secret::new(password)),
            }),
            permissions: self.default.permissions.clone(),
            durability: self.default.durability,
        }))
    }

    /// The user a new connection starts as: the default user when it needs no password,
    /// otherwise nobody (the client must authenticate).
    pub fn initial(&self) -> Option<Arc<User>> {
        self.default
            .digest
            .is_none()
            .then(|| Arc::clone(&self.default))
    }

    /// Whether clients must authenticate (to the proxy) before other commands.
    pub fn auth_required(&self) -> bool {
        self.default.digest.is_some()
    }

    /// `AUTH [user] password`.
    pub fn authenticate(
        &self,
        user: Option<&[u8]>,
        password: &[u8],
    ) -> Result<Arc<User>, AuthError> {
        let Some(name) = user else {
            if self.default.digest.is_none() {
                return Err(AuthError::NotConfigured);
            }
            return self.check(&self.default, password);
        };
        let name = String::from_utf8_lossy(name);
        let found = if name == "default" {
            Some(&self.default)
        } else {
            self.named.get(name.as_ref())
        };
        match found {
            Some(u) => self.check(u, password),
            None => {
                // Spend the same work as for a real user, so timing does not tell which
                // user names exist.
                let _ = self.default.accepts(password);
                Err(AuthError::WrongPass)
            }
        }
    }

    /// The users whose writes are durable, with their setting (the default user first).
    pub fn durabilities(&self) -> Vec<(String, Durability)> {
        let mut named: Vec<_> = self.named.values().collect();
        named.sort_by(|a, b| a.name.cmp(&b.name));
        std::iter::once(&self.default)
            .chain(named)
            .filter_map(|u| Some((u.name.clone(), u.durability?)))
            .collect()
    }

    fn check(&self, user: &Arc<User>, password: &[u8]) -> Result<Arc<User>, AuthError> {
        if user.accepts(password) {
            Ok(Arc::clone(user))
        } else {
            Err(AuthError::WrongPass)
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn parse_hex_digest(hex: &str) -> Result<[u8; 32], String> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err("a SHA-256 digest is 64 hexadecimal digits".into());
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| "not hexadecimal".to_string())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| "not hexadecimal".to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> Arc<BackendAuth> {
        Arc::new(BackendAuth::default())
    }

    #[test]
    fn default_password_works_like_requirepass() {
        let users = Users::new(User::with_password("default", "s3cret", backend()), vec![]);
        assert!(users.initial().is_none());
        assert!(users.authenticate(None, b"s3cret").is_ok());
        assert_eq!(
            users.authenticate(None, b"nope").unwrap_err(),
            AuthError::WrongPass
        );
        assert!(users.authenticate(Some(b"default"), b"s3cret").is_ok());
    }

    #[test]
    fn named_users_and_digests() {
        // Any well-formed digest parses; only the matching password opens it.
        let digest = "8a1c6ba9d7e9b7a1c8e1ef4bb3d6b8ec4e8ec0c0aa11c3d0d54ddc7cc7d4c7f1";
        assert!(User::with_digest("x", "zz", backend()).is_err());
        let hashed = User::with_digest("hashed", digest, backend()).unwrap();
        let users = Users::new(
            User::open("default", backend()),
            vec![User::with_password("app", "app-pw", backend()), hashed],
        );
        assert!(users.initial().is_some());
        assert_eq!(
            users.authenticate(Some(b"app"), b"app-pw").unwrap().name,
            "app"
        );
        assert_eq!(
            users.authenticate(Some(b"ghost"), b"app-pw").unwrap_err(),
            AuthError::WrongPass
        );
        assert_eq!(
            users.authenticate(None, b"x").unwrap_err(),
            AuthError::NotConfigured
        );
        let real = format!("{:x}", Sha256::digest(b"app-pw"));
        let users = Users::new(
            User::open("default", backend()),
            vec![User::with_digest("h", &real, backend()).unwrap()],
        );
        assert!(users.authenticate(Some(b"h"), b"app-pw").is_ok());
    }

    #[test]
    fn passthrough_users_carry_the_clients_credentials() {
        let template = User::open("default", backend()).with_permissions(Permissions::ReadOnly);
        let users = Users::passthrough(template);
        assert!(users.checked_by_master());
        let first = users.initial().expect("clients start as default");
        assert_eq!(*first.backend, BackendAuth::default());
        let app = users.from_master(Some(b"app"), b"pw").unwrap();
        assert_eq!(app.name, "app");
        assert_eq!(app.backend.user.as_deref(), Some("app"));
        assert_eq!(app.backend.password.as_ref().unwrap().expose(), "pw");
        assert_eq!(app.permissions, Permissions::ReadOnly);
        let default = users.from_master(None, b"pw").unwrap();
        assert_eq!(
            (default.name.as_str(), &default.backend.user),
            ("default", &None)
        );
        assert!(users.from_master(Some(b"\xff"), b"pw").is_none());
    }
}
