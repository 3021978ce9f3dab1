//! Why a snapshot names the master it does, or none: one typed reason per snapshot.
//!
//! The failover task decides on these variants and nothing else; sessions turn them into
//! `MASTERDOWN` errors and the admin endpoint into its `reason` field, both through
//! [`Display`](std::fmt::Display), which is the only place their words are written. Code that
//! must know *why* (the lease-lapse counter, a test) matches the variant, never the text.

use std::fmt;

/// Why the topology is as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The proxy has just started: no probe finished yet.
    Starting,
    /// Not every node has been probed once, so a second claimant may still be unseen.
    FirstProbes,
    /// A context without backend nodes (fuzzing, unit tests).
    NoNodes,
    /// The master was verified by the authority.
    Verified { master: String },
    /// No healthy node reports itself a writable master.
    NoWritableMaster,
    /// Several nodes claim master with no promotion relation between them (refused).
    RivalMasters { count: usize },
    /// No Sentinel answers, and there is no verified master to keep.
    NoSentinel,
    /// Sentinel reports the master down, or a failover of it under way.
    SentinelFailingOver { master: String },
    /// Sentinels that are not changing anything name different masters (refused).
    SentinelsDisagree { epoch: u64 },
    /// The master Sentinel names has not been probed yet.
    NamedUnprobed { master: String, epoch: u64 },
    /// The master Sentinel names is not a healthy writable master yet.
    NamedNotReady { master: String, epoch: u64 },
    /// Fewer Sentinels than the quorum name the master.
    TooFewSentinels {
        naming: usize,
        quorum: usize,
        master: String,
        epoch: u64,
    },
    /// Active-active: no site has quorum.
    NoSiteQuorum,
    /// Active-active: the preferred site has no healthy node.
    SiteWithoutNode { site: String },
    /// The chosen master has not been observed yet.
    Unobserved,
    /// The master's write lease ran out: the authority did not confirm it in time.
    LeaseLapsed { master: String, by: Confirmers },
    /// The master in use is suspended; `then` is what else keeps a master from being chosen.
    Suspended {
        cause: Suspension,
        then: Option<Box<Reason>>,
    },
    /// A session's own connection to the master failed.
    Unreachable,
    /// A session's connection failed and the master is being checked again.
    Rechecking(Box<Reason>),
}

/// Who must confirm a master within its write lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmers {
    /// A majority of the Sentinels, `answering` of `voters` answering now.
    Sentinels { answering: usize, voters: usize },
    /// A majority of the voting members (nodes and witnesses).
    Voters,
    /// The lease is unknown to this snapshot (its holder never had one).
    Authority,
}

/// Why the master in use was suspended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suspension {
    /// Sentinel announced a failover (the event's name).
    Announced { event: String },
    /// The master refused a command in a way that proves it stopped taking writes.
    Refused { master: String, reply: String },
    /// An operator's planned switchover away from it.
    Switchover { from: String },
}

impl Reason {
    /// Whether this is a lapsed write lease (for the lapse counter).
    pub fn is_lease_lapse(&self) -> bool {
        matches!(self, Reason::LeaseLapsed { .. })
    }

    /// `self`, behind the suspension `cause` if there is one.
    pub fn after(self, cause: Option<&Suspension>) -> Reason {
        match cause {
            Some(cause) => Reason::Suspended {
                cause: cause.clone(),
                then: Some(Box::new(self)),
            },
            None => self,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            Starting => f.write_str("starting: no probe finished yet"),
            FirstProbes => f.write_str("waiting for the first probe of every node"),
            NoNodes => f.write_str("standalone context: no backend nodes"),
            Verified { master } => write!(f, "{master} verified as master"),
            NoWritableMaster => f.write_str("no healthy node reports itself a writable master"),
            RivalMasters { count } => write!(
                f,
                "{count} nodes claim master with no promotion relation between them; refusing to choose"
            ),
            NoSentinel => f.write_str("no Sentinel reachable; keeping the verified master"),
            SentinelFailingOver { master } => {
                write!(f, "Sentinel reports the master {master} down or failing over")
            }
            SentinelsDisagree { epoch } => {
                write!(f, "Sentinels name different masters at epoch {epoch}")
            }
            NamedUnprobed { master, epoch } => {
                write!(f, "waiting to probe {master} (named by Sentinel at epoch {epoch})")
            }
            NamedNotReady { master, epoch } => write!(
                f,
                "{master} (named by Sentinel at epoch {epoch}) is not a healthy writable master yet"
            ),
            TooFewSentinels {
                naming,
                quorum,
                master,
                epoch,
            } => write!(
                f,
                "{naming} of {quorum} Sentinels needed name {master} at epoch {epoch}"
            ),
            NoSiteQuorum => f.write_str("no site has quorum"),
            SiteWithoutNode { site } => write!(f, "site {site} has no healthy node"),
            Unobserved => f.write_str("the chosen master has no observation yet"),
            LeaseLapsed { master, by } => write!(
                f,
                "the master {master} could not be confirmed by {by} within its write lease"
            ),
            Suspended { cause, then: None } => write!(f, "{cause}"),
            Suspended {
                cause,
                then: Some(then),
            } => write!(f, "{cause}; {then}"),
            Unreachable => f.write_str("the master cannot be reached"),
            Rechecking(now) => write!(
                f,
                "the connection to the master failed and it is being checked again ({now})"
            ),
        }
    }
}

impl fmt::Display for Confirmers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Confirmers::Sentinels { answering, voters } => write!(
                f,
                "a majority of the Sentinels ({answering} of {voters} answering)"
            ),
            Confirmers::Voters => f.write_str("a majority of the voting members"),
            Confirmers::Authority => f.write_str("the authority"),
        }
    }
}

impl fmt::Display for Suspension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suspension::Announced { event } => {
                write!(f, "Sentinel announced a failover ({event})")
            }
            Suspension::Refused { master, reply } => write!(f, "{master} answered {reply}"),
            Suspension::Switchover { from } => write!(f, "planned switchover away from {from}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspension_leads_what_else_is_waited_for() {
        let cause = Suspension::Announced {
            event: "+try-failover".into(),
        };
        let why = Reason::NoWritableMaster.after(Some(&cause));
        assert_eq!(
            why.to_string(),
            "Sentinel announced a failover (+try-failover); no healthy node reports itself a writable master"
        );
        assert_eq!(
            Reason::NoWritableMaster.after(None),
            Reason::NoWritableMaster
        );
    }

    #[test]
    fn only_a_lapsed_lease_counts_as_one() {
        let lapsed = Reason::LeaseLapsed {
            master: "10.0.0.1:6379".into(),
            by: Confirmers::Voters,
        };
        assert!(lapsed.is_lease_lapse());
        assert!(lapsed.to_string().contains("within its write lease"));
        assert!(!Reason::Rechecking(Box::new(lapsed)).is_lease_lapse());
    }
}
