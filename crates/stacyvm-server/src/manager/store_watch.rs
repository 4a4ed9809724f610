//! Whether the store answers, watched in the background. While it is away
//! (a PostgreSQL restart or failover) requests that need it fail at once
//! with 503 `not_ready` instead of each waiting out the pool's connect
//! timeout; the pool reconnects by itself and the watch notices within a
//! second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Manager;

/// How often the watch pings the store.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long one ping may take before the store counts as away.
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The last known reachability of the store.
#[derive(Debug)]
pub(super) struct StoreWatch {
    up: AtomicBool,
}

impl Default for StoreWatch {
    fn default() -> Self {
        // The store answered when the manager was built (migrations ran).
        StoreWatch {
            up: AtomicBool::new(true),
        }
    }
}

impl Manager {
    /// Whether the store answered its last check.
    pub fn store_ready(&self) -> bool {
        self.inner.store_watch.up.load(Ordering::Relaxed)
    }

    /// Pings the store now, records the outcome and returns how long the
    /// answer took, or why there was none (the private detail, for logs).
    pub async fn check_store(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let result = match tokio::time::timeout(PING_TIMEOUT, self.inner.store.ping()).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("store ping timed out after {PING_TIMEOUT:?}")),
        };
        let was = self
            .inner
            .store_watch
            .up
            .swap(result.is_ok(), Ordering::Relaxed);
        match (&result, was) {
            (Err(e), true) => tracing::warn!(
                error = %e,
                driver = self.inner.store.driver(),
                "store unreachable; answering 503 not_ready until it is back"
            ),
            (Ok(_), false) => {
                tracing::info!(driver = self.inner.store.driver(), "store reachable again")
            }
            _ => {}
        }
        result
    }

    pub(super) async fn store_watch_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let _ = self.check_store().await;
        }
    }
}
