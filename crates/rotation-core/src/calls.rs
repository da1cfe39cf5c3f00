//! Per-call timings: each Secrets Manager call and each engine operation (a login with its
//! handshakes, a password change, testSecret's check, a close) as a DEBUG event of target
//! [`TARGET`] and message [`MESSAGE`], with the call's name, its start (`at_us`, microseconds
//! since the Unix epoch), its length (`us`) and whether it succeeded (`ok`); no secret value
//! (as every line of a step, it carries the step's span: the secret's ARN and the token). Off
//! unless the log filter enables the target (`AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`
//! `info,rotation::calls=debug`), and then read by `scripts/bench` to say where a rotation's
//! time goes.

use std::future::Future;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::BoxFuture;

/// The events' target.
pub const TARGET: &str = "rotation::calls";

/// The events' message.
pub const MESSAGE: &str = "call";

/// Runs `fut`, logging its timing as call `call` when [`TARGET`] is enabled. A call whose
/// future is dropped before it ends (the step's deadline) is logged too, with `ok = false`
/// and `cancelled = true`. A Secrets Manager call's length includes the SDK's retries.
///
/// The call is boxed: its future (an SDK call's is tens of kilobytes) then sits on the heap,
/// not in every future that awaits it (unoptimised builds overflowed test threads' stacks).
pub fn timed<'a, T: 'a, E: 'a>(
    call: &'static str,
    fut: impl Future<Output = Result<T, E>> + Send + 'a,
) -> BoxFuture<'a, Result<T, E>> {
    Box::pin(async move {
        if !tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
            return fut.await;
        }
        let mut timing = Timing {
            call,
            at_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            started: Instant::now(),
            ok: None,
        };
        let r = fut.await;
        timing.ok = Some(r.is_ok());
        r
    })
}

/// One call's timing, logged when dropped: when the call ended, or when it was cancelled.
struct Timing {
    call: &'static str,
    at_us: u64,
    started: Instant,
    /// `None` until the call ends.
    ok: Option<bool>,
}

impl Drop for Timing {
    fn drop(&mut self) {
        let us = self.started.elapsed().as_micros() as u64;
        let (call, at_us) = (self.call, self.at_us);
        match self.ok {
            Some(ok) => tracing::debug!(target: TARGET, call, at_us, us, ok, "{MESSAGE}"),
            None => tracing::debug!(
                target: TARGET,
                call,
                at_us,
                us,
                ok = false,
                cancelled = true,
                "{MESSAGE}"
            ),
        }
    }
}

/// [`timed`] as a method of any future of a result.
pub trait Timed<'a, T: 'a, E: 'a>: Future<Output = Result<T, E>> + Send + Sized + 'a {
    /// [`timed`]`(call, self)`.
    fn timed(self, call: &'static str) -> BoxFuture<'a, Result<T, E>> {
        timed(call, self)
    }
}

impl<'a, T: 'a, E: 'a, F: Future<Output = Result<T, E>> + Send + 'a> Timed<'a, T, E> for F {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_timed_call_returns_what_it_wraps_with_or_without_the_target() {
        let ok: Result<u8, ()> = timed("one", async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let err: Result<u8, &str> = timed("two", async { Err("no") }).await;
        assert_eq!(err, Err("no"));
    }
}
