//! Placeholder operation recorder (replaced by the full one).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Spawn,
    Exec,
    ExecStream,
    Destroy,
    FileWrite,
    FileRead,
    FileList,
    FileDelete,
    FileMove,
    FileChmod,
    FileStat,
    FileGlob,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Spawn => "spawn",
            Operation::Exec => "exec",
            Operation::ExecStream => "exec_stream",
            Operation::Destroy => "destroy",
            Operation::FileWrite => "file_write",
            Operation::FileRead => "file_read",
            Operation::FileList => "file_list",
            Operation::FileDelete => "file_delete",
            Operation::FileMove => "file_move",
            Operation::FileChmod => "file_chmod",
            Operation::FileStat => "file_stat",
            Operation::FileGlob => "file_glob",
        }
    }
}

#[derive(Debug, Default)]
pub struct OperationMetrics {
    m: Mutex<HashMap<(Operation, String), (u64, u64)>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationSnapshot {
    pub operation: String,
    pub provider: String,
    pub success_total: u64,
    pub failure_total: u64,
}

impl OperationMetrics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn record(
        &self,
        op: Operation,
        provider: &str,
        _latency: Duration,
        result: Result<(), &str>,
    ) {
        let mut m = self.m.lock().unwrap();
        let e = m.entry((op, provider.to_string())).or_default();
        if result.is_ok() { e.0 += 1 } else { e.1 += 1 }
    }
    pub fn snapshot(&self) -> Vec<OperationSnapshot> {
        self.m
            .lock()
            .unwrap()
            .iter()
            .map(|((o, p), (s, f))| OperationSnapshot {
                operation: o.as_str().into(),
                provider: p.clone(),
                success_total: *s,
                failure_total: *f,
            })
            .collect()
    }
}
