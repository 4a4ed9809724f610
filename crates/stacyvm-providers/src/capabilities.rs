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

/// Why no provider hibernates here: CRIU (checkpoint/restore in user space,
/// what the OCI runtimes' `checkpoint` and `restore` drive) is not wired in,
/// and on the hosts this was built on `criu check` fails on the kernel
/// (criu 3.17.1 on Linux 6.18: "vdso: Unexpected rt vDSO area bounds").
pub const HIBERNATE_UNAVAILABLE: &str = "hibernate needs CRIU checkpoint/restore, which this StacyVM build does not support: `criu check` fails on this kernel (criu 3.17 cannot parse the vDSO of Linux 6.x); use pause/resume, which keeps the sandbox in memory";
