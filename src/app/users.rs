//! The proxy's users, built from the `[auth]` settings: passwords hashed, `commands` rules
//! parsed against the command table, backend credentials chosen. `--check` builds them too,
//! so a bad rule or digest is reported before anything starts, with the key it came from.

use std::sync::Arc;

use super::StartError;
use crate::auth::{Permissions, User, Users};
use crate::backend::BackendAuth;
use crate::config::{AuthMode, Config, Password, PermissionSpec};

/// The users of `cfg`; `backend` is the proxy's own backend credentials.
pub(super) fn build_users(cfg: &Config, backend: &Arc<BackendAuth>) -> Result<Users, StartError> {
    let default = make("default", &cfg.auth.password, Arc::clone(backend), "auth")?
        .with_permissions(permissions(&cfg.auth.permissions, "auth.commands")?)
        .with_durability(Some(cfg.durability));
    if cfg.auth.mode == AuthMode::Passthrough {
        return Ok(Users::passthrough(default));
    }
    let mut named = Vec::new();
    for (i, u) in cfg.auth.users.iter().enumerate() {
        let b = if u.backend_user.is_some() || u.backend_password.is_some() {
            Arc::new(BackendAuth {
                user: u.backend_user.clone(),
                password: u.backend_password.clone(),
            })
        } else {
            Arc::clone(backend)
        };
        let at = format!("auth.users[{i}]");
        let commands = permissions(&u.permissions, &format!("{at}.commands"))?;
        named.push(
            make(&u.name, &u.password, b, &at)?
                .with_permissions(commands)
                .with_durability(Some(u.durability.unwrap_or(cfg.durability))),
        );
    }
    Ok(Users::new(default, named))
}

/// One user with its password; `at` is where it is configured.
fn make(
    name: &str,
    pw: &Password,
    backend: Arc<BackendAuth>,
    at: &str,
) -> Result<User, StartError> {
    match pw {
        Password::None => Ok(User::open(name, backend)),
        Password::Plain(s) => Ok(User::with_password(name, s.expose(), backend)),
        Password::Sha256(h) => {
            User::with_digest(name, h, backend).map_err(|reason| StartError::User {
                setting: format!("{at}.password_sha256"),
                reason,
            })
        }
    }
}

fn permissions(spec: &PermissionSpec, setting: &str) -> Result<Permissions, StartError> {
    Permissions::parse(spec).map_err(|reason| StartError::User {
        setting: setting.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_name_their_key() {
        let cfg = Config::from_toml(
            "[auth]\ncommands = [\"+@read\"]\n[[auth.users]]\nname = \"u\"\ncommands = [\"+@nope\"]\n",
        )
        .unwrap();
        let e = build_users(&cfg, &Arc::new(BackendAuth::default())).unwrap_err();
        assert!(e.to_string().starts_with("auth.users[0].commands: "), "{e}");
        assert!(e.to_string().contains("@nope"), "{e}");
        let cfg = Config::from_toml("[auth]\ncommands = \"everything\"\n").unwrap();
        let e = build_users(&cfg, &Arc::new(BackendAuth::default())).unwrap_err();
        assert!(e.to_string().starts_with("auth.commands: "), "{e}");
    }
}
