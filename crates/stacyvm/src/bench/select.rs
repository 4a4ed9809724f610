//! `--scenario NAME[,NAME]`: which scenarios a run measures, so one can be
//! rerun alone. Scenarios that are timed in the same loop (spawn, first
//! exec and destroy share one cycle) run together, but only the named
//! ones are reported.

use anyhow::{Result, bail};

/// A loop of the benchmark, producing one or more scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// spawn → `true` → destroy cycles.
    Lifecycle,
    /// Exec round trips in one sandbox.
    Exec,
    /// Streamed execs in one sandbox.
    Stream,
    /// 1 KiB writes and reads.
    Files1k,
    /// 8 MiB writes and reads.
    Files8m,
    /// Concurrent clients doing full cycles.
    Mixed,
    /// Idle sandboxes held at once.
    Density,
    /// The mixed cycle with one client, then with many.
    Scaling,
    /// Many spawns sent at once.
    Burst,
    /// Spawn latency with nothing held, then with many sandboxes held.
    Held,
}

/// Every scenario a run can report, with the loop that measures it.
pub const SCENARIOS: &[(&str, Group)] = &[
    ("spawn", Group::Lifecycle),
    ("spawn_first_exec", Group::Lifecycle),
    ("destroy", Group::Lifecycle),
    ("exec", Group::Exec),
    ("exec_stream_first_byte", Group::Stream),
    ("exec_stream_exit", Group::Stream),
    ("file_write_1k", Group::Files1k),
    ("file_read_1k", Group::Files1k),
    ("file_write_8m", Group::Files8m),
    ("file_read_8m", Group::Files8m),
    ("mixed", Group::Mixed),
    ("density", Group::Density),
    ("mixed_scaling", Group::Scaling),
    ("spawn_burst", Group::Burst),
    ("spawn_empty", Group::Held),
    ("spawn_held", Group::Held),
];

/// The scenarios of one run: all of them by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Empty means every scenario.
    names: Vec<&'static str>,
}

impl Selection {
    /// Checks the names given to `--scenario`.
    pub fn parse(names: &[String]) -> Result<Self> {
        let mut picked = Vec::new();
        for raw in names {
            let name = raw.trim();
            if name.is_empty() {
                continue;
            }
            let Some((known, _)) = SCENARIOS.iter().find(|(n, _)| *n == name) else {
                let all: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                bail!("unknown scenario {name:?} (use {})", all.join(", "));
            };
            if !picked.contains(known) {
                picked.push(*known);
            }
        }
        Ok(Selection { names: picked })
    }

    /// Whether the scenario is reported.
    pub fn keeps(&self, scenario: &str) -> bool {
        self.names.is_empty() || self.names.contains(&scenario)
    }

    /// Whether the loop runs.
    pub fn runs(&self, group: Group) -> bool {
        SCENARIOS.iter().any(|(n, g)| *g == group && self.keeps(n))
    }

    /// Whether the comparison without the orchestrator (spawn, exec and
    /// destroy of the raw runtime) has anything to compare with.
    pub fn compares_raw(&self) -> bool {
        ["spawn", "exec", "destroy"].iter().any(|s| self.keeps(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(names: &[&str]) -> Result<Selection> {
        Selection::parse(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn everything_by_default() {
        let s = sel(&[]).unwrap();
        assert!(SCENARIOS.iter().all(|(n, g)| s.keeps(n) && s.runs(*g)));
        assert!(s.compares_raw());
    }

    #[test]
    fn one_scenario_runs_its_loop_and_keeps_only_itself() {
        let s = sel(&["spawn_first_exec"]).unwrap();
        assert!(s.runs(Group::Lifecycle));
        assert!(s.keeps("spawn_first_exec"));
        assert!(!s.keeps("spawn") && !s.keeps("destroy"));
        assert!(!s.runs(Group::Exec) && !s.runs(Group::Mixed) && !s.runs(Group::Density));
        assert!(!s.compares_raw());
        let s = sel(&["mixed", " density", "mixed"]).unwrap();
        assert!(s.runs(Group::Mixed) && s.runs(Group::Density) && !s.runs(Group::Files8m));
    }

    #[test]
    fn unknown_names_are_refused_with_the_list() {
        let e = sel(&["spwan"]).unwrap_err().to_string();
        assert!(e.contains("unknown scenario \"spwan\""), "{e}");
        assert!(e.contains("spawn_first_exec"), "{e}");
    }
}
