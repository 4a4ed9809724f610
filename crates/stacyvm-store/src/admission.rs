//! Admission: the limits a new sandbox must fit, what the counted sandboxes
//! of a scope already hold, and the one decision every driver makes inside
//! its admit transaction.
//!
//! A sandbox counts while it may hold a runtime (`SandboxState::is_active`).
//! Totals are kept per scope by the database itself (triggers on the
//! `sandboxes` table), so reading them is one indexed lookup whatever the
//! number of sandboxes, and they cannot drift from the rows.

use std::collections::BTreeMap;
use std::fmt;

use stacyvm_core::{OwnerId, Sandbox};

/// What the counted sandboxes of one scope hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub sandboxes: u64,
    pub memory_mb: u64,
    pub vcpus: u64,
}

/// Limits of one scope; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeLimits {
    pub max_sandboxes: u64,
    pub max_memory_mb: u64,
    pub max_vcpus: u64,
}

impl ScopeLimits {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_sandboxes > 0 || self.max_memory_mb > 0 || self.max_vcpus > 0
    }
}

/// A scope whose usage is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageScope {
    /// Every sandbox (on a cluster: on every node).
    All,
    Owner(OwnerId),
    /// The sandboxes placed on one cluster node.
    Node(String),
}

impl UsageScope {
    /// The key of the scope's row in `sandbox_usage`.
    pub(crate) fn key(&self) -> String {
        match self {
            UsageScope::All => "all".to_string(),
            UsageScope::Owner(o) => format!("owner:{o}"),
            UsageScope::Node(n) => format!("node:{n}"),
        }
    }
}

/// What a new sandbox must fit, checked atomically with its insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Every sandbox together (`defaults.max_sandboxes`).
    pub all: ScopeLimits,
    /// The sandboxes of the new sandbox's owner; ignored without an owner.
    pub owner: ScopeLimits,
}

/// The scope whose limit refused a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusedScope {
    All,
    Owner(OwnerId),
}

/// The resource that would have gone over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedResource {
    Sandboxes,
    MemoryMb,
    Vcpus,
}

/// Why a sandbox was not admitted: `used` of `max` already held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub scope: RefusedScope,
    pub resource: LimitedResource,
    pub used: u64,
    pub max: u64,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.resource {
            LimitedResource::Sandboxes => "sandbox limit",
            LimitedResource::MemoryMb => "memory limit (MiB)",
            LimitedResource::Vcpus => "vcpu limit",
        };
        let unit = match self.resource {
            LimitedResource::Sandboxes => "active",
            LimitedResource::MemoryMb => "MiB in use",
            LimitedResource::Vcpus => "vcpus in use",
        };
        match &self.scope {
            RefusedScope::All => write!(f, "{what} reached: {} of {} {unit}", self.used, self.max),
            RefusedScope::Owner(o) => write!(
                f,
                "{what} for owner {o} reached: {} of {} {unit}",
                self.used, self.max
            ),
        }
    }
}

/// How a cluster picks the node of a new sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    /// The node with the fewest sandboxes (then the most free memory).
    #[default]
    Spread,
    /// The fullest node that still has room, so whole nodes stay free.
    Pack,
}

impl PlacementPolicy {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "spread" => Some(PlacementPolicy::Spread),
            "pack" => Some(PlacementPolicy::Pack),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PlacementPolicy::Spread => "spread",
            PlacementPolicy::Pack => "pack",
        }
    }
}

/// Where a new sandbox may go on a cluster: a node that is `ready`, holds
/// a current lease, reports `provider` healthy, carries every label of
/// `selector` and has room under its own capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub policy: PlacementPolicy,
    pub provider: String,
    pub selector: BTreeMap<String, String>,
}

/// The outcome of [`Store::admit_sandbox`](crate::Store::admit_sandbox).
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Inserted; the record as stored (with its `node_id` when placed).
    Admitted(Sandbox),
    /// A limit would be exceeded; nothing was written.
    Refused(Refusal),
    /// No node can take the sandbox (none ready for its provider, none
    /// matching the selector, or all full); nothing was written.
    Unplaced(Unplaced),
}

/// Why no node could take a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unplaced {
    /// No ready node runs the provider healthy and matches the selector.
    NoNode,
    /// Matching nodes exist but every one is at its capacity.
    Full,
}

/// The admission decision every store makes, given what the scopes hold
/// before `sandbox` is added: the first limit it would exceed, if any.
pub fn refusal(
    sandbox: &Sandbox,
    limits: &AdmissionLimits,
    all: Usage,
    owner: Usage,
) -> Option<Refusal> {
    if let Some((resource, used, max)) = over(&limits.all, all, sandbox) {
        return Some(Refusal {
            scope: RefusedScope::All,
            resource,
            used,
            max,
        });
    }
    let o = sandbox.owner_id.as_ref()?;
    over(&limits.owner, owner, sandbox).map(|(resource, used, max)| Refusal {
        scope: RefusedScope::Owner(o.clone()),
        resource,
        used,
        max,
    })
}

/// The first limit of `limits` that `sandbox` would exceed on top of `used`.
fn over(
    limits: &ScopeLimits,
    used: Usage,
    sandbox: &Sandbox,
) -> Option<(LimitedResource, u64, u64)> {
    let checks = [
        (
            LimitedResource::Sandboxes,
            limits.max_sandboxes,
            used.sandboxes,
            1,
        ),
        (
            LimitedResource::MemoryMb,
            limits.max_memory_mb,
            used.memory_mb,
            u64::from(sandbox.memory_mb),
        ),
        (
            LimitedResource::Vcpus,
            limits.max_vcpus,
            used.vcpus,
            u64::from(sandbox.vcpus),
        ),
    ];
    checks
        .into_iter()
        .find(|(_, max, used, add)| *max > 0 && used.saturating_add(*add) > *max)
        .map(|(resource, max, used, _)| (resource, used, max))
}

/// A stored total, clamped at zero (a total never goes negative unless the
/// table was edited by hand).
pub(crate) fn total(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or(0)
}
