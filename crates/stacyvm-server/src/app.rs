//! Wiring: from a `Config` to a running server. `main` stays thin and
//! tests start the real server from here on `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stacyvm_providers::Provider;
use stacyvm_store::{PostgresStore, SqliteStore, Store};
use tokio::net::TcpListener;

use crate::api::{self, AppState, AuthSettings, HttpOptions};
use crate::config::Config;
use crate::events::EventBus;
use crate::manager::{Clock, Manager, ManagerOptions, SystemClock, check_provider};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the database: {0}")]
    Store(#[from] stacyvm_store::StoreError),
    #[error("{0}")]
    Providers(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manager(#[from] crate::manager::ManagerError),
    #[error(transparent)]
    NodeId(#[from] crate::cluster::NodeIdError),
    #[error("cannot set up the E2B API: {0}")]
    E2b(std::io::Error),
    #[error("cannot set up api keys: {0}")]
    Keys(String),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// A built server: the manager and the router, not yet listening.
#[derive(Debug)]
pub struct App {
    pub manager: Manager,
    pub router: axum::Router,
    pub config: Config,
}

/// Builds the providers enabled in `config`, in preference order.
pub fn build_providers(config: &Config) -> Result<Vec<Arc<dyn Provider>>, StartError> {
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    if config.providers.native.enabled {
        match native_provider(config) {
            Ok(p) => providers.push(Arc::new(p)),
            // A host where the image cache cannot even be opened cannot run
            // native sandboxes; say why and let `auto` fall back.
            Err(e) => tracing::warn!(error = %e, "native provider disabled"),
        }
    }
    if config.providers.docker.enabled {
        let docker =
            stacyvm_providers::docker::DockerProvider::new(config.providers.docker.clone())
                .map_err(|e| {
                    StartError::Providers(format!("cannot set up the docker provider: {e}"))
                })?;
        providers.push(Arc::new(docker));
    }
    if config.providers.mock.enabled {
        tracing::warn!(
            "the mock provider is enabled: its sandboxes are plain host directories and processes with NO isolation; use it only for tests and development"
        );
        let base = config
            .providers
            .mock
            .base_dir
            .clone()
            .unwrap_or_else(|| config.data_dir().join("mock"));
        let mock = stacyvm_providers::mock::MockProvider::new(base)
            .map_err(|e| StartError::Providers(format!("cannot set up the mock provider: {e}")))?;
        providers.push(Arc::new(mock));
    }
    Ok(providers)
}

fn native_provider(config: &Config) -> Result<stacyvm_providers::native::NativeProvider, String> {
    use stacyvm_providers::native::{NativeProvider, image::ImageStore};
    let native = &config.providers.native;
    let images =
        ImageStore::open(native.data_dir.join("images"), config.images.clone()).map_err(|e| {
            format!(
                "cannot open the image store under {}: {e}",
                native.data_dir.display()
            )
        })?;
    NativeProvider::new(native.clone(), images).map_err(|e| e.to_string())
}

/// Picks the default provider: the configured name, or for `auto` the first
/// healthy real provider (native, then docker). The mock is never picked
/// by `auto`.
async fn resolve_default(
    config: &Config,
    providers: &[Arc<dyn Provider>],
) -> Result<String, StartError> {
    let wanted = config.providers.default.trim();
    if wanted != "auto" {
        return providers
            .iter()
            .find(|p| p.name() == wanted)
            .map(|p| p.name().to_string())
            .ok_or_else(|| {
                StartError::Providers(format!(
                    "providers.default is {wanted:?} but that provider is not enabled (enabled: {})",
                    names(providers)
                ))
            });
    }
    let mut problems = Vec::new();
    for name in ["native", "docker"] {
        let Some(p) = providers.iter().find(|p| p.name() == name) else {
            continue;
        };
        let h = check_provider(p.as_ref(), false).await;
        if h.healthy {
            return Ok(name.to_string());
        }
        problems.push(format!("{name}: {}", h.error.unwrap_or_default()));
    }
    Err(StartError::Providers(format!(
        "no usable provider for providers.default=auto. {} Install crun (apt-get install crun) and run as root for the native provider, or start a Docker daemon for the docker provider; for development only, set providers.mock.enabled=true and providers.default=mock",
        if problems.is_empty() {
            "Neither native nor docker is enabled.".to_string()
        } else {
            format!("Checked: {}.", problems.join("; "))
        }
    )))
}

fn names(providers: &[Arc<dyn Provider>]) -> String {
    let v: Vec<_> = providers.iter().map(|p| p.name()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Opens the store, builds providers and the manager, checks provider
/// health and reconciles persisted sandboxes.
pub async fn build(config: Config, extra: Vec<Arc<dyn Provider>>) -> Result<App, StartError> {
    config.validate()?;
    let store = open_store(&config).await?;
    build_with_store(config, store, extra, Arc::new(SystemClock)).await
}

/// Opens the store `database.driver` names and brings its schema up to
/// date. Errors never repeat the PostgreSQL URL (it may hold a password).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(match config.database.driver.as_str() {
        "postgres" => {
            let store = PostgresStore::connect(config.database.url.trim()).await?;
            tracing::info!(
                url = %crate::config::redact_url(&config.database.url),
                "using the postgres store"
            );
            Arc::new(store)
        }
        _ => Arc::new(SqliteStore::open(&config.database.path).await?),
    })
}

/// Like [`build`] with the store and clock given (tests).
pub async fn build_with_store(
    config: Config,
    store: Arc<dyn Store>,
    extra: Vec<Arc<dyn Provider>>,
    clock: Arc<dyn Clock>,
) -> Result<App, StartError> {
    let keys = if config.auth.key_pepper.is_empty() {
        let pepper = crate::keys::load_pepper(&config.data_dir().join("api-key-pepper"))
            .map_err(|e| StartError::Keys(e.to_string()))?;
        if config.database.driver == "postgres" {
            tracing::warn!(
                "auth.key_pepper is not set: with a shared database, stored API keys \
                 cannot be minted (a key would work only on this node)"
            );
            crate::keys::Keyring::node_local(store.clone(), pepper)
        } else {
            crate::keys::Keyring::new(store.clone(), pepper)
        }
    } else {
        crate::keys::Keyring::new(store.clone(), config.auth.key_pepper.as_bytes().to_vec())
    };
    let mut providers = build_providers(&config)?;
    providers.extend(extra);
    let default_provider = resolve_default(&config, &providers).await?;
    let node = crate::cluster::node_settings(&config)?;
    let manager = Manager::new(ManagerOptions {
        store,
        providers,
        default_provider,
        limits: config.defaults.clone(),
        events: EventBus::new(config.events.history_size),
        clock,
        health_interval: config.providers.health_interval.0,
        reaper_interval: config.server.reaper_interval.0,
        preview_domain: Some(config.server.preview_domain.clone()).filter(|d| !d.is_empty()),
        node,
    })?;
    manager.refresh_health().await;
    manager.register_node().await?;
    let report = manager.reconcile().await?;
    tracing::info!(?report, "startup reconciliation done");
    let state = AppState {
        manager: manager.clone(),
        auth: Arc::new(AuthSettings {
            enabled: config.auth.enabled,
            api_key: config.auth.api_key.clone(),
            admin_api_key: config.auth.admin_api_key.clone(),
        }),
        keys,
        forwarder: forwarder(&config, &manager)?,
    };
    let e2b = if config.e2b.enabled {
        let e2b = api::e2b::E2b::new(&config).map_err(StartError::E2b)?;
        api::e2b::router(e2b)
    } else {
        axum::Router::new()
    };
    let router = api::router_with(
        state,
        &HttpOptions {
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: config.server.request_body_timeout.0,
            cors_origins: config.server.cors_origins.clone(),
        },
        e2b,
    );
    Ok(App {
        manager,
        router,
        config,
    })
}

impl App {
    /// Serves until `shutdown` resolves, then drains in-flight requests and
    /// stops background tasks. Sandboxes are left running for the next
    /// start's reconciliation unless `server.destroy_on_shutdown` is set.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let tasks = self.manager.start_background();
        let grace: Duration = self.config.server.shutdown_grace.0;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, default_provider = %self.manager.default_provider(), "stacyvm listening");
        }
        let manager = self.manager.clone();
        let shutdown = async move {
            shutdown.await;
            // A cluster node takes no new sandboxes from here on.
            manager.drain_local().await;
            // Stop background work and end event streams before draining.
            manager.shutdown();
        };
        let opts = api::ServeOptions {
            header_read_timeout: self.config.server.header_read_timeout.0,
            grace,
        };
        let result = api::serve(listener, self.router, shutdown, opts).await;
        self.manager.shutdown();
        for t in tasks {
            let _ = t.await;
        }
        if self.config.server.destroy_on_shutdown {
            let n = self.manager.destroy_all().await;
            tracing::info!(destroyed = n, "destroyed sandboxes on shutdown");
        }
        self.manager.store().ping().await.ok();
        result.map_err(StartError::from)
    }
}

/// The cluster forwarder: on a node with `cluster.secret`. Without the
/// secret a node serves only its own sandboxes' runtimes (and says so).
fn forwarder(
    config: &Config,
    manager: &Manager,
) -> Result<Option<Arc<crate::cluster::forward::Forwarder>>, StartError> {
    let Some(node) = manager.local_node() else {
        return Ok(None);
    };
    if config.cluster.secret.is_empty() {
        tracing::warn!(
            "cluster.secret is not set: requests for another node's sandbox are not forwarded"
        );
        return Ok(None);
    }
    // Bounded: the longest exec this node allows, plus a margin.
    let longest = match config.defaults.max_exec_timeout.0 {
        d if d.is_zero() => Duration::from_secs(3600),
        d => d,
    };
    crate::cluster::forward::Forwarder::new(
        node,
        &config.cluster.secret,
        longest + Duration::from_secs(60),
    )
    .map(|f| Some(Arc::new(f)))
    .map_err(StartError::Providers)
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, StartError> {
    let addr = config.listen_addr()?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen {
            addr: addr.to_string(),
            source,
        })
}
