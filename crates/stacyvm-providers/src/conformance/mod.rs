//! The provider conformance suite, written once and run against every
//! provider (mock, docker, native, ...). A provider is done when it passes.
//!
//! Each case spawns its own sandbox(es) with [`SandboxId::generate`] and
//! destroys them, even when the case fails. Commands only use tools a
//! busybox-static rootfs has (`scripts/ci/busybox-rootfs.sh`), and only
//! relative paths under an exec `workdir`, so the same script means the
//! same thing on a provider that runs host processes (mock) and on one that
//! runs them in a container.
//!
//! Run every case as its own test with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! stacyvm_providers::conformance_tests!(match my_harness().await {
//!     Some(h) => h,
//!     None => return, // component missing: skip locally (fail when CI is set)
//! });
//! ```
//!
//! or all cases in one test with [`run_all`].

mod escape;
mod exec;
mod files;
mod limits;
mod pause;
mod public;

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use stacyvm_core::{ExecOutput, SandboxId};

use crate::{ExecSpec, Provider, ProviderError, SpawnSpec};

pub use self::escape::{case_path_escape_dot_dot, case_symlink_escape};
pub use self::exec::{
    case_env_and_workdir, case_exec_argv_is_literal, case_exec_shell, case_nonzero_exit,
    case_stderr_captured, case_stdin_and_signal, case_stream_drop_kills_command, case_stream_order,
    case_stream_timeout, case_timeout_kills_process_tree, case_tty,
};
pub use self::files::{
    case_file_binary_content, case_file_chmod, case_file_delete, case_file_exec_visibility,
    case_file_glob, case_file_large, case_file_list_and_stat, case_file_move,
    case_file_write_creates_parents_and_mode,
};
pub use self::limits::{case_exec_input_limits, case_exec_output_limit};
pub use self::pause::case_pause_keeps_a_counter_frozen;
pub use self::public::case_errors_are_public;

/// What a provider's test hands the suite.
#[derive(Debug, Clone)]
pub struct Harness {
    pub provider: Arc<dyn Provider>,
    /// The image to spawn (a busybox-static rootfs for docker/native; any
    /// string for the mock).
    pub image: String,
    /// Host strings no client may see from this provider: its data and base
    /// directories, socket paths, daemon address, runtime binary.
    pub private: Vec<String>,
}

/// Label every conformance sandbox carries.
pub const TEST_LABEL: (&str, &str) = ("stacyvm.conformance", "true");

/// Default timeout for commands that should finish at once.
const QUICK: Duration = Duration::from_secs(30);

/// Runs every case in turn; panics with the failing case's message.
pub async fn run_all(h: &Harness) {
    case_lifecycle(h).await;
    case_exec_argv_is_literal(h).await;
    case_exec_shell(h).await;
    case_env_and_workdir(h).await;
    case_nonzero_exit(h).await;
    case_stderr_captured(h).await;
    case_timeout_kills_process_tree(h).await;
    case_stream_order(h).await;
    case_stream_timeout(h).await;
    case_stream_drop_kills_command(h).await;
    case_stdin_and_signal(h).await;
    case_tty(h).await;
    case_exec_output_limit(h).await;
    case_exec_input_limits(h).await;
    case_file_binary_content(h).await;
    case_file_large(h).await;
    case_file_write_creates_parents_and_mode(h).await;
    case_file_list_and_stat(h).await;
    case_file_move(h).await;
    case_file_chmod(h).await;
    case_file_delete(h).await;
    case_file_glob(h).await;
    case_file_exec_visibility(h).await;
    case_path_escape_dot_dot(h).await;
    case_symlink_escape(h).await;
    case_after_destroy(h).await;
    case_errors_are_public(h).await;
    case_logs(h).await;
    case_health(h).await;
    case_pause_keeps_a_counter_frozen(h).await;
}

/// Generates one `#[tokio::test]` per conformance case. The argument is an
/// expression evaluated inside each (async) test to get the [`Harness`]; it
/// may `.await` and may `return` to skip.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            case_lifecycle,
            case_exec_argv_is_literal,
            case_exec_shell,
            case_env_and_workdir,
            case_nonzero_exit,
            case_stderr_captured,
            case_timeout_kills_process_tree,
            case_stream_order,
            case_stream_timeout,
            case_stream_drop_kills_command,
            case_stdin_and_signal,
            case_tty,
            case_exec_output_limit,
            case_exec_input_limits,
            case_file_binary_content,
            case_file_large,
            case_file_write_creates_parents_and_mode,
            case_file_list_and_stat,
            case_file_move,
            case_file_chmod,
            case_file_delete,
            case_file_glob,
            case_file_exec_visibility,
            case_path_escape_dot_dot,
            case_symlink_escape,
            case_after_destroy,
            case_errors_are_public,
            case_logs,
            case_health,
            case_pause_keeps_a_counter_frozen,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                #[allow(unreachable_code, clippy::diverging_sub_expression)]
                let harness: $crate::conformance::Harness = $make;
                $crate::conformance::$case(&harness).await;
            }
        )*
    };
}

/// Spawns a sandbox for one case, runs `f`, and destroys the sandbox even
/// if `f` panics.
pub(crate) async fn with_sandbox<F, Fut>(h: &Harness, f: F)
where
    F: FnOnce(SandboxId) -> Fut,
    Fut: Future<Output = ()>,
{
    let id = spawn(h).await;
    let result = AssertUnwindSafe(f(id.clone())).catch_unwind().await;
    if let Err(e) = h.provider.destroy(&id).await {
        eprintln!("conformance: destroying {id} failed: {e}");
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

pub(crate) async fn spawn(h: &Harness) -> SandboxId {
    let id = SandboxId::generate();
    let spec = SpawnSpec {
        id: id.clone(),
        image: h.image.clone(),
        memory_mb: 256,
        vcpus: 1,
        metadata: BTreeMap::new(),
        labels: BTreeMap::from([(TEST_LABEL.0.to_string(), TEST_LABEL.1.to_string())]),
        network: None,
    };
    h.provider
        .spawn(&spec)
        .await
        .unwrap_or_else(|e| panic!("[{}] spawn {id} failed: {e}", h.provider.name()));
    id
}

pub(crate) fn spec(argv: &[&str], workdir: &str, timeout: Duration) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        workdir: workdir.to_string(),
        timeout,
        ..Default::default()
    }
}

/// Runs `script` with `/bin/sh -c` in `workdir`; panics on a provider error.
pub(crate) async fn sh(h: &Harness, id: &SandboxId, workdir: &str, script: &str) -> ExecOutput {
    h.provider
        .exec(id, &spec(&["/bin/sh", "-c", script], workdir, QUICK))
        .await
        .unwrap_or_else(|e| panic!("[{}] exec {script:?} failed: {e}", h.provider.name()))
}

/// Like [`sh`] but also requires exit code 0; returns stdout.
pub(crate) async fn sh_ok(h: &Harness, id: &SandboxId, workdir: &str, script: &str) -> String {
    let out = sh(h, id, workdir, script).await;
    assert_eq!(
        out.exit_code,
        0,
        "[{}] {script:?} exited {}: stdout={:?} stderr={:?}",
        h.provider.name(),
        out.exit_code,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) async fn read_all(
    h: &Harness,
    id: &SandboxId,
    path: &str,
) -> Result<Vec<u8>, ProviderError> {
    let mut stream = h.provider.files().read(id, path).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Creates directory `dir` in the sandbox through the file API.
pub(crate) async fn mkdir(h: &Harness, id: &SandboxId, dir: &str) {
    h.provider
        .files()
        .write(id, &format!("{dir}/.keep"), bytes::Bytes::new(), None)
        .await
        .unwrap_or_else(|e| panic!("[{}] creating {dir} failed: {e}", h.provider.name()));
}

/// A shell snippet defining `alive PID`: true while the process exists and
/// is not a zombie.
pub(crate) const ALIVE_FN: &str = "alive() { kill -0 \"$1\" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' /proc/$1/status 2>/dev/null; }";

/// Spawn, status, inventory, destroy, destroy again.
pub async fn case_lifecycle(h: &Harness) {
    let p = &h.provider;
    let name = p.name();
    let id = spawn(h).await;
    assert_eq!(
        p.status(&id).await.expect("status"),
        crate::RuntimeStatus::Running,
        "[{name}] a spawned sandbox is running"
    );
    if let Some(list) = p.inventory().await.expect("inventory") {
        let me = list
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("[{name}] inventory lacks {id}"));
        assert_eq!(
            me.labels.get(TEST_LABEL.0).map(String::as_str),
            Some(TEST_LABEL.1),
            "[{name}] inventory keeps spawn labels"
        );
    }
    p.destroy(&id).await.expect("destroy");
    assert_eq!(
        p.status(&id).await.expect("status after destroy"),
        crate::RuntimeStatus::Missing,
        "[{name}] a destroyed sandbox is missing"
    );
    if let Some(list) = p.inventory().await.expect("inventory") {
        assert!(
            list.iter().all(|r| r.id != id),
            "[{name}] inventory still lists {id}"
        );
    }
    p.destroy(&id).await.expect("destroying twice is fine");
    p.destroy(&SandboxId::generate())
        .await
        .expect("destroying an unknown sandbox is fine");
}

/// After destroy, exec and every file operation fail with not-found or
/// destroyed.
pub async fn case_after_destroy(h: &Harness) {
    let p = &h.provider;
    let name = p.name();
    let id = spawn(h).await;
    p.files()
        .write(&id, "/f.txt", bytes::Bytes::from_static(b"x"), None)
        .await
        .expect("write");
    p.destroy(&id).await.expect("destroy");
    let gone = |what: &str, r: Result<(), ProviderError>| match r {
        Err(ProviderError::NotFound(_) | ProviderError::Destroyed(_)) => {}
        other => {
            panic!("[{name}] {what} after destroy: expected NotFound/Destroyed, got {other:?}")
        }
    };
    gone(
        "exec",
        p.exec(&id, &spec(&["true"], "", QUICK)).await.map(drop),
    );
    gone(
        "exec_stream",
        p.exec_stream(&id, &spec(&["true"], "", QUICK), Default::default())
            .await
            .map(drop),
    );
    gone("read", p.files().read(&id, "/f.txt").await.map(drop));
    gone(
        "write",
        p.files()
            .write(&id, "/g.txt", bytes::Bytes::new(), None)
            .await,
    );
    gone("list", p.files().list(&id, "/").await.map(drop));
    gone("stat", p.files().stat(&id, "/f.txt").await.map(drop));
    gone("move", p.files().rename(&id, "/f.txt", "/h.txt").await);
    gone("chmod", p.files().chmod(&id, "/f.txt", 0o600).await);
    gone("delete", p.files().delete(&id, "/f.txt", false).await);
    gone("glob", p.files().glob(&id, "/*").await.map(drop));
    let unknown = SandboxId::generate();
    gone(
        "exec on an unknown id",
        p.exec(&unknown, &spec(&["true"], "", QUICK))
            .await
            .map(drop),
    );
    gone(
        "read on an unknown id",
        p.files().read(&unknown, "/f.txt").await.map(drop),
    );
}

/// `logs` answers for a live sandbox.
pub async fn case_logs(h: &Harness) {
    with_sandbox(h, |id| async move {
        sh_ok(h, &id, "", "echo hello").await;
        let lines = h
            .provider
            .logs(&id, 100)
            .await
            .unwrap_or_else(|e| panic!("[{}] logs failed: {e}", h.provider.name()));
        assert!(lines.len() <= 100);
    })
    .await;
}

/// Health is fast and capabilities name the basics.
pub async fn case_health(h: &Harness) {
    let name = h.provider.name();
    let report = tokio::time::timeout(Duration::from_secs(10), h.provider.health())
        .await
        .unwrap_or_else(|_| panic!("[{name}] health took longer than 10s"));
    assert!(report.healthy, "[{name}] unhealthy: {:?}", report.error);
    let caps = h.provider.capabilities();
    for c in [
        stacyvm_core::Capability::Spawn,
        stacyvm_core::Capability::Exec,
        stacyvm_core::Capability::ExecStream,
        stacyvm_core::Capability::Files,
    ] {
        assert!(caps.contains(&c), "[{name}] lacks capability {c}");
    }
}
