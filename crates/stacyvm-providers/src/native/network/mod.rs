//! Network mode `allow` for native sandboxes: each gets its own network
//! namespace joined to the host by a veth pair ([`link`]), the host's
//! nftables rules send all of its TCP to an egress proxy on its host-side
//! address and drop everything else ([`nft`]), and the proxy lets through
//! only what the policy names ([`proxy`]).
//!
//! A sandbox's slot in the address pool is recorded next to it
//! (`network.json`), so a restarted server finds its links again, puts
//! their interfaces back in the table and restarts their proxies.
//! See `docs/network.md`.

mod config;
mod dns;
mod link;
pub mod nft;
mod proxy;
mod resolver;
pub mod sniff;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use stacyvm_core::{NetworkPolicy, SandboxId};
use tokio::sync::OnceCell;

pub use config::EgressConfig;
pub use link::host_if;

use crate::{Private, ProviderError};

/// The record of a sandbox's link, in its directory.
const RECORD: &str = "network.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    slot: u32,
    policy: NetworkPolicy,
}

/// The egress side of the native provider; one per provider.
#[derive(Debug)]
pub struct Egress {
    config: EgressConfig,
    pool: Ipv4Net,
    /// `data_dir/sandboxes`.
    sandboxes: PathBuf,
    state: Mutex<State>,
    /// The table installed and the links found on disk restored.
    ready: OnceCell<()>,
}

#[derive(Debug, Default)]
struct State {
    /// Slot → sandbox.
    slots: BTreeMap<u32, SandboxId>,
    proxies: BTreeMap<SandboxId, proxy::Proxy>,
}

/// What of a sandbox's network is still on the host (for leak checks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers(pub Vec<String>);

impl Egress {
    pub fn new(config: EgressConfig, sandboxes: PathBuf) -> Result<Self, String> {
        let pool = config.pool()?;
        Ok(Egress {
            config,
            pool,
            sandboxes,
            state: Mutex::new(State::default()),
            ready: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settings(&self) -> proxy::Settings {
        proxy::Settings {
            pool: self.pool,
            connect_timeout: Duration::from_millis(self.config.connect_timeout_ms),
            // Checked by `validate` at construction.
            upstream: self.config.upstream().ok().flatten(),
            dns_port: self.config.dns_port,
        }
    }

    fn slots_total(&self) -> u32 {
        1u32 << (32 - u32::from(self.pool.prefix_len()) - 2)
    }

    /// Installs the table and restores the links recorded on disk, once.
    pub async fn ensure_ready(&self) -> Result<(), ProviderError> {
        self.ready
            .get_or_try_init(|| self.restore())
            .await
            .map(|_| ())
    }

    async fn restore(&self) -> Result<(), ProviderError> {
        let dir = self.sandboxes.clone();
        let records = tokio::task::spawn_blocking(move || read_records(&dir))
            .await
            .map_err(|e| ProviderError::internal("cannot read the sandbox links", e))?;
        let live: Vec<(SandboxId, Record, link::Link)> = records
            .into_iter()
            .map(|(id, r)| {
                let l = link::Link::new(id.as_str(), r.slot, self.pool);
                (id, r, l)
            })
            .filter(|(_, _, l)| link::iface_exists(&l.host_if))
            .collect();
        let ifaces: Vec<String> = live.iter().map(|(_, _, l)| l.host_if.clone()).collect();
        nft::apply(&nft::table_script(
            &self.config.table,
            self.pool,
            self.config.proxy_port,
            self.config.dns_port,
            &ifaces,
        ))
            .await
            .map_err(|e| {
                ProviderError::unavailable_from(
                    "cannot install the host's network rules for mode allow (nftables; see docs/network.md)",
                    Private(e),
                )
            })?;
        for (id, record, l) in live {
            self.state().slots.insert(record.slot, id.clone());
            let policy = match record.policy.compile() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, error = %e, "recorded network policy no longer parses; the sandbox gets nothing");
                    stacyvm_core::CompiledPolicy::default()
                }
            };
            let addr = SocketAddr::from((l.host_ip, self.config.proxy_port));
            match proxy::Proxy::start(id.to_string(), addr, policy, self.settings()).await {
                Ok(p) => {
                    self.state().proxies.insert(id.clone(), p);
                    tracing::info!(sandbox_id = %id, "egress proxy restored");
                }
                Err(e) => {
                    tracing::warn!(sandbox_id = %id, error = %e, "cannot restore the egress proxy; the sandbox reaches nothing")
                }
            }
        }
        Ok(())
    }

    /// Gives sandbox `id` (directory `dir`) its link, rules, resolver and
    /// proxy; returns the namespace the runtime joins and the
    /// `resolv.conf` to bind into it. What is half made on failure is
    /// removed by [`Egress::detach`].
    pub async fn attach(
        &self,
        id: &SandboxId,
        dir: &Path,
        policy: &NetworkPolicy,
    ) -> Result<(PathBuf, PathBuf), ProviderError> {
        let compiled = policy
            .compile()
            .map_err(|e| ProviderError::InvalidInput(e.to_string()))?;
        if compiled.has_domains() && self.settings().upstream.is_none() {
            return Err(ProviderError::InvalidInput(
                "domain entries need a resolver: providers.native.egress.dns_upstream is not set"
                    .into(),
            ));
        }
        self.ensure_ready().await?;
        let slot = {
            let mut st = self.state();
            let total = self.slots_total();
            let free = (0..total).find(|s| !st.slots.contains_key(s)).ok_or_else(|| {
                ProviderError::ResourceLimit(format!(
                    "no address left for network mode allow (providers.native.egress.subnet holds {total} sandboxes)"
                ))
            })?;
            st.slots.insert(free, id.clone());
            free
        };
        let record = Record {
            slot,
            policy: policy.clone(),
        };
        let path = dir.join(RECORD);
        let data = serde_json::to_vec(&record)
            .map_err(|e| ProviderError::internal("cannot record the sandbox link", e))?;
        tokio::fs::write(&path, data).await.map_err(|e| {
            ProviderError::internal(
                format!("sandbox {id}: cannot record its link"),
                Private::at(path.display(), e),
            )
        })?;
        let l = link::Link::new(id.as_str(), slot, self.pool);
        let failed = |what: &str, e: String| {
            ProviderError::internal(
                format!("sandbox {id}: cannot set up its network ({what})"),
                Private(e),
            )
        };
        l.create().await.map_err(|e| failed("link", e))?;
        nft::add_iface(&self.config.table, &l.host_if)
            .await
            .map_err(|e| failed("rules", e))?;
        let addr = SocketAddr::from((l.host_ip, self.config.proxy_port));
        let proxy = proxy::Proxy::start(id.to_string(), addr, compiled, self.settings())
            .await
            .map_err(|e| failed("proxy", e.to_string()))?;
        self.state().proxies.insert(id.clone(), proxy);
        let resolv = dir.join("resolv.conf");
        tokio::fs::write(
            &resolv,
            format!("nameserver {}\noptions ndots:0\n", l.host_ip),
        )
        .await
        .map_err(|e| failed("resolv.conf", e.to_string()))?;
        Ok((l.netns_path(), resolv))
    }

    /// Changes the policy of `id`, linked in `dir`, in place: recorded,
    /// then in force for its resolver, new and open connections.
    pub async fn update(
        &self,
        id: &SandboxId,
        dir: &Path,
        policy: &NetworkPolicy,
    ) -> Result<(), ProviderError> {
        let compiled = policy
            .compile()
            .map_err(|e| ProviderError::InvalidInput(e.to_string()))?;
        if compiled.has_domains() && self.settings().upstream.is_none() {
            return Err(ProviderError::InvalidInput(
                "domain entries need a resolver: providers.native.egress.dns_upstream is not set"
                    .into(),
            ));
        }
        self.ensure_ready().await?;
        let slot = self
            .state()
            .slots
            .iter()
            .find(|(_, s)| *s == id)
            .map(|(slot, _)| *slot)
            .ok_or_else(|| ProviderError::NotFound(id.to_string()))?;
        let path = dir.join(RECORD);
        let data = serde_json::to_vec(&Record {
            slot,
            policy: policy.clone(),
        })
        .map_err(|e| ProviderError::internal("cannot record the sandbox link", e))?;
        tokio::fs::write(&path, data).await.map_err(|e| {
            ProviderError::internal(
                format!("sandbox {id}: cannot record its link"),
                Private::at(path.display(), e),
            )
        })?;
        match self.state().proxies.get(id) {
            Some(proxy) => proxy.set_policy(compiled),
            None => {
                return Err(ProviderError::internal(
                    format!("sandbox {id}: its egress proxy is not running"),
                    Private("no proxy".to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Removes everything [`Egress::attach`] made for `id`; idempotent,
    /// and cheap for a sandbox that never had a link.
    pub async fn detach(&self, id: &SandboxId, dir: &Path) -> Result<(), ProviderError> {
        let l = link::Link::new(id.as_str(), 0, self.pool);
        let known =
            self.state().proxies.contains_key(id) || self.state().slots.values().any(|s| s == id);
        if !(known
            || dir.join(RECORD).exists()
            || link::iface_exists(&l.host_if)
            || l.netns_path().exists())
        {
            return Ok(());
        }
        // After a restart the table still holds the interface: install
        // ours first, so the removal below is the last word.
        self.ensure_ready().await?;
        drop(self.state().proxies.remove(id));
        let mut errors = Vec::new();
        if let Err(e) = nft::remove_iface(&self.config.table, &l.host_if).await {
            errors.push(e);
        }
        if let Err(e) = l.remove().await {
            errors.push(e);
        }
        if !errors.is_empty() {
            return Err(ProviderError::internal(
                format!("sandbox {id}: cannot remove its network"),
                Private(errors.join("; ")),
            ));
        }
        self.state().slots.retain(|_, s| s != id);
        Ok(())
    }

    /// What of `id`'s network is still on the host: its namespace, host
    /// interface, table element, proxy or slot.
    pub async fn leftovers(&self, id: &SandboxId) -> Leftovers {
        let l = link::Link::new(id.as_str(), 0, self.pool);
        let mut left = Vec::new();
        if l.netns_path().exists() {
            left.push(format!("network namespace {}", l.netns));
        }
        if link::iface_exists(&l.host_if) {
            left.push(format!("interface {}", l.host_if));
        }
        match nft::ifaces(&self.config.table).await {
            Ok(ifaces) if ifaces.contains(&l.host_if) => {
                left.push(format!("nftables element {}", l.host_if));
            }
            Ok(_) => {}
            Err(e) => left.push(format!("cannot list the nftables set: {e}")),
        }
        let st = self.state();
        if st.proxies.contains_key(id) {
            left.push("egress proxy".into());
        }
        if st.slots.values().any(|s| s == id) {
            left.push("address slot".into());
        }
        Leftovers(left)
    }

    /// The slots in use (for tests and the config summary).
    pub fn slots_in_use(&self) -> BTreeSet<u32> {
        self.state().slots.keys().copied().collect()
    }
}

/// The recorded links under `dir` (one per sandbox directory).
fn read_records(dir: &Path) -> Vec<(SandboxId, Record)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str().and_then(SandboxId::parse)?;
            let data = std::fs::read(e.path().join(RECORD)).ok()?;
            Some((id, serde_json::from_slice(&data).ok()?))
        })
        .collect()
}
