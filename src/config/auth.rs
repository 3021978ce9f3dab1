//! The `[auth]` section: who may talk to the proxy. In `proxy` mode (the default) the proxy
//! checks clients against users of its own; in `passthrough` mode it has none, and a client's
//! `AUTH` is checked by the master and its commands run as that Redis user. Reading and the
//! checks that belong to the section live here too.

use super::file::read_secret;
use super::reader::{Problems, Reader};
use super::{Durability, Secret};
use std::time::Duration;

/// How permissions are written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum PermissionSpec {
    /// `"all"` or `"read-only"`.
    Named(String),
    /// Rules.
    Rules(Vec<String>),
}

impl Default for PermissionSpec {
    fn default() -> Self {
        PermissionSpec::Named("all".into())
    }
}

/// How failed authentications are limited per client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Failures allowed in a row.
    pub burst: u32,
    /// One more failure allowed per this interval once the burst is spent.
    pub refill: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            burst: 10,
            refill: Duration::from_secs(6),
        }
    }
}

/// Who checks a client's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// The proxy, against its own users (`[auth] password`, `[[auth.users]]`).
    #[default]
    Proxy,
    /// The master: a client's `AUTH`/`HELLO AUTH` is checked there, and its commands run as
    /// that Redis user on connections pooled per user.
    Passthrough,
}

/// How a user's password is given.
#[derive(Debug, Clone)]
pub enum Password {
    /// No password.
    None,
    /// In clear (from the file, a file or the environment).
    Plain(Secret),
    /// As a SHA-256 hex digest.
    Sha256(String),
}

/// A named proxy user.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// Name.
    pub name: String,
    /// Password.
    pub password: Password,
    /// Backend credentials for this user's commands (default: the `[backend]` ones).
    pub backend_user: Option<String>,
    /// Backend password for this user's commands.
    pub backend_password: Option<Secret>,
    /// What the user may run.
    pub permissions: PermissionSpec,
    /// Durable writes for this user (default: the `[durability]` setting).
    pub durability: Option<Durability>,
}

/// Client authentication.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Who checks credentials.
    pub mode: AuthMode,
    /// Password of the default user (Redis `requirepass`).
    pub password: Password,
    /// Named users.
    pub users: Vec<UserConfig>,
    /// What the default user may run.
    pub permissions: PermissionSpec,
    /// Failed authentications allowed per client address.
    pub limit: LimitSettings,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            mode: AuthMode::Proxy,
            password: Password::None,
            users: Vec::new(),
            permissions: PermissionSpec::default(),
            limit: LimitSettings::default(),
        }
    }
}

fn read_password(r: &mut Reader<'_>, p: &mut Problems) -> Password {
    let plain = read_secret(r, "password", p);
    let digest: Option<String> = r.get("password_sha256", p);
    match (plain, digest) {
        (Some(_), Some(_)) => {
            p.add(
                &r.path_of("password"),
                "give password or password_sha256, not both",
            );
            Password::None
        }
        (Some(s), None) => Password::Plain(s),
        (None, Some(h)) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
            Password::Sha256(h.to_ascii_lowercase())
        }
        (None, Some(_)) => {
            p.add(
                &r.path_of("password_sha256"),
                "expected 64 hexadecimal digits (a SHA-256 digest)",
            );
            Password::None
        }
        (None, None) => Password::None,
    }
}

pub(super) fn read_auth(mut r: Reader<'_>, durability: Durability, p: &mut Problems) -> Auth {
    let mode = read_mode(&mut r, p);
    let password = read_password(&mut r, p);
    let users = r
        .tables("users", p)
        .into_iter()
        .map(|mut u| {
            let user = UserConfig {
                name: u.get_or("name", String::new(), p),
                password: read_password(&mut u, p),
                backend_user: u.get("backend_user", p),
                backend_password: read_secret(&mut u, "backend_password", p),
                permissions: read_permissions(&mut u, p),
                durability: u
                    .table("durability", p)
                    .map(|t| super::durability::read_durability(t, durability, p)),
            };
            if user.name.is_empty() {
                p.add(&u.path_of("name"), "every user needs a name");
            }
            u.finish(p);
            user
        })
        .collect();
    let d = LimitSettings::default();
    let limit = LimitSettings {
        burst: r.get_or("failure_burst", d.burst, p),
        refill: r.duration("failure_refill", d.refill, p),
    };
    if limit.burst == 0 {
        p.add(&r.path_of("failure_burst"), "must be at least 1");
    }
    let permissions = read_permissions(&mut r, p);
    r.finish(p);
    Auth {
        mode,
        password,
        users,
        permissions,
        limit,
    }
}

/// The `commands` rules as written; `auth::Permissions::parse` reads them when the users are
/// built (and `--check` builds them too), so that this module needs nothing of the command
/// table.
fn read_permissions(r: &mut Reader<'_>, p: &mut Problems) -> PermissionSpec {
    r.get::<PermissionSpec>("commands", p).unwrap_or_default()
}

fn read_mode(r: &mut Reader<'_>, p: &mut Problems) -> AuthMode {
    match r.get::<String>("mode", p).as_deref() {
        None | Some("proxy") => AuthMode::Proxy,
        Some("passthrough") => AuthMode::Passthrough,
        Some(other) => {
            p.add(
                &r.path_of("mode"),
                format!("{other:?} is not \"proxy\" or \"passthrough\""),
            );
            AuthMode::Proxy
        }
    }
}

impl Auth {
    /// Checks that the settings agree with the mode: in `passthrough` the master knows the
    /// users, so the proxy may have none of its own.
    pub(super) fn check(&self, p: &mut Problems) {
        if self.mode != AuthMode::Passthrough {
            return;
        }
        if !matches!(self.password, Password::None) {
            p.add(
                "auth.password",
                "passthrough mode checks passwords on the master; remove the proxy's own",
            );
        }
        if !self.users.is_empty() {
            p.add(
                "auth.users",
                "passthrough mode uses the master's users; remove the proxy's own",
            );
        }
    }
}
