//! One deadline per step invocation (W16).
//!
//! Core creates it when a step starts (Lambda: the invocation's remaining time minus a safety
//! margin; CLI and library: [`crate::Options::step_timeout`]) and every store call and database
//! call of the step is bounded by it on the client side, so a stalled connection or a silent
//! service fails the step with a timeout before Lambda kills it.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::error::EngineError;
use crate::store::StoreError;

/// The time by which a step must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

/// The bounded operation did not finish before the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the step's deadline passed")]
pub struct Elapsed;

impl Deadline {
    /// `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now() + timeout,
        }
    }

    /// At `at`.
    pub fn at(at: Instant) -> Self {
        Deadline { at }
    }

    /// From a Lambda invocation's deadline (milliseconds since the Unix epoch), keeping
    /// `margin` in hand for reporting the failure; when less than twice the margin remains, half
    /// of what remains is kept instead.
    pub fn from_epoch_millis(deadline_ms: u64, margin: Duration) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
        let keep = if remaining > margin * 2 {
            margin
        } else {
            remaining / 2
        };
        Deadline::after(remaining - keep)
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn is_past(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The shorter of `limit` and the time left.
    pub fn cap(&self, limit: Duration) -> Duration {
        limit.min(self.remaining())
    }

    /// Runs `fut`, giving up at the deadline (the future is dropped).
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, Elapsed> {
        tokio::time::timeout_at(self.at, fut)
            .await
            .map_err(|_| Elapsed)
    }

    /// Runs the store call `op` (its Secrets Manager operation's name), a timeout at the
    /// deadline being the store's [`StoreError::Timeout`].
    pub async fn store_call<T, F>(&self, op: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        self.run(fut).await.unwrap_or(Err(StoreError::Timeout(op)))
    }

    /// Runs the database call described by `what`, a timeout at the deadline being an
    /// [`EngineError`] of kind [`ErrorKind::Timeout`](crate::ErrorKind::Timeout).
    pub async fn engine_call<T, F>(&self, what: &str, fut: F) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, EngineError>>,
    {
        match self.run(fut).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::past_deadline(what)),
        }
    }

    /// Runs a driver's call described by `what` (no secret values): the driver's error made
    /// an [`EngineError`] by `to_engine` (given `what`), a timeout at the deadline one of kind
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout). An engine's connection code wraps every call it makes in this.
    pub async fn driver_call<T, E, F>(
        &self,
        what: &str,
        fut: F,
        to_engine: impl FnOnce(String, E) -> EngineError,
    ) -> Result<T, EngineError>
    where
        F: Future<Output = Result<T, E>>,
    {
        match self.run(fut).await {
            Ok(r) => r.map_err(|e| to_engine(what.to_string(), e)),
            Err(_) => Err(EngineError::past_deadline(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounds_futures_and_reports_time_left() {
        let d = Deadline::after(Duration::from_millis(50));
        assert!(d.remaining() <= Duration::from_millis(50));
        assert_eq!(d.run(async { 7 }).await, Ok(7));
        let slow = d.run(tokio::time::sleep(Duration::from_secs(5))).await;
        assert_eq!(slow, Err(Elapsed));
        assert!(d.is_past());
        assert_eq!(d.remaining(), Duration::ZERO);
        assert_eq!(d.cap(Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn lambda_deadline_keeps_a_margin() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let d = Deadline::from_epoch_millis(now_ms + 30_000, Duration::from_secs(3));
            let left = d.remaining();
            assert!(left <= Duration::from_secs(27) && left > Duration::from_secs(26));
            // Little time left: half of it is kept.
            let d = Deadline::from_epoch_millis(now_ms + 2_000, Duration::from_secs(3));
            assert!(d.remaining() <= Duration::from_secs(1));
            // Already past.
            let d = Deadline::from_epoch_millis(now_ms.saturating_sub(10), Duration::from_secs(3));
            assert!(d.is_past());
        });
    }
}
