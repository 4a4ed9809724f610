//! [`NativeProvider`]: the `Provider` implementation over the image store,
//! overlay root filesystems, the OCI runtime and the in-sandbox agent.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stacyvm_core::{Capability, ErrorChain, NetworkMode, NetworkPolicy, SandboxId};
use tokio::sync::mpsc;

use super::config::{NativeConfig, NetworkMode as ConfigNetwork};
use super::image::ImageStore;
use super::network::{Egress, Leftovers};
use super::runtime::Runtime;
use super::{agent_client, agent_path, cgroup, dynmods, health, init, rootfs, spec};
use crate::hostfs::{HostFs, HostRooted};
use crate::lifecycle_marks::LifecycleMarks;
use crate::{
    ExecSession, ExecSpec, HealthReport, Private, Provider, ProviderError, ResourceUsage,
    RuntimeInfo, RuntimeStatus, SandboxFiles, SpawnSpec, StreamOptions,
};

/// Longest path a Unix socket address can hold.
const SUN_PATH_MAX: usize = 107;

/// How long destroy waits for a SIGKILLed init (and with it every process
/// of the sandbox) to exit before handing the container to the runtime.
const INIT_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What we record about a sandbox next to its bundle (`meta.json`), so a
/// restarted server can list and re-adopt it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    id: String,
    image: String,
    image_digest: String,
    created_at: DateTime<Utc>,
    memory_mb: u32,
    vcpus: u32,
    labels: BTreeMap<String, String>,
    metadata: BTreeMap<String, String>,
    /// The egress policy it runs under (older records: `none`).
    #[serde(default)]
    network: NetworkPolicy,
}

/// Where one sandbox's files live on the host.
#[derive(Debug, Clone)]
struct Paths {
    dir: PathBuf,
    bundle: PathBuf,
    rootfs: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    sock: PathBuf,
    /// Where the agent binds `sock` itself (runsc): mounted into the
    /// sandbox. `None`: the host binds it and passes the fd.
    socket_dir: Option<PathBuf>,
    init_pid: PathBuf,
    console: PathBuf,
    meta: PathBuf,
}

/// The native provider; cheap to clone.
#[derive(Debug, Clone)]
pub struct NativeProvider {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: NativeConfig,
    images: ImageStore,
    runtime: Runtime,
    /// The agent binary, found at construction.
    agent: Option<PathBuf>,
    /// Sandboxes being destroyed or destroyed by this process.
    marks: LifecycleMarks,
    /// What became of `cgroup_favor_dynmods` (for the config summary).
    favor_dynmods: String,
    /// Links, rules and proxies of sandboxes with network mode `allow`.
    egress: Egress,
}

impl NativeProvider {
    /// Builds the provider. Nothing is checked beyond the config: a host
    /// that cannot run sandboxes gets a provider whose [`Provider::health`]
    /// says what is missing.
    pub fn new(config: NativeConfig, images: ImageStore) -> Result<Self, ProviderError> {
        config.validate().map_err(ProviderError::InvalidInput)?;
        let bin =
            health::find_binary(&config.runtime).unwrap_or_else(|| PathBuf::from(&config.runtime));
        let runtime = Runtime::new(bin, config.data_dir.join("runtime"), config.network);
        let agent = agent_path::find(config.agent_path.as_deref()).ok();
        let egress = Egress::new(config.egress.clone(), config.data_dir.join("sandboxes"))
            .map_err(ProviderError::InvalidInput)?;
        let favor_dynmods = if config.cgroup_favor_dynmods {
            // The summary is shown to clients: the outcome, not the mount.
            match dynmods::ensure() {
                dynmods::Outcome::AlreadyOn(p) => {
                    tracing::debug!(mount = %p.display(), "cgroup favordynmods already on");
                    "on".to_string()
                }
                dynmods::Outcome::TurnedOn(p) => {
                    tracing::info!(mount = %p.display(), "remounted cgroup2 with favordynmods: sandboxes join their cgroups without an RCU wait (providers.native.cgroup_favor_dynmods: false to keep the host as is)");
                    "on (set by stacyvm)".to_string()
                }
                dynmods::Outcome::Unavailable(why) => {
                    tracing::debug!(reason = %why, "cgroup favordynmods not set");
                    format!("unavailable: {why}")
                }
                dynmods::Outcome::Refused(why) => {
                    tracing::warn!(reason = %why, "could not turn on cgroup favordynmods: each spawn waits ~10 ms longer for its cgroup move");
                    "unavailable: the remount was refused (see the server log)".to_string()
                }
            }
        } else {
            "off (disabled in config)".to_string()
        };
        Ok(NativeProvider {
            inner: Arc::new(Inner {
                config,
                images,
                runtime,
                agent,
                marks: LifecycleMarks::default(),
                favor_dynmods,
                egress,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NativeConfig {
        &self.inner.config
    }

    /// The image store sandboxes are created from.
    pub fn images(&self) -> &ImageStore {
        &self.inner.images
    }

    /// What of sandbox `id`'s network mode `allow` is still on the host
    /// (namespace, interface, nftables element, proxy, address); empty
    /// once it is destroyed. For leak checks.
    pub async fn network_leftovers(&self, id: &SandboxId) -> Leftovers {
        self.inner.egress.leftovers(id).await
    }

    /// The policy a spawn gets: the one asked for if this provider can give
    /// exactly that, the configured default when none is asked for.
    fn effective_network(
        &self,
        asked: Option<&NetworkPolicy>,
    ) -> Result<NetworkPolicy, ProviderError> {
        let c = &self.inner.config;
        let Some(policy) = asked else {
            return Ok(NetworkPolicy {
                mode: match c.network {
                    ConfigNetwork::None => NetworkMode::None,
                    ConfigNetwork::Host => NetworkMode::Host,
                },
                ..NetworkPolicy::default()
            });
        };
        crate::network_modes::refuse_unsupported("native", Some(policy), |mode| {
            self.mode_support(mode)
        })?;
        Ok(policy.clone())
    }

    /// Whether a spawn may ask for `mode`, and why not.
    fn mode_support(&self, mode: NetworkMode) -> Result<(), String> {
        let c = &self.inner.config;
        // gVisor's network is one global flag, set from providers.native.network.
        let gvisor = !self.inner.runtime.passes_fds();
        let global_host = c.network == ConfigNetwork::Host;
        match mode {
            NetworkMode::None if gvisor && global_host => Err(
                "with runtime runsc every sandbox has the network of providers.native.network (host)".into(),
            ),
            NetworkMode::None => Ok(()),
            NetworkMode::Host if !(c.egress.allow_host_mode || global_host) => Err(
                "it is off (providers.native.egress.allow_host_mode)".into(),
            ),
            NetworkMode::Host if gvisor && !global_host => Err(
                "with runtime runsc every sandbox has the network of providers.native.network (none)".into(),
            ),
            NetworkMode::Host => Ok(()),
            NetworkMode::Allow if gvisor => Err("not available with runtime runsc".into()),
            NetworkMode::Allow => Ok(()),
        }
    }

    fn paths(&self, id: &SandboxId) -> Paths {
        let dir = self
            .inner
            .config
            .data_dir
            .join("sandboxes")
            .join(id.as_str());
        // The host binds the agent's socket where the sandbox cannot reach
        // it; a runtime that cannot pass the fd (runsc) has the agent bind
        // it in a directory mounted into the sandbox.
        let socket_dir = (!self.inner.runtime.passes_fds()).then(|| dir.join("run"));
        Paths {
            bundle: dir.join("bundle"),
            rootfs: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            sock: socket_dir.as_ref().unwrap_or(&dir).join(spec::SOCKET_NAME),
            socket_dir,
            init_pid: dir.join("init.pid"),
            console: dir.join("console.log"),
            meta: dir.join("meta.json"),
            dir,
        }
    }

    /// The paths of a live sandbox, or `NotFound`/`Destroyed`.
    fn live(&self, id: &SandboxId) -> Result<Paths, ProviderError> {
        let p = self.paths(id);
        if p.meta.exists() && !self.inner.marks.is_destroying(id) {
            return Ok(p);
        }
        Err(self.inner.marks.gone(id))
    }

    async fn spawn_inner(&self, spec: &SpawnSpec, p: &Paths) -> Result<(), ProviderError> {
        let id = spec.id.as_str();
        let network = self.effective_network(spec.network.as_ref())?;
        // Found at start, or now if it was installed since.
        let agent = match &self.inner.agent {
            Some(a) => a.clone(),
            None => agent_path::find(self.inner.config.agent_path.as_deref()).map_err(|e| {
                ProviderError::unavailable_from(
                    "no usable stacyvm-agent (set providers.native.agent_path; see docs/native.md)",
                    e,
                )
            })?,
        };
        if p.sock.as_os_str().len() > SUN_PATH_MAX {
            return Err(ProviderError::unavailable_from(
                "providers.native.data_dir is too long for an agent socket path: use a shorter one",
                Private(format!("{} exceeds {SUN_PATH_MAX} bytes", p.sock.display())),
            ));
        }
        // The pull is async end to end; the host directories are made on
        // a blocking thread while it runs.
        let dirs = {
            let (sid, parent) = (
                spec.id.to_string(),
                self.inner.config.data_dir.join("sandboxes"),
            );
            let mut dirs = vec![
                p.bundle.clone(),
                p.rootfs.clone(),
                p.upper.clone(),
                p.work.clone(),
            ];
            dirs.extend(p.socket_dir.clone());
            blocking(move || {
                // Only root may reach sandbox files and agent sockets (a
                // socket is a root shell in the sandbox).
                std::fs::create_dir_all(&parent).map_err(|e| io_err(&sid, &parent, e))?;
                std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_err(&sid, &parent, e))?;
                for d in &dirs {
                    std::fs::create_dir_all(d).map_err(|e| io_err(&sid, d, e))?;
                }
                Ok(())
            })
        };
        // The link is made while the image is pulled.
        let dirs_and_link = async {
            dirs.await?;
            match network.mode {
                NetworkMode::Allow => self
                    .inner
                    .egress
                    .attach(&spec.id, &p.dir, &network)
                    .await
                    .map(Some),
                NetworkMode::None | NetworkMode::Host => Ok(None),
            }
        };
        let (image, netns) = tokio::join!(self.inner.images.ensure(&spec.image), dirs_and_link);
        let netns = netns?;
        let image = image?;
        let socket_dir = p.socket_dir.as_deref();
        self.inner.images.lease(id, &image).await?;
        let meta = Meta {
            id: id.to_string(),
            image: spec.image.clone(),
            image_digest: image.digest.clone(),
            created_at: Utc::now(),
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            labels: spec.labels.clone(),
            metadata: spec.metadata.clone(),
            network: network.clone(),
        };
        let layers = image.layers.clone();
        let (upper, work, target) = (p.upper.clone(), p.work.clone(), p.rootfs.clone());
        tokio::task::spawn_blocking(move || rootfs::mount_overlay(&layers, &upper, &work, &target))
            .await
            .map_err(|e| {
                ProviderError::internal(format!("cannot mount the root of sandbox {id}"), e)
            })?
            .map_err(|e| {
                ProviderError::internal(
                    format!("cannot mount the root of sandbox {id}"),
                    Private(e),
                )
            })?;

        let cgroups_path = cgroup::path_for(id);
        let oci = spec::build(&spec::SpecInput {
            hostname: id,
            rootfs: &p.rootfs,
            agent: &agent,
            listen: match socket_dir {
                Some(d) => spec::AgentListen::SocketDir(d),
                None => spec::AgentListen::Fd,
            },
            tty_signals: self.inner.runtime.needs_tty_signals(),
            cgroups_path: &cgroups_path,
            memory_mb: spec.memory_mb,
            vcpus: spec.vcpus,
            pids_limit: self.inner.config.pids_limit,
            network: match (&netns, network.mode) {
                (Some((path, _)), _) => spec::SpecNetwork::Join(path),
                (None, NetworkMode::Host) => spec::SpecNetwork::Host,
                (None, _) => spec::SpecNetwork::Private,
            },
            resolv_conf: netns.as_ref().map(|(_, resolv)| resolv.as_path()),
            seccomp: self.inner.config.seccomp,
            env: image.config.env.clone(),
            workdir: image.config.workdir.clone().filter(|w| !w.is_empty()),
        })
        .map_err(|e| {
            ProviderError::internal(format!("cannot build the bundle of sandbox {id}"), e)
        })?;
        let binds = socket_dir.is_none();
        let (config_json, sock, console, meta_path) = (
            p.bundle.join("config.json"),
            p.sock.clone(),
            p.console.clone(),
            p.meta.clone(),
        );
        let sid = spec.id.to_string();
        let (listener, console) = blocking(move || {
            let id = sid.as_str();
            oci.save(&config_json).map_err(|e| {
                ProviderError::internal(
                    format!("cannot write the bundle of sandbox {id}"),
                    Private::at(config_json.display(), e),
                )
            })?;
            let listener: Option<OwnedFd> = if binds {
                let _ = std::fs::remove_file(&sock);
                Some(
                    UnixListener::bind(&sock)
                        .map_err(|e| io_err(id, &sock, e))?
                        .into(),
                )
            } else {
                None
            };
            let console = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&console)
                .map_err(|e| io_err(id, &console, e))?;
            // Written before the container exists, so even a half-created
            // sandbox is listed by `inventory` and cleaned by `destroy`.
            write_meta(&meta_path, &meta)?;
            Ok((listener, console))
        })
        .await?;

        if let Err(msg) = self
            .inner
            .runtime
            .run_detached(id, &p.bundle, &p.init_pid, listener.as_ref(), console)
            .await
        {
            return Err(ProviderError::internal(
                format!("the OCI runtime could not start sandbox {id}"),
                Private(format!(
                    "{msg}: {}",
                    tail_async(&p.console, 5).await.join(" | ")
                )),
            ));
        }
        drop(listener);
        let timeout = Duration::from_millis(self.inner.config.start_timeout_ms);
        if let Err(e) = agent_client::wait_ready(&spec.id, &p.sock, timeout).await {
            let why = stacyvm_core::ErrorChain(&e).to_string();
            let console = tail_async(&p.console, 5).await.join(" | ");
            return Err(ProviderError::internal(
                format!("sandbox {id} did not start: its agent did not answer"),
                Private(format!("{why}: {console}")),
            ));
        }
        Ok(())
    }

    async fn destroy_inner(&self, id: &SandboxId) -> Result<(), ProviderError> {
        let p = self.paths(id);
        // Our own kill is much cheaper than the runtime's (see `init`); the
        // runtime's forced delete stays for what we cannot identify.
        let runtime = &self.inner.runtime;
        // Frozen tasks take no signal: thaw a paused sandbox first.
        if (cgroup::is_frozen(&cgroup::path_for(id.as_str())) || runtime.gvisor_paused(id).await)
            && let Err(e) = runtime.set_frozen(id.as_str(), false).await
        {
            tracing::debug!(sandbox_id = %id, error = %ErrorChain(&e), "thawing before destroy");
        }
        let stopped = if runtime.pid_file_is_init() {
            init::kill(&p.init_pid, &cgroup::path_for(id.as_str()), INIT_EXIT_TIMEOUT)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(sandbox_id = %id, error = %e, "stopping the sandbox init; leaving it to the runtime");
                    init::Stopped::Unknown
                })
        } else {
            init::Stopped::Unknown
        };
        match stopped {
            init::Stopped::Exited => {
                if let Err(e) = runtime.delete(id.as_str(), false).await {
                    tracing::debug!(sandbox_id = %id, error = %ErrorChain(&e), "plain delete failed; forcing");
                    runtime.delete(id.as_str(), true).await?;
                }
            }
            init::Stopped::Unknown => runtime.delete(id.as_str(), true).await?,
        }
        // No process holds the namespace any more.
        self.inner.egress.detach(id, &p.dir).await?;
        let (rootfs, dir, sid) = (p.rootfs.clone(), p.dir.clone(), id.to_string());
        tokio::task::spawn_blocking(move || -> Result<(), ProviderError> {
            let id = sid.as_str();
            let failed = || format!("cannot remove the root of sandbox {id}");
            rootfs::unmount_overlay(&rootfs)
                .map_err(|e| ProviderError::internal(failed(), Private(e)))?;
            // Never delete through a mount: that would reach image layers.
            if super::nsexec::is_mounted(&rootfs) {
                return Err(ProviderError::internal(
                    failed(),
                    Private(format!("{} is still mounted", rootfs.display())),
                ));
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io_err(id, &dir, e)),
            }
        })
        .await
        .map_err(|e| ProviderError::internal(format!("cannot destroy sandbox {id}"), e))??;
        // The lease goes now; collecting layers it alone kept (an image
        // removed while this sandbox ran) scans the whole cache under the
        // index lock, so it runs after destroy has answered. A collection
        // lost to a process exit happens at the next one.
        if let Err(e) = self.inner.images.drop_lease(id.as_str()).await {
            tracing::warn!(sandbox_id = %id, error = %ErrorChain(&e), "releasing image lease");
        }
        let images = self.inner.images.clone();
        tokio::spawn(async move {
            if let Err(e) = images.gc().await {
                tracing::warn!(error = %ErrorChain(&e), "image cache collection after destroy");
            }
        });
        Ok(())
    }

    fn agent_request(&self, spec: &ExecSpec, options: StreamOptions) -> stacyvm_agent::ExecRequest {
        stacyvm_agent::ExecRequest {
            protocol: stacyvm_agent::PROTOCOL_VERSION,
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            workdir: spec.workdir.clone(),
            timeout_ms: spec.timeout.as_millis() as u64,
            stdin: options.stdin || options.tty.is_some(),
            tty: options.tty.map(|t| stacyvm_agent::WindowSize {
                cols: t.cols,
                rows: t.rows,
            }),
        }
    }
}

/// Runs host file work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProviderError::internal("a host file task failed", e))?
}

/// A host file operation on sandbox `id`'s files failed; the path is for
/// the log only.
fn io_err(id: &str, path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::internal(
        format!("sandbox {id}: a host file operation failed"),
        Private::at(path.display(), e),
    )
}

fn write_meta(path: &Path, meta: &Meta) -> Result<(), ProviderError> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(meta)
        .map_err(|e| ProviderError::internal("cannot record the sandbox", e))?;
    std::fs::write(&tmp, data).map_err(|e| io_err(&meta.id, &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(&meta.id, path, e))
}

fn read_meta(path: &Path) -> Option<Meta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Most bytes [`tail`] reads from the end of a console log, however many
/// lines are asked for: a log grows for as long as its sandbox lives.
const TAIL_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The last `n` lines of a text file, read backwards from its end in
/// blocks until `n` lines are found (at most [`TAIL_MAX_BYTES`]): the cost
/// is that of the lines returned, not of the file. Blocking.
fn tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: u64 = 64 * 1024;
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let Ok(len) = f.seek(SeekFrom::End(0)) else {
        return Vec::new();
    };
    if n == 0 {
        return Vec::new();
    }
    let floor = len.saturating_sub(TAIL_MAX_BYTES);
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // One newline more than lines wanted, unless the file starts within
    // what was read (a final newline ends the last line, not a new one).
    while start > floor {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        let trailing = usize::from(buf.last() == Some(&b'\n'));
        if newlines >= n + trailing {
            break;
        }
        let from = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0u8; (start - from) as usize];
        if f.seek(SeekFrom::Start(from)).is_err() || f.read_exact(&mut block).is_err() {
            break;
        }
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    // A line cut by where reading started is not whole.
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// [`tail`] off the async workers.
async fn tail_async(path: &Path, n: usize) -> Vec<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || tail(&path, n))
        .await
        .unwrap_or_default()
}

fn runtime_status(status: &str) -> RuntimeStatus {
    match status {
        "running" => RuntimeStatus::Running,
        "paused" => RuntimeStatus::Paused,
        _ => RuntimeStatus::Stopped,
    }
}

impl NativeProvider {
    /// Pauses or resumes through the runtime; already in the wanted state
    /// is success.
    async fn freeze(&self, id: &SandboxId, frozen: bool) -> Result<(), ProviderError> {
        let want = if frozen { "paused" } else { "running" };
        match self.inner.runtime.state(id.as_str()).await? {
            None => return Err(ProviderError::Destroyed(id.to_string())),
            Some(s) if s.status == want => return Ok(()),
            Some(s) if s.status != "running" && s.status != "paused" => {
                return Err(ProviderError::Conflict(format!(
                    "sandbox {id} is {}, cannot {}",
                    s.status,
                    if frozen { "pause" } else { "resume" }
                )));
            }
            Some(_) => {}
        }
        self.inner.runtime.set_frozen(id.as_str(), frozen).await
    }
}

impl HostRooted for NativeProvider {
    fn host_fs(&self, id: &SandboxId) -> Result<HostFs, ProviderError> {
        Ok(HostFs::new(self.live(id)?.rootfs))
    }
}

#[async_trait]
impl Provider for NativeProvider {
    fn name(&self) -> &str {
        "native"
    }

    fn capabilities(&self) -> Vec<Capability> {
        let mut caps = crate::capabilities::container();
        caps.push(Capability::Pause);
        if self.mode_support(NetworkMode::Allow).is_ok() {
            caps.push(Capability::NetworkAllow);
        }
        if self.mode_support(NetworkMode::Host).is_ok() {
            caps.push(Capability::NetworkHost);
        }
        caps
    }

    fn hibernate_unavailable(&self) -> Option<String> {
        Some(crate::capabilities::hibernate_unavailable())
    }

    fn config_summary(&self) -> serde_json::Value {
        let c = &self.inner.config;
        let modes: Vec<NetworkMode> = [NetworkMode::None, NetworkMode::Allow, NetworkMode::Host]
            .into_iter()
            .filter(|m| self.mode_support(*m).is_ok())
            .collect();
        serde_json::json!({
            "runtime": c.runtime,
            "network": c.network,
            "network_modes": modes,
            "pids_limit": c.pids_limit,
            "seccomp": c.seccomp,
            "hybrid_cgroup_workaround": self.inner.runtime.hidden_mount().is_some(),
            "cgroup_favor_dynmods": self.inner.favor_dynmods,
        })
    }

    async fn spawn(&self, spec: &SpawnSpec) -> Result<(), ProviderError> {
        let p = self.paths(&spec.id);
        if p.dir.exists() {
            return Err(ProviderError::InvalidInput(format!(
                "sandbox {} already exists",
                spec.id
            )));
        }
        let started = std::time::Instant::now();
        match self.spawn_inner(spec, &p).await {
            Ok(()) => {
                self.inner.marks.spawned(&spec.id);
                tracing::debug!(sandbox_id = %spec.id, elapsed_ms = started.elapsed().as_millis() as u64, "native sandbox started");
                Ok(())
            }
            Err(e) => {
                if let Err(ce) = self.destroy_inner(&spec.id).await {
                    tracing::warn!(sandbox_id = %spec.id, error = %ErrorChain(&ce), "cleaning up a failed spawn");
                }
                Err(e)
            }
        }
    }

    async fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, ProviderError> {
        if !self.paths(id).meta.exists() {
            return Ok(RuntimeStatus::Missing);
        }
        Ok(match self.inner.runtime.state(id.as_str()).await? {
            Some(s) => runtime_status(&s.status),
            None => RuntimeStatus::Stopped,
        })
    }

    async fn destroy(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.inner.marks.destroying(id);
        let result = self.destroy_inner(id).await;
        self.inner.marks.destroy_ended(id, result.is_ok());
        result
    }

    async fn pause(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.live(id)?;
        self.freeze(id, true).await
    }

    async fn resume(&self, id: &SandboxId) -> Result<(), ProviderError> {
        self.live(id)?;
        self.freeze(id, false).await
    }

    async fn exec_stream(
        &self,
        id: &SandboxId,
        spec: &ExecSpec,
        options: StreamOptions,
    ) -> Result<ExecSession, ProviderError> {
        let p = self.live(id)?;
        spec.check_size()?;
        let req = self.agent_request(spec, options);
        let wants_input = req.stdin;
        let started = match agent_client::start(id, &p.sock, req).await {
            Ok(s) => s,
            // The agent goes first when a sandbox is destroyed.
            Err(e) => return Err(self.live(id).err().unwrap_or(e)),
        };
        let (out_tx, out_rx) = mpsc::channel(64);
        let (in_tx, in_rx) = if wants_input {
            let (tx, rx) = mpsc::channel(64);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        tokio::spawn(agent_client::pump(started, in_rx, out_tx, spec.timeout));
        Ok(ExecSession {
            input: in_tx,
            output: out_rx,
        })
    }

    fn files(&self) -> &dyn SandboxFiles {
        self
    }

    async fn logs(&self, id: &SandboxId, lines: usize) -> Result<Vec<String>, ProviderError> {
        let p = self.live(id)?;
        Ok(tail_async(&p.console, lines).await)
    }

    async fn health(&self) -> HealthReport {
        let c = &self.inner.config;
        let problems = health::problems(&c.runtime, c.agent_path.as_deref(), &c.data_dir);
        if problems.is_empty() {
            return HealthReport::ok();
        }
        let public: Vec<&str> = problems.iter().map(|p| p.public.as_str()).collect();
        let detail: Vec<&str> = problems
            .iter()
            .filter_map(|p| p.detail.as_deref())
            .collect();
        HealthReport::failed(public.join("; ")).with_detail(detail.join("; "))
    }

    async fn inventory(&self) -> Result<Option<Vec<RuntimeInfo>>, ProviderError> {
        let dir = self.inner.config.data_dir.join("sandboxes");
        let recorded = blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(ProviderError::internal(
                        "cannot list the native sandboxes",
                        Private::at(dir.display(), e),
                    ));
                }
            };
            Ok(entries
                .flatten()
                .filter_map(|e| {
                    let id = e.file_name().to_str().and_then(SandboxId::parse)?;
                    Some((id, read_meta(&e.path().join("meta.json"))?))
                })
                .collect::<Vec<_>>())
        })
        .await?;
        if recorded.is_empty() {
            return Ok(Some(Vec::new()));
        }
        // After a restart: links of mode `allow` get their rules and
        // proxies back before anything else touches them.
        if recorded
            .iter()
            .any(|(_, m)| m.network.mode == NetworkMode::Allow)
            && let Err(e) = self.inner.egress.ensure_ready().await
        {
            tracing::warn!(error = %ErrorChain(&e), "restoring the egress of mode allow sandboxes");
        }
        let states: BTreeMap<String, String> = self
            .inner
            .runtime
            .list()
            .await?
            .into_iter()
            .map(|s| (s.id, s.status))
            .collect();
        let mut out = Vec::new();
        for (id, meta) in recorded {
            let status = states
                .get(id.as_str())
                .map_or(RuntimeStatus::Stopped, |s| runtime_status(s));
            out.push(RuntimeInfo {
                id,
                status,
                image: meta.image,
                created_at: Some(meta.created_at),
                labels: meta.labels,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Some(out))
    }

    async fn network(&self, id: &SandboxId) -> Result<NetworkPolicy, ProviderError> {
        let p = self.live(id)?;
        let meta = blocking(move || Ok(read_meta(&p.meta))).await?;
        Ok(meta.map(|m| m.network).unwrap_or_default())
    }

    async fn set_network(
        &self,
        id: &SandboxId,
        policy: &NetworkPolicy,
    ) -> Result<(), ProviderError> {
        let p = self.live(id)?;
        let meta_path = p.meta.clone();
        let Some(mut meta) = blocking(move || Ok(read_meta(&meta_path))).await? else {
            return Err(self.inner.marks.gone(id));
        };
        if &meta.network == policy {
            return Ok(());
        }
        if meta.network.mode != NetworkMode::Allow || policy.mode != NetworkMode::Allow {
            return Err(ProviderError::InvalidInput(format!(
                "sandbox {id}: a running sandbox keeps its network mode ({:?}); only the entries of mode \"allow\" can change",
                meta.network.mode.as_str()
            )));
        }
        self.inner.egress.update(id, &p.dir, policy).await?;
        meta.network = policy.clone();
        let meta_path = p.meta.clone();
        blocking(move || write_meta(&meta_path, &meta)).await
    }

    async fn resource_usage(&self, id: &SandboxId) -> Result<Option<ResourceUsage>, ProviderError> {
        self.live(id)?;
        // Three small cgroup reads, but a cgroup file can block on a busy
        // kernel lock: keep them off the async workers like other file work.
        let rel = cgroup::path_for(id.as_str());
        tokio::task::spawn_blocking(move || cgroup::usage(&rel))
            .await
            .map_err(|e| ProviderError::internal("cannot read the sandbox's cgroup", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let (_d, path) = file_with(b"a\nb\nc\n");
        assert_eq!(tail(&path, 2), ["b", "c"]);
        assert_eq!(tail(&path, 10), ["a", "b", "c"]);
        assert!(tail(&path, 0).is_empty());
        let (_d, path) = file_with(b"a\nb\nno newline");
        assert_eq!(tail(&path, 2), ["b", "no newline"]);
        assert!(tail(Path::new("/nonexistent/console.log"), 3).is_empty());
    }

    /// Lines across block boundaries come out whole, and a huge log is
    /// read only as far back as the lines asked for.
    #[test]
    fn tail_reads_only_the_end_of_a_big_log() {
        let mut text = Vec::new();
        for i in 0..100_000 {
            text.extend_from_slice(format!("line {i:06} {}\n", "x".repeat(40)).as_bytes());
        }
        let (_d, path) = file_with(&text);
        let got = tail(&path, 3000);
        assert_eq!(got.len(), 3000);
        assert!(got[0].starts_with("line 097000 "), "{}", got[0]);
        assert!(got[2999].starts_with("line 099999 "), "{}", got[2999]);
        // Beyond the byte cap: whole lines from the cap on, never a cut one.
        let got = tail(&path, 1_000_000);
        assert!(got.len() < 100_000 && got.len() > 60_000, "{}", got.len());
        assert!(
            got[0].starts_with("line ") && got[0].len() == 52,
            "{}",
            got[0]
        );
    }
}
