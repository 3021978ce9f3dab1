//! Partitions of a [`Lab`], each with its undo: a site cut off (its bridge port down), a
//! site's outgoing lab traffic dropped (blackhole routes), two sites cut from each other only.

use super::{must, Lab};

impl Lab {
    /// Cuts site `name` off: its bridge port goes down, so nothing it sends arrives and
    /// nothing reaches it (no reset, no error: a black hole). Its control link stays.
    pub fn cut(&self, name: &str) {
        self.set_port(name, "down");
    }

    /// Undoes [`cut`](Self::cut).
    pub fn heal(&self, name: &str) {
        self.set_port(name, "up");
    }

    /// Sets site `name`'s port on the bridge `down` or `up`.
    fn set_port(&self, name: &str, state: &str) {
        must(&[
            "-n",
            &self.switch,
            "link",
            "set",
            &self.site(name).port,
            state,
        ]);
    }

    /// Drops site `name`'s outgoing lab traffic (blackhole routes for the lab subnet; its own
    /// address stays local): what others send arrives, no reply leaves.
    pub fn drop_outgoing(&self, name: &str) {
        let ns = &self.site(name).ns;
        for half in ["10.213.0.0/25", "10.213.0.128/25"] {
            must(&["-n", ns, "route", "add", "blackhole", half]);
        }
    }

    /// Undoes [`drop_outgoing`](Self::drop_outgoing).
    pub fn restore_outgoing(&self, name: &str) {
        let ns = &self.site(name).ns;
        for half in ["10.213.0.0/25", "10.213.0.128/25"] {
            must(&["-n", ns, "route", "del", "blackhole", half]);
        }
    }

    /// Cuts sites `a` and `b` from each other only (blackhole routes in both for the other's
    /// lab address).
    pub fn separate(&self, a: &str, b: &str) {
        self.blackhole_each_other(a, b, "add");
    }

    /// Undoes [`separate`](Self::separate).
    pub fn join(&self, a: &str, b: &str) {
        self.blackhole_each_other(a, b, "del");
    }

    /// `ip route <op> blackhole` in site `a` for site `b`'s lab address, then in `b` for `a`'s.
    fn blackhole_each_other(&self, a: &str, b: &str, op: &str) {
        let (sa, sb) = (self.site(a), self.site(b));
        must(&[
            "-n",
            &sa.ns,
            "route",
            op,
            "blackhole",
            &format!("{}/32", sb.lab_ip),
        ]);
        must(&[
            "-n",
            &sb.ns,
            "route",
            op,
            "blackhole",
            &format!("{}/32", sa.lab_ip),
        ]);
    }
}
