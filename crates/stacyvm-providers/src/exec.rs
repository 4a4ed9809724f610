//! The synchronous exec every provider shares: a streamed session read to
//! its end, with one output limit.

use stacyvm_core::{ExecOutput, StreamKind};

use crate::{ExecEvent, ExecSession, ExecSpec, ProviderError};

/// Default of [`ExecSpec::max_output_bytes`] (`defaults.max_exec_output_bytes`):
/// 16 MiB per stream.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Reads `session` to its `Exit`. Output past `spec.max_output_bytes` per
/// stream is read and dropped (the command is never blocked by an unread
/// pipe, and ends by its exit or timeout as usual) and marks the result
/// `truncated`. `None`: the session ended without an exit status.
pub(crate) async fn collect(
    mut session: ExecSession,
    spec: &ExecSpec,
) -> Option<Result<ExecOutput, ProviderError>> {
    let limit = spec.max_output_bytes;
    let mut out = ExecOutput::default();
    while let Some(ev) = session.output.recv().await {
        match ev {
            ExecEvent::Output(kind, bytes) => {
                let buf = match kind {
                    StreamKind::Stdout => &mut out.stdout,
                    StreamKind::Stderr => &mut out.stderr,
                };
                let room = limit.saturating_sub(buf.len());
                if bytes.len() > room {
                    out.truncated = true;
                }
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            ExecEvent::Exit {
                timed_out: true, ..
            } => return Some(Err(ProviderError::ExecTimeout(spec.timeout))),
            ExecEvent::Exit {
                exit_code,
                duration,
                ..
            } => {
                out.exit_code = exit_code;
                out.duration = duration;
                return Some(Ok(out));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;

    fn session(events: Vec<ExecEvent>) -> ExecSession {
        let (tx, rx) = mpsc::channel(events.len().max(1));
        for ev in events {
            tx.try_send(ev).unwrap();
        }
        ExecSession {
            input: None,
            output: rx,
        }
    }

    fn spec(limit: usize) -> ExecSpec {
        ExecSpec {
            max_output_bytes: limit,
            timeout: Duration::from_secs(1),
            ..Default::default()
        }
    }

    fn chunk(kind: StreamKind, s: &'static str) -> ExecEvent {
        ExecEvent::Output(kind, Bytes::from_static(s.as_bytes()))
    }

    const EXIT: ExecEvent = ExecEvent::Exit {
        exit_code: 3,
        duration: Duration::from_millis(5),
        timed_out: false,
    };

    #[tokio::test]
    async fn keeps_each_stream_up_to_the_limit() {
        let s = session(vec![
            chunk(StreamKind::Stdout, "abc"),
            chunk(StreamKind::Stderr, "12"),
            chunk(StreamKind::Stdout, "defg"),
            EXIT,
        ]);
        let out = collect(s, &spec(5)).await.unwrap().unwrap();
        assert_eq!(out.stdout, b"abcde");
        assert_eq!(out.stderr, b"12");
        assert!(out.truncated);
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.duration, Duration::from_millis(5));
    }

    #[tokio::test]
    async fn output_at_the_limit_is_not_truncated() {
        let s = session(vec![chunk(StreamKind::Stdout, "abcde"), EXIT]);
        let out = collect(s, &spec(5)).await.unwrap().unwrap();
        assert_eq!(out.stdout, b"abcde");
        assert!(!out.truncated);
    }

    #[tokio::test]
    async fn timeout_and_lost_sessions() {
        let s = session(vec![ExecEvent::Exit {
            exit_code: 137,
            duration: Duration::ZERO,
            timed_out: true,
        }]);
        assert!(matches!(
            collect(s, &spec(5)).await,
            Some(Err(ProviderError::ExecTimeout(_)))
        ));
        let s = session(vec![chunk(StreamKind::Stderr, "lost\n")]);
        assert!(collect(s, &spec(5)).await.is_none());
    }
}
