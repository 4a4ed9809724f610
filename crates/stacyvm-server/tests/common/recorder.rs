//! Records every response the test server sends (status, headers, body,
//! streamed bodies as they flow) and, at the end, checks that none of them
//! nor any event shows a host string: the data directory, socket paths, the
//! runtime's binary. It wraps the whole router, so every route a test
//! touches is covered, today's and tomorrow's alike.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// One response as the client got it.
#[derive(Debug, Default)]
struct Recorded {
    request: String,
    text: Vec<u8>,
}

/// Shared log of responses; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    log: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn start(&self, request: String, head: String) -> usize {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.push(Recorded {
            request,
            text: head.into_bytes(),
        });
        log.len() - 1
    }

    fn append(&self, idx: usize, bytes: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log[idx].text.extend_from_slice(bytes);
    }

    /// Wraps `router` so every response passes through the recorder.
    pub fn wrap(&self, router: axum::Router) -> axum::Router {
        let rec = self.clone();
        router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let rec = rec.clone();
                async move { rec.record(req, next).await }
            },
        ))
    }

    async fn record(self, req: Request, next: Next) -> Response {
        let request = format!("{} {}", req.method(), req.uri());
        let resp = next.run(req).await;
        let mut head = format!("{}\n", resp.status());
        for (k, v) in resp.headers() {
            head.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        let idx = self.start(request, head);
        if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            // A WebSocket: its messages are checked by the test that reads them.
            return resp;
        }
        let (parts, inner) = resp.into_parts();
        let tap = Tap {
            inner,
            recorder: self,
            idx,
        };
        Response::from_parts(parts, Body::new(tap))
    }

    /// Every recorded response (and `events`) holding one of `needles`, as
    /// `request: excerpt` lines.
    pub fn leaks(&self, needles: &[String], events: &[String]) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let texts = log
            .iter()
            .map(|r| {
                (
                    r.request.clone(),
                    String::from_utf8_lossy(&r.text).into_owned(),
                )
            })
            .chain(events.iter().map(|e| ("event".to_string(), e.clone())));
        for (request, text) in texts {
            for n in needles.iter().filter(|n| !n.is_empty()) {
                if let Some(at) = text.find(n.as_str()) {
                    let from = text[..at]
                        .char_indices()
                        .rev()
                        .nth(80)
                        .map_or(0, |(i, _)| i);
                    let to = (at + n.len() + 80).min(text.len());
                    let to = (to..=text.len())
                        .find(|i| text.is_char_boundary(*i))
                        .unwrap_or(text.len());
                    out.push(format!("{request}: …{}…", &text[from..to]));
                }
            }
        }
        out
    }

    /// How many responses were recorded.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A response body that copies its data to the recorder as it flows, and
/// keeps its size (so a sized reply keeps its `Content-Length`).
struct Tap {
    inner: Body,
    recorder: Recorder,
    idx: usize,
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.recorder.append(this.idx, data);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
