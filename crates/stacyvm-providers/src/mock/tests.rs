//! Mock-specific behaviour the shared conformance suite does not cover:
//! destroy kills running commands, a restarted provider adopts its
//! sandboxes, logs, the cleared environment.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::{ExecEvent, Provider};
use stacyvm_core::StreamKind;

fn spawn_spec(id: &SandboxId) -> SpawnSpec {
    SpawnSpec {
        id: id.clone(),
        image: "busybox".into(),
        memory_mb: 128,
        vcpus: 1,
        metadata: BTreeMap::new(),
        labels: BTreeMap::from([("owner".to_string(), "alice".to_string())]),
        network: None,
    }
}

fn sh(script: &str) -> ExecSpec {
    ExecSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        workdir: String::new(),
        timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

#[tokio::test]
async fn destroy_kills_running_commands_and_removes_the_directory() {
    let base = tempfile::tempdir().unwrap();
    let p = MockProvider::new(base.path()).unwrap();
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let root = p.sandbox_root(&id);
    let mut session = p
        .exec_stream(
            &id,
            &sh("echo $$; exec sleep 300"),
            StreamOptions::default(),
        )
        .await
        .unwrap();
    let pid = match session.output.recv().await {
        Some(ExecEvent::Output(StreamKind::Stdout, b)) => {
            String::from_utf8_lossy(&b).trim().parse::<i32>().unwrap()
        }
        other => panic!("{other:?}"),
    };
    p.destroy(&id).await.unwrap();
    // The command ends (killed), so the stream ends with its exit.
    let mut exit = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), session.output.recv())
        .await
        .expect("stream ends after destroy")
    {
        if let ExecEvent::Exit { exit_code, .. } = ev {
            exit = Some(exit_code);
        }
    }
    assert_eq!(exit, Some(137));
    assert!(!exec::group_alive(pid));
    assert!(!root.exists());
    assert!(matches!(
        p.exec(&id, &sh("true")).await,
        Err(ProviderError::Destroyed(_))
    ));
    assert!(matches!(
        p.logs(&id, 10).await,
        Err(ProviderError::Destroyed(_))
    ));
}

#[tokio::test]
async fn a_new_provider_adopts_sandboxes_left_in_its_base_dir() {
    let base = tempfile::tempdir().unwrap();
    let id = SandboxId::generate();
    {
        let p = MockProvider::new(base.path()).unwrap();
        p.spawn(&spawn_spec(&id)).await.unwrap();
        p.files()
            .write(&id, "/kept.txt", Bytes::from_static(b"kept"), None)
            .await
            .unwrap();
    }
    let p = MockProvider::new(base.path()).unwrap();
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Running);
    let inv = p.inventory().await.unwrap().unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].id, id);
    assert_eq!(inv[0].image, "busybox");
    assert_eq!(
        inv[0].labels.get("owner").map(String::as_str),
        Some("alice")
    );
    let out = p.exec(&id, &sh("cat kept.txt")).await.unwrap();
    assert_eq!(out.stdout, b"kept");
    p.destroy(&id).await.unwrap();
    assert!(std::fs::read_dir(base.path()).unwrap().next().is_none());
}

/// Destroy ends every process of a sandbox: one that left its process
/// group, and one started by an earlier provider instance (a server that
/// was killed and whose sandbox the restarted server adopted).
#[tokio::test]
async fn destroy_ends_processes_of_adopted_sandboxes_and_escaped_groups() {
    let base = tempfile::tempdir().unwrap();
    let id = SandboxId::generate();
    let started = |p: MockProvider, script: &'static str| {
        let id = id.clone();
        async move {
            let out = p.exec(&id, &sh(script)).await.unwrap();
            let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
            rustix::process::Pid::from_raw(pid).unwrap()
        }
    };
    let alive = |pid| rustix::process::test_kill_process(pid).is_ok() && !zombie(pid);
    let first = MockProvider::new(base.path()).unwrap();
    first.spawn(&spawn_spec(&id)).await.unwrap();
    // setsid: its own session and group, out of reach of a group kill.
    let escaped = started(
        first.clone(),
        "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
    )
    .await;
    // The provider goes away without destroying (a server killed -9).
    std::mem::forget(first);
    let second = MockProvider::new(base.path()).unwrap();
    let before_restart = escaped;
    let after_restart = started(
        second.clone(),
        "sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
    )
    .await;
    assert!(alive(before_restart) && alive(after_restart));
    second.destroy(&id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (alive(before_restart) || alive(after_restart)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(before_restart),
        "the process from before the restart survived destroy"
    );
    assert!(
        !alive(after_restart),
        "a background process survived destroy"
    );
}

/// Whether `pid` is a zombie (dead, waiting to be reaped).
fn zombie(pid: rustix::process::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn logs_record_spawn_and_execs() {
    let base = tempfile::tempdir().unwrap();
    let p = MockProvider::new(base.path()).unwrap();
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    p.exec(&id, &sh("exit 7")).await.unwrap();
    let logs = p.logs(&id, 100).await.unwrap();
    assert_eq!(logs.len(), 2, "{logs:?}");
    assert!(logs[0].contains("spawned"));
    assert!(logs[1].contains("exited with code 7"), "{logs:?}");
    assert_eq!(p.logs(&id, 1).await.unwrap(), logs[1..]);
    p.destroy(&id).await.unwrap();
}

#[tokio::test]
async fn commands_get_a_clean_environment() {
    let base = tempfile::tempdir().unwrap();
    let p = MockProvider::new(base.path()).unwrap();
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    // Whatever the server's environment holds (API keys...) stays out.
    let out = p.exec(&id, &sh("env | cut -d= -f1 | sort")).await.unwrap();
    let names = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in names.lines() {
        assert!(
            [
                "HOME",
                "PATH",
                "PWD",
                "SHLVL",
                "STACYVM_SANDBOX_ID",
                MARKER,
                "_"
            ]
            .contains(&name),
            "unexpected variable {name} in {names}"
        );
    }
    let out = p.exec(&id, &sh("echo $HOME")).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        p.sandbox_root(&id).display().to_string()
    );
    assert!(matches!(
        p.spawn(&spawn_spec(&id)).await,
        Err(ProviderError::InvalidInput(_))
    ));
    p.destroy(&id).await.unwrap();
}

/// A mock sandbox running `cat` with its stdin open.
async fn cat_with_stdin(
    base: &std::path::Path,
) -> (
    MockProvider,
    SandboxId,
    crate::ExecSession,
    tokio::sync::mpsc::Sender<crate::ExecInput>,
) {
    let p = MockProvider::new(base).unwrap();
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let opts = StreamOptions {
        stdin: true,
        tty: None,
    };
    let mut s = p.exec_stream(&id, &sh("cat"), opts).await.unwrap();
    let input = s.input.take().unwrap();
    (p, id, s, input)
}

#[tokio::test]
async fn unknown_signal_names_are_reported() {
    let base = tempfile::tempdir().unwrap();
    let (p, id, mut s, input) = cat_with_stdin(base.path()).await;
    input
        .send(crate::ExecInput::Signal("SIGBOGUS".into()))
        .await
        .unwrap();
    match s.output.recv().await {
        Some(ExecEvent::Output(StreamKind::Stderr, b)) => {
            assert_eq!(&b[..], b"unknown signal SIGBOGUS\n");
        }
        other => panic!("{other:?}"),
    }
    input
        .send(crate::ExecInput::Signal("int".into()))
        .await
        .unwrap();
    match s.output.recv().await {
        Some(ExecEvent::Exit { exit_code, .. }) => assert_eq!(exit_code, 128 + 2),
        other => panic!("{other:?}"),
    }
    p.destroy(&id).await.unwrap();
}

#[test]
fn parses_signal_names() {
    assert_eq!(exec::parse_signal("SIGTERM"), Some(Signal::TERM));
    assert_eq!(exec::parse_signal("term"), Some(Signal::TERM));
    assert_eq!(exec::parse_signal(" SIGKILL "), Some(Signal::KILL));
    assert_eq!(exec::parse_signal("SIGNOPE"), None);
}

#[tokio::test]
async fn a_background_child_holding_the_pipes_does_not_hang_exec() {
    let base = tempfile::tempdir().unwrap();
    let p = MockProvider::new(base.path()).unwrap();
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let started = std::time::Instant::now();
    let out = p
        .exec(&id, &sh("sleep 300 & echo $! > bg.pid; echo done"))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"done\n");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let pid: i32 = std::fs::read_to_string(p.sandbox_root(&id).join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| {
                !s.lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
            .unwrap_or(false)
    };
    assert!(alive(pid), "the background child keeps running");
    p.destroy(&id).await.unwrap();
    // Destroy killed the leftover group (it may linger as a zombie of init
    // for a moment, so poll).
    for _ in 0..50 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("background child {pid} survived destroy");
}

/// A directory whose owner bits a command took away is still removed
/// (found by schemathesis: a fuzzed chmod 0 on a directory made destroy
/// fail for a server not running as root).
#[test]
fn removal_restores_directory_modes_first() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sb");
    let locked = root.join("a/locked");
    std::fs::create_dir_all(locked.join("inner")).unwrap();
    std::fs::write(locked.join("inner/f"), b"x").unwrap();
    std::os::unix::fs::symlink("/", root.join("a/link")).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let root_mode = || std::fs::metadata("/").unwrap().permissions().mode();
    let before = root_mode();
    restore_dir_modes(&root);
    let mode = std::fs::metadata(&locked).unwrap().permissions().mode();
    assert_eq!(mode & 0o700, 0o700);
    // The link was not followed: `/` keeps its mode.
    assert_eq!(root_mode(), before);
    remove_tree(&root).unwrap();
    assert!(!root.exists());
}

/// A server started in the background inherits an ignored SIGINT; the
/// commands it runs must still die of one.
#[tokio::test]
#[allow(unsafe_code)]
async fn commands_hear_signals_the_server_ignores() {
    // SAFETY: changes this test process's disposition of SIGINT only.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let base = tempfile::tempdir().unwrap();
    let (p, id, mut s, input) = cat_with_stdin(base.path()).await;
    input
        .send(crate::ExecInput::Signal("SIGINT".into()))
        .await
        .unwrap();
    match s.output.recv().await {
        Some(ExecEvent::Exit { exit_code, .. }) => assert_eq!(exit_code, 128 + 2),
        other => panic!("{other:?}"),
    }
    p.destroy(&id).await.unwrap();
}
