//! Results: latency summaries, the machine description, the table and the
//! stable JSON document (`--json`).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

/// Latency samples of one scenario on one provider, plus its error count.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    ms: Vec<f64>,
    pub errors: u64,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.ms.push(d.as_secs_f64() * 1000.0);
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    pub fn len(&self) -> usize {
        self.ms.len()
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Nearest-rank percentile of sorted samples; 0 when there are none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One row of the output: a scenario on a provider.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub provider: String,
    pub scenario: String,
    pub count: usize,
    pub errors: u64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Scenario-specific figures (cycles per second, memory per sandbox...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BenchResult {
    pub fn new(provider: &str, scenario: &str, s: &Samples) -> Self {
        let v = sorted(&s.ms);
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        BenchResult {
            provider: provider.to_string(),
            scenario: scenario.to_string(),
            count: v.len(),
            errors: s.errors,
            min_ms: round(v.first().copied().unwrap_or(0.0)),
            p50_ms: round(percentile(&v, 50.0)),
            p95_ms: round(percentile(&v, 95.0)),
            p99_ms: round(percentile(&v, 99.0)),
            max_ms: round(v.last().copied().unwrap_or(0.0)),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    /// Total memory in bytes.
    pub memory: u64,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
}

impl Machine {
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let cpu_model = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            os,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            cpu_model,
        }
    }
}

/// The whole `--json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub date: String,
    pub results: Vec<BenchResult>,
    /// Human notes: skipped comparisons, overhead ratios.
    pub notes: Vec<String>,
}

fn fmt_bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

/// The human table: one row per scenario and provider, figures in ms.
pub fn table(r: &Report) -> String {
    let m = &r.machine;
    let mut out = format!(
        "machine: {} cpus ({}), {:.1} GiB, {}, kernel {}\ndate: {}\n\n",
        m.cpus,
        m.cpu_model,
        m.memory as f64 / 1024.0 / 1024.0 / 1024.0,
        m.os,
        m.kernel,
        r.date
    );
    out.push_str(&format!(
        "{:<10} {:<24} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}  {}\n",
        "PROVIDER", "SCENARIO", "COUNT", "ERR", "MIN", "P50", "P95", "P99", "MAX", "NOTES"
    ));
    for x in &r.results {
        let mut notes = Vec::new();
        for (k, v) in &x.extra {
            let shown = match v {
                Value::Number(n) if k.ends_with("_bytes") => {
                    fmt_bytes(n.as_f64().unwrap_or_default())
                }
                Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| {
                    if f.fract() == 0.0 {
                        format!("{f:.0}")
                    } else {
                        format!("{f:.2}")
                    }
                }),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            notes.push(format!("{k}={shown}"));
        }
        out.push_str(&format!(
            "{:<10} {:<24} {:>6} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}\n",
            x.provider,
            x.scenario,
            x.count,
            x.errors,
            x.min_ms,
            x.p50_ms,
            x.p95_ms,
            x.p99_ms,
            x.max_ms,
            notes.join(" ")
        ));
    }
    if !r.notes.is_empty() {
        out.push('\n');
        for n in &r.notes {
            out.push_str(n);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut s = Samples::default();
        for i in 1..=100 {
            s.push(Duration::from_millis(i));
        }
        let r = BenchResult::new("mock", "spawn", &s);
        assert_eq!(r.count, 100);
        assert_eq!(r.min_ms, 1.0);
        assert_eq!(r.p50_ms, 50.0);
        assert_eq!(r.p95_ms, 95.0);
        assert_eq!(r.p99_ms, 99.0);
        assert_eq!(r.max_ms, 100.0);
    }

    #[test]
    fn empty_samples_give_zeroes() {
        let mut s = Samples::default();
        s.error();
        let r = BenchResult::new("mock", "spawn", &s);
        assert_eq!((r.count, r.errors, r.p99_ms), (0, 1, 0.0));
    }

    #[test]
    fn extra_fields_are_flattened_into_the_row() {
        let r = BenchResult::new("mock", "mixed", &Samples::default()).with("cycles_per_sec", 3.5);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cycles_per_sec"], 3.5);
        assert_eq!(v["scenario"], "mixed");
    }
}
