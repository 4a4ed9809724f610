//! Network mode `allow` on the native provider, against the fake internet
//! of `scripts/ci/network.sh` (servers in a network namespace on
//! 198.18.0.0/24). While a test runs, a host rule drops and counts every
//! packet of a sandbox or of the egress proxy headed for the machine's real
//! interfaces; a test fails if it counted anything. No test names a real
//! address.
#![cfg(feature = "native")]

mod native_support;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use native_support::*;
use stacyvm_core::{NetworkMode, NetworkPolicy, SandboxId};
use stacyvm_providers::native::network::nft::{PROXY_MARK, RESOLVER_MARK};
use stacyvm_providers::native::{NativeConfig, NativeProvider};
use stacyvm_providers::{Provider, ProviderError, SpawnSpec};

const FAKE_1: &str = "198.18.0.1";
const FAKE_2: &str = "198.18.0.2";

/// Whether the fake internet is up (skips locally, fails in CI).
fn fake_internet() -> bool {
    let up = std::path::Path::new("/sys/class/net/svfake0").exists()
        && Command::new("curl")
            .args([
                "-fsS",
                "--noproxy",
                "*",
                "--max-time",
                "2",
                "-o",
                "/dev/null",
            ])
            .arg(format!("http://{FAKE_1}/"))
            .status()
            .is_ok_and(|s| s.success());
    up || require("the fake internet of scripts/ci/network.sh")
}

/// The drop-and-count rule on the real interfaces.
struct Guard {
    table: String,
}

impl Guard {
    fn install() -> Guard {
        let table = format!("stacyvm_guard_{}_{}", std::process::id(), next());
        let real: Vec<String> = std::fs::read_dir("/sys/class/net")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lo" && !n.starts_with("sv"))
            .map(|n| format!("\"{n}\""))
            .collect();
        assert!(!real.is_empty(), "no real interface to guard");
        let set = real.join(", ");
        let script = format!(
            "table inet {table} {{
  chain output {{
    type filter hook output priority filter - 20; policy accept;
    meta mark {{ {PROXY_MARK:#x}, {RESOLVER_MARK:#x} }} oifname {{ {set} }} counter drop
  }}
  chain forward {{
    type filter hook forward priority filter - 20; policy accept;
    iifname \"sv*\" oifname {{ {set} }} counter drop
  }}
}}
"
        );
        nft_script(&script);
        Guard { table }
    }

    /// Packets the guard dropped so far.
    fn counted(&self) -> u64 {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "inet", &self.table])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut n = 0;
        for item in v["nftables"].as_array().unwrap() {
            for e in item["rule"]["expr"].as_array().into_iter().flatten() {
                n += e["counter"]["packets"].as_u64().unwrap_or(0);
            }
        }
        n
    }

    fn assert_clean(&self) {
        assert_eq!(
            self.counted(),
            0,
            "traffic headed for a real interface (the fake internet is the only one allowed)"
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

/// Removes what a failing test left on the host: the links of the
/// sandboxes it registered and its provider's table.
struct Cleanup {
    table: String,
    ids: std::sync::Mutex<Vec<SandboxId>>,
}

impl Cleanup {
    fn new(p: &NativeProvider) -> Cleanup {
        Cleanup {
            table: p.config().egress.table.clone(),
            ids: Default::default(),
        }
    }

    fn id(&self) -> SandboxId {
        let id = SandboxId::generate();
        self.ids.lock().unwrap().push(id.clone());
        id
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in self.ids.lock().unwrap().iter() {
            let iface = stacyvm_providers::native::network::host_if(id.as_str());
            if std::path::Path::new("/sys/class/net").join(&iface).exists() {
                let _ = Command::new("ip").args(["link", "del", &iface]).status();
            }
            let ns = format!("stacyvm-{id}");
            if std::path::Path::new("/run/netns").join(&ns).exists() {
                let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            }
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

fn nft_script(script: &str) {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft refused:\n{script}");
}

fn next() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A subnet and table of this test's own, so tests in parallel processes
/// never share addresses or rules.
fn egress_config(c: &mut NativeConfig) {
    let n = (std::process::id() * 7 + next()) % 2000;
    c.egress.subnet = format!("10.{}.{}.0/24", 232 + n / 250, n % 250);
    c.egress.table = format!("stacyvm_t{}_{}", std::process::id(), next());
    c.egress.connect_timeout_ms = 3000;
    c.egress.dns_upstream = "198.18.0.3".into();
}

fn allow(entries: &[&str]) -> NetworkPolicy {
    NetworkPolicy {
        mode: NetworkMode::Allow,
        allow: entries.iter().map(|s| s.to_string()).collect(),
        deny: vec![],
    }
}

fn spec_with(id: &SandboxId, network: NetworkPolicy) -> SpawnSpec {
    SpawnSpec {
        network: Some(network),
        ..spawn_spec(id)
    }
}

/// An HTTP GET from inside with busybox `nc` (its `wget` crashes on some
/// kernels); Ok(body) or Err(what happened).
async fn fetch(p: &NativeProvider, id: &SandboxId, url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "80"));
    let (code, out, err) = run(
        p,
        id,
        &format!(
            "printf 'GET /{path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n' | nc -w 3 {host} {port}"
        ),
    )
    .await;
    match out.split_once("\r\n\r\n") {
        Some((head, body))
            if code == 0 && head.starts_with("HTTP/1.") && head.contains(" 200 ") =>
        {
            Ok(body.to_string())
        }
        _ => Err(format!("exit {code}: {out}{err}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_reaches_only_the_addresses_and_ports_it_names() {
    if !fake_internet() {
        return;
    }
    let Some(env) = env_with(egress_config).await else {
        return;
    };
    let guard = Guard::install();
    let p = &env.provider;
    let cleanup = Cleanup::new(p);
    let id = cleanup.id();
    let policy = allow(&[&format!("{FAKE_1}:80")]);
    p.spawn(&spec_with(&id, policy.clone())).await.unwrap();
    assert_eq!(p.network(&id).await.unwrap(), policy);

    let (_, out, _) = run(p, &id, "ls /sys/class/net").await;
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
    assert_eq!(
        fetch(p, &id, &format!("http://{FAKE_1}/")).await.unwrap(),
        "fake internet 198.18.0.1:80\n"
    );
    // Another port of the same address, another address: refused.
    assert!(
        fetch(p, &id, &format!("http://{FAKE_1}:8080/"))
            .await
            .is_err()
    );
    assert!(fetch(p, &id, &format!("http://{FAKE_2}/")).await.is_err());

    p.destroy(&id).await.unwrap();
    assert_eq!(p.network_leftovers(&id).await.0, Vec::<String>::new());
    guard.assert_clean();
    drop(cleanup);
}

/// An HTTP GET to `ip:port` saying `Host: host`; Ok(body) or Err.
async fn fetch_as(
    p: &NativeProvider,
    id: &SandboxId,
    ip: &str,
    port: u16,
    host: &str,
) -> Result<String, String> {
    let (code, out, err) = run(
        p,
        id,
        &format!(
            "printf 'GET / HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n' | nc -w 3 {ip} {port}"
        ),
    )
    .await;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(format!("exit {code}: {out}{err}")),
    }
}

/// Sends a TLS ClientHello naming `sni` to `ip:443`; whether a TLS
/// handshake record came back.
async fn tls_answers(p: &NativeProvider, id: &SandboxId, ip: &str, sni: &str) -> bool {
    let hello: String = stacyvm_providers::native::network::sniff::client_hello(sni)
        .iter()
        .map(|b| format!("\\{b:03o}"))
        .collect();
    let (_, out, _) = run(
        p,
        id,
        &format!("printf '{hello}' | nc -w 2 {ip} 443 | head -c 1 | od -An -tx1"),
    )
    .await;
    out.trim() == "16"
}

/// Domain entries: DNS answers only allowed names (and no other resolver
/// is reachable), and a connection passes by name only when its SNI or
/// `Host` is allowed and it goes to an address of that name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_pass_by_dns_sni_and_host_only() {
    if !fake_internet() {
        return;
    }
    let Some(env) = env_with(egress_config).await else {
        return;
    };
    let guard = Guard::install();
    let p = &env.provider;
    let cleanup = Cleanup::new(p);
    let id = cleanup.id();
    p.spawn(&spec_with(
        &id,
        allow(&["allowed.test:80", "allowed.test:443"]),
    ))
    .await
    .unwrap();

    // DNS: the allowed name resolves, others do not, asked of us or of
    // any other server; TXT gets nothing.
    let (_, out, _) = run(p, &id, "nslookup -type=a allowed.test").await;
    assert!(out.contains("198.18.0.1"), "{out}");
    for q in [
        "nslookup -type=a other.test",
        "nslookup -type=a other.test 198.18.0.3",
        "nslookup -type=a allowed.test.evil.example 198.18.0.3",
        "nslookup -type=txt allowed.test",
    ] {
        let (_, out, _) = run(p, &id, q).await;
        assert!(
            !out.contains("198.18.0.2") && !out.contains("text ="),
            "{q}: {out}"
        );
        assert!(!out.contains("Address: 198.18.0.1"), "{q}: {out}");
    }

    // HTTP by name: allowed Host to its address passes; a forged Host, or
    // the allowed Host to an address that is not its, does not.
    assert_eq!(
        fetch_as(p, &id, FAKE_1, 80, "allowed.test").await.unwrap(),
        "fake internet 198.18.0.1:80\n"
    );
    assert!(fetch_as(p, &id, FAKE_1, 80, "other.test").await.is_err());
    assert!(fetch_as(p, &id, FAKE_2, 80, "allowed.test").await.is_err());
    assert!(
        fetch_as(p, &id, FAKE_1, 8080, "allowed.test")
            .await
            .is_err()
    );
    // TLS by SNI, the same way.
    assert!(tls_answers(p, &id, FAKE_1, "allowed.test").await);
    assert!(!tls_answers(p, &id, FAKE_1, "other.test").await);

    p.destroy(&id).await.unwrap();
    assert_eq!(p.network_leftovers(&id).await.0, Vec::<String>::new());
    guard.assert_clean();
    drop(cleanup);
}

/// A policy change takes effect at once: new connections follow it, and
/// an open connection it no longer allows is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_apply_at_once_and_cut_what_is_no_longer_allowed() {
    if !fake_internet() {
        return;
    }
    let Some(env) = env_with(egress_config).await else {
        return;
    };
    let guard = Guard::install();
    let p = &env.provider;
    let cleanup = Cleanup::new(p);
    let id = cleanup.id();
    p.spawn(&spec_with(&id, allow(&[&format!("{FAKE_1}:80")])))
        .await
        .unwrap();
    assert!(fetch(p, &id, &format!("http://{FAKE_1}/")).await.is_ok());

    // A connection that opens now and asks only after the change.
    let live = {
        let (p, id) = (p.clone(), id.clone());
        tokio::spawn(async move {
            run(
                &p,
                &id,
                &format!("(sleep 1.5; printf 'GET / HTTP/1.0\\r\\n\\r\\n') | nc -w 4 {FAKE_1} 80"),
            )
            .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let changed = allow(&[&format!("{FAKE_2}:80")]);
    let started = std::time::Instant::now();
    p.set_network(&id, &changed).await.unwrap();
    let took = started.elapsed();
    assert!(took.as_millis() <= 100, "the change took {took:?}");
    eprintln!("policy change took {took:?}");
    assert_eq!(p.network(&id).await.unwrap(), changed);

    let (_, out, _) = live.await.unwrap();
    assert!(
        !out.contains("fake internet"),
        "the open connection was not cut: {out}"
    );
    assert!(fetch(p, &id, &format!("http://{FAKE_1}/")).await.is_err());
    assert_eq!(
        fetch(p, &id, &format!("http://{FAKE_2}/")).await.unwrap(),
        "fake internet 198.18.0.2:80\n"
    );
    // The mode itself stays.
    let none = NetworkPolicy::none();
    assert!(matches!(
        p.set_network(&id, &none).await,
        Err(ProviderError::InvalidInput(_))
    ));
    p.destroy(&id).await.unwrap();
    assert_eq!(p.network_leftovers(&id).await.0, Vec::<String>::new());
    guard.assert_clean();
    drop(cleanup);
}

/// The host, the API port, another sandbox and the metadata address stay
/// out of reach even when the policy names them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_destinations_are_unreachable_whatever_the_policy() {
    if !fake_internet() {
        return;
    }
    let Some(env) = env_with(egress_config).await else {
        return;
    };
    let guard = Guard::install();
    let p = &env.provider;
    let cleanup = Cleanup::new(p);
    // A host service on every address, the API port among them.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut c in listener.incoming().flatten() {
            let _ = c.write_all(b"host-secret\n");
        }
    });
    let host_ip = host_ipv4();
    let everything_internal = allow(&[
        "10.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        &host_ip,
        &format!("{FAKE_2}:80"),
    ]);
    let (a, b) = (cleanup.id(), cleanup.id());
    p.spawn(&spec_with(&a, everything_internal.clone()))
        .await
        .unwrap();
    p.spawn(&spec_with(&b, everything_internal)).await.unwrap();
    // The policy itself works.
    assert!(fetch(p, &a, &format!("http://{FAKE_2}/")).await.is_ok());

    let (_, b_ip, _) = run(
        p,
        &b,
        "ip -4 -o addr show eth0 | sed 's/.*inet \\([0-9.]*\\).*/\\1/'",
    )
    .await;
    let b_ip = b_ip.trim().to_string();
    // A server in b, for as long as this test needs it.
    let server = {
        let (p, b) = (p.clone(), b.clone());
        tokio::spawn(async move {
            let spec = sh("while :; do nc -l -p 9000 -e echo from-b; done");
            p.exec(&b, &spec).await
        })
    };
    let (_, out, _) = run(p, &b, "sleep 0.3; nc -w 2 127.0.0.1 9000 </dev/null").await;
    assert_eq!(out.trim(), "from-b", "the server in b works");
    let (_, gw, _) = run(p, &a, "ip route | awk '/default/ {print $3}'").await;
    let gw = gw.trim().to_string();
    assert!(!b_ip.is_empty() && !gw.is_empty());
    for (host, port) in [
        (b_ip.as_str(), 9000),
        (gw.as_str(), port),
        (host_ip.as_str(), port),
        ("127.0.0.1", port),
        ("169.254.169.254", 80),
    ] {
        // The proxy takes the handshake and resets: what counts is that
        // nothing of the target's answer arrives.
        let (_, out, _) = run(p, &a, &format!("nc -w 2 {host} {port} </dev/null")).await;
        assert!(
            !out.contains("host-secret") && !out.contains("from-b"),
            "sandbox reached {host}:{port}: {out}"
        );
    }
    server.abort();
    for id in [&a, &b] {
        p.destroy(id).await.unwrap();
        assert_eq!(p.network_leftovers(id).await.0, Vec::<String>::new());
    }
    guard.assert_clean();
    drop(cleanup);
}

/// A spawn that fails half-way, and a server restart, leave no link, rule,
/// proxy or address behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_spawns_and_restarts_leave_nothing_behind() {
    if !fake_internet() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("svn")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut cfg = NativeConfig::default();
    egress_config(&mut cfg);
    let same = cfg.egress.clone();
    let Some(p) = provider_at(dir.path(), |c| c.egress = same.clone()).await else {
        return;
    };
    let guard = Guard::install();
    let cleanup = Cleanup::new(&p);
    let policy = allow(&[&format!("{FAKE_1}:80")]);

    let bad = cleanup.id();
    let err = p
        .spawn(&SpawnSpec {
            image: "stacyvm-test/no-such-image:none".into(),
            ..spec_with(&bad, policy.clone())
        })
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(p.network_leftovers(&bad).await.0, Vec::<String>::new());

    let id = cleanup.id();
    p.spawn(&spec_with(&id, policy)).await.unwrap();
    assert!(fetch(&p, &id, &format!("http://{FAKE_1}/")).await.is_ok());

    // A new server on the same data: the link is found and works again.
    drop(p);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let same = cfg.egress.clone();
    let p = provider_at(dir.path(), |c| c.egress = same.clone())
        .await
        .unwrap();
    // From here a failure still destroys what is left.
    let env = Env { provider: p, dir };
    let p = env.provider.clone();
    let listed = p.inventory().await.unwrap().unwrap();
    assert!(listed.iter().any(|r| r.id == id));
    assert_eq!(
        fetch(&p, &id, &format!("http://{FAKE_1}/")).await.unwrap(),
        "fake internet 198.18.0.1:80\n"
    );
    p.destroy(&id).await.unwrap();
    assert_eq!(p.network_leftovers(&id).await.0, Vec::<String>::new());
    guard.assert_clean();
    drop(cleanup);
}

/// Mode `host` is refused unless the config opts in; `allow` entries are
/// checked again at the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_needs_the_opt_in() {
    let Some(env) = env_with(egress_config).await else {
        return;
    };
    let p = &env.provider;
    let host = NetworkPolicy {
        mode: NetworkMode::Host,
        ..Default::default()
    };
    let err = p
        .spawn(&spec_with(&SandboxId::generate(), host))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::InvalidInput(m) if m.contains("allow_host_mode")),
        "{err:?}"
    );
    let bad = allow(&["*.*.example"]);
    let err = p
        .spawn(&spec_with(&SandboxId::generate(), bad))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::InvalidInput(_)), "{err:?}");
    assert!(
        !p.capabilities()
            .contains(&stacyvm_core::Capability::NetworkHost)
    );
}

/// The host's first non-loopback IPv4 address (found without sending).
fn host_ipv4() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // connect() on UDP only picks a route; nothing is sent.
    s.connect((FAKE_1, 9)).unwrap();
    let svfake = s.local_addr().unwrap().ip().to_string();
    // That is the fake internet's side; prefer a real interface's address.
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains(" sv"))
        .find_map(|l| {
            let addr = l.split_whitespace().nth(3)?;
            Some(addr.split('/').next()?.to_string())
        })
        .unwrap_or(svfake)
}
