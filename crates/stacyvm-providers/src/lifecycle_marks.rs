//! What a provider remembers about sandboxes it no longer has: which ids it
//! destroyed (to answer `Destroyed` rather than `NotFound`) and which it is
//! destroying right now (to answer `Conflict` to a call that races the
//! destroy). Bounded: the oldest destroyed ids are forgotten first, and a
//! forgotten id is answered `NotFound`, which the API maps to the same 404.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use stacyvm_core::SandboxId;

use crate::ProviderError;

/// Destroyed ids remembered per provider.
const REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct LifecycleMarks {
    inner: Mutex<Marks>,
}

#[derive(Debug, Default)]
struct Marks {
    destroying: HashSet<SandboxId>,
    destroyed: HashSet<SandboxId>,
    /// `destroyed` in insertion order, for eviction.
    order: VecDeque<SandboxId>,
}

impl LifecycleMarks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A destroy of `id` begins.
    pub(crate) fn destroying(&self, id: &SandboxId) {
        self.lock().destroying.insert(id.clone());
    }

    /// A destroy of `id` ended; `done` when it succeeded.
    pub(crate) fn destroy_ended(&self, id: &SandboxId, done: bool) {
        let mut m = self.lock();
        m.destroying.remove(id);
        if done && m.destroyed.insert(id.clone()) {
            m.order.push_back(id.clone());
            while m.order.len() > REMEMBERED {
                if let Some(old) = m.order.pop_front() {
                    m.destroyed.remove(&old);
                }
            }
        }
    }

    /// `id` was spawned (again): it is no longer destroyed.
    pub(crate) fn spawned(&self, id: &SandboxId) {
        let mut m = self.lock();
        if m.destroyed.remove(id) {
            m.order.retain(|x| x != id);
        }
    }

    /// The error for a call on `id`, which the provider has no live
    /// sandbox for (or lost under the call).
    pub(crate) fn gone(&self, id: &SandboxId) -> ProviderError {
        let m = self.lock();
        if m.destroying.contains(id) {
            ProviderError::Conflict(format!("sandbox {id} is being destroyed"))
        } else if m.destroyed.contains(id) {
            ProviderError::Destroyed(id.to_string())
        } else {
            ProviderError::NotFound(format!("sandbox {id}"))
        }
    }

    /// Whether `id` is being destroyed.
    pub(crate) fn is_destroying(&self, id: &SandboxId) -> bool {
        self.lock().destroying.contains(id)
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.lock().destroyed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_by_what_happened_and_stays_bounded() {
        let marks = LifecycleMarks::default();
        let id = SandboxId::generate();
        assert!(matches!(marks.gone(&id), ProviderError::NotFound(_)));
        marks.destroying(&id);
        assert!(matches!(marks.gone(&id), ProviderError::Conflict(_)));
        marks.destroy_ended(&id, true);
        assert!(matches!(marks.gone(&id), ProviderError::Destroyed(_)));
        marks.spawned(&id);
        assert!(matches!(marks.gone(&id), ProviderError::NotFound(_)));

        let failed = SandboxId::generate();
        marks.destroying(&failed);
        marks.destroy_ended(&failed, false);
        assert!(matches!(marks.gone(&failed), ProviderError::NotFound(_)));

        for _ in 0..REMEMBERED + 10 {
            let id = SandboxId::generate();
            marks.destroying(&id);
            marks.destroy_ended(&id, true);
        }
        assert_eq!(marks.remembered(), REMEMBERED);
    }
}
