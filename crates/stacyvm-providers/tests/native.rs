//! The native provider end to end: real crun, real overlayfs, real agent.
#![cfg(feature = "native")]

mod native_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use native_support::*;
use stacyvm_core::SandboxId;
use stacyvm_providers::{ExecEvent, ExecInput, Provider, RuntimeStatus, StreamOptions, TtySize};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_exec_files_destroy() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    let t = Instant::now();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    eprintln!("spawn took {:?}", t.elapsed());
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Running);
    eprintln!("{:?}", mounts_with(id.as_str()));

    let t = Instant::now();
    let (code, out, _) = run(p, &id, "echo hello; hostname").await;
    eprintln!("exec took {:?}", t.elapsed());
    assert_eq!(code, 0);
    assert_eq!(out, format!("hello\n{id}\n"));

    p.write_file(&id, "/workspace/a.txt", Bytes::from_static(b"data"), None)
        .await
        .unwrap();
    let (code, out, _) = run(p, &id, "cat /workspace/a.txt; echo -n x > /workspace/b.txt").await;
    assert_eq!((code, out.as_str()), (0, "data"));
    let mut s = p.read_file(&id, "/workspace/b.txt").await.unwrap();
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got, b"x");

    let logs = p.logs(&id, 10).await.unwrap();
    assert!(logs.iter().any(|l| l.contains("stacyvm-agent")), "{logs:?}");
    let usage = p.resource_usage(&id).await.unwrap().expect("usage");
    assert!(usage.pids >= 1 && usage.memory_bytes > 0, "{usage:?}");

    let t = Instant::now();
    p.destroy(&id).await.unwrap();
    eprintln!("destroy took {:?}", t.elapsed());
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Missing);
    p.destroy(&id).await.unwrap();
    assert!(matches!(
        p.exec(&id, &sh("true")).await,
        Err(stacyvm_providers::ProviderError::Destroyed(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_with_tty_stdin_and_timeout() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();

    let mut s = p
        .exec_stream(
            &id,
            &sh("stty size; read x; echo got=$x"),
            StreamOptions {
                stdin: true,
                tty: Some(TtySize { cols: 90, rows: 30 }),
            },
        )
        .await
        .unwrap();
    let input = s.input.clone().unwrap();
    input
        .send(ExecInput::Stdin(Bytes::from_static(b"abc\n")))
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut exit = None;
    while let Some(ev) = s.output.recv().await {
        match ev {
            ExecEvent::Output(_, b) => out.extend_from_slice(&b),
            ExecEvent::Exit { exit_code, .. } => exit = Some(exit_code),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("30 90") && out.contains("got=abc"), "{out}");
    assert_eq!(exit, Some(0));

    let mut spec = sh("sleep 30");
    spec.timeout = Duration::from_millis(300);
    let t = Instant::now();
    let r = p.exec(&id, &spec).await;
    assert!(
        matches!(r, Err(stacyvm_providers::ProviderError::ExecTimeout(_))),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    p.destroy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_what_is_missing() {
    use stacyvm_providers::native::image::{ImageConfig, ImageStore};
    use stacyvm_providers::native::{NativeConfig, NativeProvider};
    let dir = tempfile::tempdir().unwrap();
    let images = ImageStore::open(dir.path().join("images"), ImageConfig::default()).unwrap();
    let cfg = NativeConfig {
        runtime: "runsc-not-installed".into(),
        data_dir: dir.path().join("d"),
        agent_path: Some(dir.path().join("no-agent")),
        ..Default::default()
    };
    let p = NativeProvider::new(cfg, images).unwrap();
    let h = p.health().await;
    assert!(!h.healthy);
    let msg = h.error.unwrap();
    assert!(
        msg.contains("OCI runtime runsc-not-installed not found"),
        "{msg}"
    );
    assert!(msg.contains("no usable stacyvm-agent"), "{msg}");
    // Spawning on an unhealthy host fails with a reason and leaves nothing.
    let id = SandboxId::generate();
    let err = p.spawn(&spawn_spec(&id)).await.unwrap_err();
    assert!(err.to_string().contains("stacyvm-agent"), "{err}");
    assert!(!dir.path().join("d/sandboxes").join(id.as_str()).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_spawn_leaves_nothing_behind() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    let mut spec = spawn_spec(&id);
    spec.image = "127.0.0.1:1/missing/image:latest".into();
    assert!(p.spawn(&spec).await.is_err());
    let dir = p.config().data_dir.join("sandboxes").join(id.as_str());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Missing);
    // The same id can be used again.
    p.spawn(&spawn_spec(&id)).await.unwrap();
    p.destroy(&id).await.unwrap();
}
