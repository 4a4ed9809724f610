//! Lifecycle of native sandboxes across provider restarts, and destroy
//! leaving nothing behind (mounts, cgroups, processes, files).
#![cfg(feature = "native")]

mod native_support;

use std::time::{Duration, Instant};

use native_support::*;
use stacyvm_core::SandboxId;
use stacyvm_providers::native::image::{ImageConfig, ImageStore};
use stacyvm_providers::native::{NativeProvider, cgroup_dirs};
use stacyvm_providers::{Provider, RuntimeStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_survive_a_provider_restart_and_are_readopted() {
    let Some(env) = env().await else { return };
    let id = SandboxId::generate();
    env.provider.spawn(&spawn_spec(&id)).await.unwrap();
    run(&env.provider, &id, "echo kept > /workspace/state").await;
    let config = env.provider.config().clone();
    // The first provider is no longer used from here on, as if its server
    // had stopped (its sandbox keeps running).

    // A new provider on the same data dir, as after a server restart.
    let images = ImageStore::open(env.dir.path().join("images"), ImageConfig::default()).unwrap();
    let p = NativeProvider::new(config, images).unwrap();
    let inv = p.inventory().await.unwrap().unwrap();
    let found = inv
        .iter()
        .find(|r| r.id == id)
        .expect("sandbox in inventory");
    assert_eq!(found.status, RuntimeStatus::Running);
    assert_eq!(found.image, IMAGE);
    assert_eq!(found.labels.get("owner").map(String::as_str), Some("test"));
    assert!(found.created_at.is_some());
    let (code, out, _) = run(&p, &id, "cat /workspace/state").await;
    assert_eq!((code, out.as_str()), (0, "kept\n"));
    p.destroy(&id).await.unwrap();
    assert!(p.inventory().await.unwrap().unwrap().is_empty());
}

/// Pause survives a server restart: a new provider on the same data dir
/// sees the frozen runtime as `Paused` (status and inventory), resumes it
/// with its files intact, and a paused sandbox can be destroyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_sandbox_stays_paused_across_a_provider_restart() {
    let Some(env) = env().await else { return };
    let id = SandboxId::generate();
    env.provider.spawn(&spawn_spec(&id)).await.unwrap();
    run(&env.provider, &id, "echo kept > /workspace/state").await;
    env.provider.pause(&id).await.unwrap();
    let config = env.provider.config().clone();

    let images = ImageStore::open(env.dir.path().join("images"), ImageConfig::default()).unwrap();
    let p = NativeProvider::new(config, images).unwrap();
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Paused);
    let inv = p.inventory().await.unwrap().unwrap();
    let found = inv.iter().find(|r| r.id == id).expect("in inventory");
    assert_eq!(found.status, RuntimeStatus::Paused);
    p.resume(&id).await.unwrap();
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Running);
    let (code, out, _) = run(&p, &id, "cat /workspace/state").await;
    assert_eq!((code, out.as_str()), (0, "kept\n"));

    // Destroy while paused leaves nothing behind.
    p.pause(&id).await.unwrap();
    p.destroy(&id).await.unwrap();
    assert_eq!(p.status(&id).await.unwrap(), RuntimeStatus::Missing);
    let rel = format!("/stacyvm/{id}");
    assert!(
        cgroup_dirs(&rel).is_empty(),
        "cgroup left: {:?}",
        cgroup_dirs(&rel)
    );
    assert!(p.inventory().await.unwrap().unwrap().is_empty());
}

fn p50(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Host pids of sandbox agents whose sandbox id is in `ids` (the agent's
/// environment holds `HOSTNAME=<id>`).
fn agent_processes(ids: &[SandboxId]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.starts_with(b"/.stacyvm/agent\0"))
        })
        .filter(|e| {
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            let env = String::from_utf8_lossy(&env);
            ids.iter()
                .any(|id| env.contains(&format!("HOSTNAME={id}\0")))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Spawn/exec/destroy cycles leave no mount, cgroup, process, runtime
/// state or file behind. `STACYVM_NATIVE_CYCLES` sets the count (50 by
/// default; the 1,000 is a manual run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_destroy_cycles_leak_nothing() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let cycles: usize = std::env::var("STACYVM_NATIVE_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let data = p.config().data_dir.clone();
    let mut ids = Vec::new();
    let (mut spawn_t, mut exec_t, mut destroy_t) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cycles {
        let id = SandboxId::generate();
        let t = Instant::now();
        p.spawn(&spawn_spec(&id)).await.unwrap();
        spawn_t.push(t.elapsed());
        let t = Instant::now();
        let (code, _, _) = run(p, &id, "echo hi > /tmp/x; sleep 100 >/dev/null 2>&1 &").await;
        exec_t.push(t.elapsed());
        assert_eq!(code, 0);
        let t = Instant::now();
        p.destroy(&id).await.unwrap();
        destroy_t.push(t.elapsed());
        ids.push(id);
    }
    eprintln!(
        "{cycles} cycles, p50: spawn {:?}, first exec {:?}, destroy {:?}",
        p50(&mut spawn_t),
        p50(&mut exec_t),
        p50(&mut destroy_t)
    );
    let data_s = data.display().to_string();
    assert_eq!(mounts_with(&data_s), Vec::<String>::new(), "mounts left");
    for id in &ids {
        let dirs = cgroup_dirs(&format!("/stacyvm/{id}"));
        assert!(dirs.is_empty(), "cgroups left for {id}: {dirs:?}");
    }
    let left: Vec<_> = std::fs::read_dir(data.join("sandboxes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "sandbox dirs left: {left:?}");
    let runtime_left: Vec<_> = std::fs::read_dir(data.join("runtime"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        runtime_left.is_empty(),
        "runtime state left: {runtime_left:?}"
    );
    assert_eq!(
        agent_processes(&ids),
        Vec::<String>::new(),
        "agent processes left"
    );
    assert!(p.inventory().await.unwrap().unwrap().is_empty());
}

/// Nothing of sandbox `id` is left on the host: mounts, cgroups, files,
/// runtime state.
fn assert_gone(p: &NativeProvider, id: &SandboxId) {
    let data = p.config().data_dir.clone();
    assert_eq!(
        mounts_with(id.as_str()),
        Vec::<String>::new(),
        "mounts left"
    );
    let dirs = cgroup_dirs(&format!("/stacyvm/{id}"));
    assert!(dirs.is_empty(), "cgroups left for {id}: {dirs:?}");
    let dir = data.join("sandboxes").join(id.as_str());
    assert!(!dir.exists(), "{} left", dir.display());
    let state = data.join("runtime").join(id.as_str());
    assert!(!state.exists(), "{} left", state.display());
}

/// Destroy stops the init itself through the pid the runtime recorded; it
/// must cope with every state that pid can be in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_copes_with_every_state_of_the_init() {
    let Some(env) = env().await else { return };
    let p = &env.provider;
    let pid_file = |id: &SandboxId| {
        p.config()
            .data_dir
            .join("sandboxes")
            .join(id.as_str())
            .join("init.pid")
    };
    let init_pid = |id: &SandboxId| -> i32 {
        std::fs::read_to_string(pid_file(id))
            .expect("the runtime writes init.pid")
            .trim()
            .parse()
            .unwrap()
    };

    // Running, with a process of its own in the background: both go.
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let (code, out, _) = run(p, &id, "sleep 300 >/dev/null 2>&1 & echo $!").await;
    assert_eq!(code, 0);
    let inner: i32 = out.trim().parse().unwrap();
    assert!(inner > 1, "{out}");
    let init = init_pid(&id);
    p.destroy(&id).await.unwrap();
    assert!(
        !std::fs::read(format!("/proc/{init}/cmdline")).is_ok_and(|c| !c.is_empty()),
        "init {init} still running"
    );
    assert_gone(p, &id);

    // Killed from outside before destroy (an OOM kill, an admin).
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let init = init_pid(&id);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    p.destroy(&id).await.unwrap();
    assert_gone(p, &id);

    // No pid file (a sandbox from a version that did not record it): the
    // runtime's forced delete still removes everything.
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    std::fs::remove_file(pid_file(&id)).unwrap();
    p.destroy(&id).await.unwrap();
    assert_gone(p, &id);

    // A pid file naming some other process (a recycled pid): that process
    // is not signalled, and the sandbox still goes.
    let id = SandboxId::generate();
    p.spawn(&spawn_spec(&id)).await.unwrap();
    let mut bystander = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    std::fs::write(pid_file(&id), bystander.id().to_string()).unwrap();
    p.destroy(&id).await.unwrap();
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "destroy killed a process outside the sandbox"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    assert_gone(p, &id);
    assert!(p.inventory().await.unwrap().unwrap().is_empty());
}
