//! What a user may run, in the spirit of Redis ACL rules: everything, only commands that
//! cannot change data, or an ordered list of `+@category`, `-@category`, `+command`,
//! `-command` rules (the last rule that matches decides; nothing matches: refused). The
//! facts come from the command table Redis itself reports (flags and ACL categories), so a
//! command is judged the same way Redis would categorise it. `AUTH`, `HELLO`, `QUIT` and
//! `RESET` are always allowed: a user must be able to switch users and leave.

use crate::config::PermissionSpec;
use crate::resp::command::{
    Classified, Kind, Local, CATEGORY_NAMES, C_ADMIN, C_DANGEROUS, C_SCRIPTING, C_WRITE,
    F_READONLY, F_WRITE,
};
use crate::resp::Request;

/// A user's permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Permissions {
    /// Every command (still subject to the proxy's own refusals).
    #[default]
    All,
    /// Commands that cannot change data: no write flag or category, nothing administrative or
    /// dangerous, no `PUBLISH`, scripts only in their read-only forms (`EVAL_RO`, `FCALL_RO`).
    ReadOnly,
    /// Ordered rules.
    Rules(Vec<Rule>),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Allow (`+`) or deny (`-`).
    pub allow: bool,
    /// What it applies to.
    pub target: Target,
}

/// What a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every command (`@all`).
    All,
    /// Commands of an ACL category (bit).
    Category(u32),
    /// A command (`GET`), or one subcommand (`CLIENT|KILL`); upper case.
    Command(String),
}

impl Permissions {
    /// Parses `"all"`, `"read-only"` or a list of rules (`["+@read", "-keys", "+client|id"]`;
    /// a rule without sign allows).
    pub fn parse(spec: &PermissionSpec) -> Result<Self, String> {
        match spec {
            PermissionSpec::Named(n) if n == "all" => Ok(Permissions::All),
            PermissionSpec::Named(n) if n == "read-only" => Ok(Permissions::ReadOnly),
            PermissionSpec::Named(n) => Err(format!(
                "{n:?} is not \"all\", \"read-only\" or a list of rules"
            )),
            PermissionSpec::Rules(list) => list
                .iter()
                .map(|r| parse_rule(r))
                .collect::<Result<Vec<_>, _>>()
                .map(Permissions::Rules),
        }
    }

    /// Whether the user may run `req`.
    pub fn allows(&self, req: &Request, cls: &Classified) -> bool {
        if matches!(
            cls.kind,
            Kind::Local(Local::Auth | Local::Hello | Local::Quit | Local::Reset)
        ) {
            return true;
        }
        match self {
            Permissions::All => true,
            Permissions::ReadOnly => read_only(req, cls),
            Permissions::Rules(rules) => rules
                .iter()
                .filter(|r| r.target.matches(req, cls))
                .last()
                .is_some_and(|r| r.allow),
        }
    }
}

fn parse_rule(text: &str) -> Result<Rule, String> {
    let t = text.trim();
    let (allow, body) = match t.as_bytes().first() {
        Some(b'+') => (true, &t[1..]),
        Some(b'-') => (false, &t[1..]),
        _ => (true, t),
    };
    let target = match body.strip_prefix('@') {
        Some("all") => Target::All,
        Some(cat) => {
            let lower = cat.to_ascii_lowercase();
            let bit = CATEGORY_NAMES
                .iter()
                .find(|(n, _)| *n == lower)
                .map(|(_, b)| *b)
                .ok_or_else(|| format!("{text:?}: unknown category @{cat}"))?;
            Target::Category(bit)
        }
        None if body.is_empty() || body.contains(char::is_whitespace) => {
            return Err(format!(
                "{text:?} is not a rule (+@category, -command, ...)"
            ));
        }
        None => Target::Command(body.to_ascii_uppercase()),
    };
    Ok(Rule { allow, target })
}

impl Target {
    fn matches(&self, req: &Request, cls: &Classified) -> bool {
        match self {
            Target::All => true,
            Target::Category(bit) => cls.categories() & bit != 0,
            Target::Command(name) => command_matches(name, req),
        }
    }
}

fn command_matches(rule: &str, req: &Request) -> bool {
    let (name, sub) = match rule.split_once('|') {
        Some((n, s)) => (n, Some(s)),
        None => (rule, None),
    };
    if !req.name().eq_ignore_ascii_case(name.as_bytes()) {
        return false;
    }
    match sub {
        None => true,
        Some(s) => req
            .arg1()
            .is_some_and(|a| a.eq_ignore_ascii_case(s.as_bytes())),
    }
}

fn read_only(req: &Request, cls: &Classified) -> bool {
    let Some(spec) = cls.spec else {
        // Unknown to the table (a module's command, a newer server's): only what the master
        // itself flags read-only.
        return crate::resp::command::learned::lookup(req.name(), None)
            .is_some_and(|f| f.readonly && !f.write && !f.admin);
    };
    if spec.flags & F_WRITE != 0 || spec.categories & (C_WRITE | C_ADMIN | C_DANGEROUS) != 0 {
        return false;
    }
    if spec.categories & C_SCRIPTING != 0 && spec.flags & F_READONLY == 0 {
        return false;
    }
    !(req.name().eq_ignore_ascii_case(b"PUBLISH") || req.name().eq_ignore_ascii_case(b"SPUBLISH"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::command::classify;

    fn check(p: &Permissions, args: &[&str]) -> bool {
        let req = Request::from_args(args);
        p.allows(&req, &classify(&req))
    }

    #[test]
    fn read_only_refuses_anything_that_can_change_data() {
        let p = Permissions::ReadOnly;
        for ok in [
            &["GET", "k"][..],
            &["MGET", "a", "b"],
            &["SCAN", "0"],
            &["PING"],
            &["SUBSCRIBE", "c"],
            &["EVAL_RO", "return 1", "0"],
            &["MULTI"],
            &["AUTH", "x"],
        ] {
            assert!(check(&p, ok), "{ok:?} should be allowed");
        }
        for refused in [
            &["SET", "k", "v"][..],
            &["DEL", "k"],
            &["EVAL", "return 1", "0"],
            &["PUBLISH", "c", "m"],
            &["FLUSHALL"],
            &["KEYS", "*"],
            &["CONFIG", "GET", "x"],
            &["SOMEMODULE.CMD"],
        ] {
            assert!(!check(&p, refused), "{refused:?} should be refused");
        }
    }

    #[test]
    fn rules_apply_in_order_and_the_last_match_decides() {
        let spec = PermissionSpec::Rules(vec![
            "+@read".into(),
            "+@connection".into(),
            "-@dangerous".into(),
            "+set".into(),
            "client|id".into(),
        ]);
        let p = Permissions::parse(&spec).unwrap();
        assert!(check(&p, &["GET", "k"]));
        assert!(check(&p, &["set", "k", "v"]));
        assert!(!check(&p, &["DEL", "k"]));
        assert!(!check(&p, &["KEYS", "*"]), "@dangerous removed after @read");
        assert!(check(&p, &["CLIENT", "ID"]));
        assert!(!check(&p, &["CLIENT", "KILL", "ID", "1"]));
        assert!(check(&p, &["HELLO", "3"]), "always allowed");
        assert!(Permissions::parse(&PermissionSpec::Rules(vec!["+@nope".into()])).is_err());
        assert!(Permissions::parse(&PermissionSpec::Named("some".into())).is_err());
        assert_eq!(
            Permissions::parse(&PermissionSpec::Named("read-only".into())),
            Ok(Permissions::ReadOnly)
        );
    }
}
