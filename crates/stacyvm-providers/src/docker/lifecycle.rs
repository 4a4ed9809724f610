//! Container lifecycle: spawn (pulling the image when missing), status,
//! destroy, the label-based inventory, health, console logs and stats.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StatsOptions,
};
use chrono::{TimeZone, Utc};
use futures::StreamExt;
use stacyvm_core::SandboxId;

use super::client::{is_connection_error, is_no_such_container};
use super::{Inner, LABEL_MANAGED, LABEL_PREFIX, LABEL_SANDBOX_ID, container_name};
use crate::{HealthReport, ProviderError, ResourceUsage, RuntimeInfo, RuntimeStatus, SpawnSpec};

/// Keeps the container alive without a shell; docker-init (PID 1) forwards
/// SIGTERM to it and reaps the orphans of exec'd commands.
const KEEPALIVE: [&str; 2] = ["sleep", "infinity"];

/// Labels the provider owns; the rest of `stacyvm.*` are the spec's labels.
const RESERVED_LABELS: [&str; 3] = ["sandbox_id", "managed", "metadata"];

/// Directories kept writable when the root filesystem is read-only. They
/// are anonymous volumes rather than tmpfs because the archive API (file
/// transfer) sees volumes but not tmpfs mounts.
const WRITABLE_DIRS: [&str; 2] = ["/tmp", "/workspace"];

/// Splits `repo[:tag]` for a pull; digests are kept whole.
fn image_ref(image: &str) -> (String, Option<String>) {
    if image.contains('@') {
        return (image.to_string(), None);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rfind(':') {
        Some(i) => {
            let cut = image.len() - last.len() + i;
            (image[..cut].to_string(), Some(image[cut + 1..].to_string()))
        }
        None => (image.to_string(), Some("latest".to_string())),
    }
}

/// The labels recorded on a sandbox's container.
pub(crate) fn labels_for(spec: &SpawnSpec) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (format!("{LABEL_PREFIX}{k}"), v.clone()))
        .collect();
    labels
        .entry(format!("{LABEL_PREFIX}image"))
        .or_insert_with(|| spec.image.clone());
    labels.insert(LABEL_SANDBOX_ID.into(), spec.id.to_string());
    labels.insert(LABEL_MANAGED.into(), "true".into());
    let metadata = serde_json::to_string(&spec.metadata).unwrap_or_else(|_| "{}".into());
    labels.insert(format!("{LABEL_PREFIX}metadata"), metadata);
    labels
}

/// The spec labels (and `image`) back from a container's labels.
pub(crate) fn labels_from(all: &HashMap<String, String>) -> BTreeMap<String, String> {
    all.iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_PREFIX)?, v)))
        .filter(|(k, _)| !RESERVED_LABELS.contains(k))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl Inner {
    fn container_error(&self, e: bollard::errors::Error, id: &SandboxId) -> ProviderError {
        if is_no_such_container(&e) {
            return ProviderError::NotFound(format!("sandbox {id}"));
        }
        self.client.map(e, &format!("sandbox {id}"))
    }

    fn create_body(&self, spec: &SpawnSpec) -> ContainerCreateBody {
        let c = &self.config;
        let memory = (spec.memory_mb > 0).then(|| i64::from(spec.memory_mb) * 1024 * 1024);
        let mounts = c.read_only_rootfs.then(|| {
            WRITABLE_DIRS
                .iter()
                .map(|d| Mount {
                    target: Some((*d).to_string()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                })
                .collect()
        });
        let host_config = HostConfig {
            memory,
            // No swap beyond the memory limit.
            memory_swap: memory,
            nano_cpus: (spec.vcpus > 0).then(|| i64::from(spec.vcpus) * 1_000_000_000),
            pids_limit: (c.pids_limit > 0).then_some(c.pids_limit),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(c.network_mode.clone()),
            runtime: Some(c.runtime.clone()),
            init: Some(c.init),
            readonly_rootfs: Some(c.read_only_rootfs),
            mounts,
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: Some(spec.id.to_string()),
            entrypoint: Some(KEEPALIVE.iter().map(|s| s.to_string()).collect()),
            labels: Some(labels_for(spec)),
            host_config: Some(host_config),
            ..Default::default()
        }
    }

    async fn ensure_image(&self, image: &str) -> Result<(), ProviderError> {
        let docker = self.client.get()?;
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(self.client.map(e, &format!("image {image}"))),
        }
        tracing::info!(provider = %self.name, image, "pulling image");
        let (from_image, tag) = image_ref(image);
        let opts = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let credentials = self.config.registry.as_ref().map(|r| DockerCredentials {
            username: Some(r.username.clone()),
            password: Some(r.password.clone()),
            serveraddress: (!r.server.is_empty()).then(|| r.server.clone()),
            ..Default::default()
        });
        let mut pull = docker.create_image(Some(opts), None, credentials);
        while let Some(item) = pull.next().await {
            match item {
                Ok(_) => {}
                Err(e) if is_connection_error(&e) => return Err(self.client.unavailable(&e)),
                Err(e) => return Err(pull_error(image, &docker_message(&e))),
            }
        }
        Ok(())
    }

    pub(crate) async fn spawn(&self, spec: &SpawnSpec) -> Result<(), ProviderError> {
        if spec.image.trim().is_empty() {
            return Err(ProviderError::InvalidInput("empty image name".into()));
        }
        let network_mode = self.config.network_mode.clone();
        crate::network_modes::refuse_unsupported(
            "docker",
            spec.network.as_ref(),
            |mode| match mode {
                stacyvm_core::NetworkMode::None if network_mode == "none" => Ok(()),
                stacyvm_core::NetworkMode::None => Err(format!(
                    "providers.docker.network_mode is {network_mode:?}, not \"none\""
                )),
                _ => Err("the docker provider only offers mode \"none\" for now".into()),
            },
        )?;
        self.ensure_image(&spec.image).await?;
        let docker = self.client.get()?;
        let name = container_name(&spec.id);
        let opts = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        docker
            .create_container(Some(opts), self.create_body(spec))
            .await
            .map_err(|e| match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                } => ProviderError::InvalidInput(format!("sandbox {} already exists", spec.id)),
                e => self.client.map(e, &format!("sandbox {}", spec.id)),
            })?;
        if let Err(e) = docker.start_container(&name, None).await {
            let err = self.client.map(e, &format!("sandbox {}", spec.id));
            // Leave nothing half-made behind.
            if let Err(e) = self.destroy(&spec.id).await {
                tracing::warn!(sandbox_id = %spec.id, error = %stacyvm_core::ErrorChain(&e), "cleanup after failed start");
            }
            return Err(err);
        }
        Ok(())
    }

    pub(crate) async fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, ProviderError> {
        let docker = self.client.get()?;
        match docker.inspect_container(&container_name(id), None).await {
            Ok(info) => {
                let running = info.state.as_ref().and_then(|s| s.running) == Some(true);
                let paused = info.state.as_ref().and_then(|s| s.paused) == Some(true);
                Ok(match (running, paused) {
                    (true, true) => RuntimeStatus::Paused,
                    (true, false) => RuntimeStatus::Running,
                    _ => RuntimeStatus::Stopped,
                })
            }
            Err(e) if is_no_such_container(&e) => Ok(RuntimeStatus::Missing),
            Err(e) => Err(self.container_error(e, id)),
        }
    }

    /// The Engine's pause (cgroup freezer) or unpause; already in the
    /// wanted state is success.
    pub(crate) async fn set_paused(
        &self,
        id: &SandboxId,
        paused: bool,
    ) -> Result<(), ProviderError> {
        let want = if paused {
            RuntimeStatus::Paused
        } else {
            RuntimeStatus::Running
        };
        match self.status(id).await? {
            RuntimeStatus::Missing => return Err(ProviderError::Destroyed(id.to_string())),
            RuntimeStatus::Stopped => {
                return Err(ProviderError::Conflict(format!(
                    "sandbox {id} is not running, cannot {}",
                    if paused { "pause" } else { "resume" }
                )));
            }
            s if s == want => return Ok(()),
            _ => {}
        }
        let docker = self.client.get()?;
        let name = container_name(id);
        let result = if paused {
            docker.pause_container(&name).await
        } else {
            docker.unpause_container(&name).await
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_container(&e) => Err(ProviderError::Destroyed(id.to_string())),
            Err(e) => Err(self.container_error(e, id)),
        }
    }

    pub(crate) async fn destroy(&self, id: &SandboxId) -> Result<(), ProviderError> {
        let docker = self.client.get()?;
        // A forced remove of a paused container can fail (gVisor's runsc
        // cannot kill a paused sandbox under load): thaw it first.
        if matches!(self.status(id).await, Ok(RuntimeStatus::Paused))
            && let Err(e) = docker.unpause_container(&container_name(id)).await
            && !is_no_such_container(&e)
        {
            tracing::debug!(sandbox_id = %id, error = %e, "unpausing before destroy");
        }
        let opts = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker
            .remove_container(&container_name(id), Some(opts))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_container(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => Err(self.container_error(e, id)),
        }
    }

    pub(crate) async fn inventory(&self) -> Result<Vec<RuntimeInfo>, ProviderError> {
        let docker = self.client.get()?;
        let opts = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_MANAGED}=true")],
            )])),
            ..Default::default()
        };
        let list = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.client.map(e, "container list"))?;
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let Some(id) = labels
                .get(LABEL_SANDBOX_ID)
                .and_then(|s| SandboxId::parse(s))
            else {
                continue;
            };
            use bollard::models::ContainerSummaryStateEnum as S;
            let status = match c.state {
                Some(S::RUNNING) => RuntimeStatus::Running,
                Some(S::PAUSED) => RuntimeStatus::Paused,
                _ => RuntimeStatus::Stopped,
            };
            let spec_labels = labels_from(&labels);
            out.push(RuntimeInfo {
                id,
                status,
                image: spec_labels
                    .get("image")
                    .cloned()
                    .or(c.image)
                    .unwrap_or_default(),
                created_at: c.created.and_then(|t| Utc.timestamp_opt(t, 0).single()),
                labels: spec_labels,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub(crate) async fn health(&self) -> HealthReport {
        let docker = match self.client.get() {
            Ok(d) => d,
            Err(e) => return unhealthy(e),
        };
        let ping = tokio::time::timeout(Duration::from_secs(5), docker.ping()).await;
        match ping {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return unhealthy(self.client.map(e, "ping")),
            Err(_) => {
                return HealthReport::failed(
                    "the docker daemon (providers.docker.socket) did not answer a ping within 5s",
                )
                .with_detail(format!("daemon at {}", self.client.socket()));
            }
        }
        // A runtime the daemon does not know would fail every spawn.
        match tokio::time::timeout(Duration::from_secs(5), docker.info()).await {
            Ok(Ok(info)) => {
                let known = info
                    .runtimes
                    .as_ref()
                    .is_some_and(|r| r.contains_key(&self.config.runtime));
                if !known {
                    return HealthReport::failed(format!(
                        "docker runtime {} (providers.docker.runtime) is not registered with the daemon; register it in the daemon's daemon.json (runsc: install gVisor, see docs/docker.md)",
                        self.config.runtime,
                    ))
                    .with_detail(format!("daemon at {}", self.client.socket()));
                }
                HealthReport::ok()
            }
            Ok(Err(e)) => unhealthy(self.client.map(e, "info")),
            Err(_) => HealthReport::failed(
                "the docker daemon (providers.docker.socket) did not answer /info within 5s",
            )
            .with_detail(format!("daemon at {}", self.client.socket())),
        }
    }

    pub(crate) async fn logs(
        &self,
        id: &SandboxId,
        lines: usize,
    ) -> Result<Vec<String>, ProviderError> {
        let docker = self.client.get()?;
        if lines == 0 {
            // Still report a missing sandbox.
            self.status(id).await.and_then(|s| match s {
                RuntimeStatus::Missing => Err(ProviderError::NotFound(format!("sandbox {id}"))),
                _ => Ok(()),
            })?;
            return Ok(Vec::new());
        }
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let mut stream = docker.logs(&container_name(id), Some(opts));
        let mut text = Vec::new();
        while let Some(item) = stream.next().await {
            let chunk = item.map_err(|e| self.container_error(e, id))?;
            text.extend_from_slice(&chunk.into_bytes());
        }
        let all: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_string)
            .collect();
        let skip = all.len().saturating_sub(lines);
        Ok(all.into_iter().skip(skip).collect())
    }

    pub(crate) async fn resource_usage(
        &self,
        id: &SandboxId,
    ) -> Result<Option<ResourceUsage>, ProviderError> {
        let docker = self.client.get()?;
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = docker.stats(&container_name(id), Some(opts));
        let Some(item) = stream.next().await else {
            return Ok(None);
        };
        let s = item.map_err(|e| self.container_error(e, id))?;
        let cpu_ns = s
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0);
        Ok(Some(ResourceUsage {
            cpu_seconds: cpu_ns as f64 / 1e9,
            memory_bytes: s.memory_stats.as_ref().and_then(|m| m.usage).unwrap_or(0),
            pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        }))
    }
}

/// What a failed pull means for the client: the registry does not know
/// the image (404), or it failed or could not be reached (502). The
/// daemon reports both as text.
fn pull_error(image: &str, message: &str) -> ProviderError {
    let m = message.to_ascii_lowercase();
    let unknown = [
        "manifest unknown",
        "name unknown",
        "not found",
        "repository does not exist",
        "pull access denied",
    ];
    if unknown.iter().any(|u| m.contains(u)) {
        return ProviderError::NotFound(format!("image {image}"));
    }
    ProviderError::upstream(
        format!("cannot pull image {image}: {}", message.trim()),
        None,
    )
}

/// A failed health check from an error: its public message for clients,
/// its whole chain (with the daemon address) for the log.
fn unhealthy(e: ProviderError) -> HealthReport {
    let detail = stacyvm_core::ErrorChain(&e).to_string();
    let public = match e {
        ProviderError::Unavailable { message, .. } => message,
        e => e.to_string(),
    };
    HealthReport::failed(public).with_detail(detail)
}

fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_references() {
        assert_eq!(
            image_ref("busybox"),
            ("busybox".into(), Some("latest".into()))
        );
        assert_eq!(image_ref("a/b:1.2"), ("a/b".into(), Some("1.2".into())));
        assert_eq!(
            image_ref("reg.example:5000/a/b"),
            ("reg.example:5000/a/b".into(), Some("latest".into()))
        );
        assert_eq!(image_ref("a@sha256:00"), ("a@sha256:00".into(), None));
    }

    #[test]
    fn pull_errors_say_unknown_image_or_registry_failure() {
        let e = pull_error(
            "127.0.0.1:5000/nope:1",
            "manifest for 127.0.0.1:5000/nope:1 not found: manifest unknown: manifest unknown",
        );
        assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");
        let e = pull_error(
            "127.0.0.1:5999/x:1",
            "Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused",
        );
        assert!(matches!(e, ProviderError::Upstream { .. }), "{e:?}");
        assert!(e.to_string().contains("connection refused"), "{e}");
    }

    #[test]
    fn labels_round_trip() {
        let spec = SpawnSpec {
            id: SandboxId::parse("sb-0123456789ab").unwrap(),
            image: "img:1".into(),
            memory_mb: 64,
            vcpus: 1,
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            labels: BTreeMap::from([("owner".into(), "alice".into())]),
            network: None,
        };
        let l = labels_for(&spec);
        assert_eq!(l[LABEL_SANDBOX_ID], "sb-0123456789ab");
        assert_eq!(l[LABEL_MANAGED], "true");
        assert_eq!(l["stacyvm.metadata"], r#"{"k":"v"}"#);
        let back = labels_from(&l);
        assert_eq!(back.get("owner").map(String::as_str), Some("alice"));
        assert_eq!(back.get("image").map(String::as_str), Some("img:1"));
        assert!(!back.contains_key("sandbox_id"));
    }
}
