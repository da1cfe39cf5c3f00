//! Behaviour switches of a [`crate::Rotation`].

use std::time::Duration;

/// Behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// finishSecret proves the pending credentials log in before promoting them (W23).
    pub verify_before_finish: bool,
    /// The deadline of each step when the caller gives none (the driver, `handle`).
    pub step_timeout: Duration,
    /// How many unlabelled versions, newest first, recovery may try.
    pub recovery_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_before_finish: true,
            step_timeout: Duration::from_secs(60),
            recovery_limit: 10,
        }
    }
}
