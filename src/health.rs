//! Readiness of the parts of a running bridge, for `/readyz`: each consumer (flow, poller,
//! notifier) says when it is connected and consuming, and when it stops.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which parts are ready. Parts register themselves before their first connection attempt, so
/// a part that never connects keeps the whole process unready.
#[derive(Debug, Default)]
pub struct Health {
    /// Part name (`inject`, `poller`, `notifier` …) → connected and consuming.
    parts: Mutex<BTreeMap<String, bool>>,
}

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A bool map cannot be left half-written by a panic: recover it.
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `part`, not ready yet.
    pub fn register(&self, part: &str) {
        self.lock().entry(part.to_owned()).or_insert(false);
    }

    /// Marks `part` ready (consuming) or not (disconnected, stopping).
    pub fn set_ready(&self, part: &str, ready: bool) {
        self.lock().insert(part.to_owned(), ready);
    }

    /// Whether every registered part is ready (and there is at least one), and each part's state.
    pub fn readiness(&self) -> (bool, BTreeMap<String, bool>) {
        let parts = self.lock().clone();
        let ready = !parts.is_empty() && parts.values().all(|ready| *ready);
        (ready, parts)
    }
}
