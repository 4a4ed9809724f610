use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use stacyvm_core::{Capability, ProviderHealth, SandboxState};

use super::*;
use crate::obs::{Operation, OperationMetrics, RuntimeStats};

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict little parser of the 0.0.4 text format: enough to check names,
/// label escaping and values independently of the encoder.
fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "duplicate TYPE {name}"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name {name}"
        );
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            loop {
                let (start, _) = *chars.peek().unwrap();
                let eq = body[start..].find('=').unwrap() + start;
                let key = body[start..eq].to_owned();
                while chars.next_if(|(i, _)| *i <= eq).is_some() {}
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'));
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in {line}"),
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &body[i + 1..];
                        break;
                    }
                    (_, c) => panic!("unexpected {c} in {line}"),
                }
            }
        }
        let value = match rest.trim() {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (samples, types)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn one(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, labels);
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0].value
}

fn health(name: &str, healthy: bool, default: bool, runtime_count: Option<u64>) -> ProviderHealth {
    ProviderHealth {
        name: name.to_owned(),
        healthy,
        default,
        latency_ms: 3,
        last_checked: Utc.with_ymd_and_hms(2026, 5, 8, 10, 30, 0).unwrap(),
        error: (!healthy).then(|| "daemon down".to_owned()),
        capabilities: vec![Capability::Spawn, Capability::Exec],
        runtime_count,
        unavailable: Default::default(),
    }
}

pub(crate) fn sample_snapshot(sandboxes: usize) -> ScrapeSnapshot {
    let metrics = OperationMetrics::new();
    for provider in ["docker", "native"] {
        for op in Operation::ALL {
            for i in 0..20u64 {
                let result = if i == 0 { Err("exec timeout") } else { Ok(()) };
                metrics.record(op, provider, Duration::from_micros(200 + i * 997), result);
            }
        }
    }
    ScrapeSnapshot {
        version: "0.1.0".to_owned(),
        uptime: Duration::from_millis(12_500),
        process: Some(ProcessStats {
            pid: 1,
            uptime_seconds: Some(12.5),
            start_time_unix: Some(1_778_236_200.25),
            threads: Some(9),
            resident_memory_bytes: Some(31_457_280),
            resident_memory_peak_bytes: Some(40_000_000),
            virtual_memory_bytes: Some(1_000_000_000),
            open_fds: Some(17),
            max_fds: Some(1024),
            cpu_seconds: Some(1.25),
            cpu_user_seconds: Some(1.0),
            cpu_system_seconds: Some(0.25),
            runtime: Some(RuntimeStats {
                workers: 2,
                alive_tasks: 5,
                global_queue_depth: 0,
            }),
        }),
        sandboxes: vec![
            SandboxCount {
                state: SandboxState::Running,
                provider: "docker".to_owned(),
                count: 4,
            },
            SandboxCount {
                state: SandboxState::Error,
                provider: "native".to_owned(),
                count: 1,
            },
        ],
        providers: vec![
            health("docker", true, true, Some(4)),
            health("native", false, false, None),
        ],
        events: EventStats {
            subscribers: 2,
            history_size: 100,
            events_total: 1234,
        },
        operations: metrics.snapshot(),
        sandbox_resources: (0..sandboxes)
            .map(|i| SandboxResources {
                sandbox: format!("sb-{i:08x}"),
                provider: if i % 2 == 0 { "docker" } else { "native" }.to_owned(),
                owner: format!("team-{}", i % 7),
                cpu_seconds: Some(i as f64 * 0.5),
                memory_bytes: Some(1_048_576 + i as u64),
                pids: Some(3),
            })
            .collect(),
        destroys: crate::obs::DestroyStats {
            failures_total: 3,
            retries_total: 2,
            pending: 1,
        },
    }
}

#[test]
fn keeps_every_api_v1_name_with_its_labels() {
    let text = render(sample_snapshot(3)).unwrap();
    let (samples, types) = parse(&text);

    assert_eq!(one(&samples, "stacyvm_uptime_seconds", &[]), 12.5);
    assert_eq!(
        one(
            &samples,
            "stacyvm_sandboxes_total",
            &[("state", "running"), ("provider", "docker")]
        ),
        4.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_sandboxes_total",
            &[("state", "error"), ("provider", "native")]
        ),
        1.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_healthy",
            &[("provider", "docker"), ("default", "true")]
        ),
        1.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_healthy",
            &[("provider", "native"), ("default", "false")]
        ),
        0.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_health_latency_milliseconds",
            &[("provider", "docker")]
        ),
        3.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_runtime_sandboxes",
            &[("provider", "docker")]
        ),
        4.0
    );
    assert!(
        find(
            &samples,
            "stacyvm_provider_runtime_sandboxes",
            &[("provider", "native")]
        )
        .is_empty()
    );
    assert_eq!(one(&samples, "stacyvm_events_total", &[]), 1234.0);
    assert_eq!(one(&samples, "stacyvm_event_subscribers", &[]), 2.0);
    assert_eq!(one(&samples, "stacyvm_event_history_size", &[]), 100.0);

    let exec = [("operation", "exec"), ("provider", "docker")];
    assert_eq!(
        one(&samples, "stacyvm_operation_success_total", &exec),
        19.0
    );
    assert_eq!(one(&samples, "stacyvm_operation_failure_total", &exec), 1.0);
    assert_eq!(
        one(
            &samples,
            "stacyvm_operation_latency_milliseconds_count",
            &exec
        ),
        20.0
    );
    // sum of 200us + i*997us for i in 0..20 = 193.43ms, truncated
    assert_eq!(
        one(
            &samples,
            "stacyvm_operation_latency_milliseconds_sum",
            &exec
        ),
        193.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_operation_latency_milliseconds_max",
            &exec
        ),
        19.0
    );
    for op in Operation::ALL {
        let l = [("operation", op.as_str()), ("provider", "native")];
        assert_eq!(
            one(&samples, "stacyvm_operation_success_total", &l),
            19.0,
            "{op}"
        );
    }

    assert_eq!(types["stacyvm_sandboxes_total"], "untyped");
    assert_eq!(types["stacyvm_events_total"], "counter");
    assert_eq!(types["stacyvm_operation_success_total"], "counter");
    assert_eq!(
        types["stacyvm_operation_latency_milliseconds_sum"],
        "untyped"
    );
    assert_eq!(types["stacyvm_operation_duration_seconds"], "histogram");
    assert_eq!(types["process_cpu_seconds_total"], "counter");
    assert_eq!(types["stacyvm_sandbox_cpu_seconds_total"], "counter");
    assert_eq!(
        one(&samples, "stacyvm_build_info", &[("version", "0.1.0")]),
        1.0
    );
}

#[test]
fn histogram_is_cumulative_and_consistent() {
    let text = render(sample_snapshot(0)).unwrap();
    let (samples, _) = parse(&text);
    let exec = [("operation", "exec"), ("provider", "docker")];
    let buckets = find(&samples, "stacyvm_operation_duration_seconds_bucket", &exec);
    assert_eq!(buckets.len(), crate::obs::operations::LATENCY_BUCKET_COUNT);
    let values: Vec<f64> = buckets.iter().map(|b| b.value).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    assert_eq!(buckets[0].labels["le"], "0.0001");
    assert_eq!(buckets.last().unwrap().labels["le"], "+Inf");
    assert_eq!(*values.last().unwrap(), 20.0);
    assert_eq!(
        one(&samples, "stacyvm_operation_duration_seconds_count", &exec),
        20.0
    );
    let sum = one(&samples, "stacyvm_operation_duration_seconds_sum", &exec);
    assert!((sum - 0.19343).abs() < 1e-9, "sum {sum}");
    // 200us falls in (0.1ms, 0.25ms]; 1.197ms in (1ms, 2.5ms]
    let le = |b: &str| {
        one(
            &samples,
            "stacyvm_operation_duration_seconds_bucket",
            &[exec[0], exec[1], ("le", b)],
        )
    };
    assert_eq!(le("0.0001"), 0.0);
    assert_eq!(le("0.00025"), 1.0);
    assert_eq!(le("0.001"), 1.0);
    assert_eq!(le("0.0025"), 3.0);
}

#[test]
fn process_and_sandbox_series() {
    let text = render(sample_snapshot(10)).unwrap();
    let (samples, _) = parse(&text);
    assert_eq!(
        one(&samples, "process_resident_memory_bytes", &[]),
        31_457_280.0
    );
    assert_eq!(one(&samples, "process_virtual_memory_bytes", &[]), 1e9);
    assert_eq!(one(&samples, "process_open_fds", &[]), 17.0);
    assert_eq!(one(&samples, "process_max_fds", &[]), 1024.0);
    assert_eq!(one(&samples, "process_threads", &[]), 9.0);
    assert_eq!(one(&samples, "process_cpu_seconds_total", &[]), 1.25);
    assert_eq!(
        one(&samples, "process_start_time_seconds", &[]),
        1_778_236_200.25
    );
    assert_eq!(one(&samples, "stacyvm_runtime_alive_tasks", &[]), 5.0);
    let l = [
        ("sandbox", "sb-00000003"),
        ("provider", "native"),
        ("owner", "team-3"),
    ];
    assert_eq!(one(&samples, "stacyvm_sandbox_cpu_seconds_total", &l), 1.5);
    assert_eq!(
        one(&samples, "stacyvm_sandbox_memory_bytes", &l),
        1_048_579.0
    );
    assert_eq!(one(&samples, "stacyvm_sandbox_pids", &l), 3.0);
    assert_eq!(find(&samples, "stacyvm_sandbox_pids", &[]).len(), 10);
}

#[test]
fn absent_figures_are_left_out() {
    let mut snap = sample_snapshot(1);
    snap.process = None;
    snap.sandbox_resources[0].memory_bytes = None;
    let (samples, _) = parse(&render(snap).unwrap());
    assert!(find(&samples, "process_resident_memory_bytes", &[]).is_empty());
    assert!(find(&samples, "stacyvm_sandbox_memory_bytes", &[]).is_empty());
    assert_eq!(find(&samples, "stacyvm_sandbox_pids", &[]).len(), 1);
}

#[test]
fn label_values_are_escaped() {
    let mut snap = sample_snapshot(1);
    let nasty = "a\"b\\c\nd} e,f=g";
    snap.sandbox_resources[0].owner = nasty.to_owned();
    snap.providers[0].name = "dock\"er".to_owned();
    let text = render(snap).unwrap();
    assert!(text.contains(r#"owner="a\"b\\c\nd} e,f=g""#), "{text}");
    let (samples, _) = parse(&text);
    assert_eq!(
        one(&samples, "stacyvm_sandbox_pids", &[("owner", nasty)]),
        3.0
    );
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_healthy",
            &[("provider", "dock\"er")]
        ),
        1.0
    );
}

#[test]
fn legacy_names_can_be_turned_off() {
    let text = render_with(
        sample_snapshot(1),
        PrometheusOptions {
            legacy_names: false,
        },
    )
    .unwrap();
    for name in LEGACY_MILLISECOND_METRICS {
        assert!(!text.contains(name), "{name} still present");
    }
    let (samples, _) = parse(&text);
    assert_eq!(
        one(
            &samples,
            "stacyvm_provider_health_latency_seconds",
            &[("provider", "docker")]
        ),
        0.003
    );
}

#[test]
fn empty_snapshot_renders() {
    let (samples, _) = parse(&render(ScrapeSnapshot::default()).unwrap());
    assert_eq!(one(&samples, "stacyvm_events_total", &[]), 0.0);
    assert!(find(&samples, "stacyvm_operation_success_total", &[]).is_empty());
}

/// Runs `promtool check metrics`; `None` when promtool is missing outside CI.
fn promtool_check(text: &str) -> Option<(i32, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: promtool not available ({e}); run scripts/ci/prometheus.sh");
            return None;
        }
        Err(e) => panic!("promtool is required in CI (scripts/ci/prometheus.sh): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.code().unwrap_or(-1), report))
}

#[test]
fn promtool_accepts_the_output() {
    let Some((code, report)) = promtool_check(
        &render_with(
            sample_snapshot(20),
            PrometheusOptions {
                legacy_names: false,
            },
        )
        .unwrap(),
    ) else {
        return;
    };
    assert_eq!(code, 0, "promtool check metrics: {report}");

    // With the API v1 names, the only findings are the millisecond units.
    let (code, report) = promtool_check(&render(sample_snapshot(20)).unwrap()).unwrap();
    assert_eq!(code, 3, "lint exit code expected: {report}");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap();
        assert!(
            LEGACY_MILLISECOND_METRICS.contains(&name) && line.contains("use base unit"),
            "unexpected promtool finding: {line}"
        );
    }
}
