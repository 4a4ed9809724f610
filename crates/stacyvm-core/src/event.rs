//! Audit and lifecycle events, as published on the event bus and streamed
//! over SSE.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every event type of API v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "sandbox.created")]
    SandboxCreated,
    #[serde(rename = "sandbox.running")]
    SandboxRunning,
    #[serde(rename = "sandbox.paused")]
    SandboxPaused,
    #[serde(rename = "sandbox.resumed")]
    SandboxResumed,
    #[serde(rename = "sandbox.expired")]
    SandboxExpired,
    #[serde(rename = "sandbox.destroyed")]
    SandboxDestroyed,
    #[serde(rename = "sandbox.error")]
    SandboxError,
    #[serde(rename = "exec.started")]
    ExecStarted,
    #[serde(rename = "exec.completed")]
    ExecCompleted,
    #[serde(rename = "exec.failed")]
    ExecFailed,
    #[serde(rename = "exec.timeout")]
    ExecTimeout,
    #[serde(rename = "file.written")]
    FileWritten,
    #[serde(rename = "file.read")]
    FileRead,
    #[serde(rename = "operation.failed")]
    OperationFailed,
    #[serde(rename = "resource.limit")]
    ResourceLimit,
    #[serde(rename = "provider.failed")]
    ProviderFailed,
    /// A provider that was failing answers again.
    #[serde(rename = "provider.recovered")]
    ProviderRecovered,
    #[serde(rename = "reconcile.action")]
    ReconcileAction,
}

impl EventType {
    pub const ALL: [EventType; 18] = [
        EventType::SandboxCreated,
        EventType::SandboxRunning,
        EventType::SandboxPaused,
        EventType::SandboxResumed,
        EventType::SandboxExpired,
        EventType::SandboxDestroyed,
        EventType::SandboxError,
        EventType::ExecStarted,
        EventType::ExecCompleted,
        EventType::ExecFailed,
        EventType::ExecTimeout,
        EventType::FileWritten,
        EventType::FileRead,
        EventType::OperationFailed,
        EventType::ResourceLimit,
        EventType::ProviderFailed,
        EventType::ProviderRecovered,
        EventType::ReconcileAction,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SandboxCreated => "sandbox.created",
            EventType::SandboxRunning => "sandbox.running",
            EventType::SandboxPaused => "sandbox.paused",
            EventType::SandboxResumed => "sandbox.resumed",
            EventType::SandboxExpired => "sandbox.expired",
            EventType::SandboxDestroyed => "sandbox.destroyed",
            EventType::SandboxError => "sandbox.error",
            EventType::ExecStarted => "exec.started",
            EventType::ExecCompleted => "exec.completed",
            EventType::ExecFailed => "exec.failed",
            EventType::ExecTimeout => "exec.timeout",
            EventType::FileWritten => "file.written",
            EventType::FileRead => "file.read",
            EventType::OperationFailed => "operation.failed",
            EventType::ResourceLimit => "resource.limit",
            EventType::ProviderFailed => "provider.failed",
            EventType::ProviderRecovered => "provider.recovered",
            EventType::ReconcileAction => "reconcile.action",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown event type {s:?}"))
    }
}

/// One published event. `data` holds operation, provider and error details;
/// it never carries secrets, environment values or file contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// `evt-N`, increasing for the life of the process.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Event {
    /// The numeric part of `evt-N`, used for `Last-Event-ID` resume.
    pub fn seq(&self) -> Option<u64> {
        parse_event_seq(&self.id)
    }
}

/// Parses `evt-N` (or a bare `N`) into `N`.
pub fn parse_event_seq(id: &str) -> Option<u64> {
    id.trim()
        .strip_prefix("evt-")
        .unwrap_or(id.trim())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip() {
        for t in EventType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(t.as_str().parse::<EventType>().unwrap(), t);
        }
    }

    #[test]
    fn parses_event_seq() {
        assert_eq!(parse_event_seq("evt-42"), Some(42));
        assert_eq!(parse_event_seq("7"), Some(7));
        assert_eq!(parse_event_seq("evt-x"), None);
    }
}
