//! `GET /events`: Server-Sent Events with `Last-Event-ID` resume and
//! `types` / `sandbox_id` filters; a `user` or `read` key sees only its
//! owner's events.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use stacyvm_core::event::parse_event_seq;
use stacyvm_core::{Event, EventType};
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::ApiQuery;
use super::model::errors::BadRequest;
use super::model::{EventStreamItem, EventsQuery};
use super::owner::Viewer;

struct Filter {
    types: Option<HashSet<EventType>>,
    sandbox_id: Option<String>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&e.kind))
            && self
                .sandbox_id
                .as_ref()
                .is_none_or(|id| e.sandbox_id.as_deref() == Some(id.as_str()))
    }
}

/// What a `user`/`read` key's stream may carry: events of its owner's
/// sandboxes, and sandbox-less events that name its owner (a refused
/// spawn). The owner of a sandbox never changes, so it is looked up once
/// per sandbox: from the event itself when it says (`sandbox.created`
/// does), else from the store.
struct OwnerScope {
    owner: stacyvm_core::OwnerId,
    store: std::sync::Arc<dyn stacyvm_store::Store>,
    known: std::collections::HashMap<String, bool>,
}

/// Sandboxes whose owner a stream remembers before it starts over.
const KNOWN_SANDBOXES: usize = 10_000;

impl OwnerScope {
    async fn allows(&mut self, e: &Event) -> bool {
        let named = e.data.get("owner_id").and_then(|o| o.as_str());
        let Some(id) = &e.sandbox_id else {
            return named == Some(self.owner.as_str());
        };
        if let Some(mine) = self.known.get(id) {
            return *mine;
        }
        let mine = match named {
            Some(o) => o == self.owner.as_str(),
            None => match stacyvm_core::SandboxId::parse(id) {
                Some(sid) => match self.store.get_sandbox(&sid).await {
                    Ok(sb) => sb.owner_id.as_ref() == Some(&self.owner),
                    // Unknown (or unreadable now): not shown, not remembered.
                    Err(_) => return false,
                },
                None => false,
            },
        };
        if self.known.len() >= KNOWN_SANDBOXES {
            self.known.clear();
        }
        self.known.insert(id.clone(), mine);
        mine
    }
}

fn sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .id(e.id.clone())
        .data(serde_json::to_string(e).unwrap_or_default())
}

/// Live audit events as Server-Sent Events (`data:` is one [`Event`] as
/// JSON, `id:` its id), after the history held since `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/events",
    tag = "system",
    operation_id = "events",
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (`evt-N`)"),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`; each `data:` line is an Event", content_type = "text/event-stream", body = EventStreamItem),
        BadRequest,
    ),
)]
pub async fn stream(
    State(app): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let types = if q.types.trim().is_empty() {
        None
    } else {
        let mut set = HashSet::new();
        for t in q.types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            set.insert(t.parse::<EventType>().map_err(ApiError::bad_request)?);
        }
        Some(set)
    };
    let filter = Filter {
        types,
        sandbox_id: Some(q.sandbox_id).filter(|s| !s.is_empty()),
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(Some(q.last_event_id).filter(|s| !s.is_empty()));
    let after = match resume {
        Some(r) => Some(
            parse_event_seq(&r)
                .ok_or_else(|| ApiError::bad_request(format!("invalid Last-Event-ID {r:?}")))?,
        ),
        None => None,
    };
    let scope = viewer.0.map(|owner| OwnerScope {
        owner,
        store: app.manager.store().clone(),
        known: std::collections::HashMap::new(),
    });
    let bus = app.manager.events().clone();
    let sub = bus.subscribe(after);
    let stream = async_stream(
        bus,
        sub,
        filter,
        scope,
        after.unwrap_or(0),
        app.manager.shutdown_token(),
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Backlog first, then live events; a subscriber that lagged catches up
/// from the history so it skips nothing still held there.
fn async_stream(
    bus: crate::events::EventBus,
    sub: crate::events::Subscription,
    filter: Filter,
    mut scope: Option<OwnerScope>,
    mut last: u64,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let crate::events::Subscription {
        backlog,
        mut receiver,
    } = sub;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(256);
    tokio::spawn(async move {
        let mut pending: std::collections::VecDeque<Event> = backlog.into();
        loop {
            while let Some(e) = pending.pop_front() {
                let seq = e.seq().unwrap_or(0);
                if seq <= last {
                    continue;
                }
                last = seq;
                if !filter.matches(&e) {
                    continue;
                }
                if let Some(scope) = scope.as_mut()
                    && !scope.allows(&e).await
                {
                    continue;
                }
                if tx.send(Ok(sse(&e))).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = tx.closed() => return,
                // Endless streams would otherwise hold a graceful shutdown
                // for its whole grace period.
                _ = shutdown.cancelled() => return,
                r = receiver.recv() => match r {
                    Ok(e) => pending.push_back(e),
                    Err(RecvError::Lagged(_)) => {
                        pending.extend(bus.since(last));
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
