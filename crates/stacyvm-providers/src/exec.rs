//! The synchronous exec every provider shares: a streamed session read to
//! its end, with one output limit.

use stacyvm_core::{ExecOutput, StreamKind};

use crate::{ExecEvent, ExecSession, ExecSpec, ProviderError};

/// Default of [`ExecSpec::max_output_bytes`] (`defaults.max_exec_output_bytes`):
/// 16 MiB per stream.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Most bytes one argument or one `KEY=value` may have: the kernel's
/// `MAX_ARG_STRLEN` (128 KiB with the terminating NUL). A longer one fails
/// `execve` with `E2BIG` on every provider.
pub const MAX_ARG_BYTES: usize = 128 * 1024 - 1;

/// Most bytes the arguments and the environment of a command may take
/// together (each counted with its NUL): below the kernel's argument space
/// (a quarter of the stack limit, 2 MiB by default) and below the native
/// agent's 1 MiB request frame, with room for the rest of the request.
pub const MAX_EXEC_INPUT_BYTES: usize = 896 * 1024;

impl ExecSpec {
    /// Refuses a command whose arguments or environment are over
    /// [`MAX_ARG_BYTES`] or [`MAX_EXEC_INPUT_BYTES`], naming the limit,
    /// before anything is sent to a sandbox.
    pub fn check_size(&self) -> Result<(), ProviderError> {
        for (i, a) in self.argv.iter().enumerate() {
            if a.len() > MAX_ARG_BYTES {
                return Err(ProviderError::InvalidInput(format!(
                    "argument {i} of the command is {} bytes; one argument may have at most {MAX_ARG_BYTES} bytes",
                    a.len()
                )));
            }
        }
        for (k, v) in &self.env {
            let n = k.len() + 1 + v.len();
            if n > MAX_ARG_BYTES {
                return Err(ProviderError::InvalidInput(format!(
                    "environment variable {k} is {n} bytes with its name; one variable may have at most {MAX_ARG_BYTES} bytes"
                )));
            }
        }
        let total: usize = self.argv.iter().map(|a| a.len() + 1).sum::<usize>()
            + self
                .env
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        if total > MAX_EXEC_INPUT_BYTES {
            return Err(ProviderError::InvalidInput(format!(
                "the command's arguments and environment take {total} bytes; the limit is {MAX_EXEC_INPUT_BYTES} bytes together"
            )));
        }
        Ok(())
    }
}

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

    #[test]
    fn argv_and_env_sizes_are_checked_against_the_named_limits() {
        let mut s = spec(5);
        s.argv = vec!["sh".into(), "x".repeat(MAX_ARG_BYTES)];
        s.check_size().unwrap();
        s.argv[1].push('x');
        let e = s.check_size().unwrap_err().to_string();
        assert!(e.contains("argument 1") && e.contains("131071"), "{e}");

        s.argv = vec!["sh".into()];
        s.env.insert("BIG".into(), "v".repeat(MAX_ARG_BYTES));
        let e = s.check_size().unwrap_err().to_string();
        assert!(e.contains("environment variable BIG"), "{e}");

        s.env.clear();
        s.argv = vec!["a".repeat(100 * 1024); 9];
        let e = s.check_size().unwrap_err().to_string();
        assert!(e.contains(&MAX_EXEC_INPUT_BYTES.to_string()), "{e}");
        s.argv.pop();
        s.check_size().unwrap();
    }

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
