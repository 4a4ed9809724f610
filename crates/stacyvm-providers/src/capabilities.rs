//! Capability lists the providers share, so each states only what it adds.

use stacyvm_core::Capability;

/// What every provider that runs processes in a sandbox directory offers.
pub(crate) const PROCESS: [Capability; 8] = [
    Capability::Spawn,
    Capability::Exec,
    Capability::ExecStream,
    Capability::Interactive,
    Capability::Files,
    Capability::Console,
    Capability::Health,
    Capability::RuntimeInventory,
];

/// [`PROCESS`] plus container isolation and per-sandbox resource stats.
#[cfg(any(feature = "native", feature = "docker"))]
pub(crate) fn container() -> Vec<Capability> {
    let mut caps = PROCESS.to_vec();
    caps.extend([Capability::Container, Capability::ResourceStats]);
    caps
}

/// Why no provider hibernates on this host, for health, capabilities and
/// the 501 of `POST /sandboxes/{id}/hibernate`. Hibernate needs CRIU
/// (checkpoint/restore in user space, what the OCI runtimes' `checkpoint`
/// and `restore` drive); `criu check` is run once per process (~30 ms) and
/// its verdict is reported. On the host this was built on (criu 3.17.1,
/// Linux 6.18) it fails: "vdso: Failed to fill self vdso symtable".
pub fn hibernate_unavailable() -> String {
    static WHY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WHY.get_or_init(|| {
        let advice = "use pause/resume, which keeps the sandbox in memory";
        match std::process::Command::new("criu")
            .arg("check")
            .stdin(std::process::Stdio::null())
            .output()
        {
            Err(_) => format!("hibernate needs CRIU, which is not installed on this host; {advice}"),
            Ok(out) if out.status.success() => format!(
                "CRIU works on this host, but this StacyVM build does not checkpoint sandboxes yet; {advice}"
            ),
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr).into_owned()
                    + &String::from_utf8_lossy(&out.stdout);
                // `Error (criu/vdso.c:613): vdso: ...`: keep the message.
                let first = text
                    .lines()
                    .find(|l| l.contains("Error"))
                    .map(|l| l.rsplit_once("): ").map_or(l, |(_, m)| m).trim().to_string())
                    .unwrap_or_else(|| "no reason given".into());
                format!("hibernate needs CRIU, and `criu check` fails on this host ({first}); {advice}")
            }
        }
    })
    .clone()
}
