//! Cluster coordination in the store: the node registry and its leases.
//! Only a store many servers share implements it (PostgreSQL); a single
//! host has no nodes ([`Store::cluster`](crate::Store::cluster) is `None`).

use std::time::Duration;

use async_trait::async_trait;
use stacyvm_core::{Node, NodeRegistration, NodeState, Sandbox};

use crate::StoreError;

/// The node registry. Lease times are the database's clock.
#[async_trait]
pub trait ClusterStore: Send + Sync + std::fmt::Debug {
    /// Registers `node` (or registers it again after a restart): state
    /// `ready`, a fresh lease of `lease`. The node as stored.
    async fn register_node(
        &self,
        node: &NodeRegistration,
        lease: Duration,
    ) -> Result<Node, StoreError>;
    /// Renews the lease of a registered node and what it reports (version,
    /// providers, capacity, labels); its state is left alone, so a node
    /// learns here that it was drained or marked `lost`. `NotFound` when
    /// the node is not registered.
    async fn heartbeat(&self, node: &NodeRegistration, lease: Duration)
    -> Result<Node, StoreError>;
    async fn get_node(&self, id: &str) -> Result<Node, StoreError>;
    /// Ordered by id.
    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError>;
    /// Moves a node that is in one of `from` to `to`; the node after the
    /// change, or `None` when it is in another state. `NotFound` when it
    /// does not exist.
    async fn set_node_state(
        &self,
        id: &str,
        from: &[NodeState],
        to: NodeState,
    ) -> Result<Option<Node>, StoreError>;
    /// Marks every node whose lease lapsed `lost` and moves its counted
    /// sandboxes to `error` with `reason`, in one transaction. Of any
    /// number of callers at once, exactly one claims each lapsed node.
    async fn claim_lost_nodes(&self, reason: &str) -> Result<Vec<LostNode>, StoreError>;
}

/// A node [`ClusterStore::claim_lost_nodes`] marked `lost`, with the
/// sandboxes it gave up (now `error`).
#[derive(Debug, Clone, PartialEq)]
pub struct LostNode {
    pub node: Node,
    pub sandboxes: Vec<Sandbox>,
}
