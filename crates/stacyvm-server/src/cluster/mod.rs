//! Cluster mode: many `stacyvm serve` processes sharing one PostgreSQL
//! store act as one server. This module turns `cluster.*` into this
//! server's node settings; registration, the heartbeat and the node
//! registry are `Manager` methods (`manager/nodes.rs`) over the store's
//! `ClusterStore`.

pub mod forward;

use std::path::Path;

use crate::config::{Config, valid_node_id};
use crate::manager::NodeSettings;

/// The file in the data directory that keeps a generated node id.
pub const NODE_ID_FILE: &str = "node-id";

/// Why the node's identity could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    #[error("cannot keep the node id in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds {found:?}, which is not a node id; fix or remove it")]
    Invalid { path: String, found: String },
}

/// This server's node settings, or `None` on a single host.
pub fn node_settings(config: &Config) -> Result<Option<NodeSettings>, NodeIdError> {
    if !config.is_cluster() {
        return Ok(None);
    }
    let c = &config.cluster;
    let id = if c.node_id.is_empty() {
        stored_node_id(&config.data_dir())?
    } else {
        c.node_id.clone()
    };
    Ok(Some(NodeSettings {
        id,
        advertise_url: config.advertise_url(),
        labels: c.labels.clone(),
        max_sandboxes: u64::from(c.max_sandboxes),
        memory_mb: u64::from(c.memory_mb),
        lease: c.lease.0,
        heartbeat_interval: c.heartbeat_interval.0,
    }))
}

/// The id kept in `<dir>/node-id`, generated and written on first use, so
/// a node keeps its identity (and its sandboxes) across restarts.
pub fn stored_node_id(dir: &Path) -> Result<String, NodeIdError> {
    let path = dir.join(NODE_ID_FILE);
    let shown = path.display().to_string();
    let io = |source| NodeIdError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid_node_id(id) {
                return Ok(id.to_string());
            }
            return Err(NodeIdError::Invalid {
                path: shown.clone(),
                found: id.chars().take(80).collect(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let raw = stacyvm_core::SandboxId::generate();
    let id = format!("node-{}", raw.as_str().trim_start_matches("sb-"));
    // Write then rename: a crash never leaves a half-written id.
    let tmp = dir.join(format!("{NODE_ID_FILE}.tmp"));
    std::fs::write(&tmp, format!("{id}\n")).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    tracing::info!(node_id = %id, path = %shown, "generated the node id");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = stored_node_id(dir.path()).unwrap();
        assert!(valid_node_id(&first), "{first}");
        assert!(first.starts_with("node-"));
        assert_eq!(stored_node_id(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join(NODE_ID_FILE), "not an id!\n").unwrap();
        assert!(matches!(
            stored_node_id(dir.path()),
            Err(NodeIdError::Invalid { .. })
        ));
    }
}
