//! Drives the real `stacyvm-agent` binary over its socket (no container:
//! the agent works as any process; as PID 1 it also reaps orphans).

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use stacyvm_agent::codec::read_frame;
use stacyvm_agent::{
    AgentInfo, ExecRequest, ExitStatus, Frame, FrameKind, PROTOCOL_VERSION, Request, Response,
    SignalRequest, WindowSize,
};

struct Agent {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_stacyvm-agent"))
        .arg("--socket")
        .arg(&sock)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "agent did not listen");
        std::thread::sleep(Duration::from_millis(5));
    }
    Agent {
        child,
        sock,
        _dir: dir,
    }
}

#[derive(Debug, Default)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: ExitStatus,
}

fn request(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        protocol: PROTOCOL_VERSION,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn open(sock: &Path, req: ExecRequest) -> UnixStream {
    let mut c = UnixStream::connect(sock).unwrap();
    Frame::json(FrameKind::Request, &Request::Exec(req))
        .write_to(&mut c)
        .unwrap();
    let f = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(f.kind, FrameKind::Response);
    assert!(matches!(
        f.parse::<Response>().unwrap(),
        Response::Started { .. }
    ));
    c
}

fn collect(c: &mut UnixStream) -> Outcome {
    let mut out = Outcome::default();
    loop {
        let f = read_frame(c).unwrap().expect("exit frame");
        match f.kind {
            FrameKind::Stdout => out.stdout.extend(f.payload),
            FrameKind::Stderr => out.stderr.extend(f.payload),
            FrameKind::Exit => {
                out.exit = f.parse().unwrap();
                return out;
            }
            k => panic!("unexpected {k:?}"),
        }
    }
}

fn exec(sock: &Path, req: ExecRequest) -> Outcome {
    let mut c = open(sock, req);
    collect(&mut c)
}

#[test]
fn info_answers() {
    let a = start();
    let mut c = UnixStream::connect(&a.sock).unwrap();
    Frame::json(
        FrameKind::Request,
        &Request::Info {
            protocol: PROTOCOL_VERSION,
        },
    )
    .write_to(&mut c)
    .unwrap();
    let f = read_frame(&mut c).unwrap().unwrap();
    let Response::Info(AgentInfo { protocol, .. }) = f.parse().unwrap() else {
        panic!("not info")
    };
    assert_eq!(protocol, PROTOCOL_VERSION);
}

#[test]
fn runs_commands_with_env_workdir_and_exit_codes() {
    let a = start();
    let mut req = request(&["sh", "-c", "echo out; echo err >&2; echo $FOO; pwd; exit 3"]);
    req.env = BTreeMap::from([("FOO".into(), "bar baz".into())]);
    req.workdir = "/tmp".into();
    let o = exec(&a.sock, req);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\nbar baz\n/tmp\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    assert_eq!(o.exit.exit_code, 3);
    assert!(!o.exit.timed_out);

    let o = exec(&a.sock, request(&["no-such-command-xyz"]));
    assert_eq!(o.exit.exit_code, 127);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));

    let o = exec(&a.sock, request(&["sh", "-c", "kill -TERM $$"]));
    assert_eq!(o.exit.exit_code, 128 + 15);
    assert_eq!(o.exit.signal, Some(15));
}

#[test]
fn feeds_stdin() {
    let a = start();
    let mut req = request(&["cat"]);
    req.stdin = true;
    let mut c = open(&a.sock, req);
    Frame::new(FrameKind::Stdin, b"hello ".to_vec())
        .write_to(&mut c)
        .unwrap();
    Frame::new(FrameKind::Stdin, b"world".to_vec())
        .write_to(&mut c)
        .unwrap();
    Frame::new(FrameKind::CloseStdin, Vec::new())
        .write_to(&mut c)
        .unwrap();
    let o = collect(&mut c);
    assert_eq!(o.stdout, b"hello world");
    assert_eq!(o.exit.exit_code, 0);
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let a = start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let script = format!("sleep 100 & echo $! > {}; sleep 100", pidfile.display());
    let mut req = request(&["sh", "-c", &script]);
    req.timeout_ms = 300;
    let t = Instant::now();
    let o = exec(&a.sock, req);
    assert!(o.exit.timed_out);
    assert_eq!(o.exit.exit_code, 137);
    assert!(t.elapsed() < Duration::from_secs(5));
    let bg: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(!alive(bg), "background process {bg} survived the timeout");
}

#[test]
fn dropped_connection_kills_the_command() {
    let a = start();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("p.pid");
    let script = format!("echo $$ > {}; exec sleep 100", pidfile.display());
    let c = open(&a.sock, request(&["sh", "-c", &script]));
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "command {pid} outlived its connection"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn signals_reach_the_command() {
    let a = start();
    let mut c = open(
        &a.sock,
        request(&[
            "sh",
            "-c",
            "trap 'echo got; exit 7' INT; echo ready; while :; do sleep 0.05; done",
        ]),
    );
    let f = read_frame(&mut c).unwrap().unwrap();
    assert_eq!(f.payload, b"ready\n");
    Frame::json(
        FrameKind::Signal,
        &SignalRequest {
            signal: "SIGINT".into(),
        },
    )
    .write_to(&mut c)
    .unwrap();
    let o = collect(&mut c);
    assert_eq!(o.stdout, b"got\n");
    assert_eq!(o.exit.exit_code, 7);
}

#[test]
fn runs_under_a_tty_with_resize() {
    let a = start();
    let mut req = request(&[
        "sh",
        "-c",
        "tty; stty size; read x; stty size; echo \"x=$x\"",
    ]);
    req.tty = Some(WindowSize { cols: 80, rows: 24 });
    let mut c = open(&a.sock, req);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("24 80") {
        let f = read_frame(&mut c).unwrap().unwrap();
        assert_eq!(f.kind, FrameKind::Stdout);
        seen.extend(f.payload);
    }
    Frame::json(
        FrameKind::Resize,
        &WindowSize {
            cols: 100,
            rows: 40,
        },
    )
    .write_to(&mut c)
    .unwrap();
    Frame::new(FrameKind::Stdin, b"abc\n".to_vec())
        .write_to(&mut c)
        .unwrap();
    let o = collect(&mut c);
    let all = String::from_utf8_lossy(&seen).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert!(all.contains("/dev/pts/"), "{all}");
    assert!(all.contains("40 100"), "{all}");
    assert!(all.contains("x=abc"), "{all}");
    assert_eq!(o.exit.exit_code, 0);
}

#[test]
fn missing_workdir_is_reported() {
    let a = start();
    let mut req = request(&["true"]);
    req.workdir = "/no/such/dir".into();
    let o = exec(&a.sock, req);
    assert_eq!(o.exit.exit_code, 126);
    assert!(String::from_utf8_lossy(&o.stderr).contains("workdir /no/such/dir"));
}

#[test]
fn a_finished_commands_tree_is_gone_before_its_exit() {
    let a = start();
    let dir = tempfile::tempdir().unwrap();
    let group = dir.path().join("group.pid");
    let session = dir.path().join("session.pid");
    // One child stays in the command's process group, one starts its own
    // session; both must be dead when the exit arrives.
    let script = format!(
        "sleep 100 </dev/null >/dev/null 2>&1 & echo $! > {}; setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $! > {}",
        group.display(),
        session.display()
    );
    let o = exec(&a.sock, request(&["sh", "-c", &script]));
    assert_eq!(o.exit.exit_code, 0, "{o:?}");
    for file in [&group, &session] {
        let pid: i32 = std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!alive(pid), "process {pid} outlived its command");
    }
}
