//! Exec cases: argv vs shell, env, workdir, exit codes, timeouts that kill
//! the whole tree, ordered streams, dropped streams, stdin and signals.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stacyvm_core::{Capability, ExecMode, ExecRequest, SandboxId, StreamKind};
use tokio::sync::mpsc;

use super::{ALIVE_FN, Harness, QUICK, mkdir, read_all, sh, spec, with_sandbox};
use crate::{ExecEvent, ExecInput, ExecSession, ProviderError, StreamOptions};

/// `echo` with args `["a b", "$HOME"]` in argv mode never meets a shell.
pub async fn case_exec_argv_is_literal(h: &Harness) {
    with_sandbox(h, |id| async move {
        let req = ExecRequest {
            command: "echo".into(),
            args: vec!["a b".into(), "$HOME".into(), "it's; true".into()],
            ..Default::default()
        };
        for mode in [ExecMode::Argv, ExecMode::Shell] {
            let argv = req.argv(mode);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = h.provider.exec(&id, &spec(&argv, "", QUICK)).await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "a b $HOME it's; true\n",
                "[{}] {mode:?} mode must pass args literally",
                h.provider.name()
            );
            assert_eq!(out.exit_code, 0);
        }
    })
    .await;
}

/// Shell mode runs `/bin/sh -c` with pipes, expansion and redirection.
pub async fn case_exec_shell(h: &Harness) {
    with_sandbox(h, |id| async move {
        let req = ExecRequest {
            command: "x=4; echo $((x * 2)) | cat; echo to-err >&2".into(),
            ..Default::default()
        };
        let argv = req.argv(ExecMode::Shell);
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = h.provider.exec(&id, &spec(&argv, "", QUICK)).await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "8\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    })
    .await;
}

/// Env vars reach the command; it runs in `workdir`, where relative paths
/// land.
pub async fn case_env_and_workdir(h: &Harness) {
    with_sandbox(h, |id| async move {
        mkdir(h, &id, "/wd/sub").await;
        let mut s = spec(
            &[
                "/bin/sh",
                "-c",
                "echo \"$GREETING\"; pwd; echo made > here.txt",
            ],
            "/wd/sub",
            QUICK,
        );
        s.env = BTreeMap::from([("GREETING".to_string(), "hello  world $x".to_string())]);
        let out = h.provider.exec(&id, &s).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next(),
            Some("hello  world $x"),
            "[{}] env",
            h.provider.name()
        );
        let pwd = lines.next().unwrap_or_default();
        assert!(
            pwd.ends_with("/wd/sub"),
            "[{}] pwd was {pwd:?}",
            h.provider.name()
        );
        assert_eq!(
            read_all(h, &id, "/wd/sub/here.txt").await.unwrap(),
            b"made\n"
        );
    })
    .await;
}

/// A non-zero exit is a result, not an error.
pub async fn case_nonzero_exit(h: &Harness) {
    with_sandbox(h, |id| async move {
        let out = sh(h, &id, "", "echo partial; exit 42").await;
        assert_eq!(out.exit_code, 42, "[{}]", h.provider.name());
        assert_eq!(out.stdout, b"partial\n");
        let out = h
            .provider
            .exec(&id, &spec(&["false"], "", QUICK))
            .await
            .unwrap();
        assert_eq!(out.exit_code, 1);
        // A program that does not exist is a failed command too (or an
        // invalid request), never a crash.
        match h
            .provider
            .exec(&id, &spec(&["no-such-program-xyz"], "", QUICK))
            .await
        {
            Ok(out) => assert_ne!(out.exit_code, 0),
            Err(ProviderError::InvalidInput(_) | ProviderError::NotFound(_)) => {}
            Err(e) => panic!("[{}] missing program: {e}", h.provider.name()),
        }
    })
    .await;
}

/// Stderr is captured separately from stdout.
pub async fn case_stderr_captured(h: &Harness) {
    with_sandbox(h, |id| async move {
        let out = sh(h, &id, "", "echo out; echo err1 >&2; echo err2 1>&2").await;
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err1\nerr2\n", "[{}]", h.provider.name());
    })
    .await;
}

/// Polls (up to ~10s) until none of the pids in `files` (relative to
/// `workdir`) is alive; panics naming the survivors otherwise.
async fn assert_pids_die(h: &Harness, id: &SandboxId, workdir: &str, files: &[&str]) {
    let script = format!(
        "{ALIVE_FN}\nfor f in {}; do test -s $f || {{ echo \"no pid file $f\"; exit 2; }}; done\n\
         i=0; while [ $i -lt 100 ]; do left=''; for f in {}; do p=$(cat $f); \
         if alive $p; then left=\"$left $p\"; fi; done; \
         [ -z \"$left\" ] && {{ echo gone; exit 0; }}; sleep 0.1; i=$((i+1)); done; \
         echo \"alive:$left\"; exit 1",
        files.join(" "),
        files.join(" ")
    );
    let out = sh(h, id, workdir, &script).await;
    assert_eq!(
        out.exit_code,
        0,
        "[{}] processes survived: {} {}",
        h.provider.name(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A timeout returns `ExecTimeout` promptly and kills the whole tree: a
/// background `sleep` child does not survive.
pub async fn case_timeout_kills_process_tree(h: &Harness) {
    with_sandbox(h, |id| async move {
        mkdir(h, &id, "/tt").await;
        let started = Instant::now();
        let r = h
            .provider
            .exec(
                &id,
                &spec(
                    &[
                        "/bin/sh",
                        "-c",
                        "sleep 300 & echo $! > child.pid; echo $$ > sh.pid; wait",
                    ],
                    "/tt",
                    Duration::from_secs(2),
                ),
            )
            .await;
        assert!(
            matches!(r, Err(ProviderError::ExecTimeout(_))),
            "[{}] expected ExecTimeout, got {r:?}",
            h.provider.name()
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "[{}] timeout took {:?}",
            h.provider.name(),
            started.elapsed()
        );
        assert_pids_die(h, &id, "/tt", &["child.pid", "sh.pid"]).await;
    })
    .await;
}

/// Collects a session's events until the channel closes (or 60s pass).
async fn collect(mut session: ExecSession) -> Vec<ExecEvent> {
    let mut events = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = session.output.recv() => match ev {
                Some(ev) => events.push(ev),
                None => break,
            },
            _ = &mut deadline => panic!("stream did not end within 60s: {events:?}"),
        }
    }
    events
}

/// Output chunks with adjacent chunks of the same stream merged, and the
/// exit event, which must be last and only once.
fn split_events(name: &str, events: &[ExecEvent]) -> (Vec<(StreamKind, String)>, (i32, bool)) {
    let mut chunks: Vec<(StreamKind, String)> = Vec::new();
    let mut exit = None;
    for ev in events {
        assert!(exit.is_none(), "[{name}] event after Exit: {events:?}");
        match ev {
            ExecEvent::Output(kind, data) => {
                let text = String::from_utf8_lossy(data);
                match chunks.last_mut() {
                    Some((k, s)) if k == kind => s.push_str(&text),
                    _ => chunks.push((*kind, text.into_owned())),
                }
            }
            ExecEvent::Exit {
                exit_code,
                timed_out,
                ..
            } => exit = Some((*exit_code, *timed_out)),
        }
    }
    let exit = exit.unwrap_or_else(|| panic!("[{name}] no Exit event: {events:?}"));
    (chunks, exit)
}

/// Interleaved stdout/stderr arrive in order, then `Exit` with the code.
pub async fn case_stream_order(h: &Harness) {
    with_sandbox(h, |id| async move {
        let script = "echo o1; sleep 0.3; echo e1 >&2; sleep 0.3; echo o2; sleep 0.3; \
                      echo e2 >&2; sleep 0.3; echo o3; exit 3";
        let session = h
            .provider
            .exec_stream(
                &id,
                &spec(&["/bin/sh", "-c", script], "", QUICK),
                StreamOptions::default(),
            )
            .await
            .unwrap();
        let events = collect(session).await;
        let (chunks, exit) = split_events(h.provider.name(), &events);
        use StreamKind::{Stderr, Stdout};
        let expected = vec![
            (Stdout, "o1\n".to_string()),
            (Stderr, "e1\n".to_string()),
            (Stdout, "o2\n".to_string()),
            (Stderr, "e2\n".to_string()),
            (Stdout, "o3\n".to_string()),
        ];
        assert_eq!(chunks, expected, "[{}] stream order", h.provider.name());
        assert_eq!(exit, (3, false));
    })
    .await;
}

/// A streamed command past its timeout is killed: a stderr chunk says so
/// and `Exit` has `timed_out: true`.
pub async fn case_stream_timeout(h: &Harness) {
    with_sandbox(h, |id| async move {
        let started = Instant::now();
        let session = h
            .provider
            .exec_stream(
                &id,
                &spec(
                    &["/bin/sh", "-c", "echo started; sleep 300"],
                    "",
                    Duration::from_secs(1),
                ),
                StreamOptions::default(),
            )
            .await
            .unwrap();
        let events = collect(session).await;
        assert!(started.elapsed() < Duration::from_secs(15));
        let (chunks, (_, timed_out)) = split_events(h.provider.name(), &events);
        assert!(
            timed_out,
            "[{}] Exit must say timed_out: {events:?}",
            h.provider.name()
        );
        assert_eq!(chunks.first().map(|c| c.1.as_str()), Some("started\n"));
        assert!(
            chunks
                .iter()
                .any(|(k, s)| *k == StreamKind::Stderr && s.contains("timed out")),
            "[{}] a stderr chunk must say the command timed out: {chunks:?}",
            h.provider.name()
        );
    })
    .await;
}

/// Dropping the output receiver kills the command and its children.
pub async fn case_stream_drop_kills_command(h: &Harness) {
    with_sandbox(h, |id| async move {
        mkdir(h, &id, "/dk").await;
        let script = "echo $$ > sh.pid; sleep 300 & echo $! > child.pid; echo ready; wait";
        let mut session = h
            .provider
            .exec_stream(
                &id,
                &spec(&["/bin/sh", "-c", script], "/dk", Duration::from_secs(600)),
                StreamOptions::default(),
            )
            .await
            .unwrap();
        let mut seen = String::new();
        while !seen.contains("ready") {
            match tokio::time::timeout(Duration::from_secs(30), session.output.recv()).await {
                Ok(Some(ExecEvent::Output(_, data))) => {
                    seen.push_str(&String::from_utf8_lossy(&data))
                }
                other => panic!("[{}] waiting for ready: {other:?}", h.provider.name()),
            }
        }
        drop(session);
        assert_pids_die(h, &id, "/dk", &["child.pid", "sh.pid"]).await;
    })
    .await;
}

/// With stdin: bytes reach the command and closing stdin ends `cat`;
/// a signal by name reaches the command. Skipped by providers without
/// [`Capability::Interactive`].
pub async fn case_stdin_and_signal(h: &Harness) {
    if !h.provider.capabilities().contains(&Capability::Interactive) {
        eprintln!(
            "[{}] not interactive: stdin case skipped",
            h.provider.name()
        );
        return;
    }
    with_sandbox(h, |id| async move {
        let name = h.provider.name();
        let opts = StreamOptions {
            stdin: true,
            tty: None,
        };
        let session = h
            .provider
            .exec_stream(&id, &spec(&["cat"], "", QUICK), opts)
            .await
            .unwrap();
        let input = session.input.clone().expect("stdin sender");
        input
            .send(ExecInput::Stdin(Bytes::from_static(b"hello\0stdin\n")))
            .await
            .unwrap();
        input
            .send(ExecInput::Stdin(Bytes::from_static(b"second line\n")))
            .await
            .unwrap();
        input.send(ExecInput::CloseStdin).await.unwrap();
        let events = collect(session).await;
        let (chunks, exit) = split_events(name, &events);
        assert_eq!(
            chunks,
            vec![(
                StreamKind::Stdout,
                "hello\0stdin\nsecond line\n".to_string()
            )],
            "[{name}] stdin echo"
        );
        assert_eq!(exit, (0, false));

        let (input, mut output) = start_sleeper(h, &id, opts).await;
        match tokio::time::timeout(Duration::from_secs(30), output.recv()).await {
            Ok(Some(ExecEvent::Output(StreamKind::Stdout, _))) => {}
            other => panic!("[{name}] waiting for ready: {other:?}"),
        }
        input
            .send(ExecInput::Signal("SIGTERM".into()))
            .await
            .unwrap();
        assert_interrupted(name, output, "SIGTERM").await;
    })
    .await;
}

/// Under a TTY the command sees a terminal of the asked size, and ^C typed
/// into it interrupts it. Skipped by providers without
/// [`Capability::Interactive`] or that answer `Unsupported` for a TTY.
pub async fn case_tty(h: &Harness) {
    if !h.provider.capabilities().contains(&Capability::Interactive) {
        eprintln!("[{}] not interactive: tty case skipped", h.provider.name());
        return;
    }
    with_sandbox(h, |id| async move {
        let name = h.provider.name();
        let opts = StreamOptions {
            stdin: true,
            tty: Some(crate::TtySize { cols: 91, rows: 37 }),
        };
        let script = "test -t 0 && test -t 1 && echo is-a-tty; stty size";
        let session = match h
            .provider
            .exec_stream(&id, &spec(&["/bin/sh", "-c", script], "", QUICK), opts)
            .await
        {
            Err(ProviderError::Unsupported(what)) => {
                eprintln!("[{name}] tty unsupported ({what}): case skipped");
                return;
            }
            r => r.unwrap(),
        };
        let events = collect(session).await;
        let (chunks, exit) = split_events(name, &events);
        let text: String = chunks.iter().map(|c| c.1.as_str()).collect();
        assert!(
            text.contains("is-a-tty"),
            "[{name}] not a terminal: {text:?}"
        );
        assert!(text.contains("37 91"), "[{name}] terminal size: {text:?}");
        assert_eq!(exit, (0, false));

        let (input, mut output) = start_sleeper(h, &id, opts).await;
        let mut seen = String::new();
        while !seen.contains("ready") {
            match tokio::time::timeout(Duration::from_secs(30), output.recv()).await {
                Ok(Some(ExecEvent::Output(_, data))) => {
                    seen.push_str(&String::from_utf8_lossy(&data))
                }
                other => panic!("[{name}] waiting for ready: {other:?}"),
            }
        }
        input
            .send(ExecInput::Resize(crate::TtySize {
                cols: 120,
                rows: 40,
            }))
            .await
            .unwrap();
        input
            .send(ExecInput::Stdin(Bytes::from_static(b"\x03")))
            .await
            .unwrap();
        assert_interrupted(name, output, "^C").await;
    })
    .await;
}

/// Starts `echo ready; exec sleep 300` with `opts` (stdin or a TTY); returns
/// its input sender and output.
async fn start_sleeper(
    h: &Harness,
    id: &SandboxId,
    opts: StreamOptions,
) -> (mpsc::Sender<ExecInput>, mpsc::Receiver<ExecEvent>) {
    let session = h
        .provider
        .exec_stream(
            id,
            &spec(&["/bin/sh", "-c", "echo ready; exec sleep 300"], "", QUICK),
            opts,
        )
        .await
        .unwrap();
    let input = session.input.clone().expect("input sender");
    (input, session.output)
}

/// The rest of `output` ends within 10s in a non-zero exit that is not a
/// timeout: `what` (a signal or ^C) interrupted the command.
async fn assert_interrupted(name: &str, output: mpsc::Receiver<ExecEvent>, what: &str) {
    let started = Instant::now();
    let events = collect(ExecSession {
        input: None,
        output,
    })
    .await;
    let (_, (code, timed_out)) = split_events(name, &events);
    assert!(!timed_out && code != 0, "[{name}] {what}: exit {code}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_adjacent_chunks() {
        let ev = vec![
            ExecEvent::Output(StreamKind::Stdout, Bytes::from_static(b"a")),
            ExecEvent::Output(StreamKind::Stdout, Bytes::from_static(b"b")),
            ExecEvent::Output(StreamKind::Stderr, Bytes::from_static(b"c")),
            ExecEvent::Exit {
                exit_code: 1,
                duration: Duration::ZERO,
                timed_out: false,
            },
        ];
        let (chunks, exit) = split_events("t", &ev);
        assert_eq!(
            chunks,
            vec![
                (StreamKind::Stdout, "ab".into()),
                (StreamKind::Stderr, "c".into())
            ]
        );
        assert_eq!(exit, (1, false));
    }
}
