//! Real `stacyvm serve` processes on a real PostgreSQL that the tests may
//! stop and start: a cluster of PostgreSQL of its own
//! (`scripts/ci/postgres.sh cluster2 5433`), never the shared one.
//!
//! `STACYVM_TEST_CLUSTER_POSTGRES_URL` is an admin URL of that cluster (its
//! role may create roles and databases) and `STACYVM_TEST_CLUSTER_POSTGRES`
//! names it for `pg_ctlcluster` (`15/cluster2`). Without them the tests
//! skip with a reason, except with `CI` set, where they fail.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_stacyvm");

/// The PostgreSQL cluster the tests own.
#[derive(Debug, Clone)]
pub struct Pg {
    admin_url: String,
    /// `<version>/<name>` for `pg_ctlcluster`.
    cluster: String,
}

impl Pg {
    /// The configured cluster, or `None` (with the reason printed) when it
    /// is not configured outside CI.
    pub fn from_env() -> Option<Pg> {
        let url = std::env::var("STACYVM_TEST_CLUSTER_POSTGRES_URL").ok();
        let cluster = std::env::var("STACYVM_TEST_CLUSTER_POSTGRES").ok();
        match (url, cluster) {
            (Some(admin_url), Some(cluster)) if !admin_url.is_empty() && !cluster.is_empty() => {
                Some(Pg { admin_url, cluster })
            }
            _ => {
                let why = "STACYVM_TEST_CLUSTER_POSTGRES_URL and STACYVM_TEST_CLUSTER_POSTGRES \
                           are not set (run scripts/ci/postgres.sh cluster2 5433)";
                assert!(std::env::var_os("CI").is_none(), "CI: {why}");
                eprintln!("skipping: {why}");
                None
            }
        }
    }

    /// A fresh database owned by a fresh role with a random password; the
    /// URL the servers use.
    pub async fn fresh_database(&self) -> TestDb {
        use sqlx::Connection;
        let tag: u64 = rand_tag();
        let role = format!("svm_t{tag:x}");
        let password = format!("pw-{tag:x}-secret");
        let db = format!("svm_t{tag:x}");
        let mut conn = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        for sql in [
            format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
            format!("GRANT {role} TO CURRENT_USER"),
            format!("CREATE DATABASE {db} OWNER {role}"),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
        let (_, rest) = self.admin_url.split_once('@').unwrap();
        let host = rest.split('/').next().unwrap();
        TestDb {
            url: format!("postgres://{role}:{password}@{host}/{db}"),
            password,
        }
    }

    fn ctl(&self, action: &str) {
        let (version, name) = self.cluster.split_once('/').unwrap();
        let mut cmd = Command::new("pg_ctlcluster");
        cmd.args([version, name, action]);
        if action != "start" {
            cmd.args(["-m", "fast"]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "pg_ctlcluster {action}: {out:?}");
    }

    pub fn stop(&self) {
        self.ctl("stop");
    }

    pub fn start(&self) {
        self.ctl("start");
    }
}

/// A database of one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub url: String,
    /// Must never show in a reply, a log line or an error.
    pub password: String,
}

fn rand_tag() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `stacyvm serve` process with its own data directory and port.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub url: String,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// Starts a node on `db` with the mock provider, plus `extra` env.
    pub fn start(name: &str, root: &Path, db: &TestDb, extra: &[(&str, &str)]) -> Node {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut env: Vec<(String, String)> = [
            ("HOME", dir.to_str().unwrap()),
            ("STACYVM_SERVER_PORT", &port.to_string()),
            ("STACYVM_DATABASE_DRIVER", "postgres"),
            ("STACYVM_DATABASE_URL", &db.url),
            (
                "STACYVM_DATABASE_PATH",
                dir.join("stacyvm.db").to_str().unwrap(),
            ),
            ("STACYVM_PROVIDERS_MOCK_ENABLED", "true"),
            ("STACYVM_PROVIDERS_DEFAULT", "mock"),
            ("STACYVM_PROVIDERS_NATIVE_ENABLED", "false"),
            ("STACYVM_PROVIDERS_DOCKER_ENABLED", "false"),
            ("STACYVM_LOGGING_LEVEL", "debug"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut node = Node {
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            dir,
            port,
            env,
            child: None,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}: {}", self.name, self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} did not start: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// `kill -9`: no drain, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("node is running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }

    /// Starts the node again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP client with a short timeout, so a hung server fails the test.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `check` every 100 ms until it holds, failing after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
