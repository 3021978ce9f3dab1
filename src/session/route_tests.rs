//! Routing across a topology swap and a lapsed lease.
use super::*;
use crate::auth::User;
use crate::backend::{BackendAuth, Endpoint, Lease};
use crate::topology::fixtures::master as verified_master;
use crate::topology::TopologyHandle;

fn verified(epoch: u64, port: u16, lease: impl Fn(Arc<NodeId>) -> Arc<Lease>) -> Topology {
    let node = Arc::new(NodeId {
        endpoint: Endpoint::plain(([127, 0, 0, 1], port).into(), "n".into()),
        run_id: format!("run{port}").into(),
    });
    Topology {
        epoch,
        state: RouteState::Verified,
        master: Some(verified_master(Arc::clone(&node), lease(node))),
        ..Topology::initial()
    }
}

fn client() -> ClientState {
    let user = User::open("default", Arc::new(BackendAuth::default()));
    ClientState::new(Some(Arc::new(user)))
}

/// The topology is swapped between loading a snapshot and remembering the lane: the epoch
/// remembered is the routed snapshot's, so the next command sees the lane is stale.
#[test]
fn epoch_comes_from_the_snapshot_routed_on() {
    let handle = TopologyHandle::new();
    handle.publish(verified(5, 7001, Lease::unbounded));
    let routed_on = handle.load();
    handle.publish(verified(6, 7002, Lease::unbounded));
    let target = target_in(&routed_on, &client()).expect("routable");
    assert_eq!(target.epoch, 5);
    assert_eq!(target.key.node.endpoint.addr.port(), 7001);
    assert_ne!(
        target.epoch,
        handle.epoch(),
        "the lane must be seen as stale"
    );
    let now = target_in(&handle.load(), &client()).expect("routable");
    assert_eq!((now.epoch, now.key.node.endpoint.addr.port()), (6, 7002));
}

/// A verified master whose lease lapsed is held, not routed, even before the failover
/// task publishes the lapse.
#[test]
fn lapsed_lease_holds() {
    let lapsed = verified(3, 7001, |n| Lease::new(n, 1));
    match target_in(&lapsed, &client()) {
        Err(Unroutable::Hold(why)) => assert!(why.is_lease_lapse(), "{why}"),
        other => panic!("expected a hold, got {other:?}"),
    }
    let held = verified(3, 7001, |n| {
        let l = Lease::new(n, 1);
        l.renew_until(std::time::Instant::now() + std::time::Duration::from_secs(60));
        l
    });
    assert!(target_in(&held, &client()).is_ok());
}
