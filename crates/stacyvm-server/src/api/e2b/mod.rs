//! The E2B-compatible API (`e2b.enabled`): E2B's control plane
//! (`/sandboxes`, `/v2/sandboxes`, ...) and the envd surface its SDKs talk
//! to inside a sandbox (`/health`, `/files`, `process.Process/*`,
//! `filesystem.Filesystem/*`), served on the main listener next to
//! `/api/v1`. Both are translated onto the [`Manager`](crate::manager::Manager)
//! on the host: no E2B daemon runs in the sandbox. See docs/e2b.md.
//!
//! envd requests are routed to a sandbox by the `E2b-Sandbox-Id` header,
//! else by a `<port>-<sandbox id>.<domain>` Host, else by the sandbox's
//! access token (SDKs before 2.25.1 send only `X-Access-Token` after
//! `Sandbox.connect()`).

mod connect;
mod control;
mod envd;
mod process;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use stacyvm_core::SandboxId;

use super::AppState;
use crate::config::Config;

pub use token::Tokens;

/// The envd version reported to SDKs. Its features, as the SDKs gate them
/// on it, are all served: default user (0.4.0), `close_stdin` (0.5.2) and
/// `application/octet-stream` uploads (0.5.7).
pub const ENVD_VERSION: &str = "0.5.7";

/// The `clientID` of every sandbox: E2B's node id, meaningless here.
const CLIENT_ID: &str = "stacyvm";

/// State of the E2B surface, shared by its handlers.
#[derive(Debug)]
pub struct E2b {
    tokens: Tokens,
    /// The `domain` sent to SDKs (None when not configured).
    domain: Option<String>,
    /// The `envVars` of each sandbox's create: the default environment of
    /// its commands. Kept in memory: lost when the server restarts.
    envs: Mutex<HashMap<SandboxId, BTreeMap<String, String>>>,
    /// Whether each sandbox's image has `/bin/bash` (commands arrive as
    /// `/bin/bash -l -c CMD`; without bash they run under `/bin/sh -c`).
    has_bash: Mutex<HashMap<SandboxId, bool>>,
    processes: process::Table,
}

impl E2b {
    /// The E2B state for `config`: its token key lives in the data
    /// directory so access tokens survive a restart.
    pub fn new(config: &Config) -> std::io::Result<Arc<Self>> {
        let tokens = Tokens::open(&config.data_dir().join("e2b-token.key"))?;
        Ok(Arc::new(E2b {
            tokens,
            domain: Some(config.e2b.domain.trim().to_string()).filter(|d| !d.is_empty()),
            envs: Mutex::default(),
            has_bash: Mutex::default(),
            processes: process::Table::default(),
        }))
    }

    fn default_envs(&self, id: &SandboxId) -> BTreeMap<String, String> {
        self.envs
            .lock()
            .expect("envs lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    fn forget(&self, id: &SandboxId) {
        self.envs.lock().expect("envs lock").remove(id);
        self.has_bash.lock().expect("has_bash lock").remove(id);
        self.processes.forget_sandbox(id);
    }
}

/// The E2B routes, to merge into the API router.
pub fn router(e2b: Arc<E2b>) -> Router<AppState> {
    Router::new()
        // Control plane.
        .route("/sandboxes", post(control::create).get(control::list_v1))
        .route("/v2/sandboxes", post(control::create).get(control::list))
        .route("/sandboxes/{id}", get(control::get).delete(control::kill))
        .route("/sandboxes/{id}/timeout", post(control::set_timeout))
        .route("/sandboxes/{id}/refreshes", post(control::refresh))
        .route("/sandboxes/{id}/connect", post(control::connect))
        .route("/v2/sandboxes/{id}/connect", post(control::connect))
        .route("/sandboxes/{id}/resume", post(control::connect))
        .route("/sandboxes/{id}/pause", post(control::pause))
        .route("/templates", get(control::templates))
        .route("/v2/templates", get(control::templates))
        // envd.
        .route("/health", get(envd::health))
        .route("/files", get(envd::read_file).post(envd::write_file))
        .route("/process.Process/{method}", post(process::rpc))
        .route(
            "/filesystem.Filesystem/{method}",
            post(envd::filesystem_rpc),
        )
        .layer(axum::Extension(e2b))
}
