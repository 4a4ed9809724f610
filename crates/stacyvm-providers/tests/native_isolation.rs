//! Isolation of native sandboxes, each test asserting the outcome: limits
//! hold inside the sandbox only, host processes/files/network stay out of
//! reach, and the file API does not follow planted symlinks.
#![cfg(feature = "native")]

mod native_support;

use std::time::Duration;

use futures::StreamExt;
use native_support::*;
use stacyvm_core::SandboxId;
use stacyvm_providers::Provider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bomb_stops_at_the_pids_limit_and_the_sandbox_still_answers() {
    let Some(env) = env_with(|c| c.pids_limit = 64).await else {
        return;
    };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();

    let mut bomb = sh("f() { f | f & sleep 5; }; f");
    bomb.timeout = Duration::from_secs(3);
    let provider = p.clone();
    let bid = id.clone();
    let task = tokio::spawn(async move { provider.exec(&bid, &bomb).await });
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Some(u)) = p.resource_usage(&id).await {
            peak = peak.max(u.pids);
        }
    }
    assert!(peak <= 64, "pids went to {peak} past the limit of 64");
    assert!(peak >= 32, "the bomb never got going ({peak} pids)");
    let _ = task.await.unwrap();

    // The timeout killed the bomb's process group; the sandbox answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, _) = run(p, &id, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    // The host is untouched: it can still start processes.
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    p.destroy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed_inside_the_sandbox_only() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    let mut spec = spawn_spec(&id);
    spec.memory_mb = 32;
    p.spawn(&spec).await.unwrap();
    let (code, _, _) = run(p, &id, "x=aaaaaaaa; while :; do x=$x$x; done").await;
    assert_eq!(code, 137, "the hog should die of SIGKILL (OOM)");
    let (code, out, _) = run(p, &id, "echo alive").await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    p.destroy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_see_host_processes_files_or_network() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();

    // Processes: only the agent and this command.
    let (_, out, _) = run(
        p,
        &id,
        "ls /proc | grep -c '^[0-9]'; cat /proc/1/cmdline | tr '\\0' ' '",
    )
    .await;
    let mut lines = out.lines();
    let count: usize = lines.next().unwrap().parse().unwrap();
    assert!(count <= 4, "sandbox sees {count} processes");
    assert!(lines.next().unwrap().contains("/.stacyvm/agent"), "{out}");

    // Files: a host file is not there; /etc/hostname is the image's.
    let secret = format!("/var/tmp/stacyvm-secret-{}", id.as_str());
    std::fs::write(&secret, "host secret").unwrap();
    let (code, out, _) = run(p, &id, &format!("cat {secret}")).await;
    std::fs::remove_file(&secret).unwrap();
    assert_ne!(code, 0);
    assert!(!out.contains("host secret"));
    let (_, out, _) = run(p, &id, "cat /etc/hostname").await;
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    assert_eq!(out, "sandbox\n");
    assert_ne!(out.trim(), host_hostname.trim());

    // Writes stay in the sandbox; mounting is refused.
    let marker = format!("/var/tmp/stacyvm-marker-{}", id.as_str());
    let (code, _, _) = run(p, &id, &format!("mkdir -p /var/tmp && echo x > {marker}")).await;
    assert_eq!(code, 0);
    assert!(
        !std::path::Path::new(&marker).exists(),
        "write reached the host"
    );
    let (code, _, err) = run(p, &id, "mkdir -p /mnt && mount -t tmpfs none /mnt").await;
    assert_ne!(code, 0, "mount succeeded: {err}");
    let (code, _, _) = run(p, &id, "unshare -U true").await;
    assert_ne!(code, 0, "creating a user namespace succeeded");

    // Network: loopback only, and a host listener is unreachable.
    let (_, out, _) = run(p, &id, "ls /sys/class/net").await;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let host_ip = host_ipv4().unwrap_or_else(|| "10.0.2.15".into());
    let (code, _, _) = run(
        p,
        &id,
        &format!(
            "wget -q -T 2 -O - http://{host_ip}:{port}/ || nc -w 2 {host_ip} {port} </dev/null"
        ),
    )
    .await;
    assert_ne!(code, 0, "sandbox reached the host at {host_ip}:{port}");
    let (code, out, _) = run(
        p,
        &id,
        "nc -l -p 8080 -e echo hi & sleep 0.2; nc 127.0.0.1 8080 </dev/null",
    )
    .await;
    assert_eq!((code, out.trim()), (0, "hi"), "loopback works inside");
    p.destroy(&id).await.unwrap();
}

/// The host's first non-loopback IPv4 address.
fn host_ipv4() -> Option<String> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    Some(s.local_addr().ok()?.ip().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_symlinks_are_not_followed_by_the_file_api() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let (code, _, _) = run(
        p,
        &id,
        "ln -s /etc/shadow /workspace/abs && ln -s ../../../../../../etc/shadow /workspace/rel",
    )
    .await;
    assert_eq!(code, 0);
    let host_shadow = std::fs::read("/etc/shadow").unwrap_or_default();
    for link in ["/workspace/abs", "/workspace/rel"] {
        match p.files().read(&id, link).await {
            Err(_) => {}
            Ok(mut s) => {
                let mut got = Vec::new();
                while let Some(Ok(c)) = s.next().await {
                    got.extend_from_slice(&c);
                }
                assert!(
                    host_shadow.is_empty() || got != host_shadow,
                    "{link} leaked /etc/shadow"
                );
            }
        }
        // Writing through the link must not touch the host file either.
        let _ = p
            .files()
            .write(&id, link, bytes::Bytes::from_static(b"pwned"), None)
            .await;
        assert_eq!(
            std::fs::read("/etc/shadow").unwrap_or_default(),
            host_shadow
        );
    }
    let info = p.files().stat(&id, "/workspace/abs").await.unwrap();
    assert!(info.is_symlink || !info.is_dir);
    p.destroy(&id).await.unwrap();
}
