//! Which settings a running proxy can change in place and which need a restart. A reload
//! applies the re-read file with every restart-only setting put back to its running value,
//! and names each one that differed, so that the log says what was not applied. Settings are
//! compared as typed values (secrets by their content), never by their printed form.

use super::Config;

impl Config {
    /// Puts `running`'s value back into `self` (the re-read configuration) for every setting a
    /// reload cannot apply; returns the names of those that differed.
    pub fn keep_restart_only(&mut self, running: &Config) -> Vec<&'static str> {
        let mut kept = Vec::new();
        let mut keep = |name: &'static str, changed: bool| {
            if changed {
                kept.push(name);
            }
            changed
        };
        let (old, next) = (running, self);
        if keep("listen", old.listen != next.listen) {
            next.listen = old.listen;
        }
        let tls_shape = |c: &Config| c.tls.as_ref().map(|t| t.listen);
        if keep("tls (on/off, address)", tls_shape(old) != tls_shape(next)) {
            next.tls = old.tls.clone();
        }
        if keep("admin", old.admin != next.admin) {
            next.admin = old.admin;
        }
        if keep("admin_auth", old.admin_token != next.admin_token) {
            next.admin_token = old.admin_token.clone();
        }
        if keep("threads", old.threads != next.threads) {
            next.threads = old.threads;
        }
        if keep("log_format", old.log_format != next.log_format) {
            next.log_format = old.log_format;
        }
        // Client deadlines apply in place; sizes and counts are fixed at start-up.
        let mut limits = old.limits.clone();
        limits.frame_timeout = next.limits.frame_timeout;
        limits.idle_timeout = next.limits.idle_timeout;
        if keep("limits (sizes, clients)", limits != next.limits) {
            next.limits = limits;
        }
        let credentials = |c: &Config| {
            (
                c.backend.user.clone(),
                c.backend.password.clone(),
                c.backend.max_dedicated,
            )
        };
        if keep(
            "backend (credentials, max_dedicated)",
            credentials(old) != credentials(next),
        ) {
            next.backend.user = old.backend.user.clone();
            next.backend.password = old.backend.password.clone();
            next.backend.max_dedicated = old.backend.max_dedicated;
        }
        // The hold settings apply in place; the authority and its settings need a restart.
        let mut failover = old.failover.clone();
        failover.hold_timeout = next.failover.hold_timeout;
        failover.hold_timeout_given = next.failover.hold_timeout_given;
        failover.max_held_clients = next.failover.max_held_clients;
        if keep(
            "failover (authority, Sentinel, failback)",
            failover != next.failover,
        ) {
            next.failover = failover;
        }
        if keep("health", old.health != next.health) {
            next.health = old.health.clone();
        }
        if keep("dns", old.dns != next.dns) {
            next.dns = old.dns.clone();
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(&format!(
            "{extra}\n[[sites]]\nname = \"a\"\nnodes = [\"127.0.0.1:7001\"]\n"
        ))
        .unwrap()
    }

    #[test]
    fn restart_only_settings_keep_their_running_value() {
        let running = config("[backend]\npassword = \"old\"\n[limits]\nmax_clients = 10");
        let mut next = config(
            "[backend]\npassword = \"new\"\n[limits]\nmax_clients = 20\nidle_timeout = \"5s\"\n\
             [failover]\nhold_timeout = \"9s\"",
        );
        let kept = next.keep_restart_only(&running);
        assert_eq!(
            kept,
            vec![
                "limits (sizes, clients)",
                "backend (credentials, max_dedicated)"
            ]
        );
        assert_eq!(next.backend.password.as_ref().unwrap().expose(), "old");
        assert_eq!(next.limits.max_clients, 10);
        assert_eq!(next.limits.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(
            next.failover.hold_timeout,
            std::time::Duration::from_secs(9)
        );
        assert!(next.keep_restart_only(&running).is_empty());
    }
}
