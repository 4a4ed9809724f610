//! Settings of the Docker provider (`providers.docker.*` in the server config).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Where the daemon listens when neither the config nor `DOCKER_HOST` says.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Settings of the Docker provider. Every key is optional.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct DockerConfig {
    /// Whether the server builds this provider (the provider ignores it).
    pub enabled: bool,
    /// Daemon address: `unix:///path` or `tcp://host:port`. Unset: the
    /// `DOCKER_HOST` environment variable, else [`DEFAULT_SOCKET`].
    pub socket: Option<String>,
    /// OCI runtime registered with the daemon: `runc`, `runsc` (gVisor), ...
    pub runtime: String,
    /// Docker network mode of sandboxes; `none` gives them no network.
    pub network_mode: String,
    /// Mounts the image read-only; `/tmp` and `/workspace` stay writable.
    pub read_only_rootfs: bool,
    /// Capabilities given back after all are dropped (e.g. `CHOWN`).
    pub cap_add: Vec<String>,
    /// Maximum number of processes in a sandbox; 0 means no limit.
    pub pids_limit: i64,
    /// Runs docker-init as PID 1 so orphaned processes are reaped.
    pub init: bool,
    /// Seconds each Engine API request may take before it fails.
    pub request_timeout_secs: u64,
    /// Credentials used when an image has to be pulled.
    pub registry: Option<RegistryAuth>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: true,
            socket: None,
            runtime: "runc".into(),
            network_mode: "none".into(),
            read_only_rootfs: false,
            cap_add: Vec::new(),
            pids_limit: 256,
            init: true,
            request_timeout_secs: 120,
            registry: None,
        }
    }
}

impl DockerConfig {
    /// The daemon address in effect: config, then `DOCKER_HOST`, then the
    /// default socket.
    pub fn socket_address(&self) -> String {
        match &self.socket {
            Some(s) if !s.is_empty() => s.clone(),
            _ => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| DEFAULT_SOCKET.to_string()),
        }
    }

    /// Checks values serde cannot, naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let socket = self.socket_address();
        if !(socket.starts_with("unix://")
            || socket.starts_with("tcp://")
            || socket.starts_with("http://")
            || socket.starts_with('/'))
        {
            return Err(format!(
                "providers.docker.socket: unsupported address {socket:?} (use unix:///path or tcp://host:port)"
            ));
        }
        if self.runtime.trim().is_empty() {
            return Err("providers.docker.runtime: must not be empty".into());
        }
        if self.network_mode.trim().is_empty() {
            return Err("providers.docker.network_mode: must not be empty".into());
        }
        if self.pids_limit < 0 {
            return Err("providers.docker.pids_limit: must be 0 (no limit) or more".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("providers.docker.request_timeout_secs: must be at least 1".into());
        }
        for cap in &self.cap_add {
            if cap.is_empty() || !cap.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "providers.docker.cap_add: {cap:?} is not a capability name"
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("enabled", &self.enabled)
            .field("socket", &self.socket)
            .field("runtime", &self.runtime)
            .field("network_mode", &self.network_mode)
            .field("read_only_rootfs", &self.read_only_rootfs)
            .field("cap_add", &self.cap_add)
            .field("pids_limit", &self.pids_limit)
            .field("init", &self.init)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("registry", &self.registry)
            .finish()
    }
}

/// Registry credentials for pulls. Never logged: `Debug` and `Serialize`
/// (config dumps) redact them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct RegistryAuth {
    #[serde(serialize_with = "redacted")]
    pub username: String,
    #[serde(serialize_with = "redacted")]
    pub password: String,
    /// Registry address, e.g. `registry.example.com:5000`; empty means the
    /// daemon's default registry.
    #[serde(default)]
    pub server: String,
}

fn redacted<S: Serializer>(_: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("<redacted>")
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &"<redacted>")
            .field("password", &"<redacted>")
            .field("server", &self.server)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_locked_down() {
        let c: DockerConfig = serde_json::from_str("{}").expect("empty config parses");
        assert_eq!(c.runtime, "runc");
        assert_eq!(c.network_mode, "none");
        assert!(c.cap_add.is_empty());
        assert_eq!(c.pids_limit, 256);
        assert!(c.init);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_unknown_keys() {
        let err = serde_json::from_str::<DockerConfig>(r#"{"runtme":"runsc"}"#)
            .expect_err("unknown key must fail");
        assert!(err.to_string().contains("runtme"), "{err}");
    }

    #[test]
    fn debug_never_shows_credentials() {
        let c: DockerConfig = serde_json::from_str(
            r#"{"registry":{"username":"alice","password":"hunter2","server":"r.example:5000"}}"#,
        )
        .expect("config parses");
        for shown in [
            format!("{c:?}"),
            serde_json::to_string(&c).expect("config serializes"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("alice"), "{shown}");
            assert!(shown.contains("r.example:5000"), "{shown}");
        }
    }

    #[test]
    fn validates_values() {
        let bad = DockerConfig {
            cap_add: vec!["NET ADMIN".into()],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("cap_add"));
        let bad = DockerConfig {
            socket: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("socket"));
    }
}
