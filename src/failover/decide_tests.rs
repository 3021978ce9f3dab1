use std::time::Duration;

use super::*;
use crate::topology::Role;

fn obs(role: Role, replid: &str, replid2: &str) -> Observation {
    crate::topology::fixtures::observation(role, &format!("run-{replid}"), replid, replid2)
}

fn replica() -> Role {
    Role::Replica {
        master: "x:1".into(),
        link_up: true,
    }
}

fn up(o: &Observation) -> NodeFacts<'_> {
    NodeFacts {
        healthy: true,
        site_ok: true,
        seen: Some(o),
    }
}

#[test]
fn unique_healthy_master_wins() {
    let a = obs(Role::Master, "r1", "0");
    let b = obs(replica(), "r1", "0");
    assert_eq!(by_role(&[up(&a), up(&b)]), Choice::Master(0));
    let sick = NodeFacts {
        healthy: false,
        ..up(&a)
    };
    assert!(matches!(by_role(&[sick, up(&b)]), Choice::Wait(_)));
    let no_quorum = NodeFacts {
        site_ok: false,
        ..up(&a)
    };
    assert!(matches!(by_role(&[no_quorum]), Choice::Wait(_)));
    let mut loading = a.clone();
    loading.loading = true;
    assert!(matches!(by_role(&[up(&loading)]), Choice::Wait(_)));
}

#[test]
fn one_process_under_two_addresses_is_one_claimant() {
    let a = obs(Role::Master, "r1", "0");
    assert_eq!(by_role(&[up(&a), up(&a.clone())]), Choice::Master(0));
}

#[test]
fn promoted_node_wins_and_unrelated_claimants_fail_closed() {
    let old = obs(Role::Master, "r1", "0000");
    let new = obs(Role::Master, "r2", "r1");
    assert_eq!(by_role(&[up(&old), up(&new)]), Choice::Master(1));
    let stranger = obs(Role::Master, "r9", "0000");
    assert!(matches!(
        by_role(&[up(&old), up(&stranger)]),
        Choice::Refuse(_)
    ));
}

fn vote(addr: &str, epoch: u64) -> Vote {
    Vote {
        addr: addr.into(),
        run_id: String::new(),
        epoch,
        troubled: false,
    }
}

fn locate(v: &Vote) -> Option<usize> {
    match v.addr.as_str() {
        "a" => Some(0),
        "b" => Some(1),
        _ => None,
    }
}

#[test]
fn sentinel_majority_at_highest_epoch() {
    let a = obs(Role::Master, "r1", "0000");
    let b = obs(replica(), "r1", "0000");
    let nodes = [up(&a), up(&b)];
    let none = SentinelFacts {
        voters: 3,
        current: None,
    };
    assert_eq!(
        by_sentinels(&[vote("a", 1), vote("a", 1)], &nodes, none, locate),
        Choice::Master(0)
    );
    // One vote of three is not enough at start-up.
    assert!(matches!(
        by_sentinels(&[vote("a", 1)], &nodes, none, locate),
        Choice::Wait(_)
    ));
    // Different masters at the same epoch: refuse.
    assert!(matches!(
        by_sentinels(&[vote("a", 2), vote("b", 2)], &nodes, none, locate),
        Choice::Refuse(_)
    ));
    // A troubled master is not used.
    let mut down = vote("a", 1);
    down.troubled = true;
    assert!(matches!(
        by_sentinels(&[down.clone(), down], &nodes, none, locate),
        Choice::Wait(_)
    ));
}

#[test]
fn sentinel_switch_needs_majority_or_proof_of_promotion() {
    let old = obs(replica(), "r1", "0000");
    let promoted = obs(Role::Master, "r2", "r1");
    let nodes = [up(&old), up(&promoted)];
    let current = SentinelFacts {
        voters: 3,
        current: Some((0, "r1")),
    };
    // The leader already names b at epoch 2; the others still say a at epoch 1. b proves it
    // was promoted from the history of the master in use: switch now.
    let votes = [vote("b", 2), vote("a", 1), vote("a", 1)];
    assert_eq!(
        by_sentinels(&votes, &nodes, current, locate),
        Choice::Master(1)
    );
    // Without that proof, wait for the majority.
    let unrelated = obs(Role::Master, "r7", "0000");
    let nodes = [up(&old), up(&unrelated)];
    assert!(matches!(
        by_sentinels(&votes, &nodes, current, locate),
        Choice::Wait(_)
    ));
}

#[test]
fn failover_leader_naming_the_old_master_does_not_block_the_majority() {
    let old = obs(replica(), "r1", "0000");
    let promoted = obs(Role::Master, "r2", "r1");
    let nodes = [up(&old), up(&promoted)];
    let facts = SentinelFacts {
        voters: 3,
        current: Some((0, "r1")),
    };
    // Between +promoted-slave and its own +switch-master, the leader reports the old address
    // at the new epoch, flagged as failing over; the two others already name b.
    let mut leader = vote("a", 2);
    leader.troubled = true;
    let votes = [leader.clone(), vote("b", 2), vote("b", 2)];
    assert_eq!(
        by_sentinels(&votes, &nodes, facts, locate),
        Choice::Master(1)
    );
    // Only the leader answering: wait for the change to settle.
    assert!(matches!(
        by_sentinels(&[leader], &nodes, facts, locate),
        Choice::Wait(_)
    ));
    // Two settled Sentinels naming different masters at one epoch stay ambiguous.
    let unrelated = obs(Role::Master, "r7", "0000");
    let nodes = [up(&unrelated), up(&promoted)];
    assert!(matches!(
        by_sentinels(&[vote("a", 2), vote("b", 2)], &nodes, facts, locate),
        Choice::Refuse(_)
    ));
}

#[test]
fn no_sentinel_reachable_keeps_the_verified_master() {
    let a = obs(Role::Master, "r1", "0000");
    let nodes = [up(&a)];
    let current = SentinelFacts {
        voters: 3,
        current: Some((0, "r1")),
    };
    assert_eq!(
        by_sentinels(&[], &nodes, current, locate),
        Choice::Master(0)
    );
    let sick = [NodeFacts {
        healthy: false,
        ..up(&a)
    }];
    assert!(matches!(
        by_sentinels(&[], &sick, current, locate),
        Choice::Wait(_)
    ));
}

fn site(priority: u32, up: bool, up_for: u64) -> SiteFacts {
    SiteFacts {
        priority,
        up,
        up_for: Duration::from_secs(up_for),
        pending: false,
    }
}

#[test]
fn active_active_prefers_priority_and_waits_to_fail_back() {
    let grace = Duration::from_secs(30);
    let both = [site(0, true, 100), site(1, true, 100)];
    assert_eq!(by_preference(&both, None, grace), Some(0));
    let first_down = [site(0, false, 0), site(1, true, 100)];
    assert_eq!(by_preference(&first_down, Some(0), grace), Some(1));
    let back_recently = [site(0, true, 5), site(1, true, 100)];
    assert_eq!(by_preference(&back_recently, Some(1), grace), Some(1));
    let back_long = [site(0, true, 31), site(1, true, 100)];
    assert_eq!(by_preference(&back_long, Some(1), grace), Some(0));
    let none = [site(0, false, 0), site(1, false, 0)];
    assert_eq!(by_preference(&none, Some(1), grace), None);
}

#[test]
fn active_active_start_up_waits_for_preferred_sites_first_verdict() {
    let grace = Duration::from_secs(30);
    let unprobed = SiteFacts {
        pending: true,
        ..site(0, false, 0)
    };
    // The standby answered first: wait for the preferred site's first probe.
    assert_eq!(
        by_preference(&[unprobed, site(1, true, 1)], None, grace),
        None
    );
    // Its verdict is in and it is down: the standby takes traffic.
    assert_eq!(
        by_preference(&[site(0, false, 0), site(1, true, 1)], None, grace),
        Some(1)
    );
    // A less preferred site still waiting for its probe does not hold the preferred one up.
    let late = SiteFacts {
        pending: true,
        ..site(1, false, 0)
    };
    assert_eq!(
        by_preference(&[site(0, true, 1), late], None, grace),
        Some(0)
    );
}
