//! The event bus: every published event gets an `evt-N` id, goes to all
//! live subscribers and into a bounded in-memory history used for
//! `Last-Event-ID` resume. Publishing never waits for a subscriber: a slow
//! one lags and skips ahead, it never blocks the manager.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use stacyvm_core::{Event, EventType};
use tokio::sync::broadcast;

/// Capacity of each subscriber's queue before it starts lagging.
const SUBSCRIBER_BUFFER: usize = 1024;

/// Cheap-clone handle to the bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Guarded together with the sequence so ids and history order agree.
    history: Mutex<History>,
    tx: broadcast::Sender<Event>,
    capacity: usize,
    total: AtomicU64,
}

#[derive(Debug, Default)]
struct History {
    next_seq: u64,
    events: VecDeque<Event>,
}

/// A live subscription: first the backlog, then new events.
#[derive(Debug)]
pub struct Subscription {
    pub backlog: Vec<Event>,
    pub receiver: broadcast::Receiver<Event>,
}

impl EventBus {
    pub fn new(history_size: usize) -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        EventBus {
            inner: Arc::new(Inner {
                history: Mutex::new(History {
                    next_seq: 1,
                    events: VecDeque::with_capacity(history_size.min(4096)),
                }),
                tx,
                capacity: history_size.max(1),
                total: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes an event and returns it with its id.
    pub fn publish(
        &self,
        kind: EventType,
        sandbox_id: Option<&str>,
        data: serde_json::Value,
    ) -> Event {
        let mut history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        let event = Event {
            id: format!("evt-{}", history.next_seq),
            kind,
            sandbox_id: sandbox_id.map(str::to_string),
            timestamp: Utc::now(),
            data,
        };
        history.next_seq += 1;
        if history.events.len() == self.inner.capacity {
            history.events.pop_front();
        }
        history.events.push_back(event.clone());
        self.inner.total.fetch_add(1, Ordering::Relaxed);
        // Sent under the lock so a concurrent `subscribe` sees each event
        // exactly once: either in its backlog or on its receiver. An error
        // only means nobody is listening.
        let _ = self.inner.tx.send(event.clone());
        drop(history);
        tracing::debug!(event_id = %event.id, kind = %event.kind, "event published");
        event
    }

    /// Subscribes; the backlog holds the history after `after_seq` (none
    /// when `None`).
    pub fn subscribe(&self, after_seq: Option<u64>) -> Subscription {
        let history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = self.inner.tx.subscribe();
        let backlog = match after_seq {
            Some(after) => events_after(&history, after),
            None => Vec::new(),
        };
        Subscription { backlog, receiver }
    }

    /// Events still in the history after `after_seq`, oldest first.
    pub fn since(&self, after_seq: u64) -> Vec<Event> {
        let history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        events_after(&history, after_seq)
    }

    /// The most recent `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        let history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        let skip = history.events.len().saturating_sub(limit);
        history.events.iter().skip(skip).cloned().collect()
    }

    pub fn stats(&self) -> crate::obs::EventStats {
        let history = self.inner.history.lock().unwrap_or_else(|e| e.into_inner());
        crate::obs::EventStats {
            subscribers: self.inner.tx.receiver_count() as u64,
            history_size: history.events.len() as u64,
            events_total: self.inner.total.load(Ordering::Relaxed),
        }
    }
}

fn events_after(history: &History, after: u64) -> Vec<Event> {
    history
        .events
        .iter()
        .filter(|e| e.seq().is_some_and(|s| s > after))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_increase_and_history_is_bounded() {
        let bus = EventBus::new(3);
        for _ in 0..5 {
            bus.publish(EventType::SandboxCreated, Some("sb-12345678"), json!({}));
        }
        let recent = bus.recent(10);
        let ids: Vec<_> = recent.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["evt-3", "evt-4", "evt-5"]);
        let stats = bus.stats();
        assert_eq!((stats.history_size, stats.events_total), (3, 5));
    }

    #[tokio::test]
    async fn resume_gets_backlog_then_live() {
        let bus = EventBus::new(1000);
        for _ in 0..3 {
            bus.publish(EventType::ExecStarted, None, json!(null));
        }
        let mut sub = bus.subscribe(Some(1));
        let backlog: Vec<_> = sub.backlog.iter().map(|e| e.id.clone()).collect();
        assert_eq!(backlog, ["evt-2", "evt-3"]);
        bus.publish(EventType::ExecCompleted, None, json!(null));
        assert_eq!(sub.receiver.recv().await.unwrap().id, "evt-4");
    }

    #[tokio::test]
    async fn slow_subscriber_never_blocks_publisher() {
        let bus = EventBus::new(1000);
        let mut slow = bus.subscribe(None);
        // Far more than the subscriber buffer, published without reading.
        for _ in 0..(SUBSCRIBER_BUFFER * 3) {
            bus.publish(EventType::FileRead, None, json!(null));
        }
        assert_eq!(bus.stats().events_total, SUBSCRIBER_BUFFER as u64 * 3);
        // The slow subscriber is told it lagged, then continues.
        assert!(matches!(
            slow.receiver.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        assert!(slow.receiver.recv().await.is_ok());
    }
}
