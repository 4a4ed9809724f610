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
