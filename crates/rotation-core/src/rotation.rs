//! The two entry points: [`Rotation::handle`] (the Lambda contract, one step per call) and the
//! in-process driver [`Rotation::rotate`] / [`Rotation::resume`] / [`Rotation::abort`].

use std::time::Instant;

use tracing::{Instrument, info, info_span, warn};

use crate::error::{RotationError, Which};
use crate::event::{EventStep, RotationEvent, Step};
use crate::policy::PasswordPolicy;
use crate::rotator::{Acting, Rotator};
use crate::stage::{Stage, Strategy};
use crate::steps::StepOutcome;
use crate::store::{SecretDescription, SecretStore, StageMove};

/// Behaviour switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// finishSecret proves the pending credentials log in before promoting them (W23).
    pub verify_before_finish: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_before_finish: true,
        }
    }
}

/// A rotation engine bound to a store, a rotator and a password policy. Build once, reuse for
/// every event.
#[derive(Debug)]
pub struct Rotation<S, R> {
    pub(crate) store: S,
    pub(crate) rotator: R,
    pub(crate) policy: PasswordPolicy,
    pub(crate) options: Options,
}

/// What a whole rotation did (driver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Secret ARN.
    pub secret: String,
    /// The rotated version.
    pub token: String,
    /// Each step and its outcome.
    pub steps: Vec<(Step, StepOutcome)>,
}

/// What an abort did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortReport {
    /// Secret ARN.
    pub secret: String,
    /// The abandoned version.
    pub token: String,
    /// Whether the database had to be set back to the current password.
    pub restored_current_password: bool,
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

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The rotator.
    pub fn rotator(&self) -> &R {
        &self.rotator
    }

    /// Handles one Lambda invocation with AWS's entry checks (checklist 3-7), then the step.
    pub async fn handle(&self, event: &RotationEvent) -> Result<StepOutcome, RotationError> {
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
            let result = self.handle_inner(event).await;
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &result {
                Ok(outcome) => info!(outcome = ?outcome, duration_ms, "step finished"),
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

    async fn handle_inner(&self, event: &RotationEvent) -> Result<StepOutcome, RotationError> {
        let secret_id = event.secret_id.as_str();
        let token = event.client_request_token.as_str();
        let description = self.describe(secret_id).await?;
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
            return Ok(StepOutcome::AlreadyCurrent);
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
        self.run_step(step, arn, token, event.rotation_token.as_deref())
            .await
    }

    async fn run_step(
        &self,
        step: Step,
        arn: &str,
        token: &str,
        rotation_token: Option<&str>,
    ) -> Result<StepOutcome, RotationError> {
        // Boxed: the step futures are deep, and unboxed they push callers' futures past the
        // compiler's type-layout depth limit.
        match step {
            Step::CreateSecret => Box::pin(self.create_secret(arn, token, rotation_token)).await,
            Step::SetSecret => Box::pin(self.set_secret(arn, token)).await,
            Step::TestSecret => Box::pin(self.test_secret(arn, token)).await,
            Step::FinishSecret => Box::pin(self.finish_secret(arn, token)).await,
        }
    }

    async fn describe(&self, secret_id: &str) -> Result<SecretDescription, RotationError> {
        self.store
            .describe(secret_id)
            .await
            .map_err(RotationError::store(format!(
                "describing secret {secret_id}"
            )))
    }

    /// The secret's versions and stages, and any rotation in flight.
    pub async fn status(&self, secret_id: &str) -> Result<SecretDescription, RotationError> {
        self.describe(secret_id).await
    }

    /// Performs a whole rotation in-process: refuses when rotation is disabled or another
    /// rotation is in flight, then runs the four steps with a new token.
    pub async fn rotate(&self, secret_id: &str) -> Result<RotationReport, RotationError> {
        let description = self.describe(secret_id).await?;
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled {
                secret: description.arn,
            });
        }
        if let Some(version) = description.rotation_in_flight() {
            return Err(RotationError::RotationInFlight {
                secret: description.arn.clone(),
                version: version.to_string(),
            });
        }
        let token = uuid::Uuid::new_v4().to_string();
        self.drive(&description.arn, &token).await
    }

    /// Finishes the rotation in flight, from whatever step it reached.
    pub async fn resume(&self, secret_id: &str) -> Result<RotationReport, RotationError> {
        let description = self.describe(secret_id).await?;
        if description.rotation_enabled == Some(false) {
            return Err(RotationError::NotEnabled {
                secret: description.arn,
            });
        }
        let token = description
            .rotation_in_flight()
            .ok_or_else(|| RotationError::NoRotationInFlight {
                secret: description.arn.clone(),
            })?
            .to_string();
        self.drive(&description.arn, &token).await
    }

    async fn drive(&self, arn: &str, token: &str) -> Result<RotationReport, RotationError> {
        let span = info_span!("rotation", secret_id = %arn, token = %token);
        async {
            let mut steps = Vec::with_capacity(4);
            // createSecret first: with a new token there is no stub to pass the entry checks
            // (RotateSecret would have made one); it stores the AWSPENDING version itself.
            let outcome = Box::pin(self.create_secret(arn, token, None))
                .instrument(info_span!("rotation_step", step = "createSecret"))
                .await?;
            steps.push((Step::CreateSecret, outcome));
            for step in [Step::SetSecret, Step::TestSecret, Step::FinishSecret] {
                let outcome = self.handle(&RotationEvent::new(step, arn, token)).await?;
                steps.push((step, outcome));
            }
            info!("rotation complete");
            Ok(RotationReport {
                secret: arn.to_string(),
                token: token.to_string(),
                steps,
            })
        }
        .instrument(span)
        .await
    }

    /// Abandons the rotation in flight: removes `AWSPENDING` from its version. For single-user
    /// rotations whose setSecret already changed the database password, the password is first
    /// set back to the current one, so the current secret keeps working (no orphaned password,
    /// W6). Fails, changing nothing, when that is not possible.
    pub async fn abort(&self, secret_id: &str) -> Result<AbortReport, RotationError> {
        let description = self.describe(secret_id).await?;
        let arn = description.arn.clone();
        let token = description
            .rotation_in_flight()
            .ok_or_else(|| RotationError::NoRotationInFlight {
                secret: arn.clone(),
            })?
            .to_string();
        let mut restored = false;
        if self.rotator.strategy() == Strategy::SingleUser {
            let pending = match self.load(&arn, Which::Pending, Some(&token)).await {
                Ok(p) => Some(p),
                Err(RotationError::Store { source, .. }) if source.is_not_found() => None,
                Err(e) => return Err(e),
            };
            if let Some(pending) = pending {
                let current = self.load(&arn, Which::Current, None).await?;
                if self.rotator.check_login(&current).await.is_err()
                    && self.rotator.check_login(&pending).await.is_ok()
                {
                    self.rotator
                        .set_password(Acting::Own(&pending), &current)
                        .await
                        .map_err(|source| RotationError::RollbackFailed {
                            token: token.clone(),
                            secret: arn.clone(),
                            source,
                        })?;
                    restored = true;
                    info!("abort: database password set back to the AWSCURRENT value");
                }
            }
        }
        self.store
            .update_stage(
                &arn,
                StageMove {
                    stage: Stage::Pending,
                    move_to: None,
                    remove_from: Some(&token),
                },
            )
            .await
            .map_err(RotationError::store(format!(
                "removing AWSPENDING from version {token} of secret {arn}"
            )))?;
        info!(token = %token, "abort: rotation abandoned");
        Ok(AbortReport {
            secret: arn,
            token,
            restored_current_password: restored,
        })
    }
}
