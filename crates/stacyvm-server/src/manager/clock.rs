//! Wall-clock time behind a seam, so TTL logic is testable with tokio's
//! paused time.

use chrono::{DateTime, Utc};

/// Source of "now" for expiry decisions.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that advances with tokio's (possibly paused) time, for tests:
/// `tokio::time::advance` moves it forward.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base_utc: DateTime<Utc>,
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            base_utc: Utc::now(),
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.base;
        self.base_utc + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}
