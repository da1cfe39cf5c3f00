//! Secrets Manager calls per rotation, from core's [`RecordingStore`] (the same counting the
//! test suites assert on).

use std::collections::BTreeMap;

pub use rotation_core::testing::RecordingStore;

/// Calls by API operation.
pub type Counts = BTreeMap<&'static str, u64>;

/// The calls `store` recorded so far, by operation; starts again from zero.
pub fn take<S>(store: &RecordingStore<S>) -> Counts {
    let counts = store
        .counts()
        .by_operation()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| (op.as_str(), n as u64))
        .collect();
    store.reset();
    counts
}

/// Secrets Manager calls in `counts`.
pub fn api_calls(counts: &Counts) -> u64 {
    counts.values().sum()
}
