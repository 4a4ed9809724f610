//! What cluster mode adds to `Manager`: this server's node record (its
//! registration and the heartbeat that renews its lease), and the node
//! registry behind `/api/v1/nodes`. On a single host there is no node and
//! these calls say cluster mode is off.

use std::sync::Mutex;
use std::time::Duration;

use stacyvm_core::{Node, NodeProvider, NodeRegistration, NodeState, VERSION};
use stacyvm_store::{ClusterStore, StoreError};

use super::{Manager, ManagerError};

/// The `error` of a sandbox whose node was lost, and the reason of its
/// `reconcile.action` event.
pub const NODE_LOST: &str = "node_lost";

/// This server as a cluster node (from `cluster.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub id: String,
    pub advertise_url: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub max_sandboxes: u64,
    pub memory_mb: u64,
    pub lease: Duration,
    pub heartbeat_interval: Duration,
}

/// The local node: its settings and the record as last written.
#[derive(Debug)]
pub(super) struct LocalNode {
    pub(super) settings: NodeSettings,
    record: Mutex<Option<Node>>,
}

impl LocalNode {
    pub(super) fn new(settings: NodeSettings) -> Self {
        LocalNode {
            settings,
            record: Mutex::new(None),
        }
    }
}

impl Manager {
    fn cluster_store(&self) -> Result<&dyn ClusterStore, ManagerError> {
        self.inner.store.cluster().ok_or_else(|| {
            ManagerError::NotFound("nodes: cluster mode is off (database.driver is sqlite)".into())
        })
    }

    fn local(&self) -> Option<&LocalNode> {
        self.inner.local_node.as_ref()
    }

    /// What this node reports about itself now.
    fn registration(&self, local: &LocalNode) -> NodeRegistration {
        let s = &local.settings;
        NodeRegistration {
            id: s.id.clone(),
            advertise_url: s.advertise_url.clone(),
            version: VERSION.to_string(),
            labels: s.labels.clone(),
            providers: self
                .provider_health()
                .into_iter()
                .map(|h| NodeProvider {
                    name: h.name,
                    healthy: h.healthy,
                })
                .collect(),
            max_sandboxes: s.max_sandboxes,
            memory_mb: s.memory_mb,
        }
    }

    fn remember(&self, node: &Node) {
        if let Some(local) = self.local() {
            *local.record.lock().unwrap_or_else(|e| e.into_inner()) = Some(node.clone());
        }
    }

    /// Registers this node (state `ready`, a fresh lease). Called at start
    /// after the first health check; a no-op on a single host.
    pub async fn register_node(&self) -> Result<Option<Node>, ManagerError> {
        let Some(local) = self.local() else {
            return Ok(None);
        };
        let store = self.cluster_store()?;
        let node = store
            .register_node(&self.registration(local), local.settings.lease)
            .await?;
        tracing::info!(node_id = %node.id, advertise_url = %node.advertise_url, "node registered");
        self.remember(&node);
        Ok(Some(node))
    }

    /// Renews the lease once; registers again when the record is gone.
    pub async fn heartbeat(&self) -> Result<Option<Node>, ManagerError> {
        let Some(local) = self.local() else {
            return Ok(None);
        };
        let store = self.cluster_store()?;
        let reg = self.registration(local);
        let node = match store.heartbeat(&reg, local.settings.lease).await {
            Ok(node) => node,
            Err(StoreError::NotFound(_)) => {
                tracing::warn!(node_id = %reg.id, "node record missing; registering again");
                store.register_node(&reg, local.settings.lease).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.remember(&node);
        if node.state == NodeState::Lost {
            // The cluster gave this node up while it could not renew (a
            // partition, a stall): its sandboxes are `error` already.
            return self.rejoin().await;
        }
        Ok(Some(node))
    }

    /// Back after being marked lost: destroy the runtimes the cluster gave
    /// up, then register as `ready` again.
    async fn rejoin(&self) -> Result<Option<Node>, ManagerError> {
        tracing::warn!(node_id = ?self.local_node(), "this node was marked lost; reconciling before it rejoins");
        let report = self.reconcile().await?;
        tracing::info!(?report, "reconciled after being lost");
        self.register_node().await
    }

    /// Marks every node whose lease lapsed `lost` and its sandboxes
    /// `error` (`node_lost`), publishing a `reconcile.action` for each.
    /// Every node sweeps; the store lets exactly one claim each lost node.
    pub async fn sweep_lost_nodes(&self) -> Result<usize, ManagerError> {
        let Some(store) = self.inner.store.cluster() else {
            return Ok(0);
        };
        let lost = store.claim_lost_nodes(NODE_LOST).await?;
        for l in &lost {
            tracing::warn!(
                node_id = %l.node.id,
                sandboxes = l.sandboxes.len(),
                lease_expired_at = %l.node.lease_expires_at,
                "node lost: its lease lapsed; its sandboxes are now error"
            );
            for sb in &l.sandboxes {
                self.reconcile_event(sb, "error", NODE_LOST);
            }
        }
        Ok(lost.len())
    }

    pub(super) async fn heartbeat_loop(self) {
        let Some(interval) = self.local().map(|l| l.settings.heartbeat_interval) else {
            return;
        };
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = self.heartbeat().await {
                tracing::warn!(error = %stacyvm_core::ErrorChain(&e), "heartbeat failed");
                continue;
            }
            if let Err(e) = self.sweep_lost_nodes().await {
                tracing::warn!(error = %stacyvm_core::ErrorChain(&e), "lost-node sweep failed");
            }
        }
    }

    /// The local node as last written (`None` on a single host or before
    /// registration).
    pub fn local_node_record(&self) -> Option<Node> {
        self.local()
            .and_then(|l| l.record.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Whether this server is a cluster node.
    pub fn is_cluster(&self) -> bool {
        self.local().is_some()
    }

    /// Every registered node, ordered by id.
    pub async fn nodes(&self) -> Result<Vec<Node>, ManagerError> {
        Ok(self.cluster_store()?.list_nodes().await?)
    }

    pub async fn node(&self, id: &str) -> Result<Node, ManagerError> {
        Ok(self.cluster_store()?.get_node(id).await?)
    }

    /// Stops placement on a node: `ready` → `draining`. Draining again is a
    /// no-op; a lost node cannot be drained.
    pub async fn drain_node(&self, id: &str) -> Result<Node, ManagerError> {
        let store = self.cluster_store()?;
        if let Some(node) = store
            .set_node_state(id, &[NodeState::Ready], NodeState::Draining)
            .await?
        {
            tracing::info!(node_id = %id, "node draining");
            if self.local_node() == Some(id) {
                self.remember(&node);
            }
            return Ok(node);
        }
        let node = store.get_node(id).await?;
        match node.state {
            NodeState::Draining => Ok(node),
            other => Err(ManagerError::Conflict(format!(
                "node {id} is {other}, it cannot be drained"
            ))),
        }
    }

    /// On SIGTERM: this node takes no new sandboxes while it drains. Its
    /// lease is left to run out, so a restart within the lease keeps every
    /// sandbox (see docs/cluster.md).
    pub async fn drain_local(&self) {
        let Some(id) = self.local_node().map(str::to_string) else {
            return;
        };
        if let Err(e) = self.drain_node(&id).await {
            tracing::warn!(node_id = %id, error = %stacyvm_core::ErrorChain(&e), "cannot drain the local node");
        }
    }
}
