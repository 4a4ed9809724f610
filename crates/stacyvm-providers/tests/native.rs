//! The native provider end to end: real crun, real overlayfs, real agent.
#![cfg(feature = "native")]

mod native_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use native_support::*;
use stacyvm_core::SandboxId;
use stacyvm_providers::native::image::ImageConfig;
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

    p.files()
        .write(&id, "/workspace/a.txt", Bytes::from_static(b"data"), None)
        .await
        .unwrap();
    let (code, out, _) = run(p, &id, "cat /workspace/a.txt; echo -n x > /workspace/b.txt").await;
    assert_eq!((code, out.as_str()), (0, "data"));
    let mut s = p.files().read(&id, "/workspace/b.txt").await.unwrap();
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
        msg.contains("OCI runtime runsc-not-installed (providers.native.runtime) not found"),
        "{msg}"
    );
    assert!(msg.contains("no usable static stacyvm-agent"), "{msg}");
    // Spawning on an unhealthy host fails with a reason and leaves nothing.
    let id = SandboxId::generate();
    let err = p.spawn(&spawn_spec(&id)).await.unwrap_err();
    assert!(err.to_string().contains("stacyvm-agent"), "{err}");
    assert!(!dir.path().join("d/sandboxes").join(id.as_str()).exists());
}

/// A real distribution (glibc, bash, dpkg, thousands of files) pulled from
/// the local registry, through the same code path as Docker Hub images,
/// runs as a sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_image_from_the_registry_runs() {
    let Some((registry, debian)) = test_registry() else {
        require("the test registry (scripts/ci/registry.sh)");
        return;
    };
    if !debian {
        require("the Debian test image (STACYVM_CI_DEBIAN=1 scripts/ci/registry.sh)");
        return;
    }
    let images = ImageConfig {
        insecure_registries: vec![registry.clone()],
        ..Default::default()
    };
    let Some(env) = env_with_images(images, |_| {}).await else {
        return;
    };
    let p = &env.provider;
    let id = SandboxId::generate();
    let mut spec = spawn_spec(&id);
    spec.image = format!("{registry}/stacyvm-test/debian:bookworm");
    p.spawn(&spec).await.unwrap();
    let (code, out, err) = run(
        p,
        &id,
        "bash -c 'echo bash=${BASH_VERSINFO[0]}'; dpkg-query -W -f '${Status}' libc6; echo; . /etc/os-release; echo $VERSION_CODENAME",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("bash=5"), "{out}");
    assert_eq!(lines[1], "install ok installed", "{out}");
    assert_eq!(lines[2], "bookworm", "{out}");
    p.destroy(&id).await.unwrap();
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

/// The cgroup2 line of our mountinfo: (mount point, per-mount options,
/// cgroup options).
fn cgroup2_mount() -> Option<(String, String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dash = f.iter().position(|x| *x == "-")?;
        (f[dash + 1] == "cgroup2").then(|| (f[4].into(), f[5].into(), f[dash + 3].into()))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_on_favordynmods_keeping_other_cgroup_options() {
    use rustix::mount::{MountFlags, mount_remount};
    use stacyvm_providers::native::NativeProvider;
    let Some(env) = env().await else { return };
    let Some((path, mount_opts, opts)) = cgroup2_mount() else {
        require("a cgroup2 mount");
        return;
    };
    // Switch it off (as on a freshly booted host), keeping every other
    // option, then let a new provider switch it on again.
    let others: Vec<&str> = opts
        .split(',')
        .filter(|o| !matches!(*o, "rw" | "ro" | "favordynmods"))
        .collect();
    let mut flags = MountFlags::empty();
    for (name, flag) in [
        ("nosuid", MountFlags::NOSUID),
        ("nodev", MountFlags::NODEV),
        ("noexec", MountFlags::NOEXEC),
        ("relatime", MountFlags::RELATIME),
    ] {
        if mount_opts.split(',').any(|o| o == name) {
            flags |= flag;
        }
    }
    mount_remount(path.as_str(), flags, others.join(",").as_str()).unwrap();
    assert!(!cgroup2_mount().unwrap().2.contains("favordynmods"));

    let p =
        NativeProvider::new(env.provider.config().clone(), env.provider.images().clone()).unwrap();
    let summary = p.config_summary()["cgroup_favor_dynmods"].to_string();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let major: u32 = release.split('.').next().unwrap().parse().unwrap();
    if major < 6 {
        assert!(summary.contains("unavailable"), "{summary}");
        require("Linux 6.0+ (favordynmods)");
        return;
    }
    let (_, mount_after, opts_after) = cgroup2_mount().unwrap();
    assert!(
        opts_after.split(',').any(|o| o == "favordynmods"),
        "{opts_after} ({summary})"
    );
    assert!(summary.contains("set by stacyvm"), "{summary}");
    for o in others {
        assert!(
            opts_after.split(',').any(|x| x == o),
            "lost {o}: {opts_after}"
        );
    }
    assert_eq!(mount_after, mount_opts, "per-mount flags changed");

    // A provider that is told not to touch the host leaves it as it is.
    let mut cfg = env.provider.config().clone();
    cfg.cgroup_favor_dynmods = false;
    let p = NativeProvider::new(cfg, env.provider.images().clone()).unwrap();
    assert!(
        p.config_summary()["cgroup_favor_dynmods"]
            .to_string()
            .contains("off")
    );
}

/// Pull failures are told apart: the registry does not know the image
/// (404 at the API) or cannot be reached (502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_failures_say_which() {
    let Some((registry, _)) = test_registry() else {
        require("the test registry (scripts/ci/registry.sh)");
        return;
    };
    let Some(env) = env().await else { return };
    common::assert_pull_failures(&env.provider, &registry, |id, image| {
        let mut s = spawn_spec(id);
        s.image = image.to_owned();
        s
    })
    .await;
}

/// A command that removes or replaces the sandbox's `/dev/null` (or
/// `/dev/ptmx`) breaks that sandbox's devices, not later execs: those still
/// run, and a TTY that cannot be opened is a failed command (126 plus a
/// message on stderr), never a provider error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_survives_a_removed_dev_null() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();

    let (code, _, err) = run(p, &id, "rm -f /dev/null && echo junk > /dev/null").await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(p, &id, "echo still; cat").await;
    assert_eq!((code, out.as_str()), (0, "still\n"), "{err}");

    let (code, _, err) = run(p, &id, "rm -f /dev/ptmx /dev/pts/ptmx || true").await;
    assert_eq!(code, 0, "{err}");
    let mut s = p
        .exec_stream(
            &id,
            &sh("echo never"),
            StreamOptions {
                stdin: false,
                tty: Some(TtySize { cols: 80, rows: 24 }),
            },
        )
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
    // Where the runtime's devpts still hands out terminals the command runs;
    // otherwise it is a failed command that says why.
    match exit {
        Some(0) => assert!(out.contains("never"), "{out}"),
        Some(126) => assert!(out.contains("cannot set up"), "{out}"),
        other => panic!("exit {other:?}: {out}"),
    }
    p.destroy(&id).await.unwrap();
}

/// A command's whole process tree is gone before its exit is reported, so
/// a fork bomb that filled the sandbox's pids limit does not take the next
/// call down with it; processes that started their own session go too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_commands_processes_are_gone_before_its_reply() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();

    // Under gVisor the pids limit applies to its whole kernel, the agent
    // included (docs/native.md, "gVisor"): a fork bomb there takes the
    // sandbox's init down with it, so that runtime is only checked for the
    // background processes below.
    if std::env::var("STACYVM_NATIVE_RUNTIME").as_deref() == Ok("runsc") {
        eprintln!("runsc: fork-bomb step not applicable (pids limit covers the agent)");
    } else {
        let mut bomb = sh("f(){ f | f & }; f; sleep 1");
        bomb.timeout = Duration::from_secs(20);
        p.exec(&id, &bomb).await.unwrap();
        for i in 0..5 {
            let (code, out, err) = run(p, &id, "echo ok").await;
            assert_eq!(
                (code, out.as_str()),
                (0, "ok\n"),
                "exec {i} after the bomb: {err}"
            );
        }
    }

    let (code, _, err) = run(
        p,
        &id,
        "setsid sleep 300 </dev/null >/dev/null 2>&1 & sleep 300 </dev/null >/dev/null 2>&1 &",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(p, &id, "ps -o comm= 2>/dev/null || ps").await;
    assert!(
        !out.contains("sleep"),
        "background processes outlived their command: {out}"
    );
    if std::env::var("STACYVM_NATIVE_RUNTIME").as_deref() != Ok("runsc") {
        // (Under runsc the cgroup counts gVisor's threads instead.)
        let usage = p.resource_usage(&id).await.unwrap().expect("usage");
        assert!(usage.pids < 10, "{usage:?}");
    }
    p.destroy(&id).await.unwrap();
}
