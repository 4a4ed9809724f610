//! The `stacyvm` binary end to end: `serve` from environment variables alone
//! (no config file), then the client commands against it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_stacyvm");

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Exactly the environment-only start the foundation issue names.
fn serve(dir: &Path) -> Server {
    let port = free_port();
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(dir)
        .env("HOME", dir)
        .env("STACYVM_SERVER_PORT", port.to_string())
        .env("STACYVM_DATABASE_PATH", dir.join("s.db"))
        .env("STACYVM_PROVIDERS_MOCK_ENABLED", "true")
        .env("STACYVM_PROVIDERS_DEFAULT", "mock")
        .env("STACYVM_PROVIDERS_NATIVE_ENABLED", "false")
        .env("STACYVM_PROVIDERS_DOCKER_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, url }
}

fn cli(server: &Server, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn spawn_exec_files_list_kill() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path());
    let out = cli(&server, &["spawn", "--ttl", "10m", "-m", "team=a"]);
    assert!(out.status.success(), "{out:?}");
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("sb-"), "{id}");

    // argv mode: no shell, arguments literal; output streamed; exit code kept.
    let out = cli(&server, &["exec", &id, "--", "echo", "a b", "$HOME"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "a b $HOME\n")
    );
    let out = cli(
        &server,
        &[
            "exec",
            "--shell",
            &id,
            "--",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // Files in and out, binary-safe.
    let local = dir.path().join("in.bin");
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(&local, &data).unwrap();
    let out = cli(
        &server,
        &[
            "files",
            "put",
            &id,
            local.to_str().unwrap(),
            "/data/in.bin",
            "--mode",
            "600",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let back = dir.path().join("back.bin");
    let out = cli(
        &server,
        &["files", "get", &id, "/data/in.bin", back.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let out = cli(&server, &["files", "ls", &id, "/data"]);
    assert!(
        stdout(&out).contains("0600") && stdout(&out).contains("/data/in.bin"),
        "{}",
        stdout(&out)
    );

    let out = cli(&server, &["list"]);
    assert!(stdout(&out).contains(&id));
    let out = cli(&server, &["kill", &id]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(&server, &["kill", &id]);
    assert!(!out.status.success(), "killing twice reports the error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn config_commands_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stacyvm.yaml");
    std::fs::write(
        &file,
        "auth:\n  enabled: true\n  api_key: very-secret-key\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "show", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!stdout(&out).contains("very-secret-key"));
    assert!(stdout(&out).contains("<redacted>"));
    let out = Command::new(BIN)
        .args(["config", "lint", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(&file, "server:\n  prot: 1\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "lint", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));
    let out = Command::new(BIN).arg("version").output().unwrap();
    assert!(stdout(&out).starts_with("stacyvm "));
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("stacyvm"));
    // A server that is not there: a clear error, non-zero exit.
    let out = Command::new(BIN)
        .args(["--server", "http://127.0.0.1:9", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// `stacyvm openapi` prints the document the server serves (and the one
/// committed as docs/openapi.json).
#[test]
fn openapi_prints_the_document() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stacyvm"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/sandboxes"]["post"].is_object());
}

/// `pause` / `resume`, and a pause that survives `kill -9` of the server:
/// the restarted server still reports the sandbox `paused`.
#[test]
fn pause_resume_and_a_pause_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path());
    let out = cli(&server, &["spawn"]);
    assert!(out.status.success(), "{out:?}");
    let id = stdout(&out).trim().to_string();
    let out = cli(&server, &["pause", &id]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), format!("{id} paused\n")),
        "{out:?}"
    );
    // SIGKILL: no shutdown path runs.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    let server = serve(dir.path());
    let out = cli(&server, &["list"]);
    let line = stdout(&out)
        .lines()
        .find(|l| l.contains(&id))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(line.contains("paused"), "{}", stdout(&out));
    let out = cli(&server, &["resume", &id]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), format!("{id} running\n")),
        "{out:?}"
    );
    let out = cli(&server, &["exec", &id, "--", "echo", "back"]);
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(0), "back\n")
    );
    let out = cli(&server, &["pause", "sb-00000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}
