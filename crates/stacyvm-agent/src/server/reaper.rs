//! Child reaping. As PID 1 the agent inherits every orphan in the sandbox,
//! so one thread waits for any child (`waitpid(-1)`) and hands the status of
//! a command it started to that command's waiter; orphans are just reaped.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

#[derive(Debug, Default)]
struct State {
    waiters: HashMap<i32, mpsc::Sender<WaitStatus>>,
    /// Bumped at every spawn, so a reaper with no children knows when to
    /// look again.
    generation: u64,
}

/// Shared handle; clone freely.
#[derive(Debug, Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<State>, Condvar)>,
}

/// Held while starting a child, so the reaper cannot miss its status: the
/// child is registered before the reaper can look it up.
#[derive(Debug)]
pub struct SpawnGuard<'a> {
    reaper: &'a Reaper,
    state: MutexGuard<'a, State>,
}

impl SpawnGuard<'_> {
    /// Registers a started child; its status arrives on the returned channel.
    pub fn register(mut self, pid: i32) -> mpsc::Receiver<WaitStatus> {
        let (tx, rx) = mpsc::channel();
        self.state.waiters.insert(pid, tx);
        self.state.generation += 1;
        drop(self.state);
        self.reaper.inner.1.notify_all();
        rx
    }
}

impl Reaper {
    /// Starts the reaping thread.
    pub fn start() -> Self {
        let reaper = Reaper::default();
        let r = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || r.run())
            .expect("spawn reaper thread");
        reaper
    }

    /// Locks out the reaper while a child is being started.
    pub fn lock(&self) -> SpawnGuard<'_> {
        SpawnGuard {
            reaper: self,
            state: self.inner.0.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn run(&self) {
        let (lock, cvar) = &*self.inner;
        loop {
            let seen = lock.lock().unwrap_or_else(|e| e.into_inner()).generation;
            match waitpid(None::<Pid>, None) {
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(tx) = st.waiters.remove(&pid.as_raw()) {
                        let _ = tx.send(status);
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => {
                    // No children at all: sleep until the next spawn.
                    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while st.generation == seen {
                        st = cvar.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
    }
}
