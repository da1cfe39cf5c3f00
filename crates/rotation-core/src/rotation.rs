//! The Lambda contract: [`Rotation::handle`] checks an event against the secret (AWS's entry
//! checks, checklist 3-7) and dispatches the one step it names. The in-process driver
//! (`rotate`, `resume`, `abort`, `status`) is in `driver.rs` and runs the same step functions.

use std::time::Instant;

use tracing::{Instrument, info, info_span, warn};

use crate::deadline::Deadline;
use crate::error::RotationError;
use crate::event::{EventStep, RotationEvent, Step};
use crate::options::Options;
use crate::policy::PasswordPolicy;
use crate::rotator::Rotator;
use crate::stage::Stage;
use crate::steps::{self, StepContext, StepOutcome};
use crate::store::{SecretDescription, SecretStore};

/// A rotation engine bound to a store, a rotator and a password policy. Build once, reuse for
/// every event.
#[derive(Debug)]
pub struct Rotation<S, R> {
    pub(crate) store: S,
    pub(crate) rotator: R,
    pub(crate) policy: PasswordPolicy,
    pub(crate) options: Options,
}

impl<S: SecretStore, R: Rotator> Rotation<S, R> {
    /// Binds the parts together.
    pub fn new(store: S, rotator: R, policy: PasswordPolicy) -> Self {
        Rotation {
            store,
            rotator,
            policy,
            options: Options::default(),
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The rotator.
    pub fn rotator(&self) -> &R {
        &self.rotator
    }

    pub(crate) fn context<'a>(
        &'a self,
        description: &'a SecretDescription,
        token: &'a str,
        deadline: Deadline,
    ) -> StepContext<'a, S, R> {
        StepContext {
            store: &self.store,
            rotator: &self.rotator,
            policy: &self.policy,
            options: &self.options,
            arn: &description.arn,
            token,
            description,
            deadline,
            rollback: false,
        }
    }

    /// Handles one invocation within [`Options::step_timeout`].
    pub async fn handle(&self, event: &RotationEvent) -> Result<StepOutcome, RotationError> {
        self.handle_until(event, Deadline::after(self.options.step_timeout))
            .await
    }

    /// Handles one invocation (AWS's entry checks, then the step), every store and database
    /// call bounded by `deadline`.
    pub async fn handle_until(
        &self,
        event: &RotationEvent,
        deadline: Deadline,
    ) -> Result<StepOutcome, RotationError> {
        Ok(self.handle_step(event, deadline, false).await?.0)
    }

    /// [`Rotation::handle_until`], with, after a finishSecret that promoted a version, when
    /// that version was created (the rotation's start), where the store said.
    pub async fn handle_timed(
        &self,
        event: &RotationEvent,
        deadline: Deadline,
    ) -> Result<(StepOutcome, Option<std::time::SystemTime>), RotationError> {
        self.handle_step(event, deadline, false).await
    }

    /// [`Rotation::handle_until`], for a step of a `rollback` run when `rollback`.
    pub(crate) async fn handle_step(
        &self,
        event: &RotationEvent,
        deadline: Deadline,
        rollback: bool,
    ) -> Result<(StepOutcome, Option<std::time::SystemTime>), RotationError> {
        let span = info_span!(
            "rotation_step",
            secret_id = %event.secret_id,
            token = %event.client_request_token,
            step = %event.step,
            engine = self.rotator.profile().name,
            strategy = %self.rotator.strategy(),
        );
        async {
            let started = Instant::now();
            // Boxed: the step futures are deep, and unboxed they push callers' futures past
            // the compiler's type-layout depth limit.
            let result = Box::pin(self.checked_step(event, deadline, rollback)).await;
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &result {
                Ok((outcome, _)) => info!(outcome = ?outcome, duration_ms, "step finished"),
                Err(e) => warn!(
                    error_kind = e.kind(),
                    engine_error = e.engine_kind().map(|k| k.as_str()),
                    error = %crate::error::error_chain(e),
                    duration_ms,
                    "step failed"
                ),
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn checked_step(
        &self,
        event: &RotationEvent,
        deadline: Deadline,
        rollback: bool,
    ) -> Result<(StepOutcome, Option<std::time::SystemTime>), RotationError> {
        let token = event.client_request_token.as_str();
        let description = self.describe(&event.secret_id, deadline).await?;
        let arn = description.arn.as_str();
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled { secret: arn.into() });
        }
        let Some(stages) = description.versions.get(token) else {
            return Err(RotationError::TokenNotStaged {
                token: token.into(),
                secret: arn.into(),
            });
        };
        if stages.has(Stage::Current) {
            info!("Secret version {token} already set as AWSCURRENT for secret {arn}.");
            // finishSecret retried after a crash between its promotion and the drop of the
            // other passwords (engines whose single user acts through a master): drop now,
            // unless a newer rotation is in flight (the drop would remove its pending password).
            let newer_in_flight = description
                .versions
                .iter()
                .any(|(version, stages)| version.as_str() != token && stages.has(Stage::Pending));
            if event.step == EventStep::Known(Step::FinishSecret) && !newer_in_flight {
                let ctx = self.context(&description, token, deadline);
                Box::pin(steps::finish::drop_if_due(&ctx)).await;
            }
            return Ok((StepOutcome::AlreadyCurrent, None));
        }
        if !stages.has(Stage::Pending) {
            return Err(RotationError::TokenNotPending {
                token: token.into(),
                secret: arn.into(),
            });
        }
        let step = match &event.step {
            EventStep::Known(step) => *step,
            EventStep::Unknown(name) => {
                return Err(RotationError::InvalidStep {
                    step: name.clone(),
                    secret: arn.into(),
                });
            }
        };
        // Work on the ARN from here, as AWS's functions do.
        let mut ctx = self.context(&description, token, deadline);
        ctx.rollback = rollback;
        match step {
            Step::CreateSecret => steps::create::run(&ctx, event.rotation_token.as_deref())
                .await
                .map(|o| (o, None)),
            Step::SetSecret => steps::set::run(&ctx).await.map(|o| (o, None)),
            Step::TestSecret => steps::test::run(&ctx).await.map(|o| (o, None)),
            Step::FinishSecret => steps::finish::run(&ctx).await,
        }
    }

    pub(crate) async fn describe(
        &self,
        secret_id: &str,
        deadline: Deadline,
    ) -> Result<SecretDescription, RotationError> {
        let context = || format!("describing secret {secret_id}");
        deadline
            .store_call("DescribeSecret", self.store.describe(secret_id))
            .await
            .map_err(RotationError::store(context()))
    }
}
