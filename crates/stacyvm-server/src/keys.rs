//! API keys on the request path: minting (`svm_<id>_<secret>`, or
//! `e2b_<hex>` for the E2B SDK, which checks that shape), verifying a
//! presented key against the store, and remembering its last use.
//!
//! A key is never kept in clear: the store holds HMAC-SHA256 of the whole
//! key under a server pepper (`<data dir>/api-key-pepper`, created once,
//! mode 0600), so a copy of the database alone cannot be used to sign in.
//! Verified keys are cached for at most [`CACHE_TTL`], so a revocation made
//! by any server sharing the store takes effect within that time. Last use
//! is collected in memory and written in one batch at most every
//! [`USE_FLUSH`], not once per request.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use stacyvm_core::{ApiKey, KeyScope, OwnerId};
use stacyvm_store::{Store, StoreError};
use subtle::ConstantTimeEq;

/// How long a verified key is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_millis(500);
/// How often last-use times are written back.
pub const USE_FLUSH: Duration = Duration::from_secs(5);
/// Most cached keys; past it the cache is cleared (it refills on demand).
const CACHE_MAX: usize = 100_000;

type Digest = [u8; 32];

/// Who a request speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's owner; `None` for the configured operator keys.
    pub owner: Option<OwnerId>,
    pub scope: KeyScope,
    /// The stored key's id; `None` for the configured operator keys.
    pub key_id: Option<String>,
}

/// Which form a new key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyForm {
    /// `svm_<id>_<secret>`.
    #[default]
    Stacyvm,
    /// `e2b_<40 hex>`, the shape the E2B SDK accepts.
    E2b,
}

struct Cached {
    key: ApiKey,
    fetched: Instant,
}

/// Mints and verifies API keys; a cheap-clone handle.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    pepper: Vec<u8>,
    /// The pepper is this node's own while the store is shared: minting is
    /// refused, since no other node could verify the key.
    node_local: bool,
    cache: Mutex<HashMap<Digest, Cached>>,
    uses: Mutex<Uses>,
}

struct Uses {
    pending: HashMap<String, DateTime<Utc>>,
    flushed: Instant,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

/// Why a key could not be minted or verified.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading or creating the api key pepper: {0}")]
    Pepper(std::io::Error),
    #[error(
        "stored API keys need auth.key_pepper (the same on every node) when the \
         database is shared; without it a key would work only on the node that minted it"
    )]
    PepperNotShared,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex(&buf)
}

/// Reads the pepper at `path`, creating it (32 random bytes, mode 0600)
/// when missing.
pub fn load_pepper(path: &Path) -> Result<Vec<u8>, KeyError> {
    match std::fs::read(path) {
        Ok(p) if p.len() >= 32 => return Ok(p),
        Ok(_) => {
            return Err(KeyError::Pepper(std::io::Error::other(
                "the pepper file is shorter than 32 bytes",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(KeyError::Pepper(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(KeyError::Pepper)?;
    }
    let mut pepper = vec![0u8; 32];
    rand::rng().fill(&mut pepper[..]);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, &pepper).map_err(KeyError::Pepper)?;
            f.sync_all().map_err(KeyError::Pepper)?;
            Ok(pepper)
        }
        // Another server on the same data dir won the race: use its pepper.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(path).map_err(KeyError::Pepper)
        }
        Err(e) => Err(KeyError::Pepper(e)),
    }
}

impl Keyring {
    pub fn new(store: Arc<dyn Store>, pepper: Vec<u8>) -> Self {
        Self::build(store, pepper, false)
    }

    /// A keyring whose pepper is this node's only, on a store other nodes
    /// share: [`Keyring::create`] answers [`KeyError::PepperNotShared`].
    /// Keys already stored are still verified.
    pub fn node_local(store: Arc<dyn Store>, pepper: Vec<u8>) -> Self {
        Self::build(store, pepper, true)
    }

    fn build(store: Arc<dyn Store>, pepper: Vec<u8>, node_local: bool) -> Self {
        Keyring {
            inner: Arc::new(Inner {
                store,
                pepper,
                node_local,
                cache: Mutex::new(HashMap::new()),
                uses: Mutex::new(Uses {
                    pending: HashMap::new(),
                    flushed: Instant::now(),
                }),
            }),
        }
    }

    fn digest(&self, presented: &str) -> Digest {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.pepper)
            .unwrap_or_else(|_| unreachable!("hmac accepts any key length"));
        mac.update(presented.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Mints a key; the record as stored and the key itself, which is
    /// never available again.
    pub async fn create(
        &self,
        owner: OwnerId,
        scope: KeyScope,
        name: Option<String>,
        expires_at: Option<DateTime<Utc>>,
        form: KeyForm,
    ) -> Result<(ApiKey, String), KeyError> {
        if self.inner.node_local {
            return Err(KeyError::PepperNotShared);
        }
        let id = format!("key_{}", random_hex(8));
        let secret = match form {
            KeyForm::Stacyvm => format!("svm_{}_{}", &id[4..], random_hex(20)),
            KeyForm::E2b => format!("e2b_{}", random_hex(20)),
        };
        let prefix: String = secret.chars().take(12).collect();
        let key = ApiKey {
            id,
            prefix,
            hash: hex(&self.digest(&secret)),
            owner,
            scope,
            name,
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        self.inner.store.create_api_key(&key).await?;
        Ok((key, secret))
    }

    /// Revokes key `id`; every server refuses it within [`CACHE_TTL`].
    pub async fn revoke(&self, id: &str) -> Result<ApiKey, KeyError> {
        let key = self.inner.store.revoke_api_key(id, Utc::now()).await?;
        self.lock_cache().retain(|_, c| c.key.id != key.id);
        Ok(key)
    }

    pub async fn list(&self, owner: Option<&OwnerId>) -> Result<Vec<ApiKey>, KeyError> {
        Ok(self.inner.store.list_api_keys(owner).await?)
    }

    pub async fn get(&self, id: &str) -> Result<ApiKey, KeyError> {
        Ok(self.inner.store.get_api_key(id).await?)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Cached>> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The principal of a presented stored key; `None` when no valid key
    /// matches (unknown, revoked or expired).
    pub async fn verify(&self, presented: &str) -> Result<Option<Principal>, KeyError> {
        let digest = self.digest(presented);
        let cached = {
            let cache = self.lock_cache();
            cache
                .get(&digest)
                .filter(|c| c.fetched.elapsed() < CACHE_TTL)
                .map(|c| c.key.clone())
        };
        let key = match cached {
            Some(k) => k,
            None => {
                let found = self.inner.store.find_api_key(&hex(&digest)).await?;
                let Some(k) = found else {
                    return Ok(None);
                };
                let mut cache = self.lock_cache();
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(
                    digest,
                    Cached {
                        key: k.clone(),
                        fetched: Instant::now(),
                    },
                );
                k
            }
        };
        // The lookup matched on the digest; compare it again in constant
        // time so no stored-hash mismatch is ever judged byte by byte.
        let same: bool = hex(&digest).as_bytes().ct_eq(key.hash.as_bytes()).into();
        let now = Utc::now();
        if !same || !key.is_valid_at(now) {
            return Ok(None);
        }
        self.note_use(&key.id, now);
        Ok(Some(Principal {
            owner: Some(key.owner),
            scope: key.scope,
            key_id: Some(key.id),
        }))
    }

    fn note_use(&self, id: &str, at: DateTime<Utc>) {
        let batch = {
            let mut uses = self.inner.uses.lock().unwrap_or_else(|e| e.into_inner());
            uses.pending.insert(id.to_string(), at);
            if uses.flushed.elapsed() < USE_FLUSH {
                return;
            }
            uses.flushed = Instant::now();
            std::mem::take(&mut uses.pending)
        };
        self.write_uses(batch);
    }

    fn write_uses(&self, batch: HashMap<String, DateTime<Utc>>) {
        let store = self.inner.store.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let uses: Vec<(String, DateTime<Utc>)> = batch.into_iter().collect();
            if let Err(e) = store.record_api_key_use(&uses).await {
                tracing::warn!(error = %e, keys = uses.len(), "recording api key use failed");
            }
        });
    }

    /// Writes every pending last-use time now (shutdown, tests).
    pub async fn flush_uses(&self) -> Result<(), KeyError> {
        let batch = {
            let mut uses = self.inner.uses.lock().unwrap_or_else(|e| e.into_inner());
            uses.flushed = Instant::now();
            std::mem::take(&mut uses.pending)
        };
        let uses: Vec<(String, DateTime<Utc>)> = batch.into_iter().collect();
        Ok(self.inner.store.record_api_key_use(&uses).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacyvm_store::MemoryStore;

    fn owner(s: &str) -> OwnerId {
        OwnerId::parse(s).unwrap().unwrap()
    }

    #[tokio::test]
    async fn minted_keys_verify_and_revoked_keys_do_not() {
        let store = Arc::new(MemoryStore::new());
        let ring = Keyring::new(store.clone(), vec![7; 32]);
        let (k, secret) = ring
            .create(owner("alice"), KeyScope::User, None, None, KeyForm::Stacyvm)
            .await
            .unwrap();
        assert!(secret.starts_with(&format!("svm_{}_", &k.id[4..])));
        assert!(!k.hash.contains(&secret) && k.hash.len() == 64);
        let p = ring.verify(&secret).await.unwrap().expect("valid key");
        assert_eq!(p.owner, Some(owner("alice")));
        assert_eq!(p.scope, KeyScope::User);
        assert_eq!(ring.verify(&format!("{secret}x")).await.unwrap(), None);
        ring.revoke(&k.id).await.unwrap();
        assert_eq!(ring.verify(&secret).await.unwrap(), None);
        ring.flush_uses().await.unwrap();
        assert!(
            store
                .get_api_key(&k.id)
                .await
                .unwrap()
                .last_used_at
                .is_some()
        );
    }

    #[tokio::test]
    async fn e2b_keys_are_e2b_and_hex() {
        let ring = Keyring::new(Arc::new(MemoryStore::new()), vec![1; 32]);
        let (_, secret) = ring
            .create(owner("bob"), KeyScope::User, None, None, KeyForm::E2b)
            .await
            .unwrap();
        let hexpart = secret.strip_prefix("e2b_").unwrap();
        assert_eq!(hexpart.len(), 40);
        assert!(hexpart.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(ring.verify(&secret).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_keys_are_refused() {
        let ring = Keyring::new(Arc::new(MemoryStore::new()), vec![2; 32]);
        let past = Utc::now() - chrono::Duration::seconds(1);
        let (_, secret) = ring
            .create(
                owner("c"),
                KeyScope::Read,
                None,
                Some(past),
                KeyForm::Stacyvm,
            )
            .await
            .unwrap();
        assert_eq!(ring.verify(&secret).await.unwrap(), None);
    }

    #[test]
    fn the_pepper_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("api-key-pepper");
        let a = load_pepper(&path).unwrap();
        let b = load_pepper(&path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
