//! Fault tests: the daemon is missing or dies mid-run. The provider must
//! report itself unhealthy with the reason, fail operations with
//! `Unavailable` (never panic), and recover by itself once the daemon is
//! back. The dying daemon is a private dockerd started by this test (own
//! socket, data and exec roots), so the shared daemon other tests use is
//! never touched.
#![cfg(feature = "docker")]

mod docker_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stacyvm_core::SandboxId;
use stacyvm_providers::docker::{DockerConfig, DockerProvider};
use stacyvm_providers::{Provider, ProviderError, RuntimeStatus};

use docker_support::*;

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, ProviderError>, op: &str) {
    match r {
        Err(e @ ProviderError::Unavailable { .. }) => {
            let m = e.to_string();
            assert!(m.contains("cannot reach the docker daemon"), "{op}: {m}");
            // The daemon's address is for the log, not the client.
            assert!(!m.contains("/nonexistent/stacyvm"), "{op}: {m}");
        }
        other => panic!("{op}: expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_daemon_is_unhealthy_and_unavailable() {
    // Runs everywhere: it needs no daemon at all.
    let p = DockerProvider::new(DockerConfig {
        socket: Some("unix:///nonexistent/stacyvm/docker.sock".into()),
        ..Default::default()
    })
    .expect("provider builds without a daemon");
    let h = p.health().await;
    assert!(!h.healthy);
    let reason = h.error.unwrap_or_default();
    assert!(
        reason.contains("cannot reach the docker daemon (providers.docker.socket)"),
        "{reason}"
    );
    // The address is in the log's detail only.
    assert!(!reason.contains("/nonexistent/stacyvm"), "{reason}");
    assert!(
        h.detail
            .unwrap_or_default()
            .contains("unix:///nonexistent/stacyvm/docker.sock"),
    );
    let id = SandboxId::generate();
    assert_unavailable(p.spawn(&spawn_spec(&id)).await, "spawn");
    assert_unavailable(p.exec(&id, &sh("true")).await, "exec");
    assert_unavailable(p.status(&id).await, "status");
    assert_unavailable(p.destroy(&id).await, "destroy");
    assert_unavailable(p.inventory().await, "inventory");
    assert_unavailable(
        p.files().read(&id, "/etc/hostname").await.map(|_| ()),
        "read_file",
    );
}

/// A dockerd of our own, killed on drop.
struct PrivateDaemon {
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateDaemon {
    fn socket(&self) -> String {
        format!("unix://{}/docker.sock", self.dir.display())
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--host")
            .arg(self.socket())
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("docker.pid"))
            .args([
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start private dockerd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/docker")
            .arg("--host")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run docker cli")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.docker(&["info"]).status.success() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
                panic!("private dockerd did not start; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Kills the daemon abruptly, as a crash would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its containerd dies with it (parent-death signal) but may stay a
        // zombie that dockerd would take for a live containerd and wait on:
        // wait for it to go, then drop its stale pid file.
        let pid_file = self.dir.join("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let stat = format!("/proc/{}/stat", pid.trim());
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match std::fs::read_to_string(&stat) {
                    Ok(s) if !s.contains(") Z ") => std::thread::sleep(Duration::from_millis(100)),
                    _ => break,
                }
            }
            let _ = std::fs::remove_file(&pid_file);
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateDaemon {
    fn drop(&mut self) {
        // A clean stop stops the containers and unmounts their layers.
        self.stop();
        if !std::thread::panicking() {
            // dockerd bind-mounts its data root onto itself.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.join("data"))
                .status();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn busybox_rootfs() -> PathBuf {
    let tarball = std::env::var_os("STACYVM_BUSYBOX_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/stacyvm-busybox-rootfs.tar"));
    if !tarball.exists() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ci/busybox-rootfs.sh");
        let ok = Command::new(script)
            .arg(&tarball)
            .status()
            .expect("run busybox-rootfs.sh");
        assert!(ok.success(), "busybox-rootfs.sh failed");
    }
    tarball
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_dies_and_comes_back() {
    if !required() {
        eprintln!("skipping docker fault test: set STACYVM_TEST_DOCKER=1 to run it");
        return;
    }
    assert!(
        Path::new("/usr/sbin/dockerd").exists(),
        "the docker fault test needs dockerd (run scripts/ci/docker.sh)"
    );
    let dir = PathBuf::from(format!("/var/tmp/stacyvm-fault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fault test dir");
    let mut daemon = PrivateDaemon { dir, child: None };
    daemon.start();
    let tarball = busybox_rootfs();
    let out = daemon.docker(&[
        "import",
        "--change",
        "CMD [\"/bin/sh\"]",
        tarball.to_str().unwrap_or_default(),
        IMAGE,
    ]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let p = DockerProvider::new(DockerConfig {
        socket: Some(daemon.socket()),
        ..Default::default()
    })
    .unwrap();
    assert!(p.health().await.healthy);
    let before = spawn(&p).await;
    assert_eq!(run(&p, &before.id, "echo up").await.1, "up\n");

    daemon.kill();
    let h = p.health().await;
    assert!(!h.healthy);
    assert!(
        h.error
            .as_deref()
            .unwrap_or_default()
            .contains("cannot reach the docker daemon"),
        "{h:?}"
    );
    let id = SandboxId::generate();
    assert_unavailable(p.spawn(&spawn_spec(&id)).await, "spawn");
    assert_unavailable(p.exec(&before.id, &sh("true")).await, "exec");
    assert_unavailable(p.status(&before.id).await, "status");
    assert_unavailable(p.inventory().await, "inventory");
    assert_unavailable(p.files().stat(&before.id, "/etc").await, "stat_file");

    // Same provider, no reconnect call: it must recover by itself.
    daemon.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = p.health().await;
        if h.healthy {
            break;
        }
        assert!(Instant::now() < deadline, "provider did not recover: {h:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = spawn(&p).await;
    assert_eq!(run(&p, &after.id, "echo again").await.1, "again\n");
    let status = p.status(&before.id).await.expect("status after restart");
    assert_ne!(
        status,
        RuntimeStatus::Missing,
        "the earlier sandbox is still known"
    );
    let inv = p.inventory().await.unwrap().unwrap();
    assert!(inv.iter().any(|r| r.id == before.id) && inv.iter().any(|r| r.id == after.id));
    p.destroy(&before.id).await.unwrap();
    p.destroy(&after.id).await.unwrap();
    drop((before, after));
    drop(daemon);
}
