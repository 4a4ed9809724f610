//! `stacyvm bench --embedded --provider mock --quick --json` runs end to
//! end and reports every scenario with sane figures. Not a timing test.

use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 12] = [
    "spawn",
    "spawn_first_exec",
    "destroy",
    "exec",
    "exec_stream_first_byte",
    "exec_stream_exit",
    "file_write_1k",
    "file_read_1k",
    "file_write_8m",
    "file_read_8m",
    "mixed",
    "density",
];

fn run_bench(extra: &[&str]) -> Value {
    run_bench_with(extra, &[])
}

fn run_bench_with(extra: &[&str], env: &[(&str, &str)]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_stacyvm"))
        .args([
            "bench",
            "--embedded",
            "--provider",
            "mock",
            "--quick",
            "--json",
        ])
        .args(extra)
        .env_remove("STACYVM_SERVER")
        .envs(env.iter().copied())
        .output()
        .expect("stacyvm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} is not a number in {v}"))
}

#[test]
fn quick_mock_bench_reports_every_scenario() {
    let doc = run_bench(&["--duration", "1"]);

    let m = &doc["machine"];
    assert!(m["cpus"].as_u64().unwrap() >= 1, "{m}");
    assert!(m["memory"].as_u64().unwrap() > 0, "{m}");
    assert!(!m["os"].as_str().unwrap().is_empty(), "{m}");
    assert!(!m["kernel"].as_str().unwrap().is_empty(), "{m}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(doc["date"].as_str().unwrap()).is_ok(),
        "{doc}"
    );

    let results = doc["results"].as_array().expect("results array");
    for scenario in SCENARIOS {
        let r = results
            .iter()
            .find(|r| r["provider"] == "mock" && r["scenario"] == scenario)
            .unwrap_or_else(|| panic!("scenario {scenario} missing from {doc}"));
        assert!(r["count"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        let (min, p50, p95, p99, max) = (
            f(r, "min_ms"),
            f(r, "p50_ms"),
            f(r, "p95_ms"),
            f(r, "p99_ms"),
            f(r, "max_ms"),
        );
        assert!(
            0.0 < min && min <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
            "{r}"
        );
    }
    let count_of = |s: &str| {
        results.iter().find(|r| r["scenario"] == s).unwrap()["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count_of("spawn"), 5, "--quick measures 5 iterations");
    assert_eq!(count_of("density"), 5, "--quick holds 5 sandboxes");

    let mixed = results.iter().find(|r| r["scenario"] == "mixed").unwrap();
    assert!(f(mixed, "cycles_per_sec") > 0.0, "{mixed}");
    assert_eq!(mixed["clients"], 2, "{mixed}");
    let density = results.iter().find(|r| r["scenario"] == "density").unwrap();
    assert_eq!(density["held"], 5, "{density}");
    assert!(f(density, "server_rss_bytes") > 0.0, "{density}");
    assert!(
        density["server_rss_per_sandbox_bytes"].is_u64(),
        "{density}"
    );
}

#[test]
fn compare_raw_adds_the_fork_floor_and_a_ratio() {
    let doc = run_bench(&["--compare-raw", "--count", "3", "--duration", "0.5"]);
    let results = doc["results"].as_array().unwrap();
    let fork = results
        .iter()
        .find(|r| r["provider"] == "fork" && r["scenario"] == "exec")
        .unwrap_or_else(|| panic!("no fork floor in {doc}"));
    assert_eq!(fork["count"], 3, "{fork}");
    assert!(f(fork, "min_ms") > 0.0, "{fork}");
    let exec = results
        .iter()
        .find(|r| r["provider"] == "mock" && r["scenario"] == "exec")
        .unwrap();
    assert!(f(exec, "vs_fork_p50") > 0.0, "{exec}");
}

#[test]
fn unknown_provider_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_stacyvm"))
        .args(["bench", "--embedded", "--provider", "nope", "--json"])
        .output()
        .expect("stacyvm runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown provider \"nope\""), "{stderr}");
}

/// The embedded server reads the user's configuration (here from the
/// environment), except what the bench must own: an API key would lock the
/// bench's own client out.
#[test]
fn embedded_server_reads_the_configuration_but_not_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_stacyvm"))
        .args(["bench", "--embedded", "--provider", "mock", "--quick"])
        .env("STACYVM_DEFAULTS_TTL", "not-a-duration")
        .output()
        .expect("stacyvm runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("configuration"), "{stderr}");
    assert!(stderr.contains("not-a-duration"), "{stderr}");

    let doc = run_bench_with(
        &["--count", "2", "--density", "1", "--duration", "0.3"],
        &[
            ("STACYVM_AUTH_ENABLED", "true"),
            ("STACYVM_AUTH_API_KEY", "bench-test-key"),
        ],
    );
    let results = doc["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .all(|r| r["errors"].as_u64() == Some(0) && r["count"].as_u64() > Some(0)),
        "{doc}"
    );
}

/// `--scenario` reruns only the named scenarios (their loop may measure
/// more, but only the named ones are reported); an unknown name is refused.
#[test]
fn scenario_filter_runs_only_the_named_scenarios() {
    let doc = run_bench(&["--scenario", "spawn_first_exec,density", "--density", "2"]);
    let mut got: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["scenario"].as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, ["density", "spawn_first_exec"], "{doc}");
    for r in doc["results"].as_array().unwrap() {
        assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    }

    let doc = run_bench(&["--scenario", "exec", "--compare-raw"]);
    let got: Vec<(&str, &str)> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap(),
                r["scenario"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("mock", "exec"), ("fork", "exec")], "{doc}");

    let out = Command::new(env!("CARGO_BIN_EXE_stacyvm"))
        .args([
            "bench",
            "--embedded",
            "--provider",
            "mock",
            "--scenario",
            "spwan",
        ])
        .output()
        .expect("stacyvm runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown scenario \"spwan\""), "{stderr}");
}
