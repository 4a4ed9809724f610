//! [`ClusterStore`] on PostgreSQL: the `nodes` table (migration 0005).
//! Leases are computed with the database's `now()`, never a node's clock.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use stacyvm_core::{Node, NodeProvider, NodeRegistration, NodeState};

use sqlx::{PgConnection, Postgres};

use super::{PostgresStore, SANDBOX_SELECT};
use crate::codec::{SandboxRow, db_error};
use crate::{ClusterStore, LostNode, Placement, PlacementPolicy, StoreError, Unplaced};

/// The advisory lock that serialises placements cluster-wide ("StacyVM"
/// and 1), taken at the start of every placing admission.
pub(super) const PLACEMENT_LOCK: i64 = 0x5374_6163_7956_4d01;

/// A node that may take a sandbox, with what it holds.
#[derive(sqlx::FromRow)]
struct Candidate {
    id: String,
    max_sandboxes: i64,
    memory_mb: i64,
    sandboxes: i64,
    memory_used_mb: i64,
}

impl Candidate {
    fn sandboxes(&self) -> u64 {
        crate::admission::total(self.sandboxes)
    }

    /// Free memory in MiB; `u64::MAX` when the node sets no memory figure.
    fn free_memory(&self) -> u64 {
        match crate::admission::total(self.memory_mb) {
            0 => u64::MAX,
            total => total.saturating_sub(crate::admission::total(self.memory_used_mb)),
        }
    }

    fn has_room(&self, memory_mb: u64) -> bool {
        let max = crate::admission::total(self.max_sandboxes);
        (max == 0 || self.sandboxes() < max) && self.free_memory() >= memory_mb
    }
}

/// Picks the node of a new sandbox inside the admitting transaction (which
/// holds [`PLACEMENT_LOCK`]): among the `ready` nodes with a current lease
/// (the database's clock), `placement.provider` reported healthy and every
/// selector label, one with room for `memory_mb` more, by the policy.
pub(super) async fn pick(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    placement: &Placement,
    memory_mb: u64,
) -> Result<Result<String, Unplaced>, StoreError> {
    let selector = serde_json::to_string(&placement.selector).unwrap_or_else(|_| "{}".into());
    let conn: &mut PgConnection = tx;
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT n.id, n.max_sandboxes, n.memory_mb, COALESCE(u.sandboxes, 0) AS sandboxes, \
             COALESCE(u.memory_mb, 0) AS memory_used_mb \
         FROM nodes n LEFT JOIN sandbox_usage u ON u.scope = 'node:' || n.id \
         WHERE n.state = 'ready' AND n.lease_expires_at > now() \
           AND n.providers @> jsonb_build_array(jsonb_build_object('name', $1::text, 'healthy', true)) \
           AND n.labels @> $2::jsonb \
         ORDER BY n.id",
    )
    .bind(&placement.provider)
    .bind(selector)
    .fetch_all(conn)
    .await
    .map_err(|e| db_error("placing", "a sandbox", e))?;
    if candidates.is_empty() {
        return Ok(Err(Unplaced::NoNode));
    }
    let roomy = candidates.iter().filter(|c| c.has_room(memory_mb));
    // Candidates come ordered by id, and `min_by_key`/`max_by_key` keep the
    // first/last of equals: ties go to the lowest id either way.
    let chosen = match placement.policy {
        PlacementPolicy::Spread => {
            roomy.min_by_key(|c| (c.sandboxes(), std::cmp::Reverse(c.free_memory())))
        }
        PlacementPolicy::Pack => roomy
            .rev()
            .max_by_key(|c| (c.sandboxes(), std::cmp::Reverse(c.free_memory()))),
    };
    Ok(chosen.map(|c| c.id.clone()).ok_or(Unplaced::Full))
}

/// The node columns as selected, with the node's usage totals.
const NODE_SELECT: &str = "n.id, n.state, n.advertise_url, n.version, n.labels::text AS labels, \
     n.providers::text AS providers, n.max_sandboxes, n.memory_mb, \
     (EXTRACT(EPOCH FROM n.registered_at) * 1000000)::bigint AS registered_us, \
     (EXTRACT(EPOCH FROM n.heartbeat_at) * 1000000)::bigint AS heartbeat_us, \
     (EXTRACT(EPOCH FROM n.lease_expires_at) * 1000000)::bigint AS lease_us, \
     COALESCE(u.sandboxes, 0) AS sandboxes, COALESCE(u.memory_mb, 0) AS memory_used_mb";

/// `FROM` of every node read: the usage row of scope `node:<id>`.
const NODE_FROM: &str = " FROM nodes n LEFT JOIN sandbox_usage u ON u.scope = 'node:' || n.id";

#[derive(sqlx::FromRow)]
struct NodeRow {
    id: String,
    state: String,
    advertise_url: String,
    version: String,
    labels: String,
    providers: String,
    max_sandboxes: i64,
    memory_mb: i64,
    /// Microseconds since the epoch (no sqlx chrono feature needed).
    registered_us: i64,
    heartbeat_us: i64,
    lease_us: i64,
    sandboxes: i64,
    memory_used_mb: i64,
}

impl NodeRow {
    fn decode(self) -> Result<Node, StoreError> {
        let corrupt =
            |what: &str, e: String| StoreError::Corrupt(format!("node {}: {what}: {e}", self.id));
        let state = self.state.parse().map_err(|e| corrupt("state", e))?;
        let labels =
            serde_json::from_str(&self.labels).map_err(|e| corrupt("labels", e.to_string()))?;
        let providers: Vec<NodeProvider> = serde_json::from_str(&self.providers)
            .map_err(|e| corrupt("providers", e.to_string()))?;
        Ok(Node {
            state,
            labels,
            providers,
            advertise_url: self.advertise_url,
            version: self.version,
            max_sandboxes: crate::admission::total(self.max_sandboxes),
            memory_mb: crate::admission::total(self.memory_mb),
            registered_at: time(self.registered_us),
            last_heartbeat: time(self.heartbeat_us),
            lease_expires_at: time(self.lease_us),
            sandboxes: crate::admission::total(self.sandboxes),
            memory_used_mb: crate::admission::total(self.memory_used_mb),
            id: self.id,
        })
    }
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64()
}

impl PostgresStore {
    async fn node_row(&self, id: &str) -> Result<Node, StoreError> {
        let what = format!("node {id}");
        let row: Option<NodeRow> =
            sqlx::query_as(&format!("SELECT {NODE_SELECT}{NODE_FROM} WHERE n.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| db_error("reading", &what, e))?;
        row.ok_or(StoreError::NotFound(what))?.decode()
    }

    /// Writes what a node reports; `register` also sets it `ready` and
    /// inserts it when new. Returns whether a row was written.
    async fn write_node(
        &self,
        node: &NodeRegistration,
        lease: Duration,
        register: bool,
    ) -> Result<bool, StoreError> {
        let what = format!("node {}", node.id);
        let labels = serde_json::to_string(&node.labels).unwrap_or_else(|_| "{}".into());
        let providers = serde_json::to_string(&node.providers).unwrap_or_else(|_| "[]".into());
        let sql = if register {
            "INSERT INTO nodes (id, state, advertise_url, version, labels, providers, \
                 max_sandboxes, memory_mb, registered_at, heartbeat_at, lease_expires_at) \
             VALUES ($1, 'ready', $2, $3, $4::jsonb, $5::jsonb, $6, $7, now(), now(), \
                 now() + make_interval(secs => $8)) \
             ON CONFLICT (id) DO UPDATE SET state = 'ready', \
                 advertise_url = EXCLUDED.advertise_url, version = EXCLUDED.version, \
                 labels = EXCLUDED.labels, providers = EXCLUDED.providers, \
                 max_sandboxes = EXCLUDED.max_sandboxes, memory_mb = EXCLUDED.memory_mb, \
                 registered_at = now(), heartbeat_at = now(), \
                 lease_expires_at = EXCLUDED.lease_expires_at"
        } else {
            "UPDATE nodes SET advertise_url = $2, version = $3, labels = $4::jsonb, \
                 providers = $5::jsonb, max_sandboxes = $6, memory_mb = $7, \
                 heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => $8) \
             WHERE id = $1"
        };
        let done = sqlx::query(sql)
            .bind(&node.id)
            .bind(&node.advertise_url)
            .bind(&node.version)
            .bind(labels)
            .bind(providers)
            .bind(to_i64(node.max_sandboxes))
            .bind(to_i64(node.memory_mb))
            .bind(lease_secs(lease))
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("registering", &what, e))?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn register_node(
        &self,
        node: &NodeRegistration,
        lease: Duration,
    ) -> Result<Node, StoreError> {
        self.write_node(node, lease, true).await?;
        self.node_row(&node.id).await
    }

    async fn heartbeat(
        &self,
        node: &NodeRegistration,
        lease: Duration,
    ) -> Result<Node, StoreError> {
        if !self.write_node(node, lease, false).await? {
            return Err(StoreError::NotFound(format!("node {}", node.id)));
        }
        self.node_row(&node.id).await
    }

    async fn get_node(&self, id: &str) -> Result<Node, StoreError> {
        self.node_row(id).await
    }

    async fn list_nodes(&self) -> Result<Vec<Node>, StoreError> {
        let rows: Vec<NodeRow> =
            sqlx::query_as(&format!("SELECT {NODE_SELECT}{NODE_FROM} ORDER BY n.id"))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("listing", "nodes", e))?;
        rows.into_iter().map(NodeRow::decode).collect()
    }

    async fn set_node_state(
        &self,
        id: &str,
        from: &[NodeState],
        to: NodeState,
    ) -> Result<Option<Node>, StoreError> {
        let what = format!("node {id}");
        let from: Vec<String> = from.iter().map(|s| s.as_str().to_string()).collect();
        let done = sqlx::query("UPDATE nodes SET state = $2 WHERE id = $1 AND state = ANY($3)")
            .bind(id)
            .bind(to.as_str())
            .bind(&from)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("updating", &what, e))?;
        let node = self.node_row(id).await?;
        Ok((done.rows_affected() > 0).then_some(node))
    }

    async fn claim_lost_nodes(&self, reason: &str) -> Result<Vec<LostNode>, StoreError> {
        let err = |e| db_error("claiming", "lost nodes", e);
        let mut tx = self.pool.begin().await.map_err(err)?;
        // Row locks with SKIP LOCKED: of the survivors sweeping at once,
        // each lapsed node is claimed by exactly one, and a heartbeat
        // that renewed the lease first takes it out of the set.
        let ids: Vec<(String,)> = sqlx::query_as(
            "UPDATE nodes SET state = 'lost' WHERE id IN ( \
                 SELECT id FROM nodes WHERE state <> 'lost' AND lease_expires_at <= now() \
                 ORDER BY id FOR UPDATE SKIP LOCKED) \
             RETURNING id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(err)?;
        let mut lost = Vec::with_capacity(ids.len());
        for (id,) in ids {
            let rows: Vec<SandboxRow> = sqlx::query_as(&format!(
                "UPDATE sandboxes SET state = 'error', error = $2, counted = 0 \
                 WHERE node_id = $1 AND counted = 1 RETURNING {SANDBOX_SELECT}"
            ))
            .bind(&id)
            .bind(reason)
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
            let sandboxes = rows
                .into_iter()
                .map(SandboxRow::decode)
                .collect::<Result<Vec<_>, _>>()?;
            lost.push((id, sandboxes));
        }
        tx.commit().await.map_err(err)?;
        let mut out = Vec::with_capacity(lost.len());
        for (id, sandboxes) in lost {
            out.push(LostNode {
                node: self.node_row(&id).await?,
                sandboxes,
            });
        }
        Ok(out)
    }
}
