//! The agent: accepts connections and serves one request on each (see
//! [`crate::protocol`]). Blocking I/O and a few threads per exec: the agent
//! must stay tiny and static, so no async runtime.

mod exec;
mod reaper;
mod spawn;
mod tree;

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Instant;

pub use exec::emulate_tty_signals;
pub use reaper::Reaper;

use crate::codec::{Frame, FrameKind, read_frame};
use crate::protocol::{AgentInfo, PROTOCOL_VERSION, Request, Response};

/// Prints a line to the agent's console (its stderr, which the provider
/// keeps as the sandbox's console log).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("stacyvm-agent: {}", format_args!($($arg)*))
    };
}

/// Shared agent state.
#[derive(Debug)]
pub struct Agent {
    reaper: Reaper,
    started: Instant,
}

impl Agent {
    /// Starts the reaper; call once per process.
    pub fn new() -> Arc<Self> {
        Arc::new(Agent {
            reaper: Reaper::start(),
            started: Instant::now(),
        })
    }

    /// Serves connections forever, one thread each.
    pub fn serve(self: &Arc<Self>, listener: UnixListener) -> std::io::Result<()> {
        loop {
            match listener.accept() {
                Ok((conn, _)) => {
                    let agent = Arc::clone(self);
                    let spawned = std::thread::Builder::new()
                        .name("conn".into())
                        .spawn(move || agent.handle(conn));
                    if let Err(e) = spawned {
                        log!("cannot start a connection thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log!("accept: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }

    fn handle(&self, mut conn: UnixStream) {
        let req = match read_frame(&mut conn) {
            Ok(Some(f)) if f.kind == FrameKind::Request => f.parse::<Request>(),
            Ok(Some(f)) => {
                reply_error(&mut conn, &format!("expected a request, got {:?}", f.kind));
                return;
            }
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match req {
            Ok(Request::Info { .. }) => {
                let info = Response::Info(AgentInfo {
                    protocol: PROTOCOL_VERSION,
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    pid: std::process::id() as i32,
                    uptime_ms: self.started.elapsed().as_millis() as u64,
                });
                let _ = Frame::json(FrameKind::Response, &info).write_to(&mut conn);
            }
            Ok(Request::Exec(req)) if req.protocol != PROTOCOL_VERSION => reply_error(
                &mut conn,
                &format!(
                    "protocol version {} not supported (agent speaks {PROTOCOL_VERSION})",
                    req.protocol
                ),
            ),
            Ok(Request::Exec(req)) => exec::run(&self.reaper, conn, req),
            Err(e) => reply_error(&mut conn, &e.to_string()),
        }
    }
}

fn reply_error(conn: &mut UnixStream, message: &str) {
    let resp = Response::Error {
        message: message.to_string(),
    };
    let _ = Frame::json(FrameKind::Response, &resp).write_to(conn);
}
