//! `--compare-raw`: the same work without the orchestrator, to price it.
//!
//! - docker: spawn / exec `true` / destroy as direct Engine API calls
//!   (bollard), with the container settings the Docker provider uses.
//! - fork: a bare fork+exec of `true` on the host, the floor of any exec.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use futures::StreamExt;
use indicatif::ProgressBar;
use stacyvm_providers::docker::DockerConfig;

use super::raw_oci::Bundle;
use super::report::{BenchResult, Samples};
use super::scenarios::{Counts, fail};

/// Runtime-CLI containers: the bundle they run from, and their names.
type OciContainers = Vec<(Arc<Bundle>, String)>;

/// Containers created by the raw comparisons and not yet removed.
#[derive(Debug, Clone, Default)]
pub struct RawTracker {
    docker: Arc<Mutex<BTreeSet<String>>>,
    oci: Arc<Mutex<OciContainers>>,
}

impl RawTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.docker.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_oci(&self) -> std::sync::MutexGuard<'_, OciContainers> {
        self.oci.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_oci(&self, bundle: Arc<Bundle>, name: &str) {
        self.lock_oci().push((bundle, name.to_string()));
    }

    pub fn remove_oci(&self, name: &str) {
        self.lock_oci().retain(|(_, n)| n != name);
    }

    /// Force-removes every container still recorded.
    pub async fn cleanup(&self) -> usize {
        let mut n = 0;
        let oci: Vec<_> = self.lock_oci().drain(..).collect();
        for (bundle, name) in oci {
            let removed = tokio::task::spawn_blocking(move || bundle.delete(&name)).await;
            if matches!(removed, Ok(Ok(()))) {
                n += 1;
            }
        }
        let names: Vec<String> = self.lock().iter().cloned().collect();
        if names.is_empty() {
            return n;
        }
        let Ok(docker) = connect(&DockerConfig::default()) else {
            return n;
        };
        for name in names {
            if remove(&docker, &name).await.is_ok() {
                self.lock().remove(&name);
                n += 1;
            }
        }
        n
    }
}

fn connect(c: &DockerConfig) -> Result<Docker> {
    let addr = c.socket_address();
    let version = bollard::ClientVersion {
        major_version: 1,
        minor_version: 41,
    };
    let d = match addr.strip_prefix("unix://") {
        Some(path) => Docker::connect_with_unix(path, 120, &version),
        None if addr.starts_with('/') => Docker::connect_with_unix(&addr, 120, &version),
        None => Docker::connect_with_http(&addr, 120, &version),
    };
    d.with_context(|| format!("cannot reach docker daemon at {addr}"))
}

/// The provider's container settings with its default configuration
/// (see `stacyvm-providers/src/docker/lifecycle.rs`), minus the labels
/// that would make a server adopt the container.
fn create_body(c: &DockerConfig, image: &str, memory_mb: u64, vcpus: u64) -> ContainerCreateBody {
    let memory = (memory_mb > 0).then(|| (memory_mb * 1024 * 1024) as i64);
    ContainerCreateBody {
        image: Some(image.to_string()),
        entrypoint: Some(vec!["sleep".into(), "infinity".into()]),
        host_config: Some(HostConfig {
            memory,
            memory_swap: memory,
            nano_cpus: (vcpus > 0).then(|| (vcpus * 1_000_000_000) as i64),
            pids_limit: (c.pids_limit > 0).then_some(c.pids_limit),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(c.network_mode.clone()),
            runtime: Some(c.runtime.clone()),
            init: Some(c.init),
            readonly_rootfs: Some(c.read_only_rootfs),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    docker
        .remove_container(name, Some(opts))
        .await
        .with_context(|| format!("remove container {name}"))
}

/// `true` through the exec API, attached like the provider does it.
async fn exec_true(docker: &Docker, name: &str) -> Result<()> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["true".into()]),
        ..Default::default()
    };
    let created = docker
        .create_exec(name, config)
        .await
        .with_context(|| format!("exec in container {name}"))?;
    let opts = StartExecOptions {
        detach: false,
        ..Default::default()
    };
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&created.id, Some(opts)).await?
    {
        while output.next().await.is_some() {}
    }
    for _ in 0..250 {
        let info = docker.inspect_exec(&created.id).await?;
        if info.running != Some(true) {
            return match info.exit_code {
                Some(0) => Ok(()),
                code => bail!("exec in container {name}: true exited with {code:?}"),
            };
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("exec in container {name}: still running after 0.5 s")
}

/// Spawn, exec round trip and destroy with direct Engine API calls.
pub async fn docker(
    image: &str,
    memory_mb: u64,
    vcpus: u64,
    n: Counts,
    tracker: &RawTracker,
    pb: &ProgressBar,
) -> Result<Vec<BenchResult>> {
    let cfg = DockerConfig::default();
    let docker = connect(&cfg)?;
    docker
        .inspect_image(image)
        .await
        .with_context(|| format!("docker raw: image {image} is not present"))?;
    let body = create_body(&cfg, image, memory_mb, vcpus);
    let (mut spawn, mut exec, mut destroy) =
        (Samples::default(), Samples::default(), Samples::default());
    let pid = std::process::id();
    for i in 0..n.total() {
        pb.set_message("docker-raw: create+start / exec / remove");
        let measured = i >= n.warmup;
        let name = format!("stacyvm-bench-raw-{pid}-{i}");
        tracker.lock().insert(name.clone());
        let t = Instant::now();
        let made = async {
            let opts = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            docker.create_container(Some(opts), body.clone()).await?;
            docker.start_container(&name, None).await?;
            Ok::<_, bollard::errors::Error>(())
        }
        .await;
        let spawned = t.elapsed();
        match made {
            Ok(()) if measured => spawn.push(spawned),
            Ok(()) => {}
            Err(e) => fail(
                pb,
                measured,
                &mut spawn,
                &anyhow::anyhow!("docker raw spawn {name}: {e}"),
            ),
        }
        let t = Instant::now();
        match remove(&docker, &name).await {
            Ok(()) => {
                tracker.lock().remove(&name);
                if measured {
                    destroy.push(t.elapsed());
                }
            }
            Err(e) => fail(pb, measured, &mut destroy, &e),
        }
        pb.inc(1);
    }
    // The exec round trip in one long-lived container, like the API scenario.
    let name = format!("stacyvm-bench-raw-{pid}-exec");
    tracker.lock().insert(name.clone());
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    docker
        .create_container(Some(opts), body.clone())
        .await
        .with_context(|| format!("docker raw: create {name}"))?;
    docker
        .start_container(&name, None)
        .await
        .with_context(|| format!("docker raw: start {name}"))?;
    pb.set_message("docker-raw: exec round trip");
    for i in 0..n.total() {
        let measured = i >= n.warmup;
        let t = Instant::now();
        match exec_true(&docker, &name).await {
            Ok(()) if measured => exec.push(t.elapsed()),
            Ok(()) => {}
            Err(e) => fail(pb, measured, &mut exec, &e),
        }
        pb.inc(1);
    }
    remove(&docker, &name).await?;
    tracker.lock().remove(&name);
    Ok(vec![
        BenchResult::new("docker-raw", "spawn", &spawn),
        BenchResult::new("docker-raw", "exec", &exec),
        BenchResult::new("docker-raw", "destroy", &destroy),
    ])
}

/// A bare fork+exec of `true` on the host: the floor of any exec.
pub async fn fork_floor(n: Counts, pb: &ProgressBar) -> BenchResult {
    pb.set_message("fork: fork+exec of true");
    let mut s = Samples::default();
    for i in 0..n.total() {
        let r = tokio::task::spawn_blocking(|| {
            let t = Instant::now();
            let st = std::process::Command::new("true").status();
            (t.elapsed(), st)
        })
        .await;
        let measured = i >= n.warmup;
        match r {
            Ok((d, Ok(st))) if st.success() => {
                if measured {
                    s.push(d);
                }
            }
            Ok((_, Ok(st))) => fail(
                pb,
                measured,
                &mut s,
                &anyhow::anyhow!("true exited with {st}"),
            ),
            Ok((_, Err(e))) => fail(
                pb,
                measured,
                &mut s,
                &anyhow::anyhow!("cannot run true: {e}"),
            ),
            Err(e) => fail(
                pb,
                measured,
                &mut s,
                &anyhow::anyhow!("fork task failed: {e}"),
            ),
        }
        pb.inc(1);
    }
    BenchResult::new("fork", "exec", &s)
}

/// The orchestrator's overhead: provider p50 over raw p50, per scenario.
pub fn ratios(results: &mut [BenchResult], provider: &str, raw: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for scenario in ["spawn", "exec", "destroy"] {
        let raw_p50 = results
            .iter()
            .find(|r| r.provider == raw && r.scenario == scenario)
            .map(|r| r.p50_ms);
        let Some(raw_p50) = raw_p50.filter(|v| *v > 0.0) else {
            continue;
        };
        if let Some(r) = results
            .iter_mut()
            .find(|r| r.provider == provider && r.scenario == scenario)
            .filter(|r| r.p50_ms > 0.0)
        {
            let ratio = (r.p50_ms / raw_p50 * 1000.0).round() / 1000.0;
            *r = r.clone().with(&format!("vs_{raw}_p50"), ratio);
            notes.push(format!(
                "{provider} {scenario}: p50 {:.2} ms vs {raw} {:.2} ms = {ratio:.2}x ({:+.0}% overhead)",
                r.p50_ms,
                raw_p50,
                (ratio - 1.0) * 100.0
            ));
        }
    }
    notes
}
