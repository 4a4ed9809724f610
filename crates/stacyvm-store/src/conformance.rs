//! The store conformance suite, written once and run against every [`Store`]
//! implementation (SQLite in memory and on disk, Postgres).
//!
//! Each case panics on the first violated expectation. Cases use fresh
//! random ids and names and judge listings only by the records they wrote
//! themselves, so they may share one database, run in any order, and run
//! against a database that already holds data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use stacyvm_core::{GoDuration, OwnerId, Sandbox, SandboxId, SandboxState, Template};

use crate::{
    Admission, AdmissionLimits, LimitedResource, RefusedScope, SandboxCount, SandboxFilter,
    ScopeLimits, Store, StoreError, Usage, UsageScope,
};

/// Runs every case against `store`.
pub async fn run_all(store: Arc<dyn Store>) {
    let s = &*store;
    sandbox_round_trip(s).await;
    sandbox_insert_conflict(s).await;
    sandbox_update(s).await;
    sandbox_not_found(s).await;
    sandbox_list_filters(s).await;
    sandbox_count(s).await;
    sandbox_list_order(s).await;
    sandbox_delete(s).await;
    template_round_trip(s).await;
    template_conflict(s).await;
    template_update(s).await;
    template_not_found(s).await;
    template_list_order(s).await;
    template_delete(s).await;
    ping(s).await;
    concurrent_inserts(store.clone(), 32).await;
    usage_follows_every_write(s).await;
    admission_limits(s).await;
    admission_is_exact_under_concurrency(store.clone(), 50, 20).await;
    transitions_are_conditional(s).await;
    expiry_is_claimed_once(store.clone()).await;
    node_filter(s).await;
    crate::conformance_keys::run_all(s).await;
}

/// A timestamp with every nanosecond digit set, so truncation shows.
fn at(secs_after_base: i64, nanos: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs_after_base, nanos)
        .single()
        .expect("valid timestamp")
}

fn owner(raw: &str) -> OwnerId {
    OwnerId::parse(raw)
        .expect("valid owner")
        .expect("non-empty owner")
}

/// A short random suffix that keeps names unique across runs.
fn unique(prefix: &str) -> String {
    let id = SandboxId::generate();
    format!("{prefix}-{}", &id.as_str()[3..])
}

/// A sandbox with every optional field empty.
pub fn minimal_sandbox() -> Sandbox {
    Sandbox {
        id: SandboxId::generate(),
        state: SandboxState::Creating,
        provider: "mock".to_string(),
        image: "alpine:latest".to_string(),
        memory_mb: 512,
        vcpus: 1,
        owner_id: None,
        created_at: at(0, 0),
        expires_at: at(1800, 0),
        metadata: BTreeMap::new(),
        preview_domain: None,
        template: None,
        error: None,
        node_id: None,
    }
}

/// A sandbox with every field set to a value that is easy to mangle.
pub fn full_sandbox() -> Sandbox {
    let metadata = BTreeMap::from([
        ("user".to_string(), "alice".to_string()),
        (
            "quote".to_string(),
            "it's \"quoted\"; DROP TABLE x; --".to_string(),
        ),
        ("unicode".to_string(), "héllo wörld ✓ 🚀".to_string()),
        ("empty".to_string(), String::new()),
        ("newline".to_string(), "a\nb\tc\\d".to_string()),
    ]);
    Sandbox {
        id: SandboxId::generate(),
        state: SandboxState::Running,
        provider: "native".to_string(),
        image: "registry.example:5000/team/img@sha256:0123abcd".to_string(),
        memory_mb: u32::MAX,
        vcpus: 64,
        owner_id: Some(owner("alice@example.com")),
        created_at: at(12, 123_456_789),
        expires_at: at(3612, 987_654_321),
        metadata,
        preview_domain: Some("preview.example.com".to_string()),
        template: Some("python-3.12".to_string()),
        error: Some("provider said: 'no space left on device'\nretry later".to_string()),
        node_id: Some("node-a.example".to_string()),
    }
}

/// A template with every field set.
pub fn full_template() -> Template {
    Template {
        name: unique("conf-full"),
        image: "python:3.12-slim".to_string(),
        provider: "docker".to_string(),
        memory_mb: 2048,
        vcpus: 2,
        ttl: Some(GoDuration(Duration::from_nanos(5_400_123_456_789))),
        metadata: BTreeMap::from([("team".to_string(), "ml ✓".to_string())]),
        created_at: at(5, 1),
        updated_at: at(6, 999_999_999),
    }
}

/// A template with every optional field empty.
pub fn minimal_template() -> Template {
    Template {
        name: unique("conf-min"),
        image: String::new(),
        provider: String::new(),
        memory_mb: 0,
        vcpus: 0,
        ttl: None,
        metadata: BTreeMap::new(),
        created_at: at(0, 0),
        updated_at: at(0, 0),
    }
}

fn assert_not_found(result: Result<impl std::fmt::Debug, StoreError>, name: &str) {
    match result {
        Err(StoreError::NotFound(msg)) => {
            assert!(
                msg.contains(name),
                "not-found message {msg:?} must name {name}"
            )
        }
        other => panic!("expected NotFound for {name}, got {other:?}"),
    }
}

fn assert_conflict(result: Result<(), StoreError>, name: &str) {
    match result {
        Err(StoreError::Conflict(msg)) => {
            assert!(
                msg.contains(name),
                "conflict message {msg:?} must name {name}"
            )
        }
        other => panic!("expected Conflict for {name}, got {other:?}"),
    }
}

/// Every field, including nanoseconds and awkward strings, comes back as
/// written.
pub async fn sandbox_round_trip(store: &dyn Store) {
    for sandbox in [full_sandbox(), minimal_sandbox()] {
        store.insert_sandbox(&sandbox).await.expect("insert");
        let got = store.get_sandbox(&sandbox.id).await.expect("get");
        assert_eq!(got, sandbox, "sandbox must round-trip exactly");
    }
    for state in SandboxState::ALL {
        let sandbox = Sandbox {
            state,
            ..minimal_sandbox()
        };
        store.insert_sandbox(&sandbox).await.expect("insert");
        let got = store.get_sandbox(&sandbox.id).await.expect("get");
        assert_eq!(got.state, state, "state {state} must round-trip");
    }
}

/// Inserting an existing id is a conflict and leaves the record untouched.
pub async fn sandbox_insert_conflict(store: &dyn Store) {
    let original = full_sandbox();
    store.insert_sandbox(&original).await.expect("insert");
    let again = Sandbox {
        image: "other".to_string(),
        ..original.clone()
    };
    assert_conflict(store.insert_sandbox(&again).await, original.id.as_str());
    let got = store.get_sandbox(&original.id).await.expect("get");
    assert_eq!(
        got, original,
        "a rejected insert must not change the record"
    );
}

/// An update replaces every field; updating an unknown id is `NotFound`.
pub async fn sandbox_update(store: &dyn Store) {
    let before = minimal_sandbox();
    store.insert_sandbox(&before).await.expect("insert");
    let mut after = full_sandbox();
    after.id = before.id.clone();
    store.update_sandbox(&after).await.expect("update");
    assert_eq!(store.get_sandbox(&before.id).await.expect("get"), after);

    // And back: optional fields can be cleared again.
    store.update_sandbox(&before).await.expect("update back");
    assert_eq!(store.get_sandbox(&before.id).await.expect("get"), before);

    let ghost = minimal_sandbox();
    assert_not_found(store.update_sandbox(&ghost).await, ghost.id.as_str());
    assert_not_found(store.get_sandbox(&ghost.id).await, ghost.id.as_str());
}

/// Reading an unknown id is `NotFound`, naming the id.
pub async fn sandbox_not_found(store: &dyn Store) {
    let id = SandboxId::generate();
    assert_not_found(store.get_sandbox(&id).await, id.as_str());
    assert_not_found(store.delete_sandbox(&id).await, id.as_str());
}

/// Ids of `wanted` that appear in `listed`, in listing order.
fn ours(listed: &[Sandbox], wanted: &[&Sandbox]) -> Vec<SandboxId> {
    listed
        .iter()
        .filter(|s| wanted.iter().any(|w| w.id == s.id))
        .map(|s| s.id.clone())
        .collect()
}

fn ids(sandboxes: &[&Sandbox]) -> Vec<SandboxId> {
    sandboxes.iter().map(|s| s.id.clone()).collect()
}

/// Each filter returns exactly the matching records; destroyed sandboxes are
/// hidden unless asked for (by `include_destroyed` or by `state`).
pub async fn sandbox_list_filters(store: &dyn Store) {
    let alice = owner(&unique("alice"));
    let bob = owner(&unique("bob"));
    let provider_a = unique("prov-a");
    let provider_b = unique("prov-b");
    let make = |n: i64, state, owner: Option<&OwnerId>, provider: &str| Sandbox {
        state,
        owner_id: owner.cloned(),
        provider: provider.to_string(),
        created_at: at(100 + n, 0),
        ..minimal_sandbox()
    };
    let s1 = make(1, SandboxState::Running, Some(&alice), &provider_a);
    let s2 = make(2, SandboxState::Destroyed, Some(&alice), &provider_a);
    let s3 = make(3, SandboxState::Running, Some(&bob), &provider_b);
    let s4 = make(4, SandboxState::Error, None, &provider_b);
    let s5 = make(5, SandboxState::Expired, Some(&alice), &provider_b);
    let all = [&s1, &s2, &s3, &s4, &s5];
    for s in all {
        store.insert_sandbox(s).await.expect("insert");
    }

    let cases: Vec<(SandboxFilter, Vec<&Sandbox>)> = vec![
        (SandboxFilter::default(), vec![&s1, &s3, &s4, &s5]),
        (
            SandboxFilter {
                include_destroyed: true,
                ..Default::default()
            },
            vec![&s1, &s2, &s3, &s4, &s5],
        ),
        (
            SandboxFilter {
                owner: Some(alice.clone()),
                ..Default::default()
            },
            vec![&s1, &s5],
        ),
        (
            SandboxFilter {
                owner: Some(alice.clone()),
                include_destroyed: true,
                ..Default::default()
            },
            vec![&s1, &s2, &s5],
        ),
        (
            SandboxFilter {
                state: Some(SandboxState::Running),
                ..Default::default()
            },
            vec![&s1, &s3],
        ),
        (
            SandboxFilter {
                state: Some(SandboxState::Destroyed),
                ..Default::default()
            },
            vec![&s2],
        ),
        (
            SandboxFilter {
                provider: Some(provider_b.clone()),
                ..Default::default()
            },
            vec![&s3, &s4, &s5],
        ),
        (
            SandboxFilter {
                provider: Some(provider_b.clone()),
                owner: Some(alice.clone()),
                state: Some(SandboxState::Expired),
                include_destroyed: false,
                node_id: None,
            },
            vec![&s5],
        ),
        (
            SandboxFilter {
                provider: Some(provider_a.clone()),
                owner: Some(bob.clone()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let listed = store.list_sandboxes(&filter).await.expect("list");
        assert_eq!(ours(&listed, &all), ids(&want), "filter {filter:?}");
        for s in &listed {
            let state_ok = match filter.state {
                Some(state) => s.state == state,
                None => filter.include_destroyed || s.state != SandboxState::Destroyed,
            };
            assert!(
                state_ok,
                "filter {filter:?} returned {} in state {}",
                s.id, s.state
            );
            if let Some(o) = &filter.owner {
                assert_eq!(s.owner_id.as_ref(), Some(o), "filter {filter:?}");
            }
            if let Some(p) = &filter.provider {
                assert_eq!(&s.provider, p, "filter {filter:?}");
            }
        }
    }
}

/// Counts group by (state, provider) in that order, honour the filter,
/// never count destroyed sandboxes and agree with a tally of the listing.
pub async fn sandbox_count(store: &dyn Store) {
    let alice = owner(&unique("alice"));
    let provider_a = unique("count-a");
    let provider_b = unique("count-b");
    let make = |state, owner: Option<&OwnerId>, provider: &str| Sandbox {
        state,
        owner_id: owner.cloned(),
        provider: provider.to_string(),
        ..minimal_sandbox()
    };
    let all = [
        make(SandboxState::Running, Some(&alice), &provider_a),
        make(SandboxState::Running, None, &provider_a),
        make(SandboxState::Destroyed, Some(&alice), &provider_a),
        make(SandboxState::Error, Some(&alice), &provider_b),
        make(SandboxState::Creating, None, &provider_b),
    ];
    for s in &all {
        store.insert_sandbox(s).await.expect("insert");
    }
    let count = |filter: SandboxFilter| async move {
        let got = store.count_sandboxes(&filter).await.expect("count");
        let listed = store.list_sandboxes(&filter).await.expect("list");
        assert_eq!(got, SandboxCount::tally(&listed), "filter {filter:?}");
        got.into_iter()
            .map(|c| (c.state, c.provider, c.count))
            .collect::<Vec<_>>()
    };
    let a = |state| (state, provider_a.clone(), 0);
    let b = |state| (state, provider_b.clone(), 0);
    let with = |(s, p, _): (SandboxState, String, u64), n| (s, p, n);
    assert_eq!(
        count(SandboxFilter {
            provider: Some(provider_a.clone()),
            ..Default::default()
        })
        .await,
        vec![with(a(SandboxState::Running), 2)]
    );
    assert_eq!(
        count(SandboxFilter {
            provider: Some(provider_b.clone()),
            ..Default::default()
        })
        .await,
        vec![
            with(b(SandboxState::Creating), 1),
            with(b(SandboxState::Error), 1)
        ]
    );
    assert_eq!(
        count(SandboxFilter {
            owner: Some(alice.clone()),
            include_destroyed: true,
            ..Default::default()
        })
        .await
        .len(),
        2,
        "destroyed sandboxes are never counted"
    );
    let got = store
        .count_sandboxes(&SandboxFilter {
            provider: Some(provider_a.clone()),
            state: Some(SandboxState::Destroyed),
            ..Default::default()
        })
        .await
        .expect("count");
    assert!(got.is_empty(), "{got:?}");
}

/// Listings are ordered by creation time, then id, whatever the insertion
/// order; records come back complete.
pub async fn sandbox_list_order(store: &dyn Store) {
    let provider = unique("order");
    let make = |secs: i64, nanos: u32| Sandbox {
        provider: provider.clone(),
        created_at: at(-1000 + secs, nanos),
        ..full_sandbox()
    };
    let late = make(10, 0);
    let early = make(1, 999_999_999);
    // Same second, one nanosecond apart: precision must not be lost.
    let mid_a = make(5, 1);
    let mid_b = make(5, 2);
    let mut tie_1 = make(7, 0);
    let mut tie_2 = make(7, 0);
    if tie_2.id < tie_1.id {
        std::mem::swap(&mut tie_1, &mut tie_2);
    }
    for s in [&late, &tie_2, &mid_b, &early, &tie_1, &mid_a] {
        store.insert_sandbox(s).await.expect("insert");
    }
    let want = [&early, &mid_a, &mid_b, &tie_1, &tie_2, &late];
    let filter = SandboxFilter {
        provider: Some(provider.clone()),
        ..Default::default()
    };
    let listed = store.list_sandboxes(&filter).await.expect("list");
    let want_full: Vec<Sandbox> = want.iter().map(|s| (*s).clone()).collect();
    assert_eq!(listed, want_full, "ordered by created_at then id");

    let everything = store
        .list_sandboxes(&SandboxFilter {
            include_destroyed: true,
            ..Default::default()
        })
        .await
        .expect("list");
    for pair in everything.windows(2) {
        let key = |s: &Sandbox| (s.created_at, s.id.clone());
        assert!(key(&pair[0]) <= key(&pair[1]), "listing out of order");
    }
}

/// Deleting removes the record for good; deleting twice is `NotFound`.
pub async fn sandbox_delete(store: &dyn Store) {
    let keep = minimal_sandbox();
    let gone = minimal_sandbox();
    store.insert_sandbox(&keep).await.expect("insert");
    store.insert_sandbox(&gone).await.expect("insert");
    store.delete_sandbox(&gone.id).await.expect("delete");
    assert_not_found(store.get_sandbox(&gone.id).await, gone.id.as_str());
    assert_not_found(store.delete_sandbox(&gone.id).await, gone.id.as_str());
    let all = store
        .list_sandboxes(&SandboxFilter {
            include_destroyed: true,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(
        all.iter().all(|s| s.id != gone.id),
        "deleted sandbox listed"
    );
    assert_eq!(store.get_sandbox(&keep.id).await.expect("get"), keep);
    // The id is free again.
    store.insert_sandbox(&gone).await.expect("re-insert");
}

/// Every template field comes back as written, including TTLs with odd
/// precision.
pub async fn template_round_trip(store: &dyn Store) {
    for template in [full_template(), minimal_template()] {
        store.create_template(&template).await.expect("create");
        let got = store.get_template(&template.name).await.expect("get");
        assert_eq!(got, template, "template must round-trip exactly");
    }
    for nanos in [0, 1, 1_500, 127_000_000, 90_000_000_000, 86_400_000_000_000] {
        let template = Template {
            ttl: Some(GoDuration(Duration::from_nanos(nanos))),
            ..minimal_template()
        };
        store.create_template(&template).await.expect("create");
        let got = store.get_template(&template.name).await.expect("get");
        assert_eq!(got.ttl, template.ttl, "ttl of {nanos}ns must round-trip");
    }
}

/// Creating an existing name is a conflict and leaves the record untouched.
pub async fn template_conflict(store: &dyn Store) {
    let original = full_template();
    store.create_template(&original).await.expect("create");
    let again = Template {
        image: "other".to_string(),
        ..original.clone()
    };
    assert_conflict(store.create_template(&again).await, &original.name);
    assert_eq!(
        store.get_template(&original.name).await.expect("get"),
        original
    );
}

/// An update replaces every field; updating an unknown name is `NotFound`.
pub async fn template_update(store: &dyn Store) {
    let before = minimal_template();
    store.create_template(&before).await.expect("create");
    let after = Template {
        name: before.name.clone(),
        ..full_template()
    };
    store.update_template(&after).await.expect("update");
    assert_eq!(store.get_template(&before.name).await.expect("get"), after);
    store.update_template(&before).await.expect("update back");
    assert_eq!(store.get_template(&before.name).await.expect("get"), before);

    let ghost = minimal_template();
    assert_not_found(store.update_template(&ghost).await, &ghost.name);
}

/// Reading or deleting an unknown name is `NotFound`, naming it.
pub async fn template_not_found(store: &dyn Store) {
    let name = unique("conf-ghost");
    assert_not_found(store.get_template(&name).await, &name);
    assert_not_found(store.delete_template(&name).await, &name);
}

/// Templates are listed by name.
pub async fn template_list_order(store: &dyn Store) {
    let stem = unique("conf-order");
    let names = [
        format!("{stem}-b"),
        format!("{stem}-a"),
        format!("{stem}-c"),
    ];
    let mut written = Vec::new();
    for name in &names {
        let t = Template {
            name: name.clone(),
            ..full_template()
        };
        store.create_template(&t).await.expect("create");
        written.push(t);
    }
    written.sort_by(|a, b| a.name.cmp(&b.name));
    let listed = store.list_templates().await.expect("list");
    let mine: Vec<Template> = listed
        .iter()
        .filter(|t| t.name.starts_with(&stem))
        .cloned()
        .collect();
    assert_eq!(mine, written, "templates listed by name, complete");
    for pair in listed.windows(2) {
        assert!(pair[0].name < pair[1].name, "templates out of order");
    }
}

/// Deleting removes the template; deleting twice is `NotFound`.
pub async fn template_delete(store: &dyn Store) {
    let t = full_template();
    store.create_template(&t).await.expect("create");
    store.delete_template(&t.name).await.expect("delete");
    assert_not_found(store.get_template(&t.name).await, &t.name);
    assert_not_found(store.delete_template(&t.name).await, &t.name);
    let listed = store.list_templates().await.expect("list");
    assert!(
        listed.iter().all(|x| x.name != t.name),
        "deleted template listed"
    );
    store.create_template(&t).await.expect("re-create");
}

/// The store answers a ping.
pub async fn ping(store: &dyn Store) {
    store.ping().await.expect("ping");
    assert!(!store.driver().is_empty(), "driver name");
}

/// `n` tasks insert at once; every record is stored exactly once.
pub async fn concurrent_inserts(store: Arc<dyn Store>, n: usize) {
    let provider = unique("concurrent");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        let sandbox = Sandbox {
            provider: provider.clone(),
            created_at: at(i as i64, 0),
            ..full_sandbox()
        };
        tasks.spawn(async move { store.insert_sandbox(&sandbox).await.map(|()| sandbox) });
    }
    let mut written = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        written.push(joined.expect("task").expect("concurrent insert"));
    }
    written.sort_by_key(|s| s.created_at);
    let listed = store
        .list_sandboxes(&SandboxFilter {
            provider: Some(provider),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed, written, "every concurrent insert is stored once");
}

fn usage(sandboxes: u64, memory_mb: u64, vcpus: u64) -> Usage {
    Usage {
        sandboxes,
        memory_mb,
        vcpus,
    }
}

/// `Usage(after) - Usage(before)`, per field (totals only grow in a case).
fn delta(after: Usage, before: Usage) -> Usage {
    usage(
        after.sandboxes - before.sandboxes,
        after.memory_mb - before.memory_mb,
        after.vcpus - before.vcpus,
    )
}

async fn usage_of(store: &dyn Store, scope: &UsageScope) -> Usage {
    store.usage(scope).await.expect("usage")
}

/// The per-scope totals count exactly the active sandboxes, through
/// inserts, admissions, updates, transitions, expiry and deletes.
pub async fn usage_follows_every_write(store: &dyn Store) {
    let alice = owner(&unique("usage-alice"));
    let bob = owner(&unique("usage-bob"));
    let node = unique("usage-node");
    let owner_scope = UsageScope::Owner(alice.clone());
    let node_scope = UsageScope::Node(node.clone());
    assert_eq!(usage_of(store, &owner_scope).await, Usage::default());
    let all_before = usage_of(store, &UsageScope::All).await;

    let a = Sandbox {
        owner_id: Some(alice.clone()),
        node_id: Some(node.clone()),
        memory_mb: 100,
        vcpus: 2,
        ..minimal_sandbox()
    };
    store.insert_sandbox(&a).await.expect("insert");
    let b = Sandbox {
        owner_id: Some(alice.clone()),
        memory_mb: 50,
        vcpus: 1,
        state: SandboxState::Running,
        ..minimal_sandbox()
    };
    match store
        .admit_sandbox(&b, &AdmissionLimits::default(), None)
        .await
        .expect("admit")
    {
        Admission::Admitted(got) => assert_eq!(got, b),
        other => panic!("expected admission, got {other:?}"),
    }
    // Not counted: an error record.
    let c = Sandbox {
        owner_id: Some(alice.clone()),
        state: SandboxState::Error,
        ..minimal_sandbox()
    };
    store.insert_sandbox(&c).await.expect("insert");
    assert_eq!(usage_of(store, &owner_scope).await, usage(2, 150, 3));
    assert_eq!(usage_of(store, &node_scope).await, usage(1, 100, 2));
    assert_eq!(
        delta(usage_of(store, &UsageScope::All).await, all_before),
        usage(2, 150, 3)
    );

    // creating → running keeps it counted; running → destroyed does not.
    store
        .transition(
            &a.id,
            &[SandboxState::Creating],
            SandboxState::Running,
            None,
        )
        .await
        .expect("transition")
        .expect("was creating");
    assert_eq!(usage_of(store, &owner_scope).await, usage(2, 150, 3));
    store
        .transition(
            &a.id,
            &[SandboxState::Running],
            SandboxState::Destroyed,
            None,
        )
        .await
        .expect("transition")
        .expect("was running");
    assert_eq!(usage_of(store, &owner_scope).await, usage(1, 50, 1));
    assert_eq!(usage_of(store, &node_scope).await, usage(0, 0, 0));

    // An update may move a sandbox between owners and change its size.
    let moved = Sandbox {
        owner_id: Some(bob.clone()),
        memory_mb: 70,
        ..b.clone()
    };
    store.update_sandbox(&moved).await.expect("update");
    assert_eq!(usage_of(store, &owner_scope).await, usage(0, 0, 0));
    assert_eq!(
        usage_of(store, &UsageScope::Owner(bob.clone())).await,
        usage(1, 70, 1)
    );
    // Back to counted through a plain update of the error record.
    let revived = Sandbox {
        state: SandboxState::Running,
        ..c.clone()
    };
    store.update_sandbox(&revived).await.expect("update");
    assert_eq!(usage_of(store, &owner_scope).await, usage(1, 512, 1));
    // Deleting a counted record releases it; deleting an uncounted one
    // changes nothing.
    store.delete_sandbox(&c.id).await.expect("delete");
    store.delete_sandbox(&a.id).await.expect("delete");
    store.delete_sandbox(&b.id).await.expect("delete");
    assert_eq!(usage_of(store, &owner_scope).await, Usage::default());
    assert_eq!(
        usage_of(store, &UsageScope::Owner(bob)).await,
        Usage::default()
    );
    assert_eq!(usage_of(store, &UsageScope::All).await, all_before);
}

/// Each limit refuses exactly at its boundary, names its scope, and a
/// refused admission writes nothing.
pub async fn admission_limits(store: &dyn Store) {
    let alice = owner(&unique("limits-alice"));
    let all = usage_of(store, &UsageScope::All).await;
    let mk = |memory_mb: u32, vcpus: u32| Sandbox {
        owner_id: Some(alice.clone()),
        memory_mb,
        vcpus,
        ..minimal_sandbox()
    };
    let per_owner = |max_sandboxes, max_memory_mb, max_vcpus| AdmissionLimits {
        all: ScopeLimits::default(),
        owner: ScopeLimits {
            max_sandboxes,
            max_memory_mb,
            max_vcpus,
        },
    };
    let admit = |s: Sandbox, l: AdmissionLimits| async move {
        store.admit_sandbox(&s, &l, None).await.expect("admit")
    };
    let first = mk(300, 2);
    assert!(matches!(
        admit(first.clone(), per_owner(2, 1000, 4)).await,
        Admission::Admitted(_)
    ));
    // Memory: 300 + 700 = 1000 fits exactly, 300 + 701 does not.
    let over_memory = mk(701, 1);
    match admit(over_memory.clone(), per_owner(2, 1000, 4)).await {
        Admission::Refused(r) => {
            assert_eq!(r.scope, RefusedScope::Owner(alice.clone()));
            assert_eq!(r.resource, LimitedResource::MemoryMb);
            assert_eq!((r.used, r.max), (300, 1000));
            assert!(r.to_string().contains(alice.as_str()), "{r}");
        }
        other => panic!("expected a memory refusal, got {other:?}"),
    }
    assert_not_found(
        store.get_sandbox(&over_memory.id).await,
        over_memory.id.as_str(),
    );
    match admit(mk(100, 3), per_owner(2, 1000, 4)).await {
        Admission::Refused(r) => assert_eq!(r.resource, LimitedResource::Vcpus),
        other => panic!("expected a vcpu refusal, got {other:?}"),
    }
    let second = mk(700, 2);
    assert!(matches!(
        admit(second.clone(), per_owner(2, 1000, 4)).await,
        Admission::Admitted(_)
    ));
    match admit(mk(1, 1), per_owner(2, 0, 0)).await {
        Admission::Refused(r) => {
            assert_eq!(r.resource, LimitedResource::Sandboxes);
            assert_eq!((r.used, r.max), (2, 2));
        }
        other => panic!("expected a count refusal, got {other:?}"),
    }
    // The cluster-wide scope is checked first.
    let everything = AdmissionLimits {
        all: ScopeLimits {
            max_sandboxes: all.sandboxes + 2,
            ..ScopeLimits::default()
        },
        owner: ScopeLimits::default(),
    };
    match admit(mk(1, 1), everything).await {
        Admission::Refused(r) => {
            assert_eq!(r.scope, RefusedScope::All);
            assert!(r.to_string().contains("sandbox limit reached"), "{r}");
        }
        other => panic!("expected a global refusal, got {other:?}"),
    }
    // A sandbox without an owner ignores the owner's limits.
    let ownerless = Sandbox {
        owner_id: None,
        ..mk(1, 1)
    };
    assert!(matches!(
        admit(ownerless.clone(), per_owner(1, 1, 1)).await,
        Admission::Admitted(_)
    ));
    // An admitted id that exists is a conflict, not a second record.
    assert_conflict(
        store
            .admit_sandbox(&first, &AdmissionLimits::default(), None)
            .await
            .map(|_| ()),
        first.id.as_str(),
    );
    for s in [&first, &second, &ownerless] {
        store.delete_sandbox(&s.id).await.expect("delete");
    }
    assert_eq!(usage_of(store, &UsageScope::All).await, all);
}

/// `n` concurrent admissions against room for `room` more admit exactly
/// `room`, globally and per owner.
pub async fn admission_is_exact_under_concurrency(store: Arc<dyn Store>, n: usize, room: u64) {
    for per_owner in [false, true] {
        let alice = owner(&unique("exact"));
        let provider = unique("exact");
        let before = usage_of(&*store, &UsageScope::All).await;
        let limits = if per_owner {
            AdmissionLimits {
                all: ScopeLimits::default(),
                owner: ScopeLimits {
                    max_sandboxes: room,
                    ..ScopeLimits::default()
                },
            }
        } else {
            AdmissionLimits {
                all: ScopeLimits {
                    max_sandboxes: before.sandboxes + room,
                    ..ScopeLimits::default()
                },
                owner: ScopeLimits::default(),
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (store, limits) = (store.clone(), limits.clone());
            let sandbox = Sandbox {
                owner_id: Some(alice.clone()),
                provider: provider.clone(),
                ..minimal_sandbox()
            };
            tasks.spawn(async move { store.admit_sandbox(&sandbox, &limits, None).await });
        }
        let (mut admitted, mut refused) = (0u64, 0u64);
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("task").expect("admit") {
                Admission::Admitted(_) => admitted += 1,
                Admission::Refused(_) => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            (admitted, refused),
            (room, n as u64 - room),
            "per owner: {per_owner}"
        );
        let listed = store
            .list_sandboxes(&SandboxFilter {
                provider: Some(provider),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(listed.len() as u64, room, "exactly the admitted are stored");
        for s in &listed {
            store.delete_sandbox(&s.id).await.expect("delete");
        }
        assert_eq!(usage_of(&*store, &UsageScope::All).await, before);
    }
}

/// `transition` and `set_expiry` apply only to a record in an expected
/// state and return it as stored; racing transitions have one winner.
pub async fn transitions_are_conditional(store: &dyn Store) {
    let s = minimal_sandbox();
    store.insert_sandbox(&s).await.expect("insert");
    let missed = store
        .transition(
            &s.id,
            &[SandboxState::Running],
            SandboxState::Destroyed,
            None,
        )
        .await
        .expect("transition");
    assert!(missed.is_none(), "a creating sandbox is not running");
    let running = store
        .transition(
            &s.id,
            &[SandboxState::Creating, SandboxState::Unhealthy],
            SandboxState::Running,
            Some("note"),
        )
        .await
        .expect("transition")
        .expect("was creating");
    assert_eq!(running.state, SandboxState::Running);
    assert_eq!(running.error.as_deref(), Some("note"));
    assert_eq!(store.get_sandbox(&s.id).await.expect("get"), running);
    let cleared = store
        .transition(&s.id, &[SandboxState::Running], SandboxState::Running, None)
        .await
        .expect("transition")
        .expect("running");
    assert_eq!(cleared.error, None, "error is replaced");

    let later = at(99_999, 123);
    let extended = store
        .set_expiry(&s.id, later, &[SandboxState::Running])
        .await
        .expect("set expiry")
        .expect("running");
    assert_eq!(extended.expires_at, later);
    assert!(
        store
            .set_expiry(&s.id, at(1, 0), &[SandboxState::Creating])
            .await
            .expect("set expiry")
            .is_none()
    );
    assert_eq!(
        store.get_sandbox(&s.id).await.expect("get").expires_at,
        later
    );
    let ghost = SandboxId::generate();
    assert!(
        store
            .transition(&ghost, &SandboxState::ALL, SandboxState::Destroyed, None)
            .await
            .expect("transition")
            .is_none()
    );
    assert!(
        store
            .transition(&s.id, &[], SandboxState::Destroyed, None)
            .await
            .expect("transition")
            .is_none(),
        "no state matches an empty list"
    );
    store.delete_sandbox(&s.id).await.expect("delete");
}

/// Due sandboxes are claimed exactly once even by concurrent callers;
/// `next_expiry` is the earliest claimable expiry; `node_id` narrows both.
pub async fn expiry_is_claimed_once(store: Arc<dyn Store>) {
    // Far in the past, so they sort before everything else in the database
    // but stay unique to this case by node.
    let node = unique("expiry-node");
    let other = unique("expiry-other");
    let base = Utc.timestamp_opt(1_000_000_000, 0).single().expect("time");
    let make = |secs: i64, state: SandboxState, node: &str| Sandbox {
        state,
        node_id: Some(node.to_string()),
        expires_at: base + chrono::Duration::seconds(secs),
        ..minimal_sandbox()
    };
    let due: Vec<Sandbox> = (0..12)
        .map(|i| make(i, SandboxState::Running, &node))
        .collect();
    let not_yet = make(1000, SandboxState::Running, &node);
    let destroying = make(-5, SandboxState::Destroying, &node);
    let uncounted = make(-10, SandboxState::Error, &node);
    let elsewhere = make(-20, SandboxState::Running, &other);
    for s in due
        .iter()
        .chain([&not_yet, &destroying, &uncounted, &elsewhere])
    {
        store.insert_sandbox(s).await.expect("insert");
    }
    assert_eq!(
        store.next_expiry(Some(&node)).await.expect("next"),
        Some(due[0].expires_at),
        "destroying and uncounted sandboxes do not expire again"
    );
    assert_eq!(
        store.next_expiry(Some(&other)).await.expect("next"),
        Some(elsewhere.expires_at)
    );

    let now = base + chrono::Duration::seconds(100);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, node) = (store.clone(), node.clone());
        tasks.spawn(async move { store.expire_due(now, Some(&node)).await });
    }
    let mut claimed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        claimed.extend(joined.expect("task").expect("expire"));
    }
    let mut got: Vec<SandboxId> = claimed.iter().map(|s| s.id.clone()).collect();
    got.sort();
    let mut want: Vec<SandboxId> = due.iter().map(|s| s.id.clone()).collect();
    want.sort();
    assert_eq!(got, want, "every due sandbox claimed exactly once");
    assert!(claimed.iter().all(|s| s.state == SandboxState::Destroying));
    assert_eq!(
        store.next_expiry(Some(&node)).await.expect("next"),
        Some(not_yet.expires_at)
    );
    assert_eq!(
        store.get_sandbox(&elsewhere.id).await.expect("get").state,
        SandboxState::Running,
        "another node's sandbox is left alone"
    );
    for s in due
        .iter()
        .chain([&not_yet, &destroying, &uncounted, &elsewhere])
    {
        store.delete_sandbox(&s.id).await.expect("delete");
    }
    assert_eq!(store.next_expiry(Some(&node)).await.expect("next"), None);
}

/// Listing by node returns exactly that node's sandboxes.
pub async fn node_filter(store: &dyn Store) {
    let node = unique("list-node");
    let here = Sandbox {
        node_id: Some(node.clone()),
        ..minimal_sandbox()
    };
    let there = Sandbox {
        node_id: Some(unique("list-other")),
        ..minimal_sandbox()
    };
    let nowhere = minimal_sandbox();
    for s in [&here, &there, &nowhere] {
        store.insert_sandbox(s).await.expect("insert");
    }
    let listed = store
        .list_sandboxes(&SandboxFilter {
            node_id: Some(node),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed, vec![here.clone()]);
    for s in [&here, &there, &nowhere] {
        store.delete_sandbox(&s.id).await.expect("delete");
    }
}
