//! Starting a command: `fork` + `execve` by hand, because the child must
//! become a session leader (so a timeout can kill its whole process group),
//! may take a controlling terminal, and its status must go to our reaper
//! (std's `Command` reaps failed children itself, racing with `waitpid(-1)`).
//!
//! Everything the child needs is prepared before `fork`; between `fork` and
//! `execve` the child only makes async-signal-safe system calls.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::fcntl::OFlag;
use nix::sys::wait::WaitStatus;
use nix::unistd::pipe2;

use super::reaper::Reaper;

/// The three descriptors the child gets as 0, 1 and 2.
#[derive(Debug)]
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The pty slave to make the controlling terminal, when under a TTY.
    pub tty: bool,
}

/// A started command.
#[derive(Debug)]
pub struct Child {
    pub pid: i32,
    pub status: mpsc::Receiver<WaitStatus>,
}

/// Why a command could not start; the exit code mimics a shell's.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    pub exit_code: i32,
}

fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, SpawnError> {
    CString::new(s.as_ref()).map_err(|_| SpawnError {
        message: format!("{what} contains a NUL byte"),
        exit_code: 126,
    })
}

/// Finds `argv0` like a shell does: as a path if it has a slash, else in
/// each directory of `path`.
pub fn resolve(argv0: &str, path: &str, workdir: &Path) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    path.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        let mut cand = PathBuf::from(dir).join(argv0);
        if cand.is_relative() {
            cand = workdir.join(cand);
        }
        let meta = std::fs::metadata(&cand).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(cand)
    })
}

/// Starts `argv` with `env` in `workdir`, in a new session.
pub fn spawn(
    reaper: &Reaper,
    argv: &[String],
    env: &BTreeMap<String, String>,
    workdir: &str,
    stdio: ChildStdio,
) -> Result<Child, SpawnError> {
    let Some(argv0) = argv.first() else {
        return Err(SpawnError {
            message: "empty command".into(),
            exit_code: 127,
        });
    };
    // The agent's own directory is the image's working directory.
    let own_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let cwd = if workdir.is_empty() {
        own_dir.to_str().unwrap_or("/")
    } else {
        workdir
    };
    let path_var = env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
    let Some(program) = resolve(argv0, path_var, Path::new(cwd)) else {
        return Err(SpawnError {
            message: format!("{argv0}: command not found"),
            exit_code: 127,
        });
    };

    if !Path::new(cwd).is_dir() {
        return Err(SpawnError {
            message: format!("workdir {cwd}: no such directory"),
            exit_code: 126,
        });
    }
    let c_program = cstring(program.as_os_str().as_bytes(), "command")?;
    let c_argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<_, _>>()?;
    let c_env: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}"), "environment"))
        .collect::<Result<_, _>>()?;
    let c_cwd = cstring(cwd, "workdir")?;
    let mut argv_ptrs: Vec<*const libc::c_char> = c_argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = c_env.iter().map(|c| c.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());

    // The child reports an exec failure as its errno on this pipe; a
    // successful exec closes it (O_CLOEXEC) with nothing written.
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| SpawnError {
        message: format!("pipe: {e}"),
        exit_code: 126,
    })?;
    let fds: [RawFd; 3] = [
        stdio.stdin.as_raw_fd(),
        stdio.stdout.as_raw_fd(),
        stdio.stderr.as_raw_fd(),
    ];
    let err_fd = err_w.as_raw_fd();

    let guard = reaper.lock();
    // SAFETY: the child only calls async-signal-safe functions (setsid,
    // ioctl, tcsetpgrp, getpid, dup2, fcntl, chdir, sigprocmask, signal,
    // execve, write, _exit)
    // on memory prepared above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; we are in the forked child.
        unsafe {
            child(
                fds, stdio.tty, &c_cwd, &c_program, &argv_ptrs, &env_ptrs, err_fd,
            )
        }
    }
    if pid < 0 {
        drop(guard);
        return Err(SpawnError {
            message: format!("fork: {}", std::io::Error::last_os_error()),
            exit_code: 126,
        });
    }
    let status = guard.register(pid);
    drop(err_w);
    drop(stdio);

    let mut buf = [0u8; 4];
    let mut f = File::from(err_r);
    if let Ok(4) = f.read(&mut buf) {
        // The child exits at once; the reaper collects it.
        let errno = i32::from_ne_bytes(buf);
        let err = std::io::Error::from_raw_os_error(errno);
        let exit_code = if errno == libc::ENOENT { 127 } else { 126 };
        return Err(SpawnError {
            message: format!("{argv0}: {err}"),
            exit_code,
        });
    }
    Ok(Child { pid, status })
}

/// `PATH` when neither the request nor the agent sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The forked child: set up, exec, or report errno and exit.
unsafe fn child(
    fds: [RawFd; 3],
    tty: bool,
    cwd: &CString,
    program: &CString,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    err_fd: RawFd,
) -> ! {
    // SAFETY: async-signal-safe calls only, on valid pointers and fds.
    unsafe {
        let fail = |err_fd: RawFd| -> ! {
            let errno = *libc::__errno_location();
            let b = errno.to_ne_bytes();
            libc::write(err_fd, b.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        // Undo what the agent changed: std ignores SIGPIPE, and a thread's
        // signal mask is inherited.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Ignored signals survive exec too: a server started in the
        // background ignores SIGINT and SIGQUIT, and so would every
        // command, deaf to a client's ^C.
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if libc::setsid() < 0 {
            fail(err_fd);
        }
        if tty && libc::ioctl(fds[1], libc::TIOCSCTTY, 0) < 0 {
            fail(err_fd);
        }
        // Linux makes our group the terminal's foreground group with
        // TIOCSCTTY; gVisor does not. Say it explicitly, best effort: the
        // command runs either way.
        if tty {
            libc::tcsetpgrp(fds[1], libc::getpid());
        }
        for (target, fd) in fds.iter().enumerate() {
            let target = target as RawFd;
            if *fd == target {
                // dup2 to itself keeps O_CLOEXEC; clear it.
                libc::fcntl(target, libc::F_SETFD, 0);
            } else if libc::dup2(*fd, target) < 0 {
                fail(err_fd);
            }
        }
        if libc::chdir(cwd.as_ptr()) < 0 {
            fail(err_fd);
        }
        libc::execve(program.as_ptr(), argv.as_ptr(), env.as_ptr());
        fail(err_fd)
    }
}

/// A pipe whose both ends are close-on-exec (dup2 in the child clears it).
pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// An input that reads as end-of-file: `/dev/null`, or an empty pipe when
/// a command removed or replaced the sandbox's `/dev/null` (a command in
/// the sandbox must not be able to break every later exec that way).
pub fn empty_input() -> std::io::Result<OwnedFd> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    match null {
        Ok(f) if is_char_device(&f) => Ok(f.into()),
        _ => {
            let (read, _write) = pipe()?;
            Ok(read)
        }
    }
}

fn is_char_device(f: &File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    f.metadata().is_ok_and(|m| m.file_type().is_char_device())
}

/// Opens a pseudo-terminal pair (master, slave), both close-on-exec.
pub fn open_pty(cols: u16, rows: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname_r(&master)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)?;
    // SAFETY: into_raw_fd hands over sole ownership of a valid fd.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    set_window_size(master.as_raw_fd(), cols, rows)?;
    Ok((master, slave.into()))
}

use std::os::unix::fs::OpenOptionsExt;

/// Sets a terminal's size (`TIOCSWINSZ`).
pub fn set_window_size(fd: RawFd, cols: u16, rows: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
