//! `stacyvm-agent`: PID 1 of a native sandbox. Serves the agent protocol on
//! a listening Unix socket inherited as a file descriptor (`--listen-fd N`,
//! the provider passes it through the OCI runtime) or bound at a path
//! (`--socket PATH`, for tests and manual use). `--tty-signals` (last)
//! makes it raise ^C, ^\ and ^Z itself, for kernels whose terminals do not
//! (gVisor's).

use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
#[allow(unsafe_code)]
fn listener_from_fd(fd: i32) -> std::io::Result<UnixListener> {
    // SAFETY: F_SETFD on a plain number; fails with EBADF if not open.
    let r = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is open (fcntl succeeded) and nothing else owns it: it was
    // inherited for us alone.
    Ok(unsafe { UnixListener::from_raw_fd(fd) })
}

/// Makes sure 0, 1 and 2 are open, so a pipe never lands on them.
#[allow(unsafe_code)]
fn ensure_stdio() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only probes the descriptor number (EBADF if closed).
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0;
        if closed {
            // Opening takes the lowest free number, i.e. this one; keep it.
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                std::mem::forget(f);
            }
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: stacyvm-agent (--listen-fd N | --socket PATH) [--tty-signals]");
    std::process::exit(2)
}

fn main() {
    ensure_stdio();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.last().is_some_and(|a| a == "--tty-signals") {
        args.pop();
        stacyvm_agent::server::emulate_tty_signals();
    }
    let listener = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--listen-fd", n] => n
            .parse::<i32>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            .and_then(listener_from_fd),
        ["--socket", path] => {
            let _ = std::fs::remove_file(path);
            UnixListener::bind(path)
        }
        ["--version"] => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stdout(),
                "stacyvm-agent {}",
                env!("CARGO_PKG_VERSION")
            );
            return;
        }
        _ => usage(),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stacyvm-agent: cannot listen: {e}");
            std::process::exit(1);
        }
    };
    let agent = stacyvm_agent::server::Agent::new();
    stacyvm_agent::log!(
        "{} ready (pid {}, protocol {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        stacyvm_agent::PROTOCOL_VERSION
    );
    if let Err(e) = agent.serve(listener) {
        eprintln!("stacyvm-agent: {e}");
        std::process::exit(1);
    }
}
