//! The conformance suite of [`ClusterStore`]: node registry, leases,
//! placement inside the admission transaction and lost-node claims. It runs
//! on every store whose `cluster()` is `Some` (PostgreSQL), on a database
//! with no node registered yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stacyvm_core::{NodeProvider, NodeRegistration, NodeState, Sandbox, SandboxState};

use crate::conformance::minimal_sandbox;
use crate::{
    Admission, AdmissionLimits, Placement, PlacementPolicy, ScopeLimits, Store, StoreError,
    Unplaced, UsageScope,
};

const LEASE: Duration = Duration::from_secs(60);

fn node(id: &str, labels: &[(&str, &str)], mock_healthy: bool, max: u64) -> NodeRegistration {
    NodeRegistration {
        id: id.to_string(),
        advertise_url: format!("http://{id}.test:7423"),
        version: "0.0.0-test".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        providers: vec![NodeProvider {
            name: "mock".into(),
            healthy: mock_healthy,
        }],
        max_sandboxes: max,
        memory_mb: 0,
    }
}

fn placement(policy: PlacementPolicy, selector: &[(&str, &str)]) -> Placement {
    Placement {
        policy,
        provider: "mock".into(),
        selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn place(store: &dyn Store, p: &Placement) -> Admission {
    store
        .admit_sandbox(&minimal_sandbox(), &AdmissionLimits::default(), Some(p))
        .await
        .expect("admit")
}

fn placed_on(a: &Admission) -> String {
    match a {
        Admission::Admitted(sb) => sb.node_id.clone().expect("placed sandboxes have a node"),
        other => panic!("expected an admission, got {other:?}"),
    }
}

/// Every case, in order.
pub async fn run_all(store: Arc<dyn Store>) {
    registry(&*store).await;
    placement_policies(&*store).await;
    lost_nodes_are_claimed_once(store.clone()).await;
    concurrent_placements_hold_the_cluster_limit(store).await;
}

async fn registry(store: &dyn Store) {
    let c = store.cluster().expect("a cluster store");
    let a = c
        .register_node(&node("a", &[("zone", "a")], true, 2), LEASE)
        .await
        .unwrap();
    assert_eq!((a.state, a.sandboxes), (NodeState::Ready, 0));
    assert!(a.lease_expires_at > a.last_heartbeat);
    c.register_node(&node("b", &[("zone", "b")], true, 0), LEASE)
        .await
        .unwrap();
    c.register_node(&node("c", &[("zone", "a")], false, 0), LEASE)
        .await
        .unwrap();
    let ids: Vec<String> = c
        .list_nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let beat = c
        .heartbeat(&node("a", &[("zone", "a")], true, 2), LEASE)
        .await
        .unwrap();
    assert!(beat.last_heartbeat >= a.last_heartbeat);
    assert!(matches!(
        c.heartbeat(&node("nobody", &[], true, 0), LEASE).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        c.get_node("nobody").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn placement_policies(store: &dyn Store) {
    let c = store.cluster().unwrap();
    let spread = placement(PlacementPolicy::Spread, &[]);
    // c reports mock unhealthy: spread alternates a and b, lowest id first.
    let mut on = Vec::new();
    for _ in 0..4 {
        on.push(placed_on(&place(store, &spread).await));
    }
    assert_eq!(on, ["a", "b", "a", "b"]);
    assert_eq!(c.get_node("a").await.unwrap().sandboxes, 2);
    // a is full (max 2): everything goes to b.
    assert_eq!(placed_on(&place(store, &spread).await), "b");
    // The selector: zone a is a (full) and c (unhealthy).
    assert_eq!(
        place(store, &placement(PlacementPolicy::Spread, &[("zone", "a")])).await,
        Admission::Unplaced(Unplaced::Full)
    );
    assert_eq!(
        place(store, &placement(PlacementPolicy::Spread, &[("zone", "z")])).await,
        Admission::Unplaced(Unplaced::NoNode)
    );
    let mut docker = spread.clone();
    docker.provider = "docker".into();
    assert_eq!(
        place(store, &docker).await,
        Admission::Unplaced(Unplaced::NoNode)
    );
    // Pack: the fullest node with room, so b again.
    assert_eq!(
        placed_on(&place(store, &placement(PlacementPolicy::Pack, &[])).await),
        "b"
    );
    // A draining node takes nothing new.
    let drained = c
        .set_node_state("b", &[NodeState::Ready], NodeState::Draining)
        .await
        .unwrap()
        .expect("b was ready");
    assert_eq!(drained.state, NodeState::Draining);
    assert_eq!(
        c.set_node_state("b", &[NodeState::Ready], NodeState::Draining)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        place(store, &spread).await,
        Admission::Unplaced(Unplaced::Full)
    );
    // Registering again (a restart) makes it ready.
    c.register_node(&node("b", &[("zone", "b")], true, 0), LEASE)
        .await
        .unwrap();
    assert_eq!(placed_on(&place(store, &spread).await), "b");
}

async fn lost_nodes_are_claimed_once(store: Arc<dyn Store>) {
    let c = store.cluster().unwrap();
    // A lease of zero has lapsed at once.
    c.register_node(&node("d", &[], true, 0), Duration::ZERO)
        .await
        .unwrap();
    let mut kept = Vec::new();
    for _ in 0..3 {
        let sb = Sandbox {
            state: SandboxState::Running,
            node_id: Some("d".into()),
            ..minimal_sandbox()
        };
        store.insert_sandbox(&sb).await.unwrap();
        kept.push(sb.id);
    }
    assert_eq!(
        store
            .usage(&UsageScope::Node("d".into()))
            .await
            .unwrap()
            .sandboxes,
        3
    );
    // Nothing is placed on a node whose lease lapsed.
    let any = placement(PlacementPolicy::Spread, &[]);
    for _ in 0..3 {
        assert_ne!(placed_on(&place(&*store, &any).await), "d");
    }
    let mut sweeps = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        sweeps.spawn(async move {
            store
                .cluster()
                .unwrap()
                .claim_lost_nodes("node_lost")
                .await
                .unwrap()
        });
    }
    let mut claims = Vec::new();
    while let Some(r) = sweeps.join_next().await {
        claims.extend(r.unwrap());
    }
    assert_eq!(claims.len(), 1, "exactly one sweeper claims d: {claims:?}");
    assert_eq!(claims[0].node.id, "d");
    assert_eq!(claims[0].node.state, NodeState::Lost);
    assert_eq!(claims[0].sandboxes.len(), 3);
    for id in &kept {
        let sb = store.get_sandbox(id).await.unwrap();
        assert_eq!(
            (sb.state, sb.error.as_deref()),
            (SandboxState::Error, Some("node_lost"))
        );
    }
    assert_eq!(
        store
            .usage(&UsageScope::Node("d".into()))
            .await
            .unwrap()
            .sandboxes,
        0
    );
    assert_eq!(c.get_node("d").await.unwrap().state, NodeState::Lost);
    // A heartbeat renews the lease but leaves the state: d learns it was lost.
    let back = c.heartbeat(&node("d", &[], true, 0), LEASE).await.unwrap();
    assert_eq!(back.state, NodeState::Lost);
    assert!(c.claim_lost_nodes("node_lost").await.unwrap().is_empty());
}

async fn concurrent_placements_hold_the_cluster_limit(store: Arc<dyn Store>) {
    let c = store.cluster().unwrap();
    for id in ["e", "f", "g"] {
        c.register_node(&node(id, &[("pool", "big")], true, 0), LEASE)
            .await
            .unwrap();
    }
    let before = store.usage(&UsageScope::All).await.unwrap().sandboxes;
    let limits = AdmissionLimits {
        all: ScopeLimits {
            max_sandboxes: before + 20,
            ..ScopeLimits::default()
        },
        ..AdmissionLimits::default()
    };
    let p = placement(PlacementPolicy::Spread, &[("pool", "big")]);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (store, limits, p) = (store.clone(), limits.clone(), p.clone());
        tasks.spawn(async move {
            store
                .admit_sandbox(&minimal_sandbox(), &limits, Some(&p))
                .await
                .unwrap()
        });
    }
    let mut on: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Admission::Admitted(sb) => *on.entry(sb.node_id.unwrap()).or_default() += 1,
            Admission::Refused(_) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((on.values().sum::<usize>(), refused), (20, 30), "{on:?}");
    // Spread: 20 over 3 empty nodes is 7, 7, 6.
    let mut counts: Vec<usize> = on.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [6, 7, 7], "{on:?}");
}
