//! Observability: operation metrics, process figures, Prometheus exposition.

pub mod operations;
