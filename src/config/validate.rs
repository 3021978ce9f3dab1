//! Checks that only make sense for the whole configuration, after the flags were applied.

use super::*;

impl Config {
    /// Checks what only makes sense for the whole configuration (after flags were applied).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        self.validate_sites(&mut p);
        self.validate_tls(&mut p);
        if self.backend.pool_size == 0 {
            p.add("backend.pool_size", "must be at least 1");
        }
        if self.limits.max_clients == 0 {
            p.add("limits.max_clients", "must be at least 1");
        }
        if self.limits.frame_timeout.is_zero() {
            p.add("limits.frame_timeout", "must be more than 0");
        }
        if self.limits.max_in_flight == 0 {
            p.add("limits.max_in_flight", "must be at least 1");
        }
        if self.health.rise == 0 || self.health.fall == 0 {
            p.add("health", "rise and fall must be at least 1");
        }
        self.auth.check(&mut p);
        super::durability::check(self.durability, "durability", &mut p);
        for u in &self.auth.users {
            if let Some(d) = u.durability {
                super::durability::check(d, &format!("auth.users.{}.durability", u.name), &mut p);
            }
        }
        for c in &self.allow_commands {
            if c.is_empty() || c.contains(char::is_whitespace) {
                p.add(
                    "allow_commands",
                    format!("{c:?} is not a command name (use CONFIG or CONFIG|SET)"),
                );
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(p.0))
        }
    }
}

impl Config {
    fn validate_tls(&self, p: &mut Problems) {
        if let Some(tls) = &self.tls {
            if tls.listen == Some(self.listen) {
                p.add(
                    "tls.listen",
                    "must differ from listen (leave it out to serve TLS on listen)",
                );
            }
            if tls.handshake_timeout.is_zero() {
                p.add("tls.handshake_timeout", "must be more than 0");
            }
        }
    }

    fn validate_sites(&self, p: &mut Problems) {
        let has = |f: fn(&Site) -> bool| self.sites.iter().any(f);
        match &self.failover.authority {
            Authority::Sentinel { master_name } => {
                if !has(|s| !s.sentinels.is_empty()) {
                    p.add("sites", "the sentinel authority needs Sentinel addresses (--sentinels or [[sites]] sentinels)");
                }
                if master_name.is_empty() {
                    p.add(
                        "failover.master_name",
                        "the sentinel authority needs the master name",
                    );
                }
            }
            Authority::Nodes | Authority::ActiveActive => {
                if !has(|s| !s.nodes.is_empty() || !s.srv.is_empty()) {
                    p.add(
                        "sites",
                        "no Redis node configured (give --nodes or [[sites]] nodes)",
                    );
                }
            }
        }
        for (i, site) in self.sites.iter().enumerate() {
            for (key, list) in [("nodes", &site.nodes), ("sentinels", &site.sentinels)] {
                for (j, addr) in list.iter().enumerate() {
                    if split_host_port(addr).is_none() {
                        p.add(
                            &format!("sites[{i}].{key}[{j}]"),
                            format!("{addr:?} is not host:port"),
                        );
                    }
                }
            }
            if site.quorum == Quorum::Count(0) {
                p.add(&format!("sites[{i}].quorum"), "must be at least 1");
            }
            if self.sites[..i].iter().any(|o| o.name == site.name) {
                p.add(
                    &format!("sites[{i}].name"),
                    format!("site name {:?} is used twice", site.name),
                );
            }
        }
        if self.failover.hold_timeout.is_zero() {
            p.add("failover.hold_timeout", "must be more than 0");
        }
        self.validate_lease(p);
        if self.dns.min_ttl > self.dns.max_ttl {
            p.add("dns.min_ttl", "must not exceed dns.max_ttl");
        }
    }

    fn validate_lease(&self, p: &mut Problems) {
        let f = &self.failover;
        if f.lease.is_some_and(|l| l.is_zero()) {
            p.add("failover.lease", "must be more than 0");
        }
        if f.promotion_delay.is_some_and(|d| d.is_zero()) {
            p.add("failover.promotion_delay", "must be more than 0");
        }
        match f.authority {
            Authority::ActiveActive if f.lease.is_some() => p.add(
                "failover.lease",
                "active-active needs no write lease: every site is writable by design",
            ),
            Authority::Nodes if f.lease.is_some() && f.promotion_delay.is_none() => p.add(
                "failover.lease",
                "with authority = \"nodes\", a lease needs promotion_delay (how long the orchestrator waits before it promotes)",
            ),
            Authority::Sentinel { .. } | Authority::ActiveActive
                if f.promotion_delay.is_some() =>
            {
                p.add(
                    "failover.promotion_delay",
                    "only used with authority = \"nodes\" (Sentinel's own down-after-milliseconds is read from the Sentinels)",
                )
            }
            _ => {}
        }
        if !f.witnesses.is_empty() && f.promotion_delay.is_none() {
            p.add(
                "failover.witnesses",
                "witnesses count towards the write lease of the \"nodes\" authority: set promotion_delay too",
            );
        }
        for (i, w) in f.witnesses.iter().enumerate() {
            if split_host_port(w).is_none() {
                p.add(
                    &format!("failover.witnesses[{i}]"),
                    format!("{w:?} is not host:port"),
                );
            }
        }
    }
}
