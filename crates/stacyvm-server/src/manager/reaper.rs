//! The reaper: expires sandboxes on time, retries failed destroys with
//! backoff, and settles records no request is working on any more.
//!
//! Nothing here scans every sandbox: the next expiry and the due sandboxes
//! come from the store's expiry index, and the periodic sweep reads only
//! the records in `creating`, `destroying` or `expired`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use stacyvm_core::{EventType, OwnerId, Sandbox, SandboxId, SandboxState};
use stacyvm_store::{SandboxFilter, StoreError};
use tokio::time::Instant;

use super::{Manager, ManagerError};
use crate::obs::DestroyStats;

/// The first retry of a failed destroy; each further one waits twice as
/// long, up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// A `creating` record this old that no spawn of this server works on was
/// left by a crash (or by a server that admitted it and died before
/// handing it over).
const STALE_CREATING: Duration = Duration::from_secs(120);
/// Sandboxes torn down at once when many expire together.
const TEARDOWN_CONCURRENCY: usize = 8;

/// The reaper's bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Reaping {
    /// Sandboxes a spawn or destroy of this server is working on, with how
    /// many of them.
    busy: Mutex<HashMap<SandboxId, usize>>,
    /// Failed destroys waiting for their next attempt.
    retries: Mutex<HashMap<SandboxId, Retry>>,
    failures_total: AtomicU64,
    retries_total: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    due: Instant,
}

/// Marks a sandbox as worked on for as long as it lives.
#[derive(Debug)]
pub(crate) struct Busy<'a> {
    set: &'a Mutex<HashMap<SandboxId, usize>>,
    id: SandboxId,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = set.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                set.remove(&self.id);
            }
        }
    }
}

/// The wait before attempt `attempts + 1`.
fn backoff(attempts: u32) -> Duration {
    FIRST_RETRY_DELAY
        .saturating_mul(
            1u32.checked_shl(attempts.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .min(MAX_RETRY_DELAY)
}

impl Manager {
    /// Marks `id` as worked on by this server until the guard drops.
    pub(crate) fn busy(&self, id: &SandboxId) -> Busy<'_> {
        let set = &self.inner.reaping.busy;
        *set.lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default() += 1;
        Busy {
            set,
            id: id.clone(),
        }
    }

    pub(super) fn is_busy(&self, id: &SandboxId) -> bool {
        let set = self.inner.reaping.busy.lock();
        set.unwrap_or_else(|e| e.into_inner()).contains_key(id)
    }

    /// Counts a failed destroy of `sb` and schedules its next attempt.
    pub(super) fn destroy_failed(&self, sb: &Sandbox) {
        let r = &self.inner.reaping;
        r.failures_total.fetch_add(1, Ordering::Relaxed);
        self.schedule_retry(&sb.id);
    }

    /// Schedules the next destroy attempt of `id`, later each time.
    pub(super) fn schedule_retry(&self, id: &SandboxId) {
        let mut retries = (self.inner.reaping.retries.lock()).unwrap_or_else(|e| e.into_inner());
        let attempts = retries.get(id).map_or(0, |r| r.attempts) + 1;
        let due = Instant::now() + backoff(attempts);
        retries.insert(id.clone(), Retry { attempts, due });
        drop(retries);
        tracing::info!(sandbox_id = %id, attempts, retry_in = ?backoff(attempts), "destroy will be retried");
        self.inner.reaper_wake.notify_one();
    }

    /// Forgets the retries of a sandbox that is gone.
    pub(super) fn retry_done(&self, id: &SandboxId) {
        let retries = self.inner.reaping.retries.lock();
        retries.unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    pub fn destroy_stats(&self) -> DestroyStats {
        let r = &self.inner.reaping;
        let pending = r.retries.lock().unwrap_or_else(|e| e.into_inner()).len();
        DestroyStats {
            failures_total: r.failures_total.load(Ordering::Relaxed),
            retries_total: r.retries_total.load(Ordering::Relaxed),
            pending: pending as u64,
        }
    }

    /// Takes the retries that are due now.
    fn due_retries(&self) -> Vec<SandboxId> {
        let now = Instant::now();
        let retries = self.inner.reaping.retries.lock();
        let retries = retries.unwrap_or_else(|e| e.into_inner());
        retries
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn next_retry(&self) -> Option<Instant> {
        let retries = self.inner.reaping.retries.lock();
        let retries = retries.unwrap_or_else(|e| e.into_inner());
        retries.values().map(|r| r.due).min()
    }

    /// The node whose sandboxes this server expires and destroys (`None`:
    /// every sandbox, on a single host).
    pub(crate) fn local_node(&self) -> Option<&str> {
        self.inner.node_id.as_deref()
    }

    /// Expires and destroys every sandbox past its expiry; returns how many.
    pub async fn prune(&self) -> Result<usize, ManagerError> {
        let now = self.inner.clock.now();
        let due = self.inner.store.expire_due(now, self.local_node()).await?;
        let mut leftovers = self
            .inner
            .store
            .list_sandboxes(&SandboxFilter {
                state: Some(SandboxState::Expired),
                node_id: self.local_node().map(str::to_string),
                ..SandboxFilter::default()
            })
            .await?;
        leftovers.retain(|s| !self.is_busy(&s.id));
        Ok(self
            .tear_down_expired(due.into_iter().chain(leftovers))
            .await)
    }

    /// [`Manager::prune`] for one owner's sandboxes only (what a `user`
    /// key may prune): each due one is claimed with a conditional write,
    /// so it is torn down once even if the reaper reaches it too.
    pub async fn prune_owner(&self, owner: &OwnerId) -> Result<usize, ManagerError> {
        let now = self.inner.clock.now();
        let mine = self
            .inner
            .store
            .list_sandboxes(&SandboxFilter {
                owner: Some(owner.clone()),
                node_id: self.local_node().map(str::to_string),
                ..SandboxFilter::default()
            })
            .await?;
        let mut claimed = Vec::new();
        for sb in mine {
            if self.is_busy(&sb.id) {
                continue;
            }
            match sb.state {
                SandboxState::Expired => claimed.push(sb),
                SandboxState::Creating | SandboxState::Running | SandboxState::Unhealthy
                    if sb.expires_at <= now =>
                {
                    let from = [
                        SandboxState::Creating,
                        SandboxState::Running,
                        SandboxState::Unhealthy,
                    ];
                    if let Some(sb) = self
                        .inner
                        .store
                        .transition(&sb.id, &from, SandboxState::Destroying, None)
                        .await?
                    {
                        claimed.push(sb);
                    }
                }
                _ => {}
            }
        }
        Ok(self.tear_down_expired(claimed).await)
    }

    /// Publishes `sandbox.expired` for each and tears them down; how many.
    async fn tear_down_expired(&self, all: impl IntoIterator<Item = Sandbox>) -> usize {
        let all: Vec<Sandbox> = all.into_iter().collect();
        let n = all.len();
        futures::stream::iter(all)
            .for_each_concurrent(TEARDOWN_CONCURRENCY, |sb| async move {
                self.publish(
                    EventType::SandboxExpired,
                    Some(&sb.id),
                    json!({"provider": sb.provider, "expires_at": sb.expires_at}),
                );
                let _ = self.teardown(sb, Some("expired")).await;
            })
            .await;
        n
    }

    /// Runs the destroys whose retry is due.
    async fn retry_destroys(&self) {
        let due = self.due_retries();
        futures::stream::iter(due)
            .for_each_concurrent(TEARDOWN_CONCURRENCY, |id| async move {
                if self.is_busy(&id) {
                    return;
                }
                self.inner
                    .reaping
                    .retries_total
                    .fetch_add(1, Ordering::Relaxed);
                match self.inner.store.get_sandbox(&id).await {
                    Ok(sb) if sb.state == SandboxState::Destroying => {
                        let _ = self.teardown(sb, Some("retried")).await;
                    }
                    Ok(_) | Err(StoreError::NotFound(_)) => self.retry_done(&id),
                    // The store is away: try again later.
                    Err(_) => self.schedule_retry(&id),
                }
            })
            .await;
    }

    /// Finds what no request is working on: `destroying` records without a
    /// scheduled retry (after a restart) get one now, and `creating`
    /// records no spawn works on are removed with whatever runtime they
    /// may have.
    async fn sweep(&self) -> Result<(), ManagerError> {
        let node = self.local_node().map(str::to_string);
        let of = |state| SandboxFilter {
            state: Some(state),
            node_id: node.clone(),
            ..SandboxFilter::default()
        };
        let store = &self.inner.store;
        for sb in store.list_sandboxes(&of(SandboxState::Destroying)).await? {
            let scheduled = {
                let retries = self.inner.reaping.retries.lock();
                retries
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(&sb.id)
            };
            if !scheduled && !self.is_busy(&sb.id) {
                self.schedule_retry(&sb.id);
            }
        }
        let stale =
            self.inner.clock.now() - chrono::Duration::from_std(STALE_CREATING).unwrap_or_default();
        for sb in store.list_sandboxes(&of(SandboxState::Creating)).await? {
            if sb.created_at > stale || self.is_busy(&sb.id) {
                continue;
            }
            tracing::warn!(sandbox_id = %sb.id, "removing a creating record no spawn works on");
            let _busy = self.busy(&sb.id);
            let gone = match self.inner.providers.get(&sb.provider) {
                Some(p) => p.destroy(&sb.id).await,
                None => Ok(()),
            };
            if gone.is_ok()
                && store
                    .transition(
                        &sb.id,
                        &[SandboxState::Creating],
                        SandboxState::Destroyed,
                        None,
                    )
                    .await?
                    .is_some()
            {
                store.delete_sandbox(&sb.id).await.ok();
                self.reconcile_event(&sb, "removed", "spawn never completed");
            }
        }
        Ok(())
    }

    /// Sleeps until the next expiry or destroy retry (or the safety
    /// interval, or a wake-up), then expires and retries what is due; every
    /// interval it also sweeps.
    pub(super) async fn reaper_loop(self) {
        let interval = self.inner.reaper_interval;
        let mut last_sweep = Instant::now();
        loop {
            let mut wait = interval;
            if let Ok(Some(at)) = self.inner.store.next_expiry(self.local_node()).await {
                let until = (at - self.inner.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                wait = wait.min(until);
            }
            if let Some(due) = self.next_retry() {
                wait = wait.min(due.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.reaper_wake.notified() => continue,
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "reaper expired sandboxes"),
                Err(e) => {
                    tracing::warn!(error = %stacyvm_core::ErrorChain(&e), "reaper sweep failed")
                }
            }
            self.retry_destroys().await;
            if last_sweep.elapsed() >= interval {
                last_sweep = Instant::now();
                if let Err(e) = self.sweep().await {
                    tracing::warn!(error = %stacyvm_core::ErrorChain(&e), "reaper sweep failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), MAX_RETRY_DELAY);
        assert_eq!(backoff(200), MAX_RETRY_DELAY);
    }
}
