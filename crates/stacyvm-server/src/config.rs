//! Typed configuration with the StacyVM `stacyvm.yaml` key names.
//!
//! Layering: built-in defaults → YAML file → `STACYVM_*` environment → flags
//! (the CLI applies flags last). Unknown keys are rejected with the key
//! named, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use stacyvm_core::GoDuration;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config{}: {message}", origin.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Parse {
        origin: Option<PathBuf>,
        message: String,
    },
    #[error("invalid config key {key}: {message}")]
    Invalid { key: String, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub providers: ProvidersConfig,
    /// Image pulls of the native provider (mirrors, plain-HTTP registries,
    /// credentials).
    pub images: stacyvm_providers::native::image::ImageConfig,
    pub defaults: DefaultsConfig,
    pub auth: AuthConfig,
    pub database: DatabaseConfig,
    pub logging: LoggingConfig,
    pub events: EventsConfig,
    /// Cluster mode: every server on one PostgreSQL store is a node.
    pub cluster: ClusterConfig,
    /// The E2B-compatible API (docs/e2b.md).
    pub e2b: E2bConfig,
}

/// `e2b.*`: the E2B control plane and envd surface, served at the root of
/// the main listener next to `/api/v1` (docs/e2b.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct E2bConfig {
    pub enabled: bool,
    /// Sent to the SDK as the sandbox `domain`; with `E2B_DOMAIN` unset
    /// it builds `<port>-<sandbox id>.<domain>` hosts from it. Empty: none.
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address; binding `0.0.0.0` must be chosen explicitly.
    pub host: String,
    pub port: u16,
    /// Largest accepted request body, in bytes (file uploads included).
    pub max_body_bytes: u64,
    /// Longest silence while a request body is read; the request then gets
    /// 408 `timeout` instead of holding its connection.
    pub request_body_timeout: GoDuration,
    /// Longest a client may take to send a request's line and headers (and
    /// the longest a kept-alive connection may sit idle); the connection is
    /// then closed. Responses being streamed are not affected.
    pub header_read_timeout: GoDuration,
    /// Origins allowed by CORS; empty disables CORS headers, `*` allows any.
    pub cors_origins: Vec<String>,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: GoDuration,
    /// Interval of the TTL reaper's safety sweep (expiries are also
    /// scheduled precisely).
    pub reaper_interval: GoDuration,
    /// Domain shown as `preview_domain` on sandboxes.
    pub preview_domain: String,
    /// Destroy every sandbox on shutdown instead of leaving them for the
    /// next start's reconciliation.
    pub destroy_on_shutdown: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 7423,
            max_body_bytes: 64 * 1024 * 1024,
            request_body_timeout: GoDuration::from_secs(30),
            header_read_timeout: GoDuration::from_secs(30),
            cors_origins: Vec::new(),
            shutdown_grace: GoDuration::from_secs(30),
            reaper_interval: GoDuration::from_secs(30),
            preview_domain: "localhost".into(),
            destroy_on_shutdown: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    /// `auto` picks native when healthy, else docker.
    pub default: String,
    /// How often the background prober refreshes provider health.
    pub health_interval: GoDuration,
    pub mock: MockProviderConfig,
    pub docker: stacyvm_providers::docker::DockerConfig,
    pub native: stacyvm_providers::native::NativeConfig,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            default: "auto".into(),
            health_interval: GoDuration::from_secs(15),
            mock: MockProviderConfig::default(),
            docker: Default::default(),
            native: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockProviderConfig {
    /// The mock isolates nothing: for tests and development only.
    pub enabled: bool,
    /// Where mock sandboxes live; defaults to `<data dir>/mock`.
    pub base_dir: Option<PathBuf>,
}

/// Spawn defaults and operational limits. A limit of 0 means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultsConfig {
    pub image: String,
    pub ttl: GoDuration,
    pub memory_mb: u32,
    pub vcpus: u32,
    pub max_ttl: GoDuration,
    pub default_exec_timeout: GoDuration,
    pub max_exec_timeout: GoDuration,
    pub max_sandboxes: u32,
    pub max_sandboxes_per_owner: u32,
    pub max_memory_mb: u32,
    pub max_vcpus: u32,
    /// Most bytes of each of stdout and stderr a non-streamed exec returns;
    /// the rest is dropped and the reply says `truncated: true`.
    pub max_exec_output_bytes: u64,
    /// Exec, file and terminal calls on a paused sandbox resume it first;
    /// when false they answer 409 `sandbox_paused`.
    pub auto_resume: bool,
    /// TTL while paused. `0s` (default): the clock keeps running, a paused
    /// sandbox expires when it would have running. Otherwise a pause also
    /// caps the expiry at pause time + `paused_ttl` (never extends it).
    pub paused_ttl: GoDuration,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            image: "alpine:latest".into(),
            ttl: GoDuration::from_secs(30 * 60),
            memory_mb: 512,
            vcpus: 1,
            max_ttl: GoDuration::from_secs(24 * 3600),
            default_exec_timeout: GoDuration::from_secs(60),
            max_exec_timeout: GoDuration::from_secs(3600),
            max_sandboxes: 100,
            max_sandboxes_per_owner: 0,
            max_memory_mb: 16 * 1024,
            max_vcpus: 16,
            max_exec_output_bytes: stacyvm_providers::DEFAULT_MAX_OUTPUT_BYTES as u64,
            auto_resume: true,
            paused_ttl: GoDuration::ZERO,
        }
    }
}

#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub enabled: bool,
    /// Secret: never logged, shown or put in an error.
    pub api_key: String,
    /// A second admin key (sent as `X-Admin-API-Key` or like any key).
    /// Secret, like `api_key`. Keys for owners live in the store
    /// (`stacyvm keys create`).
    pub admin_api_key: String,
    /// The secret stored API keys are hashed under (at least 32
    /// characters). Empty: a random one kept in `<data dir>/api-key-pepper`,
    /// which only this node has; with `database.driver: postgres` set it to
    /// the same value on every node, or a key would work only on the node
    /// that minted it. Secret, like `api_key`.
    pub key_pepper: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("api_key", &redacted(&self.api_key))
            .field("admin_api_key", &redacted(&self.admin_api_key))
            .field("key_pepper", &redacted(&self.key_pepper))
            .finish()
    }
}

fn redacted(s: &str) -> &'static str {
    if s.is_empty() { "" } else { REDACTED }
}

/// What secrets are replaced with wherever config is shown.
pub const REDACTED: &str = "<redacted>";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite` (embedded, default) or `postgres` (a shared database: the
    /// store of a cluster).
    pub driver: String,
    /// SQLite file. Its directory is also the data directory, whatever the
    /// driver (provider state, the mock's sandboxes, the node id).
    pub path: PathBuf,
    /// PostgreSQL connection URL (`postgres://user:password@host:5432/db`),
    /// for `driver: postgres`. Its password is a secret: it is never
    /// logged, shown or put in an error.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            driver: "sqlite".into(),
            path: default_data_dir().join("stacyvm.db"),
            url: String::new(),
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("driver", &self.driver)
            .field("path", &self.path)
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

/// `url` with the password of its user info and any `password=` query
/// parameter replaced by [`REDACTED`]; what may be shown of a database URL.
pub fn redact_url(url: &str) -> String {
    let (head, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}={REDACTED}")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{head}{authority}{tail}")
}

/// The password parts of a database URL (user info and `password=`), for
/// redaction checks.
fn url_passwords(url: &str) -> Vec<String> {
    let shown = redact_url(url);
    if shown == url {
        return Vec::new();
    }
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        out.push(password.to_string());
    }
    if let Some((_, query)) = rest.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=')
                && k.eq_ignore_ascii_case("password")
            {
                out.push(v.to_string());
            }
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// `~/.stacyvm`, or `./.stacyvm` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".stacyvm"))
        .unwrap_or_else(|| PathBuf::from(".stacyvm"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing filter.
    pub level: String,
    /// `pretty` or `json`.
    pub format: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
            format: "pretty".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events kept in memory for `Last-Event-ID` resume.
    pub history_size: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { history_size: 1000 }
    }
}

/// This server as a node of a cluster (`database.driver: postgres`);
/// ignored on a single host.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Stable id of this node; empty: generated once and kept in
    /// `<data dir>/node-id`.
    pub node_id: String,
    /// How other nodes reach this one (`http://10.0.0.5:7423`); empty:
    /// `http://<server.host>:<server.port>`.
    pub advertise_url: String,
    /// Labels a spawn's `node_selector` can match (`zone: a`).
    pub labels: BTreeMap<String, String>,
    /// Most sandboxes this node takes; 0 = unlimited.
    pub max_sandboxes: u32,
    /// Memory this node offers to sandboxes, in MiB; 0 = unlimited.
    pub memory_mb: u32,
    /// How long a node's registration holds without a heartbeat; after it
    /// lapses the node is `lost`.
    pub lease: GoDuration,
    /// How often the node renews its lease (at most half the lease).
    pub heartbeat_interval: GoDuration,
    /// Shared by every node, for node-to-node calls. Secret: never logged,
    /// shown or put in an error.
    pub secret: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: String::new(),
            advertise_url: String::new(),
            labels: BTreeMap::new(),
            max_sandboxes: 0,
            memory_mb: 0,
            lease: GoDuration::from_secs(15),
            heartbeat_interval: GoDuration::from_secs(5),
            secret: String::new(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("advertise_url", &self.advertise_url)
            .field("labels", &self.labels)
            .field("max_sandboxes", &self.max_sandboxes)
            .field("memory_mb", &self.memory_mb)
            .field("lease", &self.lease)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("secret", &redacted(&self.secret))
            .finish()
    }
}

/// Whether `id` can name a node: 1 to 63 of `[A-Za-z0-9._-]`.
pub fn valid_node_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    /// Whether this server is a cluster node (the store is shared).
    pub fn is_cluster(&self) -> bool {
        self.database.driver == "postgres"
    }

    /// `cluster.advertise_url`, or the listen address when it is empty.
    pub fn advertise_url(&self) -> String {
        let url = self.cluster.advertise_url.trim().trim_end_matches('/');
        if url.is_empty() {
            format!(
                "http://{}",
                SocketAddr::new(
                    self.server
                        .host
                        .parse()
                        .unwrap_or(IpAddr::from([127, 0, 0, 1])),
                    self.server.port,
                )
            )
        } else {
            url.to_string()
        }
    }
}

/// Paths tried when no `--config` is given, in order.
pub fn default_config_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("stacyvm.yaml")];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        paths.push(PathBuf::from(home).join(".stacyvm").join("config.yaml"));
    }
    paths
}

impl Config {
    /// Loads defaults, then the file (`explicit`, else the first default
    /// path that exists), then `STACYVM_*` variables from `env`.
    pub fn load(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let file = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => default_config_paths().into_iter().find(|p| p.is_file()),
        };
        let mut tree = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                parse_tree(&text, Some(path))?
            }
            None => Value::Mapping(Mapping::new()),
        };
        apply_env(&mut tree, env)?;
        let config = from_tree(tree, file.as_deref())?;
        config.validate()?;
        Ok((config, file))
    }

    /// Parses YAML text on top of the defaults (no environment).
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let config = from_tree(parse_tree(text, None)?, None)?;
        config.validate()?;
        Ok(config)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let ip: IpAddr = self.server.host.parse().map_err(|_| ConfigError::Invalid {
            key: "server.host".into(),
            message: format!("{:?} is not an IP address", self.server.host),
        })?;
        Ok(SocketAddr::new(ip, self.server.port))
    }

    /// The directory for provider state, caches and the mock's sandboxes.
    pub fn data_dir(&self) -> PathBuf {
        match self.database.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Checks what serde cannot: ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message,
            })
        };
        self.listen_addr()?;
        match self.database.driver.as_str() {
            "sqlite" => {}
            "postgres" => {
                let url = self.database.url.trim();
                if url.is_empty() {
                    return bad(
                        "database.url",
                        "must be set when database.driver is postgres".into(),
                    );
                }
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return bad(
                        "database.url",
                        format!(
                            "{} is not a postgres:// URL",
                            redact_url(&self.database.url)
                        ),
                    );
                }
            }
            other => {
                return bad(
                    "database.driver",
                    format!("unknown driver {other:?} (supported: sqlite, postgres)"),
                );
            }
        }
        if self.auth.enabled && self.auth.api_key.is_empty() && self.auth.admin_api_key.is_empty() {
            return bad(
                "auth.api_key",
                "must be set (or auth.admin_api_key) when auth.enabled is true".into(),
            );
        }
        if !self.auth.key_pepper.is_empty() && self.auth.key_pepper.len() < 32 {
            return bad(
                "auth.key_pepper",
                "must be at least 32 characters (or empty)".into(),
            );
        }
        if self.server.max_body_bytes == 0 {
            return bad("server.max_body_bytes", "must be greater than 0".into());
        }
        if self.server.request_body_timeout.is_zero() {
            return bad(
                "server.request_body_timeout",
                "must be greater than 0s".into(),
            );
        }
        if self.server.header_read_timeout.is_zero() {
            return bad(
                "server.header_read_timeout",
                "must be greater than 0s".into(),
            );
        }
        if self.defaults.ttl.is_zero() {
            return bad("defaults.ttl", "must be greater than 0s".into());
        }
        if !self.defaults.max_ttl.is_zero() && self.defaults.ttl > self.defaults.max_ttl {
            return bad(
                "defaults.ttl",
                format!(
                    "{} exceeds defaults.max_ttl {}",
                    self.defaults.ttl, self.defaults.max_ttl
                ),
            );
        }
        if self.defaults.default_exec_timeout.is_zero() {
            return bad(
                "defaults.default_exec_timeout",
                "must be greater than 0s".into(),
            );
        }
        if !self.defaults.max_exec_timeout.is_zero()
            && self.defaults.default_exec_timeout > self.defaults.max_exec_timeout
        {
            return bad(
                "defaults.default_exec_timeout",
                format!(
                    "{} exceeds defaults.max_exec_timeout {}",
                    self.defaults.default_exec_timeout, self.defaults.max_exec_timeout
                ),
            );
        }
        if self.defaults.max_exec_output_bytes == 0
            || usize::try_from(self.defaults.max_exec_output_bytes).is_err()
        {
            return bad(
                "defaults.max_exec_output_bytes",
                "must be at least 1 (the limit keeps the server's memory bounded)".into(),
            );
        }
        if self.defaults.memory_mb == 0 || self.defaults.vcpus == 0 {
            return bad(
                "defaults.memory_mb",
                "memory_mb and vcpus must be greater than 0".into(),
            );
        }
        if self.providers.health_interval.is_zero() || self.server.reaper_interval.is_zero() {
            return bad(
                "providers.health_interval",
                "intervals must be greater than 0s".into(),
            );
        }
        if let Err(message) = self.providers.docker.validate() {
            let (key, message) = message
                .split_once(": ")
                .unwrap_or(("providers.docker", &message));
            return bad(key, message.to_string());
        }
        if let Err(message) = self.providers.native.validate() {
            return bad("providers.native", message);
        }
        if let Err(message) = self.images.validate() {
            return bad("images", message);
        }
        let c = &self.cluster;
        if !c.node_id.is_empty() && !valid_node_id(&c.node_id) {
            return bad(
                "cluster.node_id",
                format!("{:?} is not 1 to 63 of A-Z a-z 0-9 . _ -", c.node_id),
            );
        }
        let url = c.advertise_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return bad(
                "cluster.advertise_url",
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
        if c.lease.is_zero() {
            return bad("cluster.lease", "must be greater than 0s".into());
        }
        if c.heartbeat_interval.is_zero() || c.heartbeat_interval.0 * 2 > c.lease.0 {
            return bad(
                "cluster.heartbeat_interval",
                format!(
                    "must be greater than 0s and at most half of cluster.lease ({})",
                    c.lease
                ),
            );
        }
        if self.events.history_size == 0 {
            return bad("events.history_size", "must be greater than 0".into());
        }
        if !matches!(self.logging.format.as_str(), "pretty" | "json") {
            return bad(
                "logging.format",
                format!("{:?} is not pretty or json", self.logging.format),
            );
        }
        Ok(())
    }

    /// The configuration as YAML with every secret replaced.
    pub fn redacted_yaml(&self) -> String {
        let mut shown = self.clone();
        let mut secrets = vec![
            &mut shown.auth.api_key,
            &mut shown.auth.admin_api_key,
            &mut shown.auth.key_pepper,
            &mut shown.cluster.secret,
        ];
        for c in shown.images.credentials.values_mut() {
            secrets.push(&mut c.username);
        }
        if let Some(r) = shown.providers.docker.registry.as_mut() {
            secrets.push(&mut r.username);
            secrets.push(&mut r.password);
        }
        for secret in secrets {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
        shown.database.url = redact_url(&shown.database.url);
        serde_yaml::to_string(&shown).unwrap_or_default()
    }

    /// Every secret value configured, for redaction checks.
    pub fn secrets(&self) -> Vec<String> {
        let mut all = vec![
            self.auth.api_key.clone(),
            self.auth.admin_api_key.clone(),
            self.auth.key_pepper.clone(),
            self.cluster.secret.clone(),
        ];
        all.extend(self.images.credentials.values().map(|c| c.password.clone()));
        if let Some(r) = &self.providers.docker.registry {
            all.push(r.password.clone());
        }
        all.extend(url_passwords(&self.database.url));
        all.retain(|s| !s.is_empty());
        all
    }
}

fn parse_tree(text: &str, origin: Option<&Path>) -> Result<Value, ConfigError> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
        origin: origin.map(Path::to_path_buf),
        message: e.to_string(),
    })?;
    match v {
        Value::Null => Ok(Value::Mapping(Mapping::new())),
        Value::Mapping(_) => Ok(v),
        _ => Err(ConfigError::Parse {
            origin: origin.map(Path::to_path_buf),
            message: "the top level must be a mapping".into(),
        }),
    }
}

fn from_tree(tree: Value, origin: Option<&Path>) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|e| {
        let key = e.path().to_string();
        // A type error quotes the value; never a secret's.
        let what = if is_secret_key(&key) {
            "invalid value (not shown: it is a secret)".to_string()
        } else {
            e.inner().to_string()
        };
        ConfigError::Parse {
            origin: origin.map(Path::to_path_buf),
            message: if key.is_empty() || key == "." {
                what
            } else {
                format!("{key}: {what}")
            },
        }
    })
}

/// Whether a dotted key names a secret (API keys, registry credentials).
fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    key.starts_with("images.credentials")
        || key == "database.url"
        || [
            "api_key",
            "admin_api_key",
            "key_pepper",
            "password",
            "username",
            "token",
            "secret",
        ]
        .contains(&last)
}

/// Every leaf key of the config schema (`server.port`, ...) with the type of
/// its default value, derived from the defaults so it never drifts.
fn leaf_keys() -> Vec<(Vec<String>, Value)> {
    fn walk(prefix: &mut Vec<String>, v: &Value, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            // An empty map (`cluster.labels`) is one key set as `k=v,k=v`.
            Value::Mapping(m) if !m.is_empty() => {
                for (k, child) in m {
                    if let Some(k) = k.as_str() {
                        prefix.push(k.to_string());
                        walk(prefix, child, out);
                        prefix.pop();
                    }
                }
            }
            _ => out.push((prefix.clone(), v.clone())),
        }
    }
    let defaults = serde_yaml::to_value(Config::default()).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk(&mut Vec::new(), &defaults, &mut out);
    out
}

/// The environment variable that overrides a key: `server.port` →
/// `STACYVM_SERVER_PORT`.
pub fn env_name(key: &[String]) -> String {
    format!("STACYVM_{}", key.join("_").to_uppercase())
}

fn apply_env(
    tree: &mut Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("STACYVM_"))
        .collect();
    if env.is_empty() {
        return Ok(());
    }
    for (key, default) in leaf_keys() {
        let Some(raw) = env.get(&env_name(&key)) else {
            continue;
        };
        let value = env_value(raw, &default).map_err(|message| ConfigError::Invalid {
            key: format!("{} (from {})", key.join("."), env_name(&key)),
            message,
        })?;
        set_path(tree, &key, value);
    }
    Ok(())
}

/// Converts an environment string to the YAML type the key expects.
fn env_value(raw: &str, default: &Value) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Bool(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Value::Bool(false)),
            other => Err(format!("{other:?} is not a boolean")),
        },
        Value::Number(_) => serde_yaml::from_str::<Value>(raw)
            .ok()
            .filter(Value::is_number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        Value::Mapping(_) => raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((
                    Value::String(k.trim().to_string()),
                    Value::String(v.trim().to_string()),
                )),
                _ => Err(format!("{kv:?} is not key=value")),
            })
            .collect::<Result<Mapping, String>>()
            .map(Value::Mapping),
        Value::Sequence(_) => Ok(Value::Sequence(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn set_path(tree: &mut Value, key: &[String], value: Value) {
    let mut node = tree;
    for (i, part) in key.iter().enumerate() {
        if !node.is_mapping() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else { return };
        let k = Value::String(part.clone());
        if i == key.len() - 1 {
            map.insert(k, value);
            return;
        }
        node = map
            .entry(k)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.listen_addr().unwrap().to_string(), "127.0.0.1:7423");
        assert_eq!(c.providers.default, "auto");
        assert!(!c.providers.mock.enabled);
    }

    #[test]
    fn a_bad_value_names_its_key_but_never_shows_a_secret() {
        let err = Config::load(None, env(&[("STACYVM_DEFAULTS_TTL", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("defaults.ttl"), "{err}");
        assert!(err.contains("soon"), "{err}");

        let err = Config::from_yaml("server:\n  port: many\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.port"), "{err}");

        // serde quotes a mistyped scalar; not when it is a secret.
        let err = Config::from_yaml("logging:\n  format: 987654321\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("987654321"), "{err}");
        let err = Config::from_yaml("auth:\n  api_key: 987654321\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.api_key"), "{err}");
        assert!(!err.contains("987654321"), "secret in the error: {err}");
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "server:\n  port: 8000\ndefaults:\n  ttl: 10m\n").unwrap();
        let (c, used) = Config::load(
            Some(&path),
            env(&[
                ("STACYVM_SERVER_PORT", "7500"),
                ("STACYVM_DATABASE_PATH", "/tmp/s.db"),
                ("STACYVM_PROVIDERS_MOCK_ENABLED", "true"),
                ("STACYVM_PROVIDERS_DEFAULT", "mock"),
                ("STACYVM_AUTH_API_KEY", "12345"),
                ("STACYVM_SERVER_CORS_ORIGINS", "http://a, http://b"),
                ("STACYVM_API_KEY", "client-side, ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(used.as_deref(), Some(path.as_path()));
        assert_eq!(c.server.port, 7500);
        assert_eq!(c.defaults.ttl.to_string(), "10m0s");
        assert_eq!(c.database.path, PathBuf::from("/tmp/s.db"));
        assert!(c.providers.mock.enabled);
        assert_eq!(c.providers.default, "mock");
        assert_eq!(c.auth.api_key, "12345");
        assert_eq!(c.server.cors_origins, vec!["http://a", "http://b"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_yaml("server:\n  prot: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
        let err = Config::from_yaml("bogus: 1\n").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_yaml("defaults:\n  ttl: soon\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
        let err = Config::load(None, env(&[("STACYVM_SERVER_PORT", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.port"), "{err}");
        let err = Config::from_yaml("auth:\n  enabled: true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.api_key"), "{err}");
        let err = Config::from_yaml("server:\n  host: nowhere\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.host"), "{err}");
        let err = Config::from_yaml("auth:\n  key_pepper: short\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.key_pepper") && !err.contains("short"),
            "{err}"
        );
    }

    #[test]
    fn show_redacts_secrets() {
        let c = Config::from_yaml(
            "auth:\n  enabled: true\n  api_key: s3cret-key\n  key_pepper: pepper-0123456789abcdef0123456789\n",
        )
        .unwrap();
        let shown = c.redacted_yaml();
        assert!(!shown.contains("s3cret-key"));
        assert!(!shown.contains("pepper-0123"));
        assert!(shown.contains(REDACTED));
        assert!(!format!("{c:?}").contains("s3cret-key"));
        assert!(!format!("{c:?}").contains("pepper-0123"));
        assert!(c.secrets().iter().any(|s| s.starts_with("pepper-0123")));
    }

    #[test]
    fn postgres_needs_a_url_whose_password_is_never_shown() {
        let err = Config::from_yaml("database:\n  driver: postgres\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        let err = Config::from_yaml("database:\n  driver: mysql\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.driver"), "{err}");
        let err =
            Config::from_yaml("database:\n  driver: postgres\n  url: mysql://u:pw-9f2@h/db\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("database.url") && !err.contains("pw-9f2"),
            "{err}"
        );

        let c = Config::from_yaml(
            "database:\n  driver: postgres\n  url: postgres://app:pw-9f2@db.example:5432/stacyvm?sslmode=require\n",
        )
        .unwrap();
        let shown = c.redacted_yaml();
        assert!(!shown.contains("pw-9f2"), "{shown}");
        assert!(
            shown.contains("postgres://app:<redacted>@db.example:5432/stacyvm?sslmode=require"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("pw-9f2"));
        assert_eq!(c.secrets(), vec!["pw-9f2".to_string()]);
        assert_eq!(
            redact_url("postgres://h/db?user=a&password=pw-1&x=y"),
            "postgres://h/db?user=a&password=<redacted>&x=y"
        );
        assert_eq!(redact_url("postgres://a@h/db"), "postgres://a@h/db");
        // From the environment, the driver and the URL alone.
        let (c, _) = Config::load(
            None,
            env(&[
                ("STACYVM_DATABASE_DRIVER", "postgres"),
                ("STACYVM_DATABASE_URL", "postgres://a:b@127.0.0.1/x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.driver, "postgres");
        assert_eq!(c.database.url, "postgres://a:b@127.0.0.1/x");
    }
}
