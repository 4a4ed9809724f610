//! The Docker provider against a real dockerd, under runc and under gVisor
//! (runsc): lifecycle, exec (timeouts, streaming, TTY), files, inventory,
//! security defaults. Needs `scripts/ci/docker.sh`; see `docker_support`.
#![cfg(feature = "docker")]

mod docker_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use stacyvm_core::StreamKind;
use stacyvm_providers::docker::DockerProvider;
use stacyvm_providers::{
    ExecEvent, ExecInput, ExecSpec, Provider, ProviderError, RuntimeStatus, StreamOptions, TtySize,
};

use docker_support::*;

async fn read_all(p: &DockerProvider, id: &stacyvm_core::SandboxId, path: &str) -> Vec<u8> {
    let mut s = p.files().read(id, path).await.expect("read_file");
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("chunk"));
    }
    out
}

/// Collects a session's events until `Exit`.
async fn collect(mut rx: tokio::sync::mpsc::Receiver<ExecEvent>) -> (String, String, i32, bool) {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    while let Some(ev) = rx.recv().await {
        match ev {
            ExecEvent::Output(StreamKind::Stdout, b) => o.extend_from_slice(&b),
            ExecEvent::Output(StreamKind::Stderr, b) => e.extend_from_slice(&b),
            ExecEvent::Exit {
                exit_code,
                timed_out,
                ..
            } => {
                return (
                    String::from_utf8_lossy(&o).into(),
                    String::from_utf8_lossy(&e).into(),
                    exit_code,
                    timed_out,
                );
            }
        }
    }
    panic!("stream ended without exit");
}

/// Whether a process whose command line contains `needle` runs in the sandbox.
async fn has_process(p: &DockerProvider, id: &stacyvm_core::SandboxId, needle: &str) -> bool {
    let (_, out, _) = run(p, id, "ps -o args").await;
    out.lines().any(|l| l.contains(needle))
}

async fn lifecycle_exec_and_destroy(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    assert_eq!(p.status(&g.id).await.unwrap(), RuntimeStatus::Running);

    let (code, out, err) = run(&p, &g.id, "echo out; echo err >&2; exit 3").await;
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));

    // argv is passed literally, env and workdir apply, hostname is the id.
    let spec = ExecSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "echo \"$1|$K|$(pwd)|$(hostname)\"".into(),
            "x".into(),
            "a b $HOME".into(),
        ],
        env: [("K".to_string(), "v=1".to_string())].into(),
        workdir: "/tmp".into(),
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let out = p.exec(&g.id, &spec).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("a b $HOME|v=1|/tmp|{}\n", g.id)
    );

    let missing = p
        .exec(
            &g.id,
            &ExecSpec {
                argv: vec!["no-such-cmd".into()],
                timeout: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_ne!(missing.exit_code, 0);

    p.destroy(&g.id).await.unwrap();
    assert_eq!(p.status(&g.id).await.unwrap(), RuntimeStatus::Missing);
    p.destroy(&g.id).await.expect("destroy is idempotent");
    let err = p.exec(&g.id, &sh("true")).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotFound(_)), "{err:?}");
}

async fn timeout_kills_the_process_tree(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let mut spec = sh("sleep 4242 & (setsid sleep 4343 &); echo started; sleep 4444");
    spec.timeout = Duration::from_secs(2);
    let t = Instant::now();
    let err = p.exec(&g.id, &spec).await.unwrap_err();
    assert!(matches!(err, ProviderError::ExecTimeout(_)), "{err:?}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    for n in ["4242", "4343", "4444"] {
        assert!(
            !has_process(&p, &g.id, &format!("sleep {n}")).await,
            "sleep {n} survived"
        );
    }

    // Streaming: output before the timeout arrives, then a note, then Exit.
    let mut spec = sh("echo early; sleep 4545");
    spec.timeout = Duration::from_secs(2);
    let s = p
        .exec_stream(&g.id, &spec, StreamOptions::default())
        .await
        .unwrap();
    let (out, err, _, timed_out) = collect(s.output).await;
    assert!(timed_out);
    assert_eq!(out, "early\n");
    assert!(err.contains("timed out"), "{err}");
    assert!(!has_process(&p, &g.id, "sleep 4545").await);
}

async fn timeout_holds_when_the_reader_stalls(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let mut spec = sh("yes stacyvm-flood");
    spec.timeout = Duration::from_secs(1);
    let s = p
        .exec_stream(&g.id, &spec, StreamOptions::default())
        .await
        .unwrap();
    // Read nothing for a while: the deadline must still fire.
    let deadline = Instant::now() + Duration::from_secs(20);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while has_process(&p, &g.id, "yes stacyvm-flood").await {
        assert!(Instant::now() < deadline, "command outlived its timeout");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut rx = s.output;
    let mut timed_out = false;
    while let Some(ev) = rx.recv().await {
        if let ExecEvent::Exit { timed_out: t, .. } = ev {
            timed_out = t;
        }
    }
    assert!(timed_out);
}

async fn dropping_the_stream_kills_the_command(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let mut s = p
        .exec_stream(
            &g.id,
            &sh("echo hi; sleep 4646 & sleep 4747"),
            StreamOptions::default(),
        )
        .await
        .unwrap();
    match s.output.recv().await {
        Some(ExecEvent::Output(StreamKind::Stdout, b)) => assert_eq!(&b[..], b"hi\n"),
        other => panic!("unexpected {other:?}"),
    }
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(15);
    while has_process(&p, &g.id, "sleep 4747").await || has_process(&p, &g.id, "sleep 4646").await {
        assert!(
            Instant::now() < deadline,
            "command survived its dropped session"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn interactive_tty_stdin_and_signals(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;

    // Plain stdin, closed by the client: `cat` sees EOF and exits.
    let s = p
        .exec_stream(
            &g.id,
            &sh("cat; echo done"),
            StreamOptions {
                stdin: true,
                tty: None,
            },
        )
        .await
        .unwrap();
    let input = s.input.clone().expect("stdin sender");
    input
        .send(ExecInput::Stdin(Bytes::from_static(b"hello\n")))
        .await
        .unwrap();
    input.send(ExecInput::CloseStdin).await.unwrap();
    let (out, _, code, _) = tokio::time::timeout(Duration::from_secs(20), collect(s.output))
        .await
        .expect("cat exits after stdin is closed");
    assert_eq!((out.as_str(), code), ("hello\ndone\n", 0));

    // TTY: size applies, resize applies, input is echoed.
    let s = p
        .exec_stream(
            &g.id,
            &sh("stty size; read l; stty size; echo got:$l"),
            StreamOptions {
                stdin: true,
                tty: Some(TtySize {
                    cols: 100,
                    rows: 30,
                }),
            },
        )
        .await
        .unwrap();
    let input = s.input.clone().unwrap();
    let mut rx = s.output;
    let mut seen = String::new();
    while !seen.contains("30 100") {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no tty size in {seen:?}"))
        {
            Some(ExecEvent::Output(_, b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    }
    input
        .send(ExecInput::Resize(TtySize {
            cols: 120,
            rows: 40,
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    input
        .send(ExecInput::Stdin(Bytes::from_static(b"abc\r")))
        .await
        .unwrap();
    let (out, _, code, _) = tokio::time::timeout(Duration::from_secs(20), collect(rx))
        .await
        .unwrap();
    assert!(out.contains("40 120"), "{out:?}");
    assert!(out.contains("got:abc"), "{out:?}");
    assert_eq!(code, 0);

    // A signal reaches the command (once its trap is set).
    let s = p
        .exec_stream(
            &g.id,
            &sh("trap 'echo caught; exit 7' TERM; echo ready; sleep 4848 & wait"),
            StreamOptions {
                stdin: true,
                tty: None,
            },
        )
        .await
        .unwrap();
    let mut rx = s.output;
    match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
        Ok(Some(ExecEvent::Output(StreamKind::Stdout, b))) => assert_eq!(&b[..], b"ready\n"),
        other => panic!("unexpected {other:?}"),
    }
    s.input
        .clone()
        .unwrap()
        .send(ExecInput::Signal("SIGTERM".into()))
        .await
        .unwrap();
    let (out, _, code, _) = tokio::time::timeout(Duration::from_secs(20), collect(rx))
        .await
        .unwrap();
    assert_eq!((out.as_str(), code), ("caught\n", 7));
}

async fn files_round_trip_safely(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let id = &g.id;

    // Binary-safe, parents created, mode applied, visible to commands.
    let blob: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    p.files()
        .write(
            id,
            "/workspace/a/b/c/data.bin",
            Bytes::from(blob.clone()),
            Some(0o600),
        )
        .await
        .unwrap();
    assert_eq!(read_all(&p, id, "/workspace/a/b/c/data.bin").await, blob);
    let (_, out, _) = run(
        &p,
        id,
        "wc -c < /workspace/a/b/c/data.bin; stat -c %a /workspace/a/b/c/data.bin",
    )
    .await;
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["300000", "600"]
    );
    p.files()
        .write(
            id,
            "/workspace/a/b/c/data.bin",
            Bytes::from_static(b"short"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(&p, id, "/workspace/a/b/c/data.bin").await,
        b"short"
    );

    let st = p
        .files()
        .stat(id, "/workspace/a/b/c/data.bin")
        .await
        .unwrap();
    assert_eq!(
        (st.size, st.is_dir, st.mode.as_str(), st.name.as_str()),
        (5, false, "0644", "data.bin")
    );
    assert!(p.files().stat(id, "/workspace/a").await.unwrap().is_dir);

    p.files()
        .write(
            id,
            "/workspace/a/x.py",
            Bytes::from_static(b"print(1)\n"),
            None,
        )
        .await
        .unwrap();
    p.files()
        .write(id, "/workspace/a/.hidden", Bytes::new(), None)
        .await
        .unwrap();
    let list = p.files().list(id, "/workspace/a").await.unwrap();
    let names: Vec<_> = list.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec![".hidden", "b", "x.py"]);
    assert!(list[1].is_dir && list[1].path == "/workspace/a/b");
    assert_eq!(list[2].size, 9);

    let mut g1 = p.files().glob(id, "/workspace/**/*.bin").await.unwrap();
    g1.sort();
    assert_eq!(g1, vec!["/workspace/a/b/c/data.bin"]);
    assert_eq!(
        p.files().glob(id, "/workspace/a/*.py").await.unwrap(),
        vec!["/workspace/a/x.py"]
    );
    assert!(p.files().glob(id, "/nope/*").await.unwrap().is_empty());

    p.files()
        .chmod(id, "/workspace/a/x.py", 0o755)
        .await
        .unwrap();
    assert_eq!(
        p.files().stat(id, "/workspace/a/x.py").await.unwrap().mode,
        "0755"
    );
    p.files()
        .rename(id, "/workspace/a/x.py", "/workspace/moved/y.py")
        .await
        .unwrap();
    assert_eq!(
        read_all(&p, id, "/workspace/moved/y.py").await,
        b"print(1)\n"
    );
    assert!(matches!(
        p.files().stat(id, "/workspace/a/x.py").await,
        Err(ProviderError::NotFound(_))
    ));

    // Deleting a non-empty directory needs `recursive`.
    assert!(matches!(
        p.files().delete(id, "/workspace/a", false).await,
        Err(ProviderError::InvalidInput(_))
    ));
    p.files().delete(id, "/workspace/a", true).await.unwrap();
    assert!(matches!(
        p.files().read(id, "/workspace/a/b/c/data.bin").await.err(),
        Some(ProviderError::NotFound(_))
    ));
    assert!(matches!(
        p.files().delete(id, "/workspace/a", true).await,
        Err(ProviderError::NotFound(_))
    ));

    // Escapes are refused; links resolve inside the container only.
    for bad in ["/workspace/../etc/passwd", "relative", "/a/.."] {
        assert!(
            matches!(
                p.files().read(id, bad).await.err(),
                Some(ProviderError::InvalidInput(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                p.files().write(id, bad, Bytes::new(), None).await,
                Err(ProviderError::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    run(&p, id, "echo container-secret > /root/secret; ln -s ../../../../../root/secret /workspace/link; ln -s /etc/hostname /workspace/abs").await;
    assert_eq!(
        read_all(&p, id, "/workspace/link").await,
        b"container-secret\n"
    );
    assert!(
        p.files()
            .stat(id, "/workspace/link")
            .await
            .unwrap()
            .is_symlink
    );
    let host = std::fs::read("/etc/hostname").unwrap_or_default();
    let seen = read_all(&p, id, "/workspace/abs").await;
    assert_ne!(seen, host, "a symlink reached the host's /etc/hostname");
    assert!(matches!(
        p.files().read(id, "/workspace").await.err(),
        Some(ProviderError::InvalidInput(_))
    ));
}

async fn security_defaults(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let (_, out, _) = run(
        &p,
        &g.id,
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; ls /sys/class/net",
    )
    .await;
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    if runtime == "runc" {
        // gVisor does not report NoNewPrivs; it enforces it all the same.
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    }
    assert!(
        !out.contains("eth0"),
        "network mode none must give no interface: {out}"
    );
    let (code, _, _) = run(&p, &g.id, "chown nobody /tmp").await;
    assert_ne!(code, 0, "chown must fail without CAP_CHOWN");
}

async fn inventory_logs_and_usage(runtime: &str) {
    let Some(p) = provider(runtime).await else {
        return;
    };
    let g = spawn(&p).await;
    let inv = p
        .inventory()
        .await
        .unwrap()
        .expect("docker lists its runtimes");
    let me = inv
        .iter()
        .find(|r| r.id == g.id)
        .expect("spawned sandbox in inventory");
    assert_eq!(me.status, RuntimeStatus::Running);
    assert_eq!(me.image, IMAGE);
    assert_eq!(me.labels.get("owner").map(String::as_str), Some("tester"));
    assert!(me.created_at.is_some());

    let usage = p.resource_usage(&g.id).await.unwrap().expect("stats");
    assert!(usage.pids >= 1, "{usage:?}");
    assert!(p.logs(&g.id, 10).await.unwrap().len() <= 10);

    p.destroy(&g.id).await.unwrap();
    let inv = p.inventory().await.unwrap().unwrap();
    assert!(inv.iter().all(|r| r.id != g.id));
}

macro_rules! per_runtime {
    ($($case:ident),* $(,)?) => {
        mod runc {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case("runc").await })*
        }
        mod runsc {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() { super::$case("runsc").await })*
        }
    };
}

per_runtime!(
    lifecycle_exec_and_destroy,
    timeout_kills_the_process_tree,
    timeout_holds_when_the_reader_stalls,
    dropping_the_stream_kills_the_command,
    interactive_tty_stdin_and_signals,
    files_round_trip_safely,
    security_defaults,
    inventory_logs_and_usage,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_rootfs_keeps_tmp_and_workspace_writable() {
    let Some(p) = provider_with(stacyvm_providers::docker::DockerConfig {
        read_only_rootfs: true,
        ..Default::default()
    })
    .await
    else {
        return;
    };
    let g = spawn(&p).await;
    let (code, _, _) = run(&p, &g.id, "touch /etc/x").await;
    assert_ne!(code, 0, "the image must be read-only");
    let (code, _, err) = run(&p, &g.id, "touch /tmp/x /workspace/y").await;
    assert_eq!(code, 0, "{err}");
    p.files()
        .write(&g.id, "/workspace/d/z.txt", Bytes::from_static(b"rw"), None)
        .await
        .unwrap();
    assert_eq!(read_all(&p, &g.id, "/workspace/d/z.txt").await, b"rw");
    let (_, out, _) = run(&p, &g.id, "cat /workspace/d/z.txt").await;
    assert_eq!(out, "rw");
    assert!(
        p.files()
            .write(&g.id, "/etc/z", Bytes::from_static(b"x"), None)
            .await
            .is_err()
    );
}
