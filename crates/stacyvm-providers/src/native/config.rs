//! `providers.native.*`: how the native provider runs sandboxes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::network::EgressConfig;

/// Settings of the native provider. Every field has a default, so an empty
/// section works on a host prepared by `scripts/ci/native.sh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NativeConfig {
    /// Registers the provider with the server (it may still be unhealthy).
    pub enabled: bool,
    /// OCI runtime CLI: `crun` (default), `runc` or `runsc` (gVisor), or a
    /// path to one of them.
    pub runtime: String,
    /// Where sandboxes live (bundles, overlay upper dirs, sockets, logs) and
    /// the runtime keeps its state.
    pub data_dir: PathBuf,
    /// The static `stacyvm-agent` binary. Unset: `STACYVM_AGENT` from the
    /// environment, then next to the running executable, then
    /// `/usr/local/lib/stacyvm/stacyvm-agent`, then
    /// `/usr/lib/stacyvm/stacyvm-agent`.
    pub agent_path: Option<PathBuf>,
    /// Most processes (and threads) one sandbox may have.
    pub pids_limit: u32,
    /// The network of a sandbox whose spawn names none: `none` (default),
    /// a private network namespace with loopback only; `host`: the host's
    /// network (no isolation of the network; also allows a spawn to ask
    /// for mode `host`).
    pub network: NetworkMode,
    /// Network mode `allow` (address pool, egress proxy) and the opt-in
    /// for mode `host` per spawn.
    pub egress: EgressConfig,
    /// Apply the seccomp denylist (default on).
    pub seccomp: bool,
    /// How long `spawn` waits for the agent to answer.
    pub start_timeout_ms: u64,
    /// Remount the host's cgroup2 mount with `favordynmods` at start when
    /// it lacks it (root only, Linux 6.0+): moving each new sandbox into
    /// its cgroup then costs ~0.15 ms instead of an RCU grace period
    /// (~12 ms here), at a small cost to fork/exit host-wide. Default on;
    /// `false` leaves the host's mounts alone.
    pub cgroup_favor_dynmods: bool,
}

/// Network of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    None,
    Host,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            enabled: true,
            runtime: "crun".into(),
            data_dir: PathBuf::from("/var/lib/stacyvm/native"),
            agent_path: None,
            pids_limit: 256,
            network: NetworkMode::None,
            egress: EgressConfig::default(),
            seccomp: true,
            start_timeout_ms: 10_000,
            cgroup_favor_dynmods: true,
        }
    }
}

impl NativeConfig {
    /// Checks what serde cannot; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.runtime.trim().is_empty() {
            return Err("providers.native.runtime must not be empty".into());
        }
        if !self.data_dir.is_absolute() {
            return Err(format!(
                "providers.native.data_dir {} must be an absolute path",
                self.data_dir.display()
            ));
        }
        if self.pids_limit < 8 {
            return Err("providers.native.pids_limit must be at least 8".into());
        }
        if self.start_timeout_ms == 0 {
            return Err("providers.native.start_timeout_ms must be positive".into());
        }
        self.egress.validate()
    }

    /// The runtime's short name (`crun`, `runc`, `runsc`), for messages.
    pub fn runtime_name(&self) -> &str {
        self.runtime.rsplit('/').next().unwrap_or(&self.runtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_rejects_unknown_keys() {
        let c: NativeConfig = serde_json::from_str(r#"{"network":"host"}"#).unwrap();
        assert_eq!(c.network, NetworkMode::Host);
        assert_eq!(c.pids_limit, 256);
        assert_eq!(c.runtime, "crun");
        assert!(c.seccomp);
        assert!(c.cgroup_favor_dynmods);
        assert!(serde_json::from_str::<NativeConfig>(r#"{"netwrk":"host"}"#).is_err());
        assert!(c.validate().is_ok());
        let bad = NativeConfig {
            data_dir: "rel".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("data_dir"));
    }
}
