//! Image store configuration: registries, mirrors, credentials, platform.
//! Deserializable so the server's config file can embed it as a section.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// How the image store reaches registries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Mirrors per registry host, tried in order before the registry itself,
    /// e.g. `{"docker.io": ["mirror.example:5000"]}`.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Registries spoken to over plain HTTP (`host:port`), for local use,
    /// e.g. `["127.0.0.1:5000"]`. Everything else uses HTTPS.
    pub insecure_registries: Vec<String>,
    /// Credentials per registry host (`docker.io`, `127.0.0.1:5001`, a mirror).
    pub credentials: BTreeMap<String, RegistryCredential>,
    /// Platform picked from manifest lists, `os/arch` (default `linux/amd64`
    /// on x86_64 hosts, `linux/arm64` on aarch64 hosts).
    pub platform: String,
    /// Layers downloaded and unpacked at once during one pull.
    pub max_concurrent_layers: usize,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            mirrors: BTreeMap::new(),
            insecure_registries: Vec::new(),
            credentials: BTreeMap::new(),
            platform: default_platform().to_owned(),
            max_concurrent_layers: 3,
        }
    }
}

fn default_platform() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "linux/arm64",
        _ => "linux/amd64",
    }
}

impl ImageConfig {
    /// Checks the values that serde cannot; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let Some((os, arch)) = self.platform.split_once('/') else {
            return Err(format!(
                "images.platform {:?} must be os/arch, e.g. linux/amd64",
                self.platform
            ));
        };
        if os.is_empty() || arch.is_empty() {
            return Err(format!("images.platform {:?} is incomplete", self.platform));
        }
        if self.max_concurrent_layers == 0 {
            return Err("images.max_concurrent_layers must be at least 1".into());
        }
        for (host, cred) in &self.credentials {
            if cred.username.is_empty() {
                return Err(format!("images.credentials.{host}.username is empty"));
            }
        }
        Ok(())
    }

    /// `(os, arch, variant)` of the configured platform.
    pub(crate) fn platform_parts(&self) -> (&str, &str, Option<&str>) {
        let mut it = self.platform.splitn(3, '/');
        let os = it.next().unwrap_or("linux");
        let arch = it.next().unwrap_or("amd64");
        (os, arch, it.next())
    }
}

/// A username/password pair for one registry. `Debug` never shows the
/// password, and nothing in the image store logs or formats it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    pub username: String,
    /// Password or access token; redacted from every diagnostic and never
    /// serialized (so `config show` cannot print it).
    #[serde(default, skip_serializing)]
    pub password: String,
}

impl RegistryCredential {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryCredential {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}
