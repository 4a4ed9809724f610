use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn operation_names_round_trip() {
    for op in Operation::ALL {
        assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
        assert_eq!(
            serde_json::to_value(op).unwrap(),
            Value::String(op.as_str().to_owned())
        );
        assert_eq!(op.to_string(), op.as_str());
    }
    assert_eq!(Operation::ExecStream.as_str(), "exec_stream");
    assert_eq!(Operation::FileGlob.as_str(), "file_glob");
    let err = "reboot".parse::<Operation>().unwrap_err();
    assert_eq!(err.to_string(), "unknown operation \"reboot\"");
}

#[test]
fn records_counts_latency_and_last_error() {
    let m = OperationMetrics::new();
    m.record(Operation::Exec, "docker", ms(3), Ok(()));
    m.record(Operation::Exec, "docker", ms(2500), Ok(()));
    m.record(Operation::Exec, "docker", ms(80), Err("exec timeout"));
    m.record(Operation::Spawn, "native", ms(7), Ok(()));

    let snap = m.get(Operation::Exec, "docker").unwrap();
    assert_eq!(snap.success_total, 2);
    assert_eq!(snap.failure_total, 1);
    assert_eq!(snap.latency_count, 3);
    assert_eq!(snap.latency_total_ms, 2583);
    assert_eq!(snap.latency_min_ms, 3);
    assert_eq!(snap.latency_max_ms, 2500);
    assert_eq!(snap.latency_avg_ms, 861);
    assert_eq!(snap.latency_total_us, 2_583_000);
    assert_eq!(snap.last_error.as_deref(), Some("exec timeout"));
    let now = unix_now();
    assert!(now - snap.last_observed_unix <= 2, "{snap:?}");
    assert_eq!(snap.latency_buckets.iter().sum::<u64>(), 3);

    assert!(m.get(Operation::Exec, "native").is_none());
    assert!(m.get(Operation::Destroy, "docker").is_none());
    assert_eq!(m.snapshot().len(), 2);
}

#[test]
fn snapshot_is_ordered_by_operation_then_provider() {
    let m = OperationMetrics::new();
    m.record(Operation::FileGlob, "native", ms(1), Ok(()));
    m.record(Operation::Exec, "native", ms(1), Ok(()));
    m.record(Operation::Exec, "docker", ms(1), Ok(()));
    m.record(Operation::Spawn, "mock", ms(1), Ok(()));
    let order: Vec<(Operation, String)> = m
        .snapshot()
        .into_iter()
        .map(|s| (s.operation, s.provider))
        .collect();
    assert_eq!(
        order,
        vec![
            (Operation::Spawn, "mock".to_owned()),
            (Operation::Exec, "docker".to_owned()),
            (Operation::Exec, "native".to_owned()),
            (Operation::FileGlob, "native".to_owned()),
        ]
    );
}

#[test]
fn json_matches_the_api_v1_operation_item() {
    let m = OperationMetrics::new();
    m.record(Operation::Exec, "docker", ms(40), Ok(()));
    m.record(Operation::Exec, "docker", ms(120), Err("boom"));
    let value = serde_json::to_value(m.get(Operation::Exec, "docker").unwrap()).unwrap();
    let obj = value.as_object().unwrap();
    for key in [
        "operation",
        "provider",
        "success_total",
        "failure_total",
        "latency_count",
        "latency_total_ms",
        "latency_min_ms",
        "latency_max_ms",
        "latency_avg_ms",
        "last_error",
        "last_observed_unix",
    ] {
        assert!(obj.contains_key(key), "missing {key} in {value}");
    }
    assert_eq!(obj["operation"], "exec");
    assert_eq!(obj["provider"], "docker");
    assert_eq!(obj["latency_total_ms"], 160);
    assert_eq!(obj["latency_avg_ms"], 80);
    assert!(obj["latency_min_ms"].is_u64());
    assert_eq!(obj["last_error"], "boom");
    assert_eq!(
        obj["latency_buckets"].as_array().unwrap().len(),
        LATENCY_BUCKET_COUNT
    );
    let back: OperationSnapshot = serde_json::from_value(value).unwrap();
    assert_eq!(back.latency_count, 2);

    // No failure yet: last_error is left out rather than null.
    m.record(Operation::Spawn, "docker", ms(1), Ok(()));
    let value = serde_json::to_value(m.get(Operation::Spawn, "docker").unwrap()).unwrap();
    assert!(value.get("last_error").is_none(), "{value}");
}

#[test]
fn long_errors_are_cut_on_a_char_boundary() {
    let m = OperationMetrics::new();
    let long = "é".repeat(400); // 800 bytes
    m.record(Operation::FileRead, "native", ms(1), Err(&long));
    let err = m
        .get(Operation::FileRead, "native")
        .unwrap()
        .last_error
        .unwrap();
    assert_eq!(err.len(), MAX_ERROR_LEN);
    assert!(long.starts_with(&err));
    let odd = format!("a{}", "é".repeat(400));
    m.record(Operation::FileRead, "native", ms(1), Err(&odd));
    let err = m
        .get(Operation::FileRead, "native")
        .unwrap()
        .last_error
        .unwrap();
    assert_eq!(err.len(), MAX_ERROR_LEN - 1);
}

#[test]
fn histogram_buckets_are_upper_inclusive_and_sub_millisecond() {
    let m = OperationMetrics::new();
    m.record(
        Operation::FileStat,
        "native",
        Duration::from_micros(50),
        Ok(()),
    );
    m.record(
        Operation::FileStat,
        "native",
        Duration::from_micros(100),
        Ok(()),
    );
    m.record(
        Operation::FileStat,
        "native",
        Duration::from_micros(101),
        Ok(()),
    );
    m.record(
        Operation::FileStat,
        "native",
        Duration::from_secs(3600),
        Ok(()),
    );
    let snap = m.get(Operation::FileStat, "native").unwrap();
    let buckets: Vec<(f64, u64)> = snap.buckets_seconds().collect();
    assert_eq!(buckets.len(), LATENCY_BUCKET_COUNT);
    assert_eq!(buckets[0], (0.0001, 2), "le=0.1ms holds 50us and 100us");
    assert_eq!(buckets[1], (0.00025, 1));
    assert_eq!(buckets[LATENCY_BUCKET_COUNT - 1], (f64::INFINITY, 1));
    assert_eq!(snap.latency_min_ms, 0);
    assert_eq!(snap.latency_min_us, 50);
}

#[test]
fn quantiles_interpolate_within_buckets() {
    let m = OperationMetrics::new();
    // 100 observations spread evenly over (10ms, 25ms].
    for i in 1..=100u64 {
        let us = 10_000 + i * 150;
        m.record(Operation::Exec, "mock", Duration::from_micros(us), Ok(()));
    }
    let snap = m.get(Operation::Exec, "mock").unwrap();
    let p50 = snap.quantile_ms(0.5).unwrap();
    assert!((p50 - 17.5).abs() < 0.01, "p50 {p50}");
    let p99 = snap.quantile_ms(0.99).unwrap();
    assert!((p99 - 24.85).abs() < 0.01, "p99 {p99}");
    assert!((snap.latency_p50_ms - p50).abs() < 1e-9);
    assert!((snap.latency_p99_ms - p99).abs() < 1e-9);
    assert!(snap.quantile_ms(1.5).is_none());

    // A single observation: every quantile is that value (clamped).
    let m = OperationMetrics::new();
    m.record(Operation::Exec, "mock", ms(7), Ok(()));
    let snap = m.get(Operation::Exec, "mock").unwrap();
    for q in [0.0, 0.5, 0.99, 1.0] {
        assert_eq!(snap.quantile_ms(q), Some(7.0), "q={q}");
    }

    // Above the last finite bound the observed maximum bounds the estimate.
    let m = OperationMetrics::new();
    m.record(Operation::Exec, "mock", Duration::from_secs(400), Ok(()));
    m.record(Operation::Exec, "mock", Duration::from_secs(500), Ok(()));
    let snap = m.get(Operation::Exec, "mock").unwrap();
    let p99 = snap.quantile_ms(0.99).unwrap();
    assert!((400_000.0..=500_000.0).contains(&p99), "p99 {p99}");
}

#[test]
fn providers_beyond_the_table_share_the_overflow_slot() {
    let m = OperationMetrics::new();
    for i in 0..MAX_PROVIDERS + 5 {
        m.record(Operation::Spawn, &format!("p{i}"), ms(1), Ok(()));
    }
    let snap = m.snapshot();
    assert_eq!(snap.len(), MAX_PROVIDERS);
    let other = m.get(Operation::Spawn, OVERFLOW_PROVIDER).unwrap();
    assert_eq!(other.success_total, 6);
    assert_eq!(m.get(Operation::Spawn, "p0").unwrap().success_total, 1);
}

#[test]
fn concurrent_records_are_all_counted() {
    let m = Arc::new(OperationMetrics::new());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let provider = if t % 2 == 0 { "docker" } else { "native" };
                for i in 0..10_000u64 {
                    let result = if i % 10 == 0 { Err("fail") } else { Ok(()) };
                    m.record(Operation::Exec, provider, Duration::from_micros(i), result);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for provider in ["docker", "native"] {
        let s = m.get(Operation::Exec, provider).unwrap();
        assert_eq!(s.latency_count, 40_000);
        assert_eq!(s.failure_total, 4_000);
        assert_eq!(s.latency_buckets.iter().sum::<u64>(), 40_000);
        assert_eq!(s.latency_min_us, 0);
        assert_eq!(s.latency_max_us, 9_999);
    }
}
