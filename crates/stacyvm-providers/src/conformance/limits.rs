//! Cases about limits every provider enforces the same way: the output a
//! synchronous exec keeps.

use std::time::{Duration, Instant};

use super::{Harness, spec, with_sandbox};

/// Peak resident set of this process (`VmHWM`), in bytes. The provider
/// runs in the test process, so this is the provider's (the server's)
/// memory.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `yes` for 10 s through a synchronous exec: the result keeps exactly the
/// output limit of stdout and says `truncated`, the command still ends by
/// its own exit, and the process's peak memory grows by about the limit,
/// not by the gigabytes `yes` wrote.
pub async fn case_exec_output_limit(h: &Harness) {
    with_sandbox(h, |id| async move {
        let name = h.provider.name();
        let limit = crate::DEFAULT_MAX_OUTPUT_BYTES;
        let before = peak_rss();
        let started = Instant::now();
        let mut s = spec(
            &[
                "/bin/sh",
                "-c",
                "yes & p=$!; sleep 10; kill $p; wait $p; echo done >&2; exit 3",
            ],
            "",
            Duration::from_secs(120),
        );
        s.max_output_bytes = limit;
        let out = h
            .provider
            .exec(&id, &s)
            .await
            .unwrap_or_else(|e| panic!("[{name}] yes for 10 s: {e}"));
        let took = started.elapsed();
        let grew = peak_rss().saturating_sub(before);
        assert_eq!(
            out.exit_code, 3,
            "[{name}] the command ends by its own exit"
        );
        assert!(out.truncated, "[{name}] the result says truncated");
        assert_eq!(out.stdout.len(), limit, "[{name}] stdout keeps the limit");
        assert!(
            out.stdout.starts_with(b"y\ny\n"),
            "[{name}] stdout is yes's"
        );
        // (A shell may report the killed job first.)
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.ends_with("done\n"),
            "[{name}] stderr is kept too: {stderr:?}"
        );
        assert!(
            took >= Duration::from_secs(10),
            "[{name}] returned after {took:?}, before the command ended"
        );
        // The kept output (one buffer that may double while growing), the
        // channels in between, and slack for the test harness.
        let bound = 4 * limit as u64 + 64 * 1024 * 1024;
        assert!(
            grew < bound,
            "[{name}] peak memory grew by {} MiB (bound {} MiB)",
            grew >> 20,
            bound >> 20
        );
    })
    .await;
}
