//! Store conformance cases for API keys (part of [`crate::conformance`]).

use chrono::{DateTime, TimeZone, Utc};
use stacyvm_core::{ApiKey, KeyScope, OwnerId, SandboxId};

use crate::{Store, StoreError};

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, nanos)
        .single()
        .expect("valid timestamp")
}

fn fresh(tag: &str) -> String {
    format!("{tag}{}", &SandboxId::generate().as_str()[3..])
}

/// A key with fresh id, hash and owner.
fn key(scope: KeyScope) -> ApiKey {
    let id = fresh("key_");
    ApiKey {
        prefix: format!("svm_{id}"),
        hash: fresh("h"),
        owner: OwnerId::parse(&fresh("owner-"))
            .expect("valid owner")
            .expect("non-empty owner"),
        scope,
        name: Some("ci runner ✓ 'quoted'".to_string()),
        created_at: at(10, 123_456_789),
        expires_at: Some(at(3600, 987_654_321)),
        revoked_at: None,
        last_used_at: None,
        id,
    }
}

pub(crate) async fn run_all(s: &dyn Store) {
    key_round_trip(s).await;
    key_conflicts(s).await;
    key_listing(s).await;
    key_revocation(s).await;
    key_last_use(s).await;
}

async fn key_round_trip(s: &dyn Store) {
    let k = key(KeyScope::User);
    s.create_api_key(&k).await.expect("create key");
    assert_eq!(s.get_api_key(&k.id).await.expect("get key"), k);
    assert_eq!(
        s.find_api_key(&k.hash).await.expect("find key"),
        Some(k.clone())
    );
    assert_eq!(
        s.find_api_key(&fresh("h")).await.expect("find unknown"),
        None
    );
    let minimal = ApiKey {
        name: None,
        expires_at: None,
        ..key(KeyScope::Read)
    };
    s.create_api_key(&minimal)
        .await
        .expect("create minimal key");
    assert_eq!(s.get_api_key(&minimal.id).await.expect("get"), minimal);
    assert!(matches!(
        s.get_api_key(&fresh("key_")).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn key_conflicts(s: &dyn Store) {
    let k = key(KeyScope::Admin);
    s.create_api_key(&k).await.expect("create key");
    let same_id = ApiKey {
        hash: fresh("h"),
        ..k.clone()
    };
    assert!(matches!(
        s.create_api_key(&same_id).await,
        Err(StoreError::Conflict(_))
    ));
    let same_hash = ApiKey {
        id: fresh("key_"),
        ..k.clone()
    };
    assert!(matches!(
        s.create_api_key(&same_hash).await,
        Err(StoreError::Conflict(_))
    ));
}

async fn key_listing(s: &dyn Store) {
    let a = key(KeyScope::User);
    let b = ApiKey {
        id: fresh("key_"),
        hash: fresh("h"),
        created_at: at(5, 0),
        ..a.clone()
    };
    let other = key(KeyScope::User);
    for k in [&a, &b, &other] {
        s.create_api_key(k).await.expect("create key");
    }
    let mine = s
        .list_api_keys(Some(&a.owner))
        .await
        .expect("list by owner");
    assert_eq!(
        mine,
        vec![b.clone(), a.clone()],
        "oldest first, only a's owner"
    );
    let all = s.list_api_keys(None).await.expect("list all");
    for k in [&a, &b, &other] {
        assert!(all.contains(k), "every key listed without an owner filter");
    }
}

async fn key_revocation(s: &dyn Store) {
    let k = key(KeyScope::User);
    s.create_api_key(&k).await.expect("create key");
    assert!(k.is_valid_at(at(20, 0)));
    let revoked = s.revoke_api_key(&k.id, at(30, 5)).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(at(30, 5)));
    assert!(!revoked.is_valid_at(at(31, 0)));
    let again = s
        .revoke_api_key(&k.id, at(40, 0))
        .await
        .expect("revoke again");
    assert_eq!(
        again.revoked_at,
        Some(at(30, 5)),
        "the first revocation stands"
    );
    assert_eq!(
        s.find_api_key(&k.hash)
            .await
            .expect("find")
            .map(|k| k.revoked_at),
        Some(Some(at(30, 5)))
    );
    assert!(matches!(
        s.revoke_api_key(&fresh("key_"), at(1, 0)).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        !k.is_valid_at(at(3600, 987_654_321)),
        "expired at expires_at"
    );
}

async fn key_last_use(s: &dyn Store) {
    let (a, b) = (key(KeyScope::User), key(KeyScope::Read));
    s.create_api_key(&a).await.expect("create a");
    s.create_api_key(&b).await.expect("create b");
    s.record_api_key_use(&[]).await.expect("empty batch");
    s.record_api_key_use(&[
        (a.id.clone(), at(100, 7)),
        (b.id.clone(), at(50, 0)),
        (fresh("key_"), at(60, 0)),
    ])
    .await
    .expect("record uses");
    s.record_api_key_use(&[(a.id.clone(), at(90, 0))])
        .await
        .expect("older use");
    assert_eq!(
        s.get_api_key(&a.id).await.expect("get a").last_used_at,
        Some(at(100, 7)),
        "an older use never lowers last_used_at"
    );
    assert_eq!(
        s.get_api_key(&b.id).await.expect("get b").last_used_at,
        Some(at(50, 0))
    );
}
