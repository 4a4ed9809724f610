//! Exec: sync, streamed and interactive, with timeouts, limits, metrics and
//! audit events.

use std::time::{Duration, Instant};

use serde_json::json;
use stacyvm_core::{EventType, ExecMode, ExecOutput, ExecRequest, GoDuration, SandboxId};
use stacyvm_providers::{ExecEvent, ExecInput, ExecSpec, ProviderError, StreamOptions, TtySize};
use tokio::sync::mpsc;

use super::{Manager, ManagerError};
use crate::obs::operations::Operation;

/// A finished sync exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    pub output: ExecOutput,
}

/// Options of a WebSocket (interactive) exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InteractiveRequest {
    pub tty: Option<TtySize>,
}

/// A running streamed exec. Dropping it kills the command.
#[derive(Debug)]
pub struct ExecStreamHandle {
    pub input: Option<mpsc::Sender<ExecInput>>,
    pub output: mpsc::Receiver<ExecEvent>,
    pub timeout: GoDuration,
}

impl Manager {
    /// Validates a request and turns it into a provider spec.
    fn exec_spec(&self, req: &ExecRequest) -> Result<ExecSpec, ManagerError> {
        let mode = ExecMode::parse(&req.mode).ok_or_else(|| {
            ManagerError::BadRequest(format!(
                "invalid mode {:?} (use \"shell\" or \"argv\")",
                req.mode
            ))
        })?;
        if req.command.trim().is_empty() {
            return Err(ManagerError::BadRequest("command is required".into()));
        }
        if req.command.contains('\0') || req.args.iter().any(|a| a.contains('\0')) {
            return Err(ManagerError::BadRequest(
                "command and args may not contain NUL bytes".into(),
            ));
        }
        for (k, v) in &req.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(ManagerError::BadRequest(format!(
                    "invalid environment variable name {k:?}"
                )));
            }
        }
        if !req.workdir.is_empty() && !req.workdir.starts_with('/') {
            return Err(ManagerError::BadRequest(format!(
                "workdir {:?} must be an absolute path",
                req.workdir
            )));
        }
        let timeout = self.exec_timeout(req.timeout)?;
        Ok(ExecSpec {
            argv: req.argv(mode),
            env: req.env.clone(),
            workdir: req.workdir.clone(),
            timeout: timeout.0,
            // Validated to fit at start-up.
            max_output_bytes: usize::try_from(self.inner.limits.max_exec_output_bytes)
                .unwrap_or(usize::MAX),
        })
    }

    /// The request's timeout, else the default; over the maximum is a
    /// resource limit.
    fn exec_timeout(&self, requested: Option<GoDuration>) -> Result<GoDuration, ManagerError> {
        let l = &self.inner.limits;
        let timeout = requested
            .filter(|t| !t.is_zero())
            .unwrap_or(l.default_exec_timeout);
        if !l.max_exec_timeout.is_zero() && timeout > l.max_exec_timeout {
            let message = format!(
                "exec timeout {timeout} exceeds the maximum of {}",
                l.max_exec_timeout
            );
            self.publish(
                EventType::ResourceLimit,
                None,
                json!({"operation": "exec", "error": message}),
            );
            return Err(ManagerError::limit(message));
        }
        Ok(timeout)
    }

    fn exec_started(&self, id: &SandboxId, provider: &str, spec: &ExecSpec, op: Operation) {
        // Only the program name: arguments and environment may hold secrets.
        let program = spec.argv.first().map(String::as_str).unwrap_or("");
        let program = if program == "/bin/sh" {
            "sh -c"
        } else {
            program
        };
        self.publish(
            EventType::ExecStarted,
            Some(id),
            json!({"operation": op.as_str(), "provider": provider, "program": program}),
        );
    }

    /// Runs a command to completion.
    pub async fn exec(
        &self,
        id: &SandboxId,
        req: &ExecRequest,
    ) -> Result<ExecResult, ManagerError> {
        let (sb, provider) = self.active_sandbox(id).await?;
        let spec = self.exec_spec(req)?;
        self.exec_started(id, &sb.provider, &spec, Operation::Exec);
        let started = Instant::now();
        let result = provider.exec(id, &spec).await;
        let elapsed = started.elapsed();
        match result {
            Ok(output) => {
                self.inner
                    .metrics
                    .record(Operation::Exec, &sb.provider, elapsed, Ok(()));
                self.publish(
                    EventType::ExecCompleted,
                    Some(id),
                    json!({"operation": "exec", "provider": sb.provider, "exit_code": output.exit_code,
                           "duration_ms": elapsed.as_millis() as u64}),
                );
                Ok(ExecResult { output })
            }
            Err(e) => {
                Err(self.exec_failed(id, &sb.provider, Operation::Exec, elapsed, e, spec.timeout))
            }
        }
    }

    /// Records a failed exec and picks its event: timeout or failure.
    fn exec_failed(
        &self,
        id: &SandboxId,
        provider: &str,
        op: Operation,
        elapsed: Duration,
        e: ProviderError,
        timeout: Duration,
    ) -> ManagerError {
        let msg = e.to_string();
        self.inner.metrics.record(op, provider, elapsed, Err(&msg));
        if let ProviderError::ExecTimeout(_) = e {
            self.publish(
                EventType::ExecTimeout,
                Some(id),
                json!({"operation": op.as_str(), "provider": provider, "error": "exec timeout",
                       "timeout": GoDuration(timeout)}),
            );
            return ManagerError::ExecTimeout(GoDuration(timeout));
        }
        self.publish(
            EventType::ExecFailed,
            Some(id),
            json!({"operation": op.as_str(), "provider": provider, "error": msg}),
        );
        e.into()
    }

    /// Starts a streamed command. The returned handle yields output then
    /// the exit; metrics and events are recorded as it finishes. Dropping
    /// it (a client that disconnects) kills the command, which is not
    /// counted as a timeout.
    pub async fn exec_stream(
        &self,
        id: &SandboxId,
        req: &ExecRequest,
        interactive: Option<InteractiveRequest>,
    ) -> Result<ExecStreamHandle, ManagerError> {
        let (sb, provider) = self.active_sandbox(id).await?;
        let mut spec = self.exec_spec(req)?;
        if interactive.is_some() && req.timeout.is_none_or(|t| t.is_zero()) {
            // A terminal lives as long as its user wants, within the maximum.
            let max = self.inner.limits.max_exec_timeout;
            spec.timeout = if max.is_zero() {
                Duration::from_secs(24 * 3600)
            } else {
                max.0
            };
        }
        let options = match interactive {
            Some(i) => StreamOptions {
                stdin: true,
                tty: i.tty,
            },
            None => StreamOptions::default(),
        };
        self.exec_started(id, &sb.provider, &spec, Operation::ExecStream);
        let started = Instant::now();
        let session = match provider.exec_stream(id, &spec, options).await {
            Ok(s) => s,
            Err(e) => {
                return Err(self.exec_failed(
                    id,
                    &sb.provider,
                    Operation::ExecStream,
                    started.elapsed(),
                    e,
                    spec.timeout,
                ));
            }
        };
        // Relay through our own channel so completion is observed even if
        // the caller stops reading right after the exit record.
        let (tx, rx) = mpsc::channel(64);
        let manager = self.clone();
        let id = id.clone();
        let provider_name = sb.provider.clone();
        let timeout = spec.timeout;
        let mut upstream = session.output;
        tokio::spawn(async move {
            let mut finished = false;
            loop {
                tokio::select! {
                    // The client went away: drop upstream, which kills the command.
                    _ = tx.closed() => break,
                    ev = upstream.recv() => {
                        let Some(ev) = ev else { break };
                        if let ExecEvent::Exit { exit_code, timed_out, .. } = &ev {
                            finished = true;
                            manager.stream_finished(&id, &provider_name, started.elapsed(), *exit_code, *timed_out, timeout);
                        }
                        if tx.send(ev).await.is_err() || finished {
                            break;
                        }
                    }
                }
            }
            if !finished {
                // Cancelled by the caller or the provider ended without an
                // exit: count it, but it is not a timeout.
                let why = if tx.is_closed() {
                    "cancelled by client"
                } else {
                    "stream ended without exit status"
                };
                manager.inner.metrics.record(
                    Operation::ExecStream,
                    &provider_name,
                    started.elapsed(),
                    Err(why),
                );
                if !tx.is_closed() {
                    manager.publish(
                        EventType::ExecFailed,
                        Some(&id),
                        json!({"operation": "exec_stream", "provider": provider_name, "error": why}),
                    );
                }
            }
        });
        Ok(ExecStreamHandle {
            input: session.input,
            output: rx,
            timeout: GoDuration(timeout),
        })
    }

    fn stream_finished(
        &self,
        id: &SandboxId,
        provider: &str,
        elapsed: Duration,
        exit_code: i32,
        timed_out: bool,
        timeout: Duration,
    ) {
        if timed_out {
            self.inner.metrics.record(
                Operation::ExecStream,
                provider,
                elapsed,
                Err("exec timeout"),
            );
            self.publish(
                EventType::ExecTimeout,
                Some(id),
                json!({"operation": "exec_stream", "provider": provider, "error": "exec timeout",
                       "timeout": GoDuration(timeout)}),
            );
        } else {
            self.inner
                .metrics
                .record(Operation::ExecStream, provider, elapsed, Ok(()));
            self.publish(
                EventType::ExecCompleted,
                Some(id),
                json!({"operation": "exec_stream", "provider": provider, "exit_code": exit_code,
                       "duration_ms": elapsed.as_millis() as u64}),
            );
        }
    }
}
