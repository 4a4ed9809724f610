//! A real server on 127.0.0.1:0 with the mock provider, for API tests.
//! Every response it sends and every event it publishes is checked for
//! host strings (see [`recorder`]) when the server stops or is dropped.
#![allow(dead_code)]

pub mod fixture;
pub mod recorder;
pub mod switchable;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use stacyvm_server::app;
use stacyvm_server::config::Config;
use tokio::sync::oneshot;

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    pub recorder: recorder::Recorder,
    /// Host strings no response or event may show.
    pub private: Vec<String>,
    events: stacyvm_server::events::EventBus,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

/// The host strings a server built from `config` must never show: its data
/// directory and the providers' directories, sockets and binaries.
pub fn private_strings(config: &Config, dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![dir.display().to_string()];
    if let Some(parent) = config.database.path.parent() {
        out.push(parent.display().to_string());
    }
    if let Some(base) = &config.providers.mock.base_dir {
        out.push(base.display().to_string());
    }
    if config.providers.native.enabled {
        let n = &config.providers.native;
        out.push(n.data_dir.display().to_string());
        if let Some(bin) = stacyvm_providers::native::find_runtime_binary(&n.runtime) {
            out.push(bin.display().to_string());
        }
    }
    if config.providers.docker.enabled {
        let addr = config.providers.docker.socket_address();
        if let Some(path) = addr.strip_prefix("unix://") {
            out.push(path.to_string());
        }
        out.push(addr);
    }
    out.retain(|s| s.len() > 1);
    out
}

/// A config for tests: mock provider, database and mock sandboxes in `dir`.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.database.path = dir.join("stacyvm.db");
    c.providers.mock.enabled = true;
    c.providers.mock.base_dir = Some(dir.join("mock"));
    c.providers.default = "mock".into();
    c.providers.docker.enabled = false;
    c.providers.native.enabled = false;
    c.server.port = 0;
    c
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Self::start_in(&dir, f).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server whose state lives in `dir` (kept after stop).
    pub async fn start_in(dir: &std::path::Path, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(dir);
        f(&mut config);
        let private = private_strings(&config, dir);
        let app = app::build(config, Vec::new()).await.expect("server builds");
        Self::serve(app, dir, private).await
    }

    /// Starts a server with the given store and extra providers.
    pub async fn start_parts(
        f: impl FnOnce(&mut Config),
        store: std::sync::Arc<dyn stacyvm_store::Store>,
        extra: Vec<std::sync::Arc<dyn stacyvm_providers::Provider>>,
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = test_config(tmp.path());
        f(&mut config);
        let private = private_strings(&config, tmp.path());
        let clock = std::sync::Arc::new(stacyvm_server::manager::SystemClock);
        let app = app::build_with_store(config, store, extra, clock)
            .await
            .expect("server builds");
        let mut s = Self::serve(app, tmp.path(), private).await;
        s._tmp = Some(tmp);
        s
    }

    async fn serve(mut app: app::App, dir: &std::path::Path, private: Vec<String>) -> Self {
        let recorder = recorder::Recorder::default();
        app.router = recorder.wrap(app.router);
        let events = app.manager.events().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base: format!("http://{addr}/api/v1"),
            http: reqwest::Client::new(),
            dir: dir.to_path_buf(),
            recorder,
            private,
            events,
            stop: Some(tx),
            task: Some(task),
            _tmp: None,
        }
    }

    /// The events published so far (the in-process history).
    pub fn recent_events(&self) -> Vec<stacyvm_core::Event> {
        self.events.recent(usize::MAX)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .unwrap()
                .unwrap();
        }
        self.assert_no_host_strings();
    }

    /// Panics if any response sent so far, or any event in the history,
    /// shows one of [`TestServer::private`].
    pub fn assert_no_host_strings(&self) {
        let events: Vec<String> = self
            .events
            .recent(usize::MAX)
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect();
        let leaks = self.recorder.leaks(&self.private, &events);
        assert!(
            leaks.is_empty(),
            "host strings {:?} reached clients:\n{}",
            self.private,
            leaks.join("\n")
        );
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        decode(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        decode(
            self.http
                .post(self.url(path))
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        decode(self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Spawns a sandbox and returns its id.
    pub async fn spawn(&self) -> String {
        let (status, sb) = self.post("/sandboxes", serde_json::json!({})).await;
        assert_eq!(status, 201, "{sb}");
        sb["id"].as_str().unwrap().to_string()
    }

    /// Runs a shell command and returns (exit_code, stdout).
    pub async fn sh(&self, id: &str, cmd: &str) -> (i64, String) {
        let (status, out) = self
            .post(
                &format!("/sandboxes/{id}/exec"),
                serde_json::json!({"command": cmd}),
            )
            .await;
        assert_eq!(status, 200, "{out}");
        (
            out["exit_code"].as_i64().unwrap(),
            out["stdout"].as_str().unwrap().to_string(),
        )
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// Whether a real component a test needs is here. In CI a missing one is a
/// failure, never a silent skip; locally the test skips with the reason.
pub fn require(present: bool, what: &str, setup: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} required in CI: run {setup}"
        );
        eprintln!("skipping: {what} missing ({setup})");
    }
    present
}

/// Docker with the local test image.
pub fn docker_image_present(image: &str) -> bool {
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success());
    require(ok, &format!("dockerd with {image}"), "scripts/ci/docker.sh")
}

/// promtool and prometheus on PATH.
pub fn prometheus_present() -> bool {
    let ok = ["promtool", "prometheus"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("--version")
            .output()
            .is_ok()
    });
    require(ok, "promtool and prometheus", "scripts/ci/prometheus.sh")
}

/// Asserts the contract's error shape and code.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

impl Drop for TestServer {
    /// A test that never calls `stop` is checked too (unless it already
    /// failed: a second panic would abort).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_host_strings();
        }
    }
}
